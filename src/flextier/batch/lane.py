"""The batch lane driver: submit, poll, collect, retry lines, salvage, resume, rescue.

What it guarantees, and why each rule exists:

* **Durable before remote.** A batch is recorded in the store (with its item ids) *before*
  the provider is called, and its provider id right after. A crash between the two leaves
  a batch without a provider id; the next run looks it up by flextier's id (OpenAI
  metadata, Gemini display name, Bedrock job name — Bedrock's ``clientRequestToken`` even
  makes a resubmission idempotent) and only resubmits when the provider has no such batch.
* **Resume reattaches.** :meth:`BatchLane.run` starts from the store's open batches and
  polls them again; it never resubmits a batch that has a provider id.
* **Whole batches are never retried.** When a batch ends, its results are recorded one
  item at a time. Lines that failed in a way worth retrying (server errors, expiry,
  cancellation, missing from the output) are retried *one by one* through ``retry_one``
  (the runner's online path: flex, then standard) or, without it, handed back to the
  caller as leftovers. Lines the provider rejected as bad requests are final failures.
* **Every hand-back says why.** ``leftover_reason`` (and ``LaneReport.leftover_reasons``) tell
  the caller why items left the lane (not accepted, under the provider's minimum, unanswered
  lines, a rescue): under ``--tier batch`` the runner keeps them pending and pauses the job with
  that reason instead of sending them online (:mod:`flextier.jobs.batching`); under ``--tier
  auto`` they go online and the summary says why.
* **Expired batches are salvaged.** Their partial output is recorded like any other result;
  only the unfinished lines are retried.
* **First result wins.** :meth:`LaneStore.record_result` must refuse a second final result
  for an item (and recognise a replay: the same batch collected again after a crash). A batch answer that loses that race (the item already finished on flex or
  standard after a straggler rescue) is not counted again, but if the provider billed it,
  it is recorded with :meth:`LaneStore.record_duplicate` so the client's ledger still
  equals the provider's bill.
* **Straggler rescue.** ``should_abandon`` (the planner's ``batch_rescue`` decision) is
  asked every polling round; when it says so, open batches are cancelled and their
  unfinished items handed back at once (``on_leftovers``), while the lane keeps polling
  the cancelled batches to account for anything they still finished. The abandonment is
  durable (:meth:`LaneStore.batch_abandoned`): after a crash, a resume reattaches to the
  cancelled batch with its original items and still collects that late output (answers
  for items finished online meanwhile become ``duplicate`` ledger rows), never resubmits it.

Time is injected (``clock``/``sleep``) so the emulator's scaled clock, or a test's fake
clock, drives the polling. Provider calls are synchronous SDK calls run in a worker
thread, so the runner's event loop keeps serving the online lanes meanwhile.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

from ..cost import Cost, Usage, price_usage
from ..policy.rules import FAIL, decide
from .base import BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult

__all__ = ["BatchLane", "LaneStore", "OpenBatch", "LaneReport", "LaneView", "RetryOne"]

log = logging.getLogger("flextier.batch")

RetryOne = Callable[[BatchItem, ItemResult], Awaitable[ItemResult]]


@dataclass
class OpenBatch:
    """A batch the store knows as not finished. ``handle`` is None when submission is unconfirmed."""

    local_id: str
    item_ids: list[str]
    handle: BatchHandle | None
    state: str
    abandoned: bool = False            # cancelled by a straggler rescue: its items belong to the online lanes


class LaneStore(Protocol):
    """What the lane needs from the job's store. All writes must be durable when they return."""

    def batch_intent(self, local_id: str, provider: str, item_ids: Sequence[str], *, at: float) -> None:
        """Record a batch about to be submitted and mark its items as in that batch (atomically)."""

    def batch_submitted(self, local_id: str, handle: BatchHandle, *, at: float) -> None:
        """The provider accepted the batch: remember its handle (provider id) for resume."""

    def batch_state(self, local_id: str, state: str, *, at: float, message: str | None = None) -> None:
        """The batch moved to ``state`` (normalised). Terminal states close it."""

    def open_batches(self) -> list[OpenBatch]:
        """Batches not yet in a terminal state, oldest first."""

    def load_items(self, item_ids: Sequence[str]) -> list[BatchItem]:
        """The requests of these items (for resubmission after a crash, and per-line retries)."""

    def record_result(self, result: ItemResult, *, cost: Cost, at: float, source: str) -> str:
        """Queue a final result (success, or a failure not worth retrying) from ``source`` (a local
        batch id, or the tier of a per-line retry). Returns ``"recorded"``; ``"replay"`` when the
        item already holds a result from the same source (a batch collected again after a
        crash: nothing to do); ``"taken"`` when another copy finished it first (nothing written)."""

    def record_duplicate(self, result: ItemResult, *, cost: Cost, at: float) -> None:
        """A billed result that lost the race: ledger only (kind "duplicate"), the item is unchanged."""

    def commit(self) -> None:
        """Make every queued result durable (one transaction)."""

    def finished(self, item_ids: Sequence[str]) -> set[str]:
        """The ids among ``item_ids`` that already have a final result (committed or queued)."""

    def release(self, item_ids: Sequence[str], *, at: float) -> None:
        """These items leave their batch and go back to the online lanes (pending). Items no
        longer in a batch (already handed back, finished) are left alone."""

    def batch_abandoned(self, local_id: str, item_ids: Sequence[str], *, at: float) -> None:
        """Straggler rescue: release these items *and* remember, durably and atomically, that the
        batch was abandoned and which items it holds, so a resume still polls the cancelled
        batch and accounts for its late (billed) output (:attr:`OpenBatch.abandoned`)."""


@dataclass
class LaneView:
    """What ``should_abandon`` sees each polling round."""

    now: float
    open_batches: int
    open_items: int
    submitted_at: float | None
    statuses: dict[str, BatchStatus]


@dataclass
class LaneReport:
    submitted: int = 0
    reattached: int = 0
    recovered: int = 0                 # batches found again after a crash during submission
    resubmitted: int = 0               # batches resubmitted because the provider had no trace of them
    done: int = 0                      # items finished by a batch
    failed: int = 0                    # items with a final failure recorded by the lane
    retried: int = 0                   # lines retried one by one through retry_one
    duplicates: int = 0                # billed batch answers that lost to another copy
    leftovers: list[str] = field(default_factory=list)
    leftover_reasons: list[tuple[int, str]] = field(default_factory=list)   # (items, why) per hand-back
    abandoned: bool = False
    batches: dict[str, str] = field(default_factory=dict)   # local id -> last known state


@dataclass
class _Tracked:
    local_id: str
    item_ids: list[str]
    handle: BatchHandle | None
    state: str
    submitted_at: float | None = None
    abandoned: bool = False
    attempts: int = 0
    done: bool = False


_ZERO = Cost(tier="batch", cost=Decimal(0), standard_cost=Decimal(0))


class BatchLane:
    """Drive one job's batches for one model (one :class:`~.base.BatchBackend`)."""

    def __init__(self, backend: BatchBackend, store: LaneStore, *, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[Any]], poll_interval: float = 60.0,
                 retry_one: RetryOne | None = None, should_abandon: Callable[[LaneView], bool] | None = None,
                 on_leftovers: Callable[[list[str]], Any] | None = None, max_submit_attempts: int = 3,
                 id_prefix: str | None = None) -> None:
        self.backend = backend
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.retry_one = retry_one
        self.should_abandon = should_abandon
        self.on_leftovers = on_leftovers
        self.max_submit_attempts = max_submit_attempts
        self.id_prefix = id_prefix or f"fx{secrets.token_hex(3)}"
        self._seq = itertools.count(1)
        self._tracked: dict[str, _Tracked] = {}
        self._statuses: dict[str, BatchStatus] = {}
        self.report = LaneReport()
        #: why the items of the latest hand-back left the batch lane (read by ``on_leftovers``)
        self.leftover_reason: str | None = None

    # -- public ---------------------------------------------------------------------------------
    async def run(self, items: Iterable[BatchItem] = ()) -> LaneReport:
        """Reattach to open batches, submit ``items`` in new batches, and see every batch to its end."""
        for ob in self.store.open_batches():
            tr = _Tracked(ob.local_id, list(ob.item_ids), ob.handle, ob.state, abandoned=ob.abandoned)
            if tr.abandoned and tr.handle is None:
                # handed back before the provider confirmed it: never look for it to resubmit
                self.store.batch_state(tr.local_id, "cancelled", at=self.clock(),
                                       message="abandoned before the provider confirmed it")
                continue
            self._tracked[tr.local_id] = tr
            if tr.handle is not None:
                self.report.reattached += 1
        for tr in list(self._tracked.values()):
            if tr.handle is None:
                await self._recover(tr)
        for chunk in self.backend.split(items):
            await self._submit_new(chunk)
        while self._active():
            for tr in self._active():
                await self._step(tr)
            if self.should_abandon is not None and any(not t.abandoned for t in self._active()):
                if self.should_abandon(self.view()):
                    await self.abandon()
            if self._active():
                await self.sleep(self.poll_interval)
        return self.report

    def view(self) -> LaneView:
        active = self._active()
        subs = [t.submitted_at for t in active if t.submitted_at is not None]
        return LaneView(now=self.clock(), open_batches=len(active),
                        open_items=sum(len(t.item_ids) for t in active if not t.abandoned),
                        submitted_at=min(subs) if subs else None,
                        statuses={t.local_id: self._statuses[t.local_id] for t in active
                                  if t.local_id in self._statuses})

    async def abandon(self) -> list[str]:
        """Cancel every open batch and hand its items back now (straggler rescue)."""
        handed: list[str] = []
        now = self.clock()
        for tr in self._active():
            if tr.abandoned:
                continue
            tr.abandoned = True
            if tr.handle is not None:
                try:
                    await asyncio.to_thread(self.backend.cancel, tr.handle)
                except Exception as exc:  # noqa: BLE001 - the items are handed back whatever the provider says
                    log.warning("cancel of batch %s failed: %s", tr.local_id, exc)
                # durable: a resume after a crash keeps polling the cancelled batch for its late
                # output (billed lines become results or duplicate rows), never resubmits it
                self.store.batch_abandoned(tr.local_id, tr.item_ids, at=now)
            else:
                tr.done = True
                self.store.release(tr.item_ids, at=now)
                self.store.batch_state(tr.local_id, "cancelled", at=now, message="abandoned before submission")
            handed.extend(tr.item_ids)
        self.report.abandoned = True
        self._leftovers(handed, "straggler rescue: the planner cancelled the open batches to meet the deadline")
        return handed

    # -- submission ---------------------------------------------------------------------------------
    def _new_local_id(self) -> str:
        return f"{self.id_prefix}-{next(self._seq):05d}-{secrets.token_hex(4)}"

    async def _submit_new(self, chunk: list[BatchItem]) -> None:
        ids = [it.item_id for it in chunk]
        if len(chunk) < self.backend.min_items:
            # never entered a batch: they are still pending in the store
            self._leftovers(ids, f"{len(chunk)} items are under {self.backend.provider}'s minimum of "
                                 f"{self.backend.min_items} records per batch job")
            return
        local_id = self._new_local_id()
        self.store.batch_intent(local_id, self.backend.provider, ids, at=self.clock())
        tr = _Tracked(local_id, ids, None, "preparing")
        self._tracked[local_id] = tr
        await self._submit(tr, chunk)
        if tr.handle is not None:
            self.report.submitted += 1

    async def _submit(self, tr: _Tracked, chunk: list[BatchItem]) -> None:
        tr.attempts += 1
        try:
            handle = await asyncio.to_thread(self.backend.submit, chunk, tr.local_id)
        except Exception as exc:  # noqa: BLE001 - classified by the backend, decided by the table
            refused = self._refused(exc)
            if refused or tr.attempts >= self.max_submit_attempts:
                log.warning("batch %s was not accepted (%s); its items leave the batch lane", tr.local_id, exc)
                self._give_up(tr, "failed", str(exc))
            else:
                log.warning("submitting batch %s failed (%s); will look for it and retry", tr.local_id, exc)
            return
        now = self.clock()
        tr.handle, tr.state, tr.submitted_at = handle, "validating", now
        self.store.batch_submitted(tr.local_id, handle, at=now)
        self.report.batches[tr.local_id] = "validating"

    def _refused(self, exc: BaseException) -> bool:
        """True when the provider definitely refused a submission (the ``"batch"`` column of
        :func:`flextier.policy.rules.decide`: any non-retryable class), so retrying it or looking
        for it is pointless. The backend's adapter classifies the SDK exception."""
        err = self.backend.classify(exc)
        return decide(err if err is not None else exc, tier="batch", context="batch").do == FAIL

    async def _recover(self, tr: _Tracked) -> None:
        """A batch recorded but not confirmed: find it at the provider, or submit it (again)."""
        try:
            found = await asyncio.to_thread(self.backend.find, tr.local_id, tr.item_ids)
        except Exception as exc:  # noqa: BLE001 - try again next round
            log.warning("looking up batch %s failed: %s", tr.local_id, exc)
            return
        if found is not None:
            now = self.clock()
            tr.handle, tr.state, tr.submitted_at = found, "validating", now
            self.store.batch_submitted(tr.local_id, found, at=now)
            self.report.recovered += 1
            return
        items = self.store.load_items(tr.item_ids)
        await self._submit(tr, items)
        if tr.handle is not None:
            self.report.resubmitted += 1

    def _give_up(self, tr: _Tracked, state: str, message: str) -> None:
        now = self.clock()
        tr.done, tr.state = True, state
        self.store.batch_state(tr.local_id, state, at=now, message=message[:500])
        self.store.release(tr.item_ids, at=now)
        self.report.batches[tr.local_id] = state
        self._leftovers(tr.item_ids, f"the provider did not accept batch {tr.local_id}: {message[:300]}")

    # -- polling and collection --------------------------------------------------------------------------
    def _active(self) -> list[_Tracked]:
        return [t for t in self._tracked.values() if not t.done]

    async def _step(self, tr: _Tracked) -> None:
        if tr.handle is None:
            await self._recover(tr)
            return
        try:
            status = await asyncio.to_thread(self.backend.poll, tr.handle)
        except Exception as exc:  # noqa: BLE001 - polling is idempotent: try again next round
            log.warning("polling batch %s failed: %s", tr.local_id, exc)
            return
        self._statuses[tr.local_id] = status
        if status.state != tr.state:
            tr.state = status.state
            self.report.batches[tr.local_id] = status.state
            if not status.terminal:
                self.store.batch_state(tr.local_id, status.state, at=self.clock(), message=status.message)
        if status.terminal:
            await self._finish(tr, status)

    async def _finish(self, tr: _Tracked, status: BatchStatus) -> None:
        assert tr.handle is not None
        try:
            results = await asyncio.to_thread(lambda: list(self.backend.collect(tr.handle)))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the batch stays open; collect again next round
            log.warning("collecting batch %s failed: %s", tr.local_id, exc)
            tr.state = "collecting"
            return
        entry = self.backend.entry
        retry: list[ItemResult] = []
        for r in results:
            now = self.clock()
            if r.ok:
                cost = price_usage(r.usage or Usage(), entry, "batch")
                verdict = self.store.record_result(r, cost=cost, at=now, source=tr.local_id)
                if verdict == "recorded":
                    self.report.done += 1
                elif verdict == "taken":
                    self.store.record_duplicate(r, cost=cost, at=now)
                    self.report.duplicates += 1
            elif tr.abandoned:
                continue                 # handed back already: the online lanes own this item
            elif not r.retryable:
                if self.store.record_result(r, cost=_ZERO, at=now, source=tr.local_id) == "recorded":
                    self.report.failed += 1
            else:
                retry.append(r)
        self.store.commit()
        if retry:
            await self._retry_lines(retry)
            self.store.commit()
        tr.done = True
        self.store.batch_state(tr.local_id, status.state, at=self.clock(), message=status.message)
        self.report.batches[tr.local_id] = status.state

    async def _retry_lines(self, failed: list[ItemResult]) -> None:
        """Failed lines, one at a time: through ``retry_one`` if given, else back to the caller."""
        ids = [r.item_id for r in failed]
        if self.retry_one is None:
            self.store.release(ids, at=self.clock())
            kinds = sorted({str((r.error or {}).get("kind") or "error") for r in failed})
            self._leftovers(ids, f"{len(ids)} lines of a batch ended unanswered ({', '.join(kinds)}) and are "
                                 f"worth retrying")
            return
        done = self.store.finished(ids)       # retried before a crash: never send twice
        items = {it.item_id: it for it in self.store.load_items([i for i in ids if i not in done])}
        entry = self.backend.entry
        for r in failed:
            item = items.get(r.item_id)
            if item is None:
                continue
            res = await self.retry_one(item, r)
            self.report.retried += 1
            now = self.clock()
            cost = price_usage(res.usage or Usage(), entry, res.tier) if res.ok else _ZERO
            verdict = self.store.record_result(res, cost=cost, at=now, source=f"retry:{res.tier}")
            if verdict == "recorded":
                if res.ok:
                    self.report.done += 1
                else:
                    self.report.failed += 1
            elif verdict == "taken" and res.ok:
                self.store.record_duplicate(res, cost=cost, at=now)
                self.report.duplicates += 1

    def _leftovers(self, ids: list[str], why: str) -> None:
        if not ids:
            return
        self.report.leftovers.extend(ids)
        self.report.leftover_reasons.append((len(ids), why))
        self.leftover_reason = why
        if self.on_leftovers is not None:
            self.on_leftovers(list(ids))
