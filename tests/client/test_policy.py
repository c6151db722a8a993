"""The retry loop, driven by scripted attempts on a fake clock (no I/O, no waiting)."""
from __future__ import annotations

import warnings

import pytest

from flextier._types import AttemptOutcome
from flextier.catalog import default_catalog
from flextier.cost import Usage
from flextier.errors import (BadRequest, FlexCapacityUnavailable, Overloaded, QuotaExhausted, RateLimited,
                             TierNotSupported, Timeout, Transient)
from flextier.policy.events import Hooks
from flextier.policy.fallback import FlexFallbackWarning, Policy, acall_with_policy, call_with_policy

GEMINI = default_catalog().resolve("gemini/gemini-3-flash")
CLAUDE = default_catalog().resolve("anthropic/claude-haiku-4-5")


def ok(tier: str) -> AttemptOutcome:
    return AttemptOutcome(body={}, text="hi", served_tier=tier, usage=Usage(1000, 0, 1000, 0))


class Script:
    """send(tier, timeout): pops the next scripted result; records what was asked."""

    def __init__(self, *steps, clock=None, took: float = 0.0, standard_ok: bool = False):
        self.steps = list(steps)
        self.standard_ok = standard_ok
        self.calls: list[tuple[str, float | None]] = []
        self.clock = clock
        self.took = took

    def __call__(self, tier, timeout):
        self.calls.append((tier, timeout))
        if self.clock is not None:
            self.clock.t += self.took
        if tier == "standard" and self.standard_ok:
            return ok(tier)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return ok(tier) if step == "ok" else step


def cap() -> FlexCapacityUnavailable:
    return FlexCapacityUnavailable("shed", status=503, code="UNAVAILABLE")


def test_success_on_flex_is_priced_at_flex(make_policy):
    r = call_with_policy(Script("ok"), make_policy(), entry=GEMINI)
    assert r.tier == "flex" and [a.outcome for a in r.attempts] == ["ok"]
    assert r.cost is not None and r.standard_cost == 2 * r.cost and r.saving == r.cost


def test_capacity_error_backs_off_then_succeeds(make_policy, clock):
    s = Script(cap(), cap(), "ok")
    r = call_with_policy(s, make_policy(), entry=GEMINI)
    assert [a.outcome for a in r.attempts] == ["FlexCapacityUnavailable"] * 2 + ["ok"]
    assert [t for t, _ in s.calls] == ["flex"] * 3
    assert len(clock.sleeps) == 2 and 0 <= clock.sleeps[0] <= 1 and 0 <= clock.sleeps[1] <= 2
    assert s.calls[0][1] == 900.0  # default flex timeout


def test_fallback_after_n_flex_attempts(make_policy):
    s = Script(cap(), cap(), "ok")
    events = []
    r = call_with_policy(s, make_policy(fallback=2, hooks=Hooks(on_fallback=events.append)), entry=GEMINI)
    assert [t for t, _ in s.calls] == ["flex", "flex", "standard"]
    assert r.tier == "standard" and r.cost == r.standard_cost
    assert s.calls[2][1] is None  # standard keeps the SDK default timeout
    assert events[0].reason == "attempts" and events[0].to_tier == "standard"


def test_auto_fallback_after_max_flex_wait(make_policy, clock):
    s = Script(*[cap() for _ in range(50)], clock=clock, took=60.0, standard_ok=True)
    r = call_with_policy(s, make_policy(max_flex_wait=600), entry=GEMINI)
    assert r.tier == "standard"
    flex = [a for a in r.attempts if a.tier == "flex"]
    assert 5 <= len(flex) <= 11
    assert clock.t - 1000.0 <= 600 + 60 + 8 + 60  # last flex attempt may start just before 600 s; + standard


def test_never_keeps_retrying_flex(make_policy):
    s = Script(*[cap() for _ in range(30)], "ok")
    r = call_with_policy(s, make_policy(fallback="never", max_flex_wait=1), entry=GEMINI)
    assert r.tier == "flex" and len(r.attempts) == 31


def test_deadline_leaves_room_for_standard(make_policy, clock):
    s = Script(cap(), "ok", clock=clock, took=290.0)
    r = call_with_policy(s, make_policy(deadline=400, standard_latency_budget=120), entry=GEMINI)
    # the flex attempt's timeout was shortened so standard still fits
    assert s.calls[0] == ("flex", 280.0)
    assert [t for t, _ in s.calls] == ["flex", "standard"] and r.tier == "standard"


def test_deadline_too_close_goes_straight_to_standard(make_policy):
    s = Script("ok")
    r = call_with_policy(s, make_policy(standard_latency_budget=120), entry=GEMINI, deadline_at=1000.0 + 100)
    assert s.calls == [("standard", 100.0)] and r.tier == "standard"


@pytest.mark.parametrize("err", [QuotaExhausted("q", code="insufficient_quota"), BadRequest("b", status=400)])
def test_quota_and_bad_request_are_not_retried(make_policy, clock, err):
    with pytest.raises(type(err)) as ei:
        call_with_policy(Script(err), make_policy(), entry=GEMINI)
    assert len(ei.value.attempts) == 1 and clock.sleeps == []


def test_rate_limit_honours_retry_after_on_same_tier(make_policy, clock):
    s = Script(RateLimited("rl", status=429, retry_after=7.0), "ok")
    r = call_with_policy(s, make_policy(), entry=GEMINI)
    assert clock.sleeps == [7.0] and [t for t, _ in s.calls] == ["flex", "flex"] and r.tier == "flex"


@pytest.mark.parametrize("err", [Transient("5xx", status=500), Overloaded("529", status=529)])
def test_transient_retried_then_gives_up(make_policy, err):
    with pytest.raises(type(err)) as ei:
        call_with_policy(Script(*[type(err)(str(err)) for _ in range(10)]), make_policy(max_retries=2), entry=GEMINI)
    assert len(ei.value.attempts) == 3


def test_timeout_resent_and_marked_possibly_billed(make_policy):
    t = Timeout("slow", possibly_billed=True)
    r = call_with_policy(Script(t, "ok"), make_policy(), entry=GEMINI)
    assert r.attempts[0].possibly_billed and r.possibly_billed == 1
    with pytest.raises(Timeout) as ei:
        call_with_policy(Script(Timeout("a", possibly_billed=True), Timeout("b", possibly_billed=True), "ok"),
                         make_policy(resend_on_timeout=1), entry=GEMINI)
    assert len(ei.value.attempts) == 2 and all(a.possibly_billed for a in ei.value.attempts)
    # by default a timeout is one of the same-tier errors, as for a job item: the 5th is final
    with pytest.raises(Timeout) as ei:
        call_with_policy(Script(*[Timeout(str(i), possibly_billed=True) for i in range(9)]),
                         make_policy(tier="standard"), entry=GEMINI)
    assert len(ei.value.attempts) == 5
    with pytest.raises(Timeout):
        call_with_policy(Script(Timeout("a"), "ok"), make_policy(resend_on_timeout=0), entry=GEMINI)


def test_timeout_on_flex_after_max_wait_resends_on_standard(make_policy, clock):
    s = Script(Timeout("slow", possibly_billed=True), "ok", clock=clock, took=900.0)
    r = call_with_policy(s, make_policy(), entry=GEMINI)
    assert [t for t, _ in s.calls] == ["flex", "standard"] and r.tier == "standard"


def test_no_flex_model_raises_clearly(make_policy):
    with pytest.raises(TierNotSupported, match="batch"):
        call_with_policy(Script("ok"), make_policy(), entry=CLAUDE)


def test_no_flex_model_goes_standard_with_warning_when_allowed(make_policy):
    s = Script("ok")
    with pytest.warns(FlexFallbackWarning):
        r = call_with_policy(s, make_policy(allow_standard_for_no_flex=True), entry=CLAUDE)
    assert s.calls[0][0] == "standard" and r.tier == "standard"


def test_tier_not_supported_from_provider_falls_back_when_allowed(make_policy):
    s = Script(TierNotSupported("no flex here", status=400), "ok")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = call_with_policy(s, make_policy(allow_standard_for_no_flex=True), entry=GEMINI)
    assert [t for t, _ in s.calls] == ["flex", "standard"] and r.tier == "standard"


def test_hooks_see_every_attempt_and_backoff_and_a_bad_hook_is_ignored(make_policy):
    seen, backoffs = [], []

    def boom(ev):
        raise RuntimeError("hook bug")
    hooks = Hooks(on_attempt=lambda ev: seen.append(ev.attempt.outcome), on_backoff=backoffs.append,
                  on_fallback=boom)
    r = call_with_policy(Script(cap(), cap(), "ok"), make_policy(fallback=2, hooks=hooks), entry=GEMINI)
    assert seen == ["FlexCapacityUnavailable", "FlexCapacityUnavailable", "ok"] and r.tier == "standard"
    assert len(backoffs) == 1 and backoffs[0].reason == "FlexCapacityUnavailable"


def test_unknown_served_tier_is_not_priced(make_policy):
    out = AttemptOutcome(body={}, text="", served_tier="unknown", usage=Usage(10, 0, 10, 0))
    r = call_with_policy(Script(out), make_policy(), entry=GEMINI)
    assert r.cost is None and r.standard_cost is not None


def test_policy_validation():
    with pytest.raises(ValueError):
        Policy(fallback=0)
    with pytest.raises(ValueError):
        Policy(tier="batch")
    assert Policy().timeouts() == {"flex": 900.0} and Policy().max_flex_wait == 600.0


async def test_async_loop_matches_sync(make_policy, clock):
    steps = [cap(), RateLimited("rl", retry_after=3.0), "ok"]

    async def asend(tier, timeout):
        step = steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return ok(tier)
    r = await acall_with_policy(asend, make_policy(), entry=GEMINI)
    assert [a.outcome for a in r.attempts] == ["FlexCapacityUnavailable", "RateLimited", "ok"]
    assert clock.sleeps[1] == 3.0
