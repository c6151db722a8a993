"""HTTP plumbing shared by the wire modules: JSON bodies, disconnect watching,
SSE/event-stream responses that can be cut short, connection-reset faults, and the
server's own edges (issue 18 section 7).

Starlette's own StreamingResponse cannot end a response *without* completing it,
which is exactly what the truncated-stream and connection-reset faults need, so
:class:`EmuStream` is a minimal ASGI response that can.

Edges (:class:`Limits`, set per emulator; see :mod:`.server`):

* **Control endpoints** (``/_emulator/*``) answer only requests whose ``Host`` is a loopback
  name (``127.0.0.1``, ``localhost``, ``[::1]``, any port; or the host the emulator was bound
  to), else 403; a ``POST`` must say ``Content-Type: application/json``, else 415. Why: a web
  page in the user's browser can send a "simple" cross-site POST (form or ``text/plain``) to
  ``127.0.0.1`` without a CORS preflight, and a DNS-rebinding page does so under its own host
  name; a JSON content type needs a preflight the emulator never grants (:class:`EdgeGuard`).
* **Slow or malformed requests** (:func:`guarded_protocol`): the request head must arrive
  within ``header_timeout`` of its first byte (or of the connection opening), and a body may
  pause at most ``body_timeout`` between bytes, else the connection is closed (a 408 first if
  no request has started): slowloris sockets and a ``Content-Length`` longer than the body are
  closed in time. A head over ``max_header_bytes`` or with more than ``max_headers`` fields is
  answered 431 and closed; HTTP/0.9 and other unparsable heads get the parser's 400.
* **Bodies**: a declared ``Content-Length`` over ``max_upload`` is answered 413 before it is
  read; a JSON body over ``max_json_body``, or nested deeper than ``max_json_depth``, is a
  :class:`BadJSON` (each dialect answers it with its own 400 shape) instead of a 500.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["json_response", "read_json", "DisconnectWatch", "EmuStream", "ResetResponse", "AbortStream",
           "client_item", "BadJSON", "BodyTooLarge", "Limits", "EdgeGuard", "guarded_protocol", "loopback_host"]

_ITEM_HEADERS = ("x-flextier-item", "x-client-request-id", "idempotency-key")


class BadJSON(ValueError):
    pass


class BodyTooLarge(BadJSON):
    """A JSON body over :attr:`Limits.max_json_body` (answered as the dialect's 400)."""


@dataclass(frozen=True)
class Limits:
    """The emulator's HTTP edges (module doc). Sizes in bytes, times in wall seconds."""

    header_timeout: float = 10.0        # the request head must be complete this long after its first byte
    body_timeout: float = 30.0          # longest pause between body bytes
    max_header_bytes: int = 64 * 1024   # the whole request head
    max_headers: int = 200              # header fields per request
    max_json_body: int = 64 * 1024 * 1024   # a JSON request body (images as base64 fit)
    max_upload: int = 1024 * 1024 * 1024 + 1024 * 1024  # any body (S3 objects, batch files): 1 GiB + framing
    max_json_depth: int = 64            # nesting of a JSON body (provider bodies nest < 10 deep)

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            v = getattr(self, name)
            if not 0 < v < 86_400:
                raise ValueError(f"{name} must be in (0, 86400) seconds, got {v!r}")
        for name in ("max_header_bytes", "max_headers", "max_json_body", "max_upload", "max_json_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")


DEFAULT_LIMITS = Limits()
_LIMITS_KEY = "flextier.limits"


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
    limits: Limits = request.scope.get(_LIMITS_KEY) or DEFAULT_LIMITS
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


# -- the server's edges (issue 18 section 7) ---------------------------------------------------------

def loopback_host(host_header: str | None, extra: frozenset[str] = frozenset()) -> bool:
    """True if a ``Host`` header names loopback (``127.0.0.0/8``, ``localhost``, ``[::1]``; any port)."""
    if not host_header:
        return False
    h = host_header.strip().lower()
    if h.startswith("["):
        name = h[1:h.find("]")] if "]" in h else h
    else:
        name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    name = name.rstrip(".")
    if name == "localhost" or name in extra:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def _plain(send: Send, status: int, obj: dict[str, Any], headers: list[tuple[bytes, bytes]] = []) -> None:
    body = dumps(obj)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class EdgeGuard:
    """ASGI wrapper: control endpoints need a loopback ``Host`` (403) and, for POST, a JSON
    content type (415); a declared body over ``max_upload`` is refused (413) unread. Passes
    the :class:`Limits` to the app in the scope (``read_json`` applies the JSON limits)."""

    def __init__(self, app: Any, limits: Limits = DEFAULT_LIMITS, bind_host: str | None = None) -> None:
        self.app = app
        self.limits = limits
        extra = (bind_host or "").strip("[]").lower()
        self.hosts = frozenset({extra} if extra and extra not in ("0.0.0.0", "::") else set())

    def __getattr__(self, name: str) -> Any:          # app.state etc. of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[_LIMITS_KEY] = self.limits
        path: str = scope["path"]
        control = path.startswith("/_emulator")
        if control or scope["method"] in ("POST", "PUT"):
            host = ctype = length = None
            for k, v in scope["headers"]:
                if k == b"host":
                    host = v
                elif k == b"content-type":
                    ctype = v
                elif k == b"content-length":
                    length = v
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    n = -1
                if n > self.limits.max_upload:
                    await _plain(send, 413, {"error": {"message": f"request body too large: {n} bytes (the most "
                                                                  f"is {self.limits.max_upload})",
                                                       "type": "request_too_large", "code": 413}},
                                 [(b"connection", b"close")])
                    return
            if control:
                if not loopback_host(host.decode("latin-1") if host else None, self.hosts):
                    await _plain(send, 403, {"error": "the emulator's control endpoints answer only requests "
                                                      "addressed to a loopback Host (127.0.0.1, localhost, [::1])"})
                    return
                if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
                    media = (ctype or b"").split(b";", 1)[0].strip().lower()
                    if media != b"application/json":
                        await _plain(send, 415, {"error": "the emulator's control endpoints take "
                                                          "Content-Type: application/json"})
                        return
        await self.app(scope, receive, send)


def guarded_protocol(base: type, limits: Limits = DEFAULT_LIMITS) -> type:
    """A subclass of uvicorn's HTTP protocol ``base`` (httptools or h11) with the head/body
    timeouts and head size limits of ``limits`` (module doc). uvicorn has a keep-alive timeout
    but none for a request that is being received, so a client that never finishes its head
    (slowloris) or its body held a connection forever."""
    import h11 as _h11

    is_h11 = hasattr(base, "handle_events")

    class Guarded(base):  # type: ignore[misc, valid-type]
        _phase = "idle"                 # idle (no request byte yet) | head | body
        _timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _nheaders = 0

        # -- timers ---------------------------------------------------------------------
        def _arm(self, seconds: float) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            t = self.transport
            if t is None or t.is_closing():
                return
            if self._phase == "body" and getattr(self.flow, "read_paused", False):
                self._arm(limits.body_timeout)      # the app is slow to read, not the client to send
                return
            if self._phase in ("idle", "head") and (self.cycle is None or self.cycle.response_complete):
                self._reject(408, b"Request Timeout", "request head not received in time")
                return
            t.close()                               # mid-body: the app sees a disconnect

        def _reject(self, status: int, phrase: bytes, msg: str) -> None:
            self._disarm()
            body = msg.encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                 % (status, phrase, len(body), body))
            self.transport.close()

        # -- protocol --------------------------------------------------------------------
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._phase = "idle"
            self._arm(limits.header_timeout)        # a silent new connection must send a head in time

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._phase == "idle":
                self._phase, self._head_bytes, self._nheaders = "head", 0, 0
                self._arm(limits.header_timeout)
            if self._phase == "head":
                self._head_bytes += len(data)
            elif self._phase == "body":
                self._arm(limits.body_timeout)
            super().data_received(data)
            if self.transport.is_closing():
                self._disarm()
                return
            if is_h11:
                self._h11_phase()
            if self._phase == "head" and self._head_bytes > limits.max_header_bytes:
                self._reject(431, b"Request Header Fields Too Large", "request head too large")

        # httptools callbacks
        def on_message_begin(self) -> None:
            if self._phase == "idle":
                self._phase, self._head_bytes, self._nheaders = "head", 0, 0
                self._arm(limits.header_timeout)
            super().on_message_begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._nheaders += 1
            if self._nheaders > limits.max_headers:   # httptools stops; uvicorn answers 400 and closes
                raise ValueError(f"more than {limits.max_headers} header fields")
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self.parser.get_http_version() not in ("1.0", "1.1"):   # HTTP/0.9 (llhttp takes it): 400, close
                raise ValueError("unsupported HTTP version")
            self._phase = "body"
            self._arm(limits.body_timeout)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._phase = "idle"
            self._disarm()                          # uvicorn's keep-alive timeout takes over
            super().on_message_complete()

        # h11: read the phase off the connection state after each feed
        def _h11_phase(self) -> None:
            st = self.conn.their_state
            if st is _h11.SEND_BODY:
                if self._phase != "body":
                    self._phase = "body"
                    self._arm(limits.body_timeout)
                if self._h11_too_many():
                    self._reject(431, b"Request Header Fields Too Large", "too many header fields")
            elif st in (_h11.DONE, _h11.MUST_CLOSE, _h11.CLOSED, _h11.ERROR):
                if self._phase != "idle":
                    if self._h11_too_many():
                        self._reject(431, b"Request Header Fields Too Large", "too many header fields")
                        return
                    self._phase = "idle"
                    self._disarm()

        def _h11_too_many(self) -> bool:
            return self.cycle is not None and len(self.cycle.scope.get("headers", ())) > limits.max_headers

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
