"""flextier.ray on a real two-node Ray cluster against the emulator over 127.0.0.1.

The same job engine as ``flextier run`` on every worker, one controller per job: every id
exactly once, cost equal to the emulator's ledger, deadlines met, ``max_cost`` never crossed
cluster-wide, and a killed worker actor or driver loses and duplicates nothing.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
import ray.data  # noqa: E402

import flextier.ray  # noqa: E402
from flextier.emulator import serve  # noqa: E402
from flextier.ray.state import JobState, merged_store  # noqa: E402

MODEL = "openai/gpt-5.4-mini"


def _rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "text": f"review number {i}"} for i in range(n)]


def _ledger(emu) -> Decimal:
    return sum((Decimal(r["cost"]) for r in emu.ledger() if r.get("cost")), Decimal(0))


def _run(emu, tmp_path, job, n, **kw):
    ds = ray.data.from_items(_rows(n), override_num_blocks=kw.pop("blocks", 8))
    opts = dict(model=MODEL, prompt_column="text", template="Classify the sentiment: {text}", job=job,
                state=str(tmp_path / "state"), base_url=emu.openai_base_url, api_key="emulator", clock=emu.clock,
                max_tokens=16, progress_every=None, batch_size=100)
    opts.update(kw)
    return flextier.ray.process(ds, **opts).take_all()


def _part_ids(tmp_path, job) -> list[str]:
    import pyarrow.parquet as pq

    st = JobState(tmp_path / "state", job)
    return [i for p in st.part_paths() for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


def _report(tmp_path, job):
    from flextier.jobs.report import build_report

    st = merged_store(tmp_path / "state" / job, tmp_path / f"{job}-report.db")
    try:
        return build_report(st)
    finally:
        st.close()


def test_weekday_2000_rows_deadline_met_each_id_once_cost_is_ledger(cluster, tmp_path):
    with serve(profile="weekday", seed=3, time_scale=300, start="2026-11-24T14:00") as emu:
        out = _run(emu, tmp_path, "wk", 2000, deadline="3h", workers=2)
        ledger = _ledger(emu)
    ids = [r["id"] for r in out]
    assert len(ids) == 2000 and set(ids) == {f"r{i}" for i in range(2000)}
    assert all(r["error"] is None and r["text"] for r in out)
    assert sorted(_part_ids(tmp_path, "wk")) == sorted(ids)
    tiers = collections.Counter(r["served_tier"] for r in out)
    assert tiers["flex"] > 0, tiers
    rep = _report(tmp_path, "wk")
    # the results' cost is the answers' bill; a hedged copy that lost is billed too (a duplicate)
    assert sum(r["cost_usd"] for r in out) == rep["spent"]
    assert rep["billed_total"] == ledger and rep["possibly_billed"]["sends"] == 0
    assert rep["deadline_met"] is True, rep["timeline"]


def test_killed_worker_actor_loses_and_duplicates_nothing(cluster, tmp_path):
    job, n = "kill", 800
    with serve(profile="calm", seed=5, time_scale=300) as emu:

        def killer():
            # on a condition, not a sleep: once results are durable, while most batches have not started
            t_end = time.monotonic() + 120
            while _published_rows(tmp_path / "state", job) == 0 and time.monotonic() < t_end:
                time.sleep(0.01)
            ctl = flextier.ray.controller_of(job)
            handles = ray.get(ctl.worker_handles.remote())
            at_kill.append(_published_rows(tmp_path / "state", job))
            ray.kill(handles[0], no_restart=False)

        at_kill: list[int] = []
        th = threading.Thread(target=killer, daemon=True)
        th.start()
        out = _run(emu, tmp_path, job, n, deadline="2h", workers=2, batch_size=50)
        th.join(5)
        ledger = _ledger(emu)
    assert at_kill and 0 < at_kill[0] < n  # the kill landed mid-run
    ids = [r["id"] for r in out]
    assert len(ids) == n and set(ids) == {f"r{i}" for i in range(n)}
    assert sorted(_part_ids(tmp_path, job)) == sorted(ids)
    rep = _report(tmp_path, job)
    # what the killed actor had out may have been billed: counted as possibly billed, never lost
    assert rep["spent"] <= ledger <= rep["billed_total"] + rep["possibly_billed"]["upper_bound"]


def _published_rows(state: Path, job: str) -> int:
    d = state / job / "manifest"
    n = 0
    for p in (d.glob("*.json") if d.exists() else ()):
        try:
            n += json.loads(p.read_text()).get("rows", 0)
        except ValueError:  # pragma: no cover - manifests are written atomically
            continue
    return n


def _wait_until_reaped(job: str, timeout: float = 60.0) -> None:
    """Wait (on a condition, not a sleep) until the dead driver's controller and workers are gone, so
    the rerun neither joins a stale controller nor races a live worker for a batch store. (From the
    GCS's actor table: ``ray.get_actor`` cannot load a dead job's actor class.)"""
    from ray._private import state as ray_state

    from flextier.ray.controller import controller_name

    jobs = {a.get("JobID") for a in ray_state.actors().values() if a.get("Name") == controller_name(job)}
    assert jobs, "the dead driver's controller is not in the actor table"
    t_end = time.monotonic() + timeout
    while any(a.get("State") == "ALIVE" and a.get("JobID") in jobs for a in ray_state.actors().values()):
        assert time.monotonic() < t_end, "the dead driver's actors are still alive"
        time.sleep(0.05)


def test_sigkilled_driver_then_rerun_loses_and_duplicates_nothing(cluster, tmp_path):
    job, n = "crash", 600
    state = tmp_path / "state"
    with serve(profile="calm", seed=7, time_scale=300) as emu:
        p = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_driver.py")), cluster["address"],
                              emu.openai_base_url, str(state), str(n)], env=cluster["env"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill on a condition, not after a sleep: the moment the first results are durable. Ray Data
        # runs one batch per actor, 2 of the 16 at once, so the rest has not started yet, on a fast
        # or a slow machine alike
        t_end = time.monotonic() + 180
        while _published_rows(state, job) == 0:
            assert p.poll() is None, "the driver ended before it published anything"
            assert time.monotonic() < t_end, "nothing published in 180 s"
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        _wait_until_reaped(job)
        first = len(_part_ids(tmp_path, job))
        assert 0 < first < n
        out = _run(emu, tmp_path, job, n, deadline="2h", workers=2, batch_size=40)
        ledger = _ledger(emu)
    ids = [r["id"] for r in out]
    assert len(ids) == n and set(ids) == {f"r{i}" for i in range(n)}
    assert sorted(_part_ids(tmp_path, job)) == sorted(ids)
    rep = _report(tmp_path, job)
    assert rep["counts"]["done"] == n
    # every billed answer is priced, and what was out at the kill is counted as possibly billed
    assert rep["spent"] <= ledger <= rep["billed_total"] + rep["possibly_billed"]["upper_bound"]


def test_max_cost_never_crossed_with_four_workers(cluster, tmp_path):
    cap = Decimal("0.02")
    with serve(profile="calm", seed=9, time_scale=300) as emu:
        out = _run(emu, tmp_path, "cap", 800, max_cost=cap, tier="standard", workers=4, batch_size=50, blocks=12)
        ledger = _ledger(emu)
    assert ledger <= cap
    paid = [r for r in out if r["error"] is None]
    assert 0 < len(paid) < 800 and sum(r["cost_usd"] for r in paid) == ledger
    assert all("paused" in r["error"] for r in out if r["error"] is not None)
    assert len({r["id"] for r in out}) == 800


def test_outage_falls_back_to_standard_and_meets_the_deadline(cluster, tmp_path):
    with serve(profile="outage", seed=11, time_scale=300, start="2026-11-24T14:00") as emu:
        out = _run(emu, tmp_path, "out", 600, deadline="2h", workers=2)
        ledger = _ledger(emu)
    tiers = collections.Counter(r["served_tier"] for r in out)
    assert tiers["standard"] > 0 and len(out) == 600 and all(r["error"] is None for r in out)
    rep = _report(tmp_path, "out")
    assert sum(r["cost_usd"] for r in out) == rep["spent"] and rep["billed_total"] == ledger
    assert rep["deadline_met"] is True
    # `flextier report STATE/JOB` reads a Ray job's state directory (all its batch stores)
    from typer.testing import CliRunner

    from flextier.cli import app

    res = CliRunner().invoke(app, ["report", str(tmp_path / "state" / "out"), "--json"])
    assert res.exit_code == 0, res.output
    assert '"done": 600' in res.output


def _rate_limited(emu) -> int:
    return sum(1 for r in emu.ledger() if r.get("outcome") == "rate_limited")


def test_rate_limit_is_the_jobs_four_workers_do_not_multiply_429s(cluster, tmp_path):
    """The RPM bucket is the controller's (learned from the x-ratelimit-* headers every member
    forwards) and a 429 anywhere pauses every member: four workers meet the limit about as
    often as one, not four times as often (counted in the emulator's ledger). With a bucket per
    runner (before the controller held them) this run saw 0 and 47."""
    seen = {}
    for workers in (1, 4):
        with serve(profile="calm", seed=13, time_scale=600, start="2026-11-24T14:00", rpm_limit=30) as emu:
            out = _run(emu, tmp_path, f"rl{workers}", 200, workers=workers, batch_size=25)
            seen[workers] = (_rate_limited(emu), flextier.ray.progress(f"rl{workers}"))
        assert len({r["id"] for r in out}) == 200 and all(r["error"] is None for r in out)
    n1, n4 = seen[1][0], seen[4][0]
    assert seen[4][1]["rpm_limit"] == 30  # learned from the headers
    assert n4 <= 2 * n1 + 10, (n1, n4)


def test_cli_run_on_ray_same_file_flags_output_and_report(cluster, tmp_path, monkeypatch, capsys):
    """`flextier run JOBS.jsonl ... --ray ADDRESS`: the job file `flextier run` reads, its flags, its
    results file (one line per id, the same line shape) and `flextier report JOB`; the same
    command again resumes (nothing sent twice)."""
    from flextier.cli import main

    monkeypatch.chdir(tmp_path)
    jobs = tmp_path / "jobs.jsonl"
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": f"hello {i}"}]}}
             for i in range(60)] + [{"id": f"s{i}", "prompt": f"simple {i}"} for i in range(40)]
    jobs.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with serve(profile="calm", seed=17, time_scale=300) as emu:
        argv = ["run", str(jobs), "--model", MODEL, "--base-url", emu.openai_base_url, "--job", "clij",
                "--deadline", "2h", "--max-tokens", "16", "--ray", cluster["address"], "--ray-workers", "2"]
        rc = main(argv)
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        n_sent = len(emu.ledger())
        ledger = _ledger(emu)
        assert main(argv + ["--quiet"]) == 0   # the same command again: everything is done already
        assert len(emu.ledger()) == n_sent and capsys.readouterr().out == ""
    out = [json.loads(x) for x in open("clij.results.jsonl")]
    assert [o["custom_id"] for o in out] == [x.get("custom_id") or x["id"] for x in lines]  # input order
    assert all(o["error"] is None and o["response"]["status_code"] == 200 for o in out)
    assert "deadline" in cap.out and "Traceback" not in cap.err
    assert main(["report", "clij", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"]["done"] == 100 and Decimal(str(rep["billed_total"])) == ledger
