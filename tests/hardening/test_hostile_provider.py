"""A hostile or broken provider cannot hang, starve or crash a job (issue 18 §5).

Each attack comes from :mod:`hostile_server` on 127.0.0.1 and is played twice where the code
paths differ: through the job runner (async adapter, scaled clock) and through ``complete()``
(sync adapter). Every attack must end in a classified error on the normal retry path, with
the job finishing (nothing parked, nothing starved), and the summary's error line naming it.

Before the fix: the trickle ran as long as the server liked (each byte reset the read
timeout), ``retry-after: 99999999`` and ``x-ratelimit-reset-requests: 99999h`` parked the lane
for years, and the gzip bomb was inflated in full (8.6 GB for a 1 MiB body).
"""
from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from hostile_server import serve_hostile

MODEL = "openai/gpt-5.4-mini"
pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def hostile():
    yield from serve_hostile()


def _store(tmp_path: Path, n: int):
    from flextier.jobs.input import item_from_object
    from flextier.jobs.store import JobStore

    st = JobStore(tmp_path / f"job{n}.db")
    st.create_job(name="job", model=MODEL, tier_mode="flex", created_at=0.0, config={})
    st.import_items((item_from_object({"id": f"q{i}", "prompt": f"say {i}"}, i) for i in range(n)),
                    file="<test>", skip_invalid=False)
    return st


def _run(hostile, tmp_path: Path, mode: str, n: int = 3, time_scale: float = 1000.0, **opts):
    """Run ``n`` items against ``mode`` on a scaled clock; the whole run is bounded in wall time."""
    from flextier.catalog import default_catalog
    from flextier.emulator.clock import ScaledClock
    from flextier.jobs.runner import Runner, RunOptions
    from flextier.providers import get_adapter
    from flextier.providers.base import clear_adapter_cache

    clear_adapter_cache()
    entry = default_catalog().resolve(MODEL)
    st = _store(tmp_path, n)
    clock = ScaledClock(time_scale, start="2026-11-24T14:00")
    adapter = get_adapter(entry, base_url=hostile.base_url(mode), api_key="sk-hostile-test")
    ro = RunOptions(model=entry, tier_mode="flex", concurrency=opts.pop("concurrency", 2),
                    params={"max_tokens": 20}, **opts)
    runner = Runner(st, adapter, ro, clock=clock, output=None)
    runner.prepare()

    async def bounded():
        return await asyncio.wait_for(runner.run(), 45)  # a parked lane fails the test, never hangs it

    stats = asyncio.run(bounded())
    return st, stats, runner


def test_trickled_body_ends_at_the_attempts_total_deadline(hostile, tmp_path):
    """One byte every 50 ms of a ~250-byte answer never trips a per-read timeout; the total one ends it."""
    from flextier.jobs.report import build_report, format_report

    hostile.trickle_gap = 0.05
    # x100 clock: a 50 s flex timeout is 0.5 wall seconds; the answer would take ~12 s to trickle in
    st, stats, _ = _run(hostile, tmp_path, "trickle", n=2, time_scale=100.0, flex_timeout=50.0,
                        min_wall_timeout=0.5, max_item_errors=2)
    c = st.counts()
    assert c["failed"] == 2 and c["done"] == 0
    assert st.error_counts().get("Timeout", 0) == 4  # two attempts per item: the normal retry path
    flagged = [r[0] for r in st.db.execute("SELECT possibly_billed FROM attempts WHERE outcome = 'Timeout'")]
    assert flagged == [1, 1, 1, 1]  # a send cut off mid-answer may have been billed
    assert "Timeout 4" in format_report(build_report(st))


def test_trickled_body_in_complete_raises_timeout(hostile):
    """The sync adapter (``complete()``) gets the same total deadline from the guarded transport."""
    import flextier
    from flextier.policy.errors import Timeout
    from flextier.policy.fallback import Policy

    hostile.trickle_gap = 0.05
    pol = Policy(tier="flex", flex_timeout=0.5, fallback="never", resend_on_timeout=0, max_retries=0)
    with pytest.raises(Timeout) as ei:
        flextier.complete(MODEL, [{"role": "user", "content": "hi"}], policy=pol,
                          base_url=hostile.base_url("trickle"), api_key="sk-hostile-test")
    assert ei.value.possibly_billed


def test_huge_retry_after_is_capped_like_a_flex_shed(hostile, tmp_path):
    """``retry-after: 99999999`` (three years) waits the shed cap (300 clock s), then the job finishes."""
    hostile.requests.clear()
    hostile.rate_limited_first = 2
    st, stats, runner = _run(hostile, tmp_path, "retry_after", n=3)
    assert st.counts()["done"] == 3
    assert st.error_counts() == {"RateLimited": 2}
    assert runner.limiter.capped == 2
    assert runner.limiter.max_pause == runner.opts.backoff.retry_after_cap == 300.0


def test_huge_ratelimit_reset_is_capped(hostile, tmp_path):
    """``x-ratelimit-remaining-requests: 0`` with ``reset: 99999h`` on every answer cannot starve the job."""
    st, stats, runner = _run(hostile, tmp_path, "reset", n=4, concurrency=1)
    assert st.counts()["done"] == 4
    assert runner.limiter.capped >= 3  # every answer asked for 11 years; each wait was cut to 300 s


def test_ratelimiter_caps_server_pauses_unit():
    from flextier.policy.concurrency import RateLimiter

    rl = RateLimiter(now=0.0, max_pause=300.0)
    rl.on_rate_limited(99999999.0, now=10.0)
    assert rl.try_acquire(1, 10.0) == pytest.approx(300.0)
    assert rl.try_acquire(1, 310.0) == 0.0
    rl.update_from_headers({"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0",
                            "x-ratelimit-reset-requests": "99999h"}, now=400.0)
    assert rl.try_acquire(1, 400.0) == pytest.approx(300.0)
    assert rl.capped == 2


def test_gzip_bomb_is_refused_after_decompression_in_a_job(hostile, tmp_path):
    """A 128 MiB (inflated) answer is cut at the 32 MiB cap and retried, then failed; never recorded done."""
    from flextier.jobs.report import build_report, format_report

    st, stats, _ = _run(hostile, tmp_path, "bomb", n=1, concurrency=1, max_item_errors=2)
    assert st.counts()["failed"] == 1 and st.counts()["done"] == 0
    assert st.error_counts() == {"Transient": 2}
    rows = list(st.db.execute("SELECT error_code, possibly_billed FROM attempts WHERE outcome = 'Transient'"))
    assert rows and all(r[0] == "response_too_large" and r[1] for r in rows)
    assert "Transient 2" in format_report(build_report(st))


def test_gzip_bomb_memory_stays_bounded_in_complete(hostile):
    """The sync path: peak Python memory stays near the cap, not the 128 MiB the bomb inflates to."""
    import flextier
    from flextier.policy.errors import Transient
    from flextier.policy.fallback import Policy
    from flextier.guard import MAX_RESPONSE_BYTES

    pol = Policy(tier="flex", fallback="never", max_retries=0)
    hostile.bomb_mib = 128
    tracemalloc.start()
    try:
        with pytest.raises(Transient) as ei:
            flextier.complete(MODEL, [{"role": "user", "content": "hi"}], policy=pol,
                              base_url=hostile.base_url("bomb"), api_key="sk-hostile-test")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ei.value.code == "response_too_large" and ei.value.possibly_billed
    assert peak < 2.5 * MAX_RESPONSE_BYTES < 128 * 1024 * 1024


def test_well_behaved_gzip_answer_still_decodes(hostile):
    """The cap does not break ordinary compressed answers (a small bomb under the cap is just a big answer)."""
    import flextier
    from flextier.policy.fallback import Policy

    hostile.bomb_mib = 1
    hostile._bomb = None
    try:
        r = flextier.complete(MODEL, [{"role": "user", "content": "hi"}], policy=Policy(tier="flex"),
                              base_url=hostile.base_url("bomb"), api_key="sk-hostile-test")
    finally:
        hostile.bomb_mib = 128
        hostile._bomb = None
    assert r.text == "hi" and r.tier == "flex"


def test_concurrent_gzip_bombs_do_not_add_up(hostile):
    """16 bombs at once (the runner's async path): peak memory stays about one cap, not 16 caps.

    Decoded pieces handed to httpx outlive the error in a traceback cycle until the garbage
    collector runs; the guard keeps the body in its own buffer and drops it before raising.
    """
    from flextier._types import CallRequest
    from flextier.catalog import default_catalog
    from flextier.policy.errors import Transient
    from flextier.providers import get_adapter
    from flextier.guard import INFLIGHT, MAX_RESPONSE_BYTES

    entry = default_catalog().resolve(MODEL)
    adapter = get_adapter(entry, base_url=hostile.base_url("bomb"), api_key="sk-hostile-test", max_connections=16)

    async def one():
        try:
            await adapter.asend(CallRequest(model=entry, messages=[{"role": "user", "content": "hi"}]), "flex", 30)
        except Transient as exc:
            return exc.code
        return "done"

    async def many():
        return await asyncio.gather(*[one() for _ in range(16)])

    tracemalloc.start()
    try:
        codes = asyncio.run(many())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert codes == ["response_too_large"] * 16
    assert peak < 3 * MAX_RESPONSE_BYTES  # before: ~16 x 30 MiB (488 MiB)
    assert INFLIGHT.held == 0


def test_deflate_decodes_and_an_unasked_encoding_is_refused(hostile):
    import flextier
    from flextier.policy.errors import Transient
    from flextier.policy.fallback import Policy

    pol = Policy(tier="flex", fallback="never", max_retries=0)
    r = flextier.complete(MODEL, [{"role": "user", "content": "hi"}], policy=pol,
                          base_url=hostile.base_url("deflate"), api_key="sk-hostile-test")
    assert r.text == "hi"
    with pytest.raises(Transient) as ei:
        flextier.complete(MODEL, [{"role": "user", "content": "hi"}], policy=pol,
                          base_url=hostile.base_url("brotli"), api_key="sk-hostile-test")
    assert ei.value.code == "unexpected_encoding" and "'br'" in str(ei.value)
    sent = [r["headers"].get("accept-encoding") for r in hostile.seen("brotli")]
    assert sent == ["gzip, deflate"]  # only what the guard can decode with a cap is asked for
