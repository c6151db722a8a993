"""Clean failures (issue 18 §6, §3): real ``python -m flextier`` processes against an emulator on loopback.

* disk full: one line ("no space left on device while writing STORE"), exit 3, and a resume with
  space again finishes with every result exactly once (before: exit 1, 89 lines, 3 tracebacks).
  Two ways to fill it: a real tiny tmpfs (in an unprivileged user+mount namespace, skipped where
  the kernel forbids one), and, everywhere, SQLite's own limit (``PRAGMA max_page_count``) set on
  every connection the child process opens, which makes the store answer SQLITE_FULL mid-run;
* a corrupted or truncated store: one line naming the file and what to do, exit 2 (before: a
  46-line traceback);
* ``--out`` on a directory or a read-only file: one line, exit 2, nothing sent;
* a deadline that passed while the job was stopped: the identical command resumes, keeps the
  original instant, finishes, and the report says missed (before: refused, "give a new one").
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from flextier.jobs.store import JobStore

from hardening_support import MODEL, PY, START, free_port, python_env, run_cli

def _jobs(path, n, tag="f"):
    path.write_text("".join(json.dumps({"id": f"{tag}{i}", "prompt": f"Tell me a fact about {i}. " * 4}) + "\n"
                            for i in range(n)))


def _assert_complete(out, n, tag="f"):
    got = Counter(json.loads(x)["custom_id"] for x in out.read_text().splitlines())
    assert sorted(got) == sorted(f"{tag}{i}" for i in range(n)), "lost results"
    assert max(got.values()) == 1, "duplicated results"


def _beyond_progress(stderr: str) -> list[str]:
    """stderr without the start line and the progress lines: what the user is told went wrong."""
    return [ln for ln in stderr.splitlines()
            if not ln.startswith(("flextier: starting job", "flextier: resuming job")) and " done, " not in ln]


def _capped_cmd(pages: int) -> list[str]:
    """``python -m flextier`` with every SQLite connection the child opens capped at (its size now + pages)."""
    code = ("import sqlite3, sys\n"
            "_connect = sqlite3.connect\n"
            "def connect(*a, **k):\n"
            "    db = _connect(*a, **k)\n"
            "    n = db.execute('PRAGMA page_count').fetchone()[0]\n"
            f"    db.execute(f'PRAGMA max_page_count = {{n + {pages}}}')\n"
            "    return db\n"
            "sqlite3.connect = connect\n"
            "from flextier.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    return [PY, "-c", code]


def test_store_full_pauses_in_one_line_and_resume_loses_nothing(tmp_path):
    from flextier.emulator import serve

    n = 300
    job, db, out = tmp_path / "f.jsonl", tmp_path / "f.db", tmp_path / "f.out.jsonl"
    _jobs(job, n)
    env = python_env(OPENAI_API_KEY="sk-test-full")
    with serve(profile="calm", time_scale=3000, start=START, seed=2, port=free_port()) as emu:
        args = ["run", str(job), "--model", MODEL, "--base-url", emu.openai_base_url, "--store", str(db),
                "--out", str(out), "--concurrency", "16", "--max-tokens", "30"]
        # 40 pages (160 KB): the import fits, the results do not
        r = subprocess.run(_capped_cmd(40) + args, env=env, capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
        assert r.returncode == 3, r.stderr
        assert "Traceback" not in r.stderr
        errors = _beyond_progress(r.stderr)
        assert errors == [f"flextier: paused: no space left on device while writing {db}; the job is paused: free "
                          f"some space and resume it"], r.stderr
        with JobStore(db, create=False) as st:
            c = st.counts()
        assert 0 < c["pending"] + c["inflight"] and c["done"] < n
        r = subprocess.run([PY, "-m", "flextier", *args, "-q"], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    _assert_complete(out, n)


def _userns_tmpfs_works() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                        "mount -t tmpfs -o size=64k none /mnt 2>/dev/null || mount -t tmpfs -o size=64k none /tmp"],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _userns_tmpfs_works(), reason="no unprivileged user+mount namespaces here")
def test_real_full_disk_pauses_in_one_line_and_resume_loses_nothing(tmp_path):
    """A real ENOSPC: the store, its WAL and the results on a 400 KB tmpfs, then the same tmpfs grown."""
    from flextier.emulator import serve

    n = 400
    disk = tmp_path / "disk"
    disk.mkdir()
    keep = tmp_path / "keep"
    keep.mkdir()
    _jobs(tmp_path / "f.jsonl", n)
    env = python_env(OPENAI_API_KEY="sk-test-enospc")
    with serve(profile="calm", time_scale=3000, start=START, seed=4, port=free_port()) as emu:
        run = (f"{PY} -m flextier run {tmp_path / 'f.jsonl'} --model {MODEL} --base-url {emu.openai_base_url} "
               f"--store .flextier/f.db --out f.out.jsonl --concurrency 16 --max-tokens 30")
        # (stderr and exit codes go outside the small disk, which vanishes with the namespace)
        script = (f"mount -t tmpfs -o size=400k none {disk} && cd {disk} && "
                  f"{run} 2>{tmp_path}/first.err; echo $? > {tmp_path}/first.rc; "
                  f"mount -o remount,size=16m {disk} && {run} -q 2>{keep}/second.err; echo $? > {keep}/second.rc; "
                  f"cp -r .flextier f.out.jsonl {keep}/")
        r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], env=env,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "3", first_err
    assert "Traceback" not in first_err
    lines = _beyond_progress(first_err)
    assert len(lines) == 1 and lines[0].startswith("flextier: paused: no space left on device while writing "), \
        first_err
    assert (keep / "second.rc").read_text().strip() == "0", (keep / "second.err").read_text()
    _assert_complete(keep / "f.out.jsonl", n)


def test_damaged_store_is_one_line_naming_it(tmp_path, calm_emu, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-damaged")
    job, db = tmp_path / "d.jsonl", tmp_path / "d.db"
    _jobs(job, 200, tag="d")
    run = ["run", str(job), "--model", MODEL, "--base-url", calm_emu.openai_base_url, "--store", str(db),
           "--out", str(tmp_path / "d.out.jsonl"), "-q"]
    assert run_cli(run)[0] == 0
    whole = db.read_bytes()
    for what, data in (("truncated", whole[: len(whole) // 2]), ("garbage", os.urandom(8192))):
        db.write_bytes(data)
        for f in (tmp_path / "d.db-wal", tmp_path / "d.db-shm"):
            f.unlink(missing_ok=True)
        for cmd in (["status", str(db)], ["report", str(db)], ["resume", str(db), "-q"], run):
            rc, out, err = run_cli(cmd)
            lines = err.strip().splitlines()
            assert rc == 2, (what, cmd, err)
            assert len(lines) == 1 and str(db) in lines[0] and "damaged" in lines[0] and "backup" in lines[0], \
                (what, cmd, err)


def test_out_on_a_directory_or_read_only_file_refused_before_sending(tmp_path, calm_emu, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-out")
    job = tmp_path / "o.jsonl"
    _jobs(job, 3, tag="o")
    ro = tmp_path / "ro.jsonl"
    ro.write_text("")
    ro.chmod(0o444)
    (tmp_path / "adir").mkdir()
    sent = len(calm_emu.engine.ledger)
    for target, words in ((tmp_path / "adir", "is a directory"), (ro, "read-only")):
        rc, out, err = run_cli(["run", str(job), "--model", MODEL, "--base-url", calm_emu.openai_base_url,
                                "--store", str(tmp_path / "o.db"), "--out", str(target), "-q"])
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "--out" in lines[0] and words in lines[0], err
        assert not (tmp_path / "o.db").exists(), "refused before the store is made"
    assert len(calm_emu.engine.ledger) == sent


def test_passed_deadline_same_command_resumes_and_reports_missed(tmp_path):
    from flextier.emulator import serve

    n = 120
    job, db, out = tmp_path / "l.jsonl", tmp_path / "l.db", tmp_path / "l.out.jsonl"
    _jobs(job, n, tag="l")
    env = python_env(OPENAI_API_KEY="sk-test-late")
    # each answer takes about 150 emulated seconds (0.05 s of wall time): the first run is killed long before
    # it could finish, and the job's hour passes in 1.2 s of wall time
    with serve(profile="calm", time_scale=3000, start=START, seed=6, port=free_port(), latency_scale=250) as emu:
        args = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", emu.openai_base_url,
                "--store", str(db), "--out", str(out), "--deadline", "1h", "--concurrency", "2",
                "--standard-concurrency", "1", "--max-tokens", "20", "-q"]
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        end = time.time() + 60
        while not emu.engine.ledger and p.poll() is None and time.time() < end:
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        with JobStore(db, create=False) as st:
            deadline = st.job()["deadline"]
            assert st.counts()["done"] < n
        while emu.clock.now() <= deadline + 60:  # an emulated hour is 1.2 s of wall time here
            time.sleep(0.05)
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode not in (1, 2, 3), r.stderr  # (the missed-deadline exit code is the ux helper's)
        assert "Traceback" not in r.stderr
    with JobStore(db, create=False) as st:
        assert st.job()["deadline"] == deadline, "the original instant is kept"
        assert st.job()["state"] == "done"
    _assert_complete(out, n, tag="l")
    rc, so, _ = run_cli(["report", str(db), "--json"])
    assert rc == 0 and json.loads(so)["deadline_met"] is False


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_results_file_on_a_full_device_pauses_in_one_line(tmp_path, calm_emu, monkeypatch):
    """ENOSPC from the results file (``/dev/full`` answers every write with it): paused, one line, exit 3;
    the rerun with a writable --out has every result once."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-devfull")
    job, db = tmp_path / "r.jsonl", tmp_path / "r.db"
    _jobs(job, 40, tag="r")
    base = ["run", str(job), "--model", MODEL, "--base-url", calm_emu.openai_base_url, "--store", str(db)]
    rc, _, err = run_cli([*base, "--out", "/dev/full"])
    assert rc == 3, err
    assert _beyond_progress(err) == ["flextier: paused: no space left on device while writing /dev/full; the job "
                                     "is paused: free some space and resume it"], err
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "r.out.jsonl"), "-q"])
    assert rc == 0, err
    _assert_complete(tmp_path / "r.out.jsonl", 40, tag="r")
