"""The shared job assembly (:mod:`flextier.jobs.session`) that the CLI and the Python API both use."""
from __future__ import annotations

from decimal import Decimal

from flextier.cli.run import RunArgs
from flextier.jobs.session import apply_resume_settings, wants_batch_lane
from flextier.jobs.store import JobStore


def _stored(**cfg):
    return {"name": "jobs-1", "input_path": "jobs.jsonl", "model": "openai/gpt-5.4-mini", "tier_mode": "auto",
            "output_path": "jobs.results.jsonl", "prompt_template": None, "ordered": 1,
            "config": {"concurrency": 32, "rpm": 600.0, "max_cost": "5.00", **cfg}}


def test_resume_fills_only_what_was_not_given(tmp_path):
    a = RunArgs(concurrency=8, tier="flex")
    apply_resume_settings(a, _stored(), tmp_path / "jobs-1.db")
    assert (a.concurrency, a.tier) == (8, "flex")          # given on resume: kept
    assert (a.rpm, a.max_cost, a.ordered) == (600.0, "5.00", True)  # not given: the job's own
    assert (a.file, a.job, a.store) == ("jobs.jsonl", "jobs-1", str(tmp_path / "jobs-1.db"))


def test_resume_keeps_the_emulated_run_and_never_swaps_a_real_endpoint(tmp_path):
    emulated = _stored(emulate="peak", time_scale=600.0, seed=7)
    a = RunArgs()
    apply_resume_settings(a, emulated, tmp_path / "x.db")
    assert (a.emulate, a.time_scale, a.seed, a.base_url) == ("peak", 600.0, 7, None)
    b = RunArgs(base_url="http://127.0.0.1:9/v1")
    apply_resume_settings(b, emulated, tmp_path / "x.db")
    assert (b.emulate, b.time_scale, b.seed) == (None, None, None)


def test_batch_lane_only_without_a_cap_and_for_auto_or_batch(tmp_path):
    with JobStore(tmp_path / "j.db") as st:
        assert wants_batch_lane(st, tier="auto", max_cost=None)
        assert wants_batch_lane(st, tier="batch", max_cost=None)
        assert not wants_batch_lane(st, tier="flex", max_cost=None)
        assert not wants_batch_lane(st, tier="auto", max_cost=Decimal("1"))
