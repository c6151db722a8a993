"""Embeddings: OpenAI ``POST /v1/embeddings``, Gemini ``:embedContent`` / ``:batchEmbedContents``.

They run through the same engine as chat (rate limits, faults, the ledger) but
generate nothing: ``GenRequest.no_output`` bills input tokens only, at the
standard tier (neither provider offers flex for embeddings), from the catalog's
embedding entries. Vectors are deterministic per (seed, model, text): unit-length
(OpenAI) vectors of the model's native dimension from ``models.json``
(``embedding.dimensions``); a smaller ``dimensions`` / ``outputDimensionality``
keeps the leading components (Matryoshka-style), re-normalised by OpenAI, left
as is by Gemini (whose docs tell users to normalise truncated vectors).
``encoding_format: base64`` is little-endian float32, as the OpenAI SDK decodes it
(the SDK asks for base64 by default).
"""
from __future__ import annotations

import base64
import json
import math
import sys
from array import array
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..catalog import ModelEntry
from .engine import GenRequest, Session
from .errors_shape import google_error, openai_error
from .gemini_api import GeminiAPI
from .openai_api import OpenAIAPI
from .tokenizer import count_tokens, request_rng
from .wire import Call, WireError

__all__ = ["embedding_specs", "embedding_spec", "vector", "OpenAIEmbeddings", "GeminiEmbeddings", "MAX_INPUTS"]

MAX_INPUTS = 2048          # OpenAI: at most 2048 inputs per request; Gemini batch: 100 requests
GEMINI_MAX_REQUESTS = 100


@lru_cache(maxsize=1)
def embedding_specs() -> dict[str, dict[str, Any]]:
    """``{"openai/text-embedding-3-small": {"dimensions": 1536, ...}}`` from the catalog file."""
    text = resources.files("flextier.catalog").joinpath("models.json").read_text(encoding="utf-8")
    return {m["name"]: dict(m["embedding"]) for m in json.loads(text).get("models", [])
            if isinstance(m, dict) and isinstance(m.get("embedding"), dict)}


def embedding_spec(entry: ModelEntry | None) -> dict[str, Any] | None:
    return None if entry is None else embedding_specs().get(entry.name)


def vector(seed: int, model: str, text: str, dims: int, native: int, renormalize: bool = True) -> list[float]:
    """A deterministic embedding: a unit vector of ``native`` components from a digest of the
    text, its first ``dims`` kept (and scaled back to unit length if ``renormalize``)."""
    rng = request_rng(seed, "embedding", model, text)
    raw = array("b", rng.randbytes(native))
    head = raw[:dims] if dims < native else raw
    norm = math.sqrt(sum(x * x for x in (head if renormalize else raw))) or 1.0
    inv = 1.0 / norm
    return [round(x * inv, 8) for x in head]


def _base64(values: list[float]) -> str:
    arr = array("f", values)
    if sys.byteorder != "little":   # pragma: no cover
        arr.byteswap()
    return base64.b64encode(arr.tobytes()).decode("ascii")


def _entry_or_error(engine: Any, provider: str, model: str) -> tuple[ModelEntry | None, dict[str, Any] | None]:
    entry = engine.catalog.find_wire(provider, model)
    return entry, embedding_spec(entry)


class OpenAIEmbeddings(OpenAIAPI):
    """``POST /v1/embeddings`` in OpenAI's shape; errors as the chat routes render them."""

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/embeddings", self.embeddings, methods=["POST"])]

    def overhead(self, body: dict[str, Any]) -> int:
        return 0          # embeddings bill the inputs' tokens only: no message framing

    async def embeddings(self, request: Request) -> Any:
        return await self.run(request, self._build_embeddings)

    def _build_embeddings(self, body: dict[str, Any], request: Request) -> Call:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(openai_error(400, "you must provide a model parameter", param="model"))
        entry, spec = _entry_or_error(self.engine, "openai", model)
        if entry is None or spec is None:
            msg = (f"The model `{model}` does not exist or you do not have access to it." if entry is None else
                   f"This model ({model}) does not support embeddings.")
            raise WireError(openai_error(404 if entry is None else 400, msg, code="model_not_found"
                                         if entry is None else "invalid_model", param="model"),
                            model_wire=model, entry=entry)
        texts, counts = self._inputs(body.get("input"), model, entry, spec)
        native = int(spec["dimensions"])
        dims = body.get("dimensions")
        if dims is not None:
            if not spec.get("flexible_dimensions"):
                raise WireError(openai_error(400, "This model does not support specifying dimensions.",
                                             param="dimensions"), model_wire=model, entry=entry, tier="standard")
            if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= native:
                raise WireError(openai_error(400, f"Invalid value for 'dimensions' = {dims}. Must be between 1 "
                                             f"and {native}.", param="dimensions"),
                                model_wire=model, entry=entry, tier="standard")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise WireError(openai_error(400, f"Invalid value: '{fmt}'. Supported values are: 'float' and "
                                         "'base64'.", code="invalid_value", param="encoding_format"),
                            model_wire=model, entry=entry, tier="standard")
        size = native if dims is None else dims
        total = sum(counts)
        req = GenRequest(provider="openai", model_wire=model, entry=entry, tier="standard", served_tier="standard",
                         prompt_text="", cache_eligible=False, no_output=True, prompt_overhead=total)
        seed = self.engine.seed

        def render(s: Session) -> dict[str, Any]:
            data = []
            for i, t in enumerate(texts):
                v = vector(seed, entry.model_id, t, size, native)
                data.append({"object": "embedding", "index": i,
                             "embedding": _base64(v) if fmt == "base64" else v})
            return {"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": total, "total_tokens": total}}

        return Call(req, render, None, headers=self._headers)

    @staticmethod
    def _inputs(raw: Any, model: str, entry: ModelEntry, spec: dict[str, Any]) -> tuple[list[str], list[int]]:
        """The inputs as texts (token arrays as their ids) and each one's token count."""
        def bad(msg: str) -> WireError:
            return WireError(openai_error(400, msg, param="input"), model_wire=model, entry=entry, tier="standard")

        if isinstance(raw, str):
            items: list[Any] = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            items = [raw]                                   # one token array
        elif isinstance(raw, list):
            items = raw
        else:
            raise bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/"
                      "api-reference.")
        if not items:
            raise bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/"
                      "api-reference.")
        if len(items) > MAX_INPUTS:
            raise bad(f"'$.input' is invalid: at most {MAX_INPUTS} inputs per request, got {len(items)}.")
        texts: list[str] = []
        counts: list[int] = []
        limit = int(spec.get("max_input_tokens") or 8191)
        for i, it in enumerate(items):
            if isinstance(it, str):
                if not it:
                    raise bad(f"'$.input[{i}]' is invalid: an input must not be empty.")
                n = count_tokens(it)
                texts.append(it)
            elif isinstance(it, list) and it and all(isinstance(x, int) and not isinstance(x, bool) for x in it):
                n = len(it)
                texts.append(" ".join(map(str, it)))
            else:
                raise bad(f"'$.input[{i}]' is invalid: expected a string or an array of token ids.")
            if n > limit:
                raise bad(f"This model's maximum context length is {limit + 1} tokens, however you requested "
                          f"{n} tokens in input {i}. Please reduce your prompt.")
            counts.append(n)
        return texts, counts


class GeminiEmbeddings(GeminiAPI):
    """``models/{m}:embedContent`` and ``:batchEmbedContents`` (the google-genai SDK uses the batch
    form for ``models.embed_content``); errors as ``generateContent`` renders them."""

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        for ver in ("v1beta", "v1"):
            out += [Route(f"/{ver}/models/{{model}}:embedContent", self.embed_one, methods=["POST"]),
                    Route(f"/{ver}/models/{{model}}:batchEmbedContents", self.embed_batch, methods=["POST"])]
        return out

    def overhead(self, body: dict[str, Any]) -> int:
        return 0

    async def embed_one(self, request: Request) -> Any:
        model = request.path_params["model"]
        return await self.run(request, lambda b, r: self._build_embed(b, model, False))

    async def embed_batch(self, request: Request) -> Any:
        model = request.path_params["model"]
        return await self.run(request, lambda b, r: self._build_embed(b, model, True))

    def _build_embed(self, body: dict[str, Any], model: str, batch: bool) -> Call:
        entry, spec = _entry_or_error(self.engine, "gemini", model)
        if entry is None or spec is None:
            what = "embedContent" if not batch else "batchEmbedContents"
            raise WireError(google_error(404, f"models/{model} is not found for API version v1beta, or is not "
                                         f"supported for {what}. Call ListModels to see the list of available "
                                         "models and their supported methods."), model_wire=model, entry=entry)
        if batch:
            reqs = body.get("requests")
            if not isinstance(reqs, list) or not reqs:
                raise WireError(google_error(400, "* BatchEmbedContentsRequest.requests: at least one request "
                                             "is required"), model_wire=model, entry=entry, tier="standard")
            if len(reqs) > GEMINI_MAX_REQUESTS:
                raise WireError(google_error(400, f"* BatchEmbedContentsRequest.requests: at most "
                                             f"{GEMINI_MAX_REQUESTS} requests are allowed in a batch"),
                                model_wire=model, entry=entry, tier="standard")
        else:
            reqs = [body]
        native = int(spec["dimensions"])
        limit = int(spec.get("max_input_tokens") or 2048)
        texts: list[str] = []
        sizes: list[int] = []
        total = 0
        for i, r in enumerate(reqs):
            where = f"requests[{i}]." if batch else ""
            content = r.get("content") if isinstance(r, dict) else None
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not parts:
                raise WireError(google_error(400, f"* EmbedContentRequest.{where}content: content is not "
                                             "specified"), model_wire=model, entry=entry, tier="standard")
            text = "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
            dims = r.get("outputDimensionality", r.get("output_dimensionality"))
            if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= native):
                raise WireError(google_error(400, f"* EmbedContentRequest.{where}output_dimensionality: must be "
                                             f"between 1 and {native}"), model_wire=model, entry=entry,
                                tier="standard")
            n = count_tokens(text)
            if n > limit:
                raise WireError(google_error(400, f"The input token count ({n}) exceeds the maximum number of "
                                             f"tokens allowed ({limit})."), model_wire=model, entry=entry,
                                tier="standard")
            texts.append(text)
            sizes.append(native if dims is None else dims)
            total += n
        req = GenRequest(provider="gemini", model_wire=model, entry=entry, tier="standard", served_tier="standard",
                         prompt_text="", cache_eligible=False, no_output=True, prompt_overhead=total)
        seed = self.engine.seed

        def render(s: Session) -> dict[str, Any]:
            embs = [{"values": vector(seed, entry.model_id, t, d, native, renormalize=False)}
                    for t, d in zip(texts, sizes)]
            if batch:
                return {"embeddings": embs}
            return {"embedding": embs[0]}

        return Call(req, render, None)
