"""Kill -9 a real `python -m flextier run` at random points, resume, and check nothing is lost or doubled."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal

MODEL = "openai/gpt-5.4-mini"


def _done(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill9_and_resume(emulator, simple_jobs, tmp_path, billed):
    n = 100
    emu = emulator("calm", time_scale=100)  # slow enough that each kill lands mid-job (start-up is 0.4 s now)
    jobs = simple_jobs(n)
    db = tmp_path / "store.db"
    out = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "flextier", "run", str(jobs), "--model", MODEL, "--base-url", emu.openai_base_url,
           "--store", str(db), "--out", str(out), "--concurrency", "12", "--max-tokens", "60", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    rng = random.Random(int(os.environ.get("FLEXTIER_TEST_SEED", "5")))
    kills = 0
    for target in sorted(rng.sample(range(10, n - 25), 2)):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t_end = time.monotonic() + 60
        while _done(db) < target and proc.poll() is None and time.monotonic() < t_end:
            time.sleep(0.01)
        time.sleep(rng.random() * 0.05)  # land anywhere: mid-flush, mid-write, mid-request
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    mid = _done(db)
    assert 0 < mid < n
    final = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    # nothing lost, nothing duplicated, no torn line
    lines = out.read_text(encoding="utf-8").splitlines()
    ids = [json.loads(x)["custom_id"] for x in lines]
    assert len(ids) == n and set(ids) == {f"q{i}" for i in range(n)}
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0] == n
    client = sum((Decimal(c) for (c,) in con.execute("SELECT cost FROM ledger")), Decimal(0))
    client_rows = con.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    pb_sends, = con.execute("SELECT COALESCE(SUM(possibly_billed), 0) FROM items").fetchone()
    bound = sum((Decimal(sc) * pb for pb, sc in con.execute(
        "SELECT possibly_billed, standard_cost FROM items WHERE possibly_billed > 0")), Decimal(0))
    con.close()
    assert client_rows == n  # each item billed once in the client ledger
    emu_cost, emu_rows = billed(emu)
    # the emulator billed everything the client recorded, plus at most the sends in flight at each kill
    assert client <= emu_cost <= client + bound
    assert n <= emu_rows <= n + pb_sends
    assert "possibly billed" in subprocess.run(
        [sys.executable, "-m", "flextier", "report", str(db)], cwd=tmp_path, capture_output=True, text=True
    ).stdout or pb_sends == 0
