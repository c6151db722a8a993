"""The gateway's CPU per call, two versions of the code side by side: ``--base`` (another checkout's
``src``, e.g. main) against this checkout's, in front of one emulator, same client, alternating.

Why its own bench: at concurrency 128 on a shared 2-CPU machine ``bench/gateway.py``'s latency rows
follow the other load more than the code, but CPU per call (from ``/proc/PID/stat``) is what the
gateway's code controls (docs/gateway.md, "Per-call CPU"). Each gateway is a child process started
with ``PYTHONPATH`` set to its ``src``; rounds alternate which goes first; reported: CPU us per call
of every round, the medians, the ratio this/base of the medians and the median of the paired
rounds' ratios, and the load average before and after.

    python bench/gateway_cpu.py --base /work/main/src [--concurrency 8] [--requests 500] [--rounds 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as G  # noqa: E402 - bench/gateway.py: the emulator child, the client and /proc CPU

HERE = str(Path(__file__).resolve().parent.parent / "src")
_CHILD = r'''
import sys, json
from dataclasses import replace
from flextier.gateway import GatewayConfig, serve
cfg = GatewayConfig()
cfg = replace(cfg, upstreams={**cfg.upstreams, **json.loads(sys.argv[1])})
with serve(cfg, ledger=sys.argv[2]) as gw:
    print(gw.url, flush=True)
    sys.stdin.readline()
'''


def _start(src: str, ups: dict, ledger: str) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(ups), ledger], env=dict(os.environ, PYTHONPATH=src),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the other version's src directory (e.g. main's)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    pe, ce = ctx.Pipe()
    emu = ctx.Process(target=G._emulator, args=(ce,), daemon=True)
    emu.start()
    ups = pe.recv()
    d = tempfile.mkdtemp(prefix="ft-gw-cpu-")
    gws = {"base": _start(a.base, ups, os.path.join(d, "base.db")), "this": _start(HERE, ups, os.path.join(d, "this.db"))}
    cpu: dict[str, list[float]] = {"base": [], "this": []}
    try:
        for _p, url in gws.values():   # warm: connections, imports, caches
            G._run(url + "/v1", argparse.Namespace(concurrency=a.concurrency, requests=200))
        load0 = os.getloadavg()[0]
        for r in range(a.rounds):
            for name in (("base", "this") if r % 2 == 0 else ("this", "base")):
                p, url = gws[name]
                c0 = G._cpu_seconds(p.pid)
                G._run(url + "/v1", argparse.Namespace(concurrency=a.concurrency, requests=a.requests))
                c1 = G._cpu_seconds(p.pid)
                cpu[name].append((c1 - c0) / (a.requests + a.concurrency) * 1e6)   # _drive warms with one call per slot first
        load1 = os.getloadavg()[0]
    finally:
        for p, _url in gws.values():
            p.stdin.write("\n")
            p.stdin.flush()
            p.wait(30)
        pe.send("stop")
        emu.join(30)
    mb, mt = statistics.median(cpu["base"]), statistics.median(cpu["this"])
    res = {"concurrency": a.concurrency, "requests": a.requests, "rounds": a.rounds,
           "base_us": [round(x) for x in cpu["base"]], "this_us": [round(x) for x in cpu["this"]],
           "base_median_us": round(mb), "this_median_us": round(mt), "ratio_of_medians": round(mt / mb, 3),
           "median_paired_ratio": round(statistics.median(t / b for t, b in zip(cpu["this"], cpu["base"])), 3),
           "cpus": os.cpu_count(), "load_avg_1m_before": round(load0, 2), "load_avg_1m_after": round(load1, 2)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"gateway CPU per call at concurrency {a.concurrency}, {a.rounds} rounds of {a.requests}:")
        print(f"  base {res['base_us']} us, median {res['base_median_us']}")
        print(f"  this {res['this_us']} us, median {res['this_median_us']}")
        print(f"  this/base: {res['ratio_of_medians']} (medians), {res['median_paired_ratio']} (paired rounds); "
              f"{res['cpus']} CPUs, load {res['load_avg_1m_before']} -> {res['load_avg_1m_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
