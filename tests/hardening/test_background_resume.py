"""Responses background mode: a SIGKILL mid-job costs nothing twice (issue 19 §3, /v1/responses).

A real ``python -m flextier run`` of a ``/v1/responses`` job against the emulator (a slow-ish
service time, so answers are out for a while) sends each request with ``background: true``;
the response id comes back at once and goes into the send's record before the answer. The run
is SIGKILLed once the emulator's ledger shows it well under way (a condition, not a sleep), and
resumed: every cut-off send with a recorded id is retrieved (``GET /v1/responses/{id}``,
waiting while it is still in progress) instead of being sent again. Counted per item from the
emulator's ledger: no item whose cut-off send had its id recorded is sent or billed twice (one
whose POST answer was still on its way at the kill is resent once, as elsewhere); every cut-off
send the emulator had already answered had its id recorded; every item is done once; the report's possibly
billed figure still counts the cut-off sends. With ``--no-provider-store`` nothing is sent in
background mode (the switch is the same as for ``store``).
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from urllib.parse import unquote

from flextier.jobs.store import JobStore

from hardening_support import MODEL, PY, START, free_port, python_env, run_cli

N = 60
CONC = 20


def _job(tmp_path, n: int):
    job = tmp_path / "bg.jsonl"
    job.write_text("".join(json.dumps({"custom_id": f"b{i}", "method": "POST", "url": "/v1/responses",
                                       "body": {"model": "gpt-5.4-mini", "input": f"Fact {i}.",
                                                "max_output_tokens": 30}}) + "\n" for i in range(n)))
    return job


def _billed(rows):
    return Counter(unquote(r["item"]) for r in rows if r.get("item") and r.get("cost") not in (None, "0"))


def test_background_responses_kill_then_resume_pays_nothing_twice(tmp_path):
    from flextier.emulator import serve

    job = _job(tmp_path, N)
    db, out = tmp_path / "bg.db", tmp_path / "bg.out.jsonl"
    with serve(profile="calm", time_scale=5, start=START, seed=3, port=free_port()) as emu:
        base = emu.openai_base_url
        env = python_env(OPENAI_API_KEY="sk-test-bg")
        run = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", base, "--store", str(db),
               "--out", str(out), "--concurrency", str(CONC), "--tier", "auto", "--deadline", "24h", "-q"]
        p = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        end = time.monotonic() + 60
        while len(_billed(emu.ledger())) < CONC // 2 and p.poll() is None:   # under way: half a window answered
            assert time.monotonic() < end, "the run never got going"
            time.sleep(0.005)
        assert p.poll() is None, p.stderr.read().decode()[-800:]
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
        billed_at_kill = _billed(emu.ledger())
        con = sqlite3.connect(db)
        cut = con.execute("SELECT seq, remote FROM sends WHERE state = 'open'").fetchall()
        ids = dict(con.execute("SELECT seq, custom_id FROM items").fetchall())
        con.close()
        r = subprocess.run([PY, "-m", "flextier", "resume", str(db), "--base-url", base, "-q"], env=env,
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        rows = emu.ledger()
        sent = Counter(unquote(x["item"]) for x in rows if x.get("item"))
    open_sends, with_id = len(cut), sum(1 for _, r in cut if r)
    # a send cut off between the provider accepting it and its id reaching the store (the POST's
    # answer in flight, a few ms) is resent once and counted, as on every other path
    no_id = {ids[seq] for seq, r in cut if not r}
    print(f"\nbackground: {open_sends} sends out at the kill, {with_id} with a response id recorded")
    assert open_sends >= 4, "the kill found little in flight"
    # recorded before the answer: every cut-off send the provider had already answered (and billed)
    # when the kill came has its id in the store
    answered = [(seq, r) for seq, r in cut if billed_at_kill[ids[seq]]]
    assert all(r for _, r in answered), [ids[seq] for seq, r in answered if not r]
    assert with_id > 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"b{i}" for i in range(N))
    assert all(x["error"] is None for x in lines)
    billed = _billed(rows)
    twice = {k for k, v in billed.items() if v > 1}
    assert twice <= no_id and max(billed.values()) <= 2, (twice, no_id)
    assert {k for k, v in sent.items() if v > 1} <= no_id, "an item with a recorded response id was sent again"
    with JobStore(db, create=False) as st:
        settled = st.settled_sends()
        pb_sends, _ = st.possibly_billed()
    assert settled >= with_id - 2 and settled > 0
    rc, so, _ = run_cli(["report", str(db)])
    assert rc == 0 and f"possibly billed: {pb_sends} sends" in so, so


def test_the_provider_store_switch_is_the_background_switch(tmp_path):
    """Default: the answer read back is a background response; ``--no-provider-store``: a plain one."""
    from flextier.emulator import serve

    job = _job(tmp_path, 6)
    with serve(profile="calm", time_scale=3000, start=START, seed=3, port=free_port()) as emu:
        env_key = python_env(OPENAI_API_KEY="sk-test-bg")["OPENAI_API_KEY"]
        import os
        os.environ["OPENAI_API_KEY"] = env_key
        try:
            for flag, bg in (([], True), (["--no-provider-store"], False)):
                o = tmp_path / f"o{bg}.jsonl"
                rc, _, err = run_cli(["run", str(job), "--model", MODEL, "--base-url", emu.openai_base_url,
                                      "--store", str(tmp_path / f"s{bg}.db"), "--out", str(o), "-q", *flag])
                assert rc == 0, err
                bodies = [json.loads(x)["response"]["body"] for x in o.read_text().splitlines()]
                assert [b["background"] for b in bodies] == [bg] * 6
                assert all((b["metadata"].get("flextier_item") is not None) == bg for b in bodies)
        finally:
            del os.environ["OPENAI_API_KEY"]
