"""The decision table, alone: one row per error class x tier x state x context.

Each row is what docs/errors.md and the README's table promise. ``wrap``/``complete``, the
runner, the batch lane and the AIMD window all carry out :func:`decide`'s answer, so these rows
are the behaviour of all four.
"""
from __future__ import annotations

import pytest

from flextier.policy.errors import (BadRequest, EndpointNotFound, FlexCapacityUnavailable, Overloaded,
                                    QuotaExhausted, RateLimited, TierNotSupported, Timeout, Transient,
                                    Unauthorized)
from flextier.policy.fallback import Policy
from flextier.policy.rules import (CLOSE_FLEX, FAIL, FALLBACK, MAX_ITEM_ERRORS, PAUSE, QUOTA_STOP_AFTER, REQUEUE,
                                   RESEND, RESEND_ON_TIMEOUT, RETRY, Action, Limits, decide, flex_fallback_reason,
                                   is_capacity_signal, on_provider_fault)

SHED = FlexCapacityUnavailable("shed", status=429, code="resource_unavailable")
RL = RateLimited("rl", status=429, retry_after=3.0)
T5 = Transient("5xx", status=500)
OVL = Overloaded("529", status=529)
TO = Timeout("slow", possibly_billed=True)
NOFLEX = TierNotSupported("no flex", status=400)
QUOTA = QuotaExhausted("q", code="insufficient_quota")
AUTH = Unauthorized("401", status=401)
URL = EndpointNotFound("404", status=404)
BAD = BadRequest("400", status=400)
BUG = KeyError("adapter bug")
LAST = MAX_ITEM_ERRORS - 1  # errors before the one that is final

# (err, tier, context, state, do, extra fields the Action must have)
ROWS = [
    # flex shed
    (SHED, "flex", "call", {}, RETRY, dict(count="flex", backoff=True, cut_window=True, may_fall_back=True)),
    (SHED, "flex", "call", {"item_errors": 99}, RETRY, dict(count="flex")),    # never counted as an error
    (SHED, "flex", "job", {}, REQUEUE, dict(count="flex", lane_backoff=True, cut_window=True)),
    (SHED, "flex", "job", {"item_errors": 99}, REQUEUE, dict(lane_backoff=True)),
    (SHED, "standard", "call", {}, RETRY, dict(count="errors", backoff=True, cut_window=False)),
    (SHED, "standard", "job", {"item_errors": LAST}, FAIL, dict(count="errors")),
    (SHED, "batch", "batch", {}, RETRY, {}),
    # rate limit: pacing in a job, a counted same-tier retry in a call
    (RL, "flex", "job", {}, REQUEUE, dict(pace=True, count=None, cut_window=False, lane_backoff=False)),
    (RL, "standard", "job", {"item_errors": 99}, REQUEUE, dict(pace=True)),
    (RL, "flex", "call", {}, RETRY, dict(count="errors", backoff=True, cut_window=False, may_fall_back=False)),
    (RL, "flex", "call", {"item_errors": LAST}, FAIL, {}),
    (RL, "batch", "batch", {}, RETRY, {}),
    # 5xx and 529: same-tier retries, the MAX_ITEM_ERRORS-th is final, in both contexts
    (T5, "flex", "call", {}, RETRY, dict(count="errors", backoff=True)),
    (T5, "standard", "job", {"item_errors": LAST - 1}, RETRY, dict(count="errors", backoff=True)),
    (T5, "standard", "job", {"item_errors": LAST}, FAIL, dict(count="errors")),
    (T5, "standard", "call", {"item_errors": LAST}, FAIL, {}),
    (OVL, "standard", "call", {}, RETRY, dict(backoff=True)),
    (OVL, "standard", "job", {"item_errors": LAST}, FAIL, {}),
    (T5, "batch", "batch", {}, RETRY, {}),
    # timeout: resent at once (maybe billed), counted as a same-tier error - in both contexts
    (TO, "flex", "call", {}, RESEND, dict(count="timeouts", backoff=False, may_fall_back=True)),
    (TO, "standard", "call", {}, RESEND, dict(count="timeouts", may_fall_back=False)),
    (TO, "flex", "job", {}, RESEND, dict(count="timeouts", backoff=False, may_fall_back=False)),
    (TO, "flex", "call", {"timeouts": RESEND_ON_TIMEOUT}, FAIL, dict(count="timeouts")),
    (TO, "standard", "job", {"timeouts": RESEND_ON_TIMEOUT}, FAIL, dict(count="timeouts")),
    (TO, "flex", "job", {"item_errors": LAST - 1}, RESEND, {}),     # one of the same-tier errors ...
    (TO, "flex", "job", {"item_errors": LAST}, FAIL, {}),           # ... so the 5th error is final
    (TO, "standard", "call", {"item_errors": LAST}, FAIL, {}),
    (TO, "flex", "call", {"timeouts": 1, "limits": Limits(resend_on_timeout=1)}, FAIL, {}),   # a lower cap
    (TO, "batch", "batch", {}, RETRY, {}),                          # the lane looks the batch up first
    # no flex for this model
    (NOFLEX, "flex", "call", {}, FAIL, {}),
    (NOFLEX, "flex", "call", {"limits": Limits(allow_standard_for_no_flex=True)}, FALLBACK, {}),
    (NOFLEX, "flex", "job", {}, CLOSE_FLEX, dict(pause_kind=None)),
    (NOFLEX, "flex", "job", {"limits": Limits(flex_only=True)}, CLOSE_FLEX, dict(pause_kind="flex_unsupported")),
    (NOFLEX, "standard", "job", {}, FAIL, {}),
    (NOFLEX, "standard", "call", {}, FAIL, {}),
    (NOFLEX, "batch", "batch", {}, FAIL, {}),
    # quota: raised by a call; a job retries a blip and pauses on a run of refusals
    (QUOTA, "flex", "call", {}, FAIL, {}),
    (QUOTA, "flex", "job", {}, RETRY, dict(count="quota", backoff=True)),
    (QUOTA, "standard", "job", {"quota_streak": QUOTA_STOP_AFTER - 1}, PAUSE, dict(pause_kind="quota")),
    (QUOTA, "batch", "batch", {}, FAIL, {}),
    # a refused key and a wrong URL fail every request alike: raise / pause, never fail items
    (AUTH, "flex", "call", {}, FAIL, {}),
    (AUTH, "standard", "job", {}, PAUSE, dict(pause_kind="auth", count=None)),
    (AUTH, "batch", "batch", {}, FAIL, {}),
    (URL, "standard", "call", {}, FAIL, {}),
    (URL, "flex", "job", {}, PAUSE, dict(pause_kind="endpoint")),
    (URL, "batch", "batch", {}, FAIL, {}),
    # bad request: final everywhere, at once
    (BAD, "flex", "call", {}, FAIL, {}),
    (BAD, "standard", "job", {}, FAIL, dict(count=None)),
    (BAD, "batch", "batch", {}, FAIL, {}),
    # an exception outside the taxonomy: one retry in a job, retried submissions in the batch lane
    (BUG, "flex", "job", {}, RETRY, dict(count="errors", backoff=True)),
    (BUG, "flex", "job", {"item_errors": 1}, FAIL, {}),
    (BUG, "standard", "call", {}, FAIL, {}),
    (BUG, "batch", "batch", {}, RETRY, {}),
]


@pytest.mark.parametrize("err,tier,context,state,do,extra", ROWS,
                         ids=[f"{type(r[0]).__name__}-{r[1]}-{r[2]}-{i}" for i, r in enumerate(ROWS)])
def test_table_row(err, tier, context, state, do, extra):
    act = decide(err, tier=tier, context=context, **state)
    assert isinstance(act, Action)
    assert act.do == do, act
    for k, v in extra.items():
        assert getattr(act, k) == v, (k, act)


def test_action_is_frozen():
    act = decide(T5, tier="flex", context="job")
    with pytest.raises(Exception):
        act.do = FAIL  # type: ignore[misc]


def test_same_tier_errors_allowed_is_one_number_for_calls_and_jobs():
    """The old defaults disagreed (6 retries in ``Policy`` against 5 errors per job item)."""
    from flextier.jobs.runner import RunOptions
    from flextier.catalog import load_builtin

    opts = RunOptions(model=load_builtin().resolve("gpt-5.4-mini"))
    limits = Policy().limits()
    assert limits.max_item_errors == MAX_ITEM_ERRORS == opts.max_item_errors
    assert limits.resend_on_timeout == RESEND_ON_TIMEOUT == opts.resend_on_timeout
    n = 0
    while decide(T5, tier="standard", context="call", item_errors=n, limits=limits).do == RETRY:
        n += 1
    m = 0
    while decide(T5, tier="standard", context="job", item_errors=m).do == RETRY:
        m += 1
    assert n == m == MAX_ITEM_ERRORS - 1   # four retries: the fifth error is final


@pytest.mark.parametrize("err,cuts", [(SHED, True), (RL, False), (T5, False), (OVL, False), (TO, False),
                                      (BAD, False), (BUG, False), (None, False)])
def test_capacity_signal_is_the_tables_cut_window(err, cuts):
    assert is_capacity_signal(err) is cuts


def test_provider_fault_pauses():
    act = on_provider_fault()
    assert act.do == PAUSE and act.pause_kind == "provider_fault"


@pytest.mark.parametrize("kw,reason", [
    (dict(fallback="never", flex_failures=99, waited=1e9, deadline_left=0.0), None),
    (dict(fallback=3, flex_failures=3, waited=0.0, deadline_left=None), "attempts"),
    (dict(fallback=3, flex_failures=2, waited=1e9, deadline_left=None), None),       # N, not time, decides
    (dict(fallback="auto", flex_failures=1, waited=600.0, deadline_left=None), "max_flex_wait"),
    (dict(fallback="auto", flex_failures=1, waited=599.0, deadline_left=None), None),
    (dict(fallback="auto", flex_failures=1, waited=10.0, deadline_left=119.0), "deadline"),
    (dict(fallback=5, flex_failures=1, waited=10.0, deadline_left=119.0), "deadline"),
    (dict(fallback="auto", flex_failures=1, waited=10.0, deadline_left=121.0), None),
])
def test_flex_fallback_reason(kw, reason):
    assert flex_fallback_reason(max_flex_wait=600.0, standard_latency_budget=120.0, **kw) == reason
