"""`flextier run/resume/status/report` in-process: bad input is one line and exit 2, nothing sent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flextier.cli import main

MODEL = "openai/gpt-5.4-mini"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jobs.jsonl"


def _out(stem: str) -> Path:
    """The default results file of the one job run from a file with this stem (``<stem>-<hash>``)."""
    found = list(Path(".").glob(f"{stem}-*.results.jsonl"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_invalid_input_nothing_sent(emulator, write_jsonl, capsys):
    emu = emulator("calm")
    p = write_jsonl([{"id": "a", "prompt": "fine"}, b'{"id": "b", "prompt": ', {"id": "c", "messages": "x"},
                     {"id": "a", "prompt": "dup"}])
    rc = main(["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{p}:2: " in err and "malformed JSON" in err
    assert f"{p}:3: messages: " in err
    assert f"{p}:4: id: duplicate id 'a'" in err
    assert "Traceback" not in err and "nothing was sent" in err
    assert emu.ledger() == []
    # with --skip-invalid the valid line runs and the invalid ones are counted
    rc = main(["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--skip-invalid", "--quiet",
               "--job", "skip"])
    assert rc == 0
    assert [json.loads(x)["custom_id"] for x in open("skip.results.jsonl")] == ["a"]
    assert main(["status", "skip"]) == 0
    assert "1/1 done" in capsys.readouterr().out
    # --ray reads the file by the same path: the same lines, exit 2, before any cluster is reached
    rc = main(["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--quiet", "--ray", "auto",
               "--job", "onray"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{p}:4: id: duplicate id 'a'" in err and "Traceback" not in err
    assert len(emu.ledger()) == 1 and not Path(".flextier/ray/onray").exists()


@pytest.mark.parametrize("args,field", [
    (["--deadline", "2020-01-01T00:00"], "--deadline"),
    (["--deadline", "soon"], "--deadline"),
    (["--tier", "cheap"], "--tier"),
    (["--tier", "batch", "--max-cost", "5", "--max-tokens", "10"], "--tier"),  # a batch cannot honour a cap
    (["--concurrency", "0"], "--concurrency"),
    (["--max-cost", "lots"], "--max-cost"),
    (["--emulate", "sunny"], "--emulate"),
    (["--model", "openai/gpt-9-ultra"], "--model"),
    (["--drain-timeout", "-1"], "--drain-timeout"),
    (["--ray", "auto", "--tier", "batch"], "--ray"),   # checked before any cluster is reached
    (["--ray", "auto", "--not-before", "1h"], "--ray"),
    (["--ray-workers", "4"], "--ray-workers"),          # only with --ray
    (["--ray", "auto", "--ray-workers", "0"], "--ray-workers"),
])
def test_bad_flags_one_line_exit_2(simple_jobs, capsys, args, field):
    p = simple_jobs(3)
    argv = ["run", str(p), "--model", MODEL, "--emulate", "calm", *args]
    if args[0] == "--model":
        argv = ["run", str(p), "--emulate", "calm", *args]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("flextier: error:") and field in err[0]


def test_missing_key_says_what_to_do(simple_jobs, capsys):
    rc = main(["run", str(simple_jobs(2)), "--model", MODEL])
    err = capsys.readouterr().err
    assert rc == 2 and "OPENAI_API_KEY" in err and "--emulate" in err


def test_missing_file(capsys):
    assert main(["run", "nope.jsonl", "--model", MODEL, "--emulate", "calm"]) == 2
    assert "not found" in capsys.readouterr().err


def test_example_job_end_to_end_with_report(capsys, tmp_path):
    rc = main(["run", str(EXAMPLE), "--model", MODEL, "--emulate", "weekday", "--deadline", "2h",
               "--time-scale", "3000", "--html", "report.html"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "50 done" in cap.out and "saved" in cap.out and "deadline" in cap.out and "met" in cap.out
    assert "emulator ledger" in cap.out
    lines = [json.loads(x) for x in open(_out("jobs"))]
    assert len(lines) == 50 and all(x["error"] is None for x in lines)
    html = Path("report.html").read_text()
    assert html.count("<svg") == 3 and "<script" not in html
    assert main(["report", "jobs", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"]["done"] == 50 and rep["deadline_met"] is True
    # the same command again resumes: nothing is sent twice, the output is unchanged
    before = _out("jobs").read_bytes()
    rc = main(["run", str(EXAMPLE), "--model", MODEL, "--emulate", "weekday", "--deadline", "2h",
               "--time-scale", "3000", "--quiet"])
    assert rc == 0 and _out("jobs").read_bytes() == before
    assert main(["status", "jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["done"] == 50


def test_changed_input_refused(simple_jobs, write_jsonl, capsys):
    """With an explicit --job name, a store refuses an input whose content changed."""
    p = simple_jobs(3)
    base = ["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "2000", "--quiet", "--job", "named"]
    assert main(base) == 0
    write_jsonl([{"id": "other", "prompt": "x"}])
    assert main(base) == 2
    assert "changed" in capsys.readouterr().err


def test_csv_with_template(tmp_path, capsys):
    p = tmp_path / "rows.csv"
    p.write_text("id,city\nr1,Paris\nr2,Lima\n", encoding="utf-8")
    rc = main(["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "2000", "--quiet",
               "--prompt-template", "One fact about {city}.", "--ordered"])
    assert rc == 0
    assert [json.loads(x)["custom_id"] for x in open(_out("rows"))] == ["r1", "r2"]


def test_secrets_never_written(emulator, simple_jobs, monkeypatch, capsys, tmp_path):
    secret = "sk-planted-SECRET-a1b2c3d4e5"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    emu = emulator("chaos", time_scale=3000)
    p = simple_jobs(20)
    url = emu.openai_base_url.replace("http://", "http://user:" + secret + "@")
    rc = main(["run", str(p), "--model", MODEL, "--base-url", url, "--html", "r.html", "--deadline", "1h"])
    cap = capsys.readouterr()
    assert rc in (0, 1)
    assert main(["report", "jobs"]) == 0
    cap2 = capsys.readouterr()
    blobs = [cap.out, cap.err, cap2.out, cap2.err]
    for f in tmp_path.rglob("*"):
        if f.is_file():
            blobs.append(f.read_bytes().decode("utf-8", "replace"))
    assert all(secret not in b for b in blobs)


def test_budget_pause_then_resume_with_higher_cap(simple_jobs, capsys):
    p = simple_jobs(40)
    base = ["--model", MODEL, "--emulate", "calm", "--time-scale", "3000", "--max-tokens", "200"]
    rc = main(["run", str(p), *base, "--max-cost", "0.003", "--quiet"])
    assert rc == 3
    assert "spending cap" in capsys.readouterr().err
    assert main(["status", "jobs", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["state"] == "paused" and 0 < st["counts"]["done"] < 40
    from decimal import Decimal
    assert Decimal(st["spent"]) <= Decimal("0.003")
    assert main(["resume", "jobs", "--max-cost", "1", "--quiet"]) == 0
    ids = [json.loads(x)["custom_id"] for x in open(_out("jobs"))]
    assert sorted(ids) == sorted(f"q{i}" for i in range(40))


@pytest.mark.parametrize("tier", ["standard", "flex"])
def test_forced_tiers(simple_jobs, tier):
    p = simple_jobs(6)
    rc = main(["run", str(p), "--model", MODEL, "--emulate", "weekday", "--time-scale", "3000", "--tier", tier,
               "--deadline", "1h", "--quiet"])
    assert rc == 0
    assert {json.loads(x)["flextier"]["tier"] for x in open(_out("jobs"))} == {tier}


def test_retry_failed_rewrites_output_without_duplicates(write_jsonl):
    p = write_jsonl([{"id": "good", "prompt": "hi"}, {"id": "bad", "prompt": "hi", "params": {"max_tokens": -1}}])
    base = ["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "3000", "--quiet"]
    assert main(base) == 1  # finished, one item failed
    first = {json.loads(x)["custom_id"]: x for x in open(_out("jobs"))}
    assert json.loads(first["bad"])["error"] is not None
    assert main([*base, "--retry-failed"]) == 1  # still failing, but sent again and not duplicated
    ids = [json.loads(x)["custom_id"] for x in open(_out("jobs"))]
    assert sorted(ids) == ["bad", "good"]
