"""The pure capacity model against the reference formulas of capacity-model.md §6."""
from __future__ import annotations

import heapq
import math
import statistics

import pytest

from flextier.emulator.capacity import (FlexPool, StandardLoad, Verdict, base_rho, diurnal, expected_headroom,
                                        fluid_wait, shed_probability)
from flextier.emulator.knobs import Knobs
from flextier.emulator.clock import parse_start

T0 = parse_start("2026-11-23T00:00")     # a Monday


def test_reference_numbers_of_shed_formula():
    assert shed_probability(0.75) == pytest.approx(0.36, abs=0.01)
    assert shed_probability(0.5) == pytest.approx(0.04, abs=0.01)
    assert shed_probability(0.375) == pytest.approx(0.004, abs=0.002)


def test_diurnal_curve_shape():
    k = Knobs()
    assert diurnal(10.5) == pytest.approx(1.0) and diurnal(15.5) == pytest.approx(1.0)
    assert diurnal(12.5) < 0.9 and diurnal(3.0) == pytest.approx(0.25, abs=0.01)
    monday_peak = base_rho(T0 + 10.5 * 3600, k)
    saturday_peak = base_rho(T0 + 5 * 86400 + 10.5 * 3600, k)
    assert monday_peak == pytest.approx(0.75) and saturday_peak == pytest.approx(0.375)


@pytest.mark.parametrize("rho", [0.5, 0.75])
def test_shed_rate_matches_reference(rho):
    """Seeded: fraction of flex arrivals fast-shed at utilisation rho vs 1 - Phi(...)."""
    k = Knobs(load_mode="constant", constant_rho=rho, q_max=0, w_max_s=1e9)
    load = StandardLoad(k, seed=7, origin=T0)
    pool = FlexPool(k, load, mean_service_s=0.0)
    minutes = 40_000
    shed = 0
    for m in range(minutes):
        t = T0 + m * 60 + 30
        adm = pool.admit(t, m, 0.0, max_wait_s=1e9)
        shed += adm.verdict is Verdict.SHED
        pool.cancel(m)
    expected = shed_probability(rho, k.theta_shed, k.burst_sigma)
    assert shed / minutes == pytest.approx(expected, abs=0.025)


def test_fluid_wait_formula_constant_load():
    # rho 0.4, theta_admit 0.6, K 50 -> 10 slot-seconds per second of flex service
    w = fluid_wait(lambda t: 0.4, T0, work_s=300.0, slots=50, theta_admit=0.6, horizon_s=3600)
    assert w == pytest.approx(30.0)
    assert fluid_wait(lambda t: 0.7, T0, 10.0, 50, 0.6, horizon_s=900) == math.inf


def _simulate(k: Knobs, seed: int, n: int, rate: float, service_s: float) -> tuple[list[float], list[float]]:
    """Discrete-event run of a FlexPool under Poisson flex arrivals; returns (waits, fluid predictions)."""
    import random
    rng = random.Random(seed)
    pool = FlexPool(k, StandardLoad(k, seed, T0), mean_service_s=service_s)
    events: list[tuple[float, int, str, int]] = []
    t = T0
    for i in range(n):
        t += rng.expovariate(rate)
        heapq.heappush(events, (t, 0, "arrive", i))
    for m in range(int((t - T0) / 60) + 400):
        heapq.heappush(events, (T0 + m * 60 + 1e-6, 1, "tick", -1))
    arrived: dict[int, float] = {}
    waits, predicted = [], []

    def started(now: float, ids: list) -> None:
        for rid in ids:
            waits.append(now - arrived[rid])
            heapq.heappush(events, (now + service_s, 2, "done", rid))

    while events and len(waits) < n:
        now, _, kind, rid = heapq.heappop(events)
        if kind == "arrive":
            arrived[rid] = now
            predicted.append(pool.predict_wait(now, len(pool.queue), service_s) if
                             (pool.queue or not pool.can_dispatch(now)) else 0.0)
            adm = pool.admit(now, rid, service_s, max_wait_s=1e9)
            assert adm.verdict in (Verdict.DISPATCHED, Verdict.QUEUED)
            if adm.verdict is Verdict.DISPATCHED:
                started(now, [rid])
        elif kind == "done":
            pool.finish(now, rid)
        d, p = pool.step(now)
        assert not p
        started(now, d)
    return waits, predicted


def test_queue_wait_matches_fluid_formula_under_bursty_load():
    """Seeded: mean flex queue wait of the discrete pool vs the fluid W(t) of §6.3."""
    k = Knobs(load_mode="constant", constant_rho=0.45, burst_sigma=0.3, slots=64, q_max=10**6,
              theta_shed=10.0)
    waits, predicted = _simulate(k, seed=3, n=6000, rate=1.0, service_s=8.0)
    mw, mp = statistics.mean(waits), statistics.mean(predicted)
    assert mw > 1.0                       # there is real queueing at this load
    assert mw == pytest.approx(mp, rel=0.2)


def test_no_wait_when_headroom():
    k = Knobs(load_mode="constant", constant_rho=0.2, burst_sigma=0.0)
    waits, _ = _simulate(k, seed=1, n=500, rate=0.5, service_s=5.0)
    assert max(waits) == 0.0


def test_preemption_newest_first_and_requeue():
    k = Knobs(load_mode="constant", constant_rho=0.1, burst_sigma=0.0, slots=10)
    pool = FlexPool(k, StandardLoad(k, 0, T0))
    for i in range(5):
        assert pool.admit(T0, i, 1.0, 1e9).verdict is Verdict.DISPATCHED
    pool.knobs = pool.load.knobs = Knobs(load_mode="constant", constant_rho=0.8, burst_sigma=0.0, slots=10)
    d, p = pool.step(T0 + 1)
    assert p == [4, 3, 2] and not d            # 0.8 + 2/10 <= 1.0
    pool.requeue(2)
    assert list(pool.queue) == [2]


def test_predicted_wait_beyond_bound_is_timeout():
    k = Knobs(load_mode="constant", constant_rho=0.7, burst_sigma=0.0)
    pool = FlexPool(k, StandardLoad(k, 0, T0))
    adm = pool.admit(T0, "a", 5.0, max_wait_s=900)
    assert adm.verdict is Verdict.TIMEOUT


def test_seeded_load_is_reproducible():
    k = Knobs()
    a, b = StandardLoad(k, 5, T0), StandardLoad(k, 5, T0)
    c = StandardLoad(k, 6, T0)
    ts = [T0 + i * 60 for i in range(500)]
    assert [a.rho(t) for t in ts] == [b.rho(t) for t in ts]
    assert [a.rho(t) for t in ts] != [c.rho(t) for t in ts]
    bursts = [a.burst(t) for t in ts]
    assert statistics.mean(bursts) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("hour", [3.0, 9.0, 10.5, 12.5, 15.5, 19.0])
def test_expected_headroom_is_the_mean_over_the_seeded_bursts(hour):
    """The planner's forecast equals the headroom the emulator's own load gives on average over
    many seeded days (closed form vs the seeded AR(1) bursts), and is positive at the peak,
    where the curve alone says zero."""
    k = Knobs()
    t = T0 + 24 * 3600.0 + hour * 3600.0           # Tuesday
    # (the origin a few minutes back: the AR(1) burst is stationary from its first minute)
    draws = [max(0.0, k.theta_admit - StandardLoad(k, seed, t - 180.0).rho(t)) for seed in range(4000)]
    assert expected_headroom(t, k) == pytest.approx(statistics.fmean(draws), abs=0.006)
    if base_rho(t, k) > k.theta_admit:
        assert expected_headroom(t, k) > 0.0


def test_expected_headroom_without_bursts_is_the_curve():
    k = Knobs(burst_sigma=0.0)
    t = T0 + 3 * 3600.0
    assert expected_headroom(t, k) == pytest.approx(max(0.0, k.theta_admit - base_rho(t, k)))
