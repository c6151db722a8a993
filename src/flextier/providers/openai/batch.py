"""OpenAI Batch API backend: upload a JSONL file, create ``/v1/batches``, read output and error files.

Lives with the rest of the OpenAI dialect; ``flextier.batch.openai`` re-exports it.

Limits (docs/providers.md, Batch APIs): 50,000 requests and 200 MB per input file, one endpoint per
batch (``/v1/chat/completions`` or ``/v1/responses``), ``completion_window`` ``24h``. The
batch carries ``metadata.flextier_batch`` = flextier's local id, which is how
:meth:`OpenAIBatch.find` recovers a batch created just before a crash. Request bodies
come from the online adapter's builder, so a line sent by batch is the request flex
would have sent, minus ``service_tier``.
"""
from __future__ import annotations

import functools
import io
import json
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # the SDK is imported only when a batch is sent (start-up)
    import openai

from ...catalog import ModelEntry
from . import OpenAIAdapter, _sdk, classify_openai, make_client, quiet, text_from_body, usage_from_body
from ...errors import ProviderError
from ..batch_base import BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult, retryable_status, wire_id

__all__ = ["OpenAIBatch"]

_URLS = {"chat": "/v1/chat/completions", "responses": "/v1/responses"}
META_KEY = "flextier_batch"


class OpenAIBatch(BatchBackend):
    provider = "openai"
    max_items = 50_000
    max_bytes = 200 * 1024 * 1024

    def __init__(self, entry: ModelEntry, *, client: "openai.OpenAI | None" = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        super().__init__(entry)
        self._given = client
        self._conn = {"base_url": base_url, "api_key": api_key}
        self._builder = OpenAIAdapter(entry, None)

    @functools.cached_property
    def client(self) -> "openai.OpenAI":
        """The SDK client, made on first use: most jobs never reach the batch lane, and building
        one (its TLS context) costs ~0.1 s at start-up, before the first flex request goes out."""
        if self._given is not None:
            return quiet(self._given)
        # unguarded: output files are larger than the online body cap
        return make_client(**self._conn, guard=False, what="openai batch")

    def group(self, item: BatchItem) -> str:
        return _URLS.get(item.request.endpoint, _URLS["chat"])

    def line(self, item: BatchItem) -> dict[str, Any]:
        _, body = self._builder.build_body(item.request, "standard")
        body.pop("service_tier", None)
        return {"custom_id": wire_id(item.item_id), "method": "POST", "url": self.group(item), "body": body}

    def classify(self, exc: BaseException) -> ProviderError | None:
        return classify_openai(exc, "batch")

    def submit(self, chunk: list[BatchItem], local_id: str) -> BatchHandle:
        endpoint = self.group(chunk[0])
        data = b"".join(json.dumps(self.line(it), separators=(",", ":")).encode() + b"\n" for it in chunk)
        f = self.client.files.create(file=(f"flextier-{local_id}.jsonl", io.BytesIO(data)), purpose="batch")
        b = self.client.batches.create(input_file_id=f.id, endpoint=endpoint,  # type: ignore[arg-type]
                                       completion_window="24h", metadata={META_KEY: local_id})
        return self.handle(b.id, chunk, local_id, input_file_id=f.id, endpoint=endpoint)

    def poll(self, handle: BatchHandle) -> BatchStatus:
        b = self.client.batches.retrieve(handle.remote_id)
        rc = b.request_counts
        msg = None
        if b.errors and b.errors.data:
            msg = "; ".join(f"line {e.line}: {e.message}" if e.line else str(e.message) for e in b.errors.data[:5])
        return BatchStatus(state=b.status, raw=b.status, total=rc.total if rc else None,
                           completed=rc.completed if rc else None, failed=rc.failed if rc else None, message=msg)

    def _lines(self, file_id: str | None) -> Iterator[dict[str, Any]]:
        if not file_id:
            return
        text = self.client.files.content(file_id).text
        for raw in text.splitlines():
            if raw.strip():
                yield json.loads(raw)

    def collect(self, handle: BatchHandle) -> Iterator[ItemResult]:
        b = self.client.batches.retrieve(handle.remote_id)
        ids = self.by_wire_id(handle)
        seen: set[str] = set()
        for rec in list(self._lines(b.output_file_id)) + list(self._lines(b.error_file_id)):
            item_id = ids.get(str(rec.get("custom_id")))
            if item_id is None or item_id in seen:
                continue
            seen.add(item_id)
            yield self._result(item_id, rec)
        yield from self.fill_missing(handle, seen, b.status)

    @staticmethod
    def _result(item_id: str, rec: dict[str, Any]) -> ItemResult:
        resp, err = rec.get("response"), rec.get("error")
        if resp is not None:
            status = int(resp.get("status_code") or 0)
            body = resp.get("body") or {}
            if 200 <= status < 300:
                return ItemResult(item_id=item_id, ok=True, body=body, usage=usage_from_body(body.get("usage")),
                                  text=text_from_body(body))
            e = body.get("error") or {}
            return ItemResult.failure(item_id, "error", str(e.get("message") or f"HTTP {status}"), status=status,
                                      code=e.get("code") or e.get("type"), retryable=retryable_status(status))
        e = err or {}
        code = str(e.get("code") or "")
        kind = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(code, "error")
        return ItemResult.failure(item_id, kind, str(e.get("message") or code), code=code or None,
                                  retryable=True)

    def cancel(self, handle: BatchHandle) -> None:
        try:
            self.client.batches.cancel(handle.remote_id)
        except _sdk().ConflictError:
            pass          # already ended (or already cancelling)

    def find(self, local_id: str, item_ids: list[str]) -> BatchHandle | None:
        seen = 0
        for b in self.client.batches.list(limit=100):
            if (b.metadata or {}).get(META_KEY) == local_id:
                return self.handle(b.id, item_ids, local_id, input_file_id=b.input_file_id, endpoint=b.endpoint)
            seen += 1
            if seen >= 500:
                break
        return None
