"""Backoff: full jitter within bounds, provider delays honoured and capped."""
from __future__ import annotations

import random
import time
from email.utils import formatdate

import httpx
from hypothesis import given, strategies as st

from flextier.policy.backoff import (Backoff, parse_duration, retry_after_from_headers,
                                     retry_delay_from_google_details)


@given(st.integers(min_value=0, max_value=200), st.floats(0.01, 10), st.floats(0.01, 600), st.integers(0, 2**32))
def test_full_jitter_stays_in_window(n, base, cap, seed):
    b = Backoff(base=base, cap=cap, rng=random.Random(seed))
    d = b.delay(n)
    assert 0.0 <= d <= min(cap, base * 2 ** min(n, 64)) + 1e-9


def test_window_grows_exponentially_then_caps():
    b = Backoff(base=1, cap=10)
    assert [b.ceiling(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_injected_rng_makes_delays_reproducible():
    a = [Backoff(rng=random.Random(7)).delay(3) for _ in range(2)]
    assert a[0] == a[1]


def test_retry_after_wins_and_is_capped():
    b = Backoff(base=1, cap=2, retry_after_cap=30)
    assert b.delay(0, retry_after=12.5) == 12.5
    assert b.delay(5, retry_after=3600) == 30


def test_headers_ms_then_seconds_then_date():
    assert retry_after_from_headers({"Retry-After-Ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_from_headers({"retry-after": "4"}) == 4.0
    assert retry_after_from_headers(httpx.Headers({"Retry-After": "2"})) == 2.0
    now = time.time()
    d = retry_after_from_headers({"retry-after": formatdate(now + 20, usegmt=True)}, now=now)
    assert 18 <= d <= 21
    assert retry_after_from_headers({"retry-after": "soon"}) is None
    assert retry_after_from_headers({}) is None


def test_gemini_retry_info():
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"}]}}
    assert retry_delay_from_google_details(body) == 34.0
    assert retry_delay_from_google_details(body["error"]["details"]) == 34.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration({"seconds": 2, "nanos": 500_000_000}) == 2.5
    assert retry_delay_from_google_details({"error": {"details": []}}) is None
