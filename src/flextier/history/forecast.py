"""From history to the planner's ``availability`` input: expected flex throughput by hour of week.

The planner bends its uniform line by a forecast ``A(t)`` of relative flex availability
(docs/deadline-policy.md §3 rule 5); under ``--emulate`` that is the profile's own
``expected_headroom``. This module learns the same shape from the user's history
(docs/history.md §3):

* **Measure.** Per hour of week (UTC), the achieved flex throughput: served attempts per second
  of activity on the key (``ok / active_s``). When a job keeps flex busy this is proportional to
  the provider's spare flex capacity, the quantity ``expected_headroom`` describes.
* **Recency.** Each week's counts are weighted ``0.5 ** (age / HALF_LIFE_WEEKS)``.
* **Prior and shrinkage.** A cell with few observations is pulled toward the same hour of day on
  days of the same kind (weekday or weekend), and that toward the key's mean over all hours,
  each with ``PRIOR_ATTEMPTS`` pseudo-attempts. With no history at all the prior is the flat
  mean, which is the straight line: nothing is made up.
* **Minimum observations.** The planner gets the forecast only when at least ``MIN_CELLS`` hours
  of the week rest on ``MIN_OBS`` (weighted) attempts each, and there is at least an hour of
  activity in all; otherwise :meth:`Forecast.availability` is None and the line stays straight.
* **Shape.** Values are taken at hour centres and interpolated linearly (the weekly curve wraps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from .db import EMULATED, REAL, CellRow, HistoryDB, default_history_path, history_disabled
from .recorder import MONDAY0, WEEK, hour_of_week, week_of
from .schema import LATENCY_EDGES, N_BUCKETS

__all__ = ["Forecast", "CellEstimate", "load_forecast", "build_forecast", "learned_availability",
           "HALF_LIFE_WEEKS", "PRIOR_ATTEMPTS", "MIN_OBS", "MIN_CELLS"]

HALF_LIFE_WEEKS = 4.0
PRIOR_ATTEMPTS = 20.0      # pseudo-attempts pulling an hour-of-day group toward the key's mean
CELL_PRIOR_ACTIVE_S = 6 * 3600.0  # pseudo-seconds of activity pulling one hour of the week toward its
                                  # hour-of-day group (bursts make a short look noisy, however many attempts)
MIN_OBS = 20.0
MIN_CELLS = 24
MIN_ACTIVE_S = 3600.0
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class CellEstimate:
    """One hour of the week: what the history says (weighted) and the estimate after shrinkage."""

    how: int
    attempts: float          # recency-weighted attempts
    raw_attempts: int        # unweighted (the "observations" a user sees)
    ok: float
    sheds: float
    timeouts: float
    active_s: float
    throughput: float        # served per active second, after shrinkage (items/s)
    tokens_per_s: float      # output tokens per active second, after shrinkage
    p50: float | None        # latency quantiles of served attempts (s), None without any
    p90: float | None
    from_prior: bool         # fewer than MIN_OBS weighted attempts: mostly the prior

    @property
    def fail_share(self) -> float | None:
        return None if self.attempts <= 0 else (self.sheds + self.timeouts) / self.attempts

    @property
    def label(self) -> str:
        return f"{DAYS[self.how // 24]} {self.how % 24:02d}:00"


def _quantile(hist: list[float], q: float) -> float | None:
    n = sum(hist)
    if n <= 0:
        return None
    target, acc = q * n, 0.0
    for i, c in enumerate(hist):
        if c > 0 and acc + c >= target:
            lo = 0.0 if i == 0 else LATENCY_EDGES[i - 1]
            hi = LATENCY_EDGES[i] if i < len(LATENCY_EDGES) else LATENCY_EDGES[-1] * 2
            return lo + (hi - lo) * (target - acc) / c
        acc += c
    return LATENCY_EDGES[-1] * 2  # pragma: no cover


class Forecast:
    """The learned week of one (provider, model, tier). Call it like an availability function."""

    def __init__(self, cells: list[CellEstimate], *, provider: str, model: str, tier: str, domain: str,
                 path: str | None) -> None:
        assert len(cells) == 168
        self.cells = cells
        self.provider, self.model, self.tier, self.domain, self.path = provider, model, tier, domain, path
        self.observed_cells = sum(1 for c in cells if c.attempts >= MIN_OBS)
        self.total_attempts = sum(c.raw_attempts for c in cells)
        self.total_active_s = sum(c.active_s for c in cells)
        # and at least one served attempt: a history of refusals alone says nothing about when flex is quiet
        self.enough = (self.observed_cells >= MIN_CELLS and self.total_active_s >= MIN_ACTIVE_S
                       and any(c.ok > 0 for c in cells))
        top = max(c.throughput for c in cells)
        self._rel = [c.throughput / top if top > 0 else 1.0 for c in cells]

    # -- values ---------------------------------------------------------------------------
    def relative(self, how: int) -> float:
        """Availability of an hour relative to the best hour of the week (0..1)."""
        return self._rel[how % 168]

    def _interp(self, t: float, vals: list[float]) -> float:
        x = ((t - MONDAY0) % WEEK) / 3600.0 - 0.5      # hours since the first hour's centre
        i = math.floor(x)
        f = x - i
        return (1 - f) * vals[i % 168] + f * vals[(i + 1) % 168]

    def __call__(self, t: float) -> float:
        """Relative availability at clock value ``t`` (epoch seconds), interpolated between hours."""
        return self._interp(t, self._rel)

    def throughput_at(self, t: float, output_tokens: int | None = None) -> float:
        """Expected items/s at ``t`` on the history's own concurrency: by output tokens when the
        history has them and ``output_tokens`` is given (items of that size), else by items."""
        if output_tokens and any(c.tokens_per_s > 0 for c in self.cells):
            return self._interp(t, [c.tokens_per_s for c in self.cells]) / output_tokens
        return self._interp(t, [c.throughput for c in self.cells])

    def availability(self) -> Callable[[float], float] | None:
        """The planner's input: this forecast when it has enough observations, else None."""
        return self if self.enough else None

    def why_not(self) -> str:
        return (f"too little history: {self.observed_cells} of 168 hours have {MIN_OBS:g}+ attempts "
                f"(needs {MIN_CELLS}), {self.total_active_s / 3600:.1f} h of activity (needs "
                f"{MIN_ACTIVE_S / 3600:g}) and {sum(c.ok for c in self.cells):.0f} served (needs 1)")


def build_forecast(rows: Iterable[CellRow], now: float, *, provider: str, model: str, tier: str = "flex",
                   domain: str = REAL, path: str | None = None) -> Forecast:
    """Forecast from stored cells, weighting each week by its age at ``now``."""
    cur = week_of(now)
    acc = [[0.0] * (7 + N_BUCKETS) for _ in range(168)]
    raw = [0] * 168
    for r in rows:
        age = max(0, cur - r.week)
        w = 0.5 ** (age / HALF_LIFE_WEEKS)
        a = acc[r.how]
        for j, v in enumerate(r.values()):
            a[j] += w * v
        raw[r.how] += int(r.attempts)
    # columns: attempts ok sheds timeouts errors active_s out_tokens hist...

    def rates(idx: Iterable[int]) -> tuple[float, float, float, float]:
        n = ok = act = tok = 0.0
        for i in idx:
            n += acc[i][0]
            ok += acc[i][1]
            act += acc[i][5]
            tok += acc[i][6]
        return n, (ok / act if act > 0 else 0.0), (tok / act if act > 0 else 0.0), act

    n_g, thr_g, tok_g, _ = rates(range(168))
    groups: dict[tuple[bool, int], tuple[float, float]] = {}
    for weekend in (False, True):
        days = (5, 6) if weekend else (0, 1, 2, 3, 4)
        for hod in range(24):
            n, thr, tok, _ = rates(d * 24 + hod for d in days)
            k = PRIOR_ATTEMPTS
            groups[(weekend, hod)] = ((n * thr + k * thr_g) / (n + k) if n + k > 0 else thr_g,
                                      (n * tok + k * tok_g) / (n + k) if n + k > 0 else tok_g)
    cells = []
    for how in range(168):
        a = acc[how]
        n, act = a[0], a[5]
        thr = a[1] / act if act > 0 else 0.0
        tok = a[6] / act if act > 0 else 0.0
        pthr, ptok = groups[(how // 24 >= 5, how % 24)]
        k = CELL_PRIOR_ACTIVE_S
        est = (act * thr + k * pthr) / (act + k)
        est_tok = (act * tok + k * ptok) / (act + k)
        hist = a[7:]
        cells.append(CellEstimate(how=how, attempts=n, raw_attempts=raw[how], ok=a[1], sheds=a[2], timeouts=a[3],
                                  active_s=act, throughput=est, tokens_per_s=est_tok, p50=_quantile(hist, 0.5),
                                  p90=_quantile(hist, 0.9), from_prior=n < MIN_OBS))
    return Forecast(cells, provider=provider, model=model, tier=tier, domain=domain, path=path)


def load_forecast(provider: str, model: str, now: float, *, emulated: bool = False, tier: str = "flex",
                  path: str | None = None) -> Forecast:
    """The forecast of ``model`` from the user's history file of that domain (empty if none)."""
    domain = EMULATED if emulated else REAL
    p = path or str(default_history_path(domain))
    rows: list[CellRow] = []
    if not (path is None and history_disabled()):
        import os

        if os.path.exists(p):
            with HistoryDB(p, domain, create=False) as db:
                rows = list(db.rows(provider, model, tier))
    return build_forecast(rows, now, provider=provider, model=model, tier=tier, domain=domain, path=p)


def learned_availability(provider: str, model: str, now: float, *, emulated: bool = False,
                         path: str | None = None) -> Callable[[float], float] | None:
    """What ``run_job`` hands the planner when the caller gives no forecast: the learned one when the
    history has enough observations for this model, else None (the straight line)."""
    try:
        return load_forecast(provider, model, now, emulated=emulated, path=path).availability()
    except Exception:  # a broken history file must never stop a job; the line stays straight
        return None


_ = hour_of_week  # re-exported for callers that bin by hour
