"""Run every benchmark in one go and print one JSON document (``python bench/run_all.py``).

Quick mode (``--quick``) shrinks the sizes so the whole set runs in a few minutes;
the README's figures come from the full sizes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    args = ap.parse_args()
    q = args.quick
    out: dict = {}
    for script, full, quick in [
        ("emulator_throughput.py", [], ["--requests", "3000"]),
        ("overhead.py", [], ["--requests", "3000", "--repeat", "1"]),
        ("memory.py", [], ["--items", "100000"]),
        ("policy.py", [], ["--quick"]),
    ]:
        if not (HERE / script).exists():
            out[script] = {"skipped": "not present"}
            continue
        print(f"running {script} ...", file=sys.stderr, flush=True)
        out[script] = run(script, *(quick if q else full))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
