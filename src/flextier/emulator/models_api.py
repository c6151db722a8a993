"""Model listings from the catalog: OpenAI and Anthropic ``GET /v1/models[/{id}]``,
Gemini ``GET /v1beta/models[/{m}]``.

OpenAI and Anthropic share the path ``/v1/models``; the Anthropic SDK always sends
``anthropic-version`` (and ``x-api-key``), the OpenAI SDK a bearer token, so the
headers pick the dialect. Nothing here is billed or rate limited (listing is free).
Only models the catalog lists exist; an unknown id is the provider's own 404.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..catalog import ModelEntry
from .embeddings import embedding_spec
from .engine import Engine
from .errors_shape import anthropic_error, google_error, openai_error
from .http import json_response

__all__ = ["model_routes"]

_OWNER = {"openai": "openai", "gemini": "google", "anthropic": "anthropic", "bedrock": "amazon"}


@lru_cache(maxsize=1)
def _raw() -> dict[str, dict[str, Any]]:
    """Catalog entries as written (for fields the parsed entry does not carry, e.g. token limits)."""
    text = resources.files("flextier.catalog").joinpath("models.json").read_text(encoding="utf-8")
    return {m["name"]: m for m in json.loads(text).get("models", []) if isinstance(m, dict) and "name" in m}


def _created(entry: ModelEntry) -> int:
    """A stable creation time: the catalog's source date (providers list a date per model)."""
    try:
        d = datetime.strptime(entry.source_date[:10], "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0
    return int(d.timestamp())


def _is_anthropic(request: Request) -> bool:
    h = request.headers
    return "anthropic-version" in h or ("x-api-key" in h and "authorization" not in h)


def _display(model_id: str) -> str:
    return " ".join(p.capitalize() if not p[:1].isdigit() else p for p in model_id.replace("-", " ").split())


def model_routes(engine: Engine) -> list[BaseRoute]:
    cat = engine.catalog

    def openai_obj(e: ModelEntry) -> dict[str, Any]:
        return {"id": e.model_id, "object": "model", "created": _created(e), "owned_by": _OWNER[e.provider]}

    def anthropic_obj(e: ModelEntry) -> dict[str, Any]:
        created = datetime.fromtimestamp(_created(e), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"type": "model", "id": e.model_id, "display_name": _display(e.model_id), "created_at": created}

    def gemini_obj(e: ModelEntry) -> dict[str, Any]:
        raw = _raw().get(e.name, {})
        emb = embedding_spec(e)
        methods = (["embedContent", "batchEmbedContents", "countTokens"] if emb else
                   ["generateContent", "streamGenerateContent", "countTokens", "batchGenerateContent"])
        obj: dict[str, Any] = {"name": f"models/{e.model_id}", "baseModelId": e.model_id, "version": "001",
                               "displayName": _display(e.model_id), "description": f"{_display(e.model_id)} "
                               "(flextier emulator)", "supportedGenerationMethods": methods}
        in_limit = (emb or {}).get("max_input_tokens") or raw.get("max_input_tokens")
        out_limit = raw.get("max_output_tokens")
        if in_limit:
            obj["inputTokenLimit"] = int(in_limit)
        if out_limit:
            obj["outputTokenLimit"] = int(out_limit)
        if not emb:
            obj["thinking"] = e.model_id.startswith(("gemini-2.5", "gemini-3"))
        return obj

    async def v1_models(request: Request) -> Response:
        if request.headers.get("x-goog-api-key") or "key" in request.query_params:
            return await gemini_models(request)         # Gemini's v1 surface: GET /v1/models
        if _is_anthropic(request):
            data = [anthropic_obj(e) for e in cat.models("anthropic")]
            return json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})
        return json_response({"object": "list", "data": [openai_obj(e) for e in cat.models("openai")]})

    async def v1_model(request: Request) -> Response:
        mid = request.path_params["model_id"]
        if _is_anthropic(request):
            e = cat.find_wire("anthropic", mid)
            if e is None:
                return anthropic_error(404, "not_found_error", f"model: {mid}")
            return json_response(anthropic_obj(e))
        if request.headers.get("x-goog-api-key") or "key" in request.query_params:
            return await gemini_model(request)          # Gemini's v1 surface: GET /v1/models/{m}
        e = cat.find_wire("openai", mid)
        if e is None:
            return openai_error(404, f"The model '{mid}' does not exist", code="model_not_found", param="model")
        return json_response(openai_obj(e))

    async def gemini_models(request: Request) -> Response:
        models = [gemini_obj(e) for e in cat.models("gemini")]
        try:
            size = int(request.query_params.get("pageSize", "50"))
        except ValueError:
            return google_error(400, "Invalid value at 'page_size' (TYPE_INT32)")
        size = max(1, min(size, 1000))
        try:
            start = int(request.query_params.get("pageToken") or 0)
        except ValueError:
            return google_error(400, "Invalid page token.")
        page = models[start:start + size]
        out: dict[str, Any] = {"models": page}
        if start + size < len(models):
            out["nextPageToken"] = str(start + size)
        return json_response(out)

    async def gemini_model(request: Request) -> Response:
        mid = request.path_params.get("model") or request.path_params.get("model_id", "")
        e = cat.find_wire("gemini", mid)
        if e is None:
            return google_error(404, f"models/{mid} is not found for API version v1beta, or is not supported. "
                                "Call ListModels to see the list of available models and their supported methods.")
        return json_response(gemini_obj(e))

    return [Route("/v1/models", v1_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", v1_model, methods=["GET"]),
            Route("/v1beta/models", gemini_models, methods=["GET"]),
            Route("/v1beta/models/{model:path}", gemini_model, methods=["GET"])]
