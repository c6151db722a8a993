"""A forced tier is the user's order (issue 11 item 5), through the real CLI against the emulator.

Before the fix, ``--tier batch`` on Bedrock whose batch submission failed finished quietly on
flex with exit 0. Now, when the batch lane cannot take the work, the job pauses (exit 3,
resumable) with the reason, and nothing is sent on another tier; ``--tier auto`` may switch,
and its summary says why. Submission is made to fail with the emulator's ``submit_error``
batch knob (CreateModelInvocationJob answers that status).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flextier.cli import main
from flextier.emulator.batch_core import batch_engine
from flextier.jobs.store import JobStore

from flextier.emulator import serve

from .conftest import TIME_SCALE, set_batch_knobs

MODEL = "bedrock/nova-pro"          # flex and batch
ROLE = "arn:aws:iam::123456789012:role/x"
N = 120


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    (tmp_path / "big.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Say one thing about {i}."})
                                                + "\n" for i in range(N)))
    return tmp_path


@pytest.fixture
def emulator():
    """``emulator(**batch_knobs)``: a weekday emulator whose Bedrock jobs use its own S3 (no moto)."""
    cms = []

    def make(**knobs):
        cm = serve(profile="weekday", seed=7, time_scale=TIME_SCALE, start="2026-11-24T02:00")
        cms.append(cm)
        emu = cm.__enter__()
        set_batch_knobs(emu, **knobs)
        return emu

    yield make
    for cm in reversed(cms):
        cm.__exit__(None, None, None)


def _emu(emulator, **knobs):
    emu = emulator(bedrock_min_records=100, **knobs)
    emu.s3.create_bucket("bucket")          # the rehearsal's S3 is the emulator's own (--base-url emulator)
    return emu


def _argv(emu, *flags: str) -> list[str]:
    return ["run", "big.jsonl", "--model", MODEL, "--base-url", emu.bedrock_endpoint_url, "--batch-s3-uri",
            "s3://bucket/prefix", "--batch-role-arn", ROLE, "--max-tokens", "40", *flags]


@pytest.mark.parametrize("status", [400, 503])     # refused at once / failing until the lane gives up
def test_tier_batch_whose_submission_fails_pauses_and_sends_nothing_elsewhere(emulator, workdir, status):
    emu = _emu(emulator, submit_error=status)
    proc = subprocess.run([sys.executable, "-m", "flextier", *_argv(emu, "--tier", "batch")], capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode == 3, proc.stderr
    paused = [ln for ln in proc.stderr.splitlines() if ln.startswith("flextier: paused:")]
    assert len(paused) == 1 and "--tier batch: the batch lane could not take 120 items" in paused[0]
    assert "submit_error" in paused[0] and "flextier resume big" in paused[0] and "--tier auto" in paused[0]
    assert "Traceback" not in proc.stderr
    assert emu.ledger() == []                                   # not one request on flex or standard
    assert "kept back, not sent on another tier" in proc.stdout
    with JobStore(next((workdir / ".flextier").glob("big-*.db")), create=False) as st:
        assert st.job()["state"] == "paused"
        assert st.counts()["pending"] == N and st.counts()["done"] == 0 and not st.open_batches()
    # resumable: once the provider accepts batches, resume finishes on batch and nothing else
    set_batch_knobs(emu, submit_error=0)
    assert main(["resume", "big", "--quiet"]) == 0
    assert {r["served_tier"] for r in emu.ledger()} == {"batch"} and len(emu.ledger()) == N
    with JobStore(next((workdir / ".flextier").glob("big-*.db")), create=False) as st:
        assert st.tier_counts() == {"batch": N}


def test_tier_batch_with_lines_a_batch_left_unanswered_pauses_instead_of_going_online(emulator, workdir, capsys):
    emu = _emu(emulator, fail_keys="q0,q1")       # their lines fail with a server error
    rc = main(_argv(emu, "--tier", "batch"))
    out, err = capsys.readouterr()
    assert rc == 3, err
    assert "2 lines of a batch ended unanswered" in err
    assert {r["served_tier"] for r in emu.ledger()} <= {"batch", None}        # no flex, no standard
    with JobStore(next((workdir / ".flextier").glob("big-*.db")), create=False) as st:
        assert st.counts()["done"] == N - 2 and st.counts()["pending"] == 2
        assert st.tier_counts() == {"batch": N - 2}


def test_tier_auto_may_switch_and_the_summary_says_why(emulator, workdir, capsys):
    emu = _emu(emulator, submit_error=400)
    rc = main(_argv(emu, "--deadline", "30h"))          # auto: the deadline leaves room for batch
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "batch lane: 120 items sent online instead (the provider did not accept batch" in out
    assert "submit_error" in out
    assert emu.ledger() and "batch" not in {r["served_tier"] for r in emu.ledger()}
    assert not batch_engine(emu.engine).jobs


@pytest.mark.parametrize("tier", ["flex", "standard"])
def test_forced_online_tiers_never_use_batch(emulator, workdir, capsys, tier):
    emu = _emu(emulator)
    rc = main(_argv(emu, "--tier", tier))
    assert rc == 0, capsys.readouterr().err
    assert {r["requested_tier"] for r in emu.ledger()} == {tier} and not batch_engine(emu.engine).jobs
