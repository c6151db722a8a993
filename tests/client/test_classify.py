"""Error classification, from the SDKs' own exception objects (no network)."""
from __future__ import annotations

import anthropic
import httpx
import httpx2
import openai
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from google.genai import errors as gerrors

from flextier.errors import (BadRequest, FlexCapacityUnavailable, Overloaded, QuotaExhausted, RateLimited,
                             TierNotSupported, Timeout, Transient)
from flextier.providers.anthropic import classify_anthropic
from flextier.providers.bedrock import classify_bedrock
from flextier.providers.gemini import classify_gemini
from flextier.providers.openai import classify_openai

REQ = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")


def oai(status, code, type_="rate_limit_error", headers=None, cls=openai.APIStatusError):
    resp = httpx2.Response(status, headers=headers or {}, request=REQ)
    return cls("x", response=resp, body={"message": "m", "type": type_, "code": code})


@pytest.mark.parametrize("status,code,tier,expected", [
    (429, "resource_unavailable", "flex", FlexCapacityUnavailable),
    (429, "flex_unavailable", "flex", FlexCapacityUnavailable),
    (429, "rate_limit_exceeded", "flex", RateLimited),
    (429, "insufficient_quota", "flex", QuotaExhausted),
    (500, None, "flex", Transient),
    (503, "server_is_overloaded", "flex", FlexCapacityUnavailable),
    (503, "server_is_overloaded", "standard", Transient),
    (400, None, "standard", BadRequest),
    (404, None, "flex", BadRequest),
])
def test_openai_status_errors(status, code, tier, expected):
    err = classify_openai(oai(status, code), tier)
    assert type(err) is expected and err.status == status and err.tier == tier


def test_openai_flex_on_unsupported_model_is_tier_not_supported():
    e = oai(400, None, "invalid_request_error")
    e.body["message"] = "Flex is not available for this model"
    e = openai.APIStatusError("x", response=e.response, body={"message": "Flex is not available for this model",
                                                              "type": "invalid_request_error"})
    assert isinstance(classify_openai(e, "flex"), TierNotSupported)


def test_openai_retry_after_ms_header():
    err = classify_openai(oai(429, "rate_limit_exceeded", headers={"retry-after-ms": "2500"}), "flex")
    assert err.retry_after == 2.5


def test_openai_timeouts_and_resets():
    t = openai.APITimeoutError(request=REQ)
    t.__cause__ = httpx2.ReadTimeout("slow")
    err = classify_openai(t, "flex")
    assert isinstance(err, Timeout) and err.possibly_billed
    t2 = openai.APITimeoutError(request=REQ)
    t2.__cause__ = httpx2.ConnectTimeout("no route")
    assert isinstance(classify_openai(t2, "flex"), Transient) and not classify_openai(t2, "flex").possibly_billed
    c = openai.APIConnectionError(request=REQ)
    c.__cause__ = httpx2.ConnectError("refused")
    assert isinstance(classify_openai(c, "flex"), Transient)
    assert classify_openai(ValueError("not ours"), "flex") is None


def test_anthropic_errors():
    req = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")

    def a(status, type_, msg="m", headers=None):
        return anthropic.APIStatusError("x", response=httpx2.Response(status, headers=headers or {}, request=req),
                                        body={"type": "error", "error": {"type": type_, "message": msg}})
    assert isinstance(classify_anthropic(a(529, "overloaded_error"), "standard"), Overloaded)
    rl = classify_anthropic(a(429, "rate_limit_error", headers={"retry-after": "3"}), "standard")
    assert isinstance(rl, RateLimited) and rl.retry_after == 3.0
    assert isinstance(classify_anthropic(a(400, "invalid_request_error", "Your credit balance is too low"),
                                         "standard"), QuotaExhausted)
    assert isinstance(classify_anthropic(a(400, "invalid_request_error"), "standard"), BadRequest)


def g(code, status, details=None):
    body = {"error": {"code": code, "message": "m", "status": status, "details": details or []}}
    return gerrors.APIError(code, body, httpx.Response(code))


@pytest.mark.parametrize("exc,tier,expected", [
    (g(503, "UNAVAILABLE"), "flex", FlexCapacityUnavailable),
    (g(503, "UNAVAILABLE"), "standard", Transient),
    (g(429, "RESOURCE_EXHAUSTED"), "flex", FlexCapacityUnavailable),
    (g(429, "RESOURCE_EXHAUSTED"), "standard", RateLimited),
    (g(429, "RESOURCE_EXHAUSTED", [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]}]),
     "flex", RateLimited),
    (g(429, "RESOURCE_EXHAUSTED", [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                    "violations": [{"quotaId": "GenerateContentPaidTierPerDay"}]}]),
     "flex", QuotaExhausted),
    (g(400, "INVALID_ARGUMENT"), "flex", BadRequest),
    (g(500, "INTERNAL"), "flex", Transient),
    (httpx.ReadTimeout("slow"), "flex", Timeout),
    (httpx.ConnectError("refused"), "flex", Transient),
])
def test_gemini_errors(exc, tier, expected):
    assert type(classify_gemini(exc, tier)) is expected


def test_gemini_retry_info_is_the_retry_after():
    e = g(429, "RESOURCE_EXHAUSTED", [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"}])
    assert classify_gemini(e, "flex").retry_after == 34.0


def b(code, status, headers=None):
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}, "Converse")


@pytest.mark.parametrize("exc,tier,expected", [
    (b("ThrottlingException", 429), "flex", FlexCapacityUnavailable),
    (b("ServiceUnavailableException", 503), "flex", FlexCapacityUnavailable),
    (b("ThrottlingException", 429), "standard", RateLimited),
    (b("ServiceUnavailableException", 503), "standard", Transient),
    (b("ServiceQuotaExceededException", 400), "flex", QuotaExhausted),
    (b("ValidationException", 400), "flex", BadRequest),
    (b("InternalServerException", 500), "flex", Transient),
    (b("throttlingException", 200), "flex", FlexCapacityUnavailable),   # in-stream spelling
    (ReadTimeoutError(endpoint_url="http://x"), "flex", Timeout),
])
def test_bedrock_errors(exc, tier, expected):
    assert type(classify_bedrock(exc, tier)) is expected


def test_bedrock_unsupported_tier_and_retry_after():
    e = ClientError({"Error": {"Code": "ValidationException", "Message": "The provided service tier is not "
                                                                          "supported for this model"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}, "Converse")
    assert isinstance(classify_bedrock(e, "flex"), TierNotSupported)
    assert classify_bedrock(b("ThrottlingException", 429, {"retry-after": "4"}), "standard").retry_after == 4.0
