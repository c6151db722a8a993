"""One socket write per request, and a cheap idle-connection probe, under httpcore's pool.

Why (issue 19, throughput at concurrency 256; README "Side by side with the fastest peer"): a
cProfile of ``flextier run`` showed httpcore writing each request in two socket sends (h11
hands it the head, then the body), each under its own anyio cancel scope and exception map,
and the pool asking every idle connection "is_readable" on each request added or finished,
which anyio answers by building the stream's whole ``extra_attributes`` mapping (peer names
and all) every time. :class:`CoalescingBackend` wraps the pool's network backend:

* a write that ends a request head (``\\r\\n\\r\\n``) is held and sent together with the next
  write (the body); anything else written, or any read, close or TLS start, sends it first.
  So a request goes out whole or not at all: a send that fails is still a send that failed
  (the caller's possibly-billed rules in ``providers/openai/lean.py`` are unchanged);
* ``is_readable`` reads the raw socket kept at connect time.

Everything else is the wrapped stream's. Used by the job path's lean clients (OpenAI, Gemini;
:func:`flextier.providers.openai.aguarded`).
"""
from __future__ import annotations

from typing import Any, Iterable

import httpcore2
from httpcore2._utils import is_socket_readable

__all__ = ["CoalescingBackend", "coalesce"]

_HEAD_END = b"\r\n\r\n"


class _Stream(httpcore2.AsyncNetworkStream):
    __slots__ = ("_inner", "_pending", "_sock")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._pending = b""
        self._sock = inner.get_extra_info("socket")

    async def _flush(self, timeout: float | None) -> None:
        data, self._pending = self._pending, b""
        await self._inner.write(data, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:
            await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._pending:
            buffer, self._pending = self._pending + buffer, b""
        elif buffer.endswith(_HEAD_END):
            self._pending = buffer  # a request head: wait for its body (or the read of the answer)
            return
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self._pending = b""
        await self._inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        if self._pending:
            await self._flush(timeout)
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._sock is not None:
            return is_socket_readable(self._sock)
        return self._inner.get_extra_info(info)


class CoalescingBackend(httpcore2.AsyncNetworkBackend):
    """A network backend whose streams send a request's head and body in one write."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def coalesce(transport: Any) -> Any:
    """``transport`` (an ``httpx2.AsyncHTTPTransport``) with its pool on a :class:`CoalescingBackend`.

    A transport whose pool is not a plain ``httpcore2.AsyncConnectionPool`` (a proxy) is left as it is.
    """
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore2.AsyncConnectionPool and not isinstance(pool._network_backend, CoalescingBackend):  # noqa: SLF001
        pool._network_backend = CoalescingBackend(pool._network_backend)  # noqa: SLF001
    return transport
