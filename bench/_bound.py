"""The hindsight lower bound of the policy benchmarks: the most flex work any client could get.

Both ``bench/policy.py`` (real runs) and ``bench/policy_emusim.py`` (its pure replica) divide
flextier's cost by this bound, so it lives once, here, and ``tests/policy/test_hindsight_bound.py``
checks it against random feasible schedules.

**The model it bounds.** The emulator's flex pool (:class:`flextier.emulator.capacity.FlexPool`)
dispatches a flex request at time ``t`` only while fewer than ``n(t) = ceil(K * (theta_admit -
rho_s(t)))`` flex requests run (capped by ``K`` and by the client's own flex concurrency, the
same for every policy); a running request is never stopped below ``preempt_at``. ``rho_s`` is
the seeded standard load, replayed from the same knobs, seed and origin.

**Why it holds.** Colour the flex requests of any schedule greedily in start order with the
lowest colour free at their start. A request starting while ``r`` others run gets a colour of at
most ``r + 1 <= n(t)``, and requests of one colour never overlap. So colour ``j``'s requests all
start inside the *stretches* where ``n >= j`` (maximal intervals of the job window), one after
another. In a stretch of length ``L`` starting at ``a``:

* the last request starts before ``a + L``, so the colour's busy time is below ``L + s_max``
  (and below ``t1 - a`` when the stretch runs to the last useful start, since every request
  must finish by the deadline ``t1``);
* consecutive starts are at least the earlier request's service time apart, so with every
  request at least ``tau`` long at most ``floor(L / tau) + 1`` of them start there (the last
  one possibly right at the window's end), busy at most that many times ``s_max``. Each request shorter than ``tau`` can add at most one more start,
  worth at most ``s_max``, to one stretch.

Summing over colours and stretches, the flex work (slot-seconds of service) of any schedule is
at most ``sum(min(cap, (floor(L / tau) + 1) * s_max)) + (#items shorter than tau) * s_max``, for every
``tau``; the bound takes the best ``tau`` over the items' own service times. ``n`` is taken as
its largest value at any second of each minute, since ``rho_s`` moves with the diurnal curve
inside a minute (a larger ``n`` only loosens the bound). The cost bound is then a fractional
knapsack: the items that save the most per second of service go on flex until that work is
used up, the rest at standard. Relaxing whole requests, client latency, shedding, queue
timeouts and foresight only makes flex look better, so no policy run on the same trace pays less.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Sequence

MINUTE = 60.0


@dataclass(frozen=True)
class FlexWork:
    """The flex-work bound of one job window."""

    slot_seconds: float    # most slot-seconds of flex service any schedule can get
    stretches: int         # (colour, stretch) pairs it summed over
    tau: float             # the service-time split it chose
    short_items: int       # items shorter than tau (each allowed one extra start)


def flex_slots(knobs: Any, load: Any, t: float, cap: int) -> int:
    """``n(t)``: the most flex requests the emulator's pool lets run at ``t`` (its ``can_dispatch``
    rule, ``rho_s + n/K < theta_admit``), capped by ``K`` and the client's flex concurrency ``cap``."""
    x = knobs.slots * (knobs.theta_admit - load.rho(t))
    return min(knobs.slots, cap, math.ceil(x)) if x > 0 else 0


def minute_slots(n_at: Callable[[float], int], t0: float, t_end: float, *, step: float = 1.0) -> list[tuple[float, float, int]]:
    """``(lo, hi, n)`` for each minute overlapping ``[t0, t_end)``, clipped to it; ``n`` is the
    largest flex concurrency ``n_at`` allows at any sampled instant (every ``step`` s) of the minute."""
    out: list[tuple[float, float, int]] = []
    t = math.floor(t0 / MINUTE) * MINUTE
    while t < t_end:
        lo, hi = max(t, t0), min(t + MINUTE, t_end)
        if hi > lo:
            k = int(MINUTE / step)
            n = max(n_at(t + min(i * step, MINUTE - 1e-3)) for i in range(k + 1))
            out.append((lo, hi, n))
        t += MINUTE
    return out


def flex_work_bound(minutes: Sequence[tuple[float, float, int]], t1: float, sizes: Sequence[float]) -> FlexWork:
    """Most flex slot-seconds any schedule can serve (see the module doc for the proof).

    ``minutes`` are contiguous ``(lo, hi, n)`` intervals covering the window in which a request
    may start (job start to the deadline minus the shortest service time); ``t1`` is the
    deadline; ``sizes`` the service times of the job's items.
    """
    if not minutes or not sizes:
        return FlexWork(0.0, 0, 0.0, 0)
    s_max = max(sizes)
    # stretches per colour j: maximal runs of minutes with n >= j
    spans: list[tuple[float, float]] = []
    top = max(n for _, _, n in minutes)
    for j in range(1, top + 1):
        start: float | None = None
        for lo, hi, n in minutes:
            if n >= j:
                if start is None:
                    start = lo
                end = hi
            elif start is not None:
                spans.append((start, end))
                start = None
        if start is not None:
            spans.append((start, end))
    ordered = sorted(sizes)
    best: FlexWork | None = None
    for idx, tau in enumerate(ordered):
        if idx and tau == ordered[idx - 1]:
            continue
        total = idx * s_max                      # idx items are shorter than tau
        for a, b in spans:
            length = b - a
            cap = min(length + s_max, t1 - a)
            total += min(cap, (math.floor(length / tau) + 1) * s_max)
        if best is None or total < best.slot_seconds:
            best = FlexWork(total, len(spans), tau, idx)
    assert best is not None
    return best


def knapsack_saving(items: Sequence[tuple[float, Decimal, Decimal]], slot_seconds: float) -> tuple[Decimal, float]:
    """Most money flex can save with ``slot_seconds`` of work: ``items`` are ``(service_s, standard,
    flex)`` prices; fractional knapsack by saving per second. Returns ``(saving, items on flex)``."""
    saved = Decimal(0)
    on_flex = 0.0
    left = slot_seconds
    for s, std, flex in sorted(items, key=lambda j: (j[1] - j[2]) / Decimal(repr(j[0])), reverse=True):
        if left <= 0:
            break
        frac = min(1.0, left / s)
        saved += (std - flex) * Decimal(repr(frac))
        on_flex += frac
        left -= s * frac
    return saved, on_flex
