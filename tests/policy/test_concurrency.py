"""AIMD flex window and rate-limit pacing, on explicit clocks."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flextier.policy.concurrency import (AimdConfig, AimdController, RateLimiter, TokenBucket,
                                         is_capacity_signal, parse_duration)
from flextier.policy.errors import (BadRequest, FlexCapacityUnavailable, Overloaded, RateLimited, Timeout,
                                    Transient)


# -- AIMD ------------------------------------------------------------------------------------

def test_starts_cautious_and_grows_about_one_per_window_of_successes():
    c = AimdController(AimdConfig(max_concurrency=64))
    assert c.limit == 4
    for _ in range(4):                      # one window's worth of successes at w=4
        c.on_success(0.0)
    assert c.limit == 4 and 4.9 < c.window < 5.0
    for _ in range(6):
        c.on_success(0.0)
    assert c.limit == 6


def test_never_above_the_ceiling_and_small_ceilings_cap_the_start():
    c = AimdController(AimdConfig(max_concurrency=2))
    assert c.limit == 2
    for _ in range(1000):
        c.on_success(0.0)
    assert c.limit == 2 and c.window == 2.0


def test_capacity_error_halves_once_per_cooldown():
    c = AimdController(AimdConfig(max_concurrency=100, initial=40, cooldown=5.0))
    assert c.on_capacity_error(10.0)
    assert c.limit == 20
    assert not c.on_capacity_error(12.0)     # same congestion event: the in-flight burst
    assert c.limit == 20
    assert c.on_capacity_error(15.0)
    assert c.limit == 10 and c.cuts == 2


def test_never_below_one():
    c = AimdController(AimdConfig(max_concurrency=8, initial=1, cooldown=0.0))
    for t in range(50):
        c.on_capacity_error(float(t))
    assert c.limit == 1 and c.window >= 1.0


@pytest.mark.parametrize("err,cuts", [
    (FlexCapacityUnavailable("shed", status=429, code="resource_unavailable"), True),
    (RateLimited("rpm", status=429, code="rate_limit_exceeded"), False),
    (Timeout("slow"), False), (Transient("502"), False), (BadRequest("bad"), False), (Overloaded("529"), False),
])
def test_only_flex_capacity_errors_shrink_the_window(err, cuts):
    assert is_capacity_signal(err) is cuts
    c = AimdController(AimdConfig(max_concurrency=16, initial=16))
    c.observe(err, 0.0)
    assert (c.limit < 16) is cuts
    c.observe(None, 1.0)                        # None = success
    assert c.window > (8.0 if cuts else 15.9)


@pytest.mark.parametrize("kw", [dict(max_concurrency=0), dict(max_concurrency=4, initial=0),
                                dict(max_concurrency=4, decrease=1.0), dict(max_concurrency=4, increase=0.0),
                                dict(max_concurrency=4, cooldown=-1.0)])
def test_bad_aimd_configs(kw):
    with pytest.raises(ValueError):
        AimdConfig(**kw)


@settings(max_examples=60, deadline=None)
@given(mx=st.integers(1, 200), init=st.integers(1, 300), cooldown=st.floats(0, 10),
       events=st.lists(st.tuples(st.sampled_from(["ok", "shed", "rate", "timeout"]), st.floats(0, 5)), max_size=300))
def test_window_always_within_one_and_max(mx, init, cooldown, events):
    c = AimdController(AimdConfig(max_concurrency=mx, initial=init, cooldown=cooldown))
    errs = {"ok": None, "shed": FlexCapacityUnavailable(), "rate": RateLimited(), "timeout": Timeout()}
    now = 0.0
    for kind, dt in events:
        now += dt
        before = c.window
        c.observe(errs[kind], now)
        assert 1 <= c.limit <= mx
        assert 1.0 <= c.window <= max(mx, init)
        if kind in ("rate", "timeout"):
            assert c.window == before
        if kind == "ok":
            assert c.window >= min(before, float(mx))


# -- durations and buckets ------------------------------------------------------------------------

@pytest.mark.parametrize("text,secs", [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5),
                                       ("250us", 0.00025), ("0.5", 0.5), ("0s", 0.0), ("17ns", 17e-9)])
def test_parse_duration(text, secs):
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["", "abc", "1x", "1s junk", "-1s", "s", "1.2.3s", "nan", "inf"])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bucket_refills_at_its_rate_and_a_refusal_takes_nothing():
    b = TokenBucket(rate=2.0, capacity=4.0, now=0.0)
    for _ in range(4):
        assert b.try_take(1, 0.0) == 0.0
    assert b.try_take(1, 0.0) == pytest.approx(0.5)
    assert b.level(0.0) == pytest.approx(0.0)
    assert b.try_take(1, 0.5) == 0.0
    assert b.level(100.0) == pytest.approx(4.0)               # never above capacity
    assert b.try_take(10, 100.0) == 0.0                       # oversized: allowed when full...
    assert b.try_take(1, 100.0) == pytest.approx(3.5)         # ...and leaves the bucket in debt


@settings(max_examples=100, deadline=None)
@given(rpm=st.integers(1, 600), gaps=st.lists(st.floats(0, 3), min_size=1, max_size=120))
def test_limiter_never_grants_more_than_the_limit_allows(rpm, gaps):
    lim = RateLimiter(rpm=rpm, now=0.0)
    granted: list[float] = []
    now = 0.0
    for g in gaps:
        now += g
        if lim.try_acquire(1, now) == 0.0:
            granted.append(now)
    # any interval of length T holds at most capacity + rate * T grants
    for i, t in enumerate(granted):
        for j in range(i, len(granted)):
            assert j - i + 1 <= rpm + rpm / 60.0 * (granted[j] - t) + 1e-9


def test_limiter_waits_and_is_not_charged_on_refusal():
    lim = RateLimiter(rpm=60, tpm=1000, now=0.0)
    assert lim.try_acquire(900, 0.0) == 0.0
    wait = lim.try_acquire(200, 0.0)                 # tokens short by 100 at 1000/60 per s
    assert wait == pytest.approx(6.0)
    assert lim.requests is not None and lim.requests.level(0.0) == pytest.approx(59.0)
    assert lim.try_acquire(200, 6.0) == 0.0
    lim.settle_tokens(900, 100, 6.0)                 # the first request used far fewer tokens
    assert lim.tokens is not None and lim.tokens.level(6.0) == pytest.approx(800.0)


def test_rate_limited_pauses_the_lane():
    lim = RateLimiter(now=0.0)                        # no limits known: unlimited
    assert lim.try_acquire(10**6, 0.0) == 0.0
    lim.on_rate_limited(7.5, 1.0)
    assert lim.try_acquire(1, 2.0) == pytest.approx(6.5)
    assert lim.try_acquire(1, 8.5) == 0.0
    lim.on_rate_limited(None, 10.0)                   # no Retry-After: default pause
    assert lim.try_acquire(1, 10.0) == pytest.approx(1.0)


def test_headers_set_limits_clamp_the_level_and_honour_reset():
    lim = RateLimiter(now=0.0)
    lim.update_from_headers({"X-RateLimit-Limit-Requests": "120", "x-ratelimit-remaining-requests": "3",
                             "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "60000",
                             "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "4m0s"}, 0.0)
    assert lim.requests is not None and lim.requests.capacity == 120 and lim.requests.rate == pytest.approx(2.0)
    assert lim.requests.level(0.0) == pytest.approx(3.0)
    assert lim.try_acquire(10, 0.0) == pytest.approx(240.0)     # tokens exhausted for 4 minutes
    assert lim.try_acquire(10, 240.0) == 0.0                    # (a reset past max_pause waits max_pause)


def test_malformed_headers_are_ignored():
    lim = RateLimiter(rpm=60, now=0.0)
    lim.update_from_headers({"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "-4",
                             "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-requests": "soon"}, 0.0)
    assert lim.requests is not None and lim.requests.capacity == 60 and lim.tokens is None
    assert lim.try_acquire(1, 0.0) == 0.0


def test_slow_start_reaches_the_ceiling_in_about_ceiling_successes_and_ends_at_the_first_shed():
    c = AimdController(AimdConfig(max_concurrency=256, slow_start=True, cooldown=0.0))
    assert c.limit == 4
    for _ in range(252):                    # +1 per success: 4 -> 256
        c.on_success(0.0)
    assert c.limit == 256
    assert c.on_capacity_error(1.0) and c.limit == 128 and not c.slow_start
    for _ in range(130):                    # back to plain AIMD: about +1 per window
        c.on_success(2.0)
    assert c.limit == 129


def test_after_a_long_shed_episode_the_window_regrows_fast_to_half_its_old_size_then_slowly():
    c = AimdController(AimdConfig(max_concurrency=64, initial=32, cooldown=5.0))
    for t in range(0, 300, 5):              # a 5-minute outage: cut after cut, no success between
        c.on_capacity_error(float(t))
    assert c.limit == 1
    for _ in range(15):                     # slow start back up to 16 (half the window before it)
        c.on_success(400.0)
    assert c.limit == 16
    for _ in range(17):                     # then one per window's worth of successes again
        c.on_success(500.0)
    assert c.limit == 17
    # a shed after those successes starts a new episode: its threshold is half the window then
    c.on_capacity_error(600.0)
    assert c.limit == 8
    for _ in range(9):                      # 8.5 is already the threshold: additive from there
        c.on_success(700.0)
    assert c.limit == 9 and c.window < 10   # slow start would have reached 17.5


def test_a_servers_larger_limit_never_lifts_the_users_rpm():
    """--rpm 6 against a provider that says 10,000/min: still 6 a minute (the headers may only lower it)."""
    lim = RateLimiter(rpm=6, now=0.0)
    lim.update_from_headers({"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999"}, 0.0)
    sent = sum(1 for _ in range(100) if lim.try_acquire(1, 0.0) == 0.0)
    assert sent == 6
    assert lim.try_acquire(1, 0.0) == pytest.approx(10.0)
    lim.update_from_headers({"x-ratelimit-limit-requests": "3"}, 0.0)   # a smaller one does lower it
    assert lim.requests.capacity == 3


def test_grant_leases_from_the_same_buckets_and_never_more_than_they_hold():
    """RateLimiter.grant (a Ray member's lease): chunks come out of the one set of buckets, a
    share caps a chunk, an empty bucket grants nothing and says when to ask again, and a 429's
    pause holds every grant."""
    lim = RateLimiter(rpm=60, tpm=6000, now=0.0)
    assert lim.limited
    n, t, wait = lim.grant(64, 64 * 50, 0.0, max_share=0.25)
    assert (n, t, wait) == (15, 750, 0.0)          # a quarter of the 60-request bucket
    total = n
    while True:
        n, t, wait = lim.grant(64, 64 * 50, 0.0, max_share=0.25)
        if not n:
            break
        total += n
    assert total == 60 and wait == pytest.approx(1.0)  # 1 request per second refills it
    assert lim.try_acquire(50, 0.0) > 0                # what was leased is gone for everyone
    n, _, _ = lim.grant(4, 400, 3.0)
    assert n == 3                                      # 3 s refilled 3 requests
    lim.on_rate_limited(10.0, 3.0)
    assert lim.grant(4, 400, 100.0 - 90.0)[0] == 0 and lim.not_before() == 13.0
    tok = RateLimiter(tpm=100, now=0.0)               # tokens only: one oversized request passes a full bucket
    assert tok.grant(1, 500, 0.0)[:2] == (1, 500) and tok.grant(1, 500, 0.0)[0] == 0
    assert not RateLimiter().limited and RateLimiter().grant(3, 0, 0.0)[0] == 3
