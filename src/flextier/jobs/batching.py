"""The batch lane inside ``flextier run``: the glue between the runner and :mod:`flextier.batch`.

Why a separate module: the runner's loop stays about the online lanes; this holds everything
it needs to hand work to provider batches and take it back.

* **Taking work.** When the planner says ``use_batch`` (or ``--tier batch``), every pending
  item is reserved for the batch lane in one statement (:meth:`JobStore.claim_for_batch`), so
  the online claim loop can never take it too, and a :class:`~flextier.batch.lane.BatchLane`
  streams the reserved items into provider batches. This happens once per run: items that
  come back later (per-line retries, an expired batch's unfinished lines, a straggler
  rescue) go to the online lanes, one by one, never into a whole new batch.
* **Resume.** When the store has open batches, a lane reattaches to them (``run([])``) before
  anything else; new lanes of the same run never track batches they did not submit.
* **Rescue.** The lane asks ``should_abandon`` every polling round: true while the planner's
  decision carries ``batch_rescue``. Handed-back items become pending again and the runner's
  claim loop is woken.
* **First result wins.** Batch results are recorded through :class:`JobStoreLane`, which
  refuses a second final result (:meth:`JobStore.is_final`) and writes a ``duplicate`` ledger
  row for a billed answer that lost; the runner does the same for online answers
  (:meth:`Accounting.bill <flextier.jobs.accounting.Accounting.bill>`). Either way an item is counted once, and the client ledger
  (billed + duplicate rows) equals the provider's bill.
* **Commit before report.** The lane store commits through the runner's own flush, so batch
  results reach the output file and the counters exactly like online ones.
* **A forced tier is an order**. Under ``--tier batch`` nothing ever goes
  online: items the lane hands back (a batch the provider did not accept, a chunk under
  Bedrock's minimum, lines a batch left unanswered) stay pending, and when the lane has
  nothing open any more the job pauses (:class:`~flextier.jobs.runner.JobPaused`, exit 3)
  with the lane's reason; a resume submits them in a new batch. Under ``--tier auto`` they
  go to flex/standard, and the reason is an event (``batch_leftovers``) that the summary
  prints (:func:`lane_switches`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from ..batch.base import BatchItem, ItemResult
from ..batch.lane import BatchLane, LaneView, OpenBatch
from ..cost import Cost
from ..errors import JobPaused
from .batch_store import JobStoreLane
from .input import inject_max, request_to_call

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import ModelEntry
    from ..policy.planner import Decision
    from .accounting import Accounting
    from .clock import Clock
    from .options import RunOptions
    from .store import JobStore

log = logging.getLogger("flextier.runner")

__all__ = ["RunnerBatch", "BatchHost", "lane_switches"]


class BatchHost(Protocol):
    """What the batch lane needs of the run it serves (a :class:`~flextier.jobs.runner.Runner`).

    A small interface instead of the runner's internals, so the two modules do not import
    each other: read-only state, the one accounting step, and a few control calls.
    """

    store: "JobStore"
    entry: "ModelEntry"
    opts: "RunOptions"
    clock: "Clock"
    decision: "Decision | None"
    accounting: "Accounting"

    @property
    def stopping(self) -> bool: ...

    def wake(self) -> None: ...

    def flush(self, claim: int = 0) -> Any: ...

    def pause(self, paused: JobPaused) -> None: ...

    def reopen_claims(self) -> None: ...

    def batch_failed(self, why: str) -> None: ...


class _LaneStore(JobStoreLane):
    """The job store as the lane sees it from inside a runner: results also feed the runner's counters."""

    def __init__(self, rb: "RunnerBatch", *, reattach: bool) -> None:
        r = rb.runner
        super().__init__(r.store, r.entry, job_params=r.opts.params, flush=rb.flush, prepare=rb.prepare)
        self.rb = rb
        self.reattach = reattach

    def open_batches(self) -> list[OpenBatch]:
        # only the reattaching lane tracks batches from before; a new lane tracks its own
        return super().open_batches() if self.reattach else []

    def record_result(self, result: ItemResult, *, cost: Cost, at: float, source: str) -> str:
        verdict = super().record_result(result, cost=cost, at=at, source=source)
        if verdict == "recorded":
            self.rb.counted(result, cost)
        return verdict


class RunnerBatch:
    """The batch lanes of one :class:`~flextier.jobs.runner.Runner` run."""

    def __init__(self, runner: BatchHost, backend: Any) -> None:
        self.runner = runner
        self.backend = backend
        self.tasks: set[asyncio.Task[Any]] = set()
        self.lanes: list[BatchLane] = []
        self.started = False          # pending items were taken for a batch in this run
        self.seen = False             # a batch lane ran in this run: online results must check is_final
        self.reserved_left = 0        # reserved items not yet handed to the lane's splitter
        self.failed: str | None = None
        self.forced = runner.opts.tier_mode == "batch"   # --tier batch: never send an item online
        self.refused: list[tuple[int, str]] = []          # (items, why) kept back under --tier batch

    # -- hooks given to the lane ----------------------------------------------------------
    def flush(self) -> None:
        self.runner.flush()
        self.runner.wake()

    def prepare(self, req: Any) -> None:
        """The job's ``--max-tokens`` also bounds native request bodies sent in a batch."""
        job_max = self.runner.opts.params.get("max_tokens")
        if job_max:
            inject_max(req, job_max)

    def counted(self, result: ItemResult, cost: Cost) -> None:
        """A batch result became the item's final result (queued; reported after commit)."""
        self.runner.accounting.batch_result(result, cost)

    def should_abandon(self, view: LaneView) -> bool:
        d = self.runner.decision
        return d is not None and d.batch_rescue != "none"

    def on_leftovers(self, ids: list[str], why: str | None = None) -> None:
        """Items back from the batch lane: pending again. ``--tier auto``: the online lanes take
        them (claim loop woken; the summary says why). ``--tier batch``: they wait for a resume
        and the job pauses once the lane has nothing open (:meth:`_done`)."""
        r = self.runner
        seqs = self._seqs(ids)
        r.store.unreserve(seqs)      # never entered a batch (the lane released the others already)
        why = why or "handed back by the batch lane"
        if self.forced:
            self.refused.append((len(ids), why))
            r.store.event(r.clock.now(), "batch_refused", {"items": len(ids), "why": why[:500]})
            return
        r.store.event(r.clock.now(), "batch_leftovers", {"items": len(ids), "why": why[:500]})
        r.reopen_claims()

    def _seqs(self, ids: Sequence[str]) -> list[int]:
        return self.runner.store.seqs_of(ids)

    # -- state for the planner ----------------------------------------------------------------
    @property
    def active(self) -> bool:
        return any(not t.done() for t in self.tasks)

    def in_batch(self) -> int:
        return self.reserved_left + sum(lane.view().open_items for lane in self.lanes)

    def submitted_at(self) -> float | None:
        return self.runner.store.open_batch_submitted_at() if self.active else None

    def final_elsewhere(self, seq: int) -> bool:
        """An online copy of ``seq`` may have been beaten by the batch copy (after a rescue)."""
        return self.seen and self.runner.store.is_final(seq)

    # -- starting lanes ---------------------------------------------------------------------------
    def _lane(self, *, reattach: bool) -> BatchLane:
        r = self.runner
        lane = BatchLane(self.backend, _LaneStore(self, reattach=reattach), clock=r.clock.now, sleep=r.clock.asleep,
                         poll_interval=r.opts.batch_poll_interval, should_abandon=self.should_abandon)
        lane.on_leftovers = lambda ids: self.on_leftovers(ids, lane.leftover_reason)
        self.lanes.append(lane)
        self.seen = True
        return lane

    def reattach(self) -> bool:
        """Resume: poll the store's open batches again (never resubmit them). True if there were any."""
        if not self.runner.store.open_batches():
            return False
        lane = self._lane(reattach=True)
        self._spawn(lane.run([]), "reattach")
        return True

    def start(self) -> int:
        """Take every pending item for the batch lane and start submitting. Returns how many."""
        self.started = True
        n = self.runner.store.claim_for_batch()
        if n == 0:
            return 0
        self.reserved_left = n
        lane = self._lane(reattach=False)
        self.runner.store.event(self.runner.clock.now(), "batch_start", {"items": n})
        self._spawn(lane.run(self._items()), "submit")
        return n

    def _items(self) -> Iterator[BatchItem]:
        """The reserved items, streamed in input order (the lane's splitter holds one chunk)."""
        r = self.runner
        last = -1
        while True:
            rows = r.store.reserved_items(last, 1000)
            if not rows:
                break
            for c in rows:
                last = c.seq
                self.reserved_left = max(0, self.reserved_left - 1)
                try:
                    req = request_to_call(c.request, r.entry, r.opts.params)
                    self.prepare(req)
                except Exception as exc:  # noqa: BLE001 - the online path reports it properly
                    log.warning("item %s cannot go into a batch (%s)", c.custom_id, exc)
                    self.on_leftovers([c.custom_id], f"its request cannot be built: {exc}")
                    continue
                yield BatchItem(c.custom_id, req)
        self.reserved_left = 0

    def _spawn(self, coro: Any, what: str) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(lambda task: self._done(task, what))

    def _done(self, task: asyncio.Task[Any], what: str) -> None:
        r = self.runner
        r.wake()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if self.forced and self.refused and not self.active and not r.stopping:
                r.pause(self.refusal())
            return
        # The lane failed outside its own error handling (a backend bug, a store error). Its
        # items must not stay stuck in the batch state: back to the online lanes, loudly.
        log.warning("the batch lane stopped (%s: %s); its items go to the online lanes", type(exc).__name__, exc)
        self.failed = f"{type(exc).__name__}: {exc}"
        self.reserved_left = 0
        try:
            r.store.unreserve()
            for ob in r.store.open_batches():
                seqs = r.store.seqs_in_batch(ob["id"])
                r.store.leave_batch(seqs)
                r.store.update_batch(ob["id"], state="failed")
            r.store.event(r.clock.now(), "batch_lane_failed", {"error": self.failed[:300]})
        except Exception:  # pragma: no cover
            log.exception("could not release the batch items; a resume will")
        r.reopen_claims()
        r.batch_failed(self.failed)

    def refusal(self) -> Any:
        """The pause of a ``--tier batch`` job whose items the batch lane could not take."""
        n = sum(k for k, _ in self.refused)
        whys = list(dict.fromkeys(w for _, w in self.refused))
        name = (self.runner.store.job() or {}).get("name") or "JOB"
        return JobPaused(f"--tier batch: the batch lane could not take {n} item{'s' * (n != 1)} "
                         f"({'; '.join(whys)[:400]}); none was sent on another tier. The job is saved: fix the "
                         f"cause and resume it (flextier resume {name}), or rerun the command with --tier auto "
                         f"to let flextier use flex and standard", kind="batch")

    async def stop(self) -> None:
        """Shutdown: stop polling (open batches stay open for a resume), unreserve unsubmitted items."""
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.reserved_left = 0
        try:
            self.runner.store.unreserve()
        except Exception:  # pragma: no cover
            log.exception("could not release reserved items; a resume will")


def make_batch_backend(entry: Any, *, base_url: str | None, api_key: str | None, s3_uri: str | None = None,
                       role_arn: str | None = None, required: bool = False,
                       s3_endpoint_url: str | None = None) -> Any:
    """The batch backend for a job, or None when the batch lane is not available for it.

    ``required`` (``--tier batch``) turns "not available" into a :class:`UserInputError`
    that says what is missing. Bedrock needs an S3 location for input and output
    (``--batch-s3-uri s3://bucket/prefix``) and a service role Bedrock can assume
    (``--batch-role-arn``); the S3 endpoint is ``s3_endpoint_url`` (``--emulate``: the
    emulator's own S3) or boto3's own settings (``AWS_ENDPOINT_URL_S3``). While emulating,
    every client the backend builds must be on loopback (:mod:`flextier._loopback`).
    """
    from .._loopback import check_endpoint

    from ..errors import UserInputError

    def no(why: str) -> None:
        if required:
            raise UserInputError(why, field="--tier")
        log.info("batch lane off: %s", why)

    if not getattr(entry, "supports_batch", False):
        return no(f"{entry.name} has no batch tier; use --tier auto, flex or standard")
    kw: dict[str, Any] = {}
    if entry.provider == "bedrock":
        if not s3_uri or not role_arn:
            return no("Bedrock batch jobs read and write S3: give --batch-s3-uri s3://BUCKET/PREFIX and "
                      "--batch-role-arn ARN (a role Bedrock can assume to read and write there)")
        if not s3_uri.startswith("s3://") or not s3_uri[5:].split("/", 1)[0]:
            raise UserInputError(f"expected s3://BUCKET/PREFIX, got {s3_uri!r}", field="--batch-s3-uri")
        bucket, _, prefix = s3_uri[5:].partition("/")
        try:
            import boto3

            region = boto3.session.Session().region_name or "us-east-1"
        except ImportError as exc:
            return no(f"the Bedrock batch lane needs boto3 ({exc})")
        kw.update(bucket=bucket, prefix=prefix.strip("/") or "flextier", role_arn=role_arn, endpoint_url=base_url,
                  region=region, s3_endpoint_url=s3_endpoint_url)
    else:
        check_endpoint(base_url, f"{entry.provider} batch")
        kw.update(base_url=base_url, api_key=api_key)
    from ..batch import get_backend

    try:
        return get_backend(entry, **kw)
    except ImportError as exc:
        return no(f"the batch lane for {entry.provider} needs its SDK ({exc})")


def lane_switches(store: Any) -> list[str]:
    """Summary lines: why work left the batch lane (``--tier auto`` switched lanes, or ``--tier
    batch`` kept items back), one line per reason, from the events of the job's latest run."""
    moved: dict[str, int] = {}
    kept: dict[str, int] = {}
    events = store.events()
    starts = [i for i, (_, kind, _) in enumerate(events) if kind == "run_start"]
    events = events[starts[-1]:] if starts else events
    for _, kind, d in events:
        if kind in ("batch_leftovers", "batch_refused") and isinstance(d, dict):
            bucket = moved if kind == "batch_leftovers" else kept
            why = str(d.get("why") or "handed back by the batch lane")
            bucket[why] = bucket.get(why, 0) + int(d.get("items") or 0)
    out = [f"batch lane: {n} items sent online instead ({why})" for why, n in moved.items()]
    out += [f"batch lane: {n} items kept back, not sent on another tier ({why})" for why, n in kept.items()]
    out += [f"batch lane: failed ({d.get('error')})" for _, kind, d in events
            if kind == "batch_lane_failed" and isinstance(d, dict)]
    return out
