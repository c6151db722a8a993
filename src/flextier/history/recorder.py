"""The recorder every caller of a provider uses to add to the history: job runner, wrap, gateway.

Why buffered: a job makes thousands of attempts a minute; one SQL write each would cost more
than the attempts' own bookkeeping. Counts are kept in memory per cell and written in one
transaction every ``flush_every`` seconds (wall), at :meth:`Recorder.flush` and at
:meth:`Recorder.close`; a crash loses at most those seconds of history, never a job's results.
The periodic write runs on a short-lived thread, not in the caller's: under the gateway the
caller is the event loop, and a SQLite transaction there stalls every call in flight
(docs/gateway.md). An explicit :meth:`Recorder.flush` waits for one in progress first.
Nothing here raises into the caller: a history that cannot be written is a warning, not a failed
job (history is advice; docs/history.md).

What one attempt adds (``record_attempt``): to the cell of (provider, model, tier, hour of week
of ``ts``): one attempt, and one of ok / shed / timeout / error; for a served one its latency
(queue plus service, the only queue time a client can see) into the histogram and its output
tokens; and the seconds since the previous attempt on the same key, when at most ``ACTIVE_GAP``,
as active time, from which the forecast gets the achieved throughput (served per active second).
"""
from __future__ import annotations

import atexit
import bisect
import logging
import threading
import time
from typing import Any, Callable, Sequence

from .db import EMULATED, REAL, CellRow, HistoryDB, default_history_path, history_disabled
from .schema import LATENCY_EDGES

__all__ = ["Recorder", "record_attempt", "record_call", "default_recorder", "outcome_of", "OUTCOMES", "ACTIVE_GAP",
           "hour_of_week", "week_of", "week_start", "WEEK", "MONDAY0"]

log = logging.getLogger("flextier.history")

OUTCOMES = ("ok", "shed", "timeout", "error")
ACTIVE_GAP = 180.0          # > the backoff cap (120 s): a job backing off at a peak is still active
WEEK = 7 * 86400.0
MONDAY0 = 4 * 86400.0       # 1970-01-05 00:00 UTC, a Monday
QUEUED_SHED_S = 60.0        # a capacity error after this long sat in a queue: a timeout, not a shed


def week_of(ts: float) -> int:
    return int((ts - MONDAY0) // WEEK)


def hour_of_week(ts: float) -> int:
    """0 = Monday 00:00-01:00 UTC ... 167 = Sunday 23:00-24:00 UTC."""
    return int(((ts - MONDAY0) % WEEK) // 3600)


def outcome_of(exc: BaseException | str | None, latency: float | None = None) -> str:
    """The history outcome of an attempt that raised ``exc`` (None or "ok" = served; a string is
    an error class name, as :class:`flextier._types.Attempt` keeps it).

    A flex capacity error is a shed, unless it came after the request sat in the provider's
    queue for ``QUEUED_SHED_S`` or more (providers answer a queue timeout with the same capacity
    error, docs/capacity-model.md §3): then it is a timeout, like a client-side timeout.
    """
    if exc is None or exc == "ok":
        return "ok"
    from .. import errors

    cls = getattr(errors, exc, None) if isinstance(exc, str) else type(exc)
    if not isinstance(cls, type):
        return "error"
    if issubclass(cls, errors.Timeout):
        return "timeout"
    if issubclass(cls, errors.FlexCapacityUnavailable):
        return "timeout" if latency is not None and latency >= QUEUED_SHED_S else "shed"
    return "error"


def week_start(ts: float) -> float:
    """Monday 00:00 UTC of the week holding ``ts``."""
    return MONDAY0 + ((ts - MONDAY0) // WEEK) * WEEK


class Recorder:
    """Buffered writer of one domain's history. Thread-safe; cheap per call."""

    def __init__(self, path: str | None = None, *, emulated: bool = False, flush_every: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.domain = EMULATED if emulated else REAL
        self.disabled = path is None and history_disabled()
        self.path = str(path) if path is not None else str(default_history_path(self.domain))
        self.flush_every = flush_every
        self._mono, self._wall = monotonic, wall
        self._lock = threading.Lock()
        self._buf: dict[tuple[str, str, str, int, int], CellRow] = {}
        self._last: dict[tuple[str, str, str], float] = {}
        self._flushed_at = monotonic()
        self._warned = False
        self._bg: threading.Thread | None = None   # a periodic flush in progress
        self.recorded = 0

    def record_attempt(self, *, provider: str, model: str, tier: str, outcome: str, ts: float | None = None,
                       latency: float | None = None, output_tokens: int = 0) -> None:
        """Add one attempt (see the module doc). ``ts`` is when it ended, on the caller's clock
        (the emulated clock under ``--emulate``); ``tier`` is the served tier, or the requested one
        when it was not served; ``outcome`` one of :data:`OUTCOMES`."""
        if self.disabled:
            return
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        t = self._wall() if ts is None else float(ts)
        key = (provider, model, tier, week_of(t), hour_of_week(t))
        with self._lock:
            row = self._buf.get(key)
            if row is None:
                row = self._buf[key] = CellRow(*key)
            row.attempts += 1
            if outcome == "ok":
                row.ok += 1
                row.out_tokens += max(0, int(output_tokens or 0))
                if latency is not None and latency >= 0:
                    row.hist[bisect.bisect_left(LATENCY_EDGES, latency)] += 1
            elif outcome == "shed":
                row.sheds += 1
            elif outcome == "timeout":
                row.timeouts += 1
            else:
                row.errors += 1
            last = self._last.get(key[:3])
            if last is not None and 0 < t - last <= ACTIVE_GAP:
                row.active_s += t - last
            if last is None or t > last:
                self._last[key[:3]] = t
            self.recorded += 1
            due = self._bg is None and (self._mono() - self._flushed_at >= self.flush_every or len(self._buf) > 2000)
            if due:
                self._bg = threading.Thread(target=self._flush_bg, name="flextier-history-flush", daemon=True)
        if due:
            self._bg.start()  # type: ignore[union-attr]

    def _flush_bg(self) -> None:
        try:
            self._flush()
        finally:
            self._bg = None

    def flush(self) -> int:
        """Write the buffered counts (one transaction). Returns the number of cells written."""
        bg = self._bg
        if bg is not None and bg is not threading.current_thread():
            bg.join()
        return self._flush()

    def _flush(self) -> int:
        with self._lock:
            rows, self._buf = list(self._buf.values()), {}
            self._flushed_at = self._mono()
        if not rows or self.disabled:
            return 0
        try:
            with HistoryDB(self.path, self.domain) as db:
                return db.add(rows)
        except Exception as exc:  # history is advice: never fail the caller over it
            if not self._warned:
                log.warning("flextier: history not written (%s): %s", self.path, exc)
                self._warned = True
            return 0

    def close(self) -> None:
        self.flush()


_default: dict[str, Recorder] = {}
_default_lock = threading.Lock()


def default_recorder(emulated: bool = False) -> Recorder:
    """The process-wide recorder of a domain (wrap and the gateway share it); flushed at exit."""
    dom = EMULATED if emulated else REAL
    with _default_lock:
        rec = _default.get(dom)
        if rec is None or rec.path != str(default_history_path(dom)):
            if rec is not None:
                rec.flush()
            rec = _default[dom] = Recorder(emulated=emulated)
            atexit.register(rec.flush)
        return rec


def record_attempt(*, provider: str, model: str, tier: str, outcome: str, ts: float | None = None,
                   latency: float | None = None, output_tokens: int = 0, emulated: bool = False) -> None:
    """Add one attempt to the per-user history (the process-wide recorder of its domain).

    The one call ``wrap`` and the gateway make per attempt, after it ended::

        record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier=served or requested,
                       outcome=outcome_of(exc, latency), latency=latency, output_tokens=usage.output_tokens,
                       emulated=endpoint_is_emulator)
    """
    default_recorder(emulated).record_attempt(provider=provider, model=model, tier=tier, outcome=outcome, ts=ts,
                                              latency=latency, output_tokens=output_tokens)


def record_call(*, provider: str, model: str, attempts: Sequence[Any], output_tokens: int = 0,
                emulated: bool = False, ts: float | None = None) -> None:
    """Every attempt of one finished call (``wrap``'s engine, the gateway): each
    :class:`flextier._types.Attempt` becomes one history attempt; the answer's output tokens go
    with the last one when it was served. Never raises: history is advice."""
    try:
        rec = default_recorder(emulated)
        last = len(attempts) - 1
        for i, a in enumerate(attempts):
            oc = outcome_of(a.outcome, a.latency_s)
            rec.record_attempt(provider=provider, model=model, tier=a.served_tier or a.tier, outcome=oc,
                               latency=a.latency_s, output_tokens=output_tokens if (i == last and oc == "ok") else 0,
                               ts=ts)
    except Exception:  # noqa: BLE001 - an unwritable history must never fail a call
        pass
