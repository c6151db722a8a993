"""Fast, pure simulation of the deadline policies against flex availability traces.

``python bench/policy_sim.py [--n 5000] [--deadlines 1h,3h,8h] [--json]``

Why a simulator next to the emulator bench (``bench/policy.py``): it runs the *same*
:class:`~flextier.policy.planner.Planner` the runner uses, item by item on a simulated
clock, in well under a second per scenario, so policy changes can be judged before the
slow end-to-end runs. It is evidence about the decision logic only: no HTTP, no AIMD, no
backoff, and flex behaves as a deterministic function of a per-minute trace.

Model. Flex keeps up to ``flex_cap`` attempts in flight; an attempt started in minute k is
served after ``L_k`` seconds with probability ``1 - q_k`` (deterministic credit counter,
so every policy sees the same flex luck) and is otherwise shed after 1 s (or after the
flex timeout for a "slow" shed). Standard starts at most ``r_s`` items/s and answers after
``tail`` seconds, always. Prices per item: standard 1.0, flex 0.5; shed attempts are free;
both copies of a hedged item are paid.

Policies: all-standard; flex with 3 tries then standard (the provider docs' pattern);
greedy (flex until the safety net); UP-tiers (the planner); and a hindsight lower bound:
the flex completions a flex-only run gets by the deadline on the same trace (keeping flex
full is the most flex any policy can get, since failed attempts are free), the rest at
standard price.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from flextier.policy.planner import (UP, Decision, InFlight, Observation, Planner,  # noqa: E402
                                     PlannerConfig)

H = 3600.0


@dataclass(frozen=True)
class Minute:
    """Flex conditions for one minute of the trace."""

    q: float                  # probability an attempt is shed
    latency: float            # seconds until a served attempt answers
    slow_shed: bool = False   # sheds arrive at the flex timeout instead of at once


@dataclass
class Scenario:
    name: str
    n: int
    deadline: float
    trace: list[Minute]
    forecast: list[Minute] | None = None   # expected conditions (no bursts), if the profile is known
    r_s: float = 5.0
    tail: float = 8.0
    flex_cap: int = 20
    flex_timeout: float = 900.0
    dt: float = 5.0


@dataclass
class Outcome:
    cost: float
    finished: int
    last_finish: float
    standard_items: int
    flex_items: int
    met: bool
    extra: dict = field(default_factory=dict)


# -- traces ------------------------------------------------------------------------------------

def p_shed(rho: float, theta: float = 0.8, sigma: float = 0.3) -> float:
    """capacity-model.md §6.3: fast-shed probability at standard utilisation ``rho``."""
    if rho <= 0:
        return 0.0
    z = (math.log(theta / rho) + sigma * sigma / 2) / sigma
    return 1 - 0.5 * (1 + math.erf(z / math.sqrt(2)))


def diurnal_trace(start_hour: float, hours: float, *, seed: int, weekend: bool = False, r_day: float = 4.0,
                  u_peak: float = 0.75, noise: bool = True) -> list[Minute]:
    """Per-minute flex conditions from the §6 capacity model: diurnal load, AR(1) bursts.
    ``noise=False`` gives the expected curve, which is what a forecast can know."""
    rng = random.Random(seed)
    out = []
    ln_b = 0.0
    for k in range(int(hours * 60) + 1):
        h = (start_hour + k / 60) % 24
        g = (0.5 * (1 - math.cos(2 * math.pi * (h - 4) / 24))) ** 2
        load = (1 / r_day + (1 - 1 / r_day) * g) * (0.5 if weekend else 1.0)
        if noise:
            ln_b = 0.8 * ln_b + rng.gauss(0, 0.3 * math.sqrt(1 - 0.64))
        rho = u_peak * load * math.exp(ln_b - 0.045 * noise)
        q = min(1.0, p_shed(rho) + (0.6 if rho > 0.6 else 0.0) * min(1.0, (rho - 0.6) / 0.2))
        out.append(Minute(q=q, latency=30 + 600 * max(0.0, rho - 0.45)))
    return out


def flat_trace(q: float, latency: float, hours: float, slow: bool = False) -> list[Minute]:
    return [Minute(q, latency, slow)] * (int(hours * 60) + 1)


def outage_trace(hours: float, start: float, length: float) -> list[Minute]:
    return [Minute(1.0, 30.0, True) if start <= k / 60 < start + length else Minute(0.02, 30.0)
            for k in range(int(hours * 60) + 1)]


# -- the engine ----------------------------------------------------------------------------------

Policy = Callable[[Observation], Decision]


def simulate(sc: Scenario, decide: Policy, *, flex_tries: int | None = None, horizon: float | None = None) -> Outcome:
    """Run one policy on one scenario. ``flex_tries`` sends an item to standard after that many
    shed flex attempts (the retry-then-standard baseline); the planner policies leave it None."""
    pending: deque[int] = deque(range(sc.n))
    forced: deque[int] = deque()                 # items a retry policy has sent to standard
    tries = [0] * sc.n
    finish: dict[int, float] = {}
    flex: dict[int, tuple[float, float, bool]] = {}
    std: list[tuple[float, int]] = []
    cost = 0.0
    std_items = flex_items = 0
    credit = 0.0
    tokens = 0.0
    now = 0.0
    end = horizon if horizon is not None else sc.deadline + 6 * H
    while len(finish) < sc.n and now <= end:
        for i, (s, e, ok) in list(flex.items()):
            if e <= now:
                del flex[i]
                if ok:
                    cost += 0.5
                    if i not in finish:
                        finish[i] = e
                        flex_items += 1
                elif i not in finish and all(j != i for _, j in std):
                    tries[i] += 1
                    if flex_tries is not None and tries[i] >= flex_tries:
                        forced.append(i)
                    else:
                        pending.appendleft(i)      # retried first, as a runner's backoff queue would
        keep = []
        for e, i in std:
            if e <= now:
                if i not in finish:
                    finish[i] = e
                    std_items += 1
            else:
                keep.append((e, i))
        std = keep
        if len(pending) and pending[0] in finish:
            pending = deque(i for i in pending if i not in finish)
        d = decide(Observation(
            now=now, done=len(finish), pending=len(pending) + len(forced),
            in_flight_standard=len(std), flex_in_flight=[InFlight(str(i), s) for i, (s, _, _) in flex.items()],
            standard_capacity=sc.r_s, standard_latency_p90=sc.tail))
        for hid in d.hedge:
            std.append((now + sc.tail, int(hid)))
            cost += 1.0
            tokens -= 1
        rate = sc.r_s if (d.standard_all or forced) else d.standard_rate
        tokens = min(tokens + rate * sc.dt, sc.r_s * sc.dt + 1.0)
        while tokens >= 1 and (forced or pending):
            i = forced.popleft() if forced else pending.popleft()
            std.append((now + sc.tail, i))
            cost += 1.0
            tokens -= 1
        if d.flex_open:
            m = sc.trace[min(len(sc.trace) - 1, int(now // 60))]
            while pending and len(flex) < sc.flex_cap:
                i = pending.popleft()
                credit += 1 - m.q
                if credit >= 1:
                    credit -= 1
                    flex[i] = (now, now + min(m.latency, sc.flex_timeout), True)
                else:
                    flex[i] = (now, now + (sc.flex_timeout if m.slow_shed else 1.0), False)
        now += sc.dt
    last = max(finish.values()) if finish else math.inf
    return Outcome(cost=cost, finished=len(finish), last_finish=last, standard_items=std_items,
                   flex_items=flex_items, met=len(finish) == sc.n and last <= sc.deadline)


def planner_for(sc: Scenario, **kw) -> Planner:
    return Planner(PlannerConfig(t0=0.0, total=sc.n, deadline=sc.deadline, standard_rate=sc.r_s, tail=sc.tail,
                                 flex_timeout=sc.flex_timeout, allow_batch=False, **kw))


class Greedy(Planner):
    """Flex until the safety net: the planner with its uniform-progress buying switched off."""

    def decide(self, obs: Observation) -> Decision:
        d = super().decide(obs)
        return Decision(mode=UP, flex_open=True, reason="greedy") if d.mode == UP else d


def availability(forecast: list[Minute], flex_cap: int) -> Callable[[float], float]:
    """Expected flex throughput (items/s) at a clock value, from a forecast trace."""
    def a(t: float) -> float:
        m = forecast[min(len(forecast) - 1, max(0, int(t // 60)))]
        return flex_cap * (1 - m.q) / m.latency
    return a


def run_policies(sc: Scenario) -> dict[str, Outcome]:
    fc = sc.forecast if sc.forecast is not None else sc.trace
    out = {
        "all-standard": simulate(sc, planner_for(sc, tier_mode="standard").decide),
        "flex-3-tries": simulate(sc, lambda o: Decision(mode="retry", flex_open=True), flex_tries=3),
        "greedy": simulate(sc, Greedy(PlannerConfig(t0=0.0, total=sc.n, deadline=sc.deadline, standard_rate=sc.r_s,
                                                    tail=sc.tail, flex_timeout=sc.flex_timeout,
                                                    allow_batch=False)).decide),
        "up-tiers": simulate(sc, planner_for(sc).decide),
        "up-tiers+tod": simulate(sc, planner_for(sc, availability=availability(fc, sc.flex_cap)).decide),
    }
    flex_only = simulate(sc, lambda o: Decision(mode="flex-only", flex_open=True), horizon=sc.deadline)
    f = flex_only.flex_items
    lb_cost = 0.5 * f + (sc.n - f)
    out["hindsight-lb"] = Outcome(cost=lb_cost, finished=sc.n, last_finish=sc.deadline, standard_items=sc.n - f,
                                  flex_items=f, met=True)
    return out


def scenarios(n: int, deadlines: list[float], seed: int) -> list[Scenario]:
    out = []
    for dl in deadlines:
        hours = dl / H + 7
        calm = flat_trace(0.02, 30.0, hours)
        traces = {   # name: (actual trace, forecast); an outage is never forecast
            "calm": (calm, None),
            "weekday-14h": (diurnal_trace(14.0, hours, seed=seed), diurnal_trace(14.0, hours, seed=0, noise=False)),
            "weekday-09h": (diurnal_trace(9.0, hours, seed=seed + 1), diurnal_trace(9.0, hours, seed=0, noise=False)),
            "weekend": (diurnal_trace(14.0, hours, seed=seed + 2, weekend=True),
                        diurnal_trace(14.0, hours, seed=0, weekend=True, noise=False)),
            "outage-late": (outage_trace(hours, start=dl / H * 0.5, length=dl / H), calm),
            "dead": (flat_trace(1.0, 30.0, hours, slow=True), calm),
        }
        for name, (tr, fc) in traces.items():
            out.append(Scenario(name=f"{name}/{dl / H:g}h", n=n, deadline=dl, trace=tr, forecast=fc))
    return out


def parse_hours(text: str) -> list[float]:
    return [float(x.strip().rstrip("h")) * H for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--deadlines", default="1h,3h,8h")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for sc in scenarios(args.n, parse_hours(args.deadlines), args.seed):
        res = run_policies(sc)
        base = res["all-standard"].cost
        rows.append({"scenario": sc.name, **{k: {"cost_ratio": round(v.cost / base, 4), "met": v.met,
                                                  "standard_items": v.standard_items}
                                              for k, v in res.items()}})
    if args.json:
        print(json.dumps({"n": args.n, "rows": rows}, indent=1))
        return 0
    names = ["all-standard", "flex-3-tries", "greedy", "up-tiers", "up-tiers+tod", "hindsight-lb"]
    print(f"{'scenario':<18}" + "".join(f"{n:>15}" for n in names) + f"{'up/lb':>7}{'tod/lb':>7}")
    for r in rows:
        cells = "".join(f"{r[n]['cost_ratio']:>13.3f}{'' if r[n]['met'] else ' !':<2}" for n in names)
        lb = r["hindsight-lb"]["cost_ratio"]
        print(f"{r['scenario']:<18}{cells}{r['up-tiers']['cost_ratio'] / lb:>7.3f}"
              f"{r['up-tiers+tod']['cost_ratio'] / lb:>7.3f}")
    print("cost as a ratio to all-standard; '!' = deadline missed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
