"""How far the client lags the emulated clock, and whether that distorts what a run shows.

Why this exists: under ``--emulate --time-scale 600`` one wall second is ten emulated
minutes. Python spends real CPU on every request (the SDK, httpx, the runner and, in the
same process, the emulator itself); when the process is busy, a request's answer waits
for the event loop, and every wall millisecond of that wait is 0.6 emulated seconds. At
x600 with 256 requests in flight, standard p50 latency read 207-450 s where the emulated
provider served in about 4 s, and the extra emulated minutes also ate the deadline.

Nothing is wrong with the emulator's model or the runner's timing: the clock really moved
that far while the client was busy. So the honest fix is to measure it and say so.
:class:`LagMonitor` is a small task that asks the event loop to wake it every
``interval`` wall seconds and records how late it woke (the loop's scheduling lag): the
time any ready callback, such as a finished response, waits before it runs.
:func:`assess` turns that into an estimate of how much of a latency figure is the
client's own lag, and a lower time scale to suggest.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

__all__ = ["LagMonitor", "LagSummary", "assess", "describe", "suggest_scale", "record", "record_lag", "latest",
           "EVENT_KIND"]

#: the store event that keeps a run's lag summary (read back by ``flextier report``)
EVENT_KIND = "clock_lag"
#: loop wake-ups of lag a request's latency absorbs (send, headers, body, completion).
#: Calibrated against the emulator's own ledger on this 2-core machine: the client's p50
#: exceeded the provider's by 0.8-5 times the loop's mean emulated lag (x10-x1000, 8-256 in
#: flight, weighted by requests in flight; median 1.6). 1.5 errs towards saying less.
WAKEUPS_PER_REQUEST = 1.5
#: distortion above this share of the p50 latency is reported
THRESHOLD = 0.05
_NICE_SCALES = (1000, 600, 300, 120, 60, 30, 10, 5, 2, 1)


@dataclass
class LagSummary:
    """Loop lag of one run, in wall seconds, with the time scale it was measured at."""

    time_scale: float
    samples: int
    mean_wall: float      # weighted by requests in flight x time: the lag a request waits through
    p50_wall: float
    p90_wall: float
    max_wall: float

    @property
    def mean_emulated(self) -> float:
        return self.mean_wall * self.time_scale

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LagSummary":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class LagMonitor:
    """Samples the event loop's wake-up lag while a job runs (cheap: 20 wake-ups a second).

    ``wall`` is injectable so tests can drive it; the real one is :func:`time.monotonic`.
    """

    def __init__(self, time_scale: float, *, interval: float = 0.05, inflight: Callable[[], int] | None = None,
                 wall: Callable[[], float] = time.monotonic, keep: int = 20000) -> None:
        self.time_scale = float(time_scale)
        # requests in flight when a sample is taken: the lag that matters is the one requests wait
        # through, so each sample counts by (requests in flight) x (the wall time it covers)
        self.inflight = inflight
        self._w = 0.0
        self._wlag = 0.0
        self.interval = interval
        self.wall = wall
        self.keep = keep
        self.lags: list[float] = []
        self._n = 0
        self._task: asyncio.Task[Any] | None = None

    def record(self, lag: float, inflight: int | None = None) -> None:
        """One sample (wall seconds late); a bounded reservoir keeps memory flat on long jobs."""
        self._n += 1
        lag = max(0.0, lag)
        w = (self.interval + lag) * (1 if inflight is None else inflight)
        self._w += w
        self._wlag += w * lag
        if len(self.lags) < self.keep:
            self.lags.append(lag)
        else:  # every k-th sample replaces one, spread over the run
            self.lags[self._n % self.keep] = lag

    async def _loop(self) -> None:
        while True:
            t = self.wall()
            await asyncio.sleep(self.interval)
            lag = self.wall() - t - self.interval
            try:
                n = self.inflight() if self.inflight is not None else None
            except Exception:
                n = None
            self.record(lag, n)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> LagSummary | None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return self.summary()

    def summary(self) -> LagSummary | None:
        if not self.lags:
            return None
        v = sorted(self.lags)
        q = lambda p: v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))]  # noqa: E731
        mean = self._wlag / self._w if self._w > 0 else sum(v) / len(v)
        return LagSummary(self.time_scale, self._n, mean, q(0.5), q(0.9), v[-1])


def suggest_scale(time_scale: float, ratio: float, threshold: float = THRESHOLD) -> float:
    """A round time scale at which the lag should cost under ``threshold`` of the true latency.

    ``ratio`` is the estimated lag over the true (lag-free) latency. A burst of requests costs
    the same wall time at any scale, so the emulated lag is taken as proportional to the scale:
    scaling down by ratio/threshold is the guess (conservative when the load also drops).
    """
    target = time_scale * threshold / max(ratio, 1e-9)
    for s in _NICE_SCALES:
        if s <= target and s < time_scale:
            return float(s)
    return 1.0


def assess(lag: LagSummary | None, latency_p50: float | None) -> dict[str, Any] | None:
    """How much of a p50 latency (emulated seconds) is the client's own lag, and what to do.

    Returns None when there is nothing to say (no samples, no latency, x1 time, or the lag
    is under :data:`THRESHOLD` of the latency); else a dict with the estimated ``inflation_s``
    (emulated seconds a request spends waiting for the busy client), its ``share`` of the
    p50 (at most 1), and a ``suggested_scale``.
    """
    if lag is None or not latency_p50 or lag.time_scale <= 1:
        return None
    inflation = WAKEUPS_PER_REQUEST * lag.mean_emulated
    if inflation <= THRESHOLD * latency_p50:
        return None
    true = max(latency_p50 - inflation, THRESHOLD * latency_p50)  # what the provider itself took, roughly
    return {"inflation_s": min(inflation, latency_p50), "share": min(1.0, inflation / latency_p50),
            "time_scale": lag.time_scale, "suggested_scale": suggest_scale(lag.time_scale, inflation / true),
            "lag_mean_ms": lag.mean_wall * 1000, "lag_p90_ms": lag.p90_wall * 1000}


def describe(a: dict[str, Any]) -> str:
    """One line for the summary and the report."""
    share = "most" if a["share"] >= 0.995 else f"{a['share'] * 100:.0f}%"
    infl = a["inflation_s"]
    infl_s = f"{infl:.1f}" if infl < 10 else f"{infl:.0f}"
    return (f"clock lag: at x{a['time_scale']:g} this process could not keep up with emulated time: requests "
            f"waited {a['lag_mean_ms']:.0f} ms (wall) on average for the busy event loop (p90 of samples "
            f"{a['lag_p90_ms']:.0f} ms), roughly {infl_s} emulated s of each request's latency, {share} of the p50; "
            f"latencies, throughput and the deadline margin shown are distorted. For true figures rehearse "
            f"with --time-scale {a['suggested_scale']:g} or lower (or fewer requests in flight: --concurrency)")


def record(store: Any, summary: LagSummary | None, ts: float) -> None:
    """Keep a run's lag summary in the job's store, for ``flextier report`` later."""
    if summary is None:
        return
    store.event(ts, EVENT_KIND, summary.as_dict())
    store.flush()


def latest(store: Any) -> LagSummary | None:
    """The lag summary of the job's latest measured run, if any."""
    for _ts, kind, detail in reversed(store.events()):
        if kind == EVENT_KIND and isinstance(detail, dict):
            try:
                return LagSummary.from_dict(detail)
            except (KeyError, TypeError):
                return None
    return None


def record_lag(store: Any, monitor: LagMonitor | None, ts: float) -> None:
    """End of a run: keep the monitor's summary in the store. Never raises (a display aid)."""
    if monitor is None:
        return
    try:
        record(store, monitor.summary(), ts)
    except Exception:  # pragma: no cover - a closed or broken store must not mask the run's outcome
        pass
