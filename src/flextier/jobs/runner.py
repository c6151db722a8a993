"""The async engine of ``flextier run``: keep flex full, buy standard only to hold the deadline.

One :class:`Runner` drives one job store. Its loop, all on one event loop:

* **Claim** pending items from the store in small chunks (committed as ``inflight`` before
  anything is sent, so a crash knows what may have been billed) into a local ready queue.
  Memory is bounded by concurrency: the queue never holds more than about two lanes' worth.
* **Dispatch** from the ready queue to two lanes, as the planner
  (:class:`flextier.policy.planner.Planner`, a pure unit) decides at every tick:
  the flex lane is kept full up to the AIMD window (:class:`AimdController`), backs off as a
  whole on a shed (exponential full jitter, :class:`Backoff`) and takes no new work after the
  safety net; the standard lane opens at the planner's rate, or for everything left.
  Every send is paced by the :class:`RateLimiter` (flags and ``x-ratelimit-*`` headers) and
  must fit the :class:`Budget` (spent + reserved never passes ``--max-cost``).
* **Record** each attempt and each final result through the store's batched writer. A
  periodic flush commits them; only then are result lines appended to the output file and
  counted as done (commit before report).
* **Batch** (:mod:`.batching`): when the planner says ``use_batch`` (or ``--tier batch``),
  the pending items are reserved for provider batches, driven by a
  :class:`~flextier.batch.lane.BatchLane` task on the same loop; items it hands back (per-line
  retries, a straggler rescue) come through the claim loop to the online lanes. First result
  wins: an online answer for an item a batch already finished is only a ``duplicate`` ledger row.

Time: everything reads the injected :class:`Clock` (``now()`` / ``asleep()`` / ``time_scale``),
so with the emulator's scaled clock a 3-hour deadline plays out in seconds, and backoff,
timeouts and the planner all live in emulated time.

Retry rules: the ``"job"`` column of the decision table, :func:`flextier.policy.rules.decide`
(documented in ``docs/errors.md``); :meth:`Runner._on_error` only carries its answer out.
flex shed -> lane backoff + AIMD cut, item back to the front of the queue (standard may take
it); rate limit -> lane pause, not a capacity signal; transient / overloaded -> item retried
with its own backoff, the ``max_item_errors``-th error fails it; timeout -> resent at once,
counted as an item error; bad request -> item failed; refused key, wrong URL, a run of
quota refusals, implausible usage -> the job pauses (resumable); flex not supported -> flex
lane closed.
"""
from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Protocol

from .._types import AttemptOutcome, CallRequest
from ..catalog import ModelEntry
from ..cost import price_usage
from ..policy.backoff import Backoff
from ..policy.budget import (Budget, estimate_cost, implausible_usage, output_bound, prompt_tokens_upper_bound,
                             request_answers, request_output_limit)
from ..policy.concurrency import AimdConfig, AimdController, RateLimiter
from ..errors import ProviderError, UserInputError
from ..errors import JobPaused  # re-exported: flextier.jobs.runner.JobPaused keeps working
from ..policy.rules import (CLOSE_FLEX, FAIL, MAX_ITEM_ERRORS, PAUSE, QUOTA_STOP_AFTER, REQUEUE, RESEND,
                            RESEND_ON_TIMEOUT, Limits, decide, on_provider_fault)
from ..policy.planner import (SAFETY, Decision, InFlight, Observation, Planner, PlannerConfig,
                              changeover_delay_for, standard_capacity)
from .batching import RunnerBatch
from .input import inject_max, request_to_call
from .sends import SendBook
from .store import DONE, FAILED, ClaimedItem, FinishedItem, FlushResult, JobStore
from .output import OutputSink

log = logging.getLogger("flextier.runner")


# --------------------------------------------------------------------------------------
# clock
# --------------------------------------------------------------------------------------

class Clock(Protocol):
    """What the runner needs of time. The emulator's ``ScaledClock`` satisfies it."""

    time_scale: float

    def now(self) -> float: ...

    async def asleep(self, seconds: float) -> None: ...


class WallClock:
    """Real time: epoch seconds, ordinary sleeps."""

    time_scale = 1.0

    def now(self) -> float:
        return time.time()

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


# --------------------------------------------------------------------------------------
# options, state
# --------------------------------------------------------------------------------------

@dataclass
class RunOptions:
    """Everything about how a job runs (all times in the clock's seconds)."""

    model: ModelEntry
    tier_mode: str = "auto"
    deadline: float | None = None
    concurrency: int = 256
    standard_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    max_cost: Decimal | None = None
    ordered: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    flex_timeout: float = 900.0
    standard_timeout: float = 600.0
    max_item_errors: int = MAX_ITEM_ERRORS    # the 5th retryable error of an item fails it (policy.rules)
    resend_on_timeout: int = RESEND_ON_TIMEOUT  # cap on resends of a timed-out send (maybe billed)
    quota_stop_after: int = QUOTA_STOP_AFTER  # consecutive quota refusals that pause the job
    min_wall_timeout: float = 10.0        # real seconds; see _attempt
    changeover_delay: float | None = None   # d of the planner; None: changeover_delay_for(window)
    margin: float = 60.0
    assumed_standard_latency: float = 20.0
    flush_interval: float = 0.05          # wall seconds between store commits
    flush_rows: int = 512                 # ... or as soon as this many rows wait
    tick: float | None = None             # planner interval (clock seconds); default from time_scale
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=120.0))
    seed: int | None = None
    # [policy hook] a planner class (PlannerConfig -> planner) used instead of Planner; only for
    # bench/policy.py's baselines (flextier.policy.baselines), so all policies share this engine
    policy: Callable[[PlannerConfig], Any] | None = None
    # batch lane; used only when the Runner gets a batch backend
    batch_poll_interval: float = 60.0     # clock seconds between polls of open batches
    batch_window: float = 24 * 3600.0     # the provider's completion window, as the planner assumes it
    batch_min_runway: float = 4 * 3600.0  # model without flex: batch only with this much room (p90 turnaround)
    # expected relative flex availability at a clock value (e.g. the provider's diurnal curve): bends
    # the planner's uniform line toward the hours flex is expected to be plentiful (docs/deadline-policy.md
    # §3 rule 5); None = a straight line. The safety net does not depend on it.
    availability: Callable[[float], float] | None = None

    @property
    def std_concurrency(self) -> int:
        return self.standard_concurrency or self.concurrency


@dataclass(slots=True)
class Work:
    """An item in this process: claimed from the store, not yet final."""

    seq: int
    custom_id: str
    request: str
    line: int
    attempts: int
    possibly_billed: int
    req: CallRequest | None = None
    max_out: int | None = None
    out_bound: int | None = None  # per answer: the request's own limit, else the catalog's maximum
    answers: int = 1              # n (candidateCount): the reservation holds this many answers
    prompt_ub: int | None = None
    est_tokens: int = 0
    est_cost: Decimal | None = None
    errors: int = 0
    timeouts: int = 0
    last_error: ProviderError | None = None
    not_before: float = 0.0
    active: int = 0           # attempts in flight (2 while hedged)
    final: bool = False
    flex_started: float | None = None


@dataclass
class Stats:
    """Live counters for progress and the summary. Done counts are durable (committed) ones."""

    total: int = 0
    done: int = 0
    failed: int = 0
    done_at_start: int = 0
    by_tier: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    spent: Decimal = Decimal(0)
    standard_cost: Decimal = Decimal(0)
    spent_by_tier: dict[str, Decimal] = field(default_factory=dict)
    duplicates: int = 0               # billed answers that lost to another copy of their item
    duplicate_cost: Decimal = Decimal(0)
    flex_inflight: int = 0
    std_inflight: int = 0
    flex_limit: int = 0
    in_batch: int = 0                 # items inside provider batches (submitted or about to be)
    mode: str = ""
    reason: str = ""
    started: float = 0.0
    now: float = 0.0
    deadline: float | None = None
    recovered: int = 0
    possibly_billed: int = 0
    paused: str | None = None
    skipped_invalid: int = 0
    unknown_cost: int = 0             # results served at a tier with no known price (cost unknown, not $0)
    held: int = 0                     # items claimed from the store, not final: what `status` calls in flight

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def saved_pct(self) -> float | None:
        if not self.standard_cost:
            return None
        return float((self.standard_cost - self.spent) * 100 / self.standard_cost)

    @property
    def flex_share(self) -> float | None:
        n = sum(self.by_tier.values())
        return None if not n else self.by_tier.get("flex", 0) / n

    def rate(self) -> float | None:
        """Items per clock second since this run started."""
        el = self.now - self.started
        k = self.finished - self.done_at_start
        return k / el if el > 0 and k > 0 else None

    def eta(self) -> float | None:
        r = self.rate()
        left = self.total - self.finished
        if left <= 0:
            return self.now
        return None if not r else self.now + left / r


# JobPaused (the job stopped before finishing, resumably) lives in flextier/errors.py with the
# rest of the hierarchy; it is imported above and re-exported here under its old path.


# --------------------------------------------------------------------------------------
# output file
# --------------------------------------------------------------------------------------

# OutputSink (the results file: one owner, checked by content) lives in jobs/output.py


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _max_out(req: CallRequest, job_max: int | None) -> int | None:
    return request_output_limit(req) or job_max


def _request_id(outcome: AttemptOutcome) -> str | None:
    h = {k.lower(): v for k, v in (outcome.headers or {}).items()}
    return h.get("x-request-id") or h.get("request-id") or h.get("x-amzn-requestid") or (
        outcome.body.get("id") if isinstance(outcome.body, dict) else None)


def _dec_str(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def error_line(err: BaseException) -> dict[str, Any]:
    """The ``error`` object of a failed output line: code and a short message, no secrets."""
    if isinstance(err, ProviderError):
        code = err.code or type(err).__name__
        msg = err.message or type(err).__name__
    else:
        code, msg = type(err).__name__, str(err)
    return {"code": str(code), "message": str(msg)[:500], "type": type(err).__name__}


class _RateBuckets:
    """Completions per bucket over a window: a bounded stand-in for a list of timestamps.

    Feeds the planner's ``flex_throughput`` without keeping one float per completion
    (which at a million items would be the biggest thing in memory).
    """

    def __init__(self, bucket: float, n: int) -> None:
        self.bucket, self.n = bucket, n
        self.counts: deque[tuple[int, int]] = deque()

    def add(self, t: float) -> None:
        b = int(t // self.bucket)
        if self.counts and self.counts[-1][0] == b:
            self.counts[-1] = (b, self.counts[-1][1] + 1)
        else:
            self.counts.append((b, 1))
            while len(self.counts) > self.n:
                self.counts.popleft()

    def rate(self, now: float, window: float) -> float:
        lo = int((now - window) // self.bucket)
        k = sum(c for b, c in self.counts if b > lo)
        return k / window if window > 0 else 0.0


# --------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------

ResultHook = Callable[[FinishedItem, dict[str, Any]], None]


class Runner:
    """Runs the pending items of one store to completion (or to a resumable pause)."""

    def __init__(self, store: JobStore, adapter: Any, opts: RunOptions, *, clock: Clock | None = None,
                 output: OutputSink | None = None, on_result: ResultHook | None = None,
                 input_open: bool = False, batch_backend: Any = None) -> None:
        self.store = store
        self.adapter = adapter
        self.opts = opts
        self.clock: Clock = clock or WallClock()
        self.scale = float(getattr(self.clock, "time_scale", 1.0) or 1.0)
        self.output = output
        self.on_result = on_result
        self.entry = opts.model
        self.rng = random.Random(opts.seed)
        self.opts.backoff.rng = self.rng
        now = self.clock.now()
        # d: the user's, or the default scaled down for a close deadline (see changeover_delay_for)
        self.d = opts.changeover_delay if opts.changeover_delay is not None else changeover_delay_for(
            None if opts.deadline is None else max(0.0, opts.deadline - now))
        # slow start: on a calm provider the flex window reaches --concurrency within about
        # --concurrency successes; the first shed switches to plain AIMD (see AimdConfig)
        self.aimd = AimdController(AimdConfig(max_concurrency=max(1, opts.concurrency),
                                              cooldown=max(1.0, 2 * self.d / 60), slow_start=True))
        self.limiter = RateLimiter(opts.rpm, opts.tpm, now=now, max_pause=opts.backoff.retry_after_cap)
        self.budget = Budget(max_cost=opts.max_cost)
        self.sends = SendBook(store)   # a durable record of every request out
        self.stats = Stats()
        self.flex_ok = self.entry.supports_flex and opts.tier_mode in ("auto", "flex", "batch")
        # batch lane: only with a backend, never under a spending cap (a batch cannot
        # be reserved against --max-cost item by item)
        self.batch: Any = None
        if batch_backend is not None and self.entry.supports_batch and opts.max_cost is None:
            self.batch = RunnerBatch(self, batch_backend)
        self.batch_ok = self.batch is not None and opts.tier_mode in ("auto", "batch")
        if opts.tier_mode == "batch" and not self.batch_ok:
            raise UserInputError(f"--tier batch needs a batch lane for {self.entry.name} (a batch backend, a model "
                                 f"with a batch tier, and no --max-cost)", field="--tier")
        # queues
        self.ready: deque[Work] = deque()
        self.delayed: list[tuple[float, int, Work]] = []
        self._delay_n = 0
        self.flex_active: dict[int, Work] = {}
        self.std_active: dict[int, Work] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.task_of: dict[tuple[int, str], asyncio.Task[Any]] = {}
        # attempts whose coroutine has begun: a task cancelled before its first step never
        # runs its body (so never its cleanup), and was never sent either
        self._entered: set[asyncio.Task[Any]] = set()
        self.in_memory_final = 0       # items final in memory (committed or not): the planner's "done"
        self.input_open = input_open   # more items may still be imported (async iterables)
        self.store_drained = False
        # flex lane backoff
        self.flex_fail_streak = 0
        self.flex_backoff_until = -math.inf
        self.quota_streak = 0
        self.limits = Limits(max_item_errors=opts.max_item_errors, resend_on_timeout=opts.resend_on_timeout,
                             quota_stop_after=opts.quota_stop_after, flex_only=opts.tier_mode == "flex")
        # standard lane pacing
        self.std_tokens = 0.0
        self.std_tokens_at = now
        self.std_latency: float | None = None
        self.flex_latency: float | None = None
        self.flex_rate = _RateBuckets(bucket=60.0, n=32)
        # output bookkeeping
        job = store.job() or {}
        self.out_gen = job.get("out_gen", 0)
        self.out_next_seq = job.get("out_next_seq", 0)
        self._pending_out: dict[str, int] = {}
        # control
        self._wake = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._stop: JobPaused | None = None
        self._fatal: BaseException | None = None
        self.decision: Decision | None = None
        self.planner: Planner | None = None
        self._last_tick = -math.inf
        self._hedge_wanted: deque[int] = deque()
        self._budget_blocked = False
        # graceful stop (SIGTERM, first Ctrl-C; see jobs/signals.py): wall-clock end of the drain
        self._drain_until: float | None = None
        self.stop_inflight = 0         # requests in flight when the stop was asked
        self.stop_cut = 0              # ... and still in flight when the drain ended (cut off)

    # -- setup -----------------------------------------------------------------------
    def _make_planner(self, now: float) -> Planner:
        o = self.opts
        done = self.in_memory_final
        total = max(self.stats.total, done)
        deadline = o.deadline if (o.deadline is not None and o.deadline > now) else None
        tier_mode = o.tier_mode
        if tier_mode == "flex" and not self.flex_ok:
            tier_mode = "standard"  # unreachable: the CLI refuses --tier flex without flex
        # The uniform line starts a little late (a changeover delay, at least 5 minutes, at
        # most a tenth of the time left): no flex answer can arrive before a flex latency has
        # passed, and judging the first minutes by results that cannot exist yet would buy
        # standard for nothing. The safety net still guards the deadline meanwhile.
        grace = max(self.d, 300.0)
        t0 = now if deadline is None else now + min(grace, 0.1 * (deadline - now))
        cfg = PlannerConfig(
            t0=t0, total=total, deadline=deadline, tier_mode=tier_mode,
            standard_rate=standard_capacity(o.std_concurrency, o.assumed_standard_latency,
                                            o.rpm),
            d=self.d, margin=o.margin, tail=o.assumed_standard_latency,
            flex_timeout=o.flex_timeout, allow_batch=self.batch_ok, model_has_flex=self.flex_ok,
            model_has_batch=self.entry.supports_batch, batch_window=o.batch_window,
            batch_min_runway=o.batch_min_runway, done0=done, availability=o.availability)
        return (o.policy or Planner)(cfg)  # [policy hook] see RunOptions.policy

    def batch_failed(self, why: str) -> None:
        """The batch lane broke (see :mod:`.batching`): continue online, or pause a --tier batch job."""
        self.batch_ok = False
        if self.opts.tier_mode == "batch":
            self._stop = JobPaused(f"the batch lane failed ({why}); the job is saved: resume it, or run the rest "
                                   f"with --tier auto", kind="batch")
        else:
            self.planner = None  # rebuilt without batch at the next tick
        self._wake.set()

    def _load_totals(self) -> None:
        """Seed counters from the store (a resumed job continues its money and counts)."""
        c = self.store.counts()
        self.stats.total = c["total"]
        self.stats.done = c[DONE]
        self.stats.failed = c[FAILED]
        self.stats.done_at_start = c[DONE] + c[FAILED]
        self.in_memory_final = c[DONE] + c[FAILED]
        self.stats.by_tier = Counter(self.store.tier_counts())
        t = self.store.ledger_totals()
        self.stats.spent, self.stats.standard_cost = t["spent"], t["standard"]
        self.stats.spent_by_tier = dict(t["by_tier"])
        self.stats.duplicates, self.stats.duplicate_cost = t["duplicates"], t["duplicate_cost"]
        self.stats.errors = Counter(self.store.error_counts())
        self.budget.spent = t["billed_total"]  # duplicates were paid for too: they count against --max-cost
        # sends cut off by a crash, a timeout or a reset may be billed: held at their reserved cost
        self.budget.possibly_billed = self.store.possibly_billed()[1]
        job = self.store.job() or {}
        self.stats.skipped_invalid = job.get("skipped_invalid", 0)

    def _rebuild_output(self) -> None:
        """Make the output file hold exactly the committed results (see store module doc)."""
        if self.output is None:
            return
        job = self.store.job() or {}
        intact = self.output.prepare(job.get("out_offset", 0), self.store, self.opts.ordered)
        if not intact:
            self.out_gen, self.out_next_seq = 0, 0
        if self.opts.ordered:
            self._write_ordered()
        else:
            lines = [r for _, r in self.store.results_after_gen(self.out_gen)]
            for i in range(0, len(lines), 1000):
                self.output.write(lines[i:i + 1000])
            self.out_gen = self.store.generation
        self.store.flush(out_offset=self.output.offset, out_gen=self.out_gen, out_next_seq=self.out_next_seq)

    def _write_ordered(self) -> None:
        assert self.output is not None
        while True:
            rows = self.store.final_prefix(self.out_next_seq, 1000)
            if not rows:
                return
            self.output.write([r for _, r in rows if r is not None])
            self.out_next_seq = rows[-1][0] + 1

    # -- flushing --------------------------------------------------------------------
    def _flush(self, claim: int = 0) -> FlushResult:
        """Commit queued writes (and claim items), then report what became durable."""
        self.store.queue_job_update(last_clock=self.clock.now())
        kw: dict[str, Any] = {}
        if self.output is not None:
            kw = dict(out_offset=self.output.offset, out_gen=self.out_gen, out_next_seq=self.out_next_seq)
        fr = self.store.flush(claim=claim, **kw)
        if fr.finished:
            self._report(fr)
        return fr

    def _report(self, fr: FlushResult) -> None:
        """After commit: output file, counters, callbacks. Never before."""
        s = self.stats
        lines = []
        for f in fr.finished:
            if f.state == DONE:
                s.done += 1
                s.by_tier[f.served_tier or "unknown"] += 1
            else:
                s.failed += 1
            lines.append(f.result)
        if self.output is not None:
            if self.opts.ordered:
                self._write_ordered()
            else:
                self.output.write(lines)
                self.out_gen = fr.gen
        if self.on_result is not None:
            for f in fr.finished:
                try:
                    self.on_result(f, json.loads(f.result))
                except Exception:  # a user callback must not kill the job
                    log.exception("on_result callback failed")

    async def _flusher(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._flush_now.wait(), timeout=self.opts.flush_interval)
            except asyncio.TimeoutError:
                pass
            self._flush_now.clear()
            try:
                self._flush()
            except Exception as exc:  # disk full, locked store...
                self._fatal = exc
                self._wake.set()
                return
            self._wake.set()

    # -- claiming --------------------------------------------------------------------
    def _want(self) -> int:
        """How many claimed-but-unsent items to hold: what the open lanes can take, plus a little.

        Every claimed item counts as "possibly billed" if the process dies, so the
        prefetch is kept to what can be sent soon rather than a big buffer.
        """
        d = self.decision
        lanes = self.aimd.limit if self.flex_ok else 0
        if d is None or d.standard_all or d.standard_rate > 0 or not self.flex_ok:
            lanes += self.opts.std_concurrency
        return min(lanes + 8, 4096)

    def _refill(self) -> None:
        if self._stop is not None:
            return  # stopping: claim nothing more
        if self.batch_ok and not self.batch.started and (self.decision is None or self.decision.use_batch):
            return  # the planner may send the pending items to a batch: do not take them online first
        if self.batch is not None and self.batch.forced and self.batch.started:
            self.store_drained = True  # --tier batch: nothing goes online; what the lane hands back pauses the job
            return
        have = len(self.ready) + len(self.delayed)
        want = self._want() - len(self.flex_active) - len(self.std_active)
        if self.store_drained or have >= max(1, want // 2):
            return
        fr = self._flush(claim=want - have)
        for c in fr.claimed:
            self.ready.append(self._work(c))
        if not fr.claimed and not self.input_open:
            self.store_drained = True

    def _work(self, c: ClaimedItem) -> Work:
        return Work(seq=c.seq, custom_id=c.custom_id, request=c.request, line=c.line,
                    attempts=c.attempts, possibly_billed=c.possibly_billed)

    def _prepare(self, w: Work) -> None:
        """Parse the stored request once, when the item is first sent."""
        if w.req is not None:
            return
        req = request_to_call(w.request, self.entry, self.opts.params)
        job_max = self.opts.params.get("max_tokens")
        w.max_out = _max_out(req, job_max)
        if w.max_out is None and job_max:
            w.max_out = job_max
        if self.opts.max_cost is not None and w.max_out is not None:
            inject_max(req, w.max_out)
        prompt_src: Any = req.native if req.native is not None else (req.messages or [])
        prompt_ub = prompt_tokens_upper_bound(prompt_src)
        w.est_tokens = prompt_ub // 3 + (w.max_out or 256)
        w.out_bound, _ = output_bound(req, self.entry)
        w.answers, w.prompt_ub = request_answers(req), prompt_ub
        if self.opts.max_cost is not None and w.out_bound is None:
            raise UserInputError(f"item {w.custom_id!r} sets no max_tokens and the catalog has no maximum output for "
                                 f"{self.entry.name}, so --max-cost cannot bound its cost; give --max-tokens N",
                                 file=(self.store.job() or {}).get("input_path"), line=w.line, field="max_tokens")
        # Reserve at the standard price even on flex: a flex request served at standard (the
        # provider decides) must not be able to push spend past the cap. n answers reserve n outputs.
        w.est_cost = estimate_cost(self.entry, "standard", prompt_ub, (w.out_bound or 0) * w.answers) \
            if self.opts.max_cost is not None else None
        w.req = req

    # -- the planner tick ------------------------------------------------------------
    def _tick(self, now: float) -> None:
        if self.planner is None:
            self.planner = self._make_planner(now)
        cap = standard_capacity(self.opts.std_concurrency, self.std_latency or self.opts.assumed_standard_latency,
                                self.opts.rpm)
        total = max(self.stats.total, self.planner.total)
        flex_inflight = tuple(InFlight(str(w.seq), w.flex_started) for w in self.flex_active.values()
                              if w.flex_started is not None) if self.planner.mode == SAFETY else ()
        obs = Observation(
            now=max(now, self.planner._last_now or now), done=min(self.in_memory_final, total),
            pending=len(self.ready) + len(self.delayed),
            in_flight_standard=len(self.std_active), flex_in_flight=flex_inflight, total=total,
            standard_capacity=cap, standard_latency_p90=self.std_latency,
            flex_latency_p90=self.flex_latency,
            flex_throughput=self.flex_rate.rate(now, min(600.0, max(60.0, now - self.stats.started))),
            in_batch=self.batch.in_batch() if self.batch is not None else 0,
            batch_submitted_at=self.batch.submitted_at() if self.batch is not None else None)
        try:
            d = self.planner.decide(obs)
        except ValueError as exc:  # pragma: no cover - defensive: a planner bug must not stop the job
            log.warning("planner: %s", exc)
            return
        if self.decision is None or d.mode != self.decision.mode:
            self.store.event(now, "mode", {"mode": d.mode, "reason": d.reason})
            log.info("planner: %s (%s)", d.mode, d.reason)
        self.decision = d
        for h in d.hedge:
            self._hedge_wanted.append(int(h))
        if not (d.standard_all or d.standard_rate > 0):
            self.std_tokens = 0.0
        self._last_tick = now
        self.stats.mode, self.stats.reason = d.mode, d.reason
        if d.use_batch and self.batch_ok and not self.batch.started:
            self.batch.start()  # every pending item goes into provider batches (once per run)

    # -- dispatch --------------------------------------------------------------------
    def _wall(self, clock_seconds: float) -> float:
        return max(0.0, clock_seconds) / self.scale

    def _promote_delayed(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, _, w = heapq.heappop(self.delayed)
            self.ready.appendleft(w)

    def _delay(self, w: Work, until: float) -> None:
        self._delay_n += 1
        heapq.heappush(self.delayed, (until, self._delay_n, w))

    def _can_send(self, w: Work, now: float) -> float:
        """0.0 when ``w`` may be sent now (limiter charged, budget reserved), else seconds to wait.

        math.inf means "blocked by the budget cap" (no amount of waiting helps by itself).
        """
        self._prepare(w)
        if self.opts.max_cost is not None:
            if w.est_cost is None:  # the CLI checks prices up front; this guards the Python API
                raise UserInputError(f"--max-cost needs known prices for {self.entry.name}",
                                     field="--max-cost")
            if not self.budget.fits(w.est_cost):
                return math.inf
        wait = self.limiter.try_acquire(w.est_tokens, now)
        if wait > 0:
            return wait
        return 0.0

    def _start(self, w: Work, tier: str, now: float) -> None:
        key = (w.seq, tier)
        reserved = w.est_cost if self.opts.max_cost is not None else None
        self.budget.reserve(key, reserved)
        self.sends.opened(key, w.seq, tier, reserved, now)  # committed by the attempt before it sends
        w.active += 1
        w.attempts += 1
        if tier == "flex":
            self.flex_active[w.seq] = w
            w.flex_started = now
        else:
            self.std_active[w.seq] = w
        t = asyncio.get_running_loop().create_task(self._attempt(w, tier, now))
        self.tasks.add(t)
        self.task_of[key] = t
        t.add_done_callback(lambda task: self._reap(task, w, tier))

    def _reap(self, task: asyncio.Task[Any], w: Work, tier: str) -> None:
        """Done callback of an attempt. A task cancelled before its first step (a hedge loser
        cancelled in the same loop turn it was started in) never ran ``_attempt``, so its
        bookkeeping is undone here; otherwise the item would stay "active" and the job would
        never end."""
        self.tasks.discard(task)
        if task in self._entered:
            self._entered.discard(task)
            return
        if self.task_of.get((w.seq, tier)) is task:
            self.task_of.pop((w.seq, tier), None)
        self.budget.release((w.seq, tier))
        self.sends.settled((w.seq, tier))  # never sent
        w.active -= 1
        active = self.flex_active if tier == "flex" else self.std_active
        if active.get(w.seq) is w:
            active.pop(w.seq, None)
        self._wake.set()

    def _dispatch(self, now: float) -> float:
        """Start whatever may start now; return clock seconds until something could change."""
        d = self.decision
        wait = math.inf
        if d is None:
            return 0.0
        self._budget_blocked = False
        # hedges: duplicate late flex attempts on standard (safety net)
        while self._hedge_wanted and len(self.std_active) < self.opts.std_concurrency:
            seq = self._hedge_wanted.popleft()
            w = self.flex_active.get(seq)
            if w is None or w.final or seq in self.std_active:
                continue
            wt = self._can_send(w, now)
            if wt > 0:
                self._hedge_wanted.appendleft(seq)
                wait = min(wait, wt)
                self._budget_blocked = wt == math.inf
                break
            self._start(w, "standard", now)
        # While the bulk sits in batches, items handed back (per-line retries, unfinished lines of
        # an expired batch) are sent online one by one: flex, or standard for a model without flex.
        std_all = d.standard_all or (d.use_batch and not self.flex_ok)
        flex_open = d.flex_open or (d.use_batch and self.flex_ok)
        # standard lane
        if std_all or d.standard_rate > 0:
            if not std_all:
                self.std_tokens = min(max(1.0, d.standard_rate * 30.0),
                                      self.std_tokens + d.standard_rate * max(0.0, now - self.std_tokens_at))
            self.std_tokens_at = now
            while self.ready and len(self.std_active) < self.opts.std_concurrency:
                if not std_all and self.std_tokens < 1.0:
                    wait = min(wait, (1.0 - self.std_tokens) / d.standard_rate)
                    break
                w = self.ready[0]
                if w.seq in self.std_active or self._final_elsewhere(w):  # hedged copy on standard / batch won
                    self.ready.popleft()
                    continue
                wt = self._can_send(w, now)
                if wt > 0:
                    wait = min(wait, wt)
                    self._budget_blocked = wt == math.inf
                    break
                self.ready.popleft()
                self._start(w, "standard", now)
                if not std_all:
                    self.std_tokens -= 1.0
        else:
            self.std_tokens_at = now
        # [policy hook] a baseline policy may send the items at the head of the queue to standard
        if getattr(self.planner, "divert_to_standard", None) is not None:
            wait = min(wait, self._divert_to_standard(now))
        # flex lane
        if flex_open and self.flex_ok and not std_all:
            if now < self.flex_backoff_until:
                wait = min(wait, self.flex_backoff_until - now)
            else:
                while self.ready and len(self.flex_active) < self.aimd.limit:
                    w = self.ready[0]
                    if self._final_elsewhere(w):  # a batch answered it first (straggler rescue)
                        self.ready.popleft()
                        continue
                    wt = self._can_send(w, now)
                    if wt > 0:
                        wait = min(wait, wt)
                        self._budget_blocked = wt == math.inf
                        break
                    self.ready.popleft()
                    self._start(w, "flex", now)
        if self.delayed:
            wait = min(wait, self.delayed[0][0] - now)
        return wait

    def _divert_to_standard(self, now: float) -> float:
        """[policy hook] Start on standard the head-of-queue items the policy diverts (e.g. after
        3 failed flex tries, :class:`~flextier.policy.baselines.FlexRetriesPolicy`), within the
        standard lane's limits. Returns clock seconds until one could start (inf: none waiting)."""
        divert = self.planner.divert_to_standard  # type: ignore[union-attr]
        while self.ready and len(self.std_active) < self.opts.std_concurrency:
            w = self.ready[0]
            if w.final or w.seq in self.std_active or not divert(w.attempts):
                break
            wt = self._can_send(w, now)
            if wt > 0:
                self._budget_blocked = wt == math.inf
                return wt
            self.ready.popleft()
            self._start(w, "standard", now)
        return math.inf

    # -- one attempt -----------------------------------------------------------------
    async def _attempt(self, w: Work, tier: str, started: float) -> None:
        timeout = self.opts.flex_timeout if tier == "flex" else self.opts.standard_timeout
        err: BaseException | None = None
        outcome: AttemptOutcome | None = None
        assert w.req is not None
        try:
            self.sends.make_durable((w.seq, tier))  # the send record commits before the request leaves
        except Exception as exc:  # disk full, store locked: send nothing, stop (the done callback undoes)
            self._fatal = exc
            self.ready.appendleft(w)
            self._wake.set()
            return
        this = asyncio.current_task()
        if this is not None:
            self._entered.add(this)
        try:
            # At a high emulator time scale a 900 s flex timeout is a fraction of a real
            # second; a real connection needs real time, so the wall timeout has a floor.
            outcome = await self.adapter.asend(w.req, tier, max(self.opts.min_wall_timeout, self._wall(timeout)))
        except asyncio.CancelledError:
            self._on_cancelled(w, tier)
            raise
        except ProviderError as exc:
            err = exc
        except Exception as exc:  # an adapter bug or an unclassified failure: retry, then fail the item
            log.debug("unexpected error from adapter", exc_info=True)
            err = exc
        finally:
            self.task_of.pop((w.seq, tier), None)
        now = self.clock.now()
        latency = max(0.0, now - started)
        # the record goes in the flush that records the outcome: answered or refused it is cleared,
        # without an answer that may still be billed it stays, as a possibly billed send
        if outcome is None and isinstance(err, ProviderError) and err.possibly_billed:
            self.sends.lost((w.seq, tier))
        else:
            self.sends.settled((w.seq, tier))
        w.active -= 1
        (self.flex_active if tier == "flex" else self.std_active).pop(w.seq, None)
        try:
            if outcome is not None:
                self._on_success(w, tier, outcome, latency, now)
            else:
                assert err is not None
                self._on_error(w, tier, err, latency, now)
        except Exception as exc:  # pragma: no cover - keep the loop alive, surface at the end
            self._fatal = exc
        self._wake.set()

    def _on_cancelled(self, w: Work, tier: str) -> None:
        """An attempt cancelled mid-flight (hedge loser, shutdown): it may have been billed.

        Its send record becomes ``unknown`` (a possibly billed send of its item, durably, in
        the next flush). A hedge loser's in-memory count was already raised by
        :meth:`_cancel_other_copy`; an item cut off by a shutdown stays ``inflight`` in the store
        and the next run's recover() sends it again.
        """
        self.task_of.pop((w.seq, tier), None)
        self.budget.lose((w.seq, tier))
        self.sends.lost((w.seq, tier))
        w.active -= 1
        if (self.flex_active if tier == "flex" else self.std_active).get(w.seq) is w:
            (self.flex_active if tier == "flex" else self.std_active).pop(w.seq, None)
        self.store.add_attempt(w.seq, tier, "Cancelled", None, None, None, True, self.clock.now())

    def _on_success(self, w: Work, tier: str, oc: AttemptOutcome, latency: float, now: float) -> None:
        if self._provider_fault(w, tier, oc, latency, now):
            return
        served = oc.served_tier or "unknown"
        try:
            cost = price_usage(oc.usage, self.entry, served) if served != "unknown" else None
        except Exception:  # an unknown tier string must not crash pricing
            cost = None
        c = cost.cost if cost is not None else None
        sc = cost.standard_cost if cost is not None else price_usage(oc.usage, self.entry, "standard").standard_cost
        self.budget.settle((w.seq, tier), c)
        self.limiter.update_from_headers(oc.headers or {}, now)
        self.limiter.settle_tokens(w.est_tokens, oc.usage.input_tokens + oc.usage.output_tokens, now)
        self.store.add_attempt(w.seq, tier, "ok", latency, 200, None, False, now)
        if w.final or self._final_elsewhere(w):
            # First result wins: another copy of this item (its hedge twin, or its batch copy after a
            # straggler rescue) finished first. This answer was billed too, so it goes in the ledger
            # as a duplicate; the item is not touched again.
            self.store.add_ledger(now, w.seq, served, c, sc, oc.usage.input_tokens, oc.usage.output_tokens,
                                  kind="duplicate")
            self.stats.duplicates += 1
            self.stats.duplicate_cost += c or Decimal(0)
            w.final = True
            self._cancel_other_copy(w, tier, now)
            return
        self.store.add_ledger(now, w.seq, served, c, sc, oc.usage.input_tokens, oc.usage.output_tokens)
        self.quota_streak = 0
        s = self.stats
        if c is not None:
            s.spent += c
            s.spent_by_tier[served] = s.spent_by_tier.get(served, Decimal(0)) + c
        else:
            s.unknown_cost += 1
        if sc is not None:
            s.standard_cost += sc
        if tier == "flex":
            self.aimd.on_success(now)
            self.flex_fail_streak = 0
            self.flex_rate.add(now)
            self.flex_latency = latency if self.flex_latency is None else 0.9 * self.flex_latency + 0.1 * latency
        else:
            self.std_latency = latency if self.std_latency is None else 0.8 * self.std_latency + 0.2 * latency
        w.final = True
        self.in_memory_final += 1
        self._cancel_other_copy(w, tier, now)
        line = {
            "id": f"flextier_req_{w.seq}",
            "custom_id": w.custom_id,
            "response": {"status_code": 200, "request_id": _request_id(oc), "body": oc.body},
            "error": None,
            "flextier": {"tier": served, "attempts": w.attempts, "cost": _dec_str(c), "standard_cost": _dec_str(sc),
                         "possibly_billed": w.possibly_billed > 0},
        }
        self.store.finish(FinishedItem(
            seq=w.seq, state=DONE, result=json.dumps(line, ensure_ascii=False, separators=(",", ":")),
            tier=tier, attempts=w.attempts, served_tier=served, cost=c, standard_cost=sc, error_class=None,
            latency=latency, finished_at=now, possibly_billed=w.possibly_billed, text=oc.text))
        self._after_final(w)

    def _provider_fault(self, w: Work, tier: str, oc: AttemptOutcome, latency: float, now: float) -> bool:
        """An answer whose usage its request could not have produced: pause, never price the claim.

        The claimed bill is not believed (it is not spent money, and not in the ledger); the
        send counts at its reserved upper bound and as possibly billed, the item goes back to
        pending, and the job pauses (exit 3) so no more money goes to a provider that bills this.
        """
        why = implausible_usage(oc.usage, out_bound=w.out_bound, answers=w.answers, prompt_upper_bound=w.prompt_ub)
        if why is None:
            return False
        self.budget.settle((w.seq, tier), None)
        w.possibly_billed += 1
        self.stats.errors["ProviderFault"] += 1
        self.store.add_attempt(w.seq, tier, "ProviderFault", latency, 200, "implausible_usage", True, now)
        self.store.event(now, "provider_fault", {"item": w.custom_id, "tier": tier, "why": why,
                                                 "usage": oc.usage.as_dict()})
        act = on_provider_fault()
        if not w.final:
            self.ready.appendleft(w)
        if self._stop is None:
            self._stop = JobPaused(f"provider fault: item {w.custom_id!r} (line {w.line}) {why}; the job is paused "
                                   f"and nothing was priced from that answer. Check the endpoint, then resume",
                                   kind=act.pause_kind or "provider_fault")
        return True

    def _cancel_other_copy(self, w: Work, tier: str, now: float) -> None:
        """The first copy of a hedged item won: stop the other, which may still be billed."""
        other = "standard" if tier == "flex" else "flex"
        t = self.task_of.pop((w.seq, other), None)
        if t is not None and not t.done():
            if t in self._entered:  # a copy that never started was never sent
                w.possibly_billed += 1
            t.cancel()

    def _final_elsewhere(self, w: Work) -> bool:
        """True when another copy of ``w`` (its batch copy, after a straggler rescue) already finished it."""
        if self.batch is None or not self.batch.seen or w.final:
            return False
        if self.batch.final_elsewhere(w.seq):
            w.final = True
            return True
        return False

    def _after_final(self, w: Work) -> None:
        if self.store.backlog >= self.opts.flush_rows:
            self._flush_now.set()

    def _on_error(self, w: Work, tier: str, err: BaseException, latency: float, now: float) -> None:
        name = type(err).__name__
        pe = err if isinstance(err, ProviderError) else None
        billed = bool(pe and pe.possibly_billed)
        self.budget.release((w.seq, tier)) if not billed else self.budget.lose((w.seq, tier))
        if billed:
            w.possibly_billed += 1
        self.stats.errors[name] += 1
        self.store.add_attempt(w.seq, tier, name, latency, pe.status if pe else None,
                               (pe.code if pe else None), billed, now)
        if w.final:
            return
        if self._final_elsewhere(w):  # a batch answered this rescued item meanwhile: nothing to retry
            w.final = True
            return
        if w.active > 0:
            return  # the hedged copy is still running; let it decide
        act = decide(err, tier=tier, context="job", item_errors=w.errors, timeouts=w.timeouts,
                     quota_streak=self.quota_streak, limits=self.limits)
        if act.count == "errors":
            w.errors += 1
            w.last_error = pe
        elif act.count == "timeouts":
            w.timeouts += 1
            w.errors += 1
            w.last_error = pe
        elif act.count == "quota":
            self.quota_streak += 1
        if act.cut_window:
            self.aimd.on_capacity_error(now)
        if act.lane_backoff:
            delay = self.opts.backoff.delay(self.flex_fail_streak, pe.retry_after if pe else None)
            self.flex_fail_streak += 1
            self.flex_backoff_until = max(self.flex_backoff_until, now + delay)
        if act.pace:
            self.limiter.on_rate_limited(pe.retry_after if pe else None, now)
        if act.do == REQUEUE:
            self.ready.appendleft(w)
        elif act.do == CLOSE_FLEX:
            self.flex_ok = False
            self.store.event(now, "flex_unsupported", {"message": str(err)[:200]})
            if act.pause_kind and self._stop is None:
                self._stop = JobPaused(f"{self.entry.name} has no flex tier here ({err}); run with --tier auto "
                                       f"or --tier standard", kind=act.pause_kind)
            self.planner = None  # rebuilt without flex at the next tick
            self.ready.appendleft(w)
        elif act.do == PAUSE:
            # A refused key, a wrong URL or a run of quota refusals fails every item alike: stop at
            # once, resumably, with nothing marked failed, rather than fail the job item by item.
            self.ready.appendleft(w)
            if self._stop is None:
                self._stop = JobPaused(self._pause_message(act.pause_kind, err), kind=act.pause_kind or "paused")
        elif act.do == FAIL:
            self._fail(w, tier, err, now, latency)
        elif act.do == RESEND:
            self._delay(w, now)  # at once: a timed-out send (maybe billed) is resent, as an item error
        else:  # RETRY after the item's own backoff (the quota streak's, for a quota refusal)
            n = self.quota_streak if act.count == "quota" else w.errors - 1
            self._delay(w, now + self.opts.backoff.delay(n, pe.retry_after if pe and act.count != "quota" else None))

    def _pause_message(self, kind: str | None, err: BaseException) -> str:
        """The one-line reason a job pauses after ``err`` (see :func:`~flextier.policy.rules.decide`)."""
        if kind == "auth":
            return f"the provider refused the credentials ({err}); the job is saved, set a valid key and resume"
        if kind == "endpoint":
            name = (self.store.job() or {}).get("name") or "JOB"
            sp = self.store.path
            name = name if (sp.parent.name, sp.stem) == (".flextier", name) else str(sp)
            return (f"{getattr(err, 'message', err)}; the job is saved and nothing was marked failed: resume it "
                    f"with the right URL (flextier resume {name} --base-url URL)")
        if kind == "quota":
            return (f"the provider says the account is out of quota ({err}); the job is saved, resume it once the "
                    f"quota is raised")
        return f"{err}; the job is saved, resume it"

    def _fail(self, w: Work, tier: str, err: BaseException, now: float, latency: float) -> None:
        w.final = True
        self.in_memory_final += 1
        pe = err if isinstance(err, ProviderError) else None
        status = pe.status if pe and pe.status else None
        line = {
            "id": f"flextier_req_{w.seq}",
            "custom_id": w.custom_id,
            "response": None if status is None else {"status_code": status, "request_id": None,
                                                     "body": {"error": error_line(err)}},
            "error": error_line(err),
            "flextier": {"tier": None, "attempts": w.attempts, "cost": "0", "standard_cost": None,
                         "possibly_billed": w.possibly_billed > 0},
        }
        self.store.finish(FinishedItem(seq=w.seq, state=FAILED, result=json.dumps(line, ensure_ascii=False,
                                                                                   separators=(",", ":")),
                                       tier=tier, attempts=w.attempts, served_tier=None, cost=None,
                                       standard_cost=None, error_class=type(err).__name__, latency=latency,
                                       finished_at=now))
        self._after_final(w)

    # -- main loop -------------------------------------------------------------------
    def prepare(self) -> None:
        """Recover from a crash and bring the output file in line with the store."""
        n = self.store.recover()
        self.stats.recovered = n
        if n:
            self.store.event(self.clock.now(), "recovered", {"items": n})
        self._load_totals()
        self.stats.possibly_billed = self.store.possibly_billed()[0]
        self._rebuild_output()

    def snapshot(self) -> Stats:
        s = self.stats
        s.now = self.clock.now()
        s.flex_inflight = len(self.flex_active)
        s.std_inflight = len(self.std_active)
        s.held = len(self.ready) + len(self.delayed) + len(self.flex_active.keys() | self.std_active.keys())
        s.flex_limit = self.aimd.limit if self.flex_ok else 0
        s.in_batch = self.batch.in_batch() if self.batch is not None else 0
        s.deadline = self.opts.deadline
        return s

    def _drop_settled_queue(self) -> None:
        """Forget queued items another copy already finished (a rescued item whose batch line
        arrived first). The lanes skip them when they dispatch, but a planner in "done" mode
        dispatches nothing, so without this they would keep the job open forever."""
        if self.in_memory_final < self.stats.total or not (self.ready or self.delayed):
            return
        self.ready = deque(w for w in self.ready if not (w.final or self._final_elsewhere(w)))
        kept = [e for e in self.delayed if not (e[2].final or self._final_elsewhere(e[2]))]
        if len(kept) != len(self.delayed):
            heapq.heapify(kept)
            self.delayed = kept

    def all_final(self) -> bool:
        self._drop_settled_queue()
        return (self.store_drained and not self.ready and not self.delayed and not self.flex_active
                and not self.std_active and self.in_memory_final >= self.stats.total
                and not (self.batch is not None and self.batch.active))  # cancelled batches: account for them

    async def run(self) -> Stats:
        """Run until every item is final. Raises :class:`JobPaused` on a resumable stop."""
        now = self.clock.now()
        self.stats.started = now
        self.stats.deadline = self.opts.deadline
        self.store.event(now, "run_start", {"total": self.stats.total, "done": self.in_memory_final})
        if (self.store.job() or {}).get("deadline") != self.opts.deadline:
            self.store.update_job(deadline=self.opts.deadline)  # the report judges by the deadline in force
        flusher = asyncio.get_running_loop().create_task(self._flusher())
        loop = asyncio.get_running_loop()
        if self.batch is not None:
            self.batch.reattach()  # resume: poll the open batches again, never resubmit them
        elif self.store.open_batches():
            self._release_orphan_batches(now)
        tick = self.opts.tick or min(30.0, max(1.0, 0.05 * self.scale))
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                now = self.clock.now()
                self._promote_delayed(now)
                self._refill()
                if self.all_final():
                    break
                if self._stop is not None and ((not self.flex_active and not self.std_active)
                                               or self._drain_over()):
                    self.stop_cut = len(self.flex_active) + len(self.std_active)
                    raise self._stop
                if now - self._last_tick >= tick or self.planner is None or self.decision is None:
                    self._tick(now)
                wait = self._dispatch(now) if self._stop is None else math.inf
                if self._budget_blocked and not self.flex_active and not self.std_active:
                    pb = self.budget.possibly_billed
                    held = f" + possibly billed {pb:.6f} (sends cut off by a crash, timeout or reset)" if pb else ""
                    self._stop = JobPaused(
                        f"spending cap reached: spent {self.budget.spent:.6f}{held} of --max-cost "
                        f"{self.opts.max_cost}; the next request could pass the cap. Raise it and resume "
                        f"(flextier resume JOB --max-cost N)", kind="budget")
                    continue
                wait = min(wait, tick - (now - self._last_tick) if self._last_tick > -math.inf else tick)
                wall = self._wall(max(wait, 0.0))
                if wall > 0 or not self._wake.is_set():
                    handle = loop.call_later(min(wall, 1.0), self._wake.set)
                    await self._wake.wait()
                    handle.cancel()
                self._wake.clear()
        finally:
            await self._shutdown(flusher)
        return self.snapshot()

    # -- graceful stop (the signal handlers are in jobs/signals.py) --------------
    def request_stop(self, message: str, *, drain_timeout: float) -> None:
        """Stop claiming and sending; let the requests in flight finish and be recorded (they
        are paid for already) for at most ``drain_timeout`` wall seconds, then raise
        :class:`JobPaused` (kind ``interrupted``) from :meth:`run`. Those still out then are
        cut off and recorded as possibly billed."""
        if self._drain_until is None:
            self.stop_inflight = len(self.flex_active) + len(self.std_active)
            self._drain_until = time.monotonic() + max(0.0, drain_timeout)
        self._stop = JobPaused(message, kind="interrupted")
        self._wake.set()

    def stop_now(self) -> None:
        """End the drain at once (a second Ctrl-C): cut off what is still in flight."""
        self._drain_until = -math.inf
        if self._stop is None:
            self._stop = JobPaused("stopped", kind="interrupted")
        self._wake.set()

    def _drain_over(self) -> bool:
        return self._drain_until is not None and time.monotonic() >= self._drain_until

    def _release_orphan_batches(self, now: float) -> None:
        """Open batches but no batch lane in this run (no backend): their items go online."""
        for ob in self.store.open_batches():
            seqs = self.store.seqs_in_batch(ob["id"])
            self.store.leave_batch(seqs)
            self.store.update_batch(ob["id"], state="failed")
            self.store.event(now, "batch_orphaned", {"batch": ob["id"], "items": len(seqs)})
            log.warning("batch %s is still open but this run has no batch lane: its %d items are sent online "
                        "(the provider may still bill its answers)", ob["id"], len(seqs))

    async def _shutdown(self, flusher: asyncio.Task[Any]) -> None:
        """Cancel attempts still running, put unsent items back, commit everything."""
        if self.batch is not None:
            await self.batch.stop()  # open batches stay open: a resume reattaches to them
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        flusher.cancel()
        try:
            await flusher
        except (asyncio.CancelledError, Exception):
            pass
        unsent = [w for w in self.ready if not w.final] + [w for _, _, w in self.delayed if not w.final]
        try:
            self._flush()  # also the send records of the attempts just cut off (possibly billed)
            self._flush()  # second pass records the output offset of the first
            self.store.release([w.seq for w in unsent])  # their sends' flags are in the store already
        except Exception as exc:
            from .store import store_failure  # disk full, damaged store: the caller says so in one line

            (log.debug if store_failure(exc, self.store.path) else log.warning)(
                "could not commit the final state (%s); a resume will recover it", exc)
        self.ready.clear()
        self.delayed.clear()


__all__ = ["Runner", "RunOptions", "Stats", "Work", "OutputSink", "Clock", "WallClock", "JobPaused", "error_line"]
