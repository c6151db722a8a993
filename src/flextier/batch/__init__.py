"""The batch lane: the providers' asynchronous batch APIs (50% off, up to 24 h) behind one interface.

* :mod:`.base` — the interface (:class:`BatchBackend`) and the shapes (items, handles, statuses, results),
  re-exported from :mod:`flextier.providers.batch_base` (below the providers that implement it);
* :mod:`.bedrock` — Bedrock's backend; OpenAI's, Anthropic's and Gemini's live with their dialects in
  ``flextier.providers.<name>.batch`` (:mod:`.openai`, :mod:`.anthropic`, :mod:`.gemini` re-export them);
* :mod:`.lane` — :class:`BatchLane`, the driver the runner uses (submit, poll, collect, per-line
  retries, salvage, resume, straggler rescue);
* the lane's store on top of the job store is :mod:`flextier.jobs.batch_store` (above both packages).

Provider SDKs load on first use: ``import flextier.batch`` imports none of them.
"""
from __future__ import annotations

import importlib
from typing import Any

from ..catalog import ModelEntry
from .base import BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult, TERMINAL, wire_id

__all__ = ["BatchBackend", "BatchHandle", "BatchItem", "BatchStatus", "ItemResult", "TERMINAL", "wire_id",
           "backend_class", "get_backend"]

_BACKENDS = {
    "openai": "flextier.providers.openai.batch:OpenAIBatch",
    "anthropic": "flextier.providers.anthropic.batch:AnthropicBatch",
    "gemini": "flextier.providers.gemini.batch:GeminiBatch",
    "bedrock": "flextier.batch.bedrock:BedrockBatch",
}


def backend_class(provider: str) -> type[BatchBackend]:
    try:
        mod, _, cls = _BACKENDS[provider].partition(":")
    except KeyError:
        raise ValueError(f"no batch backend for provider {provider!r} (known: {', '.join(_BACKENDS)})") from None
    return getattr(importlib.import_module(mod), cls)


def get_backend(entry: ModelEntry, **kwargs: Any) -> BatchBackend:
    """The batch backend for ``entry``'s provider. ``kwargs`` go to its constructor (client,
    base_url, api_key; Bedrock also bucket, prefix, role_arn, s3_client, min_items...)."""
    return backend_class(entry.provider)(entry, **kwargs)
