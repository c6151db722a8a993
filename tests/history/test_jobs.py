"""Jobs write history; DeepSeek jobs wait for off-peak when the deadline allows; --not-before waits."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from flextier.catalog import default_catalog
from flextier.emulator import serve
from flextier.history import HistoryDB, default_history_path
from flextier.jobs.input import item_from_object
from flextier.jobs.runner import OutputSink, Runner, RunOptions
from flextier.jobs.store import JobStore
from flextier.providers import get_adapter
import flextier.providers.deepseek  # noqa: F401,E402  (imported before any emulated clock starts)

DS = "deepseek/deepseek-v4-flash"


def _store(tmp_path: Path, n: int, model: str, name: str = "job") -> JobStore:
    st = JobStore(tmp_path / f"{name}.db")
    st.create_job(name=name, model=model, tier_mode="auto", created_at=0.0, config={})
    st.import_items((item_from_object({"id": f"q{i}", "prompt": f"One fact about {i}."}, i) for i in range(n)),
                    file="<test>", skip_invalid=False)
    return st


def _run(emu, st: JobStore, model: str, deadline_s: float | None, tmp_path: Path, *, at: float | None = None,
         **kw) -> Runner:
    entry = default_catalog().resolve(model)
    adapter = get_adapter(entry, base_url=emu.base_urls()[entry.provider], api_key="test")
    now = emu.clock.now() if at is None else at
    ro = RunOptions(model=entry, deadline=None if deadline_s is None else now + deadline_s, concurrency=32,
                    params={"max_tokens": 50}, margin=max(60.0, 0.5 * emu.clock.time_scale), **kw)
    sink = OutputSink(tmp_path / "out.jsonl")
    runner = Runner(st, adapter, ro, clock=emu.clock, output=sink)
    runner.prepare()
    try:
        asyncio.run(runner.run())
    finally:
        sink.close()
    return runner


def test_a_job_writes_emulated_history_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXTIER_HISTORY", str(tmp_path / "h" / "history.db"))
    st = _store(tmp_path, 20, "openai/gpt-5.4-mini")
    with serve(profile="calm", time_scale=500, start="2026-11-24T14:00", seed=1) as emu:
        _run(emu, st, "openai/gpt-5.4-mini", 3600, tmp_path)
    assert not default_history_path("real").exists()                   # an emulated job never writes real
    with HistoryDB(default_history_path("emulated"), "emulated") as db:
        rows = list(db.rows("openai", "openai/gpt-5.4-mini", "flex"))
    assert sum(r.ok for r in rows) == 20 and {r.how for r in rows} <= {24 + 14, 24 + 15}
    assert st.counts()["done"] == 20


@pytest.mark.parametrize("deadline_h, tier, mult, scale", [(12, "offpeak", Decimal("0.5"), 3000),
                                                          (1, "standard", Decimal(1), 200)])
def test_deepseek_waits_for_off_peak_when_the_deadline_allows(tmp_path: Path, deadline_h: float, tier: str,
                                                              mult: Decimal, scale: float) -> None:
    """Tuesday 07:00 UTC is peak (06:00-10:00). With 12 h the job waits for 10:00 and pays half; with 1 h
    it cannot wait and runs at once at the peak price. Both meet the deadline; the ledgers agree."""
    st = _store(tmp_path, 30, DS)
    entry = default_catalog().resolve(DS)
    t0 = dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.timezone.utc).timestamp()   # Tuesday 07:00 UTC: peak
    with serve(profile="calm", time_scale=scale, start="2026-11-24T07:00", seed=1) as emu:
        r = _run(emu, st, DS, deadline_h * 3600, tmp_path, at=t0)
        rows = [x for x in emu.ledger() if x["outcome"] == "ok"]
    assert st.counts()["done"] == 30
    assert {x["served_tier"] for x in rows} == {tier}
    first = min(x["ts"] for x in rows)
    if tier == "offpeak":
        ten = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.timezone.utc).timestamp()
        assert ten <= first < ten + 3600                 # waited for the off-peak start, then went
    else:
        assert first < t0 + 900                          # at once (10:00 is three hours away)
    assert max(x["ts"] for x in rows) <= t0 + deadline_h * 3600
    emu_cost = sum(Decimal(x["cost"]) for x in rows)
    client = st.ledger_totals()["billed_total"]
    assert client == emu_cost                            # priced by the same clock second
    from flextier.cost import Usage, tier_cost

    peak = sum(tier_cost(Usage(x["input_tokens"], x["cached_tokens"], x["output_tokens"]),
                         entry.tier_prices("standard"), entry) for x in rows)
    assert emu_cost == peak * mult
    assert r.stats.by_tier.get(tier, 0) == 30 or sum(r.stats.by_tier.values()) == 30


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    return subprocess.Popen([sys.executable, "-m", "flextier", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_not_before_waits_visibly_and_survives_a_kill(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"fact {i}"}) + "\n" for i in range(10)))
    # emulated start is Tue 14:00 UTC; x2000: the 2 h wait is 3.6 wall seconds
    args = ["run", str(jobs), "--model", "openai/gpt-5.4-mini", "--emulate", "calm", "--time-scale", "2000",
            "--not-before", "2026-11-24T16:00", "--job", "nb", "--max-tokens", "20"]
    p = _cli(args, tmp_path)
    store = tmp_path / ".flextier" / "nb.db"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if store.exists():
            try:  # the child may still be creating the store (its schema not yet committed)
                with contextlib.closing(JobStore(store, create=False)) as st:
                    if st.not_before()[0] is not None and (st.job() or {}).get("message"):
                        break
            except Exception:
                pass
        time.sleep(0.1)
    time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    with contextlib.closing(JobStore(store, create=False)) as st:
        nb, why = st.not_before()
        assert nb == dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.timezone.utc).timestamp() and "--not-before" in why
        assert st.counts()["done"] == 0 and not list(st.iter_attempts())        # nothing was sent
        assert "waiting until" in (st.job() or {})["message"]
        reached = (st.job() or {})["last_clock"]
        assert reached > dt.datetime(2026, 11, 24, 14, 0, tzinfo=dt.timezone.utc).timestamp()
    # the resume waits for the same instant (from where the emulated clock stopped), then runs
    p = _cli(["resume", "nb", "--emulate", "calm", "--time-scale", "2000"], tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "waiting until Tue 2026-11-24 16:00 UTC" in err
    with contextlib.closing(JobStore(store, create=False)) as st:
        assert st.counts()["done"] == 10
        assert min(a[4] for a in st.iter_attempts()) >= nb


def test_the_planner_takes_the_learned_forecast_only_with_enough_history(tmp_path: Path, seeded_week: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from flextier.emulator.clock import ScaledClock

    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    adapter = get_adapter(entry, base_url="http://127.0.0.1:9/v1", api_key="test")   # nothing is sent

    def planner_forecast(n: int) -> object:
        st = _store(tmp_path, 5, entry.name, name=f"j{n}")
        clock = ScaledClock(1.0, "2026-11-24T09:00")
        r = Runner(st, adapter, RunOptions(model=entry, deadline=clock.now() + 8 * 3600), clock=clock)
        return r._make_planner(clock.now()).config.availability

    monkeypatch.setenv("FLEXTIER_HISTORY", str(tmp_path / "h" / "history.db"))
    assert planner_forecast(1) is None                                 # no history: the straight line
    (tmp_path / "h").mkdir()
    shutil.copy(seeded_week, tmp_path / "h" / "history.emulated.db")
    fc = planner_forecast(2)
    assert fc is not None and getattr(fc, "enough", False)             # one emulated week: learned
