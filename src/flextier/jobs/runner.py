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

Where the parts live: the lanes in :mod:`.lanes`, the books (stats, budget, ledger, one step per
result, online and batch alike) in :mod:`.accounting`, the output file and "commit before report"
in :mod:`.publish`, an item's send bounds in :mod:`.work`; this module is the loop that ties them.
:mod:`.batching` and :mod:`.api` drive a runner only through its public methods (``wake``,
``fail``, ``pause``, ``flush``, ``more_items``, ``input_closed``, ``reopen_claims``, ``queued``).

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
import logging
import math
import random
import time
from collections import deque
from typing import Any

from .._types import AttemptOutcome
from ..errors import JobPaused  # re-exported: flextier.jobs.runner.JobPaused keeps working
from ..errors import ProviderError, UserInputError
from ..policy.budget import Budget, implausible_usage
from ..policy.concurrency import RateLimiter
from ..policy.planner import SAFETY, Decision, InFlight, Observation, Planner, PlannerConfig, \
    changeover_delay_for, standard_capacity
from ..providers.base import REMOTE_ID_SINK
from ..policy.rules import CLOSE_FLEX, FAIL, PAUSE, REQUEUE, RESEND, Limits, decide, on_provider_fault
from .accounting import Accounting
from .batching import RunnerBatch
from .clock import Clock, WallClock
from .lanes import FlexLane, Lane, StandardLane
from .lines import error_line
from .options import RunOptions
from .output import OutputSink
from .publish import Publisher, ResultHook
from .recovery import resume_tag, settle_from_provider
from .sends import SendBook
from .stats import Stats
from .store import FlushResult, JobStore
from .work import Work, prepare_work, work_of

log = logging.getLogger("flextier.runner")


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
        self.entry = opts.model
        self.rng = random.Random(opts.seed)
        self.opts.backoff.rng = self.rng
        now = self.clock.now()
        # d: the user's, or the default scaled down for a close deadline (see changeover_delay_for)
        self.d = opts.changeover_delay if opts.changeover_delay is not None else changeover_delay_for(
            None if opts.deadline is None else max(0.0, opts.deadline - now))
        permits = opts.permits  # [permit hook] see RunOptions.permits; None: this runner decides alone
        cooldown = max(1.0, 2 * self.d / 60)
        self.flex = FlexLane(opts.concurrency, cooldown=cooldown,
                             window=None if permits is None else permits.flex_window(opts.concurrency, cooldown),
                             pause=None if permits is None else permits.flex_pause())
        self.std = StandardLane(opts.std_concurrency, now,
                                share=None if permits is None else permits.standard_share)
        # [permit hook] on Ray the RPM/TPM buckets are the job's (leased from its controller)
        self.limiter = RateLimiter(opts.rpm, opts.tpm, now=now, max_pause=opts.backoff.retry_after_cap) \
            if permits is None else permits.limiter(opts.rpm, opts.tpm, now=now, max_pause=opts.backoff.retry_after_cap)
        self.budget = Budget(max_cost=opts.max_cost) if permits is None else permits.budget(opts.max_cost)
        self.sends = SendBook(store)   # a durable record of every request out
        self.stats = Stats()
        from .._loopback import offline_active

        # emulated (kept out of the real history): an injected or emulator clock, an emulated job, or
        # a process that is offline (--emulate, a loopback emulator endpoint)
        self.emulated = not isinstance(self.clock, WallClock) or offline_active() or \
            (store.job() or {}).get("clock_domain") == "emulated"
        self.history = self._history_recorder(opts.history)
        self.accounting = Accounting(store, self.entry, self.budget, self.stats, recorder=self.history)
        self.publisher = Publisher(store, output, ordered=opts.ordered, stats=self.stats, clock=self.clock,
                                   on_result=on_result)
        # the job's name at the provider, for answers it keeps (see jobs/recovery.py); None: off
        self.resume_tag = resume_tag(store, adapter, enabled=opts.provider_store)
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
        self.tasks: set[asyncio.Task[Any]] = set()
        self.task_of: dict[tuple[int, str], asyncio.Task[Any]] = {}
        # attempts whose coroutine has begun: a task cancelled before its first step never
        # runs its body (so never its cleanup), and was never sent either
        self._entered: set[asyncio.Task[Any]] = set()
        self.input_open = input_open   # more items may still be imported (async iterables)
        self.store_drained = False
        self.quota_streak = 0
        self.limits = Limits(max_item_errors=opts.max_item_errors, resend_on_timeout=opts.resend_on_timeout,
                             quota_stop_after=opts.quota_stop_after, flex_only=opts.tier_mode == "flex")
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

    # -- the interface other modules drive a runner by (batching, api, signals, the CLI) --------
    def wake(self) -> None:
        """Something changed outside the loop (new items, a batch result): look again now."""
        self._wake.set()

    def fail(self, exc: BaseException) -> None:
        """A part the run depends on broke (the caller's input iterable, the store): end the run with it."""
        self._fatal = exc
        self._wake.set()

    def pause(self, paused: JobPaused) -> None:
        """Stop resumably with ``paused`` once nothing is in flight (the first reason given wins)."""
        if self._stop is None:
            self._stop = paused
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop is not None

    def flush(self, claim: int = 0) -> FlushResult:
        """Commit what is queued and publish it (see :mod:`.publish`)."""
        return self.publisher.flush(claim)

    def more_items(self, total: int) -> None:
        """Items were imported while running (``total`` now in the store): claim them."""
        self.stats.total = total
        self.store_drained = False
        self._wake.set()

    def reopen_claims(self) -> None:
        """Items became pending again (handed back by the batch lane): the claim loop looks again."""
        self.store_drained = False
        self._wake.set()

    def input_closed(self) -> None:
        """No more items will be imported."""
        self.input_open = False
        self._wake.set()

    def queued(self) -> int:
        """Items claimed and waiting to be sent (not in flight)."""
        return len(self.ready) + len(self.delayed)

    def in_flight(self) -> int:
        """Requests out now, both lanes."""
        return len(self.flex.active) + len(self.std.active)

    @property
    def flex_active(self) -> dict[int, Work]:
        return self.flex.active

    @property
    def std_active(self) -> dict[int, Work]:
        return self.std.active

    @property
    def aimd(self) -> Any:
        return self.flex.aimd

    @property
    def in_memory_final(self) -> int:
        """Items final in memory, committed or not: the planner's "done"."""
        return self.accounting.finals

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
            batch_min_runway=o.batch_min_runway, done0=done, availability=self._availability(now),
            peak_hours=self.entry.peak_hours)
        if o.policy is None and o.permits is not None:
            return o.permits.planner(cfg)  # [permit hook] the cluster's planner decides (flextier.ray)
        return (o.policy or Planner)(cfg)  # [policy hook] see RunOptions.policy

    def _history_recorder(self, h: Any) -> Any:
        """RunOptions.history -> a recorder or None ("auto": the per-user one of this clock's domain)."""
        if h != "auto":
            return h
        from ..history import Recorder

        return Recorder(emulated=self.emulated)

    def _availability(self, now: float) -> Any:
        """The planner's forecast: the caller's, else the learned one (enough history), else none."""
        o = self.opts
        if o.availability is not None or not o.forecast_from_history or not self.flex_ok:
            return o.availability
        from ..history import learned_availability

        return learned_availability(self.entry.provider, self.entry.name, now, emulated=self.emulated)

    def batch_failed(self, why: str) -> None:
        """The batch lane broke (see :mod:`.batching`): continue online, or pause a --tier batch job."""
        self.batch_ok = False
        if self.opts.tier_mode == "batch":
            self._stop = JobPaused(f"the batch lane failed ({why}); the job is saved: resume it, or run the rest "
                                   f"with --tier auto", kind="batch")
        else:
            self.planner = None  # rebuilt without batch at the next tick
        self._wake.set()

    # -- claiming --------------------------------------------------------------------
    def _want(self) -> int:
        """How many claimed-but-unsent items to hold: what the open lanes can take, plus a little.

        Every claimed item counts as "possibly billed" if the process dies, so the
        prefetch is kept to what can be sent soon rather than a big buffer.
        """
        d = self.decision
        lanes = self.flex.limit() if self.flex_ok else 0
        if d is None or d.standard_all or d.standard_rate > 0 or not self.flex_ok:
            lanes += self.std.limit()
        return min(lanes + 8, 4096)

    def _refill(self) -> None:
        if self._stop is not None:
            return  # stopping: claim nothing more
        if self.batch_ok and not self.batch.started and (self.decision is None or self.decision.use_batch):
            return  # the planner may send the pending items to a batch: do not take them online first
        if self.batch is not None and self.batch.forced and self.batch.started:
            self.store_drained = True  # --tier batch: nothing goes online; what the lane hands back pauses the job
            return
        have = self.queued()
        want = self._want() - self.in_flight()
        if self.store_drained or have >= max(1, want // 2):
            return
        fr = self.flush(claim=want - have)
        for c in fr.claimed:
            self.ready.append(work_of(c))
        if not fr.claimed and not self.input_open:
            self.store_drained = True

    def _prepare(self, w: Work) -> None:
        prepare_work(w, self.entry, self.opts.params, capped=self.opts.max_cost is not None,
                     input_path=lambda: (self.store.job() or {}).get("input_path"))
        if self.resume_tag is not None and w.req is not None:
            w.req.resume_tag = self.resume_tag

    # -- the planner tick ------------------------------------------------------------
    def _tick(self, now: float) -> None:
        if self.planner is None:
            self.planner = self._make_planner(now)
        cap = standard_capacity(self.opts.std_concurrency, self.std.latency or self.opts.assumed_standard_latency,
                                self.opts.rpm)
        total = max(self.stats.total, self.planner.total)
        flex_inflight = tuple(InFlight(str(w.seq), w.flex_started) for w in self.flex.active.values()
                              if w.flex_started is not None) if self.planner.mode == SAFETY else ()
        obs = Observation(
            now=max(now, self.planner._last_now or now), done=min(self.in_memory_final, total),
            pending=self.queued(),
            in_flight_standard=len(self.std.active), flex_in_flight=flex_inflight, total=total,
            standard_capacity=cap, standard_latency_p90=self.std.latency,
            flex_latency_p90=self.flex.latency,
            flex_throughput=self.flex.throughput.rate(now, min(600.0, max(60.0, now - self.stats.started))),
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
            self.std.reset()
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

    def _lane(self, tier: str) -> Lane:
        return self.flex if tier == "flex" else self.std

    def _start(self, w: Work, tier: str, now: float) -> None:
        key = (w.seq, tier)
        reserved = w.est_cost if self.opts.max_cost is not None else None
        self.budget.reserve(key, reserved)
        self.sends.opened(key, w.seq, tier, reserved, now)  # committed by the attempt before it sends
        w.active += 1
        w.attempts += 1
        self._lane(tier).active[w.seq] = w
        if tier == "flex":
            w.flex_started = now
        t = asyncio.get_running_loop().create_task(self._attempt(w, tier, now))
        self.tasks.add(t)
        self.task_of[key] = t
        t.add_done_callback(lambda task: self._reap(task, w, tier))

    def _leave_lane(self, w: Work, tier: str) -> None:
        active = self._lane(tier).active
        if active.get(w.seq) is w:
            active.pop(w.seq, None)

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
        self._leave_lane(w, tier)
        self._wake.set()

    def _fill(self, lane: Lane, now: float, skip: Any) -> float:
        wait, blocked = lane.fill(self.ready, now, skip=skip, gate=self._can_send, start=self._start)
        if blocked is not None:
            self._budget_blocked = blocked
        return wait

    def _dispatch(self, now: float) -> float:
        """Start whatever may start now; return clock seconds until something could change."""
        d = self.decision
        wait = math.inf
        if d is None:
            return 0.0
        self._budget_blocked = False
        # hedges: duplicate late flex attempts on standard (safety net)
        while self._hedge_wanted and len(self.std.active) < self.std.limit():
            seq = self._hedge_wanted.popleft()
            w = self.flex.active.get(seq)
            if w is None or w.final or seq in self.std.active:
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
        # standard lane (a hedged copy already on standard, or an item a batch answered, is skipped)
        if std_all or d.standard_rate > 0:
            self.std.open(now, d.standard_rate, everything=std_all)
            wait = min(wait, self._fill(self.std, now, lambda w: w.seq in self.std.active or self._final_elsewhere(w)))
        else:
            self.std.closed(now)
        # [policy hook] a baseline policy may send the items at the head of the queue to standard
        if getattr(self.planner, "divert_to_standard", None) is not None:
            wait = min(wait, self._divert_to_standard(now))
        # flex lane
        if flex_open and self.flex_ok and not std_all:
            if now < self.flex.backoff_until:
                wait = min(wait, self.flex.backoff_until - now)
            else:
                wait = min(wait, self._fill(self.flex, now, self._final_elsewhere))
        if self.delayed:
            wait = min(wait, self.delayed[0][0] - now)
        return wait

    def _divert_to_standard(self, now: float) -> float:
        """[policy hook] Start on standard the head-of-queue items the policy diverts (e.g. after
        3 failed flex tries, :class:`~flextier.policy.baselines.FlexRetriesPolicy`), within the
        standard lane's limits. Returns clock seconds until one could start (inf: none waiting)."""
        divert = self.planner.divert_to_standard  # type: ignore[union-attr]
        while self.ready and len(self.std.active) < self.std.limit():
            w = self.ready[0]
            if w.final or w.seq in self.std.active or not divert(w.attempts):
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
            # a provider that answers later (OpenAI Responses background mode) names the request
            # first: its id goes into this send's record before the answer (a resume retrieves it)
            REMOTE_ID_SINK.set(lambda rid, key=(w.seq, tier): self.sends.remote(key, rid))
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
        self._lane(tier).active.pop(w.seq, None)
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
        self.sends.lost((w.seq, tier))
        w.active -= 1
        self._leave_lane(w, tier)
        self.accounting.cancelled(w, tier, self.clock.now())

    def _on_success(self, w: Work, tier: str, oc: AttemptOutcome, latency: float, now: float) -> None:
        why = implausible_usage(oc.usage, out_bound=w.out_bound, answers=w.answers, prompt_upper_bound=w.prompt_ub)
        if why is not None:
            self._provider_fault(w, tier, oc, latency, now, why)
            return
        self.limiter.update_from_headers(oc.headers or {}, now)
        self.limiter.settle_tokens(w.est_tokens, oc.usage.input_tokens + oc.usage.output_tokens, now)
        duplicate = w.final or self._final_elsewhere(w)
        priced = self.accounting.bill(w, tier, oc, latency, now, duplicate=duplicate)
        if duplicate:  # first result wins: the item is not touched again
            w.final = True
            self._cancel_other_copy(w, tier, now)
            return
        self.quota_streak = 0
        if tier == "flex":
            self.flex.answered(now, latency)
        else:
            self.std.observe_latency(latency)
        w.final = True
        self._cancel_other_copy(w, tier, now)  # before the line: a cut-off twin makes it possibly billed
        self.accounting.answered(w, tier, oc, priced, latency, now)
        self._after_final()

    def _provider_fault(self, w: Work, tier: str, oc: AttemptOutcome, latency: float, now: float, why: str) -> None:
        """An answer whose usage its request could not have produced: pause, never price the claim.

        The claimed bill is not believed (it is not spent money, and not in the ledger); the
        send counts at its reserved upper bound and as possibly billed, the item goes back to
        pending, and the job pauses (exit 3) so no more money goes to a provider that bills this.
        """
        self.accounting.fault(w, tier, oc, latency, now, why)
        act = on_provider_fault()
        if not w.final:
            self.ready.appendleft(w)
        if self._stop is None:
            self._stop = JobPaused(f"provider fault: item {w.custom_id!r} (line {w.line}) {why}; the job is paused "
                                   f"and nothing was priced from that answer. Check the endpoint, then resume",
                                   kind=act.pause_kind or "provider_fault")

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

    def _after_final(self) -> None:
        if self.store.backlog >= self.opts.flush_rows:
            self._flush_now.set()

    def _on_error(self, w: Work, tier: str, err: BaseException, latency: float, now: float) -> None:
        pe = err if isinstance(err, ProviderError) else None
        self.accounting.error(w, tier, err, latency, now)
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
            self.flex.aimd.on_capacity_error(now)
        if act.lane_backoff:
            self.flex.back_off(now, self.opts.backoff.delay(self.flex.fail_streak, pe.retry_after if pe else None))
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
            w.final = True
            self.accounting.failed(w, tier, err, latency, now)
            self._after_final()
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

    # -- main loop -------------------------------------------------------------------
    def prepare(self) -> None:
        """Recover from a crash and bring the output file in line with the store."""
        n = self.store.recover()
        self.stats.recovered = n
        if n:
            self.store.event(self.clock.now(), "recovered", {"items": n})
        self.stats.settled_from_provider = settle_from_provider(self.store, self.adapter, self.accounting,
                                                                tag=self.resume_tag, now=self.clock.now())
        self.accounting.load()
        self.stats.possibly_billed = self.store.possibly_billed()[0]
        self.publisher.rebuild()

    def snapshot(self) -> Stats:
        s = self.stats
        s.now = self.clock.now()
        s.flex_inflight = len(self.flex.active)
        s.std_inflight = len(self.std.active)
        s.held = self.queued() + len(self.flex.active.keys() | self.std.active.keys())
        s.flex_limit = self.flex.limit() if self.flex_ok else 0
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
        return (self.store_drained and not self.ready and not self.delayed and not self.flex.active
                and not self.std.active and self.in_memory_final >= self.stats.total
                and not (self.batch is not None and self.batch.active))  # cancelled batches: account for them

    async def run(self) -> Stats:
        """Run until every item is final. Raises :class:`JobPaused` on a resumable stop."""
        now = self.clock.now()
        self.stats.started = now
        self.stats.deadline = self.opts.deadline
        self.store.event(now, "run_start", {"total": self.stats.total, "done": self.in_memory_final})
        if (self.store.job() or {}).get("deadline") != self.opts.deadline:
            self.store.update_job(deadline=self.opts.deadline)  # the report judges by the deadline in force
        flusher = asyncio.get_running_loop().create_task(self.publisher.run(
            self._flush_now, self.opts.flush_interval, woke=self.wake, failed=self.fail))
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
                if self._stop is not None and (not self.in_flight() or self._drain_over()):
                    self.stop_cut = self.in_flight()
                    raise self._stop
                if now - self._last_tick >= tick or self.planner is None or self.decision is None:
                    self._tick(now)
                wait = self._dispatch(now) if self._stop is None else math.inf
                if self._budget_blocked and not self.in_flight():
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
            self.stop_inflight = self.in_flight()
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
            self.flush()  # also the send records of the attempts just cut off (possibly billed)
            self.flush()  # second pass records the output offset of the first
            self.store.release([w.seq for w in unsent])  # their sends' flags are in the store already
        except Exception as exc:
            from .store import store_failure  # disk full, damaged store: the caller says so in one line

            (log.debug if store_failure(exc, self.store.path) else log.warning)(
                "could not commit the final state (%s); a resume will recover it", exc)
        self.ready.clear()
        self.delayed.clear()
        if self.history is not None:
            self.history.flush()   # never raises: history is advice (flextier.history.recorder)



__all__ = ["Runner", "RunOptions", "Stats", "Work", "OutputSink", "Clock", "WallClock", "JobPaused", "error_line"]
