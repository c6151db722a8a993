"""The budget's prompt bound must cover what a provider bills for a request with tools.

The emulator now counts prompts with a real BPE plus each provider's documented overheads
(Anthropic's tool-use system prompt is 346 tokens); a bound that ignored those would let a
``--max-cost`` cap be passed on short prompts that declare tools.
"""
from __future__ import annotations

import httpx
import pytest

from flextier.emulator import serve
from flextier.policy.budget import prompt_tokens_upper_bound

TOOL = {
    "name": "lookup_order",
    "description": "Find an order",
    "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"},
                                                      "include_items": {"type": "boolean"}},
                     "required": ["order_id"]},
}


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "lookup_order"}])
def test_anthropic_tools_bound_covers_billed_count(choice):
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}],
            "tools": [TOOL], "tool_choice": choice}
    with serve(profile="calm") as emu:
        r = httpx.post(f"{emu.anthropic_base_url}/v1/messages/count_tokens", json=body,
                       headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    billed = r.json()["input_tokens"]
    assert billed > 300  # the tool-use system prompt is counted
    assert prompt_tokens_upper_bound(body) >= billed


def test_openai_function_tools_bound_covers_framing():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {f"field_{i}": {"type": "string", "enum": ["a", "b"]} for i in range(20)}}}}]
    body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "x"}], "tools": tools}
    without_keys = sum(len(v) for v in ("user", "x", "gpt-5.4-mini", "function", "f", "object"))
    assert prompt_tokens_upper_bound(body) > without_keys + 600  # keys and the tool overhead both count
