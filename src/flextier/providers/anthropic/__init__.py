"""Anthropic Messages: no flex tier.

Anthropic sells no flex tier (its discount lane is Message Batches), so ``tier="flex"``
raises :class:`TierNotSupported` before anything is sent; the policy may then go to
standard with a warning (``Policy(allow_standard_for_no_flex=True)``). Standard sends no
``service_tier`` (the account default); ``priority`` sends ``service_tier: "auto"``.
The served tier is ``usage.service_tier`` (``standard`` | ``priority`` | ``batch``).

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes, so input =
``input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` and cached =
``cache_read_input_tokens`` (cache *writes* are priced at the input rate; the catalog has
no write premium). 529 ``overloaded_error`` -> :class:`Overloaded`.

Calls use ``client.post("/v1/messages", cast_to=httpx2.Response)`` with ``max_retries=0``,
which also skips the SDK's "streaming is required for long requests" guard (we always pass
an explicit timeout).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import anthropic as _anthropic
import httpx2

from ..._types import AttemptOutcome, CallRequest
from ...cost import Usage
from ...errors import ProviderError, Transient
from ..base import (BaseAdapter, Transport, check_usage, classify_http, error_fields, item_headers,
                   malformed_response, served_tier, split_system, text_of_content, tls_context)
from ..openai import _classify_stainless, stainless_transport, _json, _limits, aguarded, guarded

__all__ = ["AnthropicAdapter", "usage_from_body", "classify_anthropic", "DEFAULT_MAX_TOKENS", "make_client", "quiet"]

DEFAULT_MAX_TOKENS = 4096


def usage_from_body(u: Mapping[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    inp = int(u.get("input_tokens") or 0) + read + write
    return Usage(inp, read, int(u.get("output_tokens") or 0), 0)


def text_from_body(body: Mapping[str, Any]) -> str:
    return "".join(b.get("text", "") for b in body.get("content") or [] if b.get("type") == "text")


def make_client(base_url: str | None = None, api_key: str | None = None, *, sync: bool = True,
                max_connections: int | None = None, verify: Any = None, guard: bool = True,
                what: str = "anthropic", **kw: Any) -> Any:
    """The one place an Anthropic SDK client is built (adapter, batch backend, emulator helpers).

    As :func:`flextier.providers.openai.make_client` (the same Stainless SDK shape): SDK
    retries off, loopback checked while emulating, ``guard`` puts the transport under
    :mod:`flextier.guard` with a pool of ``max_connections`` and the TLS context ``verify`` (or
    :func:`~flextier.providers.base.tls_context`); ``kw`` goes to the SDK constructor.
    """
    from ..._loopback import check_endpoint

    check_endpoint(base_url, what)
    if guard:
        lim = _limits(max_connections or 10)
        if sync:
            kw["http_client"] = _anthropic.DefaultHttpxClient(transport=guarded(lim))
        else:
            if verify is None:
                verify = tls_context(base_url, httpx2.create_ssl_context)
            kw["http_client"] = _anthropic.DefaultAsyncHttpxClient(transport=aguarded(lim, verify))
    cls = _anthropic.Anthropic if sync else _anthropic.AsyncAnthropic
    return cls(api_key=api_key, base_url=base_url, max_retries=0, **kw)


def quiet(client: Any) -> Any:
    """A user's Anthropic client with SDK retries off (the only way flextier uses a given client)."""
    return client.with_options(max_retries=0)


def classify_anthropic(exc: BaseException, tier: str) -> ProviderError | None:
    return _classify_stainless(exc, tier, "anthropic", _anthropic)


class AnthropicAdapter(BaseAdapter):
    provider = "anthropic"

    @classmethod
    def make_transport(cls, *, base_url: str | None, api_key: str | None, client: Any,
                       timeouts: Mapping[str, float], max_connections: int) -> Transport:
        return stainless_transport(client, base_url, api_key, max_connections, _anthropic.AsyncAnthropic,
                                   make_client)  # pools and TLS as for OpenAI

    def build_body(self, req: CallRequest, tier: str) -> dict[str, Any]:
        if req.native is not None:
            body = dict(req.native)
            body.setdefault("model", self.entry.model_id)
        else:
            system, rest = split_system(req.messages or [])
            params = dict(req.params)
            if "stop" in params:
                stop = params.pop("stop")
                params.setdefault("stop_sequences", [stop] if isinstance(stop, str) else stop)
            if "max_completion_tokens" in params:
                params.setdefault("max_tokens", params.pop("max_completion_tokens"))
            params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
            msgs = [{"role": m.get("role", "user"), "content": m.get("content")
                     if not isinstance(m.get("content"), list) else text_of_content(m.get("content"))}
                    for m in rest]
            body = {"model": self.entry.model_id, "messages": msgs, **params}
            if system:
                body.setdefault("system", system)
        body.pop("stream", None)
        if tier == "priority":
            body["service_tier"] = "auto"
        elif tier == "standard":
            body.pop("service_tier", None) if body.get("service_tier") == "auto" else None
        return body

    def outcome(self, body: dict[str, Any], headers: Mapping[str, str], raw: Any = None,
                tier: str = "standard") -> AttemptOutcome:
        if body.get("type") == "error" or body.get("error"):
            code, err_type, msg = error_fields(body)
            raise classify_http(status=None, code=code, err_type=err_type or "api_error",
                                message=msg or "error body with HTTP 200", tier=tier, provider=self.provider)
        if not isinstance(body.get("content"), list) or not all(isinstance(b, dict) for b in body["content"]):
            raise malformed_response("no content blocks", tier=tier, provider=self.provider)
        check_usage(body.get("usage"), ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                        "cache_creation_input_tokens"), tier=tier, provider=self.provider)
        usage = body.get("usage") or {}
        return AttemptOutcome(body=body, text=text_from_body(body), served_tier=served_tier(usage.get("service_tier")),
                              usage=usage_from_body(usage), headers=dict(headers), raw=raw)

    @staticmethod
    def _opts(timeout: float | None, req: CallRequest | None = None) -> dict[str, Any]:
        o: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        h = item_headers(req) if req is not None else {}
        if h:
            o["headers"] = h
        return o

    def _send(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        resp = self.transport.sync().post("/v1/messages", body=self.build_body(req, tier), cast_to=httpx2.Response,
                                          options=self._opts(timeout, req))
        return self.outcome(_json(resp), resp.headers, tier=tier)

    async def _asend(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        resp = await self.transport.aio().post("/v1/messages", body=self.build_body(req, tier),
                                               cast_to=httpx2.Response, options=self._opts(timeout, req))
        return self.outcome(_json(resp), resp.headers, tier=tier)

    def classify(self, exc: BaseException, tier: str) -> ProviderError | None:
        if isinstance(exc, json.JSONDecodeError):
            return Transient("response was not JSON", tier=tier, provider=self.provider, possibly_billed=True)
        return classify_anthropic(exc, tier)
