"""The batch lane's store on top of the job store (:class:`flextier.jobs.store.JobStore`).

Why a separate adapter: the lane speaks in item ids and batch handles, the job store in
sequence numbers, output lines and ledger rows. This maps one onto the other using only
the job store's public methods: its lookups by custom id (``seq_by_custom_id``, ``states_of``,
``item_for_result``...), its batch methods (``create_batch``, ``update_batch``, ``open_batches``,
``abandon_batch``, ``leave_batch``) and its batched writer (``finish``, ``add_attempt``,
``add_ledger``). It runs no SQL itself: the job store owns the schema.

Results are queued on the job store's writer and become durable at :meth:`commit`, which
calls ``flush`` — pass the runner's own flush function when the lane runs inside the
runner, so the runner writes the output lines of everything it commits (commit before
report); standalone, the store's ``flush`` is used.

Why under ``jobs/`` (it was ``batch/jobstore.py``): it is the job's side of the batch lane,
built on the job store, so it sits above both ``batch`` and ``jobs.store``; in ``batch/`` it
made the two packages import each other (no import cycles).

Output lines have the runner's shape (OpenAI batch output + a ``flextier`` object), with
``flextier.tier`` = ``"batch"`` and ``flextier.batch`` = the local batch id.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from ..batch.base import TERMINAL, BatchHandle, BatchItem, ItemResult
from ..batch.lane import OpenBatch
from ..catalog import ModelEntry
from ..cost import Cost
from .input import request_to_call
from .lines import answer_line, failure_line
from .store import BATCH_RESERVED, DONE, FAILED, FINAL_STATES, FinishedItem, JobStore

__all__ = ["JobStoreLane"]


class JobStoreLane:
    """:class:`~flextier.batch.lane.LaneStore` over a :class:`JobStore`. Use from the store's thread."""

    def __init__(self, store: JobStore, entry: ModelEntry, *, job_params: dict[str, Any] | None = None,
                 flush: Callable[[], Any] | None = None,
                 prepare: Callable[[Any], None] | None = None) -> None:
        self.store = store
        self.entry = entry
        self.job_params = job_params or {}
        self._flush = flush or store.flush
        self._prepare = prepare
        self._queued: dict[str, str] = {}      # item id -> source, recorded since the last commit

    # -- lookups -------------------------------------------------------------------------------
    def _seqs(self, item_ids: Sequence[str]) -> dict[str, int]:
        return self.store.seq_by_custom_id(item_ids)

    # -- batches -------------------------------------------------------------------------------
    def batch_intent(self, local_id: str, provider: str, item_ids: Sequence[str], *, at: float) -> None:
        seqs = self._seqs(item_ids)
        self.store.create_batch(local_id, provider, [seqs[i] for i in item_ids if i in seqs], created_at=at,
                                meta={})

    def batch_submitted(self, local_id: str, handle: BatchHandle, *, at: float) -> None:
        self.store.update_batch(local_id, remote_id=handle.remote_id, state="submitted", submitted_at=at,
                                meta=handle.to_dict())

    def batch_state(self, local_id: str, state: str, *, at: float, message: str | None = None) -> None:
        fields: dict[str, Any] = {"state": state}
        if state in TERMINAL:
            fields["completed_at"] = at
        self.store.update_batch(local_id, **fields)
        if state in TERMINAL or message:
            self.store.event(at, f"batch_{state}", {"batch": local_id, "message": message})

    def open_batches(self) -> list[OpenBatch]:
        out = []
        for row in self.store.open_batches():
            meta = json.loads(row.get("meta") or "{}")
            abandoned = meta.get("abandoned")
            if abandoned:
                # its items were handed back (in_batch cleared): the batch keeps its own list
                ids = list(abandoned.get("items") or [])
            else:
                ids = self.store.custom_ids_in_batch(row["id"])
            handle = BatchHandle.from_dict(meta, ids) if row.get("remote_id") and meta.get("remote_id") else None
            out.append(OpenBatch(local_id=row["id"], item_ids=ids, handle=handle, state=row["state"],
                                 abandoned=bool(abandoned)))
        return out

    def load_items(self, item_ids: Sequence[str]) -> list[BatchItem]:
        out = []
        for cid, text in self.store.requests_of(item_ids):
            req = request_to_call(text, self.entry, self.job_params)
            if self._prepare is not None:
                self._prepare(req)
            out.append(BatchItem(cid, req))
        return out

    def release(self, item_ids: Sequence[str], *, at: float) -> None:
        self.store.leave_batch(self._in_batch(item_ids))

    def _in_batch(self, item_ids: Sequence[str]) -> list[int]:
        """Seqs of the items still inside a provider batch. Only those may be released: an item
        already handed back may be in flight online by now (and must stay ``inflight``)."""
        return [seq for seq, in_batch in self.store.batch_membership(item_ids)
                if in_batch is not None and in_batch != BATCH_RESERVED]

    def batch_abandoned(self, local_id: str, item_ids: Sequence[str], *, at: float) -> None:
        meta = self.store.batch_meta(local_id)
        meta["abandoned"] = {"at": at, "items": list(item_ids)}
        self.store.abandon_batch(local_id, meta, self._in_batch(item_ids))
        self.store.event(at, "batch_abandoned", {"batch": local_id, "items": len(item_ids)})

    def finished(self, item_ids: Sequence[str]) -> set[str]:
        done = {cid for cid, state in self.store.states_of(item_ids) if state in FINAL_STATES}
        return done | (set(item_ids) & set(self._queued))

    # -- results ---------------------------------------------------------------------------------
    def record_result(self, result: ItemResult, *, cost: Cost, at: float, source: str) -> str:
        row = self.store.item_for_result(result.item_id)
        if row is None:
            return "taken"          # not an item of this job: never count it
        seq, state, in_batch, tier, attempts, pb = row
        from_batch = not source.startswith("retry:")
        # the runner's writer may hold a final result for this item that is not committed yet
        queued_elsewhere = state not in FINAL_STATES and self.store.is_final(seq)
        if queued_elsewhere and result.item_id not in self._queued:
            return "taken"
        if result.item_id in self._queued or state in FINAL_STATES:
            prev = self._queued.get(result.item_id)
            if prev is None:
                prev = (in_batch or self._batch_of(seq)) if tier == "batch" else f"retry:{tier}"
            return "replay" if prev == source else "taken"
        lane_tier = "batch" if from_batch else source.split(":", 1)[1]
        # the batch that answered (an abandoned batch's items have left it: in_batch is cleared)
        batch_id = source if from_batch else in_batch
        attempts = int(attempts or 0) + 1
        if result.ok:
            body = result.body or {}
            line = answer_line(seq, result.item_id, request_id=body.get("id"), body=body, tier=result.tier,
                               attempts=attempts, cost=cost.cost, standard_cost=cost.standard_cost,
                               possibly_billed=bool(pb), batch=batch_id, batch_item=True)
            u = result.usage
            self.store.add_attempt(seq, lane_tier, "ok", None, 200, None, False, at)
            self.store.add_ledger(at, seq, result.tier, cost.cost, cost.standard_cost,
                                  u.input_tokens if u else 0, u.output_tokens if u else 0)
            fin = FinishedItem(seq=seq, state=DONE, result=line, tier=lane_tier, attempts=attempts,
                               served_tier=result.tier, cost=cost.cost, standard_cost=cost.standard_cost,
                               error_class=None, latency=None, finished_at=at, possibly_billed=int(pb or 0),
                               text=result.text)
        else:
            err = dict(result.error or {})
            status = err.get("status")
            eline = {"code": str(err.get("code") or err.get("kind") or "batch_error"),
                     "message": str(err.get("message") or "")[:500], "type": "BatchLineError"}
            line = failure_line(seq, result.item_id, status=status, error=eline, attempts=attempts,
                                possibly_billed=bool(pb), batch=batch_id, batch_item=True)
            self.store.add_attempt(seq, lane_tier, "BatchLineError", None, status, eline["code"], False, at)
            fin = FinishedItem(seq=seq, state=FAILED, result=line, tier=lane_tier, attempts=attempts,
                               served_tier=None, cost=None, standard_cost=None, error_class="BatchLineError",
                               latency=None, finished_at=at, possibly_billed=int(pb or 0))
        self.store.finish(fin)
        self._queued[result.item_id] = source
        return "recorded"

    def _batch_of(self, seq: int) -> str | None:
        """The batch named in an item's recorded result line (for a batch result recorded after
        the item left its batch, when ``in_batch`` no longer says)."""
        line = self.store.result_line(seq)
        try:
            return json.loads(line)["flextier"].get("batch") if line else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def record_duplicate(self, result: ItemResult, *, cost: Cost, at: float) -> None:
        seq = self._seqs([result.item_id]).get(result.item_id)
        if seq is None:
            return
        u = result.usage
        self.store.add_ledger(at, seq, result.tier, cost.cost, cost.standard_cost, u.input_tokens if u else 0,
                              u.output_tokens if u else 0, kind="duplicate")

    def commit(self) -> None:
        self._flush()
        self._queued.clear()

