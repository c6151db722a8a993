"""The job path's lean Gemini client sends what google-genai sends (issue 19: Gemini CPU per request).

Both paths of :class:`flextier.providers.gemini.GeminiAdapter` -- the SDK's ``generate_content``
(a user's client) and :class:`~flextier.providers.gemini.LeanGemini` (the job path) -- post to
one loopback server that records each request; the JSON bodies, the URL and the headers the
SDK sets must be the same, for text prompts (the cached fast path), for contents with other
parts (converted by the SDK per request) and for each tier; a wrong parameter name is the same
BadRequest before anything is sent; and an error answer is classified the same.
"""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from google import genai
from google.genai import types as gtypes

from flextier._types import CallRequest
from flextier.catalog import default_catalog
from flextier.errors import BadRequest, FlexCapacityUnavailable
from flextier.providers.gemini import GeminiAdapter, LeanGemini

OK = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hello"}]}, "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}}
SHED = {"error": {"code": 503, "message": "flex capacity unavailable", "status": "UNAVAILABLE"}}
SDK_HEADERS = ("x-goog-api-key", "user-agent", "x-goog-api-client", "x-server-timeout", "x-flextier-item",
               "content-type")


class Recorder:
    """A loopback HTTP/1.1 server: records (path, headers, JSON body), answers ``self.answer``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self.raw: list[bytes] = []
        self.answer: tuple[int, dict] = (200, OK)
        self.extra_headers: dict[str, str] = {}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._conn, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head = await r.readuntil(b"\r\n\r\n") if not r.at_eof() else b""
            if not head:
                break
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = await r.readexactly(int(headers.get("content-length", 0)))
            self.seen.append((path, headers, json.loads(body)))
            self.raw.append(body)
            status, ans = self.answer
            data = json.dumps(ans).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers.items())
            w.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {len(data)}\r\n\r\n"
                    .encode() + data)
            await w.drain()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def rec():
    r = Recorder()
    yield r
    r.close()


def _adapters(url: str) -> tuple[GeminiAdapter, GeminiAdapter]:
    entry = default_catalog().resolve("gemini/gemini-3-flash-preview")
    lean = GeminiAdapter(entry, GeminiAdapter.make_transport(base_url=url, api_key="k-lean", client=None,
                                                             timeouts={}, max_connections=4))
    user = genai.Client(api_key="k-lean", http_options=gtypes.HttpOptions(base_url=url))
    sdk = GeminiAdapter(entry, GeminiAdapter.make_transport(base_url=None, api_key=None, client=user.aio,
                                                            timeouts={}, max_connections=4))
    return lean, sdk


def _both(rec: Recorder, req: CallRequest, tier: str, timeout: float | None) -> list[tuple[str, dict, Any]]:
    lean, sdk = _adapters(rec.url)
    rec.seen.clear()

    async def go() -> list[Any]:
        out = []
        for ad in (lean, sdk):
            try:
                out.append(await ad.asend(req, tier, timeout))
            except Exception as exc:  # noqa: BLE001 - compared below
                out.append(exc)
        return out

    results = asyncio.run(go())
    return results


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yes?"}, {"role": "user", "content": "more"}]
PARTS = [{"role": "user", "content": [{"text": "look"}, {"inline_data": {"mime_type": "image/png", "data": "aGk="}}]}]


@pytest.mark.parametrize("tier", ["flex", "standard"])
@pytest.mark.parametrize("messages,params", [
    (MESSAGES, {"max_tokens": 16, "temperature": 0.2, "stop": "x"}),
    (PARTS, {"max_tokens": 8, "response_mime_type": "application/json"}),
    (MESSAGES, {"thinking_config": {"thinking_budget": 0}, "top_k": 3}),
], ids=["text", "inline-data", "thinking"])
def test_lean_request_is_the_sdk_request(rec, tier, messages, params) -> None:
    entry = default_catalog().resolve("gemini/gemini-3-flash-preview")
    req = CallRequest(model=entry, messages=messages, params=params, custom_id="item-7")
    lean_out, sdk_out = _both(rec, req, tier, 12.5)
    assert len(rec.seen) == 2
    (p1, h1, b1), (p2, h2, b2) = rec.seen
    assert p1 == p2 and p1.endswith("/models/gemini-3-flash-preview:generateContent")
    assert b1 == b2
    assert {k: h1.get(k) for k in SDK_HEADERS} == {k: h2.get(k) for k in SDK_HEADERS}
    assert h1["x-server-timeout"] == "13" and h1["x-flextier-item"] == "item-7"
    assert (b1.get("serviceTier") == "flex") == (tier == "flex")
    assert lean_out.text == sdk_out.text == "hello"
    assert lean_out.usage == sdk_out.usage and lean_out.served_tier == sdk_out.served_tier


def test_lean_bad_parameter_is_the_sdk_bad_request_and_nothing_is_sent(rec) -> None:
    entry = default_catalog().resolve("gemini/gemini-3-flash-preview")
    req = CallRequest(model=entry, messages=MESSAGES, params={"max_tokenz": 3})
    lean_out, sdk_out = _both(rec, req, "flex", 10)
    assert isinstance(lean_out, BadRequest) and isinstance(sdk_out, BadRequest)
    assert str(lean_out) == str(sdk_out)
    assert rec.seen == []


def test_lean_error_answer_is_classified_as_the_sdk_classifies_it(rec) -> None:
    entry = default_catalog().resolve("gemini/gemini-3-flash-preview")
    req = CallRequest(model=entry, messages=MESSAGES, params={"max_tokens": 4})
    rec.answer = (503, SHED)
    try:
        lean_out, sdk_out = _both(rec, req, "flex", 10)
    finally:
        rec.answer = (200, OK)
    assert type(lean_out) is type(sdk_out) is FlexCapacityUnavailable
    assert (lean_out.status, lean_out.code, lean_out.retry_after) == (sdk_out.status, sdk_out.code, sdk_out.retry_after)


def test_the_job_path_uses_the_lean_client_and_a_users_client_does_not(rec) -> None:
    lean, sdk = _adapters(rec.url)

    async def kinds() -> tuple[type, type]:
        return type(lean.transport.aio()), type(sdk.transport.aio())

    a, b = asyncio.run(kinds())
    assert a is LeanGemini and b is not LeanGemini
