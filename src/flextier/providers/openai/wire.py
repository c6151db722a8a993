"""OpenAI's wire as the transport engine sees it: Chat Completions and Responses.

Recognised: ``POST .../chat/completions`` and ``POST .../responses`` (JSON). Everything else
(files, batches, models, embeddings, ``/responses/{id}``) passes through untouched.

Tier: ``service_tier`` in the body. Missing or null (the SDK's ``NOT_GIVEN``/``omit`` are
never sent) means "not set" and ``flex`` means flex with fallback: the policy writes the
attempt's tier. ``default``, ``priority``, ``fast`` (an alias of ``priority``), ``auto`` or
``scale`` are the caller's choice and are sent unchanged.

Streams: a Chat stream reports usage only when asked (``stream_options.include_usage``), so
flextier asks, and when the caller did not it drops the extra usage-only chunk and the
``"usage": null`` the option adds to every other chunk: the caller sees what it would have
seen. Responses streams always carry usage in ``response.completed``.
"""
from __future__ import annotations

from typing import Any, Mapping

from ...errors import ProviderError
from ...tiers import normalize_tier
from ..base import classify_http, error_fields, retry_after_of, route_error, served_tier
from ..wire import as_sdk_error, DROP, KEEP, Call, Dialect, Reply, SSEObserver, dumps, json_or_text, reply_object, request_object
from . import WIRE_TIER, check_body, error_from_event, text_from_body, usage_from_body

__all__ = ["OpenAIDialect", "explicit_tier"]


def explicit_tier(value: Any) -> str | None:
    """The caller's own tier choice, canonical; None for "not set" and for flex."""
    if value is None:
        return None
    t = normalize_tier(value)
    if t == "flex":
        return None
    return t if t in ("standard", "priority") else "standard"


class OpenAIDialect(Dialect):
    provider = "openai"

    def recognise(self, method: str, path: str, body: bytes) -> Call | None:
        if method != "POST":
            return None
        if path.endswith("/chat/completions"):
            kind = "chat"
        elif path.endswith("/responses"):
            kind = "responses"
        else:
            return None
        b = request_object(body)
        if b is None:
            return None
        stream = bool(b.get("stream"))
        call = Call("openai", kind, b.get("model"), stream, explicit_tier(b.get("service_tier")), b)
        if stream and kind == "chat":
            so = b.get("stream_options")
            call.hide_usage = not (isinstance(so, dict) and so.get("include_usage") is True)
        return call

    def attempt_body(self, call: Call, tier: str, raw: bytes) -> tuple[bytes, dict[str, str | None]]:
        if call.explicit is not None and not call.hide_usage:
            return raw, {}
        if not call.hide_usage:  # the common case: edit the bytes, not a re-serialised body
            have = call.body.get("service_tier")
            if have == WIRE_TIER[tier]:
                return raw, {}
            if "service_tier" not in call.body and raw.rstrip().endswith(b"}"):
                head = raw.rstrip()[:-1].rstrip()
                sep = b"," if not head.endswith(b"{") else b""
                return head + sep + b'"service_tier":"' + WIRE_TIER[tier].encode() + b'"}', {}
        b = dict(call.body)
        if call.explicit is None:
            b["service_tier"] = WIRE_TIER[tier]
        if call.hide_usage:
            so = b.get("stream_options")
            b["stream_options"] = {**(so if isinstance(so, dict) else {}), "include_usage": True}
        return dumps(b), {}

    def reply(self, call: Call, headers: Mapping[str, str], content: bytes, tier: str) -> Reply:
        body = reply_object(content)
        err = error_from_event(body, tier)
        if err is not None:
            raise err
        check_body(body, tier)
        return Reply(served_tier(body.get("service_tier")), usage_from_body(body.get("usage")),
                     text_from_body(body), body.get("id"))

    def classify(self, status: int, headers: Mapping[str, str], content: bytes, url: Any,
                 tier: str) -> ProviderError:
        return classify_status(status, headers, content, url, tier, "openai")

    def observer(self, call: Call, tier: str) -> SSEObserver:
        return ChatObserver(call, tier) if call.kind == "chat" else ResponsesObserver(call, tier)

    def surface(self, err: ProviderError) -> BaseException:
        import openai

        return as_sdk_error(err, openai.OpenAIError)


def classify_status(status: int, headers: Mapping[str, str], content: bytes, url: Any, tier: str,
                    provider: str) -> ProviderError:
    """An OpenAI-style (Stainless: OpenAI, Anthropic) HTTP error response -> taxonomy."""
    body = json_or_text(content)
    code, err_type, msg = error_fields(body)
    route = route_error(status, body, msg, url, tier=tier, provider=provider)
    if route is not None:
        return route
    return classify_http(status=status, code=code, err_type=err_type, message=msg or f"HTTP {status}",
                         tier=tier, provider=provider, retry_after=retry_after_of(headers))


class ChatObserver(SSEObserver):
    def event(self, name: str | None, d: Any) -> Any:
        if not isinstance(d, dict):
            return KEEP
        if d.get("error"):
            code, err_type, msg = error_fields(d)
            self.error = classify_http(status=None, code=code, err_type=err_type or "server_error", message=msg,
                                       tier=self.tier, provider="openai")
            return KEEP
        if self.rid is None:
            self.rid = d.get("id")
        st = d.get("service_tier")
        if st is not None:
            self.served = served_tier(st)
        choices = d.get("choices") or []
        for c in choices:
            if c.get("finish_reason"):
                self.done = True
            delta = c.get("delta") or {}
            if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or delta.get("function_call"):
                self.first = True
        u = d.get("usage")
        if u:
            self.usage = usage_from_body(u)
            self.usage_final = True   # Chat sends usage once, in the last chunk
            if self.call.hide_usage and not choices:
                return DROP
        if self.call.hide_usage and "usage" in d:
            d = dict(d)
            del d["usage"]            # the option adds "usage": null to every chunk
            return d
        return KEEP


class ResponsesObserver(SSEObserver):
    def event(self, name: str | None, d: Any) -> Any:
        if not isinstance(d, dict):
            return KEEP
        typ = str(d.get("type") or name or "")
        err = error_from_event(d, self.tier)
        if err is not None:
            self.error = err
            self.done = True
            return KEEP
        resp = d.get("response")
        if isinstance(resp, dict):
            if self.rid is None:
                self.rid = resp.get("id")
            st = resp.get("service_tier")
            if st is not None and (typ != "response.created" or self.served is None):
                self.served = served_tier(st)
            if typ in ("response.completed", "response.incomplete"):
                self.done = True
                if resp.get("usage"):
                    self.usage = usage_from_body(resp["usage"])
                    self.usage_final = True
        elif typ.endswith(".delta") or typ in ("response.output_text.done", "response.function_call_arguments.done"):
            self.first = True
        return KEEP


def wrap_stainless(client: Any, dialect: Dialect, policy: Any, catalog: Any, async_cls: type) -> Any:
    """A copy of a Stainless SDK client (OpenAI, Anthropic) whose HTTP client runs flextier's
    transport over the original's transport (same pool, same TLS), SDK retries off.

    The user's client is unchanged; closing the copy does not close the shared pool.
    """
    import httpx
    import httpx2

    from ...intercept import async_transport, transport

    http = client._client  # noqa: SLF001 - the SDK's httpx client: its transport is the seam
    hx = httpx2 if isinstance(http, (httpx2.Client, httpx2.AsyncClient)) else httpx
    inner = http._transport  # noqa: SLF001
    if isinstance(client, async_cls):
        tr = async_transport(inner, hx, [dialect], policy, catalog)
        tr.owns_inner = False
        new_http = hx.AsyncClient(transport=tr, timeout=http.timeout, trust_env=False,
                                  follow_redirects=http.follow_redirects)
    else:
        tr = transport(inner, hx, [dialect], policy, catalog)
        tr.owns_inner = False
        new_http = hx.Client(transport=tr, timeout=http.timeout, trust_env=False,
                             follow_redirects=http.follow_redirects)
    return client.with_options(http_client=new_http, max_retries=0)


def wrap(client: Any, policy: Any = None, catalog: Any = None) -> Any:
    """:func:`flextier.wrap` for ``openai.OpenAI``/``AsyncOpenAI``."""
    import openai

    if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(f"cannot wrap {type(client).__name__}; wrap the OpenAI/AsyncOpenAI client itself")
    return wrap_stainless(client, OpenAIDialect(), policy, catalog, openai.AsyncOpenAI)


# -- complete(stream=True) --------------------------------------------------------------------------

def _stream_args(adapter: Any, req: Any) -> tuple[str, dict[str, Any]]:
    """The request the adapter would send (one home for message translation), minus the tier:
    the engine under the wrapped client writes each attempt's tier (docs/providers.md)."""
    path, body = adapter.build_body(req, "flex")
    body.pop("service_tier", None)
    return path, body


def _chat_text(chunk: Any) -> str | None:
    return "".join(c.delta.content for c in (chunk.choices or []) if c.delta is not None and c.delta.content) or None


def _responses_text(event: Any) -> str | None:
    return event.delta if getattr(event, "type", "") == "response.output_text.delta" else None


def stream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    """``complete(stream=True)`` on OpenAI: (handle for ``info()``, the SDK's stream, text of one item).

    ``client`` is a wrapped ``OpenAI`` (:func:`flextier.wrap`): the SDK's own stream call, so
    flex, fallback before the first token, the usage chunk and pricing are the engine's.
    """
    path, body = _stream_args(adapter, req)
    model = body.pop("model")
    if path.endswith("/responses"):
        s = client.responses.create(model=model, input=body.pop("input", ""), stream=True, extra_body=body or None)
        return s, s, _responses_text
    s = client.chat.completions.create(model=model, messages=body.pop("messages", []), stream=True,
                                       extra_body=body or None)
    return s, s, _chat_text


async def astream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    """Async twin of :func:`stream_text` (``client`` is a wrapped ``AsyncOpenAI``)."""
    path, body = _stream_args(adapter, req)
    model = body.pop("model")
    if path.endswith("/responses"):
        s = await client.responses.create(model=model, input=body.pop("input", ""), stream=True,
                                          extra_body=body or None)
        return s, s, _responses_text
    s = await client.chat.completions.create(model=model, messages=body.pop("messages", []), stream=True,
                                             extra_body=body or None)
    return s, s, _chat_text
