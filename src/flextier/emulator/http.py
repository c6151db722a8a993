"""HTTP plumbing shared by the wire modules: JSON bodies, disconnect watching,
SSE/event-stream responses that can be cut short, and connection-reset faults.

Starlette's own StreamingResponse cannot end a response *without* completing it,
which is exactly what the truncated-stream and connection-reset faults need, so
:class:`EmuStream` is a minimal ASGI response that can.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["json_response", "read_json", "DisconnectWatch", "EmuStream", "ResetResponse", "AbortStream",
           "client_item", "BadJSON"]

_ITEM_HEADERS = ("x-flextier-item", "x-client-request-id", "idempotency-key")


class BadJSON(ValueError):
    pass


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJSON(f"could not parse the JSON body of your request: {exc}") from None
    if not isinstance(data, dict):
        raise BadJSON("request body must be a JSON object")
    return data


def client_item(request: Request) -> str | None:
    """A client-supplied correlation id, recorded in the ledger row."""
    h = request.headers
    for name in _ITEM_HEADERS:
        v = h.get(name)
        if v:
            return v
    return None


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
