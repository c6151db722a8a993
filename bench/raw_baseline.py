"""The 30-line asyncio loop a user would write instead of flextier: semaphore + gather + JSONL.

Run as a child process by ``bench/overhead.py``; one provider per invocation:

    python bench/raw_baseline.py openai  BASE_URL jobs.jsonl out.jsonl MODEL CONCURRENCY [wrap]
    python bench/raw_baseline.py gemini  BASE_URL ...
    python bench/raw_baseline.py bedrock BASE_URL ...

It sends every line on flex once (no retries, no store): the fastest thing that could work.
It also writes ``out.jsonl.stats.json``: peak and mean requests in flight (the concurrency it
really achieved, to compare with flextier's).

Client configuration (what a competent user does at 256 concurrent requests, and what
flextier's adapters do too, see ``flextier.providers.base.Transport``):

* **OpenAI / Gemini (httpx):** not one client with a 256-connection pool but 8 clients of 32
  connections each, used round-robin, sharing one TLS context. httpx's connection pool
  (httpcore) walks *all* its connections whenever a request is queued or finishes, probing
  every idle socket for readability (a syscall plus anyio attribute lookups each); with one
  pool of 256 that bookkeeping alone costs ~6-10 ms of CPU per request and the loop is
  CPU-bound at ~60-90 req/s on this class of machine (measured: one pool of 256 -> 10.3 ms
  CPU/request, 8 pools of 32 -> ~4-5 ms). Keep-alive is on (connections are reused);
  lowering ``max_keepalive_connections`` only adds reconnects. The SDK's aiohttp backend
  (``openai[aiohttp]``) would avoid httpcore altogether but is an extra dependency.
* **OpenAI**: the typed ``client.chat.completions.create()`` call and ``model_dump()``: the
  ordinary SDK usage (flextier posts the JSON body through the same SDK client instead,
  skipping the typed request transform and response model; that saving is flextier's).
* **Bedrock (boto3)**: one client, ``max_pool_connections=concurrency`` and a thread pool
  of ``concurrency`` workers: boto3 is synchronous, so one thread per request in flight.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor


SHARD = 32  # connections per httpx pool (see the module docstring)


class InFlight:
    """Requests in flight: peak, and the time integral (mean = integral / wall time)."""

    def __init__(self) -> None:
        self.n = self.peak = 0
        self.area = 0.0
        self.t0 = self.last = time.perf_counter()

    def _tick(self) -> None:
        t = time.perf_counter()
        self.area += self.n * (t - self.last)
        self.last = t

    def __enter__(self) -> None:
        if not self.peak:  # the clock starts with the first request (not at import)
            self.t0 = self.last = time.perf_counter()
        self._tick()
        self.n += 1
        self.peak = max(self.peak, self.n)

    def __exit__(self, *exc: object) -> None:
        self._tick()
        self.n -= 1

    def stats(self) -> dict:
        return {"peak_inflight": self.peak, "mean_inflight": round(self.area / max(1e-9, self.last - self.t0), 1)}


FLIGHT = InFlight()


async def run_openai(base: str, lines: list[dict], out, model: str, conc: int) -> None:
    import httpx2
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    k = max(1, -(-conc // SHARD))
    per = -(-conc // k)
    tls = httpx2.create_ssl_context()
    clients = [AsyncOpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=900,
                           http_client=DefaultAsyncHttpxClient(verify=tls, limits=httpx2.Limits(
                               max_connections=per, max_keepalive_connections=per)))
               for _ in range(k)]
    if WRAP:  # the same loop through flextier.wrap (bench/overhead.py's "openai-wrap" row)
        import flextier
        clients = [flextier.wrap(c) for c in clients]
    sem = asyncio.Semaphore(conc)

    async def one(i: int, item: dict) -> None:
        async with sem:
            with FLIGHT:
                r = await clients[i % k].chat.completions.create(
                    model=model, messages=[{"role": "user", "content": item["prompt"]}],
                    max_completion_tokens=item.get("max_tokens", 16), service_tier="flex")
            out.write(json.dumps({"custom_id": item["id"], "response": {"status_code": 200, "body": r.model_dump()}}) + "\n")

    await asyncio.gather(*(one(i, x) for i, x in enumerate(lines)))


async def run_gemini(base: str, lines: list[dict], out, model: str, conc: int) -> None:
    import httpx
    from google import genai
    from google.genai import types

    k = max(1, -(-conc // SHARD))
    per = -(-conc // k)
    tls = httpx.create_ssl_context()
    clients = [genai.Client(api_key="bench", http_options=types.HttpOptions(
        base_url=base, timeout=900_000, httpx_async_client=httpx.AsyncClient(
            verify=tls, timeout=None, limits=httpx.Limits(max_connections=per, max_keepalive_connections=per)))).aio
        for _ in range(k)]
    sem = asyncio.Semaphore(conc)

    async def one(i: int, item: dict) -> None:
        async with sem:
            with FLIGHT:
                r = await clients[i % k].models.generate_content(
                    model=model, contents=item["prompt"],
                    config=types.GenerateContentConfig(max_output_tokens=item.get("max_tokens", 16),
                                                       service_tier="flex"))
            out.write(json.dumps({"custom_id": item["id"], "response": {"status_code": 200,
                                                                          "body": r.model_dump(mode="json")}}) + "\n")

    await asyncio.gather(*(one(i, x) for i, x in enumerate(lines)))


async def run_bedrock(base: str, lines: list[dict], out, model: str, conc: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("bedrock-runtime", endpoint_url=base, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x",
                          config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=900,
                                        max_pool_connections=conc))
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(conc)
    sem = asyncio.Semaphore(conc)

    def call(item: dict) -> dict:
        return client.converse(modelId=model, messages=[{"role": "user", "content": [{"text": item["prompt"]}]}],
                               inferenceConfig={"maxTokens": item.get("max_tokens", 16)}, serviceTier={"type": "flex"})

    async def one(item: dict) -> None:
        async with sem:
            with FLIGHT:
                r = await loop.run_in_executor(pool, call, item)
            r.pop("ResponseMetadata", None)
            out.write(json.dumps({"custom_id": item["id"], "response": {"status_code": 200, "body": r}}, default=str) + "\n")

    await asyncio.gather(*(one(x) for x in lines))


WRAP = False


def main() -> None:
    global WRAP
    provider, base, jobs, out_path, model, conc = sys.argv[1:7]
    WRAP = sys.argv[7:8] == ["wrap"]
    lines = [json.loads(x) for x in open(jobs)]
    runner = {"openai": run_openai, "gemini": run_gemini, "bedrock": run_bedrock}[provider]
    with open(out_path, "w") as out:
        asyncio.run(runner(base, lines, out, model, int(conc)))
    with open(out_path + ".stats.json", "w") as f:
        json.dump(FLIGHT.stats(), f)


if __name__ == "__main__":
    main()
