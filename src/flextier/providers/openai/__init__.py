"""OpenAI (Chat Completions and Responses): ``service_tier`` in the JSON body.

Wire: ``"service_tier": "flex"`` for flex, ``"default"`` for standard, ``"priority"``.
The served tier is the response's ``service_tier`` (``"default"`` -> ``"standard"``).
Flex shed is HTTP 429 with ``error.code`` ``resource_unavailable`` (older) or
``flex_unavailable`` (newer); plain rate limits are 429 ``rate_limit_exceeded``.

Calls go through the SDK's generic ``client.post(path, body=..., cast_to=httpx2.Response)``
so that any request body (including native batch-line bodies with fields the typed
``create()`` signature does not know) is sent as-is, the SDK still does auth, headers and
error mapping, and we read the exact JSON back without building typed objects on the hot
path. SDK retries are off (``max_retries=0``); the connection pool is sized for the run's
concurrency.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import httpx2

import os

from ..._types import AttemptOutcome, CallRequest
from ...cost import Usage
from ...errors import ProviderError, Timeout, Transient
from ...guard import guard_async_transport, guard_transport
from ..base import (BaseAdapter, Transport, check_usage, classify_http, error_fields, item_headers,
                   malformed_response, note_remote_id, served_tier, tls_context)

from .lean import MAX_META_VALUE, META_ITEM, META_JOB, LeanClient, StoredLookup, loads, status_error

__all__ = ["OpenAIAdapter", "WIRE_TIER", "usage_from_body", "text_from_body", "classify_openai", "make_client",
           "quiet"]

WIRE_TIER = {"flex": "flex", "standard": "default", "priority": "priority"}
PATHS = {"chat": "/chat/completions", "responses": "/responses"}
SHARD_CONNECTIONS = 16   # connections per async client (httpx pool); more clients beyond that (see stainless_transport)


def _limits(n: int) -> httpx2.Limits:
    return httpx2.Limits(max_connections=n, max_keepalive_connections=n)


def guarded(limits: httpx2.Limits) -> Any:
    """The SDK's default sync transport under :mod:`flextier.guard` (total deadline, capped body)."""
    return guard_transport(httpx2.HTTPTransport(limits=limits), httpx2)


def aguarded(limits: httpx2.Limits, verify: Any) -> Any:
    """The async twin of :func:`guarded` (one shared TLS context), sending each request in one
    socket write (:mod:`flextier.providers.netstream`)."""
    from ..netstream import coalesce

    return guard_async_transport(coalesce(httpx2.AsyncHTTPTransport(limits=limits, verify=verify)), httpx2)


def _sdk() -> Any:
    """The ``openai`` module, imported on first need: the job path never needs it (see :mod:`.wire`)."""
    import openai

    return openai


def make_client(base_url: str | None = None, api_key: str | None = None, *, sync: bool = True,
                max_connections: int | None = None, verify: Any = None, guard: bool = True,
                what: str = "openai", **kw: Any) -> Any:
    """The one place an OpenAI SDK client is built (adapter, batch backend, emulator helpers).

    Why one place: every client must have SDK retries off (``max_retries=0``: flextier's own
    policy decides what to resend) and, while emulating, a loopback endpoint
    (:mod:`flextier._loopback`, checked before anything is built). ``guard`` puts the
    transport under :mod:`flextier.guard` (total deadline, capped body) with a pool of
    ``max_connections``; async clients use ``verify`` (one shared TLS context) or
    :func:`~flextier.providers.base.tls_context`. The batch backend and the emulator helpers pass
    ``guard=False``: batch output files exceed the body cap, and test clients stay the
    plain SDK client a user would build. ``kw`` goes to the SDK constructor.
    """
    from ..._loopback import check_endpoint

    check_endpoint(base_url, what)
    _openai = _sdk()
    if guard:
        lim = _limits(max_connections or 10)
        if sync:
            kw["http_client"] = _openai.DefaultHttpxClient(transport=guarded(lim))
        else:
            if verify is None:
                verify = tls_context(base_url, httpx2.create_ssl_context)
            kw["http_client"] = _openai.DefaultAsyncHttpxClient(transport=aguarded(lim, verify))
    cls = _openai.OpenAI if sync else _openai.AsyncOpenAI
    return cls(api_key=api_key, base_url=base_url, max_retries=0, **kw)


def quiet(client: Any) -> Any:
    """A user's OpenAI client with SDK retries off (the only way flextier uses a given client)."""
    return client.with_options(max_retries=0)


def usage_from_body(u: Mapping[str, Any] | None) -> Usage:
    """Chat (``prompt_tokens``...) or Responses (``input_tokens``...) usage -> :class:`Usage`."""
    if not u:
        return Usage()
    if "prompt_tokens" in u or "completion_tokens" in u:
        inp, out = u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    else:
        inp, out = u.get("input_tokens") or 0, u.get("output_tokens") or 0
        cached = (u.get("input_tokens_details") or {}).get("cached_tokens") or 0
        reasoning = (u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(int(inp), min(int(cached), int(inp)), int(out), min(int(reasoning), int(out)))


def text_from_body(body: Mapping[str, Any]) -> str:
    if "choices" in body:
        choices = body.get("choices") or []
        if choices:
            msg = choices[0].get("message") or {}
            return msg.get("content") or ""
        return ""
    parts: list[str] = []
    for item in body.get("output") or []:
        if item.get("type") == "message":
            for c in item.get("content") or []:
                if c.get("type") == "output_text":
                    parts.append(c.get("text") or "")
    return "".join(parts)


def classify_openai(exc: BaseException, tier: str, provider: str = "openai") -> ProviderError | None:
    """OpenAI/Anthropic-SDK-shaped exceptions -> taxonomy (the two SDKs share a generator)."""
    return _classify_stainless(exc, tier, provider, _sdk())


def _classify_stainless(exc: BaseException, tier: str, provider: str, sdk: Any) -> ProviderError | None:
    if isinstance(exc, sdk.APITimeoutError):
        cause = exc.__cause__
        if isinstance(cause, (httpx2.ConnectTimeout, httpx2.PoolTimeout)):
            return Transient("connect timeout", tier=tier, provider=provider)
        return Timeout("the call ran past its timeout", tier=tier, provider=provider, possibly_billed=True)
    if isinstance(exc, sdk.APIConnectionError) and isinstance(exc.__cause__, ProviderError):
        return _own(exc.__cause__, tier, provider)  # raised by the guarded transport (body cap)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        sent = isinstance(cause, (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteError))
        return Transient(f"connection error: {type(cause).__name__ if cause else 'unknown'}",
                         tier=tier, provider=provider, possibly_billed=sent)
    if isinstance(exc, sdk.APIStatusError):
        return status_error(exc.status_code, exc.body, str(exc.message), exc.response, tier=tier, provider=provider)
    if isinstance(exc, sdk.APIError):  # in-stream error without a status
        code, err_type, msg = error_fields(exc.body)
        return classify_http(status=None, code=code, err_type=err_type, message=msg or str(exc.message),
                             tier=tier, provider=provider)
    return None


def _own(err: ProviderError, tier: str, provider: str) -> ProviderError:
    """An error flextier's own transport raised, completed with the attempt's tier and provider."""
    err.tier = err.tier or tier
    err.provider = err.provider or provider
    return err


def error_from_event(data: Mapping[str, Any], tier: str) -> ProviderError | None:
    """A Responses ``response.failed`` / ``error`` event, or a failed non-streamed response."""
    typ = data.get("type")
    err: Any = None
    if typ == "error":
        err = data
    elif typ == "response.failed":
        err = (data.get("response") or {}).get("error")
    elif data.get("object") == "response" and data.get("status") == "failed":
        err = data.get("error")
    if not err:
        return None
    code, err_type, msg = error_fields(err)
    return classify_http(status=None, code=code, err_type=err_type or "server_error", message=msg,
                         tier=tier, provider="openai")


_CHAT_USAGE = ("prompt_tokens", "completion_tokens", "total_tokens")
_RESP_USAGE = ("input_tokens", "output_tokens", "total_tokens")


def check_body(body: Mapping[str, Any], tier: str, provider: str = "openai") -> None:
    """A 200 body must be a completed result: an error object, no choices/output or no usage raise.

    An HTTP 200 whose body is ``{"error": {...}}`` (some proxies and gateways do this) is
    classified like the same error with no status; anything else unusable is a retryable,
    possibly billed :func:`malformed_response`.
    """
    if body.get("error") and not (body.get("object") == "response" and "output" in body):
        code, err_type, msg = error_fields(body)
        raise classify_http(status=None, code=code, err_type=err_type or "server_error",
                            message=msg or "error body with HTTP 200", tier=tier, provider=provider)
    if "choices" in body:
        ch = body["choices"]
        if not isinstance(ch, list) or not ch or not isinstance(ch[0], Mapping) \
                or not isinstance(ch[0].get("message"), Mapping):
            raise malformed_response("no choices[0].message", tier=tier, provider=provider)
        check_usage(body.get("usage"), _CHAT_USAGE, tier=tier, provider=provider)
    elif isinstance(body.get("output"), list):
        if not all(isinstance(o, Mapping) for o in body["output"]):
            raise malformed_response("output items are not objects", tier=tier, provider=provider)
        if body.get("status") not in (None, "completed", "incomplete"):
            raise malformed_response(f"status {str(body.get('status'))[:40]!r}", tier=tier, provider=provider)
        check_usage(body.get("usage"), _RESP_USAGE, tier=tier, provider=provider)
    else:
        raise malformed_response("neither choices nor output", tier=tier, provider=provider)




def tag_for_resume(body: dict[str, Any], job: str, custom_id: str | None) -> None:
    """Ask OpenAI to keep this chat completion, findable by (job, item): ``store: true`` + ``metadata``.

    Why: after a crash, a request that was in flight may have been answered and billed; with
    the answer stored, the resume reads it back (:meth:`OpenAIAdapter.find_stored`) instead of
    paying for it again. What it means for data: OpenAI keeps stored completions (30 days by
    default, visible in the dashboard's logs) -- see the README ("Resume without paying twice").
    A body that says ``store: false`` itself, an item id or job name too long for metadata, or
    a body whose metadata is already full is left as it is (resent once on a crash, as before).
    """
    if custom_id is None or body.get("store") is False or len(custom_id) > MAX_META_VALUE or len(job) > MAX_META_VALUE:
        return
    md = body.get("metadata")
    if md is not None and (not isinstance(md, dict) or len({**md, META_JOB: 1, META_ITEM: 1}) > 16):
        return
    body["store"] = True
    body["metadata"] = {**(md or {}), META_JOB: job, META_ITEM: custom_id}


def tag_for_background(body: dict[str, Any], job: str, custom_id: str | None) -> bool:
    """A job's Responses request in background mode: ``background: true`` + ``store`` + ``metadata``.

    Why: the provider answers ``POST /responses`` at once with the response id, which the runner
    records (the send record's ``remote``) before the answer; after a crash the resume retrieves
    that response (``GET /responses/{id}``) instead of paying for the item again. Background
    mode needs ``store: true`` (what that means for data: README "Resume without paying twice").
    A body that says ``store: false`` or ``background: false``, streams, or cannot take the
    metadata (see :func:`tag_for_resume`) is left as it is. Returns whether it was tagged.
    """
    if body.get("background") is False or body.get("stream") or body.get("store") is False:
        return False
    tag_for_resume(body, job, custom_id)
    if body.get("store") is not True:
        return False
    body["background"] = True
    return True


class OpenAIAdapter(BaseAdapter):
    provider = "openai"

    @classmethod
    def make_transport(cls, *, base_url: str | None, api_key: str | None, client: Any,
                       timeouts: Mapping[str, float], max_connections: int) -> Transport:
        lean = None
        key = api_key or os.environ.get("OPENAI_API_KEY") if client is None else None
        if key:  # without a key the SDK's own "api_key must be set" error stays the behaviour
            lean = lambda url, n, verify: LeanClient(url, key, transport=aguarded(_limits(n), verify))  # noqa: E731
        tr = stainless_transport(client, base_url, api_key, max_connections,
                                 None if client is None else _sdk().AsyncOpenAI, make_client, lean=lean)
        if key:
            tr.lookup = StoredLookup(base_url, key, transport=lambda: guarded(_limits(8)))  # type: ignore[attr-defined]
        return tr

    # -- wire ---------------------------------------------------------------------------
    def build_body(self, req: CallRequest, tier: str) -> tuple[str, dict[str, Any]]:
        endpoint = req.endpoint if req.endpoint in PATHS else "chat"
        if req.native is not None:
            body = dict(req.native)
            body.setdefault("model", self.entry.model_id)
        elif endpoint == "responses":
            params = dict(req.params)
            if "max_tokens" in params:
                params.setdefault("max_output_tokens", params.pop("max_tokens"))
            body = {"model": self.entry.model_id, "input": req.messages or [], **params}
        else:
            params = dict(req.params)
            if "max_tokens" in params:  # reasoning models reject max_tokens
                params.setdefault("max_completion_tokens", params.pop("max_tokens"))
            body = {"model": self.entry.model_id, "messages": req.messages or [], **params}
        body.pop("stream", None)
        body.pop("stream_options", None)
        body["service_tier"] = WIRE_TIER[tier]
        if req.resume_tag is not None and endpoint == "chat":
            tag_for_resume(body, req.resume_tag, req.custom_id)
        return PATHS[endpoint], body

    def find_stored(self, tag: str, custom_ids: list[str],
                    remote: Mapping[str, list[str]] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Answers the provider kept for these items of job ``tag`` (``store: true`` chats), oldest first.

        Called on resume for the items whose sends a crash cut off (see :func:`tag_for_resume`):
        each one found is an answer that was billed and need not be bought again. ``remote``:
        item -> the Responses background ids its cut-off sends recorded (:func:`tag_for_background`),
        retrieved by id. Only on the job path's own client (:mod:`.wire`); a user's client, or no
        lookup route, finds nothing.
        """
        look = getattr(self.transport, "lookup", None)
        if look is None or not custom_ids:
            return {}
        if remote:
            return look.find(tag, custom_ids, self.entry.model_id, remote=remote)
        return look.find(tag, custom_ids, self.entry.model_id)

    def outcome(self, body: dict[str, Any], headers: Mapping[str, str], tier: str, raw: Any = None) -> AttemptOutcome:
        err = error_from_event(body, tier)
        if err is not None:
            raise err
        check_body(body, tier)
        return AttemptOutcome(body=body, text=text_from_body(body), served_tier=served_tier(body.get("service_tier")),
                              usage=usage_from_body(body.get("usage")), headers=dict(headers), raw=raw)

    def _opts(self, timeout: float | None, req: CallRequest | None = None) -> dict[str, Any]:
        o: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        h = item_headers(req) if req is not None else {}
        if h:
            o["headers"] = h
        return o

    def _send(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        path, body = self.build_body(req, tier)
        resp = self.transport.sync().post(path, body=body, cast_to=httpx2.Response, options=self._opts(timeout, req))
        return self.outcome(_json(resp), resp.headers, tier)

    async def _asend(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        path, body = self.build_body(req, tier)
        c = self.transport.aio()
        if isinstance(c, LeanClient):
            bg = req.resume_tag is not None and path == PATHS["responses"] \
                and tag_for_background(body, req.resume_tag, req.custom_id)
            resp = await c.post(path, body, tier=tier, timeout=timeout, headers=item_headers(req) or None)
            data = _json(resp)
            if bg and data.get("status") in ("queued", "in_progress") and isinstance(data.get("id"), str):
                note_remote_id(data["id"])   # durable before the answer: a resume retrieves, not resends
                data = await c.await_response(data["id"], tier=tier, timeout=timeout)
                if not isinstance(data, dict):
                    raise json.JSONDecodeError("not an object", str(data)[:100], 0)
            return self.outcome(data, resp.headers, tier)
        resp = await c.post(path, body=body, cast_to=httpx2.Response, options=self._opts(timeout, req))
        return self.outcome(_json(resp), resp.headers, tier)

    def classify(self, exc: BaseException, tier: str) -> ProviderError | None:
        if isinstance(exc, json.JSONDecodeError):
            return Transient("response was not JSON", tier=tier, provider=self.provider, possibly_billed=True)
        return classify_openai(exc, tier)


def _json(resp: httpx2.Response) -> dict[str, Any]:
    data = loads(resp.content)
    if not isinstance(data, dict):
        raise json.JSONDecodeError("not an object", resp.text[:100], 0)
    return data


def stainless_transport(client: Any, base_url: str | None, api_key: str | None, max_connections: int,
                        async_cls: type | None, factory: Callable[..., Any],
                        lean: Callable[[str | None, int, Any], Any] | None = None) -> Transport:
    """The Transport of a Stainless SDK (openai, anthropic): the user's client (retries off), or
    ``factory``-built ones. Async pools hold at most SHARD_CONNECTIONS connections (see Transport):
    one httpx pool of 256 spends more CPU scanning its idle connections than on the requests
    themselves (httpcore's ``_assign_requests_to_connections`` counts the idle connections once
    per connection, quadratic in the pool size: 16 per pool took 9 % less client CPU than 32 at
    concurrency 256, ``bench/peers.py``); all shards share one TLS context (building one costs ~70 ms). ``lean(base_url,
    connections, verify)``, when given, builds the async clients instead (:mod:`.wire`)."""
    sync_c = async_c = None
    if client is not None:
        c = quiet(client)
        if async_cls is not None and isinstance(client, async_cls):
            async_c = c
        else:
            sync_c = c
        base_url = base_url or str(client.base_url)
        api_key = api_key or client.api_key
    shards = 1 if async_c is not None else max(1, -(-max_connections // SHARD_CONNECTIONS))
    tls: list[Any] = []

    def make_sync() -> Any:
        return sync_c or factory(base_url, api_key, max_connections=max_connections)

    def make_async() -> Any:
        if async_c is not None:
            return async_c
        if not tls:
            tls.append(tls_context(base_url, httpx2.create_ssl_context))
        if lean is not None:
            return lean(base_url, -(-max_connections // shards), tls[0])
        return factory(base_url, api_key, sync=False, max_connections=-(-max_connections // shards), verify=tls[0])

    tr = Transport(make_sync, make_async, shards=shards)
    tr.user_client = client  # type: ignore[attr-defined]
    return tr
