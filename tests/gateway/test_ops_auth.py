"""The operations routes need a gateway key once the config defines keys (issue 15 "Security").

``/``, ``/calculator``, ``/api/*`` and ``/metrics`` show spend by key, so a keyed gateway answers
them only to a caller with a valid key: a Bearer header (scrapers, curl), or a browser's first
visit with ``?key=``, swapped for an HttpOnly session cookie by a redirect that drops the key from
the address. ``/healthz`` stays open; single-user loopback mode stays open throughout. The key
never shows up in the redirect, the cookie, the pages or the access log.
"""
from __future__ import annotations

import logging

import httpx

from flextier.gateway.app import SESSION_COOKIE

from .test_keys_budgets import _cfg, _toml

OPS = ["/", "/calculator", "/api/summary", "/api/estimate?model=gemini/gemini-3-flash&calls=10&input=10&output=10",
       "/metrics"]


def test_single_user_ops_routes_stay_open(gateway):
    gw = gateway()
    for path in OPS + ["/healthz"]:
        r = httpx.get(gw.url + path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])


def test_keyed_gateway_ops_routes_need_a_key(gateway, tmp_path, monkeypatch):
    gw = gateway(_cfg(tmp_path, monkeypatch, _toml()))
    assert httpx.get(gw.url + "/healthz").status_code == 200
    for path in OPS:
        r = httpx.get(gw.url + path)
        assert r.status_code == 401, (path, r.status_code)
        bad = httpx.get(gw.url + path, headers={"Authorization": "Bearer gw-key-mallory"})
        assert bad.status_code == 401, path
        if path.startswith(("/api/", "/metrics")):
            assert r.json()["error"]["code"] == "invalid_api_key"
        ok = httpx.get(gw.url + path, headers={"Authorization": "Bearer gw-key-bob"})
        assert ok.status_code == 200, (path, ok.text[:200])
    assert b"flextier_gateway_requests" in httpx.get(gw.url + "/metrics",
                                                     headers={"Authorization": "Bearer gw-key-alice"}).content
    # a forged or stale cookie is no session
    assert httpx.get(gw.url + "/api/summary", cookies={SESSION_COOKIE: "forged"}).status_code == 401


def test_page_key_query_becomes_a_session_cookie_and_is_never_logged(gateway, tmp_path, monkeypatch, caplog):
    gw = gateway(_cfg(tmp_path, monkeypatch, _toml()), access_log=True)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"), httpx.Client(base_url=gw.url) as c:
        r = c.get("/calculator?key=gw-key-alice&calls=5")
        assert r.status_code == 303
        loc = r.headers["location"]
        assert loc == "/calculator?calls=5" and "gw-key" not in loc
        cookie = r.cookies.get(SESSION_COOKIE)
        assert cookie and "gw-key-alice" not in cookie
        sc = r.headers["set-cookie"].lower()
        assert "httponly" in sc and "samesite=strict" in sc
        page = c.get(loc)                           # the client now carries the cookie
        assert page.status_code == 200 and "gw-key-alice" not in page.text
        assert c.get("/api/summary").status_code == 200          # what the page's fetch() does
        assert c.get("/metrics").status_code == 200
        assert c.get("/?key=wrong").status_code == 200           # the session still holds; a bad key adds none
    with httpx.Client(base_url=gw.url) as fresh:
        assert fresh.get("/?key=wrong").status_code == 401
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "/calculator?key=REDACTED" in logged and "gw-key-alice" not in logged
