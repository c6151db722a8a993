"""Free token-counting routes: Gemini ``models/{m}:countTokens``, Anthropic
``POST /v1/messages/count_tokens`` (Bedrock's ``CountTokens`` lives in :mod:`.bedrock_invoke`).

A count must equal the input tokens the same request is billed for, so each route
parses the body with its dialect's own request builder (the text the generation
route would tokenize) and adds the same documented overhead
(:func:`.tokenizer.prompt_overhead`). Counting is free and unmetered, so nothing
reaches the engine's admission or the ledger.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .anthropic_api import AnthropicAPI
from .embeddings import embedding_spec
from .engine import Engine
from .errors_shape import anthropic_error, google_error
from .gemini_api import GeminiAPI
from .http import BadJSON, json_response, read_json
from .tokenizer import count_tokens, prompt_overhead
from .wire import WireError

__all__ = ["count_routes"]


def count_routes(engine: Engine) -> list[BaseRoute]:
    gemini = GeminiAPI(engine)
    anthropic = AnthropicAPI(engine)

    async def gemini_count(request: Request) -> Response:
        model = request.path_params["model"]
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return google_error(400, str(exc))
        gcr = body.get("generateContentRequest") or body.get("generate_content_request")
        req_body: dict[str, Any] = dict(gcr) if isinstance(gcr, dict) else {"contents": body.get("contents")}
        if engine.catalog.find_wire("gemini", model) is None:
            return google_error(404, f"models/{model} is not found for API version v1beta, or is not supported "
                                "for countTokens. Call ListModels to see the list of available models and their "
                                "supported methods.")
        if not req_body.get("contents"):
            return google_error(400, "* CountTokensRequest.contents: contents is not specified")
        entry = engine.catalog.find_wire("gemini", model)
        if embedding_spec(entry) is not None:
            text = "\n".join(p["text"] for c in req_body["contents"] if isinstance(c, dict)
                             for p in (c.get("parts") or []) if isinstance(p, dict) and isinstance(p.get("text"), str))
            n = count_tokens(text)
        else:
            try:
                call = gemini._build(req_body, request, model, False)
            except WireError as exc:
                return exc.response
            n = count_tokens(call.req.prompt_prefix) + count_tokens(call.req.prompt_text) + prompt_overhead("gemini", req_body)
        return json_response({"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]})

    async def anthropic_count(request: Request) -> Response:
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return anthropic_error(400, "invalid_request_error", str(exc))
        probe = {**body, "max_tokens": 1}       # count_tokens takes no max_tokens; the builder needs one
        probe.pop("stream", None)
        try:
            call = anthropic._build(probe, request)
        except WireError as exc:
            return exc.response
        n = count_tokens(call.req.prompt_prefix) + count_tokens(call.req.prompt_text) + prompt_overhead("anthropic", body)
        return json_response({"input_tokens": n})

    out: list[BaseRoute] = [Route("/v1/messages/count_tokens", anthropic_count, methods=["POST"])]
    for ver in ("v1beta", "v1"):
        out.append(Route(f"/{ver}/models/{{model}}:countTokens", gemini_count, methods=["POST"]))
    return out
