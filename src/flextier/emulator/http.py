"""HTTP plumbing shared by the wire modules: JSON bodies, disconnect watching,
SSE/event-stream responses that can be cut short, and connection-reset faults.

Starlette's own StreamingResponse cannot end a response *without* completing it,
which is exactly what the truncated-stream and connection-reset faults need, so
:class:`EmuStream` is a minimal ASGI response that can.

JSON bodies are capped in size and nesting (:class:`~.edges.Limits`):
over either, :func:`read_json` raises :class:`BadJSON`, which each dialect answers with its own
400, instead of a 500 (deep nesting) or an unbounded read. The server's other edges are in
:mod:`.edges`.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .edges import DEFAULT_LIMITS, LIMITS_KEY, Limits

__all__ = ["json_response", "read_json", "DisconnectWatch", "EmuStream", "ResetResponse", "AbortStream",
           "client_item", "BadJSON", "BodyTooLarge", "Limits"]

_ITEM_HEADERS = ("x-flextier-item", "x-client-request-id", "idempotency-key")


class BadJSON(ValueError):
    pass


class BodyTooLarge(BadJSON):
    """A JSON body over :attr:`Limits.max_json_body` (answered as the dialect's 400)."""


def _depth_over(obj: Any, limit: int) -> bool:
    """True if ``obj`` nests deeper than ``limit`` (iterative: no recursion of its own)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, (dict, list)))
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return False


# one encoder, reused; bodies are trees built per request, so the cycle check is skipped
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_loads = json.loads


def dumps(obj: Any) -> bytes:
    return _ENCODE(obj).encode("utf-8")


_NAMES: dict[str, bytes] = {}     # header name -> lower-cased latin-1 bytes (names repeat on every response)


class JSONBody(Response):
    """A ``Response`` holding already-encoded JSON, with its raw headers built directly.

    Same wire output as ``Response(body, status, headers, media_type="application/json")``
    (user headers lower-cased in order, then content-length, then content-type), without
    the generic rendering and header bookkeeping on every request.
    """

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        if headers:
            names = _NAMES
            raw = []
            for k, v in headers.items():
                n = names.get(k)
                if n is None:
                    n = k.lower().encode("latin-1")
                    if len(names) < 512:
                        names[k] = n
                raw.append((n, v.encode("latin-1")))
            keys = [h[0] for h in raw]
            if b"content-length" not in keys and not (status_code < 200 or status_code in (204, 304)):
                raw.append((b"content-length", b"%d" % len(body)))
            if b"content-type" not in keys:
                raw.append((b"content-type", b"application/json"))
        elif status_code < 200 or status_code in (204, 304):
            raw = [(b"content-type", b"application/json")]
        else:
            raw = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        self.raw_headers = raw


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONBody(_ENCODE(obj).encode("utf-8"), status, headers)


async def _body(request: Request, limit: int | None = None) -> bytes:
    """The request body; like ``await request.body()`` (cached on the request), minus the generator.
    Over ``limit`` bytes: :class:`BodyTooLarge` (nothing more is read)."""
    try:
        return request._body          # type: ignore[attr-defined]
    except AttributeError:
        pass
    if request._stream_consumed:      # type: ignore[attr-defined]
        return await request.body()   # raises "Stream consumed", as Starlette would
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BodyTooLarge(f"request body too large: more than {limit} bytes")
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            request._is_disconnected = True  # type: ignore[attr-defined]
            raise ClientDisconnect()
    request._stream_consumed = True   # type: ignore[attr-defined]
    body = request._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # type: ignore[attr-defined]
    return body


async def read_json(request: Request) -> dict[str, Any]:
    limits: Limits = request.scope.get(LIMITS_KEY) or DEFAULT_LIMITS
    body = await _body(request, limits.max_json_body)
    try:
        data = _loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJSON(f"could not parse the JSON body of your request: {exc}") from None
    except RecursionError:
        raise BadJSON(f"the JSON body of your request nests deeper than {limits.max_json_depth} levels") from None
    if not isinstance(data, dict):
        raise BadJSON("request body must be a JSON object")
    # cheap test first: a body can only nest as deep as it has brackets
    if body.count(b"{") + body.count(b"[") > limits.max_json_depth and _depth_over(data, limits.max_json_depth):
        raise BadJSON(f"the JSON body of your request nests deeper than {limits.max_json_depth} levels")
    return data


_ITEM_HEADER_RANK = {name.encode("latin-1"): i for i, name in enumerate(_ITEM_HEADERS)}


def client_item(request: Request) -> str | None:
    """A client-supplied correlation id, recorded in the ledger row.

    The first non-empty of the headers in ``_ITEM_HEADERS`` order (first occurrence of
    each), read in one pass over the raw headers.
    """
    best: tuple[int, bytes] | None = None
    rank = _ITEM_HEADER_RANK
    seen = 0
    for key, value in request.scope["headers"]:
        r = rank.get(key)             # servers lower-case header names (Starlette's Headers assume it too)
        if r is None:
            continue
        if seen & (1 << r):
            continue                  # Headers.get returns the first occurrence only
        seen |= 1 << r
        if value and (best is None or r < best[0]):
            best = (r, value)
    return best[1].decode("latin-1") if best is not None else None


class DisconnectWatch:
    """Lazily watches the ASGI receive channel for the client going away."""

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
            self._task = asyncio.ensure_future(self._watch())
        return self._event

    @property
    def gone(self) -> bool:
        return self._event is not None and self._event.is_set()

    async def _watch(self) -> None:
        assert self._event is not None
        while True:
            msg = await self._receive()
            if msg.get("type") == "http.disconnect":
                self._event.set()
                return

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class AbortStream(Exception):
    """Raised by a stream body to end the response. ``reset``: drop the connection."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "truncate")
        self.reset = reset


class EmuStream:
    """ASGI streaming response that notices disconnects and can be truncated or reset.

    ``on_gone`` is called (once) if the client disconnects before the end.
    """

    def __init__(self, body: AsyncIterator[bytes], *, status: int = 200, media_type: str,
                 headers: Mapping[str, str] | None = None,
                 on_gone: Callable[[], None] | None = None) -> None:
        self.body = body
        self.status = status
        self.headers = [(b"content-type", media_type.encode())]
        self.headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.on_gone = on_gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg.get("type") == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.ensure_future(watch())
        complete = False
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
            async for chunk in self.body:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                if not gone.is_set():
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    complete = True
        except AbortStream as exc:
            if not exc.reset:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            # reset: return without finishing; the server drops the connection
            complete = True
        except OSError:
            pass
        finally:
            watcher.cancel()
            closer = getattr(self.body, "aclose", None)
            if closer is not None:
                await closer()
            if not complete and self.on_gone is not None:
                self.on_gone()


class ResetResponse:
    """Connection reset mid-response: send the head and part of the body, then drop."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, media_type: str) -> None:
        self.status = status
        self.headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
        self.headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.partial = body[: max(1, len(body) // 3)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.partial, "more_body": True})
        # returning without more_body=False makes the server close the connection


Handler = Callable[[Request], Awaitable[Any]]
