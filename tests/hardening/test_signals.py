"""Issue 18 §6: SIGTERM and Ctrl-C stop a job cleanly.

Before: Ctrl-C cancelled the requests in flight (200 of them), which the provider billed and a
resume sent and billed again; SIGTERM had no handler, so the process died and the job stayed
"running". Now the first signal stops claiming, waits (a bounded time) for the requests in
flight, records them and leaves the job "stopped" (exit 130 for SIGINT, 143 for SIGTERM) with
the command that resumes it; a second Ctrl-C stops at once.

Real ``python -m flextier run`` subprocesses against a ``flextier emulate`` process (bench/_harness.py),
whose bill is read over HTTP.
"""
from __future__ import annotations

import json
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

from flextier.jobs.store import JobStore

from hardening_support import MODEL, PY, START, python_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _harness import emulator_process, ledger  # noqa: E402


def _jobs(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"Tell me about {i}."}) + "\n" for i in range(n)))
    return path


def _open_sends(db: Path) -> int:
    """Sends out right now, read-only (the runner owns the store)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM sends WHERE state = 'open'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait(cond, proc: subprocess.Popen, within: float = 60.0) -> None:
    end = time.monotonic() + within
    while not cond():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def _billed_per_item(rows: list[dict]) -> Counter:
    return Counter(unquote(r["item"]) for r in rows if r.get("item") and r.get("cost") not in (None, "0"))


def test_ctrl_c_drains_in_flight_and_a_resume_bills_nothing_twice(tmp_path):
    n = 300
    job = _jobs(tmp_path / "sig.jsonl", n)
    db, out = tmp_path / "sig.db", tmp_path / "sig.out.jsonl"
    env = python_env(OPENAI_API_KEY="sk-test-sig")
    with emulator_process("calm", seed=2, time_scale=5.0, start=START) as url:  # an answer takes ~0.15 s
        cmd = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", url + "/v1", "--store",
               str(db), "--out", str(out), "--concurrency", "64", "--max-tokens", "30", "-q"]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        _wait(lambda: len(ledger(url)) >= 20 and _open_sends(db) >= 20, p)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err
        assert "SIGINT: stopping; waiting up to 30 s for" in err
        line = next(ln for ln in err.splitlines() if "Resume with: " in ln)
        assert "all recorded" in line, line
        with JobStore(db, create=False) as st:
            job_row = st.job()
            c = st.counts()
            assert job_row["state"] == "stopped" and "SIGINT" in job_row["message"]
            assert c["done"] > 0 and c["inflight"] == 0 and c["done"] + c["pending"] == n
            assert st.send_records() == [] and st.possibly_billed()[0] == 0
        resume = shlex.split(line.split("Resume with: ", 1)[1])
        assert resume[:2] == ["flextier", "resume"]
        r = subprocess.run([PY, "-m", "flextier", *resume[1:], "-q"], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
        rows = ledger(url)
    twice = {k: v for k, v in _billed_per_item(rows).items() if v > 1}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"s{i}" for i in range(n))
    print(f"\nCtrl-C then resume: {len(twice)} items billed twice")
    assert not twice, twice


def test_sigterm_stops_the_job_and_exits_143(tmp_path):
    job = _jobs(tmp_path / "term.jsonl", 300)
    db, out = tmp_path / "term.db", tmp_path / "term.out.jsonl"
    env = python_env(OPENAI_API_KEY="sk-test-term")
    with emulator_process("calm", seed=2, time_scale=5.0, start=START) as url:
        cmd = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", url + "/v1", "--store",
               str(db), "--out", str(out), "--concurrency", "64", "--max-tokens", "30", "-q"]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        _wait(lambda: _open_sends(db) >= 20, p)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "Traceback" not in err and "Resume with: flextier resume" in err and f"--store {db}" in err
    with JobStore(db, create=False) as st:
        assert st.job()["state"] == "stopped"
        assert st.counts()["inflight"] == 0 and st.send_records() == []


def test_drain_is_bounded_and_a_second_ctrl_c_stops_at_once(tmp_path):
    """Answers that take ~70 s: ``--drain-timeout 1`` stops after a second; without it, a second
    Ctrl-C stops at once. Either way the requests cut off are possibly billed, and the job is
    "stopped", not "running"."""
    env = python_env(OPENAI_API_KEY="sk-test-slow")
    with emulator_process("calm", "latency_scale=100", seed=2, time_scale=1.0, start=START) as url:
        for name, extra, second in (("bounded", ["--drain-timeout", "1"], False), ("twice", [], True)):
            job = _jobs(tmp_path / f"{name}.jsonl", 50)
            db = tmp_path / f"{name}.db"
            cmd = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", url + "/v1", "--store",
                   str(db), "--out", str(tmp_path / f"{name}.out"), "--concurrency", "8", "--max-tokens", "30",
                   "-q", *extra]
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=tmp_path)
            _wait(lambda: _open_sends(db) >= 4, p)
            p.send_signal(signal.SIGINT)
            if second:
                time.sleep(0.5)
                assert p.poll() is None  # still draining (30 s by default)
                p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=20)  # far less than one answer's 70 s
            assert p.returncode == 130, err
            assert "Traceback" not in err and "cut off (marked possibly billed)" in err, err
            with JobStore(db, create=False) as st:
                assert st.job()["state"] == "stopped"
                n, _ = st.possibly_billed()
                states = Counter(s for *_, s in st.send_records())
            assert n >= 4 and states == {"unknown": n}, (n, states)
