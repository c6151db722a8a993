"""Non-streaming requests per second the emulator sustains (calm profile, no added latency).

Shows the emulator is not the bottleneck of later benchmarks: N concurrent
clients (default 256) post chat completions over real HTTP on loopback until R
requests (default 4000) are done. The server runs in a child process (as
``flextier emulate`` would; sharing one interpreter's GIL with 256 clients would
measure the GIL, not the emulator); clients are raw HTTP/1.1 over asyncio streams
(default, the cheapest client: most of the CPU goes to the server), ``httpx.AsyncClient``
or ``openai.AsyncOpenAI`` (the SDK costs far more CPU per request than the server, so
on a small machine that figure is the client's rate, not the emulator's).

Read the figure with the machine in mind: server and load generator share the CPU.
The result therefore also reports the server's CPU per request (from /proc, Linux),
whose inverse is the rate one core of server could sustain, the client's CPU per
request, and the load average before the run. All ``concurrency`` connections are
opened and used once before the clock starts, so the figure is the steady state
(the runner benchmarks keep their connections open the same way).

``--mode structured`` sends the same requests with a ``json_schema`` ``response_format``
(a small pydantic-style schema with a nested object, an array, an enum and an optional
field), so the cost of generating schema-valid JSON shows next to plain chat.

    python bench/emulator_throughput.py [--concurrency 256] [--requests 4000] [--client raw|httpx|openai]
                                        [--mode plain|structured] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import httpx

from flextier.emulator import serve


#: the structured-output mode's schema, as pydantic emits it for a small extraction model (strict mode)
STRUCTURED_FORMAT = {"type": "json_schema", "json_schema": {"name": "Invoice", "strict": True, "schema": {
    "$defs": {"Line": {"type": "object", "additionalProperties": False, "required": ["sku", "qty", "price"],
                       "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1},
                                      "price": {"type": "number", "minimum": 0}}}},
    "type": "object", "additionalProperties": False, "required": ["number", "status", "lines", "note"],
    "properties": {"number": {"type": "string"}, "status": {"type": "string", "enum": ["open", "paid", "void"]},
                   "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
                   "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}}


async def _drive(url: str, concurrency: int, total: int, client: str, tier: str,
                 mode: str = "plain") -> tuple[float, list[float], int]:
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0
    body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "benchmark prompt"}],
            "service_tier": tier, "max_completion_tokens": 64}
    if mode == "structured":
        body["response_format"] = STRUCTURED_FORMAT
        body["max_completion_tokens"] = 512     # room for the whole JSON object
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

    # open every connection before the clock starts (steady state, not connection set-up)
    await asyncio.gather(*(one(-1 - i) for i in range(concurrency)))
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, errors


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


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
    ap.add_argument("--mode", choices=("plain", "structured"), default="plain",
                    help="plain chat, or chat with a json_schema response_format")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    import multiprocessing as mp
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_server, args=(child, {"latency_scale": 0}), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        # CPU is read around the whole drive, warm-up included: per request = CPU / (requests + warm-up)
        srv_cpu = [_cpu_seconds(proc.pid)]
        cli_cpu = [time.process_time()]
        elapsed, lat, errors = asyncio.run(_drive(url, a.concurrency, a.requests, a.client, a.tier, a.mode))
        srv_cpu.append(_cpu_seconds(proc.pid))
        cli_cpu.append(time.process_time())
        ledger_rows = httpx.get(url + "/_emulator/stats", timeout=60).json()["requests"]
    finally:
        parent.send("stop")
        proc.join(timeout=15)
    lat.sort()
    res = {"requests": a.requests, "concurrency": a.concurrency, "client": a.client, "tier": a.tier, "mode": a.mode,
           "seconds": round(elapsed, 3), "requests_per_s": round(a.requests / elapsed, 1),
           "p50_ms": round(statistics.median(lat) * 1000, 1), "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
           "errors": errors, "ledger_rows": ledger_rows,
           "load_avg_1m": None if load is None else round(load, 2), "cpus": os.cpu_count()}
    warm = a.concurrency            # warm-up requests (one per connection), inside the CPU window
    if srv_cpu[0] is not None and srv_cpu[1] is not None:
        per = (srv_cpu[1] - srv_cpu[0]) / (a.requests + warm)
        res["server_cpu_us_per_req"] = round(per * 1e6)
        res["server_one_core_req_per_s"] = round(1 / per) if per > 0 else None
    res["client_cpu_us_per_req"] = round((cli_cpu[1] - cli_cpu[0]) / (a.requests + warm) * 1e6)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"emulator throughput: {res['requests_per_s']} req/s  ({a.requests} non-streaming {a.mode} {a.tier} "
              "requests, "
              f"{a.concurrency} concurrent {a.client} clients, calm, zero added latency; "
              f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, errors {errors})")
        cpu = (f"server CPU {res['server_cpu_us_per_req']} us/req (one core: ~{res['server_one_core_req_per_s']} req/s), "
               if "server_cpu_us_per_req" in res else "")
        print(f"  {cpu}client CPU {res['client_cpu_us_per_req']} us/req; {res['cpus']} CPUs shared by server and "
              f"clients; load average before the run {res['load_avg_1m']}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
