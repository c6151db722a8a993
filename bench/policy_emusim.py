"""Pure, second-by-second replica of ``bench/policy.py``'s flextier runs (no HTTP, no wall clock).

``python bench/policy_emusim.py [--deadlines 1h,3h] [--seeds 1-12] [--d 120] [--json]``

``python bench/policy_emusim.py --grid --deadlines 1,3,8,24 --starts 05,09,14,19 --seeds 1-12`` is the
time-of-day table of the README's "When to run": forecasts none (straight line), oracle (the
profile's own ``expected_headroom``), and learned from one and from four emulated weeks of
history (:func:`learned_forecast`).

Why a second simulator: ``bench/policy_sim.py`` models flex with its own trace format
(``flex_cap=20``, ``r_s=5``), so its ratios are not the emulator's. This one reuses the
emulator's *own* pure capacity model (:class:`~flextier.emulator.capacity.StandardLoad` with
the same knobs, seed and origin, and :class:`~flextier.emulator.capacity.FlexPool`: admission,
FIFO queue, predicted-wait refusals, 900 s queue timeout, preemption) and the runner's own
pieces (:class:`~flextier.policy.planner.Planner`, :class:`~flextier.policy.concurrency.AimdController`
with slow start, :class:`~flextier.policy.backoff.Backoff`, the standard token bucket, the
planner tick, ``flex_throughput`` over up to 10 min, the grace before the uniform line, the
time-of-day forecast bench/policy.py gives flextier) on a 1-second emulated step. It runs the 1 h and 3 h scenarios in about a tenth of a second each,
so a change can be judged on a dozen seeds before the ~10 min real bench. What it leaves out:
wall-clock overhead (the real bench runs the emulator at x72-x3456, so client CPU lag shows up
as emulated latency), HTTP and the store; service time is fixed at the bench's 20.8 s.

It also splits where flex capacity went: ``lost`` counts the hindsight bound's flex items that
flextier did not use, by cause (``after-end``: capacity after the job finished, i.e. the safety
reserve ``2d + margin + tail`` and any overshoot; ``aimd-limit``: slots free while the AIMD
window was full; ``backoff``; ``no-ready-items``), and ``bound_carry`` the items the bound
(``bench/_bound.py``) credits beyond the per-minute slots, for requests that run on after the
capacity drops.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bound import flex_slots, flex_work_bound, minute_slots  # noqa: E402
from _harness import parse_seeds  # noqa: E402
from flextier.emulator.capacity import FlexPool, StandardLoad, Verdict, expected_headroom  # noqa: E402
from flextier.emulator.clock import parse_start  # noqa: E402
from flextier.emulator.profiles import build_knobs  # noqa: E402
from flextier.policy.backoff import Backoff  # noqa: E402
from flextier.policy.concurrency import AimdConfig, AimdController  # noqa: E402
from flextier.policy.planner import (SAFETY, InFlight, Observation, Planner,  # noqa: E402
                                     PlannerConfig, changeover_delay_for, standard_capacity)

KNOBS = {"slots": 32, "latency_scale": 20.0}      # as bench/policy.py
FLEX_CONC, STD_CONC, MAX_TOKENS = 32, 48, 64      # as bench/policy.py
WINDOW_WALL = 50.0                                # as bench/policy.py (sets the planner tick)
H = 3600.0


def service_s(knobs: Any) -> float:
    return (knobs.ttft_s + knobs.per_output_token_s * MAX_TOKENS) * knobs.latency_scale * knobs.flex_slowdown


def lower_bound(knobs: Any, load: StandardLoad, t0: float, t1: float, n: int, s: float) -> dict[str, float]:
    """bench/policy.py's hindsight bound (``bench/_bound.py``) for identical items (flex costs half)."""
    minutes = minute_slots(lambda t: flex_slots(knobs, load, t, FLEX_CONC), t0, t1 - s)
    work = flex_work_bound(minutes, t1, [s])
    main = sum(k * (hi - lo) for lo, hi, k in minutes)
    f = min(float(n), work.slot_seconds / s)
    return {"ratio": (n - 0.5 * f) / n, "flex_items": f, "carry_items": (work.slot_seconds - main) / s}


class _Rate:
    """The runner's per-minute completion buckets (``_RateBuckets``)."""

    def __init__(self) -> None:
        self.c: deque[list[int]] = deque()

    def add(self, t: float) -> None:
        b = int(t // 60)
        if self.c and self.c[-1][0] == b:
            self.c[-1][1] += 1
        else:
            self.c.append([b, 1])
            while len(self.c) > 32:
                self.c.popleft()

    def rate(self, now: float, window: float) -> float:
        lo = int((now - window) // 60)
        return sum(c for b, c in self.c if b > lo) / window


def run(deadline_h: float, seed: int, *, n: int = 2000, start: str = "2026-11-24T14:00", d: float | None = None,
        policy: Any = Planner, planner_kw: dict | None = None, forecast: Any = True) -> dict[str, Any]:
    """One job. ``forecast``: True (the profile's own ``expected_headroom``, the oracle), False (none:
    the straight line) or an availability callable (e.g. one learned from history)."""
    knobs = build_knobs("weekday", KNOBS)
    origin = parse_start(start)
    load = StandardLoad(knobs, f"{seed}:openai", origin)
    pool = FlexPool(knobs, load)
    S = service_s(knobs)
    d = changeover_delay_for(deadline_h * H) if d is None else d      # as the runner's default
    scale = deadline_h * H / WINDOW_WALL
    tick = min(30.0, max(1.0, 0.05 * scale))                      # RunOptions.tick default
    rng = random.Random(seed)
    backoff = Backoff(base=2.0, cap=120.0, rng=rng)
    aimd = AimdController(AimdConfig(max_concurrency=FLEX_CONC, cooldown=max(1.0, 2 * d / 60), slow_start=True))
    t_start = now = origin
    D = t_start + deadline_h * H
    ready: deque[int] = deque(range(n))
    final = [False] * n
    flex: dict[int, dict[str, Any]] = {}
    std: dict[int, float] = {}
    done = n_flex = n_std = 0
    cost = 0.0
    std_lat: float | None = None
    flex_lat: float | None = None
    fr = _Rate()
    streak, boff_until = 0, -math.inf
    planner: Any = None
    dec: Any = None
    last_tick = -math.inf
    tokens, tokens_at = 0.0, now
    hedges: deque[int] = deque()
    last = None
    lost: dict[str, float] = {}
    while done < n and now < D + 0.2 * deadline_h * H:
        for i, fa in list(flex.items()):                        # flex completions and queue timeouts
            if fa["state"] == "r" and fa["end"] <= now:
                pool.finish(now, i)
                del flex[i]
                cost += 0.5
                if not final[i]:
                    final[i] = True
                    done += 1
                    n_flex += 1
                    last = now
                    aimd.on_success(now)
                    streak = 0
                    fr.add(now)
                    lat = now - fa["start"]
                    flex_lat = lat if flex_lat is None else 0.9 * flex_lat + 0.1 * lat
                    std.pop(i, None)
            elif fa["state"] == "q" and now - fa["qstart"] >= knobs.w_max_s:
                pool.cancel(i)
                del flex[i]
                if final[i] or i in std:
                    continue
                aimd.on_capacity_error(now)
                boff_until = max(boff_until, now + backoff.delay(streak))
                streak += 1
                ready.appendleft(i)
        for i, end in list(std.items()):
            if end <= now:
                del std[i]
                if not final[i]:
                    final[i] = True
                    done += 1
                    n_std += 1
                    last = now
                    std_lat = S if std_lat is None else 0.8 * std_lat + 0.2 * S
                    fa = flex.pop(i, None)
                    if fa is not None:
                        if fa["state"] == "r":
                            cost += 0.5          # the losing flex copy was running: billed
                            pool.finish(now, i)
                        else:
                            pool.cancel(i)
        disp, pre = pool.step(now)
        for rid in disp:
            if rid in flex:
                flex[rid].update(state="r", end=now + S)
            else:
                pool.cancel(rid)
        for rid in pre:
            flex[rid].update(state="q", qstart=now)
            pool.requeue(rid)
        if done >= n:
            break
        if planner is None:
            t0 = now + min(max(d, 300.0), 0.1 * (D - now))       # the runner's grace before the line
            planner = policy(PlannerConfig(t0=t0, total=n, deadline=D, standard_rate=standard_capacity(STD_CONC, 20.0),
                                           d=d, margin=60.0, tail=20.0, flex_timeout=900.0, allow_batch=False,
                                           availability=(forecast if callable(forecast) else
                                                         (lambda t: expected_headroom(t, knobs)) if forecast
                                                         else None),
                                           **(planner_kw or {})))
        if now - last_tick >= tick or dec is None:
            fin = tuple(InFlight(str(i), fa["start"]) for i, fa in flex.items()) if planner.mode == SAFETY else ()
            dec = planner.decide(Observation(
                now=now, done=done, pending=len(ready), in_flight_standard=len(std), flex_in_flight=fin, total=n,
                standard_capacity=standard_capacity(STD_CONC, std_lat or 20.0), standard_latency_p90=std_lat,
                flex_latency_p90=flex_lat, flex_throughput=fr.rate(now, min(600.0, max(60.0, now - t_start)))))
            hedges.extend(int(h) for h in dec.hedge)
            if not (dec.standard_all or dec.standard_rate > 0):
                tokens = 0.0
            last_tick = now
        while hedges and len(std) < STD_CONC:
            i = hedges.popleft()
            if i in flex and not final[i] and i not in std:
                std[i] = now + S
                cost += 1.0
        if dec.standard_all or dec.standard_rate > 0:
            if not dec.standard_all:
                tokens = min(max(1.0, dec.standard_rate * 30.0), tokens + dec.standard_rate * max(0.0, now - tokens_at))
            tokens_at = now
            while ready and len(std) < STD_CONC and (dec.standard_all or tokens >= 1.0):
                i = ready.popleft()
                if final[i]:
                    continue
                std[i] = now + S
                cost += 1.0
                if not dec.standard_all:
                    tokens -= 1.0
        else:
            tokens_at = now
        if dec.flex_open and not dec.standard_all and now >= boff_until:
            while ready and len(flex) < aimd.limit:
                i = ready.popleft()
                if final[i]:
                    continue
                adm = pool.admit(now, i, S, knobs.w_max_s)
                if adm.verdict is Verdict.DISPATCHED:
                    flex[i] = {"start": now, "state": "r", "end": now + S}
                elif adm.verdict is Verdict.QUEUED:
                    flex[i] = {"start": now, "state": "q", "qstart": now}
                else:
                    aimd.on_capacity_error(now)
                    boff_until = max(boff_until, now + backoff.delay(streak))
                    streak += 1
                    ready.appendleft(i)
                    break
        short = max(0, flex_slots(knobs, load, now, FLEX_CONC) - len(pool.running))
        if short and now < D - S:
            why = ("queued" if pool.queue else "no-ready-items" if not ready
                   else "flex-closed" if dec.standard_all or not dec.flex_open
                   else "backoff" if now < boff_until else "aimd-limit" if len(flex) >= aimd.limit else "other")
            lost[why] = lost.get(why, 0.0) + short / S
        now += 1.0
    t = now
    while t < D - S:                                                # flex capacity left after the job
        lost["after-end"] = lost.get("after-end", 0.0) + flex_slots(knobs, load, t, FLEX_CONC) / S
        t += 1.0
    lb = lower_bound(knobs, load, t_start, D, n, S)
    ratio = cost / n
    return {"deadline_h": deadline_h, "seed": seed, "ratio": round(ratio, 4), "lower_bound": round(lb["ratio"], 4),
            "vs_bound": round(ratio / lb["ratio"], 4), "met": done == n and last is not None and last <= D,
            "flex_items": n_flex, "standard_items": n_std, "bound_flex_items": round(lb["flex_items"]),
            "bound_carry": round(lb["carry_items"]), "lost": {k: round(v) for k, v in sorted(lost.items())},
            "finished_min_before_deadline": None if last is None else round((D - last) / 60, 1)}


FORECASTS = ("none", "oracle", "learned-1w", "learned-4w")


def learned_forecast(seed: int, weeks: int, start: str, tmpdir: str) -> Any:
    """The planner's forecast learned from ``weeks`` emulated weeks of history before the job's week.

    The weeks are made by :func:`flextier.emulator.history_synth.synthesise_weeks` (the emulator's capacity
    model, other burst seeds than the job's), written by a real history recorder to a real
    emulated-domain history file, and read back by :func:`flextier.history.load_forecast`: the
    same path ``run_job`` takes. Returns the availability callable (None: too little history).
    """
    import os

    from flextier.history import Recorder, load_forecast
    from flextier.emulator.history_synth import synthesise_weeks, week_start

    knobs = build_knobs("weekday", KNOBS)
    t = parse_start(start)
    path = os.path.join(tmpdir, f"h{seed}-{weeks}w.emulated.db")
    if not os.path.exists(path):
        rec = Recorder(path, emulated=True, flush_every=1e9)
        synthesise_weeks(rec, knobs, first_week=week_start(t) - weeks * 7 * 86400, weeks=weeks, seed=seed,
                         concurrency=FLEX_CONC)
    return load_forecast("openai", "openai/gpt-5.4-mini", t, emulated=True, path=path).availability()


def grid(starts: list[str], deadlines: list[float], seeds: list[int], forecasts: list[str], n: int,
         day: str = "2026-11-24") -> dict[str, Any]:
    """The time-of-day table: every (start, deadline) cell under each forecast, over the seeds."""
    import tempfile

    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for st in starts:
            start = f"{day}T{st}:00"
            for dl in deadlines:
                per: dict[str, list[dict[str, Any]]] = {f: [] for f in forecasts}
                for s in seeds:
                    for f in forecasts:
                        fc: Any = {"none": False, "oracle": True}.get(f)
                        if fc is None:
                            fc = learned_forecast(s, int(f.split("-")[1].rstrip("w")), start, tmp)
                            fc = False if fc is None else fc
                        per[f].append(run(dl, s, n=n, start=start, forecast=fc))
                cell = {"start": st, "deadline_h": dl, "seeds": len(seeds)}
                for f, rows in per.items():
                    cell[f] = {"cost": round(statistics.mean(r["ratio"] for r in rows), 4),
                               "met": sum(r["met"] for r in rows)}
                if "oracle" in per:
                    for f in forecasts:
                        if f.startswith("learned"):
                            cell[f]["vs_oracle"] = round(cell[f]["cost"] / cell["oracle"]["cost"], 4)
                cells.append(cell)
                print(_grid_line(cell, forecasts), flush=True)
    return {"cells": cells}


def _grid_line(c: dict[str, Any], forecasts: list[str]) -> str:
    parts = [f"| {c['start']}:00 | {c['deadline_h']:g} h"]
    for f in forecasts:
        x = c[f]
        parts.append(f"{x['cost']:.4f}" + (f" ({x['vs_oracle']:.3f}x)" if "vs_oracle" in x else "")
                     + ("" if x["met"] == c["seeds"] else f" MISSED {c['seeds'] - x['met']}"))
    return " | ".join(parts) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deadlines", default="1h,3h")
    ap.add_argument("--seeds", default="1-12", help="e.g. 1,2,3 or 1-12")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--start", default="2026-11-24T14:00", help="emulated start (UTC; 2026-11-24 is a Tuesday)")
    ap.add_argument("--d", type=float, default=None, help="changeover delay d (seconds; default: the runner's, "
                    "changeover_delay_for(window))")
    ap.add_argument("--no-forecast", action="store_true", help="straight uniform line (no time-of-day forecast)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--grid", action="store_true", help="time-of-day table: --starts x --deadlines x --forecasts")
    ap.add_argument("--starts", default="05,09,14,19", help="grid start hours (UTC, on --day)")
    ap.add_argument("--day", default="2026-11-24", help="grid start day (2026-11-24 is a Tuesday)")
    ap.add_argument("--forecasts", default=",".join(FORECASTS), help="grid forecasts: " + ", ".join(FORECASTS))
    args = ap.parse_args(argv)
    if args.grid:
        fcs = [f.strip() for f in args.forecasts.split(",")]
        print("| start | deadline | " + " | ".join(fcs) + " |")
        print("|---|---|" + "---|" * len(fcs))
        out = grid([x.strip() for x in args.starts.split(",")], [float(x.strip().rstrip("h"))
                   for x in args.deadlines.split(",")], parse_seeds(args.seeds), fcs, args.n, args.day)
        worst = max((c[f]["vs_oracle"] for c in out["cells"] for f in fcs if "vs_oracle" in c[f]), default=None)
        missed = sum(c["seeds"] - c[f]["met"] for c in out["cells"] for f in fcs)
        print(f"worst learned/oracle cost ratio {worst}; deadlines missed {missed}")
        if args.json:
            print(json.dumps(out, indent=1))
        return 0
    rows = [run(float(dl.strip().rstrip("h")), s, n=args.n, start=args.start, d=args.d, forecast=not args.no_forecast)
            for dl in args.deadlines.split(",") for s in parse_seeds(args.seeds)]
    if args.json:
        print(json.dumps({"rows": rows}, indent=1))
        return 0
    for r in rows:
        print(f"{r['deadline_h']:g}h s{r['seed']:<3d} flextier {r['ratio']:.4f} bound {r['lower_bound']:.4f} "
              f"ft/LB {r['vs_bound']:.4f} met {r['met']!s:5s} flex {r['flex_items']:4d}/{r['bound_flex_items']:4d} "
              f"(bound carry {r['bound_carry']:3d}) lost {r['lost']} done {r['finished_min_before_deadline']} min early")
    for dl in sorted({r["deadline_h"] for r in rows}):
        v = [r["vs_bound"] for r in rows if r["deadline_h"] == dl]
        print(f"{dl:g}h: ft/LB mean {statistics.mean(v):.4f} max {max(v):.4f} over {len(v)} seeds; "
              f"met {sum(r['met'] for r in rows if r['deadline_h'] == dl)}/{len(v)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
