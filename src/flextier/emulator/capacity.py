"""The flex capacity model of docs/capacity-model.md, as pure functions and state.

No I/O, no clocks, no asyncio: every method takes the time ``now`` (emulated POSIX
seconds) explicitly, so the statistical tests can drive it through days of load in
milliseconds, and the async scheduler (:mod:`.scheduler`) is only glue.

* :class:`StandardLoad` — synthetic (fluid) standard utilisation
  ``rho_s(t) = base(t) * B(t)``: base is ``u_peak * W(dow) * D(hour)`` (or a
  constant), ``B`` a mean-one log-normal AR(1) burst per minute, seeded.
* :class:`FlexPool` — K slots per model; real flex requests occupy slots, wait in a
  FIFO queue, are dispatched only while ``U < theta_admit``, shed fast when
  ``U >= theta_shed`` and the queue is full, refused when the predicted wait exceeds
  the bound, and preempted newest-first when standard demand needs the slots.
  The same queue/slot state is what a batch lane reuses (dispatching below
  ``theta_batch``).
"""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Callable, Iterable

from .knobs import Knobs

__all__ = [
    "diurnal", "week_factor", "base_rho", "expected_headroom", "StandardLoad", "FlexPool", "Admission", "Verdict",
    "shed_probability", "fluid_wait",
]

MINUTE = 60.0


# -- standard demand --------------------------------------------------------------
def diurnal(hour: float, r_day: float = 4.0, shape: str = "two_hump") -> float:
    """D(h): daily demand factor, 1 at the peak, ``1/r_day`` at the trough."""
    r = 1.0 / r_day
    h = hour % 24.0
    if shape == "single":
        g = (0.5 * (1 - math.cos(2 * math.pi * (h - 4.0) / 24.0))) ** 2
    else:  # two bumps (10.5 h, 15.5 h) with a lunch dip at 12.5 h and quiet nights
        def bump(c: float) -> float:
            d = min(abs(h - c), 24.0 - abs(h - c))
            return math.exp(-0.5 * (d / 2.5) ** 2)
        g = max(bump(10.5), bump(15.5))
    return r + (1.0 - r) * g


def week_factor(weekday: int, weekend_factor: float = 0.5) -> float:
    """W(dow): 1 Mon-Fri, ``weekend_factor`` Sat/Sun (weekday 0 = Monday)."""
    return weekend_factor if weekday >= 5 else 1.0


def base_rho(t: float, k: Knobs) -> float:
    """Standard utilisation before bursts at emulated time ``t``."""
    if k.load_mode == "constant":
        return k.constant_rho
    local = t + k.tz_offset_h * 3600.0
    dt = datetime.fromtimestamp(local, tz=timezone.utc)
    hour = dt.hour + dt.minute / 60.0 + dt.second / 3600.0
    return k.u_peak * week_factor(dt.weekday(), k.weekend_factor) * diurnal(hour, k.r_day, k.diurnal_shape)


def expected_headroom(t: float, k: Knobs) -> float:
    """Flex headroom a client can expect at ``t``: ``E[max(0, theta_admit - rho_s(t))]``.

    It knows the daily curve (``base_rho``) and the burst law (mean-one log-normal, ``burst_sigma``
    the sd of its log), not the seeded bursts themselves. Taking the expectation matters at the
    peak: ``theta_admit - base_rho`` is negative there, yet bursts below the mean still open flex
    slots, and a forecast of zero made the planner buy standard for hours it did not need to
    (a job started at 09:00 with an 8 h deadline). Closed form: a put on a log-normal.
    """
    rho, th, sig = base_rho(t, k), k.theta_admit, k.burst_sigma
    if rho <= 0.0:
        return th
    if sig <= 0.0:
        return max(0.0, th - rho)
    d1 = (math.log(rho / th) + sig * sig / 2.0) / sig
    d2 = d1 - sig
    return max(0.0, th * _phi(-d2) - rho * _phi(-d1))


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def shed_probability(rho: float, theta_shed: float = 0.8, sigma: float = 0.3) -> float:
    """Reference fast-shed probability: P(rho * B >= theta_shed), B mean-one log-normal."""
    if rho <= 0:
        return 0.0
    if sigma <= 0:
        return 1.0 if rho >= theta_shed else 0.0
    z = (math.log(theta_shed / rho) + sigma * sigma / 2.0) / sigma
    return 1.0 - 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


class StandardLoad:
    """rho_s(t): base curve times a seeded per-minute AR(1) log-normal burst.

    Minutes are counted from ``origin`` (the emulator's start), and the burst
    sequence is generated forward from there, so a seed fixes the whole day.
    """

    def __init__(self, knobs: Knobs, seed: int | str, origin: float) -> None:
        self.knobs = knobs
        self.origin = math.floor(origin / MINUTE) * MINUTE
        self._rng = random.Random(f"burst:{seed}")
        self._lnx: list[float] = []      # zero-mean AR(1) with stationary sd burst_sigma
        self._memo: tuple[float, Knobs, float] | None = None

    def _x(self, k: int) -> float:
        sig, a = self.knobs.burst_sigma, self.knobs.burst_ar
        if sig <= 0:
            return 0.0
        xs = self._lnx
        while len(xs) <= k:
            if not xs:
                xs.append(self._rng.gauss(0.0, sig))
            else:
                xs.append(a * xs[-1] + self._rng.gauss(0.0, sig * math.sqrt(1.0 - a * a)))
        return xs[k]

    def minute_index(self, t: float) -> int:
        return max(0, int((t - self.origin) // MINUTE))

    def burst(self, t: float) -> float:
        sig = self.knobs.burst_sigma
        if sig <= 0:
            return 1.0
        return math.exp(self._x(self.minute_index(t)) - sig * sig / 2.0)

    def rho(self, t: float) -> float:
        """Standard utilisation (fraction of K) during the minute containing ``t``."""
        # admission asks for the same instant several times; remember the last answer
        memo = self._memo
        if memo is not None and memo[0] == t and memo[1] is self.knobs:
            return memo[2]
        r = base_rho(t, self.knobs) * self.burst(t)
        self._memo = (t, self.knobs, r)
        return r

    def next_change(self, t: float) -> float:
        """Start of the next minute: rho_s is piecewise constant per minute."""
        return self.origin + (self.minute_index(t) + 1) * MINUTE


def fluid_wait(rho_at: Callable[[float], float], now: float, work_s: float, slots: int,
               theta_admit: float, horizon_s: float) -> float:
    """W(t) = inf{tau : integral_t^{t+tau} K*max(0, theta_admit - rho(s)) ds >= work_s}.

    ``work_s`` is slot-seconds of flex work ahead of (and including) the request.
    rho is piecewise constant per minute. Returns ``math.inf`` beyond ``horizon_s``.
    With ``work_s == 0`` it is the time until any flex headroom appears.
    """
    t, acc = now, 0.0
    end = now + horizon_s
    while t <= end:
        nxt = (math.floor(t / MINUTE) + 1) * MINUTE
        rate = slots * max(0.0, theta_admit - rho_at(t))   # slot-seconds per second
        if rate > 0:
            if work_s <= 0:
                return t - now
            need = work_s - acc
            if rate * (nxt - t) >= need:
                return t - now + need / rate
            acc += rate * (nxt - t)
        t = nxt
    return math.inf


# -- flex pool ----------------------------------------------------------------------
class Verdict(str, Enum):
    DISPATCHED = "dispatched"   # got a slot now
    QUEUED = "queued"           # waits in the FIFO queue
    SHED = "shed"               # fast shed (429/503), not billed
    TIMEOUT = "timeout"         # predicted wait beyond the bound, not billed


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    predicted_wait_s: float = 0.0
    utilisation: float = 0.0
    reason: str = ""


class FlexPool:
    """Slots, FIFO queue and preemption for one model's flex lane.

    Ids are opaque hashables. ``service_s`` is a request's service demand (emulated
    seconds of one slot), used for the predicted-wait estimate.
    """

    def __init__(self, knobs: Knobs, load: StandardLoad, mean_service_s: float | None = None) -> None:
        self.knobs = knobs
        self.load = load
        self.queue: deque = deque()
        self.running: dict = {}          # id -> dispatch time, insertion order = start order
        self._service: dict = {}         # id -> service demand
        default = (knobs.ttft_s + knobs.per_output_token_s * knobs.output_tokens_median) * knobs.latency_scale
        self.mean_service_s = default if mean_service_s is None else mean_service_s
        self.shed_count = 0
        self.timeout_count = 0
        self.preempt_count = 0

    # utilisation ----------------------------------------------------------------
    def rho(self, now: float) -> float:
        return self.load.rho(now)

    def utilisation(self, now: float) -> float:
        """U(t): standard (fluid) plus running flex, as a fraction of K."""
        return self.rho(now) + len(self.running) / self.knobs.slots

    def can_dispatch(self, now: float, threshold: float | None = None) -> bool:
        k = self.knobs
        th = k.theta_admit if threshold is None else threshold
        n = len(self.running)
        rho = self.rho(now)
        # below the admit threshold, and the new request must not itself trigger preemption
        return n < k.slots and rho + n / k.slots < th and rho + (n + 1) / k.slots <= k.preempt_at

    def predict_wait(self, now: float, ahead: int, service_s: float | None = None) -> float:
        """Fluid estimate of the queue wait for a request with ``ahead`` requests before it."""
        w = self.mean_service_s if service_s is None else (self.mean_service_s + service_s) / 2
        k = self.knobs
        return fluid_wait(self.load.rho, now, (ahead + 1) * w if w > 0 else 0.0, k.slots,
                          k.theta_admit, horizon_s=max(k.w_max_s, 60.0) * 2)

    # lifecycle --------------------------------------------------------------------
    def admit(self, now: float, rid: object, service_s: float, max_wait_s: float, u: float = 1.0) -> Admission:
        """Decide a new flex request's fate. ``u`` is a uniform draw for forced shedding."""
        k = self.knobs
        U = self.utilisation(now)
        if u < k.flex_shed_p:
            self.shed_count += 1
            return Admission(Verdict.SHED, utilisation=U, reason="capacity")
        if U >= k.theta_shed and len(self.queue) >= k.q_max * k.replicas:
            self.shed_count += 1
            return Admission(Verdict.SHED, utilisation=U, reason="saturated")
        self._service[rid] = service_s
        if not self.queue and self.can_dispatch(now):
            self.running[rid] = now
            return Admission(Verdict.DISPATCHED, utilisation=U)
        wait = self.predict_wait(now, len(self.queue), service_s)
        if wait > max_wait_s:
            self._service.pop(rid, None)
            self.timeout_count += 1
            return Admission(Verdict.TIMEOUT, predicted_wait_s=wait, utilisation=U, reason="predicted_wait")
        self.queue.append(rid)
        return Admission(Verdict.QUEUED, predicted_wait_s=wait, utilisation=U)

    def step(self, now: float) -> tuple[list, list]:
        """Preempt (newest first) while standard needs the slots, then dispatch FIFO.

        Returns ``(dispatched_ids, preempted_ids)``. Preempted ids are out of the pool;
        the caller either :meth:`requeue` s them or ends them.
        """
        k = self.knobs
        preempted = []
        rho = self.rho(now)
        while self.running and rho + len(self.running) / k.slots > k.preempt_at:
            rid = next(reversed(self.running))
            del self.running[rid]
            preempted.append(rid)
            self.preempt_count += 1
        dispatched = []
        while self.queue and self.can_dispatch(now):
            rid = self.queue.popleft()
            self.running[rid] = now
            dispatched.append(rid)
        return dispatched, preempted

    def requeue(self, rid: object) -> None:
        """Put a preempted request back at the head of the queue."""
        self.queue.appendleft(rid)

    def finish(self, now: float, rid: object) -> None:
        """A running request completed; learn its service time for wait prediction."""
        started = self.running.pop(rid, None)
        self._service.pop(rid, None)
        if started is not None:
            self.mean_service_s = 0.9 * self.mean_service_s + 0.1 * max(0.0, now - started)

    def cancel(self, rid: object) -> bool:
        """Drop a request (client gone, timed out). True if it was still queued."""
        self._service.pop(rid, None)
        self.running.pop(rid, None)
        try:
            self.queue.remove(rid)
            return True
        except ValueError:
            return False

    def next_change(self, now: float) -> float:
        return self.load.next_change(now)

    def snapshot(self, now: float) -> dict:
        return {"rho_s": round(self.rho(now), 4), "utilisation": round(self.utilisation(now), 4),
                "running": len(self.running), "queued": len(self.queue), "slots": self.knobs.slots,
                "shed": self.shed_count, "timeouts": self.timeout_count, "preempted": self.preempt_count}

    def ids(self) -> Iterable:
        return list(self.queue) + list(self.running)
