"""DeepSeek: the OpenAI wire (Chat Completions) without tiers, priced by the clock.

Wire: ``POST {base}/chat/completions`` with the OpenAI body; no ``service_tier`` is sent (DeepSeek
has none) and ``max_tokens`` keeps its name. The response names no tier either: the price tier of
a request is decided by the provider's own timestamp of it, the response's ``created``, against the
model's published peak hours (catalog ``peak_hours``; :func:`flextier.cost.clock_tier`): inside a
peak window ``standard``, outside it ``offpeak`` (half price since 2026-08-16). A response without
``created`` is priced unknown, never guessed. Errors are OpenAI-shaped (the openai SDK's classes).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..._types import AttemptOutcome, CallRequest
from ...cost import clock_tier
from ...errors import TierNotSupported
from ..base import UNKNOWN_TIER, Transport
from ..openai import OpenAIAdapter, check_body, error_from_event, make_client, stainless_transport, text_from_body, \
    usage_from_body

__all__ = ["DeepSeekAdapter", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.deepseek.com"


def _client(base_url: str | None, api_key: str | None, **kw: Any) -> Any:
    return make_client(base_url, api_key, what="deepseek", **kw)


class DeepSeekAdapter(OpenAIAdapter):
    provider = "deepseek"

    @classmethod
    def make_transport(cls, *, base_url: str | None, api_key: str | None, client: Any,
                       timeouts: Mapping[str, float], max_connections: int) -> Transport:
        import openai as _openai

        if client is None and base_url is None:
            base_url = DEFAULT_BASE_URL
        return stainless_transport(client, base_url, api_key, max_connections, _openai.AsyncOpenAI, _client)

    def build_body(self, req: CallRequest, tier: str) -> tuple[str, dict[str, Any]]:
        if tier not in ("standard", "offpeak"):
            raise TierNotSupported(f"DeepSeek has no {tier} tier", tier=tier, provider=self.provider)
        path, body = super().build_body(req, "standard")
        body.pop("service_tier", None)
        if "max_completion_tokens" in body and req.native is None:
            body.setdefault("max_tokens", body.pop("max_completion_tokens"))
        return "/chat/completions", body

    def outcome(self, body: dict[str, Any], headers: Mapping[str, str], tier: str, raw: Any = None) -> AttemptOutcome:
        err = error_from_event(body, tier)
        if err is not None:
            raise err
        check_body(body, tier, self.provider)
        created = body.get("created")
        served = (clock_tier(self.entry, float(created)) if isinstance(created, (int, float))
                  and not isinstance(created, bool) else UNKNOWN_TIER)
        return AttemptOutcome(body=body, text=text_from_body(body), served_tier=served,
                              usage=usage_from_body(body.get("usage")), headers=dict(headers), raw=raw)
