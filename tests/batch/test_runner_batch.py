"""The batch lane inside ``flextier run`` (issue 7), driven through the real CLI code path
(:func:`flextier.cli.run.execute`, and ``python -m flextier run`` for the kill -9 test) against
an emulator on loopback (``--base-url``: the run follows the emulator's scaled clock).

Covered: ``--tier batch`` end to end per provider; ``--tier auto`` choosing batch for a flex
model with a 48 h deadline, and for a Claude job with 24 h or 30 h (standard with 2 h); a stalled
batch rescued before the deadline (flex, then standard), with every item counted once and the
client ledger (billed + duplicate rows) equal to the emulator's bill; resume after kill -9
while polling reattaches to the open batch instead of submitting a second one; kill -9 after a
straggler rescue, before the cancelled batch's output was collected: the resume collects it and
records the lines already answered online as duplicate ledger rows.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flextier.cli.run import RunArgs, execute
from flextier.emulator import serve
from flextier.emulator.batch_core import batch_engine
from flextier.jobs.report import build_report, format_report, render_html, report_json
from flextier.jobs.store import JobStore

from .conftest import MODELS, TIME_SCALE, remote_batch_id, sigkill_when

N = 20


def _jobs(tmp_path: Path, n: int = N) -> Path:
    p = tmp_path / "jobs.jsonl"
    p.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Say one thing about {i}."}) + "\n"
                         for i in range(n)))
    return p


def _base_url(emu: Any, model: str) -> str:
    return {"openai": emu.openai_base_url, "anthropic": emu.anthropic_base_url,
            "gemini": emu.gemini_base_url}[model.split("/")[0]]


def _run(tmp_path: Path, emu: Any, model: str, *, name: str = "job", **kw: Any) -> tuple[int, JobStore]:
    args = RunArgs(file=str(_jobs(tmp_path, kw.pop("n", N))), model=model, job=name,
                   store=str(tmp_path / f"{name}.db"), out=str(tmp_path / f"{name}.out.jsonl"),
                   base_url=_base_url(emu, model), quiet=True, max_tokens=40, **kw)
    code = execute(args)
    return code, JobStore(tmp_path / f"{name}.db", create=False)


def _client_billed(st: JobStore) -> Decimal:
    return sum((Decimal(c) for (c,) in st.db.execute("SELECT cost FROM ledger WHERE kind IN ('billed', 'duplicate')")
                if c is not None), Decimal(0))


def _emu_billed(emu: Any) -> Decimal:
    return sum((Decimal(str(r["cost"])) for r in emu.ledger() if r.get("cost") is not None), Decimal(0))


def _modes(st: JobStore) -> list[str]:
    return [d["mode"] for _, k, d in st.events() if k == "mode"]


def _out(tmp_path: Path, name: str = "job") -> list[dict[str, Any]]:
    return [json.loads(x) for x in (tmp_path / f"{name}.out.jsonl").read_text().splitlines()]


def _provider_batches(emu: Any) -> list[Any]:
    return list(batch_engine(emu.engine).jobs.values())


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_tier_batch_end_to_end(emulator, tmp_path, provider):
    emu = emulator()
    code, st = _run(tmp_path, emu, MODELS[provider], tier="batch")
    assert code == 0
    assert st.counts()["done"] == N and st.tier_counts() == {"batch": N}
    assert _modes(st) == ["batch-only"]
    assert len(_provider_batches(emu)) == 1 and not st.open_batches()
    out = _out(tmp_path)
    assert sorted(x["custom_id"] for x in out) == sorted(f"q{i}" for i in range(N))
    assert all(x["error"] is None and x["flextier"]["tier"] == "batch" and x["flextier"]["batch"] for x in out)
    assert _client_billed(st) == _emu_billed(emu) > 0
    r = build_report(st)
    assert r["lanes"]["batch"]["items"] == N and r["lanes"]["batch"]["saved"] > 0
    assert r["lanes"]["flex"]["items"] == r["lanes"]["standard"]["items"] == 0
    assert r["saved_pct"] == pytest.approx(50.0)
    assert "by lane: batch 20 items" in format_report(r)
    assert '"lanes"' in report_json(r) and "by lane:" in render_html(r)


def test_auto_with_48h_deadline_chooses_batch_for_a_flex_model(emulator, tmp_path):
    emu = emulator()
    code, st = _run(tmp_path, emu, MODELS["openai"], deadline="48h")
    assert code == 0
    assert _modes(st)[0] == "batch"
    assert st.tier_counts() == {"batch": N}
    assert _client_billed(st) == _emu_billed(emu)


@pytest.mark.parametrize("deadline, scale, mode, tier", [("30h", None, "batch", "batch"),
                                                          ("24h", None, "batch", "batch"),
                                                          ("2h", 300.0, "standard", "standard")])
def test_claude_job_chooses_batch_only_with_room(emulator, tmp_path, deadline, scale, mode, tier):
    if scale is None:
        emu = emulator()
    else:  # 2 h at x3600 is 2 s of wall time: less than starting the job takes
        cm = serve(profile="calm", seed=7, time_scale=scale, start="2026-11-24T02:00")
        emu = cm.__enter__()
    try:
        code, st = _run(tmp_path, emu, MODELS["anthropic"], deadline=deadline)
        assert code == 0
        assert _modes(st)[0] == mode
        assert st.tier_counts() == {tier: N}
        assert len(_provider_batches(emu)) == (1 if tier == "batch" else 0)
        assert _client_billed(st) == _emu_billed(emu)
    finally:
        if scale is not None:
            cm.__exit__(None, None, None)


def test_stalled_batch_is_rescued_to_flex_then_standard_and_counted_once(emulator, tmp_path):
    # The batch serves half its lines, then stalls (until its 24 h window). The planner assumes a
    # 2 h window here, so with a 4 h deadline waiting stops being safe once the batch outlives it:
    # the batch is cancelled and its items go to flex, which is shedding everything by then, so
    # the planner buys standard. The half the batch finished arrives with the cancelled batch's
    # partial output: whichever copy of an item finished first counts, the other is a duplicate.
    emu = emulator(stall_at=0.5)
    emu.set_knobs(flex_shed_p=1.0)
    # margin: half a wall second at this time scale (a loaded CI box stalls that long)
    code, st = _run(tmp_path, emu, MODELS["openai"], deadline="4h",
                    extra={"batch_window": 7200.0, "margin": 0.5 * TIME_SCALE})
    assert code == 0
    c = st.counts()
    assert c["done"] == N and c["total"] == N
    modes = _modes(st)
    assert modes[0] == "batch" and "up" in modes
    job = st.job()
    r = build_report(st)
    assert r["deadline_met"] is True and r["last_done"] <= job["deadline"]
    # the rescue went to flex first ("up" above; whether a flex send fits in that hour, a wall
    # second at this scale, is timing), and standard served what flex could not
    tiers = {t for (t,) in st.db.execute("SELECT DISTINCT tier FROM attempts")}
    assert "standard" in tiers
    served = st.tier_counts()
    assert served.get("standard", 0) > 0 and sum(served.values()) == N
    # the batch was cancelled (never resubmitted), and nothing is counted twice
    pb = _provider_batches(emu)
    assert len(pb) == 1 and pb[0].state == "cancelled"
    out = _out(tmp_path)
    assert sorted(x["custom_id"] for x in out) == sorted(f"q{i}" for i in range(N))
    billed_rows = st.db.execute("SELECT seq, COUNT(*) FROM ledger WHERE kind = 'billed' GROUP BY seq").fetchall()
    assert len(billed_rows) == N and all(n == 1 for _, n in billed_rows)
    dups = st.db.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'duplicate'").fetchone()[0]
    assert r["duplicates"]["n"] == dups
    assert _client_billed(st) == _emu_billed(emu)
    assert r["billed_total"] == r["spent"] + r["duplicates"]["cost"]
    if dups:
        assert "duplicates:" in format_report(r)


WORKER_ENV = {**os.environ, "FLEXTIER_LOG": "WARNING"}


def test_resume_after_kill9_during_polling_reattaches(emulator, tmp_path):
    emu = emulator(parallelism=0.0003)           # the batch takes a few seconds of wall time
    jobs = _jobs(tmp_path)
    db = tmp_path / "job.db"
    cmd = [sys.executable, "-m", "flextier", "run", str(jobs), "--model", MODELS["openai"], "--tier", "batch",
           "--base-url", emu.openai_base_url, "--job", "job", "--store", str(db), "--out",
           str(tmp_path / "job.out.jsonl"), "--max-tokens", "40", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=WORKER_ENV, cwd=tmp_path)
    sigkill_when(proc, lambda: remote_batch_id(db) is not None, within=30,
                 what="the job never submitted its batch", settle=0.3)      # a few polling rounds
    assert len(_provider_batches(emu)) == 1 and not _provider_batches(emu)[0].terminal
    with JobStore(db, create=False) as st:
        assert st.counts()["inflight"] == N and len(st.open_batches()) == 1
    # the same command again: reattach, collect, no second provider batch
    code, st = _run(tmp_path, emu, MODELS["openai"], tier="batch")
    assert code == 0
    assert len(_provider_batches(emu)) == 1
    assert st.counts()["done"] == N and st.tier_counts() == {"batch": N}
    out = _out(tmp_path)
    assert sorted(x["custom_id"] for x in out) == sorted(f"q{i}" for i in range(N))
    assert st.possibly_billed()[0] == 0           # items inside a batch are not "possibly billed" twice
    assert _client_billed(st) == _emu_billed(emu)
    assert st.db.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'billed'").fetchone()[0] == N


def test_bedrock_tier_batch_without_s3_is_a_clear_error(tmp_path, capsys):
    from flextier.policy.errors import UserInputError

    with pytest.raises(UserInputError, match="batch-s3-uri"):
        execute(RunArgs(file=str(_jobs(tmp_path)), model=MODELS["bedrock"], tier="batch", emulate="calm",
                        quiet=True, store=str(tmp_path / "b.db")))


# ``execute`` in a child process (the CLI path, with RunOptions extras). The heavy imports come
# first: at this time scale a second spent importing between reading the deadline and the
# planner's first decision is an emulated hour off the deadline.
_RUN_SCRIPT = ("import json, sys\n"
               "import flextier.jobs.api, flextier.jobs.runner, flextier.jobs.batching, flextier.jobs.progress\n"
               "import flextier.providers.openai, flextier.batch.openai, flextier.emulator.clock\n"
               "from flextier.cli.run import RunArgs, execute\n"
               "sys.exit(execute(RunArgs(**json.loads(sys.argv[1]))))\n")


def _db_state(path: Path) -> tuple[int, list[str]]:
    """(done items, batch states) read from the store of a running job; (0, []) while unreadable."""
    if not path.exists():
        return 0, []
    try:
        with sqlite3.connect(str(path)) as db:
            done = db.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0]
            states = [s for (s,) in db.execute("SELECT state FROM batches")]
    except sqlite3.Error:
        return 0, []
    return done, states


def _cut_off(st: JobStore, emu: Any) -> Decimal:
    """What the emulator billed for sends the client cut off itself: the losing copy of an item
    sent twice (a safety-net hedge) is cancelled mid-flight, and a provider bills a request whose
    client left. The client cannot know that cost and flags the send "possibly billed" instead.
    Every emulator row without a client ledger row must be such a send; returns their cost (zero
    unless the run hit the safety net, which a loaded machine can make it do)."""
    from collections import Counter

    ids = dict(st.db.execute("SELECT seq, custom_id FROM items"))
    client = Counter((ids[seq], tier, Decimal(c)) for seq, tier, c in
                     st.db.execute("SELECT seq, tier, cost FROM ledger") if c is not None and Decimal(c))
    provider = Counter((r["item"], r["served_tier"], Decimal(str(r["cost"]))) for r in emu.ledger()
                       if r.get("cost") is not None and Decimal(str(r["cost"])))
    assert not client - provider, client - provider
    cut = Counter((ids[seq], tier) for seq, tier in st.db.execute(
        "SELECT seq, tier FROM attempts WHERE outcome = 'Cancelled' AND possibly_billed = 1"))
    missing = provider - client
    assert not Counter((i, t) for i, t, _ in missing.elements()) - cut, (missing, cut)
    return sum((c for _, _, c in missing.elements()), Decimal(0))


def test_kill9_after_straggler_rescue_resume_records_late_batch_output_as_duplicates(emulator, tmp_path):
    # The batch serves half its lines and stalls; once it outlives the planner's 1 h batch window
    # (4 h deadline) the planner cancels it and sends every item online, where they are all
    # answered. The cancelled batch stays "cancelling" for two emulated hours, so the process is
    # still polling it, its partial output not yet collected, when it is killed. The resume must
    # reattach to the cancelled batch, collect that output and record the lines it answered as
    # duplicate ledger rows (billed by the provider, never a second result).
    emu = emulator(stall_at=0.5, cancel_s=7200.0)
    db = tmp_path / "job.db"
    extra = {"batch_window": 3600.0, "margin": 0.5 * TIME_SCALE}
    args = dict(file=str(_jobs(tmp_path)), model=MODELS["openai"], job="job", store=str(db),
                out=str(tmp_path / "job.out.jsonl"), base_url=emu.openai_base_url, quiet=True, max_tokens=40,
                deadline="4h", extra=extra)
    proc = subprocess.Popen([sys.executable, "-c", _RUN_SCRIPT, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=WORKER_ENV, cwd=tmp_path)
    def all_online_batch_open() -> bool:  # all answered online; the batch not yet collected
        done, states = _db_state(db)
        return done == N and bool(states) and not set(states) & {"completed", "expired", "cancelled", "failed"}

    # settle: let the runner commit what it has (flush: 50 ms)
    sigkill_when(proc, all_online_batch_open, within=30, poll=0.02, settle=0.2, alive_after_settle=False,
                 what=lambda: "no rescue: %d done, batches %s" % _db_state(db))
    pb = _provider_batches(emu)
    assert len(pb) == 1 and pb[0].state == "cancelling"
    late = sum(1 for ln in pb[0].lines if ln.state == "ok")   # billed lines the job has not seen yet
    assert late > 0
    with JobStore(db, create=False) as st:
        assert st.counts()["done"] == N and len(st.open_batches()) == 1
        assert _client_billed(st) < _emu_billed(emu)
    # resume (the old deadline is near: give a new one); the cancelled batch is collected
    code, st = _run(tmp_path, emu, MODELS["openai"], deadline="6h", extra=extra)
    assert code == 0
    pb = _provider_batches(emu)
    assert len(pb) == 1 and pb[0].state == "cancelled"
    assert not st.open_batches()
    assert st.counts()["done"] == N and "batch" not in st.tier_counts()
    out = _out(tmp_path)
    assert sorted(x["custom_id"] for x in out) == sorted(f"q{i}" for i in range(N))
    # every item billed online (twice only for both copies of a safety-net hedge), and each line
    # the cancelled batch answered is one duplicate row, never a result
    assert st.db.execute("SELECT COUNT(DISTINCT seq) FROM ledger WHERE kind = 'billed'").fetchone()[0] == N
    dups = st.db.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM ledger WHERE kind = 'duplicate'").fetchone()
    assert dups == (late, late)
    assert st.db.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'duplicate' AND tier != 'batch'").fetchone()[0] == 0
    assert _client_billed(st) + _cut_off(st, emu) == _emu_billed(emu)
    r = build_report(st)
    assert r["duplicates"]["n"] == late and r["billed_total"] == r["spent"] + r["duplicates"]["cost"]
    # the cancelled lines it never answered are not failures, and nothing was resent
    assert st.counts()["failed"] == 0
    assert st.db.execute("SELECT COUNT(*) FROM attempts WHERE tier != 'batch' AND ts > ?",
                         (max(t for t, k, _ in st.events() if k == "run_start"),)).fetchone()[0] == 0
