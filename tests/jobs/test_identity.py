"""Job identity (issue 11 item 6) and the small things around it: `flextier run/status/report` in-process.

Before: a job was named by its file's stem, so `run jobs.txt` (no such file) printed the summary
of an earlier `jobs.jsonl` job and exited 0, and `bad.csv` was refused as "changed" because
`bad.jsonl` had run. An empty input ran a 0-item job silently, and `resume --emulate X` fell
back to x1 time.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flextier.cli import main

MODEL = "openai/gpt-5.4-mini"
EMU = ["--model", MODEL, "--emulate", "calm", "--time-scale", "3000"]


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _started(err: str) -> str:
    m = re.search(r"(?:starting|resuming) job '([^']+)'", err)
    assert m, err
    return m.group(1)


def test_missing_file_is_exit_2_and_never_another_jobs_summary(simple_jobs, capsys):
    p = simple_jobs(3)
    assert main(["run", str(p), *EMU, "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["run", str(p.with_suffix(".txt")), *EMU])
    cap = capsys.readouterr()
    assert rc == 2
    assert cap.err.strip().splitlines() == [f"flextier: error: {p.with_suffix('.txt')}: job file not found"]
    assert cap.out == ""


def test_same_stem_two_files_two_jobs(tmp_path, write_jsonl, capsys):
    write_jsonl([{"id": "j1", "prompt": "one"}, {"id": "j2", "prompt": "two"}], name="bad.jsonl")
    (tmp_path / "bad.csv").write_text("id,city\nc1,Paris\nc2,Lima\nc3,Oslo\n")
    assert main(["run", "bad.jsonl", *EMU]) == 0
    name_jsonl = _started(capsys.readouterr().err)
    assert main(["run", "bad.csv", *EMU, "--prompt-template", "One fact about {city}."]) == 0
    name_csv = _started(capsys.readouterr().err)
    assert name_jsonl != name_csv and name_jsonl.startswith("bad-") and name_csv.startswith("bad-")
    assert len(list(Path(".flextier").glob("bad-*.db"))) == 2
    # each job finds its own store: by the printed name, by its file, and its results are its own
    assert main(["status", name_csv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["done"] == 3
    assert main(["report", "bad.jsonl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["done"] == 2
    assert {json.loads(x)["custom_id"] for x in open(f"{name_csv}.results.jsonl")} == {"c1", "c2", "c3"}
    # the bare stem is ambiguous now: one line naming both
    assert main(["status", "bad"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name_jsonl in err[0] and name_csv in err[0]


def test_same_file_resumes_its_own_job_and_a_copy_is_another(tmp_path, simple_jobs, capsys):
    p = simple_jobs(4)
    assert main(["run", str(p), *EMU]) == 0
    first = _started(capsys.readouterr().err)
    assert main(["run", str(p), *EMU]) == 0
    err = capsys.readouterr().err
    assert f"resuming job '{first}'" in err
    # the same bytes at another path are another job (identity is the resolved path and the content)
    (tmp_path / "sub").mkdir()
    copy = tmp_path / "sub" / p.name
    copy.write_bytes(p.read_bytes())
    assert main(["run", str(copy), *EMU]) == 0
    assert _started(capsys.readouterr().err) != first
    # an explicit --job names the store and `status NAME` finds it
    assert main(["run", str(p), *EMU, "--job", "nightly", "--quiet"]) == 0
    assert Path(".flextier/nightly.db").exists()
    assert main(["status", "nightly"]) == 0
    assert "4/4 done" in capsys.readouterr().out
    assert main(["run", str(p), *EMU, "--job", "../escape"]) == 2
    assert "--job" in capsys.readouterr().err


def test_empty_input_refused_unless_allow_empty(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    rc = main(["run", "empty.jsonl", *EMU])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "nothing to run" in err[0] and "--allow-empty" in err[0]
    assert not list(Path(".flextier").glob("*.db")) and not list(Path(".").glob("*.results.jsonl"))
    assert main(["run", "empty.jsonl", *EMU, "--allow-empty", "--quiet"]) == 0


def test_resume_with_emulate_keeps_the_time_scale(simple_jobs, capsys):
    p = simple_jobs(40)
    assert main(["run", str(p), *EMU, "--max-tokens", "200", "--max-cost", "0.003", "--quiet"]) == 3
    capsys.readouterr()
    name = next(Path(".flextier").glob("jobs-*.db")).stem
    # before: `resume --emulate X` ran at x1 (a 40-item job then took minutes of wall time)
    assert main(["resume", name, "--emulate", "calm", "--max-cost", "1"]) == 0
    err = capsys.readouterr().err
    assert "(calm, x3000 time)" in err, err


def test_store_named_by_an_older_flextier_resumes(simple_jobs, capsys):
    """A job an older flextier started as `.flextier/<stem>.db` (same file, same content) is resumed, not
    started again (which would send and pay for every item twice)."""
    p = simple_jobs(3)
    assert main(["run", str(p), *EMU, "--job", "jobs", "--quiet"]) == 0  # the old naming: the bare stem
    assert main(["run", str(p), *EMU]) == 0
    assert "resuming job 'jobs'" in capsys.readouterr().err
    assert [x.name for x in Path(".flextier").glob("*.db")] == ["jobs.db"]


def test_changed_file_is_a_new_job_and_the_old_one_still_resumes(simple_jobs, write_jsonl, capsys):
    p = simple_jobs(30)
    assert main(["run", str(p), *EMU, "--max-tokens", "200", "--max-cost", "0.003", "--quiet"]) == 3
    old = next(Path(".flextier").glob("jobs-*.db")).stem
    write_jsonl([{"id": "new", "prompt": "x"}])  # the file changes at the same path
    capsys.readouterr()
    assert main(["run", str(p), *EMU]) == 0
    err = capsys.readouterr().err
    assert f"changed since job '{old}' ran from it" in err and f"flextier resume {old}" in err
    assert _started(err) != old
    # the old job resumes from its store, whatever the file holds now
    assert main(["resume", old, "--max-cost", "1", "--quiet"]) == 0
    assert main(["status", old, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["done"] == 30


def test_other_prompt_template_on_the_same_file_is_refused(tmp_path, capsys):
    (tmp_path / "rows.csv").write_text("id,city\nr1,Paris\nr2,Lima\n")
    assert main(["run", "rows.csv", *EMU, "--prompt-template", "One fact about {city}.", "--quiet"]) == 0
    rc = main(["run", "rows.csv", *EMU, "--prompt-template", "Two facts about {city}.", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--prompt-template" in err[0] and "--job NEW_NAME" in err[0]
