"""A stream's cost: ``x-flextier-call-id`` on every call response and ``GET /api/calls/{id}``.

A stream's headers leave before its usage, so its ``x-flextier-cost-usd`` is empty; the call id
in the same headers lets the caller ask the gateway afterwards. Checked with the OpenAI SDK's
streaming call on calm (served flex, cost equal to the emulator's ledger) and on an outage
(fallback before the first byte: standard, the sheds counted, priced at standard), and the
lookup is key-scoped: another key (or none) cannot read a call.
"""
from __future__ import annotations

from decimal import Decimal

import httpx
import openai

from .test_keys_budgets import _cfg, _toml

MSG = [{"role": "user", "content": "Tell me something."}]


def _ok(emu, before):
    return [r for r in emu.ledger()[before:] if r["outcome"] == "ok"]


def test_openai_stream_cost_by_call_id(gateway, emu):
    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    before = len(emu.ledger())
    s = c.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True)
    cid = s.response.headers["x-flextier-call-id"]
    early = s.response.headers["x-flextier-cost-usd"]   # empty unless the whole stream came before the headers
    text = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
    assert text
    led = _ok(emu, before)
    assert len(led) == 1
    got = httpx.get(f"{gw.url}/api/calls/{cid}").json()
    assert got["id"] == cid and got["state"] == "done" and got["stream"] is True
    assert (got["served_tier"], got["attempts"], got["requested_tier"]) == ("flex", 1, "auto")
    assert Decimal(got["cost_usd"]) == Decimal(led[0]["cost"])
    assert Decimal(got["standard_cost_usd"]) == 2 * Decimal(led[0]["cost"])
    assert got["output_tokens"] == led[0]["output_tokens"]
    assert early in ("", got["cost_usd"])
    # a non-stream call carries an id too, and the ledger row is found by it once committed
    raw = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
    cid2 = raw.headers["x-flextier-call-id"]
    assert cid2 != cid
    got2 = httpx.get(f"{gw.url}/api/calls/{cid2}").json()
    assert got2["cost_usd"] == raw.headers["x-flextier-cost-usd"] and got2["stream"] is False
    gw.ledger.flush()
    assert gw.ledger.call(cid).cost == Decimal(got["cost_usd"])
    assert httpx.get(f"{gw.url}/api/calls/call_nosuch").status_code == 404


def test_stream_fallback_cost_by_call_id(gateway, emu):
    emu.set_profile("outage", latency_scale=0)
    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0,
                      default_headers={"x-flextier-deadline": "5m"})
    before = len(emu.ledger())
    with c.chat.completions.with_streaming_response.create(model="gpt-5.4", messages=MSG, stream=True) as resp:
        cid = resp.headers["x-flextier-call-id"]
        assert sum(1 for line in resp.iter_lines() if line.startswith("data: {")) > 1
    rows = emu.ledger()[before:]
    sheds = [r for r in rows if r["outcome"] == "shed"]
    led = _ok(emu, before)
    got = httpx.get(f"{gw.url}/api/calls/{cid}").json()
    assert (got["served_tier"], got["fallback"]) == ("standard", True)
    assert got["attempts"] == len(sheds) + 1 and got["sheds"] == len(sheds) >= 2
    assert Decimal(got["cost_usd"]) == Decimal(led[0]["cost"]) == Decimal(got["standard_cost_usd"])


def test_call_lookup_is_key_scoped(gateway, emu, tmp_path, monkeypatch):
    gw = gateway(_cfg(tmp_path, monkeypatch, _toml()))
    alice = openai.OpenAI(base_url=gw.url + "/v1", api_key="gw-key-alice", max_retries=0)
    s = alice.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True)
    cid = s.response.headers["x-flextier-call-id"]
    list(s)
    url = f"{gw.url}/api/calls/{cid}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer gw-key-bob"}).status_code == 404
    mine = httpx.get(url, headers={"Authorization": "Bearer gw-key-alice"})
    assert mine.status_code == 200 and mine.json()["key"] == "alice" and mine.json()["served_tier"] == "flex"
    assert "gw-key" not in mine.text and "MARKER" not in mine.text
