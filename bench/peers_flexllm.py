"""flexllm's side of ``bench/peers.py``: the same job file through ``LLMClient.chat_batch``.

Run as a child process with a Python that has ``flexllm`` (``pip install 'flextier[bench]'``
in its own venv, see ``bench/peers.py``):

    python bench/peers_flexllm.py BASE_URL jobs.jsonl out.jsonl MODEL CONCURRENCY

It uses flexllm as its README shows: one client, ``concurrency_limit`` requests in flight,
results streamed to ``output_jsonl`` (its crash-resume checkpoint), no progress bar, no cache.
"""
from __future__ import annotations

import asyncio
import json
import sys


async def main(base_url: str, jobs: str, out: str, model: str, conc: int) -> None:
    from flexllm import LLMClient

    msgs, max_tokens = [], None
    with open(jobs) as f:
        for line in f:
            rec = json.loads(line)
            msgs.append([{"role": "user", "content": rec["prompt"]}])
            max_tokens = rec.get("max_tokens", max_tokens)
    client = LLMClient(provider="openai", base_url=base_url, api_key="bench", model=model,
                       concurrency_limit=conc, max_qps=10**6, retry_times=3)
    res = await client.chat_batch(msgs, output_jsonl=out, show_progress=False, max_tokens=max_tokens,
                                  service_tier="flex")  # flexllm puts extra kwargs into the body
    ok = sum(1 for r in res if getattr(r, "ok", r is not None))
    if ok != len(msgs):
        raise SystemExit(f"flexllm: {len(msgs) - ok} of {len(msgs)} failed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
