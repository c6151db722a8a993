"""Non-streaming requests per second the emulator sustains (calm profile, no added latency).

Shows the emulator is not the bottleneck of later benchmarks: N concurrent
clients (default 256) post chat completions over real HTTP on loopback until R
requests (default 4000) are done. The server runs in a child process (as
``flextier emulate`` would; sharing one interpreter's GIL with 256 clients would
measure the GIL, not the emulator); clients are raw ``httpx.AsyncClient``
(default) or ``openai.AsyncOpenAI``.

    python bench/emulator_throughput.py [--concurrency 256] [--requests 4000] [--client raw|httpx|openai] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import httpx

from flextier.emulator import serve


async def _drive(url: str, concurrency: int, total: int, client: str, tier: str) -> tuple[float, list[float], int]:
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0
    body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "benchmark prompt"}],
            "service_tier": tier, "max_completion_tokens": 64}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    if client == "raw":
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def one(i: int) -> None:
            conn = pool.pop() if pool else await asyncio.open_connection(host, int(port))
            data = json.dumps({**body, "messages": [{"role": "user", "content": f"p{i}"}]}).encode()
            conn[1].write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: emu\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(data) + data)
            head = await conn[0].readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await conn[0].readexactly(length)
            pool.append(conn)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
    elif client == "openai":
        import openai
        oc = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0,
                                http_client=httpx.AsyncClient(limits=limits, timeout=60))

        async def one(i: int) -> None:
            await oc.chat.completions.create(**{**body, "messages": [{"role": "user", "content": f"p{i}"}]})
    else:
        hc = httpx.AsyncClient(limits=limits, timeout=60)

        async def one(i: int) -> None:
            r = await hc.post(url + "/v1/chat/completions",
                              json={**body, "messages": [{"role": "user", "content": f"p{i}"}]})
            r.raise_for_status()

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            t = time.perf_counter()
            try:
                await one(i)
            except Exception:  # noqa: BLE001 - count, keep going
                errors += 1
            latencies.append(time.perf_counter() - t)

    # warm up connections
    await asyncio.gather(*(one(-1 - i) for i in range(min(concurrency, 64))))
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, errors


def _server(conn, knobs: dict) -> None:
    with serve("calm", seed=0, **knobs) as emu:
        conn.send(emu.url)
        conn.recv()          # until the parent is done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--client", choices=("raw", "httpx", "openai"), default="raw")
    ap.add_argument("--tier", default="flex")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    import multiprocessing as mp
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_server, args=(child, {"latency_scale": 0}), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        elapsed, lat, errors = asyncio.run(_drive(url, a.concurrency, a.requests, a.client, a.tier))
        ledger_rows = httpx.get(url + "/_emulator/stats", timeout=60).json()["requests"]
    finally:
        parent.send("stop")
        proc.join(timeout=15)
    lat.sort()
    res = {"requests": a.requests, "concurrency": a.concurrency, "client": a.client, "tier": a.tier,
           "seconds": round(elapsed, 3), "requests_per_s": round(a.requests / elapsed, 1),
           "p50_ms": round(statistics.median(lat) * 1000, 1), "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
           "errors": errors, "ledger_rows": ledger_rows}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"emulator throughput: {res['requests_per_s']} req/s  ({a.requests} non-streaming {a.tier} requests, "
              f"{a.concurrency} concurrent {a.client} clients, calm, zero added latency; "
              f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, errors {errors})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
