"""The Gemini API (google-genai) as the transport engine sees it.

Recognised: ``POST .../models/{model}:generateContent`` and ``:streamGenerateContent``
(``?alt=sse``), which every google-genai path uses (``models.generate_content[_stream]``,
``chats.create().send_message[_stream]``, ``.aio``). Counting tokens, caches, files and
batches pass through untouched.

Tier: top-level ``serviceTier`` (the SDK's spelling; ``service_tier`` also read). Missing
means "not set" and ``flex`` flex with fallback: the policy writes the attempt's tier
(standard sends none). ``standard``/``priority`` set by the caller are sent unchanged. The
served tier is the ``x-gemini-service-tier`` header, else ``usageMetadata.serviceTier``;
errors are classified by :func:`~flextier.providers.gemini.classify_gemini` (the SDK's own
``APIError`` built from the response, so both paths read the same fields).
"""
from __future__ import annotations

from typing import Any, Mapping

from ...errors import ProviderError
from ...tiers import normalize_tier
from ..wire import KEEP, Call, Dialect, Reply, SSEObserver, dumps, reply_object, request_object
from . import WIRE_TIER, GeminiAdapter, classify_gemini, classify_status, served_from, text_from_body, usage_from_body

__all__ = ["GeminiDialect", "wrap"]

_TIER_KEYS = ("serviceTier", "service_tier")


class GeminiDialect(Dialect):
    provider = "gemini"

    def recognise(self, method: str, path: str, body: bytes) -> Call | None:
        if method != "POST":
            return None
        head, sep, verb = path.rpartition(":")
        if not sep or verb not in ("generateContent", "streamGenerateContent"):
            return None
        model = head.rpartition("/models/")[2] or head.rpartition("/")[2]
        b = request_object(body)
        if b is None:
            return None
        raw = next((b[k] for k in _TIER_KEYS if b.get(k) is not None), None)
        explicit = None
        if raw is not None:
            t = normalize_tier(raw)
            explicit = None if t == "flex" else (t if t in ("standard", "priority") else "standard")
        return Call("gemini", "generate", model, verb == "streamGenerateContent", explicit, b)

    def attempt_body(self, call: Call, tier: str, raw: bytes) -> tuple[bytes, dict[str, str | None]]:
        if call.explicit is not None:
            return raw, {}
        b = {k: v for k, v in call.body.items() if k not in _TIER_KEYS}
        wire = WIRE_TIER[tier]
        if wire:
            b["serviceTier"] = wire
        return dumps(b), {}

    def reply(self, call: Call, headers: Mapping[str, str], content: bytes, tier: str) -> Reply:
        body = reply_object(content)
        GeminiAdapter._check(GeminiAdapter(None, None), body, tier)  # type: ignore[arg-type]
        usage = body.get("usageMetadata") or {}
        return Reply(served_from(headers, usage.get("serviceTier")), usage_from_body(usage), text_from_body(body),
                     body.get("responseId"))

    def classify(self, status: int, headers: Mapping[str, str], content: bytes, url: Any,
                 tier: str) -> ProviderError:
        return classify_status(status, headers, content, url, tier)

    def observer(self, call: Call, tier: str) -> SSEObserver:
        return GenerateObserver(call, tier)


class GenerateObserver(SSEObserver):
    def on_headers(self, headers: Mapping[str, str]) -> None:
        s = served_from(headers, None)
        if s != "unknown":
            self.served = s

    def event(self, name: str | None, d: Any) -> Any:
        if not isinstance(d, dict):
            return KEEP
        if d.get("error"):
            from google.genai import errors as genai_errors
            e = d["error"] if isinstance(d["error"], dict) else {"message": str(d["error"])}
            code = e.get("code") if isinstance(e.get("code"), int) else 500
            self.error = classify_gemini(genai_errors.APIError(code, d, None), self.tier)
            return KEEP
        if self.rid is None:
            self.rid = d.get("responseId")
        um = d.get("usageMetadata")
        if um and um.get("serviceTier") is not None:
            s = served_from(None, um.get("serviceTier"))
            if s != "unknown" or self.served is None:
                self.served = s
        for c in d.get("candidates") or []:
            if c.get("finishReason") is not None:
                self.done = True
            for p in ((c.get("content") or {}).get("parts") or []):
                if isinstance(p, dict) and (p.get("text") or p.get("functionCall")):
                    self.first = True
        if um:
            self.usage = usage_from_body(um)
            # counts so far on every chunk; from the chunk with the finish reason on, it is the bill
            self.usage_final = self.done
        return KEEP


def wrap(client: Any, policy: Any = None, catalog: Any = None) -> Any:
    """:func:`flextier.wrap` for ``google.genai.Client`` (its ``.aio`` too) and ``Client.aio``.

    A new ``genai.Client`` with the original's credentials and HTTP options, whose httpx
    clients run flextier's transport over the original's transports (same pools). An
    ``AsyncClient`` given alone comes back as the ``.aio`` of such a client.
    """
    import httpx
    from google import genai
    from google.genai import client as gclient

    from ...intercept import async_transport, transport

    is_aio = isinstance(client, gclient.AsyncClient)
    if not is_aio and not isinstance(client, gclient.Client):
        raise TypeError(f"cannot wrap {type(client).__name__}; wrap google.genai.Client or Client.aio")
    api = client._api_client  # noqa: SLF001 - where the SDK keeps its HTTP clients and options
    d = GeminiDialect()
    opts = api._http_options.model_copy()  # noqa: SLF001
    sync_http = getattr(api, "_httpx_client", None)
    hx_s = _module_of(sync_http) or httpx
    inner = sync_http._transport if sync_http is not None else hx_s.HTTPTransport()  # noqa: SLF001
    tr = transport(inner, hx_s, [d], policy, catalog)
    tr.owns_inner = sync_http is None
    opts.httpx_client = hx_s.Client(transport=tr, timeout=None, trust_env=False)
    async_http = getattr(api, "_async_httpx_client", None)
    hx_a = _module_of(async_http) or hx_s
    ainner = getattr(async_http, "_transport", None)
    atr = async_transport(ainner or hx_a.AsyncHTTPTransport(), hx_a, [d], policy, catalog)
    atr.owns_inner = ainner is None
    opts.httpx_async_client = hx_a.AsyncClient(transport=atr, timeout=None, trust_env=False)
    opts.aiohttp_client = None
    kw: dict[str, Any] = {"http_options": opts}
    if api.vertexai:
        kw.update(vertexai=True, credentials=api._credentials, project=api.project, location=api.location)  # noqa: SLF001
    else:
        kw["api_key"] = api.api_key
    new = genai.Client(**kw)
    return new.aio if is_aio else new


def _module_of(http: Any) -> Any:
    if http is None:
        return None
    import httpx
    if isinstance(http, (httpx.Client, httpx.AsyncClient)):
        return httpx
    import httpx2
    return httpx2


# -- complete(stream=True) --------------------------------------------------------------------------

def _text(chunk: Any) -> str | None:
    try:
        return chunk.text or None
    except Exception:  # noqa: BLE001 - a chunk without text parts (a function call, a finish)
        return None


def _args(adapter: Any, req: Any) -> tuple[str, Any, Any]:
    model, contents, config = adapter.build(req, "standard", None)   # no tier: the engine writes it
    return model, contents, config.model_copy(update={"should_return_http_response": None})


def stream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    """``complete(stream=True)`` on Gemini through a wrapped ``genai.Client``. Its stream is a
    plain generator, so the handle is None: ``info()`` is asked about the last chunk."""
    model, contents, config = _args(adapter, req)
    return None, client.models.generate_content_stream(model=model, contents=contents, config=config), _text


async def astream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    model, contents, config = _args(adapter, req)
    aio = getattr(client, "aio", client)   # a wrapped Client, or the .aio of one
    it = await aio.models.generate_content_stream(model=model, contents=contents, config=config)
    return None, it, _text
