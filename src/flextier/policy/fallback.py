"""The policy, and the one retry loop that applies it.

Why one loop: ``wrap()``, ``complete()`` and the bulk runner must agree on when to
back off, when to give up on flex and when a timed-out call may have been billed. So
the decisions live here, in :class:`_Run`, and the sync and async loops
(:func:`call_with_policy`, :func:`acall_with_policy`) are thin shells around it. The
SDKs' own retries are switched off everywhere flextier creates or wraps a client, so
this loop is the only one.

What the default policy does (``Policy()``; each error's action is the ``"call"`` column of the
decision table in :mod:`flextier.policy.rules`, documented in ``docs/errors.md``):

* first tier ``flex``, with a 900 s timeout (providers advise at least 10-15 min);
  ``standard`` keeps the SDK's default timeout;
* a flex capacity error (:class:`FlexCapacityUnavailable`) is retried with
  exponential backoff and full jitter, honouring retry-after;
* once ~600 s (``max_flex_wait``) have gone on flex, or the call's own deadline leaves
  less than ``standard_latency_budget`` seconds, the call goes to ``standard``;
* rate limits, 5xx, connection resets and Anthropic 529 are retried on the *same*
  tier (``max_retries`` times, default 4) - falling back would not help, quotas are shared;
* quota and bad-request errors are raised at once;
* a timeout after the request was sent may have been processed (and billed): it is
  resent at once and the attempt is recorded as ``possibly_billed``; it counts as one of the
  same-tier errors (the 5th is final), and ``resend_on_timeout`` (default 4) can cap resends lower;
* a model without flex raises :class:`TierNotSupported` unless
  ``allow_standard_for_no_flex`` (then it warns and uses standard).

Time comes from ``policy.clock``/``policy.sleep``/``policy.asleep`` so tests and the
emulator can run a 10-minute backoff in milliseconds.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Union

from .._types import Attempt, AttemptOutcome, CallResult
from ..catalog import ModelEntry
from ..cost import price_usage
from .backoff import Backoff
from ..errors import ProviderError, Timeout, TierNotSupported
from .events import AttemptEvent, BackoffEvent, FallbackEvent, Hooks
from .rules import FAIL, FALLBACK, MAX_ITEM_ERRORS, RESEND, RESEND_ON_TIMEOUT, Limits, decide, flex_fallback_reason

__all__ = ["Policy", "call_with_policy", "acall_with_policy", "FlexFallbackWarning",
           "DEFAULT_FLEX_TIMEOUT", "DEFAULT_MAX_FLEX_WAIT"]

DEFAULT_FLEX_TIMEOUT = 900.0
DEFAULT_MAX_FLEX_WAIT = 600.0

Fallback = Union[Literal["auto", "never"], int]
SendFn = Callable[[str, "float | None"], AttemptOutcome]
ASendFn = Callable[[str, "float | None"], Awaitable[AttemptOutcome]]


class FlexFallbackWarning(UserWarning):
    """Emitted when flex was asked of a model without flex and the policy allowed standard."""


@dataclass
class Policy:
    """Timeouts, backoff and fallback for one logical call. Reusable and shareable.

    Attributes:
        tier: the first tier to try: ``"flex"`` (default) or ``"standard"``/``"priority"``.
        flex_timeout: per-attempt timeout on flex, seconds (default 900).
        standard_timeout: per-attempt timeout on standard; None = the SDK's default.
        fallback: ``"auto"`` (go to standard after ``max_flex_wait`` or when the deadline
            gets close), ``"never"`` (keep retrying flex), or an int N (go to standard after
            N flex failures; the deadline rule still applies).
        max_flex_wait: seconds of flex attempts plus backoff before ``"auto"`` gives up on flex.
        standard_latency_budget: seconds a standard call is assumed to need; flex is abandoned
            when the deadline leaves less than this.
        deadline: seconds from the start of each call by which it must be done (None: no
            deadline). The runner passes an absolute ``deadline_at`` instead.
        resend_on_timeout: at most this many resends of a timed-out call (default 4; timeouts
            also count against ``max_retries``).
        allow_standard_for_no_flex: flex on a model without flex goes to standard (with a
            :class:`FlexFallbackWarning`) instead of raising :class:`TierNotSupported`.
        max_retries: retries of same-tier errors (rate limit, 5xx, 529, resets) per tier
            (default 4: the 5th such error is final, as for a job item, ``MAX_ITEM_ERRORS``).
        backoff: the delay schedule (base, cap, retry-after cap, RNG).
        hooks: callbacks for attempts, backoffs and fallbacks.
        clock, sleep, asleep: time sources (monotonic seconds), injectable for tests.
    """

    tier: str = "flex"
    flex_timeout: float = DEFAULT_FLEX_TIMEOUT
    standard_timeout: float | None = None
    fallback: Fallback = "auto"
    max_flex_wait: float = DEFAULT_MAX_FLEX_WAIT
    standard_latency_budget: float = 120.0
    deadline: float | None = None
    resend_on_timeout: int = RESEND_ON_TIMEOUT
    allow_standard_for_no_flex: bool = False
    max_retries: int = MAX_ITEM_ERRORS - 1
    backoff: Backoff = field(default_factory=Backoff)
    hooks: Hooks = field(default_factory=Hooks)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.tier not in ("flex", "standard", "priority"):
            raise ValueError(f"tier must be 'flex', 'standard' or 'priority', not {self.tier!r}")
        if isinstance(self.fallback, bool) or not (
                self.fallback in ("auto", "never") or (isinstance(self.fallback, int) and self.fallback >= 1)):
            raise ValueError("fallback must be 'auto', 'never' or an int >= 1 (flex attempts before standard)")
        for name in ("flex_timeout", "max_flex_wait", "standard_latency_budget"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.standard_timeout is not None and self.standard_timeout <= 0:
            raise ValueError("standard_timeout must be > 0 or None")
        if self.resend_on_timeout < 0 or self.max_retries < 0:
            raise ValueError("resend_on_timeout and max_retries must be >= 0")

    def timeout_for(self, tier: str) -> float | None:
        """The configured per-attempt timeout of ``tier`` (None = SDK default)."""
        return self.flex_timeout if tier == "flex" else self.standard_timeout

    def timeouts(self) -> dict[str, float]:
        """Per-tier timeouts for adapters creating SDK clients (omits 'SDK default')."""
        out = {"flex": self.flex_timeout}
        if self.standard_timeout is not None:
            out["standard"] = self.standard_timeout
        return out

    def limits(self) -> Limits:
        """This policy's knobs as the decision table reads them (:mod:`flextier.policy.rules`)."""
        return Limits(max_item_errors=self.max_retries + 1, resend_on_timeout=self.resend_on_timeout,
                      allow_standard_for_no_flex=self.allow_standard_for_no_flex)

    def replace(self, **changes: Any) -> "Policy":
        return dataclasses.replace(self, **changes)


class _Run:
    """The decisions of one logical call. Pure bookkeeping: no I/O, no sleeping."""

    def __init__(self, policy: Policy, entry: ModelEntry, deadline_at: float | None) -> None:
        self.p = policy
        self.entry = entry
        self.start = policy.clock()
        if deadline_at is None and policy.deadline is not None:
            deadline_at = self.start + policy.deadline
        self.deadline_at = deadline_at
        self.tier = policy.tier
        self.attempts: list[Attempt] = []
        self.flex_failures = 0
        self.retries = 0
        self.timeouts = 0
        self.limits = policy.limits()
        if self.tier == "flex" and not entry.supports_flex:
            self._no_flex(None)

    # -- helpers ------------------------------------------------------------------------
    def _no_flex(self, err: TierNotSupported | None) -> None:
        if not self.p.allow_standard_for_no_flex:
            if err is not None:
                raise err
            raise TierNotSupported(
                f"{self.entry.name} has no flex tier. Use tier='standard', allow standard with "
                f"Policy(allow_standard_for_no_flex=True), or use the batch lane for half price.",
                tier="flex", provider=self.entry.provider, code="flex_not_supported")
        warnings.warn(f"{self.entry.name} has no flex tier; using standard (batch is the discounted option)",
                      FlexFallbackWarning, stacklevel=4)
        self._switch("standard", "tier_not_supported")

    def _switch(self, to_tier: str, reason: str) -> None:
        ev = FallbackEvent(self.entry.provider, self.entry.name, self.tier, to_tier, reason,
                           sum(1 for a in self.attempts if a.tier == "flex"), self.p.clock() - self.start)
        self.tier = to_tier
        self.retries = 0
        self.p.hooks.emit(ev)

    def _fallback_reason(self, delay: float) -> str | None:
        now = self.p.clock()
        return flex_fallback_reason(
            fallback=self.p.fallback, flex_failures=self.flex_failures, waited=now + delay - self.start,
            max_flex_wait=self.p.max_flex_wait, standard_latency_budget=self.p.standard_latency_budget,
            deadline_left=None if self.deadline_at is None else self.deadline_at - (now + delay))

    def _fail(self, err: ProviderError) -> ProviderError:
        err.attempts = list(self.attempts)  # type: ignore[attr-defined]
        if err.tier is None:
            err.tier = self.tier
        return err

    # -- the three steps ------------------------------------------------------------------
    def plan(self) -> tuple[str, float | None]:
        """Which tier to try next and with what timeout."""
        timeout = self.p.timeout_for(self.tier)
        if self.deadline_at is not None:
            remaining = self.deadline_at - self.p.clock()
            if self.tier == "flex" and self.p.fallback != "never":
                flex_room = remaining - self.p.standard_latency_budget
                if flex_room < 1.0:
                    self._switch("standard", "deadline")
                    timeout = self.p.timeout_for(self.tier)
                else:
                    timeout = min(timeout, flex_room) if timeout is not None else flex_room
            if self.tier != "flex" or self.p.fallback == "never":
                if remaining <= 0:
                    raise self._fail(Timeout("the call's deadline passed before it could be sent",
                                             tier=self.tier, provider=self.entry.provider))
                timeout = remaining if timeout is None else min(timeout, remaining)
        return self.tier, timeout

    def _record(self, tier: str, started: float, latency: float, *, err: ProviderError | None = None,
                served: str | None = None) -> Attempt:
        if err is None:
            a = Attempt(tier=tier, outcome="ok", latency_s=latency, served_tier=served, started_at=started)
        else:
            a = Attempt(tier=tier, outcome=type(err).__name__, latency_s=latency, status=err.status,
                        error_code=err.code, retry_after=err.retry_after, possibly_billed=err.possibly_billed,
                        started_at=started)
        self.attempts.append(a)
        self.p.hooks.emit(AttemptEvent(self.entry.provider, self.entry.name, a, err))
        return a

    def succeeded(self, out: AttemptOutcome, tier: str, started: float, latency: float) -> CallResult:
        self._record(tier, started, latency, served=out.served_tier)
        cost = price_usage(out.usage, self.entry, out.served_tier)
        return CallResult(model=self.entry, text=out.text, raw=out.raw, tier=out.served_tier, usage=out.usage,
                          cost=cost.cost, standard_cost=cost.standard_cost, attempts=self.attempts, body=out.body)

    def failed(self, err: ProviderError, tier: str, started: float, latency: float) -> float:
        """Record a failed attempt; return the seconds to wait before the next, or raise.

        What to do is :func:`flextier.policy.rules.decide`'s answer (context ``"call"``); this
        method only keeps the counters, draws the backoff and emits the events.
        """
        if err.tier is None:
            err.tier = tier
        if err.provider is None:
            err.provider = self.entry.provider
        self._record(tier, started, latency, err=err)
        act = decide(err, tier=tier, context="call", item_errors=self.retries, timeouts=self.timeouts,
                     limits=self.limits)
        if act.count == "timeouts":
            self.timeouts += 1
            self.retries += 1
        elif act.count == "errors":
            self.retries += 1
        elif act.count == "flex":
            self.flex_failures += 1
        if act.do == FAIL:
            raise self._fail(err)
        if act.do == FALLBACK:  # flex asked of a model without flex, and the policy allows standard
            self._no_flex(self._fail(err))  # type: ignore[arg-type]
            return 0.0
        if act.do == RESEND:
            if act.may_fall_back:
                self.flex_failures += 1
                reason = self._fallback_reason(0.0)
                if reason:
                    self._switch("standard", reason)
            return 0.0
        # RETRY with backoff: a flex shed counts flex failures, anything else same-tier retries
        n = self.flex_failures if act.count == "flex" else self.retries
        delay = self.p.backoff.delay(n - 1, err.retry_after)
        if act.may_fall_back:
            reason = self._fallback_reason(delay)
            if reason:
                self._switch("standard", reason)
                return 0.0
        self._check_deadline(err, delay)
        self.p.hooks.emit(BackoffEvent(self.entry.provider, self.entry.name, tier, delay,
                                       type(err).__name__, n))
        return delay

    def _check_deadline(self, err: ProviderError, delay: float) -> None:
        if self.deadline_at is not None and self.p.clock() + delay >= self.deadline_at:
            raise self._fail(err)


def call_with_policy(send: SendFn, policy: Policy | None = None, *, entry: ModelEntry,
                     deadline_at: float | None = None) -> CallResult:
    """Run one logical call: ``send(tier, timeout)`` makes ONE attempt and returns an
    :class:`AttemptOutcome` or raises a :mod:`flextier.errors` class.

    Returns a :class:`CallResult` (served tier, usage, cost, standard cost, attempts).
    Raises the last :class:`ProviderError` when the policy gives up; the error carries
    ``.attempts`` (list of :class:`Attempt`). ``deadline_at`` is absolute, on
    ``policy.clock``; it overrides ``policy.deadline``.
    """
    p = policy or Policy()
    run = _Run(p, entry, deadline_at)
    while True:
        tier, timeout = run.plan()
        t0 = p.clock()
        try:
            out = send(tier, timeout)
        except ProviderError as err:
            delay = run.failed(err, tier, t0, p.clock() - t0)
            if delay > 0:
                p.sleep(delay)
            continue
        return run.succeeded(out, tier, t0, p.clock() - t0)


async def acall_with_policy(asend: ASendFn, policy: Policy | None = None, *, entry: ModelEntry,
                            deadline_at: float | None = None) -> CallResult:
    """Async twin of :func:`call_with_policy` (``asend`` is awaited, ``policy.asleep`` used)."""
    p = policy or Policy()
    run = _Run(p, entry, deadline_at)
    while True:
        tier, timeout = run.plan()
        t0 = p.clock()
        try:
            out = await asend(tier, timeout)
        except ProviderError as err:
            delay = run.failed(err, tier, t0, p.clock() - t0)
            if delay > 0:
                await p.asleep(delay)
            continue
        return run.succeeded(out, tier, t0, p.clock() - t0)
