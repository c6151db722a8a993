"""``flextier run`` on Bedrock's batch lane, through the real CLI entry (:func:`flextier.cli.main`,
the Typer app) against the emulator on loopback, with the job's S3 bucket on moto's server.

Bedrock batch jobs read their input from S3 and write their output there, as a service role:
``--batch-s3-uri`` and ``--batch-role-arn``. The CLI's own S3 client follows boto3's settings
(``AWS_ENDPOINT_URL_S3`` points it at moto here); the emulator reads and writes the same bucket.
Covered: ``--tier batch`` and ``--tier auto`` with a deadline long enough for batch, end to end
(results file, store, the objects on S3, client ledger = emulator ledger); missing or malformed
batch flags, and a job under Bedrock's 100-record minimum, are one-line errors with exit 2 and
nothing sent.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from flextier.cli import main
from flextier.emulator.batch_core import batch_engine
from flextier.jobs.report import build_report
from flextier.jobs.store import JobStore

from .conftest import BUCKET, MODELS

MODEL = MODELS["bedrock"]
ROLE = "arn:aws:iam::123456789012:role/flextier-batch"
N = 120                     # Bedrock's minimum is 100 records per batch job


@pytest.fixture(autouse=True)
def _aws(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def _jobs(tmp_path: Path, n: int = N) -> Path:
    p = tmp_path / "jobs.jsonl"
    p.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Say one thing about {i}."}) + "\n"
                         for i in range(n)))
    return p


def _argv(tmp_path: Path, emu: Any, *extra: str, n: int = N, prefix: str = "runs/job1") -> list[str]:
    return ["run", str(_jobs(tmp_path, n)), "--model", MODEL, "--base-url", emu.bedrock_endpoint_url,
            "--job", "job", "--store", str(tmp_path / "job.db"), "--out", str(tmp_path / "job.out.jsonl"),
            "--max-tokens", "40", "--batch-s3-uri", f"s3://{BUCKET}/{prefix}", "--batch-role-arn", ROLE, *extra]


def _billed(st: JobStore) -> Decimal:
    return sum((Decimal(c) for (c,) in st.db.execute("SELECT cost FROM ledger WHERE kind IN ('billed', 'duplicate')")
                if c is not None), Decimal(0))


def _emu_billed(emu: Any) -> Decimal:
    return sum((Decimal(str(r["cost"])) for r in emu.ledger() if r.get("cost") is not None), Decimal(0))


@pytest.mark.parametrize("flags, mode", [(["--tier", "batch"], "batch-only"),
                                         (["--deadline", "30h"], "batch")])   # auto; Claude has no flex
def test_bedrock_batch_job_end_to_end(emulator, s3_endpoint, tmp_path, capsys, flags, mode):
    emu = emulator()
    prefix = f"runs/{mode}"
    rc = main(_argv(tmp_path, emu, *flags, prefix=prefix))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "served: batch 120 (100%)" in out and "Traceback" not in err
    # results file: every item once, answered by the batch
    lines = [json.loads(x) for x in (tmp_path / "job.out.jsonl").read_text().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"q{i}" for i in range(N))
    assert all(x["error"] is None and x["flextier"]["tier"] == "batch" and x["flextier"]["batch"] for x in lines)
    assert all(x["response"]["body"]["output"]["message"]["content"][0]["text"] for x in lines)
    # store: all done on batch, no open batch, the first decision was the batch lane
    with JobStore(tmp_path / "job.db", create=False) as st:
        assert st.counts()["done"] == N and st.tier_counts() == {"batch": N}
        assert not st.open_batches()
        assert [d["mode"] for _, k, d in st.events() if k == "mode"][0] == mode
        (remote,) = [r for (r,) in st.db.execute("SELECT remote_id FROM batches")]
        # the client's bill is the emulator's, to the cent and below
        assert _billed(st) == _emu_billed(emu) > 0
        assert len(emu.ledger()) == N and {r["served_tier"] for r in emu.ledger()} == {"batch"}
        assert build_report(st)["saved_pct"] == pytest.approx(50.0)
    # one Bedrock job, its input and output on S3 under the given prefix
    jobs = [j for j in batch_engine(emu.engine).jobs.values() if j.provider == "bedrock"]
    assert len(jobs) == 1 and jobs[0].state == "completed" and remote.endswith(jobs[0].id)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"]]
    assert any(k.endswith("/input.jsonl") for k in keys) and any(k.endswith("/input.jsonl.out") for k in keys)


@pytest.mark.parametrize("drop, replace, flag", [
    (("--batch-s3-uri", "--batch-role-arn"), {}, "--tier"),          # --tier batch and neither flag
    (("--batch-s3-uri",), {}, "--batch-s3-uri"),
    (("--batch-role-arn",), {}, "--batch-role-arn"),
    ((), {"--batch-s3-uri": "my-bucket/prefix"}, "--batch-s3-uri"),
    ((), {"--batch-role-arn": "flextier-batch"}, "--batch-role-arn"),
])
def test_bedrock_batch_flags_missing_or_malformed_is_one_line_exit_2(emulator, tmp_path, capsys, drop, replace,
                                                                     flag):
    emu = emulator()
    argv = _argv(tmp_path, emu, "--tier", "batch")
    for name in drop:
        i = argv.index(name)
        del argv[i:i + 2]
    for name, value in replace.items():
        argv[argv.index(name) + 1] = value
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("flextier: error:") and flag in err[0], err
    assert "--batch-s3-uri" in err[0] or "--batch-role-arn" in err[0]
    assert emu.ledger() == [] and not batch_engine(emu.engine).jobs
    assert not (tmp_path / "job.db").exists()                      # checked before anything was created


def test_bedrock_tier_batch_under_the_minimum_is_one_line_exit_2(emulator, tmp_path, capsys):
    emu = emulator()
    rc = main(_argv(tmp_path, emu, "--tier", "batch", n=20))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("flextier: error: --tier:") and "at least 100" in err[0], err
    assert emu.ledger() == [] and not batch_engine(emu.engine).jobs   # nothing sent, not even on standard
