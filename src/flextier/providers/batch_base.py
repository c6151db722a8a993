"""The common interface of the four provider batch APIs, and the shapes the lane works with.

Why an interface: OpenAI (``/v1/files`` + ``/v1/batches``), Anthropic (Message Batches),
Gemini (``batchGenerateContent``) and Bedrock (``CreateModelInvocationJob`` on S3) all do
the same five things — split, submit, poll, collect, cancel — with different limits,
envelopes and status names. A backend hides exactly that, so :mod:`flextier.batch.lane`
(retries, salvage, resume, straggler rescue) is written once.

Contract:

* ``split(items)`` yields chunks within the provider's count and byte limits (and one
  endpoint per chunk where the provider needs that).
* ``submit(chunk, local_id)`` creates one provider batch and returns a :class:`BatchHandle`
  (provider id + item ids). ``local_id`` is flextier's own id for the batch; backends tag
  the batch with it where the provider allows, so :meth:`find` can recover a batch whose
  submission succeeded just before a crash.
* ``poll(handle)`` returns a :class:`BatchStatus` with the state normalised to
  ``validating|in_progress|finalizing|completed|expired|cancelling|cancelled|failed``.
* ``collect(handle)`` yields one :class:`ItemResult` per item id of the handle — also for
  items the output does not mention (``kind="missing"``), so nothing is silently lost, and
  including partial output of expired or cancelled batches.
* ``cancel(handle)`` asks the provider to stop; it is not an error when the batch already ended.

Item ids are the job's item ids (OpenAI ``custom_id``, Gemini ``metadata.key``, Bedrock
``recordId``, Anthropic ``custom_id``), made safe for the provider's id syntax with
:func:`wire_id` when needed; results map back through the handle.

Calls are synchronous SDK calls with the SDK's own retries off: the lane decides what
is retried (polling, which is idempotent) and what is not (submission).

Why here, under ``providers`` and not in ``batch``: each provider's batch backend lives with
its dialect (``providers/<name>/batch.py``) and implements this interface, so the interface
sits below the providers, as :mod:`.base` does for the online adapters; the ``batch``
package (the lane) sits above them. ``flextier.batch.base`` re-exports it.
"""
from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

from .._types import CallRequest
from ..catalog import ModelEntry
from ..cost import Usage
from ..errors import ProviderError

__all__ = ["BatchItem", "BatchHandle", "BatchStatus", "ItemResult", "BatchBackend", "STATES", "TERMINAL",
           "wire_id", "retryable_status"]

STATES = ("validating", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled", "failed")
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
_SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def wire_id(item_id: str) -> str:
    """An id every provider accepts (``[a-zA-Z0-9_-]{1,64}``) that maps 1:1 to ``item_id``.

    Ids that already fit are used as they are (so provider consoles show the user's ids);
    others become ``x`` + 40 hex digits of their SHA-256.
    """
    if _SAFE_ID.match(item_id) and not (len(item_id) == 41 and item_id.startswith("x")):
        return item_id
    return "x" + hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def retryable_status(status: int | None) -> bool:
    """Per-line errors worth another try: server-side and rate/capacity failures, not bad requests."""
    return status is None or status >= 500 or status in (408, 409, 429, 529)


@dataclass(frozen=True)
class BatchItem:
    """One job item bound for a batch: its stable id and the provider-neutral request."""

    item_id: str
    request: CallRequest


@dataclass
class BatchHandle:
    """Everything needed to poll, collect or cancel a provider batch, also after a restart."""

    provider: str
    remote_id: str
    item_ids: list[str]
    model: str                                  # catalog name of the model
    local_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "remote_id": self.remote_id, "model": self.model,
                "local_id": self.local_id, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any], item_ids: list[str]) -> "BatchHandle":
        return cls(provider=d["provider"], remote_id=d["remote_id"], item_ids=list(item_ids), model=d["model"],
                   local_id=d.get("local_id", ""), meta=dict(d.get("meta") or {}))


@dataclass(frozen=True)
class BatchStatus:
    """A normalised snapshot of a provider batch. Counts are None where the provider hides them."""

    state: str
    raw: str
    total: int | None = None
    completed: int | None = None
    failed: int | None = None
    message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass
class ItemResult:
    """The batch outcome of one item.

    ``ok``: ``body`` is the provider's JSON response and ``usage`` what was billed (at
    ``tier``). Otherwise ``error`` says why: ``kind`` is ``error`` (the provider answered with
    an error; ``status`` its HTTP status), ``expired``, ``cancelled`` or ``missing`` (not in the
    output), and ``retryable`` whether sending the item again can help.
    """

    item_id: str
    ok: bool
    body: dict[str, Any] | None = None
    usage: Usage | None = None
    tier: str = "batch"
    error: dict[str, Any] | None = None
    text: str = ""

    @property
    def retryable(self) -> bool:
        return not self.ok and bool((self.error or {}).get("retryable", True))

    @classmethod
    def failure(cls, item_id: str, kind: str, message: str, *, status: int | None = None,
                code: str | None = None, retryable: bool | None = None) -> "ItemResult":
        if retryable is None:
            retryable = kind != "error" or retryable_status(status)
        return cls(item_id=item_id, ok=False,
                   error={"kind": kind, "status": status, "code": code, "message": message, "retryable": retryable})


class BatchBackend(ABC):
    """One provider's batch API for one model."""

    provider: ClassVar[str] = ""
    max_items: ClassVar[int] = 50_000
    max_bytes: ClassVar[int] = 200 * 1024 * 1024
    #: Bytes kept free below ``max_bytes`` for the request envelope.
    envelope_bytes: ClassVar[int] = 64 * 1024
    min_items: int = 1

    def __init__(self, entry: ModelEntry) -> None:
        if entry.provider != self.provider:
            raise ValueError(f"{type(self).__name__} serves {self.provider} models, not {entry.name}")
        if not entry.supports_batch:
            raise ValueError(f"{entry.name} has no batch tier")
        self.entry = entry

    # -- lines -----------------------------------------------------------------------------
    @abstractmethod
    def line(self, item: BatchItem) -> dict[str, Any]:
        """The provider-native batch line (request envelope) for ``item``."""

    def group(self, item: BatchItem) -> str:
        """Items of different groups never share a batch (OpenAI: one endpoint per batch)."""
        return ""

    def line_size(self, item: BatchItem) -> int:
        return len(json.dumps(self.line(item), separators=(",", ":")).encode()) + 1

    def split(self, items: Iterable[BatchItem]) -> Iterator[list[BatchItem]]:
        """Chunks of at most ``max_items`` items and ``max_bytes`` (minus the envelope) bytes.

        Streams: holds one open chunk per group, never the whole job. An item too big for
        any batch gets a chunk of its own; the provider refuses it and the lane sends it
        on the online tiers instead.
        """
        limit = self.max_bytes - self.envelope_bytes
        open_: dict[str, tuple[list[BatchItem], int]] = {}
        for it in items:
            g = self.group(it)
            chunk, size = open_.get(g, ([], 0))
            n = self.line_size(it)
            if chunk and (len(chunk) >= self.max_items or size + n > limit):
                yield chunk
                chunk, size = [], 0
            chunk.append(it)
            open_[g] = (chunk, size + n)
        for chunk, _ in open_.values():
            if chunk:
                yield chunk

    # -- provider calls --------------------------------------------------------------------
    @abstractmethod
    def submit(self, chunk: list[BatchItem], local_id: str) -> BatchHandle: ...

    @abstractmethod
    def poll(self, handle: BatchHandle) -> BatchStatus: ...

    @abstractmethod
    def collect(self, handle: BatchHandle) -> Iterator[ItemResult]: ...

    @abstractmethod
    def cancel(self, handle: BatchHandle) -> None: ...

    def classify(self, exc: BaseException) -> "ProviderError | None":
        """The provider adapter's translation of an SDK exception from a batch call (tier
        ``"batch"``), so the lane decides on the taxonomy (:func:`flextier.policy.rules.decide`),
        never on SDK exceptions or status codes. None: not a provider failure."""
        return None

    def find(self, local_id: str, item_ids: list[str]) -> BatchHandle | None:
        """The provider batch submitted for ``local_id``, if the provider lets us look it up."""
        return None

    # -- helpers -----------------------------------------------------------------------------
    def handle(self, remote_id: str, chunk: list[BatchItem] | list[str], local_id: str,
               **meta: Any) -> BatchHandle:
        ids = [c if isinstance(c, str) else c.item_id for c in chunk]
        return BatchHandle(provider=self.provider, remote_id=remote_id, item_ids=ids, model=self.entry.name,
                           local_id=local_id, meta=meta)

    @staticmethod
    def by_wire_id(handle: BatchHandle) -> dict[str, str]:
        return {wire_id(i): i for i in handle.item_ids}

    def fill_missing(self, handle: BatchHandle, seen: set[str], state: str) -> Iterator[ItemResult]:
        """Results for items the provider output did not mention, classified by the batch's end state."""
        kind = {"expired": "expired", "cancelled": "cancelled"}.get(state, "missing")
        for i in handle.item_ids:
            if i not in seen:
                yield ItemResult.failure(i, kind, f"no result in the {state} batch {handle.remote_id}")
