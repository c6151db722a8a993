"""Benchmark 2: memory at a million items.

Runs ``flextier run`` on an N-line JSONL job (default 1,000,000) against the calm
emulator with zero added latency, and reports the runner's peak RSS and the size of
its SQLite store. Memory must be bounded by concurrency, not by the number of items:
the same job at N/10 items is measured too, and the RSS ratio between them is printed.
Target: peak RSS <= 300 MB at any N.

    python bench/memory.py [--items 1000000] [--small 100000] [--concurrency 256] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _harness import emulator_process, run_timed, write_jobs

KEYS = {"OPENAI_API_KEY": "bench"}


def one(n: int, conc: int, tmp: Path, url: str) -> dict:
    jobs = write_jobs(tmp / f"jobs-{n}.jsonl", n, prompt_words=10, max_tokens=8)
    store = tmp / f"store-{n}.db"
    wall, rss_kib = run_timed([sys.executable, "-m", "flextier", "run", str(jobs), "--model", "openai/gpt-5.4-mini",
                               "--base-url", url + "/v1", "--tier", "flex", "--concurrency", str(conc),
                               "--out", str(tmp / f"out-{n}.jsonl"), "--store", str(store), "--quiet"], env=KEYS)
    size = sum(p.stat().st_size for p in tmp.glob(f"store-{n}.db*"))
    return {"items": n, "wall_s": round(wall, 1), "peak_rss_mb": round(rss_kib / 1024, 1),
            "store_mb": round(size / 2**20, 1), "input_mb": round(jobs.stat().st_size / 2**20, 1),
            "items_per_s": round(n / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=None, help="the comparison run's size (default: items / 10)")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, emulator_process("calm", "latency_scale=0") as url:
        small = one(args.small or max(1, args.items // 10), args.concurrency, Path(d), url)
        big = one(args.items, args.concurrency, Path(d), url)
    out = {"small": small, "large": big, "rss_ratio_large_vs_small": round(big["peak_rss_mb"] / small["peak_rss_mb"], 2),
           "target_peak_rss_mb": 300}
    if args.json:
        print(json.dumps({"memory": out}, indent=2))
    else:
        for r in (small, big):
            print(f"{r['items']:>9,} items: peak RSS {r['peak_rss_mb']:.0f} MB, store {r['store_mb']:.0f} MB, "
                  f"input {r['input_mb']:.0f} MB, {r['items_per_s']:.0f} items/s")
        print(f"RSS ratio {args.items:,} vs {small['items']:,} items: {out['rss_ratio_large_vs_small']} (target: flat, <= 300 MB)")


if __name__ == "__main__":
    main()
