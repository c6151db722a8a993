"""Where a request goes upstream, with which credential and headers.

Why a module of its own: it is the only place that touches credentials. In single-user mode
(no ``gateway.toml`` keys) the caller's own provider key is forwarded as it came. With keys,
the caller's header carries the *gateway* key, which is removed; the key's upstream credential
is read from the environment variable its config names, at the moment of the call, and put in
the provider's own header (``Authorization: Bearer`` for OpenAI, ``x-goog-api-key`` for Gemini,
``x-api-key`` for Anthropic). Nothing here logs, stores or returns a credential.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from .config import GatewayConfig, KeyConfig
from .controls import CONTROL_HEADERS

__all__ = ["upstream_url", "upstream_headers", "presented_key", "response_headers", "AUTH_HEADERS"]

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
