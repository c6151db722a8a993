"""What the gateway costs: the OpenAI SDK straight to the emulator vs the same through ``flextier serve``.

Side by side, one run each, same client, same requests: ``openai.AsyncOpenAI`` at concurrency
128 (default) posts non-streaming chat completions until R requests (default 2000) are done,
(a) to the emulator's URL and (b) to a gateway in front of that emulator (single-user mode,
calm profile, zero added latency). The emulator and the gateway each run in a child process
(as ``flextier emulate`` / ``flextier serve`` would); the client runs here. Reported: requests
per second and p50/p99 latency of both, the throughput ratio (gateway / direct; target >= 0.85)
and the added p50 (target <= 3 ms), the gateway's CPU per request, the load average.

Read the figures with the machine in mind: client, gateway and emulator share the CPUs.

    python bench/gateway.py [--concurrency 128] [--requests 2000] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

import httpx


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _emulator(conn) -> None:
    from flextier.emulator import serve

    with serve("calm", seed=0, latency_scale=0) as emu:
        conn.send(emu.base_urls())
        conn.recv()


def _gateway(conn, upstreams: dict, ledger: str) -> None:
    from dataclasses import replace

    from flextier.gateway import GatewayConfig, serve

    cfg = GatewayConfig()
    cfg = replace(cfg, upstreams={**cfg.upstreams, **upstreams})
    with serve(cfg, ledger=ledger) as gw:
        conn.send(gw.url)
        conn.recv()


async def _drive(base_url: str, concurrency: int, requests: int) -> tuple[float, list[float], int]:
    import openai

    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
                             timeout=120)
    c = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, http_client=http)
    msgs = [{"role": "user", "content": "Summarise the plot of a short story in two lines."}]
    lat: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        t = time.perf_counter()
        try:
            await c.chat.completions.create(model="gpt-5.4", messages=msgs, max_tokens=64)
            lat.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001 - counted
            errors += 1

    await asyncio.gather(*[one() for _ in range(concurrency)])   # warm: every connection opened once
    lat.clear()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()
    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - t0
    await c.close()
    return elapsed, lat, errors


def _stats(elapsed: float, lat: list[float], requests: int, errors: int) -> dict:
    lat = sorted(lat)
    return {"seconds": round(elapsed, 3), "requests_per_s": round(requests / elapsed, 1),
            "p50_ms": round(statistics.median(lat) * 1000, 2), "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
            "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pe, ce = ctx.Pipe()
    pg, cg = ctx.Pipe()
    emu = ctx.Process(target=_emulator, args=(ce,), daemon=True)
    emu.start()
    gw = None
    try:
        ups = pe.recv()
        ledger = os.path.join(tempfile.mkdtemp(prefix="ft-gw-bench-"), "gw.db")
        gw = ctx.Process(target=_gateway, args=(cg, ups, ledger), daemon=True)
        gw.start()
        gw_url = pg.recv()
        load = os.getloadavg()[0]
        direct = _stats(*_run(ups["openai"], a))
        cpu0 = _cpu_seconds(gw.pid)
        via = _stats(*_run(gw_url + "/v1", a))
        cpu1 = _cpu_seconds(gw.pid)
    finally:
        pe.send("stop")
        if gw is not None:
            pg.send("stop")
            gw.join(timeout=30)
        emu.join(timeout=30)
    res = {"concurrency": a.concurrency, "requests": a.requests, "client": "openai.AsyncOpenAI", "direct": direct,
           "gateway": via, "throughput_ratio": round(via["requests_per_s"] / direct["requests_per_s"], 3),
           "added_p50_ms": round(via["p50_ms"] - direct["p50_ms"], 2), "cpus": os.cpu_count(),
           "load_avg_1m": round(load, 2)}
    if cpu0 is not None and cpu1 is not None:
        res["gateway_cpu_us_per_req"] = round((cpu1 - cpu0) / (a.requests + a.concurrency) * 1e6)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"direct : {direct['requests_per_s']} req/s  p50 {direct['p50_ms']} ms  p99 {direct['p99_ms']} ms  "
              f"errors {direct['errors']}")
        print(f"gateway: {via['requests_per_s']} req/s  p50 {via['p50_ms']} ms  p99 {via['p99_ms']} ms  "
              f"errors {via['errors']}")
        print(f"throughput ratio {res['throughput_ratio']} (>= 0.85), added p50 {res['added_p50_ms']} ms (<= 3 ms); "
              f"gateway CPU {res.get('gateway_cpu_us_per_req')} us/req; {res['cpus']} CPUs, load {res['load_avg_1m']}")
    return 0 if res["throughput_ratio"] >= 0.85 and res["added_p50_ms"] <= 3 else 1


def _run(url: str, a: argparse.Namespace) -> tuple[float, list[float], int, int]:
    el, lat, err = asyncio.run(_drive(url, a.concurrency, a.requests))
    return el, lat, a.requests, err


if __name__ == "__main__":
    sys.exit(main())
