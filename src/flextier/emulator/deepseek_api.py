"""DeepSeek's API: OpenAI-compatible Chat Completions, billed by the clock.

Why its own dialect and not the OpenAI one: DeepSeek has no service tiers (a ``service_tier``
field is ignored, and the response names none) and bills a request at its off-peak prices when it
arrives outside the published peak windows (catalog ``peak_hours``; wave2.md notes the change of
2026-08-16). The emulator decides the price tier from the emulated clock at arrival, with the same
integer second it puts in the response's ``created``, so a client that prices by ``created``
(:mod:`flextier.providers.deepseek`) books exactly what the emulator's ledger bills.

Routes: ``/deepseek/chat/completions`` and ``/deepseek/v1/chat/completions`` (DeepSeek serves
both; the emulator's base URL for DeepSeek is ``<root>/deepseek``).
"""
from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Route

from ..cost import clock_tier
from .engine import GenRequest
from .openai_api import OpenAIAPI

__all__ = ["DeepSeekAPI", "PREFIX"]

PREFIX = "/deepseek"


class DeepSeekAPI(OpenAIAPI):
    provider = "deepseek"

    def routes(self) -> list[BaseRoute]:
        return [Route(f"{PREFIX}/chat/completions", self.chat, methods=["POST"]),
                Route(f"{PREFIX}/v1/chat/completions", self.chat, methods=["POST"])]

    def _gen_request(self, body: dict[str, Any], prompt: str, max_tokens: Any, effort: Any) -> GenRequest:
        body = {k: v for k, v in body.items() if k != "service_tier"}   # DeepSeek ignores it
        req = super()._gen_request(body, prompt, max_tokens, effort)
        req.created = int(self.engine.clock.now())
        req.tier = "standard"
        req.served_tier = clock_tier(req.entry, float(req.created))
        return req

    @staticmethod
    def _wire_tier(req: GenRequest) -> Any:
        return None   # DeepSeek's responses name no tier
