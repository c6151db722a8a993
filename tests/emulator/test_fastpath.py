"""The emulator's hot-path shortcuts behave exactly like the generic code they bypass."""
from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.routing import Match

from flextier.catalog import default_catalog
from flextier.cost import Usage
from flextier.emulator.app import EmulatorApp, build_app
from flextier.emulator.clock import ScaledClock
from flextier.emulator.engine import Engine
from flextier.emulator.http import client_item, json_response
from flextier.emulator.ledger import Ledger
from flextier.emulator.profiles import build_knobs

CHAT = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}], "service_tier": "flex"}


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers or [],
            "query_string": b""}


def test_route_cache_resolves_like_the_router():
    app = build_app(Engine(build_knobs("calm"), ScaledClock(1.0, "2026-11-24T15:00")))
    assert isinstance(app, EmulatorApp)
    cases = [("POST", "/v1/chat/completions"), ("POST", "/v1/responses"), ("POST", "/v1/messages"),
             ("POST", "/v1beta/models/gemini-2.5-flash:generateContent"),
             ("POST", "/model/us.amazon.nova-pro-v1:0/converse"), ("GET", "/_emulator/stats"),
             ("PUT", "/v1/chat/completions"), ("POST", "/no/such/path"), ("POST", "/v1/batches")]
    for method, path in cases:
        scope = _scope(method, path)
        first = next(((r, child) for r in app.routes for match, child in [r.matches(scope)]
                      if match is Match.FULL), None)
        hit = app._resolve(scope)
        if hit is not None:            # a cached fast route is exactly the router's first full match
            assert first is not None and hit[0] is first[0] and hit[1] == first[1]["path_params"]
        assert app._fast[(method, path)] == hit


def test_fast_and_slow_paths_over_http(calm):
    with httpx.Client(base_url=calm.url) as c:
        for _ in range(2):             # the second request takes the cached route
            r = c.post("/v1/chat/completions", json=CHAT, headers={"x-flextier-item": "a1"})
            assert r.status_code == 200 and r.json()["service_tier"] == "flex"
            assert r.headers["content-type"] == "application/json"
            assert int(r.headers["content-length"]) == len(r.content)
        wrong = c.put("/v1/chat/completions")       # wrong method (GET lists stored chats): OpenAI's 404 "Invalid URL"
        assert wrong.status_code == 404 and wrong.json()["error"]["type"] == "invalid_request_error"
        assert c.post("/v1/no-such-endpoint", json={}).status_code == 404
        for model in ("gemini-2.5-flash", "gemini-3-flash-preview"):     # path parameters per path
            r = c.post(f"/v1beta/models/{model}:generateContent", json={"contents": [{"parts": [{"text": "x"}]}]})
            assert r.status_code == 200 and r.json()["modelVersion"] == model
        assert c.post("/v1/chat/completions", content=b"{oops",
                      headers={"content-type": "application/json"}).status_code == 400
    rows = calm.ledger()
    assert [r["item"] for r in rows[:2]] == ["a1", "a1"]
    assert [r["id"] for r in rows] == [f"led_{i:07d}" for i in range(1, len(rows) + 1)]


def test_lazy_ledger_rows_equal_eager_rows():
    entry = default_catalog().find_wire("openai", "gpt-5.4-mini")
    kw = dict(ts=1.23456, provider="openai", model=entry, model_wire="gpt-5.4-mini", requested_tier="flex",
              served_tier="flex", outcome="ok", status=200, usage=Usage(10, 0, 20, 5), request_id="r",
              item="i", queue_wait_s=0.1234, latency_s=0.5678, billed=True)
    lazy, eager = Ledger(), Ledger()
    assert lazy.add(**kw) == 0 and lazy.add(**{**kw, "billed": False}) == 1
    first = eager.record(**kw)
    eager.record(**{**kw, "billed": False})
    assert lazy.rows() == eager.rows() and lazy.rows()[0] == first
    assert first["cost"] not in (None, "0") and lazy.rows()[1]["cost"] == "0"
    assert lazy.stats() == eager.stats() and len(lazy) == 2


def test_client_item_header_precedence():
    def item(*headers: tuple[bytes, bytes]) -> str | None:
        return client_item(Request(_scope("POST", "/", list(headers))))

    assert item() is None
    assert item((b"idempotency-key", b"k"), (b"x-flextier-item", b"f")) == "f"
    assert item((b"idempotency-key", b"k"), (b"x-client-request-id", b"c")) == "c"
    assert item((b"x-flextier-item", b""), (b"idempotency-key", b"k")) == "k"
    assert item((b"x-flextier-item", b""), (b"x-flextier-item", b"late")) is None   # first occurrence only


def test_json_response_headers_match_starlette():
    from starlette.responses import Response

    for status, headers in ((200, None), (429, {"Retry-After": "3", "x-a": "b"}), (204, None)):
        ours = json_response({"a": [1, "é"]}, status, headers)
        ref = Response(ours.body, status_code=status, headers=headers, media_type="application/json")
        assert ours.raw_headers == ref.raw_headers and ours.body == b'{"a":[1,"\xc3\xa9"]}'
