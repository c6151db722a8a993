"""Bedrock InvokeModel / InvokeModelWithResponseStream / CountTokens through boto3 (issue 13 item 4).

botocore 1.43.11's bedrock-runtime model has ``serviceTier`` on both invoke operations,
sent and returned as the ``X-Amzn-Bedrock-Service-Tier`` header, so the SDK's own
parameter is used (no event hooks needed)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from emu_tokens import o200k
from flextier.catalog import default_catalog
from flextier.cost import Usage, price_usage
from flextier.emulator.clients import bedrock_client

NOVA = "us.amazon.nova-pro-v1:0"
CLAUDE = "us.anthropic.claude-haiku-4-5"


def _nova_body(text: str, max_tokens: int = 60) -> str:
    return json.dumps({"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": text}]}],
                       "inferenceConfig": {"maxTokens": max_tokens}})


def _claude_body(text: str, max_tokens: int = 40) -> str:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": text}]})


def test_serviceTier_is_a_parameter_of_the_installed_botocore():
    import boto3
    model = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x",
                         aws_secret_access_key="x").meta.service_model
    for op in ("InvokeModel", "InvokeModelWithResponseStream"):
        member = model.operation_model(op).input_shape.members["serviceTier"]
        assert member.serialization == {"location": "header", "name": "X-Amzn-Bedrock-Service-Tier"}


def test_invoke_model_flex_nova_reports_and_bills_the_served_tier(calm):
    r = bedrock_client(calm).invoke_model(modelId=NOVA, body=_nova_body("hello nova, summarise flex"),
                                          serviceTier="flex")
    assert r["serviceTier"] == "flex"
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-service-tier"] == "flex"
    body = json.loads(r["body"].read())
    assert body["output"]["message"]["content"][0]["text"] and body["stopReason"] in ("end_turn", "max_tokens")
    u = body["usage"]
    assert u["inputTokens"] == o200k("hello nova, summarise flex") and u["outputTokens"] <= 60
    h = r["ResponseMetadata"]["HTTPHeaders"]
    assert int(h["x-amzn-bedrock-input-token-count"]) == u["inputTokens"]
    assert int(h["x-amzn-bedrock-output-token-count"]) == u["outputTokens"]
    row, = calm.ledger()
    assert (row["model"], row["requested_tier"], row["served_tier"], row["outcome"]) == \
        ("bedrock/us.amazon.nova-pro-v1:0", "flex", "flex", "ok")
    flex_cost = price_usage(Usage(u["inputTokens"], 0, u["outputTokens"], 0), default_catalog().resolve(
        "bedrock/nova-pro"), "flex").cost
    std_cost = price_usage(Usage(u["inputTokens"], 0, u["outputTokens"], 0), default_catalog().resolve(
        "bedrock/nova-pro"), "standard").cost
    assert Decimal(row["cost"]) == flex_cost and flex_cost < std_cost


def test_invoke_stream_flex_chunks_are_base64_model_events(calm):
    r = bedrock_client(calm).invoke_model_with_response_stream(modelId=NOVA, body=_nova_body("stream it"),
                                                               serviceTier="flex")
    assert r["serviceTier"] == "flex"
    events = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]     # botocore decoded chunk.bytes
    kinds = [next(k for k in e if k != "amazon-bedrock-invocationMetrics") for e in events]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata" and "contentBlockDelta" in kinds
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == events[-1]["metadata"]["usage"]["outputTokens"] == o200k(text)
    assert metrics["inputTokenCount"] == o200k("stream it")
    row, = calm.ledger()
    assert (row["served_tier"], row["outcome"], row["output_tokens"]) == ("flex", "ok", metrics["outputTokenCount"])


def test_invoke_anthropic_on_bedrock_native_body_and_stream(calm):
    c = bedrock_client(calm)
    r = c.invoke_model(modelId=CLAUDE, body=_claude_body("hello claude on bedrock"))
    assert r["serviceTier"] == "default"
    msg = json.loads(r["body"].read())
    assert msg["type"] == "message" and msg["content"][0]["type"] == "text"
    assert msg["usage"]["input_tokens"] == o200k("hello claude on bedrock") and msg["usage"]["output_tokens"] <= 40
    s = c.invoke_model_with_response_stream(modelId=CLAUDE, body=_claude_body("again"))
    events = [json.loads(e["chunk"]["bytes"]) for e in s["body"]]
    assert [e["type"] for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-1]["type"] == "message_stop" and "amazon-bedrock-invocationMetrics" in events[-1]
    assert [r_["outcome"] for r_ in calm.ledger()] == ["ok", "ok"]


def test_invoke_deepseek_text_completion_body(calm):
    r = bedrock_client(calm).invoke_model(modelId="deepseek.v3-v1:0",
                                          body=json.dumps({"prompt": "Write one line", "max_tokens": 20}),
                                          serviceTier="flex")
    out = json.loads(r["body"].read())
    assert out["choices"][0]["text"] and out["choices"][0]["stop_reason"] in ("stop", "length")
    assert calm.ledger()[0]["served_tier"] == "flex"


def test_invoke_flex_on_a_model_without_flex_is_validation_exception(calm):
    with pytest.raises(ClientError) as ei:
        bedrock_client(calm).invoke_model(modelId=CLAUDE, body=_claude_body("x"), serviceTier="flex")
    assert ei.value.response["Error"]["Code"] == "ValidationException"
    assert calm.ledger()[0]["cost"] == "0"


def test_invoke_body_missing_required_key_is_validation_exception(calm):
    with pytest.raises(ClientError) as ei:
        bedrock_client(calm).invoke_model(modelId=CLAUDE, body=json.dumps({"messages": [{"role": "user",
                                                                                            "content": "x"}]}))
    assert ei.value.response["Error"]["Code"] == "ValidationException"
    assert "anthropic_version" in ei.value.response["Error"]["Message"]


def test_shed_flex_invoke_is_throttling_or_unavailable_and_unbilled(emulator):
    emu = emulator("outage", bedrock_503_fraction=0.0)
    with pytest.raises(ClientError) as ei:
        bedrock_client(emu).invoke_model(modelId=NOVA, body=_nova_body("x"), serviceTier="flex")
    assert ei.value.response["Error"]["Code"] == "ThrottlingException"
    assert emu.ledger()[0]["outcome"] == "shed" and emu.ledger()[0]["cost"] == "0"


def test_count_tokens_equals_what_invoke_and_converse_bill(calm):
    c = bedrock_client(calm)
    text = "How many tokens is this sentence, exactly?"
    n_invoke = c.count_tokens(modelId="anthropic.claude-haiku-4-5",
                              input={"invokeModel": {"body": _claude_body(text)}})["inputTokens"]
    msgs = [{"role": "user", "content": [{"text": text}]}]
    n_conv = c.count_tokens(modelId="anthropic.claude-haiku-4-5", input={"converse": {"messages": msgs}})
    billed = json.loads(c.invoke_model(modelId=CLAUDE, body=_claude_body(text))["body"].read())["usage"]
    conv = c.converse(modelId=CLAUDE, messages=msgs)["usage"]
    assert n_invoke == billed["input_tokens"] == o200k(text)
    assert n_conv["inputTokens"] == conv["inputTokens"] == o200k(text)
    assert len(calm.ledger()) == 2          # counting is free: only the two generations are rows


def test_invoke_stream_openai_compatible_body_qwen(calm):
    body = json.dumps({"messages": [{"role": "user", "content": "hello qwen"}], "max_tokens": 25})
    r = bedrock_client(calm).invoke_model_with_response_stream(modelId="qwen.qwen3-32b-v1:0", body=body,
                                                               serviceTier="flex")
    events = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    last = events[-1]
    assert last["choices"][0]["finish_reason"] in ("stop", "length")
    assert last["usage"]["completion_tokens"] == o200k(text) and last["usage"]["prompt_tokens"] == o200k("hello qwen")
    assert r["serviceTier"] == "flex" and calm.ledger()[0]["served_tier"] == "flex"
