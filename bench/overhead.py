"""Benchmark 1: flextier's overhead against the raw SDK loop, per provider path.

Same emulator (calm profile, zero added latency), same concurrency, same requests:
(a) ``raw_baseline.py`` — a plain semaphore + gather loop writing JSONL;
(b) ``flextier run`` with its durable SQLite store.
Each pair runs side by side in one invocation (a, b, a, b, ... alternating, best of
``--repeat``), and the figure reported is the wall-time ratio b/a. Target: <= 1.15.

    python bench/overhead.py [--requests 20000] [--concurrency 256] [--providers openai,gemini,bedrock] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, emulator_process, run_timed, write_jobs

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
    raw_times, ft_times = [], []
    with emulator_process("calm", "latency_scale=0") as url:
        for r in range(repeat):
            wall_a, _ = run_timed([sys.executable, str(ROOT / "bench" / "raw_baseline.py"), provider, url, str(jobs),
                                   str(tmp / "raw.jsonl"), wire_model, str(conc)], env=KEYS)
            store = tmp / f"{provider}-{r}.db"
            wall_b, _ = run_timed([sys.executable, "-m", "flextier", "run", str(jobs), "--model", model,
                                   "--base-url", url + ("/v1" if provider == "openai" else ""), "--tier", "flex", "--concurrency", str(conc),
                                   "--out", str(tmp / "ft.jsonl"), "--store", str(store), "--quiet"], env=KEYS)
            raw_times.append(wall_a)
            ft_times.append(wall_b)
    a, b = min(raw_times), min(ft_times)
    return {"provider": provider, "requests": n, "concurrency": conc, "raw_s": round(a, 3),
            "flextier_s": round(b, 3), "ratio": round(b / a, 3), "raw_rps": round(n / a, 1),
            "flextier_rps": round(n / b, 1), "target": 1.15}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--providers", default="openai,gemini,bedrock")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as d:
        for p in args.providers.split(","):
            results.append(measure(p, args.requests, args.concurrency, args.repeat, Path(d)))
            if not args.json:
                r = results[-1]
                print(f"{p:8s} raw {r['raw_s']:7.2f}s ({r['raw_rps']:7.0f} req/s)  flextier {r['flextier_s']:7.2f}s "
                      f"({r['flextier_rps']:7.0f} req/s)  ratio {r['ratio']:.3f} (target <= 1.15)", flush=True)
    if args.json:
        print(json.dumps({"overhead": results}, indent=2))


if __name__ == "__main__":
    main()
