"""The guard under ``wrap()``, ``http_client()`` and their streams (issue 14 leftover).

``complete()`` and the job path always had the total deadline and the decoded-body cap
(``flextier/guard.py``); a wrapped client or an ``http_client()`` ran on the user's own
transport and had neither: a trickled answer ran as long as the server liked, a gzip bomb was
inflated in full. The engine (``flextier.intercept``) now puts every generation attempt under
the guard, so each attack here ends in the classified error on the normal retry path. Streams
are checked as they arrive: the deadline cuts a trickled stream, and what a stream may hold
(before its first token, or one unfinished event) is capped.
"""
from __future__ import annotations

import asyncio
import tracemalloc

import httpx
import openai
import pytest

from hostile_server import serve_hostile

import flextier
from flextier.errors import Timeout, Transient
from flextier.policy.fallback import Policy
from flextier.guard import MAX_RESPONSE_BYTES

MSG = [{"role": "user", "content": "hi"}]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def hostile():
    yield from serve_hostile()


def _pol(**kw) -> Policy:
    kw.setdefault("fallback", "never")
    kw.setdefault("max_retries", 0)
    kw.setdefault("resend_on_timeout", 0)
    return Policy(tier="flex", **kw)


def _wrapped(hostile, mode: str, pol: Policy) -> openai.OpenAI:
    return flextier.wrap(openai.OpenAI(base_url=hostile.base_url(mode), api_key="sk-hostile-test"), pol)


def test_wrapped_client_trickle_ends_at_the_attempts_total_deadline(hostile):
    """~250 bytes one every 50 ms never trips a read timeout; the attempt's 0.5 s total does."""
    hostile.trickle_gap = 0.05
    w = _wrapped(hostile, "trickle", _pol(flex_timeout=0.5))
    with pytest.raises(Timeout) as ei:
        w.chat.completions.create(model="gpt-5.4-mini", messages=MSG)
    assert ei.value.possibly_billed and [a.outcome for a in ei.value.attempts] == ["Timeout"]


def test_http_client_gzip_bomb_is_refused_with_bounded_memory(hostile):
    hostile.bomb_mib = 64
    c = openai.OpenAI(base_url=hostile.base_url("bomb"), api_key="sk-hostile-test", max_retries=0,
                      http_client=flextier.http_client(_pol()))
    tracemalloc.start()
    try:
        with pytest.raises(Transient) as ei:
            c.chat.completions.create(model="gpt-5.4-mini", messages=MSG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ei.value.code == "response_too_large" and ei.value.possibly_billed
    assert peak < 1.5 * MAX_RESPONSE_BYTES < 64 * 1024 * 1024


def test_async_http_client_refuses_an_unasked_encoding(hostile):
    async def go():
        c = openai.AsyncOpenAI(base_url=hostile.base_url("brotli"), api_key="sk-hostile-test", max_retries=0,
                               http_client=flextier.async_http_client(_pol()))
        with pytest.raises(Transient) as ei:
            await c.chat.completions.create(model="gpt-5.4-mini", messages=MSG)
        return ei.value

    err = asyncio.run(go())
    assert err.code == "unexpected_encoding"
    assert [r["headers"].get("accept-encoding") for r in hostile.seen("brotli")][-1] == "gzip, deflate"


def test_non_generation_requests_stay_unguarded(hostile):
    """Files, batches, models pass through as before: the body cap is for generation answers only
    (batch output files are larger than it). A 404 route answers as the server sent it."""
    with flextier.http_client(_pol()) as h:
        r = h.get(hostile.base_url("bomb") + "/models", headers={"accept-encoding": "br"})
    assert r.status_code == 404 and r.request.headers["accept-encoding"] == "br"


def test_wrapped_stream_trickle_is_cut_at_the_total_deadline(hostile):
    """The first token comes at once (so no fallback is possible any more); the rest trickles
    for ~10 s and the attempt's 0.5 s deadline cuts it with a possibly billed Timeout."""
    hostile.trickle_gap = 0.05
    w = _wrapped(hostile, "stream_trickle", _pol(flex_timeout=0.5))
    got: list[str] = []
    with pytest.raises(Timeout) as ei:
        for ch in w.chat.completions.create(model="gpt-5.4-mini", messages=MSG, stream=True):
            got.extend(c.delta.content or "" for c in ch.choices)
    assert ei.value.possibly_billed
    assert 1 <= len(got) < 100  # some tokens arrived, far from the 200 the server would send


def test_async_wrapped_stream_trickle_is_cut_too(hostile):
    hostile.trickle_gap = 0.05

    async def go():
        w = flextier.wrap(openai.AsyncOpenAI(base_url=hostile.base_url("stream_trickle"), api_key="sk-hostile-test"),
                          _pol(flex_timeout=0.5))
        n = 0
        with pytest.raises(Timeout):
            async for _ in await w.chat.completions.create(model="gpt-5.4-mini", messages=MSG, stream=True):
                n += 1
        return n

    assert 1 <= asyncio.run(go()) < 100


def test_stream_bomb_never_held_whole(hostile):
    """One ``data:`` event that never ends, inflating to 64 MiB: refused at the cap before the
    first token (so it is a failed attempt, retried or failed by the policy), memory bounded."""
    hostile.bomb_mib = 64
    w = _wrapped(hostile, "stream_bomb", _pol())
    tracemalloc.start()
    try:
        with pytest.raises(Transient) as ei:
            for _ in w.chat.completions.create(model="gpt-5.4-mini", messages=MSG, stream=True):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ei.value.code == "response_too_large" and ei.value.possibly_billed
    assert peak < 1.5 * MAX_RESPONSE_BYTES < 64 * 1024 * 1024
    assert [a.outcome for a in ei.value.attempts] == ["Transient"]


def test_httpx_module_reexported_streams_still_decode_gzip():
    """The streamed path decodes gzip piece by piece (a well-behaved compressed stream)."""
    import zlib

    from flextier import guard

    body = b"".join(b"data: {\"i\": %d}\n\n" % i for i in range(2000))
    z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gz = z.compress(body) + z.flush()
    resp = httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(gz))
    req = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    guard.take_over(resp, httpx, None, req, streamed=True)
    assert "content-encoding" not in resp.headers
    pieces = list(resp.stream)
    assert b"".join(pieces) == body and len(pieces) >= 1


def test_complete_stream_gets_the_guard_too(hostile):
    """``complete(stream=True)`` rides the same engine: the trickled stream is cut at the deadline."""
    hostile.trickle_gap = 0.05
    s = flextier.complete("openai/gpt-5.4-mini", MSG, base_url=hostile.base_url("stream_trickle"),
                          api_key="sk-hostile-test", policy=_pol(flex_timeout=0.5), stream=True)
    with pytest.raises(Timeout):
        for _ in s:
            pass
    assert s.text and not s.done and flextier.info(s).cost is None
