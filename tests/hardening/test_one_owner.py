"""One owner per job (issue 18 §1): real ``python -m flextier`` processes against one emulator on loopback.

Before: a second ``run`` (or a ``resume``) of a running job claimed and sent the same items,
141-183 were billed twice, one process crashed on a reservation clash, and results went
missing for good. Now the second runner is refused with one line naming the owner's PID
(exit 2) before it sends anything; a ``kill -9`` owner never blocks the resume that follows;
two jobs cannot write one results file; and the finished output has every item exactly once.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from urllib.parse import unquote

import pytest

from flextier.jobs.lock import JobBusy
from flextier.jobs.store import JobStore

from hardening_support import MODEL, PY, START, free_port, python_env, run_cli

N = 600


def _write(path, n, tag="o"):
    path.write_text("".join(json.dumps({"id": f"{tag}{i}", "prompt": f"Fact {i}."}) + "\n" for i in range(n)))


def _wait_sending(emu, p, timeout=60.0):
    end = time.time() + timeout
    while not emu.engine.ledger and p.poll() is None and time.time() < end:
        time.sleep(0.01)
    assert p.poll() is None, p.stderr.read().decode()


def test_second_runner_refused_and_kill9_owner_never_blocks(tmp_path):
    from flextier import run_job
    from flextier.emulator import serve

    job, other = tmp_path / "o.jsonl", tmp_path / "other.jsonl"
    _write(job, N)
    _write(other, 5, tag="x")
    db, out = tmp_path / "o.db", tmp_path / "o.out.jsonl"
    env = python_env(OPENAI_API_KEY="sk-test-owner")
    # two at a time, each answer about 0.15 s of wall time: the owner would take about 45 s, so it is still
    # sending while the others try (the resume at the end runs 32 at a time)
    with serve(profile="calm", time_scale=200, start=START, seed=3, port=free_port(), latency_scale=50) as emu:
        base = emu.openai_base_url
        run_args = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", base, "--store", str(db),
                    "--out", str(out), "--concurrency", "2", "--max-tokens", "20", "-q"]
        owner = subprocess.Popen(run_args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        try:
            _wait_sending(emu, owner)
            # the same command again, and a resume, while the owner runs: refused, one line, the owner's PID
            for args in (run_args, [PY, "-m", "flextier", "resume", str(db), "--base-url", base, "-q"]):
                sent = len(emu.engine.ledger)
                r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
                assert r.returncode == 2, r.stderr
                lines = r.stderr.strip().splitlines()
                assert len(lines) == 1 and "already running" in lines[0] and str(owner.pid) in lines[0], r.stderr
                assert owner.poll() is None
            # the Python API is refused too
            with pytest.raises(JobBusy, match=str(owner.pid)):
                run_job(["hello"], model=MODEL, store=db, base_url=base, api_key="sk-test-owner")
            # another job writing the owner's results file: refused before it sends anything
            r = subprocess.run([PY, "-m", "flextier", "run", str(other), "--model", MODEL, "--base-url", base,
                                "--out", str(out), "-q"], env=env, capture_output=True, text=True, timeout=60,
                               cwd=tmp_path)
            assert r.returncode == 2 and "another running job is writing this results file" in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
            assert not any(unquote(x.get("item", "")).startswith("x") for x in emu.ledger())
            assert len(emu.engine.ledger) >= sent  # (the owner kept going meanwhile)
            # status names the live owner
            rc, so, _ = run_cli(["status", str(db), "--json"])
            assert rc == 0 and json.loads(so)["owner_pid"] == owner.pid and json.loads(so)["state"] == "running"
            # kill -9 the owner: the kernel drops its lock, the resume right after takes over
            owner.send_signal(signal.SIGKILL)
            owner.wait()
            rc, so, _ = run_cli(["status", str(db), "--json"])
            assert json.loads(so)["owner_pid"] is None and json.loads(so)["state"] == "stopped"
        finally:
            if owner.poll() is None:
                owner.kill()
                owner.wait()
            owner.stderr.close()
        with JobStore(db, create=False) as st:
            assert st.counts()["done"] < N, "the owner finished before the test could race it"
        r = subprocess.run([PY, "-m", "flextier", "resume", str(db), "--base-url", base, "--concurrency", "32", "-q"],
                           env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        time.sleep(0.2)
        rows = emu.ledger()
    got = Counter(json.loads(x)["custom_id"] for x in out.read_text().splitlines())
    assert sorted(got) == sorted(f"o{i}" for i in range(N)) and max(got.values()) == 1
    # nothing billed twice beyond the sends the kill left in flight (flagged "possibly billed")
    billed = Counter(unquote(x["item"]) for x in rows if x.get("cost") not in (None, "0"))
    with JobStore(db, create=False) as st:
        flagged = {it["custom_id"]: it["possibly_billed"] for it in st.iter_items()}
    assert all(billed[c] <= 1 + flagged[c] for c in billed), [c for c in billed if billed[c] > 1 + flagged[c]]
    assert sum(flagged.values()) <= 2 + 8  # at most the owner's window plus its prefetch
    print(f"\none owner: {N} results once; {sum(1 for c in billed if billed[c] > 1)} items billed twice, "
          f"{sum(flagged.values())} sends flagged possibly billed by the kill")


def test_output_checked_by_content_and_owned(tmp_path, calm_emu):
    """A results file overwritten with same-size junk, or with lines dropped/duplicated, is rebuilt from the
    store on the rerun (before: exit 0, 1,297 results missing); a second job cannot take the file over."""
    job = tmp_path / "c.jsonl"
    _write(job, 30, tag="c")
    db, out = tmp_path / "c.db", tmp_path / "c.out.jsonl"
    base = ["run", str(job), "--model", MODEL, "--base-url", calm_emu.openai_base_url, "--store", str(db),
            "--out", str(out), "-q"]
    import os

    os.environ["OPENAI_API_KEY"] = "sk-test-content"
    try:
        assert run_cli(base)[0] == 0
        good = out.read_bytes()
        want = sorted(good.splitlines())
        lines = good.splitlines(keepends=True)
        damages = {
            "same-size junk": b"x" * len(good),
            "lines dropped, padded to size": b"".join(lines[5:]).ljust(len(good), b" "),
            "a line duplicated over another": b"".join([lines[0], lines[0]] + lines[2:]),
            "a torn last line": good[:-7],
        }
        for what, data in damages.items():
            out.write_bytes(data)
            sent = len(calm_emu.engine.ledger)
            rc, _, err = run_cli(base)
            assert rc == 0, (what, err)
            assert "rewritten from the store" in err, what
            assert sorted(out.read_bytes().splitlines()) == want, what
            assert len(calm_emu.engine.ledger) == sent, f"{what}: nothing is sent again"
        # an intact file is left alone, byte for byte
        good = out.read_bytes()
        rc, _, err = run_cli(base)
        assert rc == 0 and "rewritten" not in err and out.read_bytes() == good
        # another job given this file: refused, one line, the file untouched
        other = tmp_path / "d.jsonl"
        _write(other, 3, tag="d")
        rc, _, err = run_cli(["run", str(other), "--model", MODEL, "--base-url", calm_emu.openai_base_url,
                              "--out", str(out), "-q"])
        assert rc == 2 and "did not write" in err and len(err.strip().splitlines()) == 1, err
        assert out.read_bytes() == good
    finally:
        os.environ.pop("OPENAI_API_KEY", None)


def test_two_runs_started_together_one_runs_one_is_refused(tmp_path):
    """Both started at once on a new job (before: 10,002 results with 70 torn lines): the lock is taken
    before the store is created, so exactly one imports and runs, the other is refused naming it."""
    from flextier.emulator import serve

    n = 200
    job, db, out = tmp_path / "t.jsonl", tmp_path / "t.db", tmp_path / "t.out.jsonl"
    _write(job, n, tag="t")
    env = python_env(OPENAI_API_KEY="sk-test-together")
    with serve(profile="calm", time_scale=200, start=START, seed=7, port=free_port(), latency_scale=50) as emu:
        args = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", emu.openai_base_url,
                "--store", str(db), "--out", str(out), "--concurrency", "8", "--max-tokens", "20", "-q"]
        procs = [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
                 for _ in range(2)]
        errs = []
        for p in procs:
            p.wait(timeout=180)
            errs.append(p.stderr.read().decode())
            p.stderr.close()
        rows = emu.ledger()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], (codes, errs)
    winner = next(p for p in procs if p.returncode == 0)
    loser_err = errs[[p.returncode for p in procs].index(2)]
    assert len(loser_err.strip().splitlines()) == 1 and str(winner.pid) in loser_err, loser_err
    got = Counter(json.loads(x)["custom_id"] for x in out.read_text().splitlines())
    assert sorted(got) == sorted(f"t{i}" for i in range(n)) and max(got.values()) == 1
    billed = Counter(unquote(x["item"]) for x in rows if x.get("cost") not in (None, "0"))
    assert max(billed.values()) == 1, "an item was billed twice"
