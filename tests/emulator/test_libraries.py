"""The libraries users build structured pipelines and agents on, unchanged, against the emulator.

LangChain (``with_structured_output`` both ways, ``bind_tools`` with a tool round trip),
pydantic-ai (an agent with a typed output and one tool), instructor (``response_model``).
Each points the real OpenAI SDK at the emulator with ``base_url``, a dummy key and no retries.
"""
from __future__ import annotations

import json
from typing import Literal, Optional

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from flextier.emulator.clients import async_openai_client, openai_client


class Ticket(BaseModel):
    """A support ticket extracted from an email."""

    title: str
    priority: Literal["low", "medium", "high"]
    tags: list[str]
    assignee: Optional[str] = None
    estimate_h: int = Field(ge=1, le=40)


def _chat(emu, **kw):
    from langchain_openai import ChatOpenAI
    return ChatOpenAI(model="gpt-5.4-mini", base_url=emu.openai_base_url, api_key="test", max_retries=0, **kw)


# -- LangChain ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(calm, method):
    llm = _chat(calm).with_structured_output(Ticket, method=method, include_raw=True)
    out = llm.invoke("The printer on floor 3 is on fire, please help")
    assert out["parsing_error"] is None
    t = out["parsed"]
    assert isinstance(t, Ticket)
    raw = out["raw"]
    if method == "function_calling":
        assert raw.tool_calls and raw.tool_calls[0]["name"] == "Ticket"
    else:
        Draft202012Validator(Ticket.model_json_schema()).validate(json.loads(raw.content))


def test_langchain_bind_tools_round_trip(emulator):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def lookup_order(order_id: str, include_items: bool = False) -> str:
        """Look up an order by its id."""
        return f"order {order_id}: shipped"

    emu = emulator("calm", tool_call_rate=1.0)
    llm = _chat(emu).bind_tools([lookup_order])
    msgs = [HumanMessage("Where is my order 42?")]
    ai = llm.invoke(msgs)
    call, = ai.tool_calls
    assert call["name"] == "lookup_order" and isinstance(call["args"]["order_id"], str)
    result = lookup_order.invoke(call)          # the real tool runs on the model's arguments
    assert isinstance(result, ToolMessage)
    final = llm.invoke(msgs + [ai, result])
    assert not final.tool_calls and final.content
    rows = emu.ledger()
    assert [r["outcome"] for r in rows] == ["ok", "ok"] and rows[1]["input_tokens"] > rows[0]["input_tokens"]


def test_langchain_streams_tool_call_chunks(emulator):
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    emu = emulator("calm", tool_call_rate=1.0)
    llm = _chat(emu).bind_tools([add], tool_choice="add")
    chunks = list(llm.stream("what is 2 + 3?"))
    assert len(chunks) > 2
    total = chunks[0]
    for ch in chunks[1:]:
        total = total + ch
    call, = total.tool_calls
    assert call["name"] == "add" and isinstance(call["args"]["a"], int) and isinstance(call["args"]["b"], int)


# -- pydantic-ai ------------------------------------------------------------------------------------------
def test_pydantic_ai_agent_typed_output_and_tool(calm):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("gpt-5.4-mini", provider=OpenAIProvider(openai_client=async_openai_client(calm)))
    agent = Agent(model, output_type=Ticket, instructions="Triage the email into a ticket.")
    seen: list[str] = []

    @agent.tool_plain
    def team_of(product: str) -> str:
        """The team that owns a product."""
        seen.append(product)
        return "printers-team"

    outputs = [agent.run_sync(f"Email {i}: the printer is broken") for i in range(4)]
    assert all(isinstance(o.output, Ticket) for o in outputs)
    # "required" tool choice: the agent picks a tool not yet called, so some runs call team_of first
    assert seen and all(isinstance(p, str) for p in seen)
    assert any(len(o.all_messages()) > 2 for o in outputs)


# -- instructor --------------------------------------------------------------------------------------------
def test_instructor_response_model(calm):
    instructor = pytest.importorskip("instructor", reason="instructor 1.17 pins jiter<0.15; openai 3.x needs "
                                                          ">=0.16, so it is not in the test extra")
    client = instructor.from_openai(openai_client(calm))
    t = client.chat.completions.create(model="gpt-5.4-mini", response_model=Ticket, max_retries=0,
                                       messages=[{"role": "user", "content": "The VPN is down again"}])
    assert isinstance(t, Ticket) and 1 <= t.estimate_h <= 40
    js = instructor.from_openai(openai_client(calm), mode=instructor.Mode.JSON_SCHEMA)
    t2 = js.chat.completions.create(model="gpt-5.4-mini", response_model=Ticket, max_retries=0,
                                    messages=[{"role": "user", "content": "The VPN is down again"}])
    assert isinstance(t2, Ticket)
