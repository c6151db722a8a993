"""Offline means offline (issue 11 item 4): a Bedrock batch rehearsal under ``--emulate`` never
leaves loopback, and no client flextier builds while emulating may point anywhere else.

Before the fix, ``flextier run big.jsonl --model bedrock/nova-pro --emulate weekday --tier batch
--batch-s3-uri s3://bucket/prefix --batch-role-arn ...`` built its S3 client from boto3's defaults
and tried ``https://bucket.s3.amazonaws.com/...`` (then finished quietly on flex). Now the emulator
serves S3 itself (``/s3``, :mod:`flextier.emulator.s3`) and the job's batch reads and writes it.

The suite's loopback guard (tests/conftest.py) records every refused connection *and* name lookup
in ``BLOCKED``, so an attempt swallowed by a retry loop still fails these tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from flextier._loopback import OfflineViolation, is_loopback_url, offline_active
from flextier.catalog import default_catalog
from flextier.cli import main
from flextier.emulator import serve
from flextier.emulator.batch_core import batch_engine
from flextier.jobs.batching import make_batch_backend
from flextier.jobs.store import JobStore
from flextier.providers import get_adapter

from .conftest import entry, make_items, set_batch_knobs, wait_terminal

ROLE = "arn:aws:iam::123456789012:role/x"
N = 120                      # Bedrock's minimum is 100 records per batch job


@pytest.fixture(autouse=True)
def _no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's shell: no AWS settings at all (boto3's defaults are real AWS)."""
    monkeypatch.chdir(tmp_path)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL",
              "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def _big(tmp_path: Path, n: int = N) -> Path:
    p = tmp_path / "big.jsonl"
    p.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Say one thing about {i}."}) + "\n"
                         for i in range(n)))
    return p


def test_emulate_bedrock_batch_rehearsal_is_complete_offline(tmp_path, capsys, blocked_network):
    """The issue's exact command (plus a time scale so the emulated hour passes in seconds)."""
    _big(tmp_path)
    before = len(blocked_network)
    rc = main(["run", "big.jsonl", "--model", "bedrock/nova-pro", "--emulate", "weekday", "--tier", "batch",
               "--batch-s3-uri", "s3://bucket/prefix", "--batch-role-arn", ROLE, "--time-scale", "3600"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert blocked_network[before:] == []             # not one non-loopback connection or lookup
    assert "amazonaws" not in err and "Traceback" not in err
    assert "served: batch 120 (100%)" in out
    (db,) = (tmp_path / ".flextier").glob("big-*.db")  # the job is named big-<hash of path and content>
    with JobStore(db, create=False) as st:
        assert st.counts()["done"] == N and st.tier_counts() == {"batch": N}
    lines = [json.loads(x) for x in (tmp_path / f"{db.stem}.results.jsonl").read_text().splitlines()]
    assert len(lines) == N and all(x["flextier"]["tier"] == "batch" and x["error"] is None for x in lines)


def test_emulator_s3_serves_the_batch_flow_through_boto3(tmp_path):
    """The batch flow's S3 calls against the emulator's own S3, and the batch job reads what was put."""
    with serve(profile="calm", time_scale=3600.0, start="2026-11-24T02:00") as emu:
        set_batch_knobs(emu, bedrock_min_records=100)
        s3 = boto3.client("s3", endpoint_url=emu.s3_endpoint_url, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x", config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket="rehearsal")
        s3.head_bucket(Bucket="rehearsal")
        e = entry("bedrock/nova-pro")
        backend = make_batch_backend(e, base_url=emu.bedrock_endpoint_url, api_key=None,
                                     s3_uri="s3://rehearsal/runs", role_arn=ROLE,
                                     s3_endpoint_url=emu.s3_endpoint_url)
        items = make_items(e, 100)
        handle = backend.submit(items, "local1")
        assert wait_terminal(backend, handle).state == "completed"
        results = list(backend.collect(handle))
        assert sorted(r.item_id for r in results) == sorted(it.item_id for it in items)
        assert all(r.ok and r.text for r in results)
        keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(
            Bucket="rehearsal", Prefix="runs/", PaginationConfig={"PageSize": 1}) for o in p.get("Contents", [])]
        job_id = handle.remote_id.rsplit("/", 1)[-1]
        assert keys == sorted(["runs/local1/input.jsonl", f"runs/local1/out/{job_id}/input.jsonl.out",
                               f"runs/local1/out/{job_id}/manifest.json.out"])
        manifest = json.loads(s3.get_object(Bucket="rehearsal",
                                            Key=f"runs/local1/out/{job_id}/manifest.json.out")["Body"].read())
        assert manifest["successRecordCount"] == 100
        assert [j.state for j in batch_engine(emu.engine).jobs.values()] == ["completed"]


def _s3_script(s3) -> list:
    """S3 calls whose answers must match between moto (a real-S3 stand-in) and the emulator."""
    out: list = []
    s3.create_bucket(Bucket="compat-bucket")
    s3.head_bucket(Bucket="compat-bucket")
    for k in ("a/1.jsonl", "a/2.jsonl", "a/sub/3.jsonl", "b c+d%&<.txt", "zz", "ü/ключ"):
        s3.put_object(Bucket="compat-bucket", Key=k, Body=("body of " + k).encode())
    for key in ("b c+d%&<.txt", "ü/ключ"):
        r = s3.get_object(Bucket="compat-bucket", Key=key)
        out.append((r["Body"].read(), r["ContentLength"], r["ETag"]))
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="compat-bucket", PaginationConfig={"PageSize": 2})
    out.append([[(o["Key"], o["Size"], o["ETag"]) for o in p.get("Contents", [])] for p in pages])
    r = s3.list_objects_v2(Bucket="compat-bucket", Prefix="a/", Delimiter="/")
    out.append(([o["Key"] for o in r["Contents"]], r["CommonPrefixes"], r["KeyCount"], r["IsTruncated"]))
    out.append(s3.list_objects_v2(Bucket="compat-bucket", Prefix="nothing/")["KeyCount"])
    out.append(s3.list_objects_v2(Bucket="compat-bucket", StartAfter="a/sub/3.jsonl")["KeyCount"])
    for call in (lambda: s3.get_object(Bucket="compat-bucket", Key="missing"),
                 lambda: s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x"),
                 lambda: s3.list_objects_v2(Bucket="no-such-bucket"),
                 lambda: s3.head_bucket(Bucket="no-such-bucket")):
        try:
            call()
            out.append("no error")
        except s3.exceptions.ClientError as exc:
            out.append((exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]))
    s3.delete_object(Bucket="compat-bucket", Key="zz")
    out.append(s3.list_objects_v2(Bucket="compat-bucket")["KeyCount"])
    return out


def test_emulator_s3_answers_like_moto(s3_endpoint):
    """Real-S3 compatibility: the same boto3 calls give the same answers from moto and the emulator."""
    kw = dict(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
              config=Config(s3={"addressing_style": "path"}))
    moto = _s3_script(boto3.client("s3", endpoint_url=s3_endpoint, **kw))
    with serve() as emu:
        ours = _s3_script(boto3.client("s3", endpoint_url=emu.s3_endpoint_url, **kw))
    assert ours == moto


# -- the guard --------------------------------------------------------------------------------------

def test_loopback_names():
    assert all(is_loopback_url(u) for u in ("http://127.0.0.1:1", "http://localhost", "http://[::1]:8/x",
                                            "http://127.9.9.9", "https://LOCALHOST:443"))
    assert not any(is_loopback_url(u) for u in (None, "", "https://bucket.s3.amazonaws.com", "http://10.0.0.1",
                                                "http://127.0.0.1.nip.io", "http://[::2]", "http://0.0.0.0"))


@pytest.mark.parametrize("model", ["openai/gpt-5.4-mini", "gemini/gemini-3-flash-preview",
                                   "bedrock/nova-pro", "anthropic/claude-haiku-4-5"])
@pytest.mark.parametrize("url", [None, "https://api.example.com/v1"])
def test_serve_refuses_non_loopback_clients(model, url):
    e = default_catalog().resolve(model)
    with serve() as emu:
        with pytest.raises(OfflineViolation, match="nothing was sent"):
            get_adapter(e, base_url=url, api_key="k")
        get_adapter(e, base_url=emu.base_urls()[e.provider], api_key="k")      # loopback: fine
    if not offline_active():  # another test module's session-wide emulator keeps the whole process offline
        get_adapter(e, base_url="https://api.example.com/v1", api_key="k")   # no emulator: not our business


@pytest.mark.parametrize("model", ["openai/gpt-5.4-mini", "anthropic/claude-haiku-4-5",
                                   "gemini/gemini-3-flash-preview"])
def test_serve_refuses_non_loopback_batch_clients(model):
    e = default_catalog().resolve(model)
    with serve():
        with pytest.raises(OfflineViolation):
            make_batch_backend(e, base_url=None, api_key="k")


def test_serve_refuses_bedrock_batch_on_real_s3_or_control_plane(monkeypatch):
    e = default_catalog().resolve("bedrock/nova-pro")
    kw = dict(api_key=None, s3_uri="s3://bucket/prefix", role_arn=ROLE)
    with serve() as emu:
        with pytest.raises(OfflineViolation, match="S3 client for https://s3.amazonaws.com"):
            make_batch_backend(e, base_url=emu.bedrock_endpoint_url, **kw)          # boto3's default S3
        with pytest.raises(OfflineViolation, match="Bedrock control plane"):
            make_batch_backend(e, base_url=None, s3_endpoint_url=emu.s3_endpoint_url, **kw)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.eu-west-1.example.com")
        with pytest.raises(OfflineViolation, match="example.com"):
            make_batch_backend(e, base_url=emu.bedrock_endpoint_url, **kw)
        assert make_batch_backend(e, base_url=emu.bedrock_endpoint_url, s3_endpoint_url=emu.s3_endpoint_url,
                                  **kw) is not None


def test_cli_against_an_emulator_refuses_a_non_loopback_s3_in_one_line(tmp_path, capsys, monkeypatch,
                                                                       blocked_network):
    """``--base-url`` at a flextier emulator is a rehearsal too: an S3 elsewhere is refused, exit 2,
    nothing sent (and without the guard it would have been tried: AWS_ENDPOINT_URL_S3 wins)."""
    _big(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://10.11.12.13:9000")
    before = len(blocked_network)
    with serve(time_scale=3600.0) as emu:
        rc = main(["run", "big.jsonl", "--model", "bedrock/nova-pro", "--base-url", emu.bedrock_endpoint_url,
                   "--tier", "batch", "--batch-s3-uri", "s3://bucket/prefix", "--batch-role-arn", ROLE])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2
        assert err[-1].startswith("flextier: error: --base-url") and "10.11.12.13" in err[-1], err
        assert emu.ledger() == [] and not batch_engine(emu.engine).jobs
    assert blocked_network[before:] == []
