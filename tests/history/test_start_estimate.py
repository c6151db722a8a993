"""``flextier run --start auto`` sizes the job from its own prompts (issue 17 leftover).

Before: the advice assumed 1,000 input tokens per item whatever the job held. Now the
estimate is the runner's own (``jobs/work.py``: the prompt's byte bound / 3, the request's
output limit), so a job of long prompts and one of short prompts get different advice
inputs and different expected costs, on the same clock, for the same model.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from flextier.catalog import default_catalog
from flextier.jobs.input import item_from_object
from flextier.jobs.session import plan_start
from flextier.jobs.store import JobStore
from flextier.jobs.work import input_tokens_estimate, job_token_estimate
from flextier.policy.budget import prompt_tokens_upper_bound

MODEL = "openai/gpt-5.4"
# Tuesday 2026-11-24 14:00 UTC
NOW = 1795528800.0


class _Clock:
    def now(self) -> float:
        return NOW


def _store(tmp_path: Path, name: str, rows: list[dict]) -> JobStore:
    st = JobStore(tmp_path / f"{name}.db")
    st.create_job(name=name, model=MODEL, tier_mode="flex", created_at=0.0, config={})
    st.import_items((item_from_object(r, i) for i, r in enumerate(rows)), file="<test>", skip_invalid=False)
    return st


def _advice(st: JobStore) -> dict:
    st.flush()   # events are written with the next flush
    ev = [d for _, kind, d in st.events() if kind == "start_advice"]
    assert len(ev) == 1
    return ev[0] if isinstance(ev[0], dict) else json.loads(ev[0])


def test_long_and_short_prompts_give_different_advice_inputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLEXTIER_HISTORY", str(tmp_path / "history.db"))   # empty history: no forecast
    entry = default_catalog().resolve(MODEL)
    long_p = "Summarise this contract clause in one line. " + "The party of the first part shall " * 400
    short = _store(tmp_path, "short", [{"id": f"s{i}", "prompt": f"Say {i}."} for i in range(40)])
    long_ = _store(tmp_path, "long", [{"id": f"l{i}", "prompt": long_p + str(i)} for i in range(40)])
    for st in (short, long_):
        plan_start(st, entry, _Clock(), not_before=None, start="auto", deadline=NOW + 8 * 3600, emulated=True,
                   params={"max_tokens": 200})
    a_short, a_long = _advice(short), _advice(long_)
    assert a_short["items"] == a_long["items"] == 40
    assert a_short["output_tokens"] == a_long["output_tokens"] == 200
    # the runner's own estimate of each prompt, not the old fixed 1,000
    want_long = input_tokens_estimate(prompt_tokens_upper_bound([{"role": "user", "content": long_p + "10"}]))
    assert abs(a_long["input_tokens"] - want_long) <= 1 and a_long["input_tokens"] > 4000
    assert a_short["input_tokens"] < 50
    # the expected cost follows: long prompts cost more, by the price of their extra input
    std = entry.tier_prices("flex")
    extra = Decimal(a_long["input_tokens"] - a_short["input_tokens"]) * 40 * std.input / Decimal(1_000_000)
    assert Decimal(a_long["cost_usd"]) - Decimal(a_short["cost_usd"]) == extra


def test_estimate_reads_native_lines_and_their_own_limits(tmp_path: Path) -> None:
    entry = default_catalog().resolve(MODEL)
    rows = [{"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-5.4", "max_completion_tokens": 900,
                      "messages": [{"role": "user", "content": "x" * 3000}]}} for i in range(10)]
    st = _store(tmp_path, "native", rows)
    i, o = job_token_estimate(st, entry, {"max_tokens": 100})
    assert o == 900                               # the line's own limit beats the job's
    assert 1000 <= i <= 1100                      # 3,000 bytes / 3, plus the message overhead
    assert job_token_estimate(_store(tmp_path, "empty", []), entry) == (0, 0)


def test_sample_spreads_over_what_is_left(tmp_path: Path) -> None:
    st = _store(tmp_path, "many", [{"id": f"q{i}", "prompt": "p" * (i + 1)} for i in range(100)])
    got = st.open_request_sample(10)
    assert len(got) == 10
    lens = sorted(len(json.loads(r)["prompt"]) if isinstance(r, str) else len(r["prompt"]) for r in got)
    assert lens[0] == 1 and lens[-1] >= 91      # first and last tenth both sampled, not the first 10 rows
