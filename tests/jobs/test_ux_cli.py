"""What a user sees at the edges of the CLI: exit codes, --version, report paths, the package's lazy parts."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flextier.cli import main
from flextier.jobs import exitcodes

MODEL = "openai/gpt-5.4-mini"


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_missed_deadline_exits_4_and_the_report_agrees(simple_jobs, capsys):
    # standard answers take a few emulated seconds: a 1 s deadline cannot be met
    p = simple_jobs(3)
    rc = main(["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "50", "--tier", "standard",
               "--deadline", "1s"])
    cap = capsys.readouterr()
    assert rc == exitcodes.EXIT_DEADLINE_MISSED == 4, cap.err
    assert "MISSED" in cap.out
    assert main(["report", "jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deadline_met"] is False


def test_met_deadline_still_exits_0(simple_jobs, capsys):
    p = simple_jobs(3)
    rc = main(["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "50", "--tier", "standard",
               "--deadline", "1h", "--quiet"])
    assert rc == 0, capsys.readouterr().err


def test_exit_code_precedence():
    e = exitcodes
    assert e.pick(e.EXIT_OK, e.EXIT_FAILED_ITEMS, e.EXIT_DEADLINE_MISSED) == e.EXIT_FAILED_ITEMS
    assert e.pick(e.EXIT_OK, e.EXIT_DEADLINE_MISSED) == e.EXIT_DEADLINE_MISSED
    assert e.pick(e.EXIT_PAUSED, e.EXIT_DEADLINE_MISSED, e.EXIT_FAILED_ITEMS) == e.EXIT_PAUSED
    assert e.pick(e.EXIT_TERMINATED, e.EXIT_PAUSED) == e.EXIT_TERMINATED
    assert e.pick(e.EXIT_BAD_INPUT, e.EXIT_INTERRUPTED) == e.EXIT_BAD_INPUT
    assert e.pick() == e.EXIT_OK
    assert set(e.MEANINGS) == set(e.PRECEDENCE)


def test_every_exit_code_is_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in exitcodes.MEANINGS:
        assert f"| {code} |" in section, code


def test_quiet_run_still_writes_the_html_page_into_a_directory(simple_jobs, tmp_path):
    p = simple_jobs(3)
    rc = main(["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "200", "--quiet",
               "--html", "pages/"])
    assert rc == 0 and len(list((tmp_path / "pages").glob("jobs-*.html"))) == 1  # the page is named after the job


def test_ctrl_c_prints_the_command_that_resumes(simple_jobs, tmp_path):
    import os
    import signal
    import time

    p = simple_jobs(40)
    proc = subprocess.Popen([sys.executable, "-m", "flextier", "run", str(p), "--model", MODEL, "--emulate", "weekday",
                             "--time-scale", "1", "--deadline", "2h", "--drain-timeout", "1"], cwd=tmp_path, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()            # "flextier: starting job ..." once the job is open
        assert "starting job" in line, line
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exitcodes.EXIT_INTERRUPTED, err
    assert re.search(r"Resume with: flextier resume jobs-[0-9a-f]{8}", err), err
