"""Each provider's batch API end to end: the official SDK (boto3 + moto S3 for Bedrock) against
the emulator — submit, poll, collect, a per-line error, expiry with partial output, cancel."""
from __future__ import annotations

from decimal import Decimal

import pytest

from flextier.cost import price_usage

from .conftest import PROVIDERS, batch_rows, entry, ledger_cost, make_items, set_batch_knobs, wait_terminal


@pytest.mark.parametrize("provider", PROVIDERS)
def test_submit_poll_collect(emu, backend_for, provider):
    be = backend_for(emu, provider)
    e = entry(provider)
    items = make_items(e, 8)
    h = be.submit(items, "t1")
    assert h.remote_id and h.item_ids == [i.item_id for i in items]
    st = wait_terminal(be, h)
    assert st.state == "completed"
    res = {r.item_id: r for r in be.collect(h)}
    assert set(res) == {i.item_id for i in items}
    assert all(r.ok and r.tier == "batch" and r.usage and r.usage.output_tokens > 0 and r.text for r in res.values())
    # the emulator billed exactly these lines, at the batch price
    billed = [r for r in batch_rows(emu, e.provider) if r["served_tier"] == "batch"]
    assert sorted(r["item"] for r in billed) == sorted(i.item_id for i in items)
    client_cost = sum(price_usage(r.usage, e, "batch").cost for r in res.values())
    assert Decimal(str(ledger_cost(billed))).quantize(Decimal("1e-9")) == client_cost.quantize(Decimal("1e-9"))
    std = sum(price_usage(r.usage, e, "standard").cost for r in res.values())
    assert client_cost * 2 == std


@pytest.mark.parametrize("provider", PROVIDERS)
def test_per_line_error(emu, backend_for, provider):
    set_batch_knobs(emu, fail_keys="i2")
    be = backend_for(emu, provider)
    h = be.submit(make_items(entry(provider), 5), "t2")
    assert wait_terminal(be, h).state == "completed"
    res = {r.item_id: r for r in be.collect(h)}
    assert not res["i2"].ok and res["i2"].error["kind"] == "error" and res["i2"].retryable
    assert all(res[f"i{k}"].ok for k in (0, 1, 3, 4))
    row = [r for r in batch_rows(emu) if r["item"] == "i2"]
    assert row and row[0]["cost"] == "0" and row[0]["served_tier"] is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expiry_keeps_partial_output(emu, backend_for, provider):
    set_batch_knobs(emu, stall_at=0.5, window_s=1800)
    be = backend_for(emu, provider)
    h = be.submit(make_items(entry(provider), 10), "t3")
    assert wait_terminal(be, h).state == "expired"
    res = list(be.collect(h))
    ok = [r for r in res if r.ok]
    expired = [r for r in res if not r.ok]
    assert len(ok) == 5 and len(expired) == 5 and len(res) == 10
    assert all(r.error["kind"] == "expired" and r.retryable for r in expired)
    billed = [r for r in batch_rows(emu) if r["served_tier"] == "batch"]
    assert sorted(r["item"] for r in billed) == sorted(r.item_id for r in ok)
    assert all(r["cost"] == "0" for r in batch_rows(emu) if r["outcome"] == "batch_expired")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel(emu, backend_for, provider):
    set_batch_knobs(emu, parallelism=0.0)          # no capacity: nothing can run before the cancel
    be = backend_for(emu, provider)
    h = be.submit(make_items(entry(provider), 4), "t4")
    assert not be.poll(h).terminal
    be.cancel(h)
    assert wait_terminal(be, h).state == "cancelled"
    res = list(be.collect(h))
    assert len(res) == 4 and all(not r.ok and r.error["kind"] == "cancelled" for r in res)
    assert ledger_cost(batch_rows(emu)) == 0
    be.cancel(h)                                     # cancelling an ended batch is not an error


@pytest.mark.parametrize("provider", ["openai", "gemini", "bedrock"])
def test_find_recovers_a_batch_by_local_id(emu, backend_for, provider):
    be = backend_for(emu, provider)
    h = be.submit(make_items(entry(provider), 2), "lost-1")
    found = be.find("lost-1", h.item_ids)
    assert found is not None and found.remote_id == h.remote_id
    assert be.find("never-submitted", []) is None


def test_openai_batch_failing_validation(emu, backend_for):
    import io
    import json

    be = backend_for(emu, "openai")
    line = {"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {"model": "gpt-5.4-mini", "input": "x"}}
    f = be.client.files.create(file=("x.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    b = be.client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    from flextier.batch.base import BatchHandle
    st = wait_terminal(be, BatchHandle("openai", b.id, ["a"], "openai/gpt-5.4-mini"))
    assert st.state == "failed" and "does not match" in (st.message or "")


def test_bedrock_job_reads_and_writes_s3(emu, backend_for, s3_endpoint):
    import json

    import boto3

    be = backend_for(emu, "bedrock")
    h = be.submit(make_items(entry("bedrock"), 3), "s3check")
    assert wait_terminal(be, h).state == "completed"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="t",
                      aws_secret_access_key="t")
    job_id = h.remote_id.rsplit("/", 1)[1]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="flextier-batch-test",
                                                 Prefix=f"flextier/s3check/out/{job_id}/")["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["input.jsonl.out", "manifest.json.out"]
    manifest = json.loads(s3.get_object(Bucket="flextier-batch-test", Key=[k for k in keys if "manifest" in k][0])
                          ["Body"].read())
    assert manifest["successRecordCount"] == 3 and manifest["totalRecordCount"] == 3


def test_gemini_file_batch_returns_a_jsonl_responses_file(emu, backend_for, tmp_path):
    """The JSONL path: a file uploaded through the File API, results in ``responsesFile``."""
    import json

    be = backend_for(emu, "gemini")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"key": f"k{i}", "request": {"contents": [{"parts": [{"text": f"q{i}"}],
                                                                                    "role": "user"}]}})
                             for i in range(3)))
    f = be.client.files.upload(file=str(src), config={"mime_type": "application/jsonl"})
    job = be.client.batches.create(model="gemini-3-flash-preview", src=f.name)
    from flextier.batch.base import BatchHandle
    h = BatchHandle("gemini", job.name, ["k0", "k1", "k2"], "gemini/gemini-3-flash-preview")
    assert wait_terminal(be, h).state == "completed"
    assert be.client.batches.get(name=job.name).dest.file_name
    res = list(be.collect(h))
    assert sorted(r.item_id for r in res if r.ok) == ["k0", "k1", "k2"]
