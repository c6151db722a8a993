"""Keys, budgets and secrets (issue 15 "Security").

* 401 in OpenAI's shape for a missing or unknown gateway key; a key's models and tiers hold,
  and control headers cannot raise them;
* budgets with reservations hold under 256 concurrent calls from several keys: spent + in
  flight never passes the cap, and a shed costs $0;
* a planted marker upstream key never appears in the ledger, logs, metrics, pages or errors;
* a non-loopback host without keys is refused; bodies are capped.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from decimal import Decimal

import httpx
import openai
import pytest

from flextier.errors import UserInputError
from flextier.gateway import load_config
from flextier.gateway.server import GatewayServer

MSG = [{"role": "user", "content": "Tell me something."}]
MARKER = "sk-MARKER-7f3c9a-never-leak"


def _cfg(tmp_path, monkeypatch, body: str):
    monkeypatch.setenv("GW_KEY_A", "gw-key-alice")
    monkeypatch.setenv("GW_KEY_B", "gw-key-bob")
    monkeypatch.setenv("UPSTREAM_A", MARKER)
    p = tmp_path / "gateway.toml"
    p.write_text(body)
    return load_config(p)


BASE = """
[keys.alice]
key_env = "GW_KEY_A"
upstream = { openai = "UPSTREAM_A", gemini = "UPSTREAM_A" }
{alice}

[keys.bob]
key_sha256 = "%s"
upstream = { openai = "UPSTREAM_A" }
{bob}
""" % hashlib.sha256(b"gw-key-bob").hexdigest()


def _toml(alice: str = "", bob: str = "") -> str:
    return BASE.replace("{alice}", alice).replace("{bob}", bob)


def test_401_in_openai_shape_and_key_limits(gateway, emu, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, monkeypatch, _toml(alice='models = ["openai/gpt-5.4"]\ntiers = ["auto", "flex"]'))
    gw = gateway(cfg)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="gpt-5.4", messages=MSG)
    assert ei.value.status_code == 401 and ei.value.body["code"] == "invalid_api_key"
    alice = openai.OpenAI(base_url=gw.url + "/v1", api_key="gw-key-alice", max_retries=0)
    r = alice.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
    assert r.headers["x-flextier-served-tier"] == "flex"
    with pytest.raises(openai.PermissionDeniedError):
        alice.chat.completions.create(model="gpt-5.4-mini", messages=MSG)
    with pytest.raises(openai.BadRequestError, match="not allowed"):     # a header cannot raise the key's tiers
        alice.chat.completions.create(model="gpt-5.4", messages=MSG, extra_headers={"x-flextier-tier": "standard"})
    with pytest.raises(openai.PermissionDeniedError):
        alice.chat.completions.create(model="gpt-5.4", messages=MSG, service_tier="priority")
    bob = openai.OpenAI(base_url=gw.url + "/v1", api_key="gw-key-bob", max_retries=0)
    assert bob.chat.completions.create(model="gpt-5.4-mini", messages=MSG).choices
    gw.ledger.flush()
    assert {r.key for r in gw.ledger.rows()} == {"alice", "bob"}


def test_budgets_hold_under_256_concurrent_calls_from_several_keys(gateway, emu, tmp_path, monkeypatch):
    # each call reserves its upper bound (every prompt byte a token, max_tokens of output, at standard)
    cfg = _cfg(tmp_path, monkeypatch, _toml(alice='daily_usd = 0.05', bob='daily_usd = 0.02\nmonthly_usd = 0.5'))
    gw = gateway(cfg)

    async def one(c, i):
        try:
            r = await c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG, max_tokens=300,
                                                                 extra_headers={"x-flextier-tier": "auto"})
            return Decimal(r.headers["x-flextier-cost-usd"])
        except openai.RateLimitError as e:
            assert e.body["code"] == "budget_exceeded"
            return None

    async def go():
        lim = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        ca = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="gw-key-alice", max_retries=0,
                                http_client=httpx.AsyncClient(limits=lim, timeout=60))
        cb = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="gw-key-bob", max_retries=0,
                                http_client=httpx.AsyncClient(limits=lim, timeout=60))
        res = await asyncio.gather(*[one(ca if i % 2 else cb, i) for i in range(256)])
        return res[1::2], res[0::2]
    a, b = asyncio.run(go())
    for got, cap in ((a, Decimal("0.05")), (b, Decimal("0.02"))):
        served = [x for x in got if x is not None]
        assert served and len(served) < len(got)        # some served, the rest refused before sending
        assert sum(served) <= cap
    gw.ledger.flush()
    rows = gw.ledger.rows()
    for key, cap in (("alice", Decimal("0.05")), ("bob", Decimal("0.02"))):
        spent = sum((r.cost for r in rows if r.key == key and r.cost is not None), Decimal(0))
        assert 0 < spent <= cap
        assert any(r.outcome == "budget" for r in rows if r.key == key)
    snap = gw.gateway.budgets.snapshot("bob")
    assert Decimal(snap["day"]["reserved"]) == 0 and Decimal(snap["day"]["spent"]) <= Decimal("0.02")
    # emulator's bill for the served calls == the gateway's ledger
    assert sum(Decimal(r["cost"]) for r in emu.ledger() if r["outcome"] == "ok"
               ) >= sum(r.cost for r in rows if r.cost is not None)


def test_a_shed_costs_nothing_in_the_budget(gateway, emu, tmp_path, monkeypatch, clock):
    cfg = _cfg(tmp_path, monkeypatch, _toml(alice='daily_usd = 1'))
    emu.set_profile("outage", latency_scale=0)
    gw = gateway(cfg)
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="gw-key-alice", max_retries=0)
    before = len(emu.ledger())
    r = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG, max_tokens=300,
                                                    extra_headers={"x-flextier-deadline": "4m"})
    billed = sum(Decimal(x["cost"]) for x in emu.ledger()[before:] if x["outcome"] == "ok")
    assert int(r.headers["x-flextier-attempts"]) > 1
    assert Decimal(gw.gateway.budgets.snapshot("alice")["day"]["spent"]) == billed == Decimal(
        r.headers["x-flextier-cost-usd"])


def test_marker_upstream_key_never_leaks(gateway, emu, tmp_path, monkeypatch, caplog):
    cfg = _cfg(tmp_path, monkeypatch, _toml())
    gw = gateway(cfg)
    caplog.set_level(logging.DEBUG)
    seen = []
    with httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": "Bearer gw-key-alice"}) as h:
        seen.append(h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG}))
        seen.append(h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG, "stream": True}))
        seen.append(h.post("/v1/chat/completions", json={"model": "gemini/gemini-3-flash", "messages": MSG}))
        seen.append(h.post("/v1/chat/completions", json={"model": "nope/x", "messages": MSG}))
        seen.append(h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": "bad"}))
        seen.append(h.post("/v1beta/models/gemini-3-flash-preview:generateContent",
                           json={"contents": [{"parts": [{"text": "hi"}]}]}))
        emu.set_profile("outage", latency_scale=0)      # flex only, 2 minutes: the policy gives up (429, as OpenAI sheds)
        seen.append(h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG},
                           headers={"x-flextier-tier": "flex", "x-flextier-deadline": "2m"}))
        assert seen[-1].status_code == 429 and seen[-1].json()["error"]["type"] == "resource_unavailable"
        emu.set_profile("calm", latency_scale=0)
        seen += [h.get("/metrics"), h.get("/"), h.get("/calculator"), h.get("/api/summary"), h.get("/v1/models")]
    assert seen[0].status_code == 200
    gw.ledger.flush()
    with open(gw.ledger.path, "rb") as f:
        db = f.read()
    texts = [r.text + str(dict(r.headers)) for r in seen] + [caplog.text, db.decode("latin-1")]
    wal = gw.ledger.path + "-wal"
    import os
    if os.path.exists(wal):
        texts.append(open(wal, "rb").read().decode("latin-1"))
    for t in texts:
        assert MARKER not in t and "gw-key-alice" not in t
    # and the marker really was sent upstream (so the search above means something)
    assert any(r["outcome"] == "ok" for r in emu.ledger())


def test_non_loopback_needs_keys_and_body_is_capped(gateway, emu, tmp_path, monkeypatch):
    from flextier.gateway import GatewayConfig
    with pytest.raises(UserInputError, match="--host"):
        GatewayServer(GatewayConfig(), host="0.0.0.0", ledger=str(tmp_path / "x.db"))
    from dataclasses import replace
    gw = gateway(replace(GatewayConfig(), max_body_bytes=2048))
    with httpx.Client(base_url=gw.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": [{"role": "user",
                                                                                  "content": "x" * 5000}]})
        assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]
