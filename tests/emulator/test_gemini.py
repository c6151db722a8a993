"""Gemini wire emulation through the official ``google-genai`` SDK."""
from __future__ import annotations

import pytest
from google.genai import errors, types

from emu_tokens import cached_len, o200k, shared_prefix
from flextier.emulator.clients import gemini_client


def test_flex_success_served_tier_header_and_usage(calm):
    c = gemini_client(calm)
    r = c.models.generate_content(model="gemini-3-flash-preview", contents="hello gemini",
                                  config=types.GenerateContentConfig(service_tier="flex", max_output_tokens=400))
    assert r.sdk_http_response.headers["x-gemini-service-tier"] == "flex"
    assert r.text
    u = r.usage_metadata
    assert u.prompt_token_count == o200k("hello gemini") and u.thoughts_token_count > 0
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count + u.thoughts_token_count
    row, = calm.ledger()
    assert (row["model"], row["requested_tier"], row["served_tier"], row["outcome"]) == \
        ("gemini/gemini-3-flash-preview", "flex", "flex", "ok")
    assert row["output_tokens"] == u.candidates_token_count + u.thoughts_token_count
    assert row["request_id"] == r.response_id


@pytest.mark.parametrize("spelling", ["FLEX", "SERVICE_TIER_FLEX", "Flex"])
def test_tier_spellings_at_request_root(calm, spelling):
    import httpx
    for key in ("serviceTier", "service_tier"):
        r = httpx.post(f"{calm.gemini_base_url}/v1beta/models/gemini-2.5-flash:generateContent",
                       json={"contents": [{"parts": [{"text": "x"}]}], key: spelling})
        assert r.status_code == 200 and r.headers["x-gemini-service-tier"] == "flex"
        assert r.json()["usageMetadata"]["serviceTier"] == "FLEX"


def test_shed_is_503_unavailable_or_429_with_retry_info(emulator):
    emu = emulator("outage", gemini_429_fraction=0.0)
    c = gemini_client(emu)
    cfg = types.GenerateContentConfig(service_tier="flex")
    with pytest.raises(errors.ServerError) as ei:
        c.models.generate_content(model="gemini-3-flash-preview", contents="x", config=cfg)
    assert ei.value.code == 503 and ei.value.status == "UNAVAILABLE"
    emu.set_profile("outage", gemini_429_fraction=1.0)
    with pytest.raises(errors.ClientError) as ei2:
        c.models.generate_content(model="gemini-3-flash-preview", contents="x", config=cfg)
    assert ei2.value.code == 429 and ei2.value.status == "RESOURCE_EXHAUSTED"
    assert ei2.value.details["error"]["details"][0]["retryDelay"] == "34s"
    assert [r["outcome"] for r in emu.ledger()] == ["shed", "shed"]
    assert all(r["cost"] == "0" for r in emu.ledger())


def test_stream_generate_content(calm):
    c = gemini_client(calm)
    chunks = list(c.models.generate_content_stream(model="gemini-3-flash-preview", contents="stream please",
                                                   config=types.GenerateContentConfig(service_tier="flex")))
    assert len(chunks) > 1
    text = "".join(ch.text or "" for ch in chunks)
    last = chunks[-1]
    assert last.usage_metadata.candidates_token_count == len(text.split())
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert calm.ledger()[0]["outcome"] == "ok"


def test_unknown_model_is_404(calm):
    c = gemini_client(calm)
    with pytest.raises(errors.ClientError) as ei:
        c.models.generate_content(model="gemini-0-nope", contents="x")
    assert ei.value.code == 404 and ei.value.status == "NOT_FOUND"


def test_server_timeout_header_bounds_queue_wait(emulator):
    # Saturated flex lane (rho above theta_admit, no bursts): requests must queue; the SDK's
    # timeout becomes X-Server-Timeout, shorter than the predicted wait -> 504 immediately.
    emu = emulator("peak", burst_sigma=0.0, constant_rho=0.7)
    c = gemini_client(emu, timeout=5_000)
    with pytest.raises(errors.ServerError) as ei:
        c.models.generate_content(model="gemini-2.5-flash", contents="x",
                                  config=types.GenerateContentConfig(service_tier="flex"))
    assert ei.value.code == 504 and ei.value.status == "DEADLINE_EXCEEDED"
    assert emu.ledger()[0]["outcome"] == "timeout"
