"""Both upstream transports under the engine: aiohttp (the default when installed) and httpx's
own pools (the fallback without aiohttp). Same calls, same answers: on calm a plain and a
streamed call are served flex and priced as the emulator billed them; an upstream that refuses
connections is answered in OpenAI's error shape and costs $0 (nothing was sent, so nothing
billed: the engine's error table reads aiohttp's connect error as httpx's).
"""
from __future__ import annotations

import json
import socket
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest

MSG = [{"role": "user", "content": "Tell me something."}]


@pytest.mark.parametrize("upstream", ["aiohttp", "httpx"])
def test_calm_plain_and_streamed_on_each_transport(gateway, emu, upstream):
    gw = gateway(upstream=upstream)
    with httpx.Client(base_url=gw.url, timeout=30, headers={"Authorization": "Bearer sk-caller"}) as h:
        before = len(emu.ledger())
        r = h.post("/v1/chat/completions", json={"model": "gpt-5.4", "messages": MSG})
        assert r.status_code == 200 and r.json()["service_tier"] == "flex"
        with h.stream("POST", "/v1/chat/completions",
                      json={"model": "gpt-5.4", "messages": MSG, "stream": True}) as s:
            cid = s.headers["x-flextier-call-id"]
            chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
        assert chunks and all("usage" not in c for c in chunks)
        ok = [x for x in emu.ledger()[before:] if x["outcome"] == "ok"]
        assert [x["served_tier"] for x in ok] == ["flex", "flex"]
        assert Decimal(r.headers["x-flextier-cost-usd"]) == Decimal(ok[0]["cost"])
        assert Decimal(h.get(f"/api/calls/{cid}").json()["cost_usd"]) == Decimal(ok[1]["cost"])


@pytest.mark.parametrize("upstream", ["aiohttp", "httpx"])
def test_refused_upstream_is_an_openai_error_and_costs_nothing(gateway, upstream):
    with socket.socket() as s:      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = gateway(upstream=upstream)     # the fixture points every upstream at the emulator; re-point OpenAI
    gw.gateway.cfg = replace(gw.gateway.cfg, upstreams={**gw.gateway.cfg.upstreams,
                                                        "openai": f"http://127.0.0.1:{port}/v1"})
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"x-flextier-deadline": "1m"},
                   json={"model": "gpt-5.4", "messages": MSG}, timeout=60)
    assert r.status_code >= 500
    assert set(r.json()["error"]) >= {"message", "type"}
    assert r.headers["x-flextier-cost-usd"] == "0"
    gw.ledger.flush()
    row = gw.ledger.rows()[-1]
    assert row.cost is None and row.served_tier is None and row.attempts >= 1
