"""The job path's lean Bedrock client sends what botocore sends, signed alike (issue 19: Bedrock CPU).

Both paths of :class:`flextier.providers.bedrock.BedrockAdapter` -- botocore's ``converse`` on a
worker thread (the sync path) and :class:`~flextier.providers.bedrock.lean.LeanBedrock` (the job
path's async calls) -- post to one loopback server that records each request. The path (the
model id percent-encoded), the JSON body, the signed headers and the signature's scope must be
the same, and the signature must verify: the test re-signs the recorded request with botocore's
``SigV4Auth`` at the recorded time and compares. An error answer is classified the same on
both paths; binary content and bearer-token auth stay on botocore.
"""
from __future__ import annotations

import asyncio
import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from flextier._types import CallRequest
from flextier.catalog import default_catalog
from flextier.errors import FlexCapacityUnavailable
from flextier.providers.bedrock import BedrockAdapter
from flextier.providers.bedrock.lean import LeanBedrock

from test_lean_gemini import Recorder  # the same recording loopback server

OK = {"output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}}, "stopReason": "end_turn",
      "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}, "metrics": {"latencyMs": 5},
      "serviceTier": {"type": "flex"}}
THROTTLED = {"message": "Too many requests, please wait before trying again."}
KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def rec():
    r = Recorder()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)


def _adapter(url: str) -> BedrockAdapter:
    entry = default_catalog().resolve("bedrock/nova-pro")
    return BedrockAdapter(entry, BedrockAdapter.make_transport(base_url=url, api_key=None, client=None,
                                                               timeouts={}, max_connections=4))


def _both(rec, req: CallRequest, tier: str) -> list:
    ad = _adapter(rec.url)
    rec.seen.clear()
    rec.raw.clear()
    out = []
    try:
        out.append(ad.send(req, tier, 10))            # botocore
    except Exception as exc:  # noqa: BLE001 - compared below
        out.append(exc)

    async def lean():
        assert ad.transport.lean() is not None
        return await ad.asend(req, tier, 10)

    try:
        out.append(asyncio.run(lean()))
    except Exception as exc:  # noqa: BLE001
        out.append(exc)
    return out


def _verify(path: str, headers: dict, body: bytes, url: str) -> None:
    """Re-sign the recorded request with botocore at its own X-Amz-Date: the signature must match."""
    when = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    signed = [h for h in headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")]
    req = AWSRequest(method="POST", url=url + path, data=body,
                     headers={k: v for k, v in headers.items() if k in signed and k != "host"})
    region = headers["authorization"].split("Credential=")[1].split("/")[2]
    auth = SigV4Auth(Credentials(KEY, SECRET), "bedrock", region)
    import unittest.mock as um
    with um.patch("botocore.auth.datetime") as dt:  # the recorded instant, not now
        dt.datetime.utcnow.return_value = when
        dt.datetime.now.return_value = when.replace(tzinfo=datetime.timezone.utc)
        auth.add_auth(req)
    assert req.headers["Authorization"] == headers["authorization"]


@pytest.mark.parametrize("tier", ["flex", "standard"])
def test_lean_converse_is_botocores_request_and_signature(rec, tier) -> None:
    entry = default_catalog().resolve("bedrock/nova-pro")
    req = CallRequest(model=entry, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                      params={"max_tokens": 16, "temperature": 0.5, "top_k": 3}, custom_id="it-9")
    rec.answer = (200, OK)
    sdk, lean = _both(rec, req, tier)
    assert sdk.text == lean.text == "hello" and sdk.usage == lean.usage and sdk.served_tier == lean.served_tier
    (p1, h1, b1), (p2, h2, b2) = rec.seen
    assert p1 == p2 == "/model/us.amazon.nova-pro-v1%3A0/converse"
    assert b1 == b2 and (b1.get("serviceTier") == {"type": "flex"}) == (tier == "flex")
    assert h1["x-flextier-item"] == h2["x-flextier-item"] == "it-9"
    scope = lambda h: h["authorization"].split("Signature=")[0].replace(h["x-amz-date"][:8], "DATE")  # noqa: E731
    assert scope(h1) == scope(h2)
    assert "SignedHeaders=content-type;host;x-amz-date;x-flextier-item" in h2["authorization"]
    _verify(p2, h2, rec.raw[-1], rec.url)


def test_lean_error_is_classified_as_botocores(rec) -> None:
    entry = default_catalog().resolve("bedrock/nova-pro")
    req = CallRequest(model=entry, messages=[{"role": "user", "content": "hi"}], params={"max_tokens": 4})
    rec.answer = (429, THROTTLED)
    rec.extra_headers = {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/"}
    try:
        sdk, lean = _both(rec, req, "flex")
    finally:
        rec.answer, rec.extra_headers = (200, OK), {}
    assert type(sdk) is type(lean) is FlexCapacityUnavailable
    assert (sdk.status, sdk.code, str(sdk)) == (lean.status, lean.code, str(lean))


def test_binary_content_and_bearer_tokens_stay_on_botocore(rec, monkeypatch) -> None:
    ad = _adapter(rec.url)

    async def lean():
        return ad.transport.lean()

    lb = asyncio.run(lean())
    kw = ad.build(CallRequest(model=ad.entry, messages=[{"role": "user", "content": "hi"}]), "flex")
    assert lb.prepare(kw, None) is not None
    kw["messages"][0]["content"].append({"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}})
    assert lb.prepare(kw, None) is None
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "tok")
    assert not LeanBedrock.usable(object())
