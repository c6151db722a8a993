"""The 30-line asyncio loop a user would write instead of flextier: semaphore + gather + JSONL.

Run as a child process by ``bench/overhead.py``; one provider per invocation:

    python bench/raw_baseline.py openai  BASE_URL jobs.jsonl out.jsonl MODEL CONCURRENCY
    python bench/raw_baseline.py gemini  BASE_URL ...
    python bench/raw_baseline.py bedrock BASE_URL ...

It sends every line on flex once (no retries, no store): the fastest thing that could work.
"""
from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor


async def run_openai(base: str, lines: list[dict], out, model: str, conc: int) -> None:
    import httpx
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=900,
                         http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=conc,
                                                                            max_keepalive_connections=conc)))
    sem = asyncio.Semaphore(conc)

    async def one(item: dict) -> None:
        async with sem:
            r = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": item["prompt"]}],
                max_completion_tokens=item.get("max_tokens", 16), service_tier="flex")
            out.write(json.dumps({"custom_id": item["id"], "response": {"status_code": 200, "body": r.model_dump()}}) + "\n")

    await asyncio.gather(*(one(x) for x in lines))


async def run_gemini(base: str, lines: list[dict], out, model: str, conc: int) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base, timeout=900_000))
    sem = asyncio.Semaphore(conc)

    async def one(item: dict) -> None:
        async with sem:
            r = await client.aio.models.generate_content(
                model=model, contents=item["prompt"],
                config=types.GenerateContentConfig(max_output_tokens=item.get("max_tokens", 16), service_tier="flex"))
            out.write(json.dumps({"custom_id": item["id"], "response": {"status_code": 200,
                                                                          "body": r.model_dump(mode="json")}}) + "\n")

    await asyncio.gather(*(one(x) for x in lines))


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
            r = await loop.run_in_executor(pool, call, item)
            r.pop("ResponseMetadata", None)
            out.write(json.dumps({"custom_id": item["id"], "response": {"status_code": 200, "body": r}}, default=str) + "\n")

    await asyncio.gather(*(one(x) for x in lines))


def main() -> None:
    provider, base, jobs, out_path, model, conc = sys.argv[1:7]
    lines = [json.loads(x) for x in open(jobs)]
    runner = {"openai": run_openai, "gemini": run_gemini, "bedrock": run_bedrock}[provider]
    with open(out_path, "w") as out:
        asyncio.run(runner(base, lines, out, model, int(conc)))


if __name__ == "__main__":
    main()
