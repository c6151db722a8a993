"""Anthropic Messages emulation through the official ``anthropic`` SDK."""
from __future__ import annotations

import anthropic
import pytest

from emu_tokens import cached_len, o200k, shared_prefix
from flextier.emulator.clients import anthropic_client

MSG = [{"role": "user", "content": "hello claude"}]


def test_messages_success_standard_tier(calm):
    c = anthropic_client(calm)
    r = c.messages.create(model="claude-sonnet-4-6", max_tokens=200, messages=MSG, service_tier="standard_only")
    assert r.usage.service_tier == "standard" and r.content[0].text
    assert r.usage.input_tokens == o200k("hello claude") and r.usage.output_tokens <= 200
    row, = calm.ledger()
    assert (row["model"], row["served_tier"], row["outcome"]) == ("anthropic/claude-sonnet-4-6", "standard", "ok")
    assert row["request_id"] == r.id


def test_flex_for_claude_is_invalid_request(calm):
    with pytest.raises(anthropic.BadRequestError) as ei:
        anthropic_client(calm).messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG,
                                               service_tier="flex")  # type: ignore[arg-type]
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    assert calm.ledger()[0]["requested_tier"] == "flex"


def test_overloaded_529(emulator):
    emu = emulator("calm", anthropic_overload_p=1.0)
    with pytest.raises(anthropic.OverloadedError) as ei:
        anthropic_client(emu).messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG)
    assert ei.value.status_code == 529 and ei.value.body["error"]["type"] == "overloaded_error"
    assert emu.ledger()[0]["outcome"] == "overloaded" and emu.ledger()[0]["cost"] == "0"


def test_stream_events(calm):
    c = anthropic_client(calm)
    with c.messages.stream(model="claude-sonnet-4-6", max_tokens=300, messages=MSG) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.content[0].text == text and final.usage.output_tokens == len(text.split())
    assert final.usage.service_tier == "standard"
    assert calm.ledger()[0]["outcome"] == "ok"


def test_cache_read_excluded_from_input_tokens(calm):
    c = anthropic_client(calm)
    long = " ".join(f"t{i}" for i in range(1200))
    content = [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}]
    c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": content}])
    r = c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": content}])
    n = o200k(long)
    hit = cached_len(n)
    assert hit >= 1024 and r.usage.cache_read_input_tokens == hit and r.usage.input_tokens == n - hit
    assert calm.ledger()[1]["input_tokens"] == n and calm.ledger()[1]["cached_tokens"] == hit
