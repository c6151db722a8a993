"""A small hostile OpenAI-compatible server on 127.0.0.1 for the hardening tests (issue 18 §5, issue 11 #7).

The first path segment picks the behaviour, so one server serves every test at once:
``http://127.0.0.1:PORT/<mode>/v1/chat/completions``.

* ``ok``           a valid Chat Completions answer (served tier ``flex``)
* ``trickle``      a valid answer sent one byte every ``trickle_gap`` wall seconds
* ``retry_after``  the first ``rate_limited_first`` requests get 429 ``rate_limit_exceeded`` with
                   ``retry-after: 99999999`` (three years), then valid answers
* ``reset``        valid answers saying no request is left until ``x-ratelimit-reset-requests: 99999h``
* ``bomb``         ``content-encoding: gzip`` whose body inflates to ``bomb_mib`` MiB (a valid answer
                   padded with spaces, so a client without a cap would record it as done)
* ``deflate``      a valid answer, ``content-encoding: deflate``
* ``brotli``       ``content-encoding: br``, which the guarded client never asks for
* ``stream_trickle`` a Chat stream whose chunks (a first token at once, then more) come one every
                   ``trickle_gap`` wall seconds, for ~200 chunks
* ``stream_bomb``  a gzip Chat stream: one ``data:`` event that never ends, inflating to ``bomb_mib`` MiB
* anything else    404 ``Not Found`` as plain text, as a web server answers a path it has no route for
                   (``GET /_emulator/clock`` is answered, so the CLI runs on a fast clock)
"""
from __future__ import annotations

import asyncio
import json
import time
import zlib
from typing import Any, Iterator

from hardening_support import lifespan, read_body, serve_in_thread

OK_BODY = {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 0, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, "service_tier": "flex"}


def stream_chunk(text: str) -> bytes:
    """One Chat Completions stream event carrying ``text``."""
    d = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 0, "model": "m",
         "service_tier": "flex", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(d).encode() + b"\n\n"


def gzip_bomb(mib: int, head: bytes | None = None, tail: bytes = b'"}') -> bytes:
    """A gzip stream of a valid answer padded to ``mib`` MiB (about 1 KiB per MiB compressed);
    ``head``/``tail`` replace the answer around the padding (a stream event that never ends)."""
    head = json.dumps(OK_BODY)[:-1].encode() + b', "pad": "' if head is None else head
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(head)]
    block = b" " * (1 << 20)
    for _ in range(mib):
        parts.append(z.compress(block))
    parts.append(z.compress(tail))
    parts.append(z.flush())
    return b"".join(parts)


class HostileServer:
    def __init__(self) -> None:
        self.port = 0
        self.trickle_gap = 0.05
        self.rate_limited_first = 2
        self.bomb_mib = 128
        self.time_scale = 1000.0
        self.t0 = time.time()
        self.requests: list[dict[str, Any]] = []
        self._bomb: bytes | None = None
        self._sbomb: bytes | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, mode: str) -> str:
        return f"{self.root}/{mode}/v1"

    def seen(self, mode: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["mode"] == mode]

    def app(self) -> Any:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                return await lifespan(receive, send)
            body = await read_body(receive)
            path = scope["path"]
            if path.endswith("/_emulator/clock"):
                now = 1_795_000_000.0 + (time.time() - self.t0) * self.time_scale
                return await _send(send, 200, json.dumps({"now": now, "time_scale": self.time_scale}).encode())
            mode = path.strip("/").split("/")[0]
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if not path.endswith(f"/{mode}/v1/chat/completions"):
                mode = "route404"
            self.requests.append({"mode": mode, "path": path, "headers": headers, "body": body,
                                  "method": scope["method"]})
            await self._answer(mode, send, receive)

        return asgi

    async def _answer(self, mode: str, send: Any, receive: Any) -> None:
        ok = json.dumps(OK_BODY).encode()
        if mode == "stream_trickle":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            gone = asyncio.ensure_future(receive())
            try:
                for i in range(200):
                    if gone.done():
                        return
                    await send({"type": "http.response.body", "body": stream_chunk(f"w{i} "), "more_body": True})
                    await asyncio.sleep(self.trickle_gap)
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            finally:
                gone.cancel()
            return
        if mode == "stream_bomb":
            if self._sbomb is None:
                self._sbomb = gzip_bomb(self.bomb_mib, head=b"data: ", tail=b"")
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]})
            await send({"type": "http.response.body", "body": self._sbomb})
            return
        if mode == "ok":
            return await _send(send, 200, ok)
        if mode == "trickle":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ok)).encode())]})
            gone = asyncio.ensure_future(receive())  # http.disconnect once the client gives up
            try:
                for i in range(len(ok)):
                    if gone.done():
                        return
                    await send({"type": "http.response.body", "body": ok[i:i + 1], "more_body": i < len(ok) - 1})
                    await asyncio.sleep(self.trickle_gap)
            finally:
                gone.cancel()
            return
        if mode == "retry_after":
            if len(self.seen("retry_after")) <= self.rate_limited_first:
                err = {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                 "code": "rate_limit_exceeded", "param": None}}
                return await _send(send, 429, json.dumps(err).encode(), {"retry-after": "99999999"})
            return await _send(send, 200, ok)
        if mode == "reset":
            return await _send(send, 200, ok, {"x-ratelimit-limit-requests": "100",
                                               "x-ratelimit-remaining-requests": "0",
                                               "x-ratelimit-reset-requests": "99999h"})
        if mode == "bomb":
            if self._bomb is None:
                self._bomb = gzip_bomb(self.bomb_mib)
            return await _send(send, 200, self._bomb, {"content-encoding": "gzip"})
        if mode == "deflate":  # an ordinary compressed answer (zlib-wrapped deflate)
            return await _send(send, 200, zlib.compress(ok), {"content-encoding": "deflate"})
        if mode == "brotli":  # an encoding the client did not ask for
            return await _send(send, 200, b"\x8b\x03\x80" + ok, {"content-encoding": "br"})
        return await _send(send, 404, b"Not Found", ctype=b"text/plain; charset=utf-8")


async def _send(send: Any, status: int, body: bytes, headers: dict[str, str] | None = None,
                ctype: bytes = b"application/json") -> None:
    raw = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def serve_hostile() -> Iterator[HostileServer]:
    """Run a :class:`HostileServer` (uvicorn in a thread) until the generator is closed."""
    with serve_in_thread(HostileServer()) as srv:
        yield srv
