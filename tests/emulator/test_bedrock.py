"""Bedrock runtime emulation through ``boto3`` (Converse and ConverseStream)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from emu_tokens import cached_len, o200k, shared_prefix
from flextier.emulator.clients import bedrock_client

MSG = [{"role": "user", "content": [{"text": "hello bedrock"}]}]


def test_converse_flex_success(calm):
    c = bedrock_client(calm)
    r = c.converse(modelId="us.amazon.nova-pro-v1:0", messages=MSG, serviceTier={"type": "flex"},
                   inferenceConfig={"maxTokens": 300})
    assert r["serviceTier"] == {"type": "flex"}
    assert r["output"]["message"]["content"][0]["text"]
    u = r["usage"]
    assert u["inputTokens"] == o200k("hello bedrock") and u["totalTokens"] == u["inputTokens"] + u["outputTokens"]
    row, = calm.ledger()
    assert (row["model"], row["served_tier"], row["outcome"]) == ("bedrock/us.amazon.nova-pro-v1:0", "flex", "ok")
    assert row["output_tokens"] == u["outputTokens"]


@pytest.mark.parametrize("frac,code,status", [(0.0, "ThrottlingException", 429),
                                               (1.0, "ServiceUnavailableException", 503)])
def test_shed_flex_raises_client_error(emulator, frac, code, status):
    emu = emulator("outage", bedrock_503_fraction=frac)
    with pytest.raises(ClientError) as ei:
        bedrock_client(emu).converse(modelId="us.amazon.nova-pro-v1:0", messages=MSG,
                                     serviceTier={"type": "flex"})
    assert ei.value.response["Error"]["Code"] == code
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert emu.ledger()[0]["outcome"] == "shed"


@pytest.mark.parametrize("model", ["us.anthropic.claude-sonnet-4-6", "us.amazon.nova-lite-v1:0"])
def test_flex_on_unsupported_model_is_validation_exception(calm, model):
    with pytest.raises(ClientError) as ei:
        bedrock_client(calm).converse(modelId=model, messages=MSG, serviceTier={"type": "flex"})
    assert ei.value.response["Error"]["Code"] == "ValidationException"
    assert calm.ledger()[0]["outcome"] == "error"


def test_converse_stream_eventstream(calm):
    c = bedrock_client(calm)
    r = c.converse_stream(modelId="us.amazon.nova-pro-v1:0", messages=MSG, serviceTier={"type": "flex"})
    events = list(r["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata" and "contentBlockDelta" in kinds
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    meta = events[-1]["metadata"]
    assert meta["serviceTier"] == {"type": "flex"} and meta["usage"]["outputTokens"] == len(text.split())
    assert calm.ledger()[0]["outcome"] == "ok"


def test_cache_point_reports_cache_reads(calm):
    c = bedrock_client(calm)
    long = " ".join(f"t{i}" for i in range(1100))
    msgs = [{"role": "user", "content": [{"text": long}, {"cachePoint": {"type": "default"}}]}]
    c.converse(modelId="us.amazon.nova-pro-v1:0", messages=msgs)
    r = c.converse(modelId="us.amazon.nova-pro-v1:0", messages=msgs)
    n = o200k(long)
    hit = cached_len(n)
    assert hit >= 1024 and r["usage"]["cacheReadInputTokens"] == hit and r["usage"]["inputTokens"] == n - hit
    assert calm.ledger()[1]["input_tokens"] == n and calm.ledger()[1]["cached_tokens"] == hit
