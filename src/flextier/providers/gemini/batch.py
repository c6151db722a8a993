"""Gemini Batch API backend (docs/providers.md, Batch APIs): inline ``batchGenerateContent`` requests.

Lives with the rest of the Gemini dialect; ``flextier.batch.gemini`` re-exports it.

Requests go inline (the simplest path and the one the SDK documents first), so a batch
is bounded by the 20 MB inline limit; each request carries ``metadata.key`` = the item's
wire id. The batch's ``display_name`` is ``flextier-<local id>``, which is how :meth:`find`
recovers a batch created just before a crash. The SDK does not expose per-request
counts while a batch runs, so :class:`~flextier.providers.batch_base.BatchStatus` counts are None until the end.
Results come back as ``inlinedResponses`` or, for file-based batches, as a JSONL
``responsesFile`` downloaded through the File API; both are read.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from google import genai
from google.genai import types as gtypes

from ...catalog import ModelEntry
from . import GeminiAdapter, classify_gemini, make_client, text_from_body, usage_from_body
from ...errors import ProviderError
from ..batch_base import BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult, retryable_status, wire_id

__all__ = ["GeminiBatch"]

_STATES = {"JOB_STATE_QUEUED": "validating", "JOB_STATE_PENDING": "validating", "JOB_STATE_RUNNING": "in_progress",
           "JOB_STATE_UPDATING": "in_progress", "JOB_STATE_PAUSED": "in_progress",
           "JOB_STATE_SUCCEEDED": "completed", "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
           "JOB_STATE_FAILED": "failed", "JOB_STATE_CANCELLING": "cancelling", "JOB_STATE_CANCELLED": "cancelled",
           "JOB_STATE_EXPIRED": "expired", "JOB_STATE_UNSPECIFIED": "validating"}


class GeminiBatch(BatchBackend):
    provider = "gemini"
    max_items = 100_000
    max_bytes = 20 * 1024 * 1024
    envelope_bytes = 256 * 1024

    def __init__(self, entry: ModelEntry, *, client: genai.Client | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        super().__init__(entry)
        if client is None:   # unguarded: result files are larger than the online body cap
            client = make_client(base_url, api_key, guard=False, what="gemini batch")
        self.client = client          # google-genai does not retry unless retry_options are set
        self._builder = GeminiAdapter(entry, None)

    def _request(self, item: BatchItem) -> gtypes.InlinedRequest:
        model, contents, config = self._builder.build(item.request, "standard", None)
        config = config.model_copy(update={"should_return_http_response": None, "http_options": None,
                                           "service_tier": None})
        return gtypes.InlinedRequest(model=model, contents=contents, config=config,
                                     metadata={"key": wire_id(item.item_id)})

    def line(self, item: BatchItem) -> dict[str, Any]:
        return self._request(item).model_dump(mode="json", exclude_none=True)

    def classify(self, exc: BaseException) -> ProviderError | None:
        return classify_gemini(exc, "batch")

    def submit(self, chunk: list[BatchItem], local_id: str) -> BatchHandle:
        job = self.client.batches.create(model=self.entry.model_id, src=[self._request(it) for it in chunk],
                                         config={"display_name": f"flextier-{local_id}"})
        assert job.name
        return self.handle(job.name, chunk, local_id)

    @staticmethod
    def _state(job: gtypes.BatchJob) -> str:
        raw = getattr(job.state, "value", job.state) or "JOB_STATE_UNSPECIFIED"
        return str(raw)

    def poll(self, handle: BatchHandle) -> BatchStatus:
        job = self.client.batches.get(name=handle.remote_id)
        raw = self._state(job)
        msg = job.error.message if job.error is not None else None
        return BatchStatus(state=_STATES.get(raw, "in_progress"), raw=raw, message=msg)

    def _rows(self, job: gtypes.BatchJob) -> Iterator[tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]]:
        """(key, response JSON, error JSON) of every result the batch delivered."""
        dest = job.dest
        if dest is None:
            return
        for r in dest.inlined_responses or []:
            key = (r.metadata or {}).get("key")
            resp = r.response.model_dump(mode="json", by_alias=True, exclude_none=True) if r.response else None
            err = r.error.model_dump(mode="json", exclude_none=True) if r.error else None
            yield key, resp, err
        if dest.file_name:
            data = self.client.files.download(file=dest.file_name)
            for raw in data.decode("utf-8").splitlines():
                if raw.strip():
                    rec = json.loads(raw)
                    yield str(rec.get("key")), rec.get("response"), rec.get("error") or rec.get("status")

    def collect(self, handle: BatchHandle) -> Iterator[ItemResult]:
        job = self.client.batches.get(name=handle.remote_id)
        ids = self.by_wire_id(handle)
        seen: set[str] = set()
        for key, resp, err in self._rows(job):
            item_id = ids.get(str(key))
            if item_id is None or item_id in seen:
                continue
            seen.add(item_id)
            if resp is not None and err is None:
                yield ItemResult(item_id=item_id, ok=True, body=resp, usage=usage_from_body(resp.get("usageMetadata")),
                                 text=text_from_body(resp))
            else:
                e = err or {}
                status = int(e.get("code") or 500)
                yield ItemResult.failure(item_id, "error", str(e.get("message") or "error"), status=status,
                                         code=e.get("status"), retryable=retryable_status(status))
        yield from self.fill_missing(handle, seen, _STATES.get(self._state(job), "in_progress"))

    def cancel(self, handle: BatchHandle) -> None:
        job = self.client.batches.get(name=handle.remote_id)
        if _STATES.get(self._state(job)) in ("completed", "failed", "cancelled", "expired"):
            return
        self.client.batches.cancel(name=handle.remote_id)

    def find(self, local_id: str, item_ids: list[str]) -> BatchHandle | None:
        want = f"flextier-{local_id}"
        for n, job in enumerate(self.client.batches.list(config={"page_size": 50})):
            if job.display_name == want and job.name:
                return self.handle(job.name, item_ids, local_id)
            if n >= 500:
                break
        return None
