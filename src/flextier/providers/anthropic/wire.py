"""Anthropic Messages as the transport engine sees it.

Recognised: ``POST .../v1/messages`` (not ``/count_tokens``, not batches). Anthropic has no
flex tier, so with the default policy a Messages call raises
:class:`~flextier.errors.TierNotSupported` before anything is sent (as ``complete()`` does);
``Policy(tier="standard")`` or ``allow_standard_for_no_flex`` send it on standard, priced by
the served tier in ``usage.service_tier``. A ``service_tier`` the caller set (``auto``:
priority capacity when available, ``standard_only``) is the caller's choice, sent unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping

from ...errors import ProviderError
from ..base import classify_http, error_fields, served_tier
from ..wire import as_sdk_error, KEEP, Call, Dialect, Reply, SSEObserver, dumps, reply_object, request_object
from . import text_from_body, usage_from_body

__all__ = ["AnthropicDialect", "wrap"]


class AnthropicDialect(Dialect):
    provider = "anthropic"

    def recognise(self, method: str, path: str, body: bytes) -> Call | None:
        if method != "POST" or not path.endswith("/v1/messages"):
            return None
        b = request_object(body)
        if b is None:
            return None
        st = b.get("service_tier")
        explicit = None if st is None else ("priority" if st == "auto" else "standard")
        return Call("anthropic", "messages", b.get("model"), bool(b.get("stream")), explicit, b)

    def attempt_body(self, call: Call, tier: str, raw: bytes) -> tuple[bytes, dict[str, str | None]]:
        if call.explicit is not None or tier == "standard":
            return raw, {}
        return dumps({**call.body, "service_tier": "auto"}), {}   # priority

    def reply(self, call: Call, headers: Mapping[str, str], content: bytes, tier: str) -> Reply:
        from . import AnthropicAdapter

        body = reply_object(content)
        out = AnthropicAdapter(None, None).outcome(body, headers, tier=tier)  # type: ignore[arg-type]
        return Reply(out.served_tier, out.usage, text_from_body(body), body.get("id"))

    def classify(self, status: int, headers: Mapping[str, str], content: bytes, url: Any,
                 tier: str) -> ProviderError:
        from ..openai.wire import classify_status

        return classify_status(status, headers, content, url, tier, "anthropic")

    def observer(self, call: Call, tier: str) -> SSEObserver:
        return MessagesObserver(call, tier)

    def surface(self, err: ProviderError) -> BaseException:
        import anthropic

        return as_sdk_error(err, anthropic.AnthropicError)


class MessagesObserver(SSEObserver):
    _start: dict | None = None

    def event(self, name: str | None, d: Any) -> Any:
        if not isinstance(d, dict):
            return KEEP
        typ = d.get("type") or name
        if typ == "message_start":
            msg = d.get("message") or {}
            self.rid = msg.get("id")
            u = dict(msg.get("usage") or {})
            self._start = u
            self.served = served_tier(u.get("service_tier"))
            self.usage = usage_from_body(u)
        elif typ == "message_delta" and d.get("usage"):
            u = dict(self._start or {})
            u.update({k: v for k, v in d["usage"].items() if v is not None})
            self.usage = usage_from_body(u)
            self.usage_final = True   # message_start counted one output token; this is the bill
        elif typ == "message_stop":
            self.done = True
        elif typ == "content_block_delta":
            self.first = True
        elif typ == "error":
            code, err_type, msg = error_fields(d)
            self.error = classify_http(status=None, code=code, err_type=err_type or "api_error", message=msg,
                                       tier=self.tier, provider="anthropic")
        return KEEP


def wrap(client: Any, policy: Any = None, catalog: Any = None) -> Any:
    """:func:`flextier.wrap` for ``anthropic.Anthropic``/``AsyncAnthropic``."""
    import anthropic

    from ..openai.wire import wrap_stainless

    if not isinstance(client, (anthropic.Anthropic, anthropic.AsyncAnthropic)):
        raise TypeError(f"cannot wrap {type(client).__name__}; wrap the Anthropic/AsyncAnthropic client itself")
    return wrap_stainless(client, AnthropicDialect(), policy, catalog, anthropic.AsyncAnthropic)


# -- complete(stream=True) --------------------------------------------------------------------------

def _text(event: Any) -> str | None:
    if getattr(event, "type", "") != "content_block_delta":
        return None
    d = event.delta
    return getattr(d, "text", None) if getattr(d, "type", "") == "text_delta" else None


def _args(adapter: Any, req: Any) -> dict[str, Any]:
    body = adapter.build_body(req, "standard")
    body.pop("service_tier", None)   # the engine writes each attempt's tier
    return body


def stream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    """``complete(stream=True)`` on Claude through a wrapped ``Anthropic`` client (see
    :func:`flextier.providers.openai.wire.stream_text`)."""
    b = _args(adapter, req)
    s = client.messages.create(model=b.pop("model"), messages=b.pop("messages"), max_tokens=b.pop("max_tokens"),
                               stream=True, extra_body=b or None)
    return s, s, _text


async def astream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    b = _args(adapter, req)
    s = await client.messages.create(model=b.pop("model"), messages=b.pop("messages"),
                                     max_tokens=b.pop("max_tokens"), stream=True, extra_body=b or None)
    return s, s, _text
