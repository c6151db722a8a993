"""The --max-cost cap: reservations, exact money, unknown prices."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flextier.catalog import default_catalog
from flextier.policy.budget import (MESSAGE_OVERHEAD_TOKENS, Budget, estimate_cost, prompt_tokens_upper_bound,
                                    require_known_prices)
from flextier.policy.errors import UserInputError

D = Decimal


def test_reserve_refuses_what_would_pass_the_cap_exactly():
    b = Budget(D("0.30"))
    assert b.reserve("a", D("0.1"))
    assert b.reserve("b", D("0.2"))               # 0.1 + 0.2 == 0.30 exactly (no float drift)
    assert not b.reserve("c", D("0.000001"))
    assert b.reserved == D("0.3") and b.available == 0 and b.in_flight() == 2
    assert b.shortfall(D("0.05")) == D("0.05")


def test_settle_release_and_raise_cap():
    b = Budget(D("1.00"))
    assert b.reserve("a", D("0.60"))
    assert not b.reserve("b", D("0.50"))
    b.release("a")                                  # shed flex attempt: not billed
    assert b.committed == 0
    assert b.reserve("b", D("0.50"))
    b.settle("b", D("0.20"))                        # real cost below the estimate
    assert b.spent == D("0.20") and b.reserved == 0 and b.overrun == 0
    assert b.reserve("c", D("0.80")) and not b.reserve("d", D("0.01"))
    b.raise_cap(D("1.50"))                          # the pause ends once the cap is raised
    assert b.reserve("d", D("0.01"))
    with pytest.raises(ValueError):
        b.raise_cap(D("1.00"))
    b.raise_cap(None)
    assert b.reserve("e", D("1000")) and b.available is None


def test_money_must_be_decimal_and_non_negative():
    with pytest.raises(TypeError):
        Budget(0.3)                                 # type: ignore[arg-type]
    b = Budget(D("1"))
    with pytest.raises(TypeError):
        b.reserve("a", 0.1)                         # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.reserve("a", D("-1"))
    with pytest.raises(ValueError):
        Budget(D("NaN"))
    assert b.reserve("a", 0)                        # int is exact, accepted


def test_double_reservation_is_a_bug():
    b = Budget(None)
    b.reserve(("item", "flex"), D("1"))
    b.reserve(("item", "standard"), D("1"))         # a hedge is a second key
    with pytest.raises(ValueError):
        b.reserve(("item", "flex"), D("1"))


def test_unknown_estimates_are_refused_under_a_cap_and_free_without():
    with pytest.raises(ValueError, match="unknown"):
        Budget(D("5")).reserve("a", None)
    b = Budget(None)
    assert b.reserve("a", None) and b.reserved == 0


def test_settle_unknown_cost_keeps_the_estimate_and_overrun_is_visible():
    b = Budget(D("10"), spent=D("2"))               # spent seeded from the store on resume
    b.reserve("a", D("1.5"))
    b.settle("a", None)
    assert b.spent == D("3.5")
    b.reserve("b", D("1"))
    b.settle("b", D("1.25"))
    assert b.spent == D("4.75") and b.overrun == D("0.25")
    b.settle("late", D("0.5"))                      # result of an attempt from before a resume
    assert b.spent == D("5.25")


@settings(max_examples=60, deadline=None)
@given(cap=st.integers(0, 500).map(lambda x: D(x).scaleb(-2)),
       ops=st.lists(st.tuples(st.sampled_from(["reserve", "reserve", "settle", "release", "raise"]),
                              st.integers(0, 30), st.integers(0, 2_000_000).map(lambda x: D(x).scaleb(-6)),
                              st.integers(0, 100)),
                    max_size=80))
def test_committed_money_never_passes_the_cap(cap, ops):
    """Under any sequence where real costs are at most their estimates (the estimator's
    contract), spent + reserved stays under the cap and so does spent."""
    b = Budget(cap)
    held: dict[int, Decimal] = {}
    for op, key, amount, pct in ops:
        if op == "reserve" and key not in held:
            before = b.committed
            ok = b.reserve(key, amount)
            assert ok == (before + amount <= b.max_cost)
            if ok:
                held[key] = amount
        elif op == "settle" and key in held:
            actual = (held.pop(key) * pct / 100).quantize(D("0.000001"), rounding="ROUND_FLOOR")
            b.settle(key, actual)
        elif op == "release" and key in held:
            held.pop(key)
            b.release(key)
        elif op == "raise":
            b.raise_cap(b.max_cost + amount / 10)
        assert b.max_cost is not None
        assert b.committed <= b.max_cost
        assert b.reserved == sum(held.values(), D(0))
    assert b.spent <= b.max_cost


# -- estimating ---------------------------------------------------------------------------------

def test_estimate_is_exact_decimal_at_the_tier_price():
    m = default_catalog().resolve("openai/gpt-5.4-mini")
    # flex: 0.375 in, 2.25 out per 1M
    assert estimate_cost(m, "flex", 1000, 500) == D("0.001500")
    assert estimate_cost(m, "standard", 1000, 500) == D("0.003000")


def test_estimate_applies_long_context_uplift():
    m = default_catalog().resolve("openai/gpt-5.4")
    short = estimate_cost(m, "standard", 272_000, 0)
    long = estimate_cost(m, "standard", 272_001, 0)
    assert short == D("0.68") and long == D("272001") * D("2.50") * 2 / 1_000_000


def test_unknown_prices_are_unknown_and_stop_a_capped_job():
    m = default_catalog().resolve("bedrock/deepseek.v3-v1:0")        # flex prices unknown
    assert estimate_cost(m, "flex", 100, 100) is None
    with pytest.raises(UserInputError, match="--max-cost needs known prices"):
        require_known_prices(m, ("standard", "flex"))
    require_known_prices(m, ("standard",))
    claude = default_catalog().resolve("anthropic/claude-haiku-4-5")
    with pytest.raises(UserInputError, match="no flex input and output"):
        require_known_prices(claude, ("flex",))


def test_prompt_bound_counts_bytes_and_framing():
    assert prompt_tokens_upper_bound("héllo") == 6 + MESSAGE_OVERHEAD_TOKENS
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "日本"}]}]
    key = lambda k: len(k) + 1  # noqa: E731  (keys count: a tool's schema is mostly property names)
    expected = key("role") + len("system") + key("content") + len("be brief") \
        + key("role") + len("user") + key("content") + key("type") + len("text") + key("text") + len("日本".encode()) \
        + 2 * MESSAGE_OVERHEAD_TOKENS
    assert prompt_tokens_upper_bound(msgs) == expected
    assert prompt_tokens_upper_bound({"input": "abc", "max_output_tokens": 50}) == \
        key("input") + 3 + key("max_output_tokens") + 2 + MESSAGE_OVERHEAD_TOKENS



def test_lost_attempts_stay_held_and_a_restart_keeps_them():
    """Issue 18 §2: an attempt without an answer (timeout, reset, cut off by a crash) may be billed:
    it keeps its reservation as possibly billed, and a budget rebuilt after a crash with the same
    amount refuses what would pass the cap."""
    b = Budget(D("1.00"))
    assert b.reserve("a", D("0.40")) and b.reserve("b", D("0.30"))
    b.lose("a")                                     # timed out: maybe billed
    b.settle("b", D("0.10"))
    assert b.possibly_billed == D("0.40") and b.spent == D("0.10") and b.reserved == 0
    assert b.committed == D("0.50") and not b.fits(D("0.51"))
    b.lose("unknown-key")                           # nothing held, nothing changes
    assert b.committed == D("0.50")
    after_crash = Budget(D("1.00"), spent=D("0.10"), possibly_billed=D("0.40"))
    assert after_crash.committed == b.committed and not after_crash.reserve("c", D("0.51"))
    with pytest.raises(TypeError):
        Budget(D("1"), possibly_billed=0.5)          # money is never a float
