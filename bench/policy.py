"""Benchmark: deadline policies end to end, on the real emulator and the real runner.

``python bench/policy.py [--n 2000] [--deadlines 1h,3h,8h,24h,48h] [--seeds 1] [--quick] [--json]``

Every scenario (N simple requests to ``openai/gpt-5.4-mini``, started at 14:00 on a weekday
under the emulator's ``weekday`` profile, one emulated deadline) is run once per policy, each
against a fresh emulator child process with the *same seed and start* (so the same standard
load, minute by minute), by the real runner (:func:`flextier.jobs.api.astream_job`) on the
emulator's scaled clock:

* ``all-standard``  — ``tier="standard"``: the cost every ratio is divided by;
* ``flex-3-then-standard`` — the provider-docs pattern: each item tries flex up to 3 times
  (the runner's backoff between tries), then standard (:class:`FlexRetriesPolicy`);
* ``greedy``        — flex only until the safety net, then standard (:class:`GreedyPolicy`);
* ``flextier``      — ``tier="auto"``: the UP-tiers planner (and the batch lane, when the
  runner has it and the deadline allows it);
* ``lower-bound``   — hindsight, computed (not run), see below.

The baselines go through the runner's one policy hook, ``RunOptions(policy=...)``, so they
share everything else with flextier (store, AIMD, backoff, hedging). Costs are the emulator's
billed ledger (``GET /_emulator/ledger``: every billed row's ``cost``, duplicates included),
never client estimates. A deadline is met when every item succeeded and the last result was
durable (committed, as the runner reports it) before the deadline on the emulator's clock.

**The hindsight lower bound** (``bench/_bound.py``, which has the proof). The emulator's flex
pool is the pure model of ``flextier.emulator.capacity``: a flex request starts only while fewer
than ``n(t) = ceil(K * (theta_admit - rho_s(t)))`` flex requests run, with ``rho_s`` the seeded
standard load (:class:`StandardLoad`, replayed here from the same knobs, seed and origin as the
emulator child), capped by the runner's flex concurrency (every policy has the same cap), and a
running request is not stopped below ``preempt_at``. Colouring any schedule's flex requests
greedily shows that colour ``j`` runs one request at a time, started inside the stretches where
``n >= j``; a stretch of length ``L`` then holds at most ``floor(L / tau) + 1`` whole requests of
at least ``tau`` seconds, and at most ``L + s_max`` seconds of work (``s_max`` the longest service
time). The sum over colours and stretches is the most flex work any client can get in the
window (job start to deadline); requests shorter than ``tau`` are allowed an extra start each.
The items themselves are the all-standard run's ledger rows (same prompts, same seeded outputs):
service time ``s_i`` from the emulator's own latency formula and knobs, standard price ``p_i``
and flex price ``f_i`` from the catalog for the billed tokens. The bound puts on flex the items
that save the most per second of service (a fractional knapsack) and the rest at standard.
Relaxing "no client latency, no shedding, no queue timeouts, perfect foresight" only makes flex
look better, so no policy run through this emulator can pay less
(``tests/policy/test_hindsight_bound.py`` tries random schedules and the emulator's own flex pool
against it). Batch is priced like flex in the catalog and only helps where the flex bound already
leaves work on standard; when the window is at least the 24 h batch SLA the bound is everything
at the cheaper of the two.

**Time scale.** The client and the emulator share two cores and together do a few hundred
requests per wall second, so the emulator's scale is chosen per scenario so that the
deadline window lasts ``--window-wall`` wall seconds (50 by default: x72 for 1 h, x3456 for
48 h), and the emulated load is made heavier per request instead (``latency_scale=20``:
~20 s per request; ``slots=32``) so that wall-clock overheads stay small against emulated
service times. With ``c_s=48`` standard requests in flight a 2,000-item job takes ~15 min
on standard alone. The default N is 2,000 (not 5,000) so the full run stays under ~15 min.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import httpx

from _bound import flex_slots, flex_work_bound, knapsack_saving, minute_slots
from _harness import emulator_process, ledger, parse_seeds
from flextier.catalog import default_catalog
from flextier.cost import Usage, price_usage
from flextier.emulator.capacity import StandardLoad, expected_headroom
from flextier.emulator.clock import ScaledClock, parse_start
from flextier.emulator.profiles import build_knobs
from flextier.jobs.api import astream_job
from flextier.policy.baselines import FlexRetriesPolicy, GreedyPolicy
# Imported before any clock starts: the OpenAI SDK takes ~0.7 s to import, which at x216 would be
# 2.5 emulated minutes of a 3 h job spent before the first request (a real job never sees that).
import flextier.providers.openai  # noqa: E402,F401

MODEL = "openai/gpt-5.4-mini"
PROVIDER = "openai"
POLICIES = ("all-standard", "flex-3-then-standard", "greedy", "flextier")
RUN_KW: dict[str, dict[str, Any]] = {
    "all-standard": {"tier": "standard"},
    "flex-3-then-standard": {"tier": "auto", "policy": FlexRetriesPolicy},
    "greedy": {"tier": "auto", "policy": GreedyPolicy},
    "flextier": {"tier": "auto"},
}
KNOBS = {"slots": 32, "latency_scale": 20.0}   # on top of the weekday profile
FLEX_CONC, STD_CONC, MAX_TOKENS = 32, 48, 64
H = 3600.0


@dataclass
class Scenario:
    name: str
    n: int
    deadline_s: float
    seed: int
    start: str = "2026-11-24T14:00"   # a Tuesday
    profile: str = "weekday"

    @property
    def time_scale(self) -> float:
        return self.deadline_s / WINDOW_WALL


@dataclass
class Run:
    policy: str
    ok: int = 0
    ok_by_deadline: int = 0
    failed: int = 0
    job_start: float = 0.0
    deadline: float = 0.0
    origin: float = 0.0          # the emulator's clock origin (its --start), for the load replay
    last_result: float | None = None
    met: bool = False
    cost: Decimal = Decimal(0)
    cost_by_tier: dict[str, Decimal] = field(default_factory=dict)
    items_by_tier: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    wall_s: float = 0.0
    error: str | None = None
    ledger: list[dict] = field(default_factory=list, repr=False)


WINDOW_WALL = 60.0
GRACE = 0.1   # a run is stopped this share of its window after a missed deadline


# -- the emulator child --------------------------------------------------------------------------

_lag_wall = [0.5]   # wall seconds from the child's clock start to the job start (learned)


@contextlib.contextmanager
def emulator(sc: Scenario) -> Iterator[tuple[str, float, ScaledClock]]:
    """A ``flextier emulate`` child for ``sc``; yields (url, its clock origin, a synced clock).

    The child's clock starts before it can answer, so its start is set earlier by the lag
    learned from the previous launches (whole minutes: the load's minutes stay aligned), and
    the job starts close to the scenario's start time.
    """
    scale = sc.time_scale
    want = parse_start(sc.start)
    start = want - math.ceil(_lag_wall[0] * scale / 60.0) * 60.0
    iso = datetime.fromtimestamp(start, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    with emulator_process(sc.profile, *(f"{k}={v}" for k, v in KNOBS.items()), seed=sc.seed, time_scale=scale,
                          start=iso) as url:
        data = httpx.get(f"{url}/_emulator/clock", timeout=5).json()
        yield url, parse_start(iso), ScaledClock(float(data["time_scale"]), float(data["now"]))


# -- one run -------------------------------------------------------------------------------------

def items(n: int) -> list[dict]:
    return [{"id": f"r{i}", "prompt": f"Item {i}: give three short facts about the number {i}."}
            for i in range(n)]


FORECAST = "oracle"   # --forecast: oracle | none | learned-1w | learned-4w


def forecast(sc: Scenario) -> Any:
    """flextier's time-of-day forecast (capacity-model.md §7.4 step 5): the flex headroom the
    profile's daily curve and burst law lead a client to expect (:func:`expected_headroom`), without
    the seeded bursts the bound sees (what a client can know from the provider's diurnal pattern).

    ``--forecast none`` gives the straight line; ``learned-1w`` / ``learned-4w`` the forecast learned
    from one or four emulated weeks of history (``policy_emusim.learned_forecast``, the same history
    path ``run_job`` reads)."""
    if FORECAST == "none":
        return None
    if FORECAST.startswith("learned-"):
        import tempfile as _tf

        from policy_emusim import learned_forecast

        return learned_forecast(sc.seed, int(FORECAST.split("-")[1].rstrip("w")), sc.start, _tf.mkdtemp())
    knobs = build_knobs(sc.profile, KNOBS)
    return lambda t: expected_headroom(t, knobs)


async def _run_job(sc: Scenario, policy: str, url: str, clock: ScaledClock, run: Run,
                   start_at: float | None = None, deadline: float | None = None) -> None:
    while start_at is not None and clock.now() < start_at:  # bench/ray_scale.py: the cluster's start
        await asyncio.sleep(min(0.05, (start_at - clock.now()) / sc.time_scale))
    run.job_start = clock.now()
    run.deadline = run.job_start + sc.deadline_s if deadline is None else deadline
    with tempfile.TemporaryDirectory(prefix="ft-policy-") as d:
        agen = astream_job(items(sc.n), model=MODEL, deadline=run.deadline, concurrency=FLEX_CONC,
                           standard_concurrency=STD_CONC, max_tokens=MAX_TOKENS, base_url=url + "/v1",
                           api_key="bench", clock=clock, store=Path(d) / "job.db", seed=sc.seed,
                           **RUN_KW[policy], **({"availability": forecast(sc), "forecast_from_history": False}
                                                if policy == "flextier" else {}))
        async def consume() -> None:
            async for r in agen:
                if r.ok:
                    run.ok += 1
                    if clock.now() <= run.deadline:
                        run.ok_by_deadline += 1
                else:
                    run.failed += 1
                run.last_result = clock.now()

        task = asyncio.get_running_loop().create_task(consume())
        try:
            # A run still going well past its deadline has missed it: stop it there (its unfinished
            # items are priced at standard in the ratio, see Run.unfinished).
            cutoff = run.deadline + GRACE * sc.deadline_s
            while not task.done():
                await asyncio.wait({task}, timeout=0.25)
                if not task.done() and clock.now() > cutoff:
                    run.error = f"still running {GRACE:.0%} of the window past the deadline: stopped"
                    task.cancel()
            await asyncio.gather(task, return_exceptions=run.error is not None)
        finally:
            await agen.aclose()


def run_one(sc: Scenario, policy: str, *, start_at: float | None = None, deadline: float | None = None) -> Run:
    """One policy on a fresh emulator child. ``start_at``/``deadline`` (emulated clock values):
    start the job then and give it that deadline instead of starting at once with
    ``sc.deadline_s`` to go (bench/ray_scale.py replays a Ray run's window on the same trace)."""
    run = Run(policy=policy)
    t0 = time.perf_counter()
    with emulator(sc) as (url, origin, clock):
        try:
            asyncio.run(_run_job(sc, policy, url, clock, run, start_at, deadline))
        except Exception as exc:  # report, keep benchmarking the other policies
            run.error = f"{type(exc).__name__}: {exc}"[:300]
        run.wall_s = time.perf_counter() - t0
        if run.job_start:
            _lag_wall[0] = 0.5 * _lag_wall[0] + 0.5 * max(0.05, (run.job_start - origin) / sc.time_scale)
        run.ledger = ledger(url)
        run.origin = origin
    billed = [r for r in run.ledger if r.get("cost") not in (None, "0") and r.get("served_tier")]
    run.rows = len(billed)
    by_cost: dict[str, Decimal] = defaultdict(Decimal)
    by_n: Counter = Counter()
    for r in billed:
        by_cost[r["served_tier"]] += Decimal(r["cost"])
        by_n[r["served_tier"]] += 1
    run.cost = sum(by_cost.values(), Decimal(0))
    run.cost_by_tier = dict(by_cost)
    run.items_by_tier = dict(by_n)
    run.met = (run.error is None and run.ok == sc.n and run.failed == 0 and run.last_result is not None
               and run.last_result <= run.deadline)
    return run


# -- the hindsight lower bound -------------------------------------------------------------------

def lower_bound(sc: Scenario, std_rows: list[dict], origin: float, t0: float, t1: float) -> dict[str, Any]:
    """Least cost any policy could pay on this trace (see the module doc and ``bench/_bound.py``)."""
    knobs = build_knobs(sc.profile, KNOBS)
    entry = default_catalog().resolve(MODEL)
    load = StandardLoad(knobs, f"{sc.seed}:{PROVIDER}", origin)
    jobs = []
    for r in std_rows:
        u = Usage(r["input_tokens"], r.get("cached_tokens", 0), r["output_tokens"], r.get("reasoning_tokens", 0))
        std = Decimal(r["cost"])
        flex = price_usage(u, entry, "flex").cost or std
        batch = price_usage(u, entry, "batch").cost if entry.supports_batch else None
        s = (knobs.ttft_s + knobs.per_input_token_s * (u.input_tokens - u.cached_input_tokens)
             + knobs.per_output_token_s * u.output_tokens) * knobs.latency_scale * knobs.flex_slowdown
        jobs.append((s, std, flex, batch))
    total_std = sum((j[1] for j in jobs), Decimal(0))
    sizes = [j[0] for j in jobs]
    n_at = (lambda t: flex_slots(knobs, load, t, FLEX_CONC))
    work = flex_work_bound(minute_slots(n_at, t0, t1 - min(sizes)), t1, sizes)
    saved, flex_items = knapsack_saving([(s, std, flex) for s, std, flex, _ in jobs], work.slot_seconds)
    cost = total_std - saved
    how = "flex capacity"
    if sc.deadline_s >= 24 * H and entry.supports_batch:
        cheapest = sum((min(j[2], j[3]) if j[3] is not None else j[2] for j in jobs), Decimal(0))
        if cheapest < cost:
            cost, how = cheapest, "batch SLA fits"
    return {"cost": cost, "standard_cost": total_std, "ratio": float(cost / total_std),
            "flex_items": round(flex_items, 1), "flex_slot_seconds": round(work.slot_seconds), "how": how}


# -- the benchmark -------------------------------------------------------------------------------

def parse_h(text: str) -> float:
    text = text.strip().lower()
    if text.endswith("h"):
        return float(text[:-1]) * H
    if text.endswith("m"):
        return float(text[:-1]) * 60
    return float(text)


def standard_rows_of(rows: list[dict]) -> list[dict]:
    """A run's billed rows, one per item, repriced at standard: the all-standard ledger without
    running it (same prompts, same seeded outputs, so the same tokens), for ``--policies flextier``."""
    entry = default_catalog().resolve(MODEL)
    out: dict[Any, dict] = {}
    for r in rows:
        if r.get("cost") in (None, "0") or not r.get("served_tier") or r.get("item") in out:
            continue
        u = Usage(r["input_tokens"], r.get("cached_tokens", 0), r["output_tokens"], r.get("reasoning_tokens", 0))
        out[r.get("item")] = {**r, "served_tier": "standard", "cost": str(price_usage(u, entry, "standard").cost)}
    return list(out.values())


def run_scenario(sc: Scenario, log: Any, policies: tuple[str, ...] = POLICIES) -> dict[str, Any]:
    runs: dict[str, Run] = {}
    for p in policies:
        runs[p] = r = run_one(sc, p)
        start_iso = datetime.fromtimestamp(r.job_start, tz=timezone.utc).strftime("%H:%M")
        log(f"  {sc.name:>12s} {p:22s} start {start_iso} ok {r.ok}/{sc.n} (by deadline {r.ok_by_deadline}) "
            f"met {r.met!s:5s} cost {r.cost:.4f} "
            f"tiers {r.items_by_tier} wall {r.wall_s:.0f}s" + (f" ERROR {r.error}" if r.error else ""))
    ref = runs["flextier"]
    base = runs.get("all-standard")
    std_rows = ([r for r in base.ledger if r.get("served_tier") == "standard" and r.get("cost") not in (None, "0")]
                if base is not None else standard_rows_of(ref.ledger))
    lb = lower_bound(sc, std_rows, ref.origin, ref.job_start, ref.deadline)
    base_cost = base.cost if base is not None and base.cost > 0 else lb["standard_cost"]
    out: dict[str, Any] = {"scenario": sc.name, "n": sc.n, "deadline_h": sc.deadline_s / H, "seed": sc.seed,
                           "start": sc.start, "time_scale": sc.time_scale, "policies": {}}
    per_item = base_cost / sc.n
    for p, r in runs.items():
        late = None if r.last_result is None else round((r.last_result - r.deadline) / 60.0, 1)
        # a run stopped after missing its deadline still owes its unfinished items: at standard
        cost = r.cost + per_item * (sc.n - r.ok)
        out["policies"][p] = {
            "cost": str(cost), "ratio": float(cost / base_cost) if base_cost else None, "met": r.met,
            "ok": r.ok, "ok_by_deadline": r.ok_by_deadline, "unfinished_priced_at_standard": sc.n - r.ok,
            "failed": r.failed, "billed_rows": r.rows,
            "items_by_tier": r.items_by_tier, "cost_by_tier": {k: str(v) for k, v in r.cost_by_tier.items()},
            "job_start": datetime.fromtimestamp(r.job_start, tz=timezone.utc).isoformat(timespec="seconds"),
            "finished_vs_deadline_min": late, "wall_s": round(r.wall_s, 1), "error": r.error}
    out["policies"]["lower-bound"] = {"cost": str(lb["cost"]), "ratio": float(lb["cost"] / base_cost),
                                      "met": True, "flex_items": lb["flex_items"], "how": lb["how"],
                                      "flex_slot_seconds": lb["flex_slot_seconds"]}
    fx = out["policies"]["flextier"]["ratio"]
    out["flextier_vs_lower_bound"] = fx / out["policies"]["lower-bound"]["ratio"] if fx else None
    return out


def summarise(results: list[dict]) -> dict[str, Any]:
    summ: dict[str, Any] = {}
    for p in results[0]["policies"]:
        rs = [r["policies"][p] for r in results]
        ratios = [x["ratio"] for x in rs if x["ratio"] is not None]
        summ[p] = {"mean_ratio": sum(ratios) / len(ratios) if ratios else None,
                   "deadlines_met": sum(1 for x in rs if x["met"]) / len(rs), "runs": len(rs)}
    vs = [r["flextier_vs_lower_bound"] for r in results if r["flextier_vs_lower_bound"]]
    summ["flextier_vs_lower_bound"] = {"max": max(vs) if vs else None, "mean": sum(vs) / len(vs) if vs else None,
                                       "target": 1.05}
    return summ


def table(results: list[dict], summ: dict[str, Any]) -> str:
    cols = tuple(results[0]["policies"])
    head = f"{'scenario':>14s} " + " ".join(f"{c:>22s}" for c in cols) + f" {'ft/LB':>6s}"
    lines = ["cost / all-standard (deadline met: y/n)", head, "-" * len(head)]
    for r in results:
        cells = []
        for c in cols:
            x = r["policies"][c]
            cells.append(f"{x['ratio']:.3f} ({'y' if x['met'] else 'n'})".rjust(22) if x["ratio"] is not None
                         else "n/a".rjust(22))
        v = r["flextier_vs_lower_bound"]
        lines.append(f"{r['scenario']:>14s} " + " ".join(cells) + (f" {v:6.3f}" if v else "    n/a"))
    lines.append("-" * len(head))
    cells = []
    for c in cols:
        s = summ[c]
        cells.append(f"{s['mean_ratio']:.3f} ({s['deadlines_met']:.0%})".rjust(22) if s["mean_ratio"] is not None
                     else "n/a".rjust(22))
    v = summ["flextier_vs_lower_bound"]["max"]
    lines.append(f"{'mean (met)':>14s} " + " ".join(cells) + (f" {v:6.3f}" if v else ""))
    lines.append("ft/LB = flextier cost / lower bound (target <= 1.05); the last column's summary is the max.")
    return "\n".join(lines)


def main() -> None:
    global WINDOW_WALL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="requests per scenario (default 2000; 1000 with --quick)")
    ap.add_argument("--deadlines", default=None, help="emulated deadlines, e.g. 1h,3h,8h,24h,48h")
    ap.add_argument("--seeds", default="1", help="emulator seeds, e.g. 1,2,3 or 4-12 (each runs every scenario)")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help="which to run (flextier always; without all-standard the ratios divide by the standard "
                         "price of flextier's own billed tokens)")
    ap.add_argument("--start", default="2026-11-24T14:00", help="emulated start (UTC; 2026-11-24 is a Tuesday)")
    ap.add_argument("--window-wall", type=float, default=None,
                    help="wall seconds one deadline window lasts (sets each scenario's time scale; default 50, 25 quick)")
    ap.add_argument("--quick", action="store_true", help="N=1000, deadlines 1h and 48h, 25 s windows: about 3 minutes")
    ap.add_argument("--forecast", default="oracle", choices=("oracle", "none", "learned-1w", "learned-4w"),
                    help="flextier's time-of-day forecast (default: the profile's own, the oracle)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global FORECAST
    FORECAST = args.forecast
    n = args.n or (1000 if args.quick else 2000)
    dls = args.deadlines or ("1h,48h" if args.quick else "1h,3h,8h,24h,48h")
    WINDOW_WALL = args.window_wall or (25.0 if args.quick else 50.0)
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    results = []
    t0 = time.perf_counter()
    wanted = {p.strip() for p in args.policies.split(",") if p.strip()}
    unknown = wanted - set(POLICIES)
    if unknown:
        ap.error(f"--policies: unknown {', '.join(sorted(unknown))} (choose from {', '.join(POLICIES)})")
    policies = tuple(p for p in POLICIES if p in wanted or p == "flextier")
    for seed in parse_seeds(args.seeds):
        for d in dls.split(","):
            sc = Scenario(name=f"{d}/s{seed}", n=n, deadline_s=parse_h(d), seed=seed, start=args.start)
            results.append(run_scenario(sc, log, policies))
    summ = summarise(results)
    doc = {"policy": {"model": MODEL, "profile": "weekday", "knobs": KNOBS, "flex_concurrency": FLEX_CONC,
                      "standard_concurrency": STD_CONC, "max_tokens": MAX_TOKENS, "window_wall_s": WINDOW_WALL,
                      "scenarios": results, "summary": summ, "wall_s": round(time.perf_counter() - t0, 1)}}
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(table(results, summ))
        print(f"(N={n}, seeds {args.seeds}, wall {doc['policy']['wall_s']:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    main()
