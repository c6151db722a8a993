"""OpenAI wire emulation through the official ``openai`` SDK."""
from __future__ import annotations

import openai
import pytest

from emu_tokens import cached_len, o200k, shared_prefix
from flextier.emulator.clients import openai_client


def test_chat_flex_success_reports_tier_and_usage(calm):
    c = openai_client(calm)
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "hello"}],
                                  service_tier="flex", max_completion_tokens=300,
                                  extra_headers={"x-flextier-item": "item-7"})
    assert r.service_tier == "flex"
    assert r.choices[0].message.content
    u = r.usage
    # one message (3 framing tokens) + 3 priming the reply, as OpenAI documents
    assert u.prompt_tokens == o200k("hello") + 3 + 3 and u.prompt_tokens_details.cached_tokens == 0
    assert u.completion_tokens <= 300 and u.completion_tokens_details.reasoning_tokens > 0
    row, = calm.ledger()
    assert row["provider"] == "openai" and row["model"] == "openai/gpt-5.4-mini"
    assert (row["requested_tier"], row["served_tier"], row["outcome"]) == ("flex", "flex", "ok")
    assert row["output_tokens"] == u.completion_tokens and row["reasoning_tokens"] == \
        u.completion_tokens_details.reasoning_tokens
    assert row["request_id"] == r.id and row["item"] == "item-7"
    assert float(row["cost"]) > 0


def test_auto_and_default_report_default(calm):
    c = openai_client(calm)
    for tier in ("auto", "default", None):
        kw = {} if tier is None else {"service_tier": tier}
        r = c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "x"}], **kw)
        assert r.service_tier == "default"
    assert {row["served_tier"] for row in calm.ledger()} == {"standard"}


def test_deterministic_text_for_same_request(calm):
    c = openai_client(calm)
    a = c.chat.completions.create(model="o3", messages=[{"role": "user", "content": "same"}])
    b = c.chat.completions.create(model="o3", messages=[{"role": "user", "content": "same"}])
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens == b.usage.completion_tokens


def test_flex_shed_raises_rate_limit_error_with_code(outage):
    c = openai_client(outage)
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}],
                                  service_tier="flex")
    assert ei.value.status_code == 429 and ei.value.code == "resource_unavailable"
    row, = outage.ledger()
    assert row["outcome"] == "shed" and row["cost"] == "0" and row["served_tier"] is None


def test_flex_unavailable_code_knob(emulator):
    emu = emulator("outage", openai_flex_code="flex_unavailable")
    with pytest.raises(openai.RateLimitError) as ei:
        openai_client(emu).responses.create(model="gpt-5.4", input="hi", service_tier="flex")
    assert ei.value.code == "flex_unavailable"


def test_standard_is_served_during_outage(outage):
    r = openai_client(outage).chat.completions.create(model="gpt-5.4-mini",
                                                      messages=[{"role": "user", "content": "hi"}])
    assert r.service_tier == "default"


def test_bad_tier_unknown_model_and_no_flex_model(calm):
    c = openai_client(calm)
    with pytest.raises(openai.BadRequestError) as ei:
        c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "x"}],
                                  service_tier="bogus")
    assert ei.value.code == "invalid_value"
    with pytest.raises(openai.NotFoundError) as ei2:
        c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert ei2.value.code == "model_not_found"
    assert [r["outcome"] for r in calm.ledger()] == ["error", "error"]


def test_chat_stream_with_usage(calm):
    c = openai_client(calm)
    chunks = list(c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "s"}],
                                            service_tier="flex", stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(ch.service_tier == "flex" for ch in chunks)
    row, = calm.ledger()
    assert row["outcome"] == "ok" and row["output_tokens"] == last.usage.completion_tokens
    assert len(text.split()) == last.usage.completion_tokens - last.usage.completion_tokens_details.reasoning_tokens


def test_responses_and_stream(calm):
    c = openai_client(calm)
    r = c.responses.create(model="gpt-5.4", input="tell me", service_tier="flex")
    assert r.service_tier == "flex" and r.output_text and r.usage.output_tokens_details.reasoning_tokens > 0
    events = list(c.responses.create(model="gpt-5.4", input="tell me", service_tier="flex", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.delta" in types
    final = events[-1].response
    assert final.service_tier == "flex" and final.output_text == r.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_prompt_caching_reports_cached_tokens(calm):
    c = openai_client(calm)
    prefix = " ".join(f"w{i}" for i in range(1300))
    a = c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": prefix + " one"}])
    b = c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": prefix + " two"}])
    assert a.usage.prompt_tokens_details.cached_tokens == 0
    hit = cached_len(shared_prefix(prefix + " one", prefix + " two"))
    assert hit >= 1024 and b.usage.prompt_tokens_details.cached_tokens == hit
    rows = calm.ledger()
    assert rows[1]["cached_tokens"] == hit and float(rows[1]["cost"]) < float(rows[0]["cost"]) + 1e-9


def test_rate_limit_and_quota_faults(emulator):
    emu = emulator("calm", rpm_limit=2, time_scale=1.0, latency_scale=0, start="2026-11-24T15:00:05")
    c = openai_client(emu)
    for _ in range(2):
        r = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=[{"role": "user", "content": "x"}])
        assert r.headers["x-ratelimit-limit-requests"] == "2"
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "x"}])
    assert ei.value.code == "rate_limit_exceeded" and int(ei.value.response.headers["retry-after"]) >= 1
    q = emulator("calm", fault_quota_p=1.0)
    with pytest.raises(openai.RateLimitError) as ei2:
        openai_client(q).chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "x"}])
    assert ei2.value.code == "insufficient_quota"
    assert q.ledger()[0]["outcome"] == "fault:quota"
