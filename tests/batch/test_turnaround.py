"""The batch turnaround model (capacity-model.md §6.4), driven directly in emulated time:
fast at night, hours at peak, aging so the 24 h window holds, expiry with partial output."""
from __future__ import annotations

import json

from flextier.emulator.batch_core import BatchEngine, BatchKnobs
from flextier.emulator.batch_openai import OpenAIBatchAPI
from flextier.emulator.clock import ScaledClock, parse_start
from flextier.emulator.engine import Engine
from flextier.emulator.profiles import build_knobs


def _job(start: str, n: int = 1000, profile: str = "weekday", knobs: dict | None = None, **bk):
    # a frozen clock: the batch is created exactly at ``start``; tests then advance time by hand
    engine = Engine(build_knobs(profile, knobs), ScaledClock(1e-12, start), seed=3)
    be = BatchEngine(engine, BatchKnobs(expire_p=0.0, **bk))
    api = OpenAIBatchAPI(be)
    data = b"\n".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "gpt-5.4-mini", "max_tokens": 200,
                                           "messages": [{"role": "user", "content": f"q{i}"}]}}).encode()
                      for i in range(n))
    lines, errors, _ = api._parse_lines(data, "/v1/chat/completions")
    assert not errors
    job = be.create(job_id="b", provider="openai", entry=engine.catalog.resolve("openai/gpt-5.4-mini"),
                    lines=lines, window_s=be.window_for(86400.0))
    return be, job, parse_start(start)


def _finish_time(be, job, t0, step=300.0, horizon=30 * 3600.0):
    t = t0
    while t < t0 + horizon:
        t += step
        be.advance(job, now=t)
        if job.terminal:
            return job.times.get("completed_at", t) - t0
    return None


def test_night_batch_finishes_within_the_hour():
    be, job, t0 = _job("2026-11-24T01:00")          # a Tuesday night
    took = _finish_time(be, job, t0)
    assert job.state == "completed" and took is not None and took < 3600


def test_peak_batch_waits_hours_but_meets_the_window():
    _, night, n0 = _job("2026-11-24T01:00")
    be, job, t0 = _job("2026-11-24T10:00")          # Tuesday, the morning peak
    be.advance(job, now=t0 + 3600)
    assert job.state == "in_progress" and job.pos < len(job.lines) // 2    # only burst dips leave room
    took = _finish_time(be, job, t0)
    assert took > 2 * _finish_time(_, night, n0)
    assert job.state == "completed" and 3600 < took < 24 * 3600


def test_aging_promotes_a_starved_batch():
    # a steady peak (no burst dips) never leaves headroom below theta_batch: only aging lets it run
    be, job, t0 = _job("2026-11-24T10:00", profile="peak", knobs={"burst_sigma": 0.0}, t_age_s=2 * 3600.0)
    be.advance(job, now=t0 + 2 * 3600 - 60)
    assert job.pos == 0
    took = _finish_time(be, job, t0, step=120.0)
    assert job.state == "completed" and 2 * 3600 < took < 4 * 3600


def test_expiry_keeps_what_was_done():
    be, job, t0 = _job("2026-11-24T01:00", n=100, stall_at=0.3)
    _finish_time(be, job, t0)
    c = job.counts()
    assert job.state == "expired" and c["ok"] == 30 and c["expired"] == 70
    assert abs(job.times["expired_at"] - t0 - 86400.0) < 1e-3
    billed = [r for r in be.engine.ledger.rows() if r["served_tier"] == "batch"]
    assert len(billed) == 30


def test_progress_is_path_independent():
    """Polling often or rarely gives the same completion times (deterministic, seeded)."""
    a, ja, t0 = _job("2026-11-24T08:00", n=300)
    b, jb, _ = _job("2026-11-24T08:00", n=300)
    _finish_time(a, ja, t0, step=61.0)
    _finish_time(b, jb, t0, step=3 * 3600.0)
    assert [round(ln.done_at, 6) for ln in ja.lines] == [round(ln.done_at, 6) for ln in jb.lines]
