"""Real clients against the gateway in front of the emulator, over 127.0.0.1 (issue 15).

Each client is pointed at the gateway by its base URL only. On ``calm`` every call is served
flex and the gateway's cost header equals the emulator's ledger (what the provider billed); on
``outage`` the call falls back to standard within the ``x-flextier-deadline`` it sent (the
policy's clock is fake: minutes of flex backoff take no time).
"""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "Tell me something."}]


def _ok_rows(emu, before):
    return [r for r in emu.ledger()[before:] if r["outcome"] == "ok"]


def _calm_check(emu, before, headers, n=1):
    ok = _ok_rows(emu, before)
    assert len(ok) == n and all(r["served_tier"] == "flex" for r in ok), ok
    assert headers["x-flextier-served-tier"] == "flex"
    assert headers["x-flextier-attempts"] == "1"
    assert Decimal(headers["x-flextier-cost-usd"]) == Decimal(ok[-1]["cost"])
    assert Decimal(headers["x-flextier-standard-cost-usd"]) == 2 * Decimal(ok[-1]["cost"])


def test_openai_sync_calm_cost_equals_emulator_ledger(gateway, emu):
    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    before = len(emu.ledger())
    raw = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
    assert raw.parse().service_tier == "flex" and raw.parse().choices[0].message.content
    _calm_check(emu, before, raw.headers)
    gw.ledger.flush()
    row = gw.ledger.rows()[-1]
    assert (row.served_tier, row.cost, row.requested_tier, row.key) == ("flex", Decimal(raw.headers["x-flextier-cost-usd"]),
                                                                        "auto", "-")


def test_openai_async_and_responses(gateway, emu):
    gw = gateway()

    async def go():
        c = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
        before = len(emu.ledger())
        raw = await c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
        _calm_check(emu, before, raw.headers)
        before = len(emu.ledger())
        r = await c.responses.with_raw_response.create(model="gpt-5.4", input="hi")
        assert r.parse().service_tier == "flex" and r.parse().output_text
        _calm_check(emu, before, r.headers)
        await c.close()
    asyncio.run(go())


def test_openai_streams_pass_chunk_by_chunk_usage_hidden_unless_asked(gateway, emu):
    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    with c.chat.completions.with_streaming_response.create(model="gpt-5.4", messages=MSG, stream=True) as resp:
        assert resp.headers["x-flextier-served-tier"] == "flex"
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    assert len(chunks) > 3 and all("usage" not in ch for ch in chunks)   # flextier asked; the caller did not
    s = c.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True, stream_options={"include_usage": True})
    last = list(s)[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0
    with c.responses.stream(model="gpt-5.4", input="hi") as rs:
        for _ in rs:
            pass
        final = rs.get_final_response()
    assert final.service_tier == "flex" and final.usage.output_tokens > 0
    gw.ledger.flush()
    rows = gw.ledger.rows()
    ok = _ok_rows(emu, 0)
    assert [r.stream for r in rows] == [True, True, True]
    assert all(r.served_tier == "flex" and r.cost is not None for r in rows)
    # each stream's cost in the gateway ledger is what the emulator billed for it
    assert [r.cost for r in rows] == [Decimal(x["cost"]) for x in ok[-3:]]


def test_langchain_chatopenai_base_url(gateway, emu):
    from langchain_openai import ChatOpenAI

    gw = gateway()
    before = len(emu.ledger())
    llm = ChatOpenAI(model="gpt-5.4", base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    out = llm.invoke("Tell me something.")
    assert out.content
    ok = _ok_rows(emu, before)
    assert len(ok) == 1 and ok[0]["served_tier"] == "flex"
    gw.ledger.flush()
    assert gw.ledger.rows()[-1].cost == Decimal(ok[0]["cost"])


def test_google_genai_at_the_gateway(gateway, emu):
    from google import genai
    from google.genai import types

    gw = gateway()
    client = genai.Client(api_key="caller-key", http_options=types.HttpOptions(base_url=gw.url))
    before = len(emu.ledger())
    r = client.models.generate_content(model="gemini-3-flash-preview", contents="Tell me something.",
                                       config=types.GenerateContentConfig(should_return_http_response=True))
    h = {k.lower(): v for k, v in r.sdk_http_response.headers.items()}
    _calm_check(emu, before, h)
    before = len(emu.ledger())
    text = "".join(ch.text or "" for ch in client.models.generate_content_stream(
        model="gemini-3-flash-preview", contents="Tell me something."))
    assert text
    assert _ok_rows(emu, before)[0]["served_tier"] == "flex"


def test_anthropic_messages_standard_priced(gateway, emu):
    gw = gateway()
    c = anthropic.Anthropic(base_url=gw.url, api_key="caller-key", max_retries=0)
    before = len(emu.ledger())
    raw = c.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=200, messages=MSG)
    assert raw.parse().content[0].text
    ok = _ok_rows(emu, before)
    assert raw.headers["x-flextier-served-tier"] == "standard"
    assert Decimal(raw.headers["x-flextier-cost-usd"]) == Decimal(ok[0]["cost"])
    assert raw.headers["x-flextier-cost-usd"] == raw.headers["x-flextier-standard-cost-usd"]


def test_provider_slash_model_from_an_openai_client(gateway, emu):
    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="caller-key", max_retries=0)
    for model, provider in (("gemini/gemini-3-flash", "gemini"), ("bedrock/nova-pro", "bedrock")):
        before = len(emu.ledger())
        raw = c.chat.completions.with_raw_response.create(model=model, messages=MSG, max_tokens=100)
        r = raw.parse()
        assert r.choices[0].message.content and r.model == model
        ok = _ok_rows(emu, before)
        assert len(ok) == 1 and ok[0]["provider"] == provider and ok[0]["served_tier"] == "flex"
        assert Decimal(raw.headers["x-flextier-cost-usd"]) == Decimal(ok[0]["cost"])
    names = {m.id for m in c.models.list()}
    assert {"gpt-5.4", "gemini/gemini-3-flash", "bedrock/nova-pro"} <= names


def test_plain_httpx_and_control_headers(gateway, emu):
    gw = gateway()
    with httpx.Client(base_url=gw.url, timeout=30) as h:
        before = len(emu.ledger())
        r = h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG},
                   headers={"authorization": "Bearer sk-caller", "x-flextier-tier": "standard"})
        assert r.status_code == 200 and r.headers["x-flextier-served-tier"] == "standard"
        assert _ok_rows(emu, before)[0]["served_tier"] == "standard"
        assert h.get("/healthz").json()["ok"] is True
        bad = h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG},
                     headers={"x-flextier-deadline": "soon"})
        assert bad.status_code == 400 and "x-flextier-deadline" in bad.json()["error"]["message"]
        m = h.get("/metrics").text
        assert 'flextier_gateway_requests_total{key="-",model="openai/gpt-5.4",outcome="ok"' in m
        assert h.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"}).status_code == 200


@pytest.mark.parametrize("client", ["openai", "httpx-stream"])
def test_outage_falls_back_to_standard_within_the_deadline(gateway, emu, clock, client):
    emu.set_profile("outage", latency_scale=0)
    gw = gateway()
    before = len(emu.ledger())
    t0 = clock.now()
    hdr = {"x-flextier-deadline": "5m"}
    if client == "openai":
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0, default_headers=hdr)
        raw = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
        headers = raw.headers
        assert raw.parse().service_tier == "default"
    else:
        with httpx.Client(base_url=gw.url, timeout=30) as h:
            with h.stream("POST", "/v1/chat/completions", headers=hdr,
                          json={"model": "gpt-5.4", "messages": MSG, "stream": True}) as r:
                headers = r.headers
                body = b"".join(r.iter_raw())
        assert b"[DONE]" in body
    rows = emu.ledger()[before:]
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert len(ok) == 1 and ok[0]["served_tier"] == "standard"
    sheds = [r for r in rows if r["outcome"] == "shed"]
    assert len(sheds) >= 2
    assert headers["x-flextier-served-tier"] == "standard"
    assert int(headers["x-flextier-attempts"]) == len(sheds) + 1
    assert clock.now() - t0 < 300          # done within the 5 minute deadline (on the policy's clock)
    gw.ledger.flush()
    row = gw.ledger.rows()[-1]
    assert row.served_tier == "standard" and row.fallback and row.sheds == len(sheds)
    assert row.cost == Decimal(ok[0]["cost"])   # the sheds cost $0
