"""Gemini API (google-genai): ``serviceTier`` at the request root.

Wire: the SDK sends ``GenerateContentConfig(service_tier="flex")`` as a top-level
``"serviceTier": "flex"`` (sibling of ``contents``, not inside ``generationConfig``).
Standard sends no tier. The served tier is the ``x-gemini-service-tier`` response header,
else ``usageMetadata.serviceTier``. Flex shed is 503 ``UNAVAILABLE`` or 429
``RESOURCE_EXHAUSTED`` (which may carry ``google.rpc.RetryInfo.retryDelay``); Gemini never
upgrades a flex request to standard by itself.

Timeouts: ``HttpOptions.timeout`` is in **milliseconds** and is set per request; the SDK
then also sends ``X-Server-Timeout`` so the server stops queueing when we stop waiting.
google-genai does not retry unless ``retry_options`` is set; clients flextier creates never
set it. Usage: ``promptTokenCount`` includes cached tokens; output = ``candidatesTokenCount
+ thoughtsTokenCount`` (thinking is billed as output); ``toolUsePromptTokenCount`` is
added to input.

The adapter asks the SDK for the raw HTTP response (``should_return_http_response``), so
``AttemptOutcome.body`` is the exact wire JSON and no typed object is built per call.

The job path's async calls skip the SDK's per-request work (issue 19: it cost 2.6x OpenAI's
client CPU per request): :class:`LeanGemini` has the SDK turn each distinct parameter set
into the wire request once (its own ``_GenerateContentParameters_to_mldev`` and
``_build_request``: same URL, headers and JSON), then posts JSON over the shared
:class:`~flextier.providers.openai.lean.LeanClient`, classifying errors with
:func:`classify_gemini` on the SDK's own ``APIError`` (:mod:`.wire`). A user's client, the
sync path, Vertex AI and the batch backend still go through the SDK.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from ..._types import AttemptOutcome, CallRequest
from ...cost import Usage
from ...policy.backoff import retry_delay_from_google_details
from ...errors import (BadRequest, FlexCapacityUnavailable, ProviderError, QuotaExhausted, RateLimited,
                      TierNotSupported, Timeout, Transient, Unauthorized)
from ...guard import guard_async_transport, guard_transport
from ..base import (BaseAdapter, Transport, check_usage, item_headers, malformed_response, retry_after_of,
                   request_url, route_error, served_tier, split_system, text_of_content, tls_context)

try:  # google-genai may run on httpx or on its fork httpx2; classify both
    import httpx2 as _httpx2
    _TIMEOUTS: tuple = (httpx.TimeoutException, _httpx2.TimeoutException)
    _CONNECT_TIMEOUTS: tuple = (httpx.ConnectTimeout, httpx.PoolTimeout, _httpx2.ConnectTimeout, _httpx2.PoolTimeout)
    _TRANSPORT: tuple = (httpx.TransportError, _httpx2.TransportError)
    _SENT: tuple = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError,
                    _httpx2.ReadError, _httpx2.RemoteProtocolError, _httpx2.WriteError)
except ImportError:  # pragma: no cover
    _TIMEOUTS = (httpx.TimeoutException,)
    _CONNECT_TIMEOUTS = (httpx.ConnectTimeout, httpx.PoolTimeout)
    _TRANSPORT = (httpx.TransportError,)
    _SENT = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)

__all__ = ["GeminiAdapter", "WIRE_TIER", "usage_from_body", "usage_from_sdk", "classify_gemini", "TIER_HEADER",
           "make_client"]

WIRE_TIER = {"flex": "flex", "standard": None, "priority": "priority"}
TIER_HEADER = "x-gemini-service-tier"
_PARAM_MAP = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
              "stop": "stop_sequences"}
_NATIVE_CONFIG_KEYS = ("systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
                       "safetySettings", "safety_settings", "cachedContent", "cached_content", "labels")


def _header(headers: Mapping[str, Any] | None, name: str) -> Any:
    if not headers:
        return None
    if not isinstance(headers, dict):
        return headers.get(name)
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def usage_from_body(u: Mapping[str, Any] | None) -> Usage:
    """``usageMetadata`` (camelCase wire JSON) -> :class:`Usage`."""
    if not u:
        return Usage()
    inp = int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0)
    cached = int(u.get("cachedContentTokenCount") or 0)
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    out = int(u.get("candidatesTokenCount") or 0) + thoughts
    return Usage(inp, min(cached, inp), out, thoughts)


def usage_from_sdk(u: Any) -> Usage:
    """``GenerateContentResponseUsageMetadata`` (SDK object) -> :class:`Usage`."""
    if u is None:
        return Usage()
    inp = (u.prompt_token_count or 0) + (u.tool_use_prompt_token_count or 0)
    cached = u.cached_content_token_count or 0
    thoughts = u.thoughts_token_count or 0
    out = (u.candidates_token_count or 0) + thoughts
    return Usage(inp, min(cached, inp), out, thoughts)


def served_from(headers: Mapping[str, Any] | None, usage_tier: Any) -> str:
    raw = _header(headers, TIER_HEADER)
    if raw is None:
        raw = getattr(usage_tier, "value", usage_tier)
    return served_tier(raw)


def text_from_body(body: Mapping[str, Any]) -> str:
    cands = body.get("candidates") or []
    if not cands:
        return ""
    parts = ((cands[0].get("content") or {}).get("parts")) or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought"))


def classify_gemini(exc: BaseException, tier: str) -> ProviderError | None:
    p = "gemini"
    if isinstance(exc, genai_errors.APIError):
        code = exc.code if isinstance(exc.code, int) else None
        status = str(exc.status or "").upper()
        msg = str(exc.message or "")
        headers = getattr(getattr(exc, "response", None), "headers", None)
        retry_after = retry_delay_from_google_details(exc.details)
        if retry_after is None:
            retry_after = retry_after_of(headers)
        kw = dict(status=code, code=status or None, retry_after=retry_after, tier=tier, provider=p)
        low = msg.lower()
        resp = getattr(exc, "response", None)
        route = route_error(code, exc.details, msg, request_url(resp),
                            tier=tier, provider=p)
        if route is not None:
            return route
        if code == 429 or status == "RESOURCE_EXHAUSTED":
            quota_ids = _quota_ids(exc.details)
            if any("perday" in q for q in quota_ids):
                return QuotaExhausted(msg, **kw)       # a daily quota: nothing to wait for today
            if quota_ids:
                return RateLimited(msg, **kw)          # a per-minute quota: an ordinary rate limit
            return FlexCapacityUnavailable(msg, **kw) if tier == "flex" else RateLimited(msg, **kw)
        if code == 504 or status == "DEADLINE_EXCEEDED":
            # the server gave up at our X-Server-Timeout: it stopped before doing the work
            return Timeout(msg or "deadline exceeded", **kw)
        if code == 503 or status == "UNAVAILABLE":
            return FlexCapacityUnavailable(msg, **kw) if tier == "flex" else Transient(msg, **kw)
        if code is not None and (code >= 500 or code in (408, 409)):  # 409 ABORTED: a conflict, retry
            return Transient(msg, **kw)
        if tier == "flex" and code == 400 and ("service_tier" in low or "servicetier" in low or "flex" in low
                                               or "service tier" in low):
            return TierNotSupported(msg, **kw)
        if (code in (401, 403) or status in ("UNAUTHENTICATED", "PERMISSION_DENIED")
                or "API_KEY_INVALID" in str(exc.details)):
            return Unauthorized(msg, **kw)
        return BadRequest(msg, **kw)
    if isinstance(exc, _TIMEOUTS):
        if isinstance(exc, _CONNECT_TIMEOUTS):
            return Transient("connect timeout", tier=tier, provider=p)
        return Timeout("the call ran past its timeout", tier=tier, provider=p, possibly_billed=True)
    if isinstance(exc, _TRANSPORT):
        return Transient(f"connection error: {type(exc).__name__}", tier=tier, provider=p,
                         possibly_billed=isinstance(exc, _SENT))
    if isinstance(exc, json.JSONDecodeError):
        return Transient("response was not JSON", tier=tier, provider=p, possibly_billed=True)
    return None


def classify_status(status: int, headers: Mapping[str, str], content: bytes, url: Any, tier: str) -> ProviderError:
    """An HTTP error answer (status, headers, body) -> taxonomy, via the SDK's own ``APIError``.

    One home for the transport engine's dialect (:mod:`.wire`) and the job path's lean client
    (:class:`LeanGemini`): both read the same fields :func:`classify_gemini` reads from the SDK.
    """
    from ..wire import json_or_text

    body = json_or_text(content)
    if not isinstance(body, dict):
        body = {"error": {"code": status, "message": str(body or f"HTTP {status}"), "status": ""}}
    resp = _ErrResponse(headers, url)
    err = classify_gemini(genai_errors.APIError(status, body, None), tier)
    if err is None:   # pragma: no cover - APIError is always classified
        raise RuntimeError("unclassified Gemini error")
    if err.retry_after is None:
        err.retry_after = retry_after_of(resp.headers)
    return err


def status_error(response: Any, tier: str) -> ProviderError:
    """:class:`~flextier.providers.openai.lean.LeanClient`'s hook: an error response of the lean client."""
    return classify_status(response.status_code, response.headers, response.content, response.request.url, tier)


class _ErrResponse:
    def __init__(self, headers: Mapping[str, str], url: Any) -> None:
        self.headers = headers
        self.url = url


def _quota_ids(details: Any) -> list[str]:
    """Lower-cased ``quotaId`` values of ``google.rpc.QuotaFailure`` entries in an error body."""
    if isinstance(details, Mapping) and isinstance(details.get("error"), Mapping):
        details = details["error"]
    items = details.get("details") if isinstance(details, Mapping) else None
    out: list[str] = []
    for d in items if isinstance(items, list) else []:
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for v in d.get("violations") or []:
                if isinstance(v, Mapping):
                    out.append(str(v.get("quotaId") or v.get("quota_id") or v.get("quotaMetric") or "").lower())
    return out


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list) and all(isinstance(c, dict) and "type" not in c for c in content):
        return content  # already Gemini parts
    return [{"text": text_of_content(content)}]


def contents_from_messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    system, rest = split_system(messages)
    contents = [{"role": "model" if m.get("role") in ("assistant", "model") else "user",
                 "parts": _parts(m.get("content"))} for m in rest]
    return system, contents


def make_client(base_url: str | None = None, api_key: str | None = None, *, sync: bool = True,
                max_connections: int | None = None, verify: Any = None, guard: bool = True,
                what: str = "gemini", **http: Any) -> Any:
    """The one place a google-genai ``Client`` is built (adapter, batch backend, emulator helpers).

    google-genai does not retry unless ``retry_options`` are set, so "retries off" is the
    default here. While emulating the endpoint must be loopback (:mod:`flextier._loopback`,
    checked before anything is built). ``guard`` gives the client an httpx client under
    :mod:`flextier.guard` (a total deadline per attempt, a capped body) with a pool of
    ``max_connections``: the sync one for ``sync``, else the async one with the TLS context
    ``verify`` (or :func:`~flextier.providers.base.tls_context`); use ``.aio`` of the result. ``http`` goes to
    ``HttpOptions``; with no endpoint and no options the SDK's defaults stay in place.
    """
    from ..._loopback import check_endpoint

    check_endpoint(base_url, what)
    if guard:
        n = max_connections or 10
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        if not sync and verify is None:
            verify = tls_context(base_url, httpx.create_ssl_context)
        http["httpx_client"] = httpx.Client(transport=guard_transport(httpx.HTTPTransport(limits=limits), httpx),
                                            timeout=None) if sync else None
        http["httpx_async_client"] = None if sync else httpx.AsyncClient(
            transport=guard_async_transport(httpx.AsyncHTTPTransport(limits=limits, verify=verify), httpx),
            timeout=None)
    kw: dict[str, Any] = {"http_options": gtypes.HttpOptions(base_url=base_url, **http)
                          if base_url or http else None}
    if api_key:
        kw["api_key"] = api_key
    return genai.Client(**kw)


class GeminiAdapter(BaseAdapter):
    provider = "gemini"

    @classmethod
    def make_transport(cls, *, base_url: str | None, api_key: str | None, client: Any,
                       timeouts: Mapping[str, float], max_connections: int) -> Transport:
        if client is not None:
            if isinstance(client, genai.client.AsyncClient):
                def no_sync() -> Any:
                    raise TypeError("this adapter wraps an async google-genai client; use asend()")
                tr = Transport(no_sync, lambda: client)
            else:
                tr = Transport(lambda: client, lambda: client.aio)
            tr.user_client = client  # type: ignore[attr-defined]
            return tr

        # async: several clients with small pools (see Transport: an httpx pool scans all its
        # idle connections per request, so one pool of 256 is CPU-bound on its own bookkeeping)
        from ..openai import SHARD_CONNECTIONS
        shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        per = -(-max_connections // shards)
        tls: list[Any] = []  # one TLS context for all the async clients (building one costs ~70 ms)

        api: list[Any] = []  # the SDK's API client that builds the lean requests (one, no HTTP of its own)

        def make(sync: bool) -> Any:
            if sync:
                return make_client(base_url, api_key, max_connections=max_connections)
            if not tls:
                tls.append(tls_context(base_url, httpx.create_ssl_context))
            if not api:
                api.append(make_client(base_url, api_key, guard=False)._api_client)  # noqa: SLF001
            if LeanGemini.usable(api[0]):
                from ..openai import _limits, aguarded
                from ..openai.lean import LeanClient

                http = LeanClient("", api[0].api_key, transport=aguarded(_limits(per), tls[0]), provider="gemini",
                                  headers=LeanGemini.headers(api[0]), status_error=status_error)
                return LeanGemini(api[0], http)
            return make_client(base_url, api_key, sync=False, max_connections=per, verify=tls[0]).aio

        return Transport(lambda: make(True), lambda: make(False), shards=shards)

    # -- wire ---------------------------------------------------------------------------
    def build(self, req: CallRequest, tier: str, timeout: float | None) -> tuple[str, Any, dict[str, Any]]:
        model, contents, cfg = self.build_config(req, tier)
        http: dict[str, Any] = {}
        if timeout is not None:
            http["timeout"] = max(1, int(timeout * 1000))
        h = item_headers(req)
        if h:
            http["headers"] = h
        if http:
            cfg["http_options"] = http
        cfg["should_return_http_response"] = True
        return model, contents, validate_config(cfg, tier)

    def build_config(self, req: CallRequest, tier: str) -> tuple[str, Any, dict[str, Any]]:
        """(model, contents, config as a plain dict): what a request asks for, before HTTP options."""
        cfg: dict[str, Any] = {}
        if req.native is not None:
            n = dict(req.native)
            contents = n.pop("contents", [])
            gen = n.pop("generationConfig", n.pop("generation_config", None)) or {}
            cfg.update(gen)
            for k in _NATIVE_CONFIG_KEYS:
                if k in n:
                    cfg[k] = n.pop(k)
            n.pop("serviceTier", None)
            n.pop("service_tier", None)
            model = str(n.pop("model", self.entry.model_id)).removeprefix("models/")
        else:
            system, contents = contents_from_messages(req.messages or [])
            if system:
                cfg["system_instruction"] = system
            for k, v in req.params.items():
                k = _PARAM_MAP.get(k, k)
                if k == "stop_sequences" and isinstance(v, str):
                    v = [v]
                cfg[k] = v
            model = self.entry.model_id
        wire = WIRE_TIER[tier]
        if wire:
            cfg["service_tier"] = wire
        return model, contents, cfg

    def outcome(self, resp: Any, tier: str = "standard") -> AttemptOutcome:
        http = resp.sdk_http_response
        body_raw = http.body if http is not None else None
        headers = dict(http.headers or {}) if http is not None else {}
        return self.outcome_raw(body_raw, headers, tier)

    def outcome_raw(self, body_raw: Any, headers: Mapping[str, str], tier: str) -> AttemptOutcome:
        """The response body (bytes or text) and headers of a 2xx answer -> the attempt's outcome."""
        if not body_raw:
            raise malformed_response("empty body", tier=tier, provider=self.provider)
        body = json.loads(body_raw)
        if not isinstance(body, dict):
            raise json.JSONDecodeError("not an object", str(body_raw)[:100], 0)
        self._check(body, tier)
        usage = body.get("usageMetadata") or {}
        return AttemptOutcome(body=body, text=text_from_body(body),
                              served_tier=served_from(headers, usage.get("serviceTier")),
                              usage=usage_from_body(usage), headers=dict(headers), raw=None)

    def _check(self, body: dict[str, Any], tier: str) -> None:
        """A 200 body must hold candidates and usage; an error object is classified like its status."""
        p = self.provider
        err = body.get("error")
        if err:
            e = err if isinstance(err, dict) else {"message": str(err)}
            code = e.get("code") if isinstance(e.get("code"), int) else None
            msg = str(e.get("message") or "error body with HTTP 200")
            st = str(e.get("status") or "")
            if code is None or code >= 500 or st in ("UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED"):
                raise Transient(msg, code=st or None, tier=tier, provider=p, possibly_billed=True)
            raise BadRequest(msg, status=code, code=st or None, tier=tier, provider=p)
        cands = body.get("candidates")
        if not isinstance(cands, list) or not all(isinstance(c, dict) for c in cands):
            fb = body.get("promptFeedback")
            if isinstance(fb, dict) and fb.get("blockReason"):
                raise BadRequest(f"prompt blocked: {str(fb.get('blockReason'))[:80]}", tier=tier, provider=p)
            raise malformed_response("no candidates", tier=tier, provider=p)
        check_usage(body.get("usageMetadata"), ("promptTokenCount", "candidatesTokenCount", "totalTokenCount",
                                                 "thoughtsTokenCount", "cachedContentTokenCount",
                                                 "toolUsePromptTokenCount"), tier=tier, provider=p)

    def _send(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        model, contents, config = self.build(req, tier, timeout)
        return self.outcome(self.transport.sync().models.generate_content(model=model, contents=contents,
                                                                           config=config), tier)

    async def _asend(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        c = self.transport.aio()
        if isinstance(c, LeanGemini):
            model, contents, cfg = self.build_config(req, tier)
            url, body = c.request(model, contents, cfg, tier)
            headers = item_headers(req)
            t = None
            if timeout is not None:  # as the SDK: whole milliseconds, and X-Server-Timeout in seconds
                t = max(1, int(timeout * 1000)) / 1000
                headers["X-Server-Timeout"] = str(math.ceil(t))
            resp = await c.http.request("POST", url, body=body, tier=tier, timeout=t, headers=headers or None)
            return self.outcome_raw(resp.content, resp.headers, tier)
        model, contents, config = self.build(req, tier, timeout)
        return self.outcome(await c.models.generate_content(model=model, contents=contents, config=config), tier)

    def classify(self, exc: BaseException, tier: str) -> ProviderError | None:
        return classify_gemini(exc, tier)


def validate_config(cfg: dict[str, Any], tier: str) -> Any:
    """``GenerateContentConfig`` from a dict; a wrong parameter name or value is a BadRequest."""
    try:
        return gtypes.GenerateContentConfig.model_validate(cfg)
    except Exception as exc:  # pydantic.ValidationError
        raise BadRequest(f"invalid Gemini parameters: {exc}".splitlines()[0], tier=tier,
                         provider="gemini") from exc


class LeanGemini:
    """The job path's async Gemini client: SDK-built requests, cached per parameter set, posted as JSON.

    Why: google-genai validates a pydantic config, converts it to the wire and builds an
    ``HttpRequest`` on every call, which made a Gemini job cost 2.6x an OpenAI job's client CPU
    per request (``bench/peers.py --providers gemini``). A job sends the same parameters with
    different contents, so the SDK's conversion runs once per distinct ``(model, config)``
    (at most :attr:`CACHE` kept) and each request adds only its contents. Text-only contents are
    sent as built (the SDK's conversion leaves them unchanged); anything else is converted by
    the SDK per request.
    """

    CACHE = 256

    def __init__(self, api: Any, http: Any) -> None:
        self.api = api
        self.http = http
        self._built: dict[str, tuple[str, dict[str, Any]]] = {}

    @staticmethod
    def usable(api: Any) -> bool:
        """The Gemini Developer API with an API key (Vertex AI's auth stays with the SDK)."""
        return not api.vertexai and bool(api.api_key)

    @staticmethod
    def headers(api: Any) -> dict[str, str]:
        """The SDK's request headers (``x-goog-api-key``, its user agent and ``x-goog-api-client``)."""
        return {"Content-Type": "application/json", **(api._http_options.headers or {})}  # noqa: SLF001

    def request(self, model: str, contents: list[dict[str, Any]], cfg: dict[str, Any],
                tier: str) -> tuple[str, dict[str, Any]]:
        """(URL, JSON body) the SDK's ``generate_content`` would send for these, minus HTTP options."""
        from ..openai.lean import dumps

        key = model + "\0" + dumps(cfg).decode()
        hit = self._built.get(key)
        if hit is None:
            hit = self._build(model, cfg, tier)
            if len(self._built) >= self.CACHE:
                self._built.pop(next(iter(self._built)))
            self._built[key] = hit
        url, base = hit
        if not all(set(p) <= {"text"} for c in contents for p in c.get("parts") or ()):
            contents = self._sdk_contents(contents)
        return url, {"contents": contents, **base}

    def _build(self, model: str, cfg: dict[str, Any], tier: str) -> tuple[str, dict[str, Any]]:
        from google.genai import _common
        from google.genai import models as gmodels

        params = gtypes._GenerateContentParameters(model=model, contents=[{"role": "user", "parts": [{"text": "."}]}],  # noqa: SLF001
                                                   config=validate_config(cfg, tier))
        d = gmodels._GenerateContentParameters_to_mldev(self.api, params, None, params)  # noqa: SLF001
        path = "{model}:generateContent".format_map(d["_url"]) if d.get("_url") else "{model}:generateContent"
        d.pop("config", None)
        d = _common.encode_unserializable_types(_common.convert_to_dict(d))
        req = self.api._build_request("post", path, d, None)  # noqa: SLF001
        body = dict(req.data)
        body.pop("contents", None)
        return req.url, body

    def _sdk_contents(self, contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from google.genai import _common
        from google.genai import models as gmodels

        params = gtypes._GenerateContentParameters(model="m", contents=contents)  # noqa: SLF001
        d = gmodels._GenerateContentParameters_to_mldev(self.api, params, None, params)  # noqa: SLF001
        return _common.encode_unserializable_types(_common.convert_to_dict(d))["contents"]
