"""The engine's per-call shortcuts keep its behaviour (docs/gateway.md, "Per-call CPU").

A caller that already recognised a request (the gateway, to admit it) hands the engine its
``(dialect, Call)`` in ``CALL_EXTENSION``: the engine sends *that* Call's attempts (it records the
answer's id on it), and a ``(dialect, None)`` is ignored (the engine recognises the request
itself). The reply's headers are rebuilt in one pass: the provider's own stay, the stale
length/encoding go, flextier's are added. Real httpx against the emulator over 127.0.0.1.
"""
from __future__ import annotations

import json
from decimal import Decimal

import httpx

import flextier
from flextier.intercept import CALL_EXTENSION, HEADERS, POLICY_EXTENSION, transport
from flextier.providers.openai.wire import OpenAIDialect
from flextier.providers.wire import request_object

BODY = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "Tell me something."}]}


def _send(emu, make_policy, ext_call):
    d = OpenAIDialect()
    t = transport(httpx.HTTPTransport(), httpx, [d], make_policy())
    raw = json.dumps(BODY).encode()
    url = emu.base_urls()["openai"] + "/chat/completions"   # its base ends in /v1
    call = d.recognise("POST", "/v1/chat/completions", BODY) if ext_call else None
    req = httpx.Request("POST", url, content=raw, headers={"authorization": "Bearer sk-test",
                                                           "content-type": "application/json"},
                        extensions={CALL_EXTENSION: (d, call), POLICY_EXTENSION: make_policy()})
    resp = t.handle_request(req)
    resp.read()
    t.close()
    return call, resp


def test_a_pre_recognised_call_is_the_one_sent(emu, make_policy) -> None:
    before = len(emu.ledger())
    flextier.totals(reset=True)
    call, resp = _send(emu, make_policy, ext_call=True)
    body = json.loads(resp.content)
    assert call is not None and call.extra.get("rid") == body["id"]     # the engine used this Call
    row = emu.ledger()[before:][-1]
    assert row["served_tier"] == "flex"
    assert resp.headers[HEADERS[0]] == "flex" and resp.headers[HEADERS[1]] == "1"
    assert Decimal(resp.headers[HEADERS[2]]) == Decimal(row["cost"]) == flextier.totals().cost
    assert flextier.info(resp).cost == Decimal(row["cost"])


def test_no_call_in_the_extension_means_the_engine_recognises(emu, make_policy) -> None:
    before = len(emu.ledger())
    _, resp = _send(emu, make_policy, ext_call=False)
    assert resp.headers[HEADERS[0]] == "flex"                           # recognised and sent flex
    assert emu.ledger()[before:][-1]["served_tier"] == "flex"


def test_reply_headers_rebuilt_once(emu, make_policy) -> None:
    _, resp = _send(emu, make_policy, ext_call=True)
    names = [k.lower() for k, _ in resp.headers.multi_items()]
    assert "content-length" not in names and "content-encoding" not in names
    assert all(names.count(h) == 1 for h in HEADERS)                    # each of flextier's once
    assert resp.headers.get("content-type", "").startswith("application/json")   # the provider's kept
    assert json.loads(resp.content)["object"] == "chat.completion"


def test_request_object_takes_a_decoded_body_as_is() -> None:
    b = {"model": "m"}
    assert request_object(b) is b
    assert request_object(b'{"model": "m"}') == b
    assert request_object(b"[1]") is None and request_object(b"not json") is None
