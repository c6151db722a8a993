"""Benchmark 1: flextier's overhead against the raw SDK loop, per provider path.

Same emulator (calm profile, zero added latency), same concurrency, same requests:
(a) ``raw_baseline.py`` — a plain semaphore + gather loop writing JSONL;
(b) ``flextier run`` with its durable SQLite store.
Each pair runs side by side in one invocation (a b, b a, a b, ...: the order alternates;
best of ``--repeat``), and the figure reported is the wall-time ratio b/a. Target: <= 1.15.
Both sides are child processes timed from spawn to exit (interpreter start-up and imports
included), at the same ``--concurrency``; each reports the concurrency it really achieved
(peak and mean requests in flight: the raw loop counts its own, flextier's comes from its
store's attempt rows, with the time its AIMD window took to reach 90 %).

The ``openai-wrap`` row compares the raw OpenAI SDK loop with the *same* loop whose clients
went through ``flextier.wrap`` (the transport engine, :mod:`flextier.intercept`): same
emulator, same concurrency, same process shape. Target: <= 1.05.

    python bench/overhead.py [--requests 20000] [--concurrency 256] [--repeat 2] [--providers openai,gemini,bedrock,openai-wrap] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, emulator_process, load_avg, run_timed, store_concurrency, write_jobs

MODELS = {
    "openai": ("gpt-5.4-mini", "openai/gpt-5.4-mini"),
    "gemini": ("gemini-3-flash-preview", "gemini/gemini-3-flash"),
    "bedrock": ("us.amazon.nova-pro-v1:0", "bedrock/nova-pro"),
}
KEYS = {"OPENAI_API_KEY": "bench", "GEMINI_API_KEY": "bench", "GOOGLE_API_KEY": "bench",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
        "ANTHROPIC_API_KEY": "bench"}


def measure(provider: str, n: int, conc: int, repeat: int, tmp: Path) -> dict:
    wire_model, model = MODELS[provider]
    jobs = write_jobs(tmp / f"{provider}.jsonl", n)
    raw_times, ft_times, raw_conc, ft_conc, loads = [], [], [], [], []
    with emulator_process("calm", "latency_scale=0") as url:
        for r in range(repeat):
            loads.append(load_avg())
            # alternate which side goes first, so neither always runs on a warmer/cooler machine
            order = ("raw", "ft") if r % 2 == 0 else ("ft", "raw")
            for side in order:
                if side == "raw":
                    out = tmp / "raw.jsonl"
                    wall, _ = run_timed([sys.executable, str(ROOT / "bench" / "raw_baseline.py"), provider, url,
                                         str(jobs), str(out), wire_model, str(conc)], env=KEYS)
                    raw_times.append(wall)
                    raw_conc.append(json.loads(Path(str(out) + ".stats.json").read_text()))
                else:
                    store = tmp / f"{provider}-{r}.db"
                    wall, _ = run_timed([sys.executable, "-m", "flextier", "run", str(jobs), "--model", model,
                                         "--base-url", url + ("/v1" if provider == "openai" else ""), "--tier", "flex",
                                         "--concurrency", str(conc), "--out", str(tmp / "ft.jsonl"), "--store",
                                         str(store), "--quiet"], env=KEYS)
                    ft_times.append(wall)
                    ft_conc.append(store_concurrency(store, conc))
                    for f in tmp.glob(f"{provider}-{r}.db*"):
                        f.unlink()
    a, b = min(raw_times), min(ft_times)
    ia, ib = raw_times.index(a), ft_times.index(b)
    return {"provider": provider, "requests": n, "concurrency": conc, "raw_s": round(a, 3),
            "flextier_s": round(b, 3), "ratio": round(b / a, 3), "raw_rps": round(n / a, 1),
            "flextier_rps": round(n / b, 1), "target": 1.15,
            "raw_all_s": [round(x, 2) for x in raw_times], "flextier_all_s": [round(x, 2) for x in ft_times],
            "ratio_median": round(statistics.median(ft_times) / statistics.median(raw_times), 3),
            "raw_inflight": raw_conc[ia], "flextier_inflight": ft_conc[ib],
            "load_avg_1m": loads}


def measure_wrap(n: int, conc: int, repeat: int, tmp: Path) -> dict:
    """The raw OpenAI SDK loop against the same loop on ``flextier.wrap``-ed clients."""
    wire_model, _ = MODELS["openai"]
    jobs = write_jobs(tmp / "wrap-jobs.jsonl", n)
    times: dict[str, list[float]] = {"raw": [], "wrap": []}
    with emulator_process("calm", "latency_scale=0") as url:
        for r in range(repeat):
            for side in (("raw", "wrap") if r % 2 == 0 else ("wrap", "raw")):
                cmd = [sys.executable, str(ROOT / "bench" / "raw_baseline.py"), "openai", url, str(jobs),
                       str(tmp / f"{side}-out.jsonl"), wire_model, str(conc)] + (["wrap"] if side == "wrap" else [])
                wall, _ = run_timed(cmd, env=KEYS)
                times[side].append(wall)
    a, b = min(times["raw"]), min(times["wrap"])
    return {"provider": "openai-wrap", "requests": n, "concurrency": conc, "raw_s": round(a, 3),
            "flextier_s": round(b, 3), "ratio": round(b / a, 3), "raw_rps": round(n / a, 1),
            "flextier_rps": round(n / b, 1), "target": 1.05,
            "raw_all_s": [round(x, 2) for x in times["raw"]], "flextier_all_s": [round(x, 2) for x in times["wrap"]],
            "ratio_median": round(statistics.median(times["wrap"]) / statistics.median(times["raw"]), 3),
            "raw_inflight": None, "flextier_inflight": None, "load_avg_1m": [load_avg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--repeat", "--repeats", dest="repeat", type=int, default=2,
                    help="runs per side (order alternates); best and median are reported")
    ap.add_argument("--providers", default="openai,gemini,bedrock,openai-wrap")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as d:
        for p in args.providers.split(","):
            if p == "openai-wrap":
                results.append(measure_wrap(args.requests, args.concurrency, args.repeat, Path(d)))
            else:
                results.append(measure(p, args.requests, args.concurrency, args.repeat, Path(d)))
            if not args.json:
                r = results[-1]
                print(f"{p:8s} raw {r['raw_s']:7.2f}s ({r['raw_rps']:7.0f} req/s)  flextier {r['flextier_s']:7.2f}s "
                      f"({r['flextier_rps']:7.0f} req/s)  ratio {r['ratio']:.3f} (target <= {r['target']}); in flight raw "
                      f"{r['raw_inflight']} flextier {r['flextier_inflight']}; load {r['load_avg_1m']}", flush=True)
    if args.json:
        print(json.dumps({"overhead": results}, indent=2))


if __name__ == "__main__":
    main()
