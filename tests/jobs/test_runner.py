"""The engine against the emulator, in emulated time: deadlines, tiers, money, ledgers."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from flextier.jobs.runner import JobPaused


def _lines(path):
    return [json.loads(x) for x in open(path, encoding="utf-8")]


def test_calm_all_flex_and_ledgers_match(emulator, make_store, run_emulated, tmp_path, billed):
    emu = emulator("calm", time_scale=1000)
    st = make_store(40)
    s, r = run_emulated(emu, st, deadline_s=3 * 3600)
    assert (s.done, s.failed) == (40, 0)
    assert s.by_tier == {"flex": 40}  # calm: flex share high, standard never needed
    assert s.now <= r.opts.deadline
    out = _lines(tmp_path / "out.jsonl")
    assert sorted(x["custom_id"] for x in out) == sorted(f"q{i}" for i in range(40))
    line = out[0]
    assert line["response"]["status_code"] == 200 and line["error"] is None
    assert line["response"]["body"]["choices"][0]["message"]["content"]
    assert line["flextier"]["tier"] == "flex" and Decimal(line["flextier"]["cost"]) > 0
    assert Decimal(line["flextier"]["standard_cost"]) == 2 * Decimal(line["flextier"]["cost"])
    cost, rows = billed(emu)
    assert cost == s.spent == st.ledger_totals()["spent"] and rows == 40
    assert st.counts()["done"] == 40


def test_no_deadline_never_pays_standard(emulator, make_store, run_emulated):
    emu = emulator("peak", time_scale=2000)
    s, _ = run_emulated(emu, make_store(30), deadline_s=None)
    assert s.done == 30 and set(s.by_tier) == {"flex"}


def test_outage_moves_to_standard_and_meets_deadline(emulator, make_store, run_emulated, billed):
    emu = emulator("outage", time_scale=3000)
    st = make_store(60)
    s, r = run_emulated(emu, st, deadline_s=3600)
    assert s.done == 60 and s.by_tier == {"standard": 60}
    assert s.now <= r.opts.deadline
    assert s.errors["FlexCapacityUnavailable"] > 0
    cost, rows = billed(emu)
    assert cost == s.spent and rows == 60


def test_outage_late_in_the_job(emulator, make_store, run_emulated):
    """Flex works, then fails for good: the rest moves to standard and the deadline holds."""
    import threading
    import time

    emu = emulator("calm", time_scale=2000)
    st = make_store(60)
    switched: list[float] = []
    stop = threading.Event()

    def switch() -> None:  # the outage starts once a quarter of the work is billed
        while not stop.is_set():
            if sum(1 for r in emu.ledger() if r["outcome"] == "ok") >= 15:
                emu.set_profile("outage")
                switched.append(emu.clock.now())
                return
            time.sleep(0.002)

    th = threading.Thread(target=switch, daemon=True)
    th.start()
    try:
        s, r = run_emulated(emu, st, deadline_s=3600, concurrency=4)
    finally:
        stop.set()
        th.join()
    assert switched
    assert s.done == 60 and s.by_tier["flex"] > 0 and s.by_tier["standard"] > 0
    assert s.now <= r.opts.deadline
    for seq, tier, outcome, lat, ts in st.iter_attempts():
        if tier == "flex" and outcome == "ok":
            assert ts - lat <= switched[0] + 1  # no flex attempt started after the outage succeeded


@pytest.mark.parametrize("profile", ["weekday", "peak"])
def test_deadline_met_on_busy_profiles(emulator, make_store, run_emulated, profile, reconciles):
    emu = emulator(profile, time_scale=3000)
    st = make_store(60)
    s, r = run_emulated(emu, st, deadline_s=2 * 3600)
    assert s.done == 60 and s.now <= r.opts.deadline
    assert s.spent + s.duplicate_cost == st.ledger_totals()["billed_total"]
    assert reconciles(emu, st)


def test_chaos_every_item_final_and_ledger_reconciles(emulator, make_store, run_emulated, tmp_path, billed):
    emu = emulator("chaos", time_scale=3000)
    st = make_store(120)
    s, r = run_emulated(emu, st, deadline_s=3 * 3600)
    c = st.counts()
    assert c["done"] + c["failed"] == 120 and c["pending"] == c["inflight"] == 0
    for row in st.iter_items("failed"):
        assert row["error_class"] and json.loads(row["result"])["error"]["code"]
    assert s.now <= r.opts.deadline
    out = _lines(tmp_path / "out.jsonl")
    assert len(out) == 120 and len({x["custom_id"] for x in out}) == 120
    emu_cost, emu_rows = billed(emu)
    client = st.ledger_totals()["spent"]
    pb_sends, bound = st.possibly_billed()
    # equal, except sends cut off mid-response (reset/truncated), which are marked possibly billed
    assert client <= emu_cost <= client + bound
    assert emu_rows - len(list(st.iter_ledger())) <= pb_sends


def test_budget_cap_never_exceeded_then_raised(emulator, make_store, run_emulated, billed):
    emu = emulator("calm", time_scale=2000)
    st = make_store(60)
    cap = Decimal("0.004")
    with pytest.raises(JobPaused) as ei:
        run_emulated(emu, st, deadline_s=None, max_cost=cap)
    assert ei.value.kind == "budget"
    cost, _ = billed(emu)
    assert 0 < cost <= cap
    done = st.counts()["done"]
    assert 0 < done < 60 and st.counts()["inflight"] == 0
    s, _ = run_emulated(emu, st, deadline_s=None, max_cost=Decimal("1"), out="out2.jsonl")
    assert st.counts()["done"] == 60
    assert billed(emu)[0] == st.ledger_totals()["spent"] <= Decimal("1")


def test_ordered_output(emulator, make_store, run_emulated, tmp_path):
    emu = emulator("weekday", time_scale=3000)
    st = make_store(30)
    run_emulated(emu, st, deadline_s=3600, ordered=True)
    assert [x["custom_id"] for x in _lines(tmp_path / "out.jsonl")] == [f"q{i}" for i in range(30)]


def test_batch_lines_and_bad_requests(emulator, make_store, run_emulated, tmp_path):
    emu = emulator("calm", time_scale=2000)
    recs = [{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
             "body": {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50}},
            {"custom_id": "resp", "method": "POST", "url": "/v1/responses", "body": {"input": "hello"}},
            {"id": "bad", "prompt": "hi", "params": {"max_tokens": -1}}]
    st = make_store(recs)
    s, _ = run_emulated(emu, st, deadline_s=3600)
    out = {x["custom_id"]: x for x in _lines(tmp_path / "out.jsonl")}
    assert out["ok"]["error"] is None and out["resp"]["error"] is None
    assert out["resp"]["response"]["body"].get("object") == "response"
    assert out["bad"]["error"] is not None and out["bad"]["response"]["status_code"] == 400
    assert s.failed == 1 and s.done == 2


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "bedrock/qwen.qwen3-32b-v1:0",
                                   "anthropic/claude-haiku-4-5"])
def test_other_providers_take_openai_batch_lines(emulator, make_store, run_emulated, reconciles, model, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    emu = emulator("calm", time_scale=3000)
    recs = [{"id": "simple", "prompt": "hi"},
            {"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
             "body": {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                      "max_completion_tokens": 40, "temperature": 0.2}},
            {"custom_id": "resp", "method": "POST", "url": "/v1/responses",
             "body": {"input": "hello", "instructions": "be brief", "max_output_tokens": 40}}]
    st = make_store(recs, model=model)
    s, _ = run_emulated(emu, st, deadline_s=3600, model=model)
    assert (s.done, s.failed) == (3, 0)
    assert reconciles(emu, st)


class _HangingFlex:
    """A fake adapter: flex attempts never answer; standard answers at once."""

    provider = "openai"

    def __init__(self, entry):
        self.entry = entry
        self.flex_started = 0

    async def asend(self, req, tier, timeout):
        import asyncio

        from flextier._types import AttemptOutcome
        from flextier.cost import Usage

        if tier == "flex":
            self.flex_started += 1
            await asyncio.sleep(3600)
        return AttemptOutcome(body={"id": "x", "choices": [{"message": {"content": "ok"}}]}, text="ok",
                              served_tier="standard", usage=Usage(10, 0, 5, 0))


def test_safety_net_hedges_stuck_flex(make_store, tmp_path):
    """Flex that cannot finish in time is duplicated on standard; the first copy wins, once."""
    import asyncio

    from flextier.catalog import default_catalog
    from flextier.emulator import ScaledClock
    from flextier.jobs.runner import OutputSink, Runner, RunOptions

    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    clock = ScaledClock(600, "2026-11-24T14:00")  # 3 s of wall time: a loaded CI box keeps the margin
    st = make_store(10)
    ad = _HangingFlex(entry)
    runner = Runner(st, ad, RunOptions(model=entry, deadline=clock.now() + 1800, concurrency=3,
                                       min_wall_timeout=30.0), clock=clock, output=OutputSink(tmp_path / "h.jsonl"))
    runner.prepare()
    s = asyncio.run(runner.run())
    assert s.done == 10 and s.now <= runner.opts.deadline and s.by_tier == {"standard": 10}
    assert ad.flex_started >= 3
    cancelled = [seq for seq, _, o, _, _ in st.iter_attempts() if o == "Cancelled"]
    assert len(cancelled) == ad.flex_started  # every stuck flex copy was hedged, then cut off
    assert {r["seq"] for r in st.iter_items() if r["possibly_billed"]} == set(cancelled)
    assert len(list(st.iter_ledger())) == 10
    lines = [json.loads(x) for x in open(tmp_path / "h.jsonl")]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"q{i}" for i in range(10))


def test_rpm_limit_paces_without_counting_as_flex_failures(emulator, make_store, run_emulated):
    emu = emulator("calm", time_scale=600)  # 0.25 s wall: pacing, not load, sets the pace
    st = make_store(20)
    t0 = emu.clock.now()
    s, r = run_emulated(emu, st, deadline_s=None, rpm=6)
    assert s.done == 20
    assert s.now - t0 >= (20 - 6) / 0.1 * 0.9  # a bucket of 6, refilled at 6 per minute
    assert r.aimd.cuts == 0 and not s.errors


def test_hedge_copy_cancelled_before_its_first_step_is_reaped(make_store):
    """A copy cancelled in the same loop turn it was started never runs its body: the runner must
    still forget it (else the item stays "active" and the job never ends) and must not count it
    as possibly billed (it was never sent)."""
    import asyncio

    from flextier.catalog import default_catalog
    from flextier.emulator import ScaledClock
    from flextier.jobs.runner import Runner, RunOptions

    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    clock = ScaledClock(1000, "2026-11-24T14:00")
    st = make_store(1)
    runner = Runner(st, _HangingFlex(entry), RunOptions(model=entry), clock=clock, output=None)
    runner.prepare()

    async def scenario():
        runner._refill()
        w = runner.ready.popleft()
        runner._prepare(w)
        runner._start(w, "standard", clock.now())
        assert w.active == 1 and w.seq in runner.std_active
        runner._cancel_other_copy(w, "flex", clock.now())  # as if the flex copy just won
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return w

    w = asyncio.run(scenario())
    assert w.active == 0 and not runner.std_active and not runner.tasks and not runner.task_of
    assert w.possibly_billed == 0
    assert runner.budget.reserved == 0


def test_second_answer_of_a_hedged_item_is_a_duplicate_not_a_second_result(make_store):
    """Both copies of a hedged item answered (the loser's cancel came too late): the item has one
    result and one billed row; the other answer is a "duplicate" row that still counts as spend."""
    import asyncio

    from flextier._types import AttemptOutcome
    from flextier.catalog import default_catalog
    from flextier.cost import Usage
    from flextier.emulator import ScaledClock
    from flextier.jobs.runner import Runner, RunOptions

    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    clock = ScaledClock(1000, "2026-11-24T14:00")
    st = make_store(1)
    runner = Runner(st, _HangingFlex(entry), RunOptions(model=entry), clock=clock, output=None)
    runner.prepare()
    runner._refill()
    w = runner.ready.popleft()

    def answer(tier):
        return AttemptOutcome(body={"id": tier, "choices": [{"message": {"content": "ok"}}]}, text="ok",
                              served_tier=tier, usage=Usage(100, 0, 50, 0))

    runner._on_success(w, "standard", answer("standard"), 1.0, clock.now())
    runner._on_success(w, "flex", answer("flex"), 2.0, clock.now())
    asyncio.run(asyncio.sleep(0))
    runner.flush()
    t = st.ledger_totals()
    kinds = [k for (k,) in st.db.execute("SELECT kind FROM ledger ORDER BY id")]
    assert kinds == ["billed", "duplicate"] and st.counts()["done"] == 1
    assert runner.stats.spent == t["spent"] and runner.stats.duplicate_cost == t["duplicate_cost"] > 0
    assert t["by_tier"] == {"standard": t["spent"]}


@pytest.mark.parametrize("window,given,d", [(3600.0, None, 30.0), (3 * 3600.0, None, 90.0), (48 * 3600.0, None, 120.0),
                                            (None, None, 120.0), (3600.0, 200.0, 200.0)])
def test_changeover_delay_scales_with_a_close_deadline_unless_set(make_store, window, given, d):
    """A 1 h job keeps a 30 s changeover delay (its reserve at the end is then ~2.5 min, not 5.5);
    a far or absent deadline keeps the 120 s default; a delay the user sets is used as is."""
    from flextier.catalog import default_catalog
    from flextier.emulator import ScaledClock
    from flextier.jobs.runner import Runner, RunOptions

    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    clock = ScaledClock(1000, "2026-11-24T14:00")
    runner = Runner(make_store(1), _HangingFlex(entry),
                    RunOptions(model=entry, deadline=None if window is None else clock.now() + window,
                               changeover_delay=given), clock=clock, output=None)
    assert runner.d == pytest.approx(d, abs=0.5)   # (the scaled clock moves between reads)
    assert runner._make_planner(clock.now()).config.d == runner.d


class _RecordCheckingAdapter:
    """The real adapter, plus a look at the store (from another connection, as a crash would see
    it) the moment each request is about to leave: its item must have an open send record."""

    def __init__(self, inner, db_path):
        import sqlite3

        self.inner = inner
        self.con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        self.unrecorded: list[str] = []
        self.sent = 0

    async def asend(self, req, tier, timeout):
        self.sent += 1
        n = self.con.execute("SELECT COUNT(*) FROM sends JOIN items USING (seq) WHERE items.custom_id = ? "
                             "AND sends.tier = ? AND sends.state = 'open'", (req.custom_id, tier)).fetchone()[0]
        if n != 1:
            self.unrecorded.append(req.custom_id)
        return await self.inner.asend(req, tier, timeout)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_every_send_is_committed_before_it_leaves_and_cleared_after(emulator, make_store, tmp_path):
    """Issue 18 §4: a send's record is durable (another connection sees it) before the request
    goes out; once the job is done no record is left, and nothing is possibly billed."""
    import asyncio

    from flextier.catalog import default_catalog
    from flextier.jobs.runner import OutputSink, Runner, RunOptions
    from flextier.providers import get_adapter

    emu = emulator("calm", time_scale=2000)
    st = make_store(200)
    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    ad = _RecordCheckingAdapter(get_adapter(entry, base_url=emu.openai_base_url, api_key="test"), st.path)
    runner = Runner(st, ad, RunOptions(model=entry, concurrency=32, params={"max_tokens": 20}), clock=emu.clock,
                    output=OutputSink(tmp_path / "rec.jsonl"))
    runner.prepare()
    s = asyncio.run(runner.run())
    assert s.done == 200 and ad.sent >= 200
    assert ad.unrecorded == []
    assert st.send_records() == [] and st.possibly_billed() == (0, 0)
