"""Run every benchmark in one go and print one JSON document (``python bench/run_all.py``).

Quick mode (``--quick``) shrinks the sizes so the whole set runs in a few minutes;
the README's figures come from the full sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, str(HERE / script), *args, "--json"], capture_output=True, text=True, cwd=HERE)
    if p.returncode != 0:
        return {"script": script, "error": p.stderr[-3000:]}
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=20000, help="overhead: requests per run")
    ap.add_argument("--repeat", type=int, default=2, help="overhead: runs per side (best of)")
    ap.add_argument("--memory-items", type=int, default=1_000_000)
    ap.add_argument("--skip", default="", help="comma-separated scripts to skip (e.g. policy.py)")
    ap.add_argument("--out", default=str(HERE / "results.json"), help="where to save the JSON ('-': stdout only)")
    args = ap.parse_args()
    q = args.quick
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    out: dict = {"load_avg_1m_at_start": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
                 "python": sys.version.split()[0], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for script, full, quick in [
        ("emulator_throughput.py", [], ["--requests", "3000"]),
        ("overhead.py", ["--requests", str(args.requests), "--repeat", str(args.repeat)],
         ["--requests", "3000", "--repeat", "1"]),
        ("memory.py", ["--items", str(args.memory_items)], ["--items", "100000"]),
        ("policy.py", [], ["--quick"]),
    ]:
        if script in skip:
            out[script] = {"skipped": "--skip"}
            continue
        if not (HERE / script).exists():
            out[script] = {"skipped": "not present"}
            continue
        print(f"running {script} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        out[script] = run(script, *(quick if q else full))
        out[script]["bench_wall_s"] = round(time.monotonic() - t0, 1)
        out[script]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
