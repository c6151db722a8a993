"""What to do after a failed attempt: one pure decision table for every caller.

Why one table: ``wrap()``/``complete()`` (:mod:`flextier.policy.fallback`), the bulk runner
(:mod:`flextier.jobs.runner`), the batch lane (:mod:`flextier.batch.lane`) and the flex window
(:mod:`flextier.policy.concurrency`) all meet the same provider errors. When each decided for
itself they drifted apart (6 retries in one, 5 in another; a timeout resent once here and
retried as an ordinary item error there). Now each of them classifies nothing and counts nothing on its own
terms: it hands the error (already translated by the provider's adapter into a
:mod:`flextier.policy.errors` class), the tier, where it stands (its counters) and its
:class:`Limits` to :func:`decide`, and carries out the :class:`Action` it gets back.

:func:`decide` is pure: no clock, no RNG, no I/O. How long a backoff lasts is the caller's
:class:`~flextier.policy.backoff.Backoff` (seeded RNG, injected clock); whether a call has
waited long enough on flex to fall back is :func:`flex_fallback_reason`, also pure.

Contexts (where the error happened):

* ``"call"``: one logical call of ``wrap()``/``complete()``. There is no job to pause and no
  lane to pace, so what pauses a job *raises* here (the caller is the job).
* ``"job"``: one item of a bulk job (``flextier run``, ``run_job``). The flex lane backs off as
  a whole, rate limits pace the lane, and errors that would fail every item alike (a refused
  key, a wrong URL, a run of quota refusals) pause the job, resumably, with nothing failed.
* ``"batch"``: submitting one provider batch. A refusal gives the batch's items back to the
  online lanes; anything else is retried (after looking the batch up) a few times.

The table is documented, row by row, in ``docs/errors.md`` and the README's "What happens
after an error"; ``tests/policy/test_rules.py`` checks every row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import (BadRequest, EndpointNotFound, FlexCapacityUnavailable, ProviderError, QuotaExhausted,
                     RateLimited, TierNotSupported, Timeout, Unauthorized)

__all__ = ["Action", "Limits", "decide", "on_provider_fault", "flex_fallback_reason", "is_capacity_signal",
           "MAX_ITEM_ERRORS", "RESEND_ON_TIMEOUT", "QUOTA_STOP_AFTER", "UNCLASSIFIED_ERRORS",
           "RETRY", "RESEND", "REQUEUE", "FALLBACK", "FAIL", "PAUSE", "CLOSE_FLEX"]

# -- the one set of defaults ----------------------------------------------------------------
#: Failed attempts of one call or item with retryable errors (5xx, resets, 529, a shed off flex;
#: rate limits too in a call) before it fails: the 5th such error is final (4 retries).
MAX_ITEM_ERRORS = 5
#: Times a timed-out attempt (which may have been billed) is resent at once. Timeouts also count
#: as same-tier errors, so by default the item's or call's error budget is the only limit.
RESEND_ON_TIMEOUT = MAX_ITEM_ERRORS - 1
#: Quota refusals in a row, with no success between them, that pause a job (one can be a blip).
QUOTA_STOP_AFTER = 5
#: Attempts of a job item that failed with an exception outside the taxonomy (an adapter or SDK
#: refusing the request itself, usually deterministic) before the item fails: one retry.
UNCLASSIFIED_ERRORS = 2

# -- what an Action says to do next -------------------------------------------------------------
RETRY = "retry"            # same call/item again on the same tier, after the backoff schedule
RESEND = "resend"          # again at once: the attempt timed out and may have been billed
REQUEUE = "requeue"        # (job) item back to the front of the queue; not an error of the item
FALLBACK = "fallback"      # (call) leave flex: the next attempt goes to standard
FAIL = "fail"              # give up: a call raises, a job item is failed, a batch is not submitted
PAUSE = "pause"            # (job) stop resumably with nothing failed; the item goes back to pending
CLOSE_FLEX = "close_flex"  # (job) this model has no flex here: close the flex lane, requeue the item

Context = Literal["call", "job", "batch"]


@dataclass(frozen=True)
class Limits:
    """The knobs :func:`decide` reads. ``Policy`` and ``RunOptions`` each build one; the defaults
    are the module constants above, so the two cannot disagree unless a user sets them."""

    max_item_errors: int = MAX_ITEM_ERRORS
    resend_on_timeout: int = RESEND_ON_TIMEOUT
    quota_stop_after: int = QUOTA_STOP_AFTER
    unclassified_errors: int = UNCLASSIFIED_ERRORS
    #: (call) flex asked of a model without flex goes to standard instead of raising
    allow_standard_for_no_flex: bool = False
    #: (job) ``--tier flex``: no standard fallback wanted, so a closed flex lane pauses the job
    flex_only: bool = False


@dataclass(frozen=True)
class Action:
    """The answer of :func:`decide`. ``do`` is one of the constants above; the flags say what else.

    ``count`` names the counter the caller advances for this error: ``"errors"`` (the item's or
    call's same-tier errors), ``"timeouts"`` (its timeouts *and* its same-tier errors), ``"flex"`` (flex sheds: the lane's streak in a job,
    the call's flex failures), ``"quota"`` (the job's quota streak) or None.
    """

    do: str
    count: str | None = None
    backoff: bool = False        # wait the backoff schedule (retry-after honoured) first
    lane_backoff: bool = False   # (job) the whole flex lane backs off
    cut_window: bool = False     # a flex capacity signal: cut the AIMD window
    pace: bool = False           # (job) the lane's rate limiter holds off for retry-after
    may_fall_back: bool = False  # (call) after this flex failure, check :func:`flex_fallback_reason`
    pause_kind: str | None = None   # JobPaused.kind: auth | endpoint | quota | flex_unsupported | provider_fault
    reason: str = ""


def decide(err: BaseException, *, tier: str, context: Context, item_errors: int = 0, timeouts: int = 0,
           quota_streak: int = 0, limits: Limits = Limits()) -> Action:
    """What to do after an attempt on ``tier`` failed with ``err``.

    ``item_errors``, ``timeouts`` and ``quota_streak`` are the counters *before* this error
    (same-tier errors of the call/item, its timeouts, the job's quota refusals in a row).
    ``err`` is what the adapter raised: a :class:`ProviderError` subclass, or any other
    exception (an adapter bug, an SDK refusing its own arguments: "unclassified").
    """
    if not isinstance(err, ProviderError):
        if context == "job" and item_errors + 1 < min(limits.unclassified_errors, limits.max_item_errors):
            return Action(RETRY, count="errors", backoff=True, reason="unclassified")
        if context == "batch":
            return Action(RETRY, count="errors", backoff=False, reason="unclassified")
        return Action(FAIL, count="errors", reason="unclassified")
    if context == "batch":
        # Submitting a batch: a definite refusal (any non-retryable class) is final, the rest is
        # retried by the lane (which looks the batch up first, so nothing is submitted twice).
        if err.retryable:
            return Action(RETRY, count="errors", reason="retryable")
        return Action(FAIL, reason="refused")
    job = context == "job"
    if isinstance(err, TierNotSupported):
        if tier != "flex":
            return Action(FAIL, reason="tier_not_supported")
        if job:
            return Action(CLOSE_FLEX, pause_kind="flex_unsupported" if limits.flex_only else None,
                          reason="tier_not_supported")
        if limits.allow_standard_for_no_flex:
            return Action(FALLBACK, reason="tier_not_supported")
        return Action(FAIL, reason="tier_not_supported")
    if isinstance(err, Unauthorized):
        return Action(PAUSE, pause_kind="auth", reason="unauthorized") if job else Action(FAIL, reason="unauthorized")
    if isinstance(err, EndpointNotFound):
        return Action(PAUSE, pause_kind="endpoint", reason="endpoint") if job else Action(FAIL, reason="endpoint")
    if isinstance(err, QuotaExhausted):
        if not job:
            return Action(FAIL, reason="quota")
        if quota_streak + 1 >= limits.quota_stop_after:
            return Action(PAUSE, count="quota", pause_kind="quota", reason="quota")
        return Action(RETRY, count="quota", backoff=True, reason="quota")
    if isinstance(err, BadRequest) or not err.retryable:
        return Action(FAIL, reason="bad_request")
    if isinstance(err, Timeout):
        # resent at once (the provider may have billed it: the caller records it as possibly
        # billed), and one of the same-tier errors: a timeout is no better a sign than a 5xx
        if timeouts + 1 > limits.resend_on_timeout or item_errors + 1 >= limits.max_item_errors:
            return Action(FAIL, count="timeouts", reason="timeout")
        return Action(RESEND, count="timeouts", may_fall_back=(tier == "flex" and not job), reason="timeout")
    if isinstance(err, FlexCapacityUnavailable) and tier == "flex":
        if job:
            return Action(REQUEUE, count="flex", lane_backoff=True, cut_window=True, reason="flex_shed")
        return Action(RETRY, count="flex", backoff=True, cut_window=True, may_fall_back=True, reason="flex_shed")
    if isinstance(err, RateLimited) and job:
        return Action(REQUEUE, pace=True, reason="rate_limited")
    # Same-tier retry: 5xx, resets, 529, a shed off flex (and, in a call, a rate limit).
    if item_errors + 1 >= limits.max_item_errors:
        return Action(FAIL, count="errors", reason="retries_exhausted")
    return Action(RETRY, count="errors", backoff=True, reason="retryable")


def on_provider_fault(*, context: Context = "job") -> Action:
    """An answer whose usage its request could not have produced (``implausible_usage``).

    The claim is not priced; in a job the item goes back to pending and the job pauses, so no
    more money goes to a provider that bills this. (Only the runner checks usage this way.)
    """
    del context
    return Action(PAUSE, pause_kind="provider_fault", reason="provider_fault")


def is_capacity_signal(error: BaseException | None) -> bool:
    """True when ``error`` on a flex attempt should shrink the flex window (the table's ``cut_window``)."""
    return error is not None and decide(error, tier="flex", context="job").cut_window


def flex_fallback_reason(*, fallback: str | int, flex_failures: int, waited: float, max_flex_wait: float,
                         deadline_left: float | None, standard_latency_budget: float) -> str | None:
    """(call) Why a call should leave flex now, or None to stay.

    ``waited``: seconds since the call started, including the backoff about to be waited;
    ``deadline_left``: seconds to the deadline after that backoff (None: no deadline).
    ``fallback`` is the :class:`~flextier.policy.fallback.Policy` setting: ``"never"``,
    ``"auto"`` (after ``max_flex_wait``) or N (after N flex failures); the deadline rule
    applies to both of the latter.
    """
    if fallback == "never":
        return None
    if isinstance(fallback, int) and flex_failures >= fallback:
        return "attempts"
    if fallback == "auto" and waited >= max_flex_wait:
        return "max_flex_wait"
    if deadline_left is not None and deadline_left < standard_latency_budget:
        return "deadline"
    return None
