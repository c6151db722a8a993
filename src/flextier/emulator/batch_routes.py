"""Mount the emulator's batch tier: the four dialects' routes over one shared core.

Why a module of its own: the dialects (``batch_openai``, ``batch_gemini``, ``batch_bedrock``,
``batch_anthropic``) build on :mod:`.batch_core`, so the function that gathers all four
sits above them, not inside the core; that keeps the core a lower layer with no import
of its dialects (no import cycles).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .batch_anthropic import AnthropicBatchAPI
from .batch_bedrock import BedrockBatchAPI
from .batch_core import batch_engine, control_routes
from .batch_gemini import GeminiBatchAPI, is_google
from .batch_openai import OpenAIBatchAPI
from .engine import Engine

__all__ = ["batch_routes"]


def batch_routes(engine: Engine, **knobs: Any) -> list[BaseRoute]:
    """Every batch route of the four dialects plus the control route, bound to ``engine``.

    Mount these *before* the online routes: Gemini's online dispatcher catches every
    ``/v1beta/models/...`` POST.
    """
    be = batch_engine(engine)
    if knobs:
        be.knobs = be.knobs.replace(**knobs)
    gemini, oai = GeminiBatchAPI(be), OpenAIBatchAPI(be)

    async def shared_get(request: Request) -> Response:
        return await (gemini.get if is_google(request) else oai.retrieve)(request)

    async def shared_list(request: Request) -> Response:
        return await (gemini.list if is_google(request) else oai.list)(request)

    # Both SDKs use GET /v1/batches[/{id}]: one route each, dispatched by the client's headers.
    routes: list[BaseRoute] = [Route("/v1/batches/{batch_id}", shared_get, methods=["GET"]),
                               Route("/v1/batches", shared_list, methods=["GET"])]
    # Gemini before OpenAI: its /v1/files/{id}:download must win over OpenAI's /v1/files/{file_id}.
    for api in (gemini, oai, AnthropicBatchAPI(be), BedrockBatchAPI(be)):
        routes.extend(api.routes())
    return routes + control_routes(be)

