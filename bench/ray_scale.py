"""Benchmark: flextier on Ray, scaling and cost (README, "Scaling out with Ray").

``python bench/ray_scale.py [--n 3000] [--workers 1,2,4] [--policy-n 2000] [--seed 1,2] [--own-trace] [--skip-policy] [--skip-throughput] [--json]``

Two parts, each side by side in one run, all on 127.0.0.1:

1. **Throughput.** The same N-row job (``calm`` profile, short emulated latencies: an emulator
   with headroom, so the client side is what limits) through :func:`flextier.ray.process` with 1,
   2 and 4 worker actors, one fresh emulator child process per run (its own interpreter, as in
   ``bench/_harness.py``). The rate is answered requests per wall second between the first and
   the last billed request in the emulator's ledger (so actor start-up, which Ray pays once per
   pool, is left out; it is printed beside). Ratios are to the 1-worker rate.
2. **Cost on the policy bench's weekday 3 h scenario** (``bench/policy.py``: N simple requests at
   14:00 on a weekday, the same knobs, concurrency, forecast and seed, a 3 h emulated deadline in
   a 60 s wall window): the job on Ray with 4 workers, then the single-process ``flextier`` run
   (``policy.run_one``, the runner of ``flextier run``) on the *same trace and window*: its
   emulator gets the same clock origin (the seeded load bursts count minutes from it), and it
   starts when the cluster's first runner joined, with the cluster's deadline (``--own-trace``
   adds the older comparison, single-process on its own emulator started at once, which put the
   two clients on different capacity traces). Cost is the emulator's billed ledger in both;
   "met" means every item answered by the deadline (for Ray: the merged job report's
   ``deadline_met``). ``--seed 1,2`` runs several seeds.

The cluster is one local Ray node started here (``ray.init(num_cpus=...)`` on loopback), the
driver, the workers and the emulator child share this machine's cores: on 2 cores the CPU, not
Ray, caps the scaling (the figures say how much).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _harness import emulator_process, ledger  # noqa: E402

MODEL = "openai/gpt-5.4-mini"


def _ray(cpus: int) -> Any:
    import ray
    import ray._private.services as services

    # stay on loopback: Ray otherwise looks up the machine's outward address (a UDP "connect" to 8.8.8.8)
    services.node_ip_address_from_perspective = lambda *a, **k: "127.0.0.1"
    import ray.data  # noqa: F401

    if not ray.is_initialized():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 object_store_memory=200 * 1024 * 1024)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat): how much of the cores a run used."""
    with open("/proc/stat") as f:
        v = [float(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _billed(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("cost") not in (None, "0") and r.get("served_tier")]


def throughput(n: int, workers: int, scale: float) -> dict[str, Any]:
    """One N-row job with ``workers`` actors against a fresh emulator child; the request rate."""
    ray = _ray(4)
    import flextier.ray as fray
    from flextier.emulator.clock import remote_clock

    with emulator_process("calm", "latency_scale=0.05", seed=1, time_scale=scale) as url, \
            tempfile.TemporaryDirectory(prefix="ft-ray-bench-") as d:
        base = url + "/v1"
        ds = ray.data.from_items([{"id": f"r{i}", "text": f"item {i}"} for i in range(n)],
                                 override_num_blocks=max(8, 4 * workers))
        t0, c0 = time.perf_counter(), _cpu()
        out = fray.process(ds, model=MODEL, prompt_column="text", template="Classify: {text}", job=f"tp{workers}",
                           state=d, base_url=base, api_key="bench", clock=remote_clock(base), workers=workers,
                           batch_size=max(50, n // (8 * workers)), max_tokens=16, tier="flex", concurrency=512,
                           progress_every=None)
        got = sum(b.num_rows for b in out.iter_batches(batch_size=4096, batch_format="pyarrow"))
        wall, c1 = time.perf_counter() - t0, _cpu()
        ray.kill(fray._HANDLES.pop(f"tp{workers}"))
        rows = _billed(ledger(url))
    ts = sorted(float(r["ts"]) for r in rows)
    span = (ts[-1] - ts[0]) / scale if len(ts) > 1 else float("nan")
    return {"workers": workers, "rows": got, "answered": len(rows), "wall_s": round(wall, 2),
            "span_s": round(span, 2), "rps": round(len(rows) / span, 1) if span > 0 else None,
            "machine_busy": round((c1[0] - c0[0]) / max(1.0, c1[1] - c0[1]), 2)}


def startup_lag(scale: float, workers: int) -> float:
    """Wall seconds from ``process()`` to the first runner joining the controller (actor start-up),
    measured on a small job (the mean of two)."""
    ray = _ray(4)
    import flextier.ray as fray
    from flextier.emulator.clock import remote_clock

    lags = []
    for i in range(2):
        with emulator_process("calm", seed=1, time_scale=scale) as url, \
                tempfile.TemporaryDirectory(prefix="ft-ray-lag-") as d:
            ds = ray.data.from_items([{"id": f"w{j}", "text": "x"} for j in range(8 * workers)],
                                     override_num_blocks=2 * workers)
            out = fray.process(ds, model=MODEL, prompt_column="text", job=f"lag{i}", state=d, base_url=url + "/v1",
                               api_key="bench", clock=remote_clock(url + "/v1"), workers=workers, batch_size=4,
                               max_tokens=8, progress_every=None)
            for _ in out.iter_batches(batch_format="pyarrow"):
                pass
            p = fray.progress(f"lag{i}")
            ray.kill(fray._HANDLES.pop(f"lag{i}"))
            lags.append((p["started"] - p["created"]) / scale)
    return sum(lags) / len(lags)


def policy_scenario(n: int, seed: int, workers: int, own_trace: bool = False) -> dict[str, Any]:
    """bench/policy.py's weekday 3 h scenario: the same job on Ray, then single-process flextier
    on the same trace and window.

    Why the single run replays the Ray run's window: the emulator's seeded load bursts are
    counted in minutes from its clock origin (``emulator/capacity.StandardLoad``), and the Ray
    run's emulator starts earlier by Ray's start-up (many emulated minutes at x180), so two runs
    started "at 14:00" on their own emulators see different flex capacity at the same clock
    time: the comparison was of two provider days, not of two clients (``own_trace`` adds that
    older comparison). Here both emulators get the same origin, and the single job starts when
    the cluster's first runner joined, with the cluster's deadline.
    """
    import policy as pb

    ray = _ray(4)
    import flextier.ray as fray
    from flextier.ray.state import merged_store
    from flextier.jobs.report import build_report

    sc = pb.Scenario(name=f"3h/s{seed}", n=n, deadline_s=3 * pb.H, seed=seed)
    own = pb.run_one(sc, "flextier") if own_trace else None
    lag = startup_lag(sc.time_scale, workers)
    res: dict[str, Any] = {"n": n, "seed": seed}
    t0 = time.perf_counter()
    # the emulator starts earlier by Ray's start-up (actors, imports), so the workers' first
    # requests go out near 14:00 with 3 h to go
    pb._lag_wall[0] = lag
    with pb.emulator(sc) as (url, _origin, clock), tempfile.TemporaryDirectory(prefix="ft-ray-pol-") as d:
        base = url + "/v1"
        deadline = clock.now() + lag * sc.time_scale + sc.deadline_s
        # one batch per actor: Ray Data runs one batch of an actor at a time, and a batch's tail (its
        # last slow flex answers) leaves that actor's share of the window idle, so fewer, bigger
        # batches waste less flex before a deadline (README, "Scaling out with Ray")
        ds = ray.data.from_items(pb.items(n), override_num_blocks=workers)
        out = fray.process(ds, model=pb.MODEL, prompt_column="prompt", id_column="id", job="pol", state=d,
                           deadline=deadline, concurrency=pb.FLEX_CONC, standard_concurrency=pb.STD_CONC,
                           max_tokens=pb.MAX_TOKENS, base_url=base, api_key="bench", clock=clock, workers=workers,
                           batch_size=-(-n // workers), availability=pb.forecast(sc),
                           forecast_from_history=False, seed=seed, progress_every=None)
        got = sum(b.num_rows for b in out.iter_batches(batch_size=4096, batch_format="pyarrow"))
        prog = fray.progress("pol")
        ray.kill(fray._HANDLES.pop("pol"))
        rows = _billed(ledger(url))
        st = merged_store(Path(d) / "pol", Path(d) / "merged.db")
        try:
            rep = build_report(st)
        finally:
            st.close()
    cost = sum((Decimal(r["cost"]) for r in rows), Decimal(0))
    by: dict[str, int] = {}
    for r in rows:
        by[r["served_tier"]] = by.get(r["served_tier"], 0) + 1
    res["ray"] = {"workers": workers, "cost": str(cost), "met": bool(rep["deadline_met"]) and rep["counts"]["done"] == n,
                  "rows": got, "by_tier": by, "wall_s": round(time.perf_counter() - t0, 1),
                  "startup_lag_wall_s": round(lag, 2),
                  "window_h": round((deadline - prog["started"]) / 3600, 3) if prog.get("started") else None}
    pb._lag_wall[0] = lag  # the same --start, so the same origin and load trace as the Ray run
    single = pb.run_one(sc, "flextier", start_at=prog.get("started"), deadline=deadline)
    res["single"] = {"cost": str(single.cost), "met": single.met, "by_tier": single.items_by_tier,
                     "wall_s": round(single.wall_s, 1), "error": single.error,
                     "window_h": round((single.deadline - single.job_start) / 3600, 3)}
    res["cost_ratio"] = round(float(cost / single.cost), 4) if single.cost else None
    if own is not None:
        res["single_own_trace"] = {"cost": str(own.cost), "met": own.met, "by_tier": own.items_by_tier}
        res["cost_ratio_own_trace"] = round(float(cost / own.cost), 4) if own.cost else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="rows of the throughput job")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--scale", type=float, default=600.0, help="emulator time scale of the throughput runs")
    ap.add_argument("--policy-n", type=int, default=2000, help="items of the weekday 3 h scenario")
    ap.add_argument("--seed", default="1", help="seeds of the policy scenario, comma-separated")
    ap.add_argument("--skip-policy", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--own-trace", action="store_true",
                    help="also run single-process flextier on its own emulator trace (the older comparison)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    doc: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "throughput": []}
    for w in (int(x) for x in ("" if args.skip_throughput else args.workers).split(",") if x):
        r = throughput(args.n, w, args.scale)
        doc["throughput"].append(r)
        print(f"workers {w}: {r['answered']} answered in {r['span_s']} s -> {r['rps']} req/s "
              f"(whole run {r['wall_s']} s with actor start-up; machine CPU busy {r['machine_busy']:.0%})", flush=True)
    base = doc["throughput"][0]["rps"] if doc["throughput"] else 0
    for r in doc["throughput"]:
        r["ratio"] = round(r["rps"] / base, 2) if base and r["rps"] else None
    print("ratios to 1 worker: " + ", ".join(f"{r['workers']}w x{r['ratio']}" for r in doc["throughput"]))
    if not args.skip_policy:
        for seed in (int(x) for x in args.seed.split(",")):
            p = policy_scenario(args.policy_n, seed, 4, own_trace=args.own_trace)
            doc.setdefault("policy_3h", []).append(p)
            print(f"weekday 3h, N={p['n']}, seed {p['seed']}, same trace and window: single-process "
                  f"${p['single']['cost']} (met {p['single']['met']}, {p['single']['by_tier']}), Ray 4 workers "
                  f"${p['ray']['cost']} (met {p['ray']['met']}, {p['ray']['by_tier']}; start-up "
                  f"{p['ray']['startup_lag_wall_s']} s wall, window {p['ray']['window_h']} h): ratio {p['cost_ratio']}",
                  flush=True)
            if "single_own_trace" in p:
                o = p["single_own_trace"]
                print(f"  single-process on its own emulator trace: ${o['cost']} (met {o['met']}, {o['by_tier']}): "
                      f"ratio {p['cost_ratio_own_trace']}", flush=True)
    doc["load_after"] = os.getloadavg()[0]
    print(f"(machine: {doc['cpus']} cores, load average {doc['load_before']:.1f} before, {doc['load_after']:.1f} after)")
    if args.json:
        print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
