"""Anthropic Message Batches backend (docs/providers.md): the only discount Claude has.

Lives with the rest of the Anthropic dialect; ``flextier.batch.anthropic`` re-exports it.

Limits: 100,000 requests or 256 MB per batch; ``custom_id`` must match
``[a-zA-Z0-9_-]{1,64}`` (other ids go through :func:`~flextier.providers.batch_base.wire_id`). While a batch runs
the API reports every request as ``processing``; the split into succeeded / errored /
canceled / expired appears when ``processing_status`` is ``ended``, and the end state is
normalised from those counts (any expired request -> ``expired``; a cancel -> ``cancelled``).
Message Batches carry no metadata, so a batch created just before a crash cannot be
found again (:meth:`find` returns None): that window is milliseconds wide, and the lane
counts such items as possibly billed.
"""
from __future__ import annotations

from typing import Any, Iterator

import anthropic

from ...catalog import ModelEntry
from . import AnthropicAdapter, classify_anthropic, make_client, quiet, text_from_body, usage_from_body
from ...errors import ProviderError
from ..batch_base import BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult, retryable_status, wire_id

__all__ = ["AnthropicBatch"]

_STATUS_OF_TYPE = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                   "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
                   "overloaded_error": 529, "billing_error": 402}


class AnthropicBatch(BatchBackend):
    provider = "anthropic"
    max_items = 100_000
    max_bytes = 256 * 1024 * 1024

    def __init__(self, entry: ModelEntry, *, client: anthropic.Anthropic | None = None,
                 base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(entry)
        if client is not None:
            self.client = quiet(client)
        else:   # unguarded: result streams are larger than the online body cap
            self.client = make_client(base_url, api_key, guard=False, what="anthropic batch")
        self._builder = AnthropicAdapter(entry, None)

    def line(self, item: BatchItem) -> dict[str, Any]:
        params = self._builder.build_body(item.request, "standard")
        params.pop("service_tier", None)
        return {"custom_id": wire_id(item.item_id), "params": params}

    def classify(self, exc: BaseException) -> ProviderError | None:
        return classify_anthropic(exc, "batch")

    def submit(self, chunk: list[BatchItem], local_id: str) -> BatchHandle:
        b = self.client.messages.batches.create(requests=[self.line(it) for it in chunk])  # type: ignore[misc]
        return self.handle(b.id, chunk, local_id)

    def poll(self, handle: BatchHandle) -> BatchStatus:
        b = self.client.messages.batches.retrieve(handle.remote_id)
        rc = b.request_counts
        total = rc.processing + rc.succeeded + rc.errored + rc.canceled + rc.expired
        if b.processing_status == "in_progress":
            state = "in_progress"
        elif b.processing_status == "canceling":
            state = "cancelling"
        elif rc.expired:
            state = "expired"
        elif b.cancel_initiated_at is not None or rc.canceled:
            state = "cancelled"
        else:
            state = "completed"
        return BatchStatus(state=state, raw=b.processing_status, total=total,
                           completed=rc.succeeded if b.processing_status == "ended" else None,
                           failed=(rc.errored + rc.expired + rc.canceled) if b.processing_status == "ended" else None)

    def collect(self, handle: BatchHandle) -> Iterator[ItemResult]:
        ids = self.by_wire_id(handle)
        seen: set[str] = set()
        for row in self.client.messages.batches.results(handle.remote_id):
            item_id = ids.get(row.custom_id)
            if item_id is None or item_id in seen:
                continue
            seen.add(item_id)
            r = row.result
            if r.type == "succeeded":
                body = r.message.model_dump(mode="json")
                yield ItemResult(item_id=item_id, ok=True, body=body, usage=usage_from_body(body.get("usage")),
                                 text=text_from_body(body))
            elif r.type == "errored":
                inner = r.error.error
                etype = getattr(inner, "type", None) or "api_error"
                status = _STATUS_OF_TYPE.get(etype, 500)
                yield ItemResult.failure(item_id, "error", str(getattr(inner, "message", "") or etype),
                                         status=status, code=etype, retryable=retryable_status(status))
            else:
                kind = "cancelled" if r.type == "canceled" else "expired"
                yield ItemResult.failure(item_id, kind, f"request {r.type} in batch {handle.remote_id}")
        yield from self.fill_missing(handle, seen, self.poll(handle).state)

    def cancel(self, handle: BatchHandle) -> None:
        self.client.messages.batches.cancel(handle.remote_id)
