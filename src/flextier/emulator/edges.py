"""The emulator server's own edges: who may drive it, and how slow,
big or malformed a request may be.

* **Control endpoints** (``/_emulator/*``) answer only requests whose ``Host`` is a loopback
  name (``127.0.0.1``, ``localhost``, ``[::1]``, any port; or the host the emulator was bound
  to), else 403; a ``POST`` must say ``Content-Type: application/json``, else 415. Why: a web
  page in the user's browser can send a "simple" cross-site POST (form or ``text/plain``) to
  ``127.0.0.1`` without a CORS preflight, and a DNS-rebinding page does so under its own host
  name; a JSON content type needs a preflight the emulator never grants (:class:`EdgeGuard`).
* **Slow or malformed requests** (:func:`guarded_protocol`): uvicorn has a keep-alive timeout
  but none for a request being received. Here the request head must arrive within
  ``header_timeout`` of its first byte (or of the connection opening), and a body may pause at
  most ``body_timeout`` between bytes, else the connection is closed (a 408 first if no request
  is running): slowloris sockets and a ``Content-Length`` longer than the body are closed in
  time. A head over ``max_header_bytes`` is answered 431, more than ``max_headers`` fields or
  HTTP/0.9 get 400, and the connection is closed.
* **Bodies**: a declared ``Content-Length`` over ``max_upload`` is answered 413 before it is
  read; JSON bodies over ``max_json_body`` or nested deeper than ``max_json_depth`` are the
  dialect's own 400 (:func:`~.http.read_json`, which finds the limits in the ASGI scope).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

__all__ = ["Limits", "DEFAULT_LIMITS", "LIMITS_KEY", "EdgeGuard", "guarded_protocol", "loopback_host"]


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


DEFAULT_LIMITS = Limits()
LIMITS_KEY = "flextier.limits"         # where EdgeGuard puts the Limits in the ASGI scope


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


async def _plain(send: Send, status: int, obj: dict[str, Any],
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
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
        scope[LIMITS_KEY] = self.limits
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
                                 ((b"connection", b"close"),))
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
    timeouts and head limits of ``limits`` (module doc)."""
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
