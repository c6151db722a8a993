"""The emulator's own edges (issue 18 section 7), attacked with raw sockets on 127.0.0.1.

Before: the control endpoints took any ``Host`` and content type (a web page could switch the
profile or clear the ledger), 1,200 slowloris connections stayed open, a ``Content-Length``
longer than the body held its connection forever, deeply nested JSON was a 500, bodies had no
cap, and ``slots=1e10`` was accepted. Timeouts here are set small through
:class:`~flextier.emulator.http.Limits`, so no test sleeps through a real default.
"""
from __future__ import annotations

import json
import socket
import time
from typing import Iterator

import httpx
import pytest

from flextier.emulator import KnobError, serve
from flextier.emulator.edges import Limits, loopback_host

T = 0.4                                        # head / body timeout in these tests (wall seconds)
LIMITS = Limits(header_timeout=T, body_timeout=T, max_json_body=256 * 1024, max_upload=8 * 1024 * 1024)


@pytest.fixture
def emu() -> Iterator:
    with serve(time_scale=2000.0, limits=LIMITS) as e:
        yield e


@pytest.fixture(params=["httptools", "h11"])
def raw_emu(request, monkeypatch) -> Iterator:
    """The emulator on each of uvicorn's HTTP parsers (httptools when installed, else h11)."""
    import flextier.emulator.server as server

    monkeypatch.setattr(server, "_http_impl", lambda: request.param)
    with serve(time_scale=2000.0, limits=LIMITS) as e:
        assert type(e._server.config.http_protocol_class).__name__ == "type"
        assert e._server.config.http_protocol_class.__name__.lower().startswith(f"guarded{request.param}")
        yield e


def _sock(emu) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
    return s


def _read_all(s: socket.socket, within: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``within`` seconds pass (False)."""
    s.settimeout(0.05)
    end = time.monotonic() + within
    data = b""
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _status(raw: bytes) -> int | None:
    try:
        return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else None
    except (IndexError, ValueError):
        return None


# -- control endpoints -------------------------------------------------------------------------

def test_loopback_host_names():
    assert all(loopback_host(h) for h in ("127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:1",
                                          "[::1]", "[::1]:9", "127.1.2.3:80", "localhost."))
    assert not any(loopback_host(h) for h in (None, "", "evil.example", "evil.example:80", "127.0.0.1.evil.example",
                                              "10.0.0.1", "[::2]:80", "0.0.0.0"))


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/_emulator/profile", {"profile": "outage"}),
    ("POST", "/_emulator/ledger/clear", {}),
    ("POST", "/_emulator/batch", {"parallelism": 0.5}),
    ("GET", "/_emulator/ledger", None),
])
def test_control_endpoints_refuse_a_foreign_host(emu, method, path, body):
    httpx.post(emu.openai_base_url + "/chat/completions", headers={"Authorization": "Bearer x"},
               json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    rows = len(emu.ledger())
    r = httpx.request(method, emu.url + path, json=body, headers={"Host": "evil.example"}, timeout=5)
    assert r.status_code == 403 and "loopback" in r.json()["error"]
    assert emu.profile == "calm" and len(emu.ledger()) == rows == 1
    ok = httpx.request(method, emu.url + path, json=body, headers={"Host": f"localhost:{emu.port}"}, timeout=5)
    assert ok.status_code == 200


@pytest.mark.parametrize("ctype, data", [("text/plain", '{"profile": "outage"}'),
                                         ("application/x-www-form-urlencoded", "profile=outage"),
                                         (None, '{"profile": "outage"}')])
def test_control_posts_need_a_json_content_type(emu, ctype, data):
    headers = {"Content-Type": ctype} if ctype else {}
    r = httpx.post(emu.url + "/_emulator/profile", content=data, headers=headers, timeout=5)
    assert r.status_code == 415 and emu.profile == "calm"
    r = httpx.post(emu.url + "/_emulator/ledger/clear", content=b"", headers=headers, timeout=5)
    assert r.status_code == 415
    assert httpx.post(emu.url + "/_emulator/profile", json={"profile": "outage"}, timeout=5).status_code == 200
    assert emu.profile == "outage"


# -- slow and malformed requests ----------------------------------------------------------------

def test_slowloris_connections_are_closed_in_time(raw_emu):
    socks = [_sock(raw_emu) for _ in range(50)]
    for i, s in enumerate(socks):
        if i % 2:                                # half send part of a head, half nothing at all
            s.sendall(b"GET /_emulator/clock HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
    t0 = time.monotonic()
    # meanwhile the server still answers others
    assert httpx.get(raw_emu.url + "/_emulator/clock", timeout=5).status_code == 200
    closed = 0
    for i, s in enumerate(socks):
        data, gone = _read_all(s, max(0.1, t0 + 20 * T - time.monotonic()))
        closed += gone
        assert gone, f"socket {i} still open after {20 * T:.1f}s"
        assert data == b"" or _status(data) == 408
        s.close()
    assert closed == 50


def test_slowloris_trickling_a_head_byte_by_byte_is_cut_off(raw_emu):
    s = _sock(raw_emu)
    head = b"GET /_emulator/clock HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100
    t0 = time.monotonic()
    s.settimeout(0.05)
    sent = 0
    gone = False
    while time.monotonic() - t0 < 20 * T and not gone:
        try:
            s.sendall(head[sent:sent + 1])
            sent += 1
            gone = s.recv(4096) == b""
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            gone = True
        if sent >= len(head):
            sent = len(head) - 1               # keep trickling the last header's value
    assert gone, "the connection outlived 20 head timeouts"


def test_content_length_longer_than_the_body_is_closed_in_time(raw_emu):
    s = _sock(raw_emu)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer x\r\nContent-Length: 1000\r\n\r\n{\"model\": ")
    data, gone = _read_all(s, 20 * T)
    assert gone and _status(data) in (None, 400, 408)
    assert not [r for r in raw_emu.ledger() if r.get("cost")]        # nothing served or billed


@pytest.mark.parametrize("raw", [
    b"GET /\r\n\r\n",                                                                # HTTP/0.9
    b"GET /_emulator/clock HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n",
    b"GET /_emulator/clock HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10_000))
    + b"\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,                # a TLS hello on plain HTTP
], ids=["http09", "1mb-header", "10000-headers", "tls-hello"])
def test_malformed_requests_get_4xx_and_a_close(raw_emu, raw):
    s = _sock(raw_emu)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass                                   # closed while we were still sending: also a timely close
    data, gone = _read_all(s, 20 * T)
    assert gone
    assert data == b"" or _status(data) in (400, 408, 431), data[:200]
    assert httpx.get(raw_emu.url + "/_emulator/clock", timeout=5).status_code == 200


# -- bodies -----------------------------------------------------------------------------------------

DIALECTS = [
    ("/v1/chat/completions", lambda b: b["error"]["type"] == "invalid_request_error"),               # OpenAI
    ("/v1beta/models/gemini-3-flash-preview:generateContent", lambda b: b["error"]["status"] == "INVALID_ARGUMENT"),
    ("/v1/messages", lambda b: b["type"] == "error" and b["error"]["type"] == "invalid_request_error"),
    ("/model/us.amazon.nova-pro-v1:0/converse", lambda b: "message" in b),                         # Bedrock
]
HEADERS = {"Authorization": "Bearer x", "x-api-key": "x", "x-goog-api-key": "x", "anthropic-version": "2023-06-01",
           "Content-Type": "application/json"}


@pytest.mark.parametrize("path, shaped", DIALECTS)
@pytest.mark.parametrize("depth", [200, 100_000])      # under and over Python's recursion limit
def test_deeply_nested_json_is_a_provider_shaped_400(emu, path, shaped, depth):
    body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"
    r = httpx.post(emu.url + path, content=body, headers=HEADERS, timeout=10)
    assert r.status_code == 400, r.text[:300]
    assert shaped(r.json()) and "nests deeper" in r.text


@pytest.mark.parametrize("path, shaped", DIALECTS)
def test_a_json_body_over_the_cap_is_a_provider_shaped_400(emu, path, shaped):
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (300 * 1024)}]})
    r = httpx.post(emu.url + path, content=body, headers=HEADERS, timeout=10)
    assert r.status_code == 400 and shaped(r.json()) and "too large" in r.text


def test_a_declared_body_over_the_upload_cap_is_refused_unread(emu):
    s = _sock(emu)
    s.sendall(b"PUT /s3/bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n")
    data, _ = _read_all(s, 20 * T)
    assert _status(data) == 413


# -- knobs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("knobs", [{"slots": 1e10}, {"slots": 10**12}, {"q_max": 1e18}, {"latency_scale": 1e300},
                                   {"ttft_s": 1e30}, {"tz_offset_h": 1e9}])
def test_absurd_knob_values_are_refused(emu, knobs):
    r = httpx.post(emu.url + "/_emulator/profile", json={"knobs": knobs}, timeout=5)
    assert r.status_code == 400 and next(iter(knobs)) in r.json()["error"]
    assert emu.knobs.slots == 64
    with pytest.raises(KnobError):
        serve(**knobs).__enter__()


def test_absurd_batch_knobs_are_refused(emu):
    for knobs in ({"parallelism": 1e12}, {"validate_s": 1e300}, {"bedrock_min_records": 10**9}):
        r = httpx.post(emu.url + "/_emulator/batch", json=knobs, timeout=5)
        assert r.status_code == 400, knobs
