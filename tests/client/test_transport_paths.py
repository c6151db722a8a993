"""Flex on every call path (issue 14): the SDKs' own helpers and the libraries built on them,
through flextier's transport, against the emulator over 127.0.0.1.

Each case runs on ``calm`` (served flex, flextier's cost == the emulator's ledger) and on
``outage`` (two flex sheds in the ledger, then standard, cost == ledger). The policy's clock is
fake (``fallback=2``, backoff slept on a counter), so nothing sleeps.
"""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Literal

import anthropic
import openai
import pytest
from pydantic import BaseModel

import flextier
from flextier.emulator import clients as C
from flextier.errors import TierNotSupported

MSG = [{"role": "user", "content": "Tell me something."}]
BMSG = [{"role": "user", "content": [{"text": "Tell me something."}]}]
PROFILES = ["calm", "outage"]


class Ticket(BaseModel):
    title: str
    priority: Literal["low", "medium", "high"]


@pytest.fixture
def run(emu, make_policy):
    """(profile) -> (policy, check): check(result_info, ledger_start) asserts the profile's story."""
    def start(profile: str):
        emu.set_profile(profile, latency_scale=0)
        before = len(emu.ledger())
        flextier.totals(reset=True)

        def check(i=None, *, calls: int = 1):
            rows = emu.ledger()[before:]
            ok = [r for r in rows if r["outcome"] == "ok"]
            assert len(ok) == calls, rows
            billed = sum(Decimal(r["cost"]) for r in ok)
            t = flextier.totals()
            assert t.calls == calls and t.cost == billed and t.unpriced == 0
            if profile == "calm":
                assert all(r["served_tier"] == "flex" for r in ok) and t.by_tier == {"flex": calls}
            else:
                assert sum(1 for r in rows if r["outcome"] == "shed") == 2 * calls
                assert all(r["served_tier"] == "standard" for r in ok) and t.fallbacks == calls
            if i is not None:
                assert i.cost == Decimal(ok[-1]["cost"])
                assert i.tier == ("flex" if profile == "calm" else "standard")
                assert [a.tier for a in i.attempts] == (["flex"] if profile == "calm"
                                                        else ["flex", "flex", "standard"])
        return make_policy(fallback=2), check
    return start


# -- the OpenAI SDK ---------------------------------------------------------------------------------

def _chat_parse(w):
    return w.chat.completions.parse(model="gpt-5.4", messages=MSG, response_format=Ticket)


def _chat_stream(w):
    with w.chat.completions.stream(model="gpt-5.4", messages=MSG) as s:
        for _ in s:
            pass
        return s.get_final_completion()


def _responses_stream(w):
    with w.responses.stream(model="gpt-5.4", input="hi") as s:
        for _ in s:
            pass
        return s.get_final_response()


OPENAI = {
    "create": lambda w: w.chat.completions.create(model="gpt-5.4", messages=MSG),
    "with_raw_response": lambda w: w.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG),
    "parse": _chat_parse,
    "stream": _chat_stream,
    "responses.create": lambda w: w.responses.create(model="gpt-5.4", input="hi"),
    "responses.stream": _responses_stream,
    "responses.parse": lambda w: w.responses.parse(model="gpt-5.4", input="hi", text_format=Ticket),
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", list(OPENAI))
def test_openai_sdk_paths(emu, run, profile, path):
    pol, check = run(profile)
    raw = C.openai_client(emu)
    w = flextier.wrap(raw, pol)
    assert isinstance(w, openai.OpenAI) and raw.max_retries == 0 and w is not raw
    r = OPENAI[path](w)
    check(flextier.info(r))
    if path == "with_raw_response":
        assert r.headers["x-flextier-served-tier"] == flextier.info(r).tier
        assert Decimal(r.headers["x-flextier-cost-usd"]) == flextier.info(r).cost
        r = r.parse()
        assert flextier.info(r) is not None
    if path in ("parse", "responses.parse"):
        parsed = r.choices[0].message.parsed if path == "parse" else r.output_parsed
        assert isinstance(parsed, Ticket)


async def _achat_stream(w):
    async with w.chat.completions.stream(model="gpt-5.4", messages=MSG) as s:
        async for _ in s:
            pass
        return await s.get_final_completion()


async def _aresponses_stream(w):
    async with w.responses.stream(model="gpt-5.4", input="hi") as s:
        async for _ in s:
            pass
        return await s.get_final_response()


async def _araw(w):
    r = await w.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
    return r


AOPENAI = {
    "create": lambda w: w.chat.completions.create(model="gpt-5.4", messages=MSG),
    "with_raw_response": _araw,
    "parse": lambda w: w.chat.completions.parse(model="gpt-5.4", messages=MSG, response_format=Ticket),
    "stream": _achat_stream,
    "responses.create": lambda w: w.responses.create(model="gpt-5.4", input="hi"),
    "responses.stream": _aresponses_stream,
    "responses.parse": lambda w: w.responses.parse(model="gpt-5.4", input="hi", text_format=Ticket),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_async_openai_sdk_paths(emu, run, profile):
    async def go():
        for path, fn in AOPENAI.items():
            pol, check = run(profile)
            w = flextier.wrap(C.async_openai_client(emu), pol)
            assert isinstance(w, openai.AsyncOpenAI)
            check(flextier.info(await fn(w)))
    asyncio.run(go())


def test_explicit_tiers_are_the_callers_choice(emu, make_policy):
    flextier.totals(reset=True)
    w = flextier.wrap(C.openai_client(emu), make_policy(fallback=2))
    for st, served in (("default", "standard"), ("priority", "priority"), ("fast", "priority")):
        emu.set_profile("outage", latency_scale=0)
        r = w.chat.completions.create(model="gpt-5.4", messages=MSG, service_tier=st)
        i = flextier.info(r)
        assert i.tier == served and [a.tier for a in i.attempts] == [served]
        assert i.cost == Decimal(emu.ledger()[-1]["cost"])


def test_non_generation_requests_pass_through(emu, make_policy):
    flextier.totals(reset=True)
    w = flextier.wrap(C.openai_client(emu), make_policy())
    assert w.models.list().data
    assert flextier.totals().calls == 0


# -- LangChain over flextier.http_client ----------------------------------------------------------------

def _lc(emu, pol, **kw):
    from langchain_openai import ChatOpenAI
    return ChatOpenAI(model="gpt-5.4-mini", base_url=emu.openai_base_url, api_key="test", max_retries=0,
                      http_client=flextier.http_client(pol), http_async_client=flextier.async_http_client(pol), **kw)


def _lc_tool(llm):
    from langchain_core.tools import tool

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order by its id."""
        return "shipped"

    return llm.bind_tools([lookup_order]).invoke("Where is order 42?")


LANGCHAIN = {
    "invoke": lambda llm: llm.invoke("hi"),
    "ainvoke": lambda llm: asyncio.run(llm.ainvoke("hi")),
    "stream": lambda llm: list(llm.stream("hi")),
    "with_structured_output": lambda llm: llm.with_structured_output(Ticket).invoke("printer on fire"),
    "bind_tools": _lc_tool,
    "responses_api": lambda llm: llm.invoke("hi"),
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", list(LANGCHAIN))
def test_langchain_paths(emu, run, profile, path):
    pytest.importorskip("langchain_openai")
    pol, check = run(profile)
    llm = _lc(emu, pol, **({"use_responses_api": True} if path == "responses_api" else {}))
    out = LANGCHAIN[path](llm)
    check()
    if path == "with_structured_output":
        assert isinstance(out, Ticket)


def test_langchain_sees_flextier_headers(emu, make_policy):
    pytest.importorskip("langchain_openai")
    emu.set_profile("calm", latency_scale=0)
    m = _lc(emu, make_policy(), include_response_headers=True).invoke("hi")
    h = m.response_metadata["headers"]
    assert h["x-flextier-served-tier"] == "flex" and Decimal(h["x-flextier-cost-usd"]) == \
        Decimal(emu.ledger()[-1]["cost"])


# -- pydantic-ai and instructor ---------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_pydantic_ai_no_tier_set_is_flex(emu, run, profile):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    pol, check = run(profile)
    model = OpenAIChatModel("gpt-5.4-mini", provider=OpenAIProvider(
        openai_client=flextier.wrap(C.async_openai_client(emu), pol)))
    out = Agent(model, output_type=Ticket).run_sync("the printer is broken")
    assert isinstance(out.output, Ticket)
    check(calls=len(out.all_messages()) // 2)


@pytest.mark.parametrize("profile", PROFILES)
def test_instructor_response_model(emu, run, profile):
    instructor = pytest.importorskip("instructor", reason="installed --no-deps by .ci/run (jiter pin)")
    pol, check = run(profile)
    client = instructor.from_openai(flextier.wrap(C.openai_client(emu), pol))
    t = client.chat.completions.create(model="gpt-5.4-mini", response_model=Ticket, max_retries=0, messages=MSG)
    assert isinstance(t, Ticket)
    check()


# -- google-genai ---------------------------------------------------------------------------------------

def _gchat(g):
    return g.chats.create(model="gemini-3-flash-preview").send_message("hello")


async def _gaio(g):
    return await g.aio.models.generate_content(model="gemini-3-flash-preview", contents="hi")


async def _gaio_stream(g):
    return [c async for c in await g.aio.models.generate_content_stream(model="gemini-3-flash-preview",
                                                                         contents="hi")][-1]


GEMINI = {
    "generate_content": lambda g: g.models.generate_content(model="gemini-3-flash-preview", contents="hi"),
    "stream": lambda g: list(g.models.generate_content_stream(model="gemini-3-flash-preview", contents="hi"))[-1],
    "aio": lambda g: asyncio.run(_gaio(g)),
    "aio_stream": lambda g: asyncio.run(_gaio_stream(g)),
    "chats.send_message": _gchat,
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", list(GEMINI))
def test_gemini_paths(emu, run, profile, path):
    from google import genai
    pol, check = run(profile)
    g = flextier.wrap(C.gemini_client(emu), pol)
    assert isinstance(g, genai.Client)
    check(flextier.info(GEMINI[path](g)))


# -- Anthropic ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_anthropic_create_and_stream_standard(emu, make_policy, profile):
    emu.set_profile(profile, latency_scale=0)
    with pytest.raises(TierNotSupported):   # the default policy asks for flex, which Claude has not
        flextier.wrap(C.anthropic_client(emu), make_policy()).messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=MSG)
    w = flextier.wrap(C.anthropic_client(emu), make_policy(tier="standard"))
    assert isinstance(w, anthropic.Anthropic)
    r = w.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MSG)
    assert flextier.info(r).tier == "standard" and flextier.info(r).cost == Decimal(emu.ledger()[-1]["cost"])
    with w.messages.stream(model="claude-haiku-4-5", max_tokens=40, messages=MSG) as s:
        for _ in s.text_stream:
            pass
        m = s.get_final_message()
    assert flextier.info(m).tier == "standard" and flextier.info(m).cost == Decimal(emu.ledger()[-1]["cost"])


# -- Bedrock --------------------------------------------------------------------------------------------

_NOVA = "us.amazon.nova-pro-v1:0"
_IBODY = json.dumps({"messages": BMSG, "inferenceConfig": {"maxTokens": 50}})


def _drain(r, key):
    for _ in r[key]:
        pass
    return r


BEDROCK = {
    "converse": lambda b: b.converse(modelId=_NOVA, messages=BMSG),
    "converse_stream": lambda b: _drain(b.converse_stream(modelId=_NOVA, messages=BMSG), "stream"),
    "invoke_model": lambda b: b.invoke_model(modelId=_NOVA, body=_IBODY),
    "invoke_model_with_response_stream": lambda b: _drain(
        b.invoke_model_with_response_stream(modelId=_NOVA, body=_IBODY), "body"),
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", list(BEDROCK))
def test_bedrock_paths(emu, run, profile, path):
    pol, check = run(profile)
    raw = C.bedrock_client(emu)
    b = flextier.wrap(raw, pol)
    assert type(b).__name__ == type(raw).__name__ == "BedrockRuntime" and b is not raw   # botocore makes a class per client
    r = BEDROCK[path](b)
    check(flextier.info(r))
    # a ConverseStream names its tier in its last event: the header (sent first) is empty then
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-flextier-served-tier"] in (flextier.info(r).tier, "")
