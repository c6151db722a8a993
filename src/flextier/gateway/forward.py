"""Where a request goes upstream, with which credential and headers.

Why a module of its own: it is the only place that touches credentials. In single-user mode
(no ``gateway.toml`` keys) the caller's own provider key is forwarded as it came. With keys,
the caller's header carries the *gateway* key, which is removed; the key's upstream credential
is read from the environment variable its config names, at the moment of the call, and put in
the provider's own header (``Authorization: Bearer`` for OpenAI, ``x-goog-api-key`` for Gemini,
``x-api-key`` for Anthropic). Nothing here logs, stores or returns a credential.
"""
from __future__ import annotations

import asyncio
import importlib.util
from typing import Any, AsyncIterator, Iterable, Mapping

from .config import GatewayConfig, KeyConfig
from .controls import CONTROL_HEADERS

__all__ = ["upstream_url", "upstream_headers", "presented_key", "response_headers", "AUTH_HEADERS", "upstream_transport",
           "AiohttpTransport", "ShardedTransport"]

#: request headers never forwarded (hop-by-hop, recomputed, or flextier's own controls)
_DROP_REQ = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                       "proxy-authorization", "te", "trailer", *CONTROL_HEADERS})
#: where each provider's SDK puts its key (the gateway key arrives in one of these)
AUTH_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
_DROP_RESP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "x-flextier-call",
                        "server", "date"})


def upstream_url(cfg: GatewayConfig, provider: str, path: str, query: str) -> str:
    """The upstream URL of a gateway path. OpenAI's base ends in ``/v1`` (as its SDK's does), so
    ``/v1/chat/completions`` maps to ``{base}/chat/completions``; Gemini and Anthropic bases are
    hosts, and the path is kept whole."""
    base = cfg.upstreams.get(provider) or ""
    if provider == "openai" and path.startswith("/v1/"):
        path = path[3:]
    return base + path + (f"?{query}" if query else "")


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The gateway key a caller presented: ``Authorization: Bearer K`` (OpenAI SDKs), ``x-api-key``
    (Anthropic), ``x-goog-api-key`` or ``?key=`` (google-genai)."""
    a = headers.get("authorization")
    if a:
        scheme, _, val = a.partition(" ")
        if scheme.lower() == "bearer" and val.strip():
            return val.strip()
    for h in ("x-api-key", "x-goog-api-key"):
        v = headers.get(h)
        if v:
            return v.strip()
    return query.get("key") or None


def upstream_headers(raw: Iterable[tuple[str, str]], provider: str, key: KeyConfig | None) -> list[tuple[str, str]]:
    """The headers sent upstream (see the module docstring)."""
    out = []
    for k, v in raw:
        lk = k.lower()
        if lk in _DROP_REQ:
            continue
        if key is not None and lk in AUTH_HEADERS:
            continue
        out.append((lk, v))
    if key is not None:
        cred = key.credential(provider)
        if cred:
            if provider == "gemini":
                out.append(("x-goog-api-key", cred))
            elif provider == "anthropic":
                out.append(("x-api-key", cred))
            else:
                out.append(("authorization", f"Bearer {cred}"))
    return out


def strip_key_query(query: str, key: KeyConfig | None) -> str:
    """Drop ``key=`` (a gateway key given the google-genai way) from the upstream query string."""
    if key is None or "key=" not in query:
        return query
    return "&".join(p for p in query.split("&") if not p.startswith("key="))


def response_headers(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw:
        lk = k.lower()
        if lk not in _DROP_RESP:
            out[lk] = v
    return out


class ShardedTransport:
    """Upstream connections as several small httpx pools, the least busy one per request.

    Why: httpcore's pool scans every connection for each request it places, so one pool of
    hundreds of connections spends more CPU choosing a connection than sending on it (the same
    reason the provider adapters shard at ``SHARD_CONNECTIONS``, ``providers/openai``). Small
    pools keep that scan short; the gateway's concurrency is the sum of the shards. A shard
    counts as busy from the request until its response is closed.
    """

    def __init__(self, hx, shards: int = 16, per_shard: int = 32) -> None:
        lim = hx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        pools = [hx.AsyncHTTPTransport(limits=lim) for _ in range(shards)]
        busy = [0] * shards

        class Counted(hx.AsyncByteStream):
            __slots__ = ("stream", "i", "done")

            def __init__(self, stream, i: int) -> None:
                self.stream, self.i, self.done = stream, i, False

            async def __aiter__(self):
                async for c in self.stream:
                    yield c

            async def aclose(self) -> None:
                try:
                    await self.stream.aclose()
                finally:
                    if not self.done:
                        self.done = True
                        busy[self.i] -= 1

        class Sharded(hx.AsyncBaseTransport):  # what the engine expects of ``inner``
            async def handle_async_request(self, request):
                i = min(range(shards), key=busy.__getitem__)
                busy[i] += 1
                try:
                    resp = await pools[i].handle_async_request(request)
                except BaseException:
                    busy[i] -= 1
                    raise
                resp.stream = Counted(resp.stream, i)
                return resp

            async def aclose(self) -> None:
                for p in pools:
                    await p.aclose()

        self.transport = Sharded()


def upstream_transport(hx: Any, kind: str = "auto") -> Any:
    """The transport the engine sends upstream on: ``aiohttp`` when it is installed (``auto``),
    else httpx's own pools (:class:`ShardedTransport`). Why: under bench load the httpx/httpcore
    path was a third of the gateway's CPU per call, and the same calls on aiohttp (a C HTTP parser,
    one socket write per small request instead of two) cost 30% less gateway CPU in total
    (docs/gateway.md, "Per-call CPU"). Either way the engine sees an httpx transport."""
    if kind not in ("auto", "aiohttp", "httpx"):
        raise ValueError(f"upstream transport must be auto, aiohttp or httpx, got {kind!r}")
    if kind == "aiohttp" or (kind == "auto" and importlib.util.find_spec("aiohttp") is not None):
        return AiohttpTransport(hx).transport
    return ShardedTransport(hx).transport


def _ssl_context() -> Any:
    """The trust store httpx uses (certifi's bundle), so switching transports trusts the same CAs."""
    import ssl

    try:
        import certifi
    except ImportError:  # pragma: no cover - httpx depends on certifi
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class AiohttpTransport:
    """An httpx ``AsyncBaseTransport`` (``.transport``) that sends on an ``aiohttp`` session (see
    :func:`upstream_transport`). It maps aiohttp's errors to httpx's, so the engine's one error
    table (``intercept._Engine.classify_exc``, docs/errors.md) reads them as it reads httpx's:
    connect failures and connect timeouts are never billed, a read timeout or a cut connection
    after the request left may be. Bodies pass through undecoded (``Content-Encoding`` is httpx's
    to undo, as with its own transports); the request's ``timeout`` extension sets the connect and
    read timeouts per attempt."""

    def __init__(self, hx: Any, limit: int = 512, keepalive_s: float = 15.0) -> None:
        import aiohttp as aio

        drop = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})
        state: dict[str, Any] = {}

        def session() -> Any:
            s = state.get("s")
            if s is None:   # inside the running loop, at the first call
                s = state["s"] = aio.ClientSession(
                    connector=aio.TCPConnector(limit=limit, keepalive_timeout=keepalive_s, ssl=_ssl_context()),
                    auto_decompress=False, cookie_jar=aio.DummyCookieJar(),
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
            return s

        class Body(hx.AsyncByteStream):   # the answer's chunks as they arrive
            __slots__ = ("resp", "request")

            def __init__(self, resp: Any, request: Any) -> None:
                self.resp, self.request = resp, request

            async def __aiter__(self) -> AsyncIterator[bytes]:
                try:
                    async for chunk in self.resp.content.iter_any():
                        yield chunk
                except asyncio.TimeoutError as e:
                    raise hx.ReadTimeout("upstream read timed out", request=self.request) from e
                except (aio.ClientPayloadError, aio.ServerDisconnectedError) as e:
                    raise hx.RemoteProtocolError(f"upstream connection: {type(e).__name__}",
                                                 request=self.request) from e
                except aio.ClientError as e:
                    raise hx.ReadError(f"upstream connection: {type(e).__name__}", request=self.request) from e

            async def aclose(self) -> None:
                self.resp.release()

        class Transport(hx.AsyncBaseTransport):
            async def handle_async_request(self, request: Any) -> Any:
                t = request.extensions.get("timeout") or {}
                timeout = aio.ClientTimeout(total=None, sock_connect=t.get("connect"), sock_read=t.get("read"))
                # from the raw bytes, decoded as multi_items() would (it asks for the encoding once per
                # header, a visible share of the gateway's CPU per call)
                enc = request.headers.encoding
                headers = [(k.decode(enc), v.decode(enc)) for k, v in request.headers.raw if k.lower() not in drop]
                try:
                    resp = await session().request(request.method, str(request.url), headers=headers,
                                                   data=request.content or None, timeout=timeout,
                                                   allow_redirects=False)
                except asyncio.TimeoutError as e:   # no byte of the answer yet: connect (or send) timed out
                    raise hx.ConnectTimeout("timed out connecting upstream", request=request) from e
                except aio.ClientConnectorError as e:
                    raise hx.ConnectError(f"cannot connect upstream: {e.os_error or e}", request=request) from e
                except (aio.ServerDisconnectedError, aio.ClientPayloadError, aio.ClientResponseError) as e:
                    raise hx.RemoteProtocolError(f"upstream connection: {type(e).__name__}", request=request) from e
                except aio.ClientError as e:
                    raise hx.ReadError(f"upstream connection: {type(e).__name__}", request=request) from e
                return hx.Response(resp.status, headers=list(resp.raw_headers), stream=Body(resp, request),
                                   extensions={"http_version": b"HTTP/1.1",
                                               "reason_phrase": (resp.reason or "").encode("latin-1", "replace")})

            async def aclose(self) -> None:
                s = state.pop("s", None)
                if s is not None:
                    await s.close()

        self.transport = Transport()
