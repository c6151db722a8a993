"""Each provider's SDK clients are built in one place, ``providers/<p>.make_client`` (issue 12 item 2).

The guarantees every client flextier builds must keep: SDK retries off (``max_retries=0``;
botocore ``total_max_attempts`` 1 and a read timeout above the flex timeout), the guarded
transport on the online path, and, while emulating, a loopback endpoint. The batch backends
used to build their own SDK clients without the loopback check (only the CLI's
``make_batch_backend`` checked first); ``test_batch_backend_refuses_public_endpoint_offline``
fails on that code. No network: an SDK client is built without connecting, and a refused
one is never built.
"""
from __future__ import annotations

import os

import pytest

from flextier._loopback import OfflineViolation, offline
from flextier.batch.anthropic import AnthropicBatch
from flextier.batch.bedrock import BedrockBatch
from flextier.batch.gemini import GeminiBatch
from flextier.batch.openai import OpenAIBatch
from flextier.catalog import default_catalog
from flextier.providers import anthropic as p_anthropic
from flextier.providers import bedrock as p_bedrock
from flextier.providers import gemini as p_gemini
from flextier.providers import openai as p_openai
from flextier.providers.base import TIMEOUT_MARGIN

MODELS = {"openai": "openai/gpt-5.4-mini", "anthropic": "anthropic/claude-haiku-4-5",
          "gemini": "gemini/gemini-3-flash-preview", "bedrock": "bedrock/us.anthropic.claude-haiku-4-5"}
LOCAL = "http://127.0.0.1:9/v1"
PUBLIC = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com",
          "gemini": "https://generativelanguage.googleapis.com"}


@pytest.mark.parametrize("mod", [p_openai, p_anthropic], ids=["openai", "anthropic"])
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_stainless_clients_have_retries_off_and_the_guard(mod, sync) -> None:
    c = mod.make_client(LOCAL, "k", sync=sync, max_connections=4)
    assert c.max_retries == 0
    transport = c._client._transport  # noqa: SLF001 - the httpx client's transport
    assert type(transport).__qualname__.startswith("guard_"), type(transport)
    plain = mod.make_client(LOCAL, "k", sync=sync, guard=False)
    assert plain.max_retries == 0
    assert not type(plain._client._transport).__qualname__.startswith("guard_")  # noqa: SLF001
    assert mod.quiet(plain.with_options(max_retries=5)).max_retries == 0


def test_gemini_client_is_guarded() -> None:
    c = p_gemini.make_client(LOCAL, "k", max_connections=4)
    opts = c._api_client._http_options  # noqa: SLF001
    assert opts.base_url.startswith("http://127.0.0.1:9")
    assert type(opts.httpx_client._transport).__qualname__.startswith("guard_")  # noqa: SLF001
    a = p_gemini.make_client(LOCAL, "k", sync=False, max_connections=4)
    assert type(a._api_client._http_options.httpx_async_client._transport).__qualname__.startswith("guard_")  # noqa: SLF001


def test_bedrock_client_makes_one_attempt_with_a_long_read_timeout() -> None:
    c = p_bedrock.make_client(LOCAL, read_timeout=900 + TIMEOUT_MARGIN, max_connections=7,
                              aws_access_key_id="x", aws_secret_access_key="x")
    cfg = c.meta.config
    assert cfg.retries["total_max_attempts"] == 1
    assert cfg.read_timeout > 900
    assert cfg.max_pool_connections == 7
    # a Config handed in keeps its own settings but never its retries
    from botocore.config import Config
    s3 = p_bedrock.make_client(LOCAL, service="s3", config=Config(retries={"max_attempts": 5},
                                                                  s3={"addressing_style": "path"}))
    assert s3.meta.config.retries["total_max_attempts"] == 1
    assert s3.meta.config.s3 == {"addressing_style": "path"}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_factories_refuse_public_endpoints_while_emulating(provider) -> None:
    mod = {"openai": p_openai, "anthropic": p_anthropic, "gemini": p_gemini}[provider]
    with offline("test"), pytest.raises(OfflineViolation):
        mod.make_client(PUBLIC[provider], "k")
    with offline("test"):
        mod.make_client(LOCAL, "k")    # loopback is fine


def test_bedrock_factory_checks_the_endpoint_the_client_resolved(monkeypatch) -> None:
    for k in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(k)
    with offline("test"), pytest.raises(OfflineViolation):
        p_bedrock.make_client(None, aws_access_key_id="x", aws_secret_access_key="x")   # public AWS
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", LOCAL)
    with offline("test"):
        p_bedrock.make_client(None, aws_access_key_id="x", aws_secret_access_key="x")   # boto3's own setting


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_batch_backend_refuses_public_endpoint_offline(provider) -> None:
    """The batch backends build their clients with the provider's factory, loopback check included."""
    e = default_catalog().resolve(MODELS[provider])
    cls = {"openai": OpenAIBatch, "anthropic": AnthropicBatch, "gemini": GeminiBatch}[provider]
    with offline("test"), pytest.raises(OfflineViolation, match="batch"):
        b = cls(e, base_url=PUBLIC[provider], api_key="k")
        b.client  # noqa: B018 - OpenAI's is built on first use
    b = cls(e, base_url=LOCAL, api_key="k")
    assert b.client.max_retries == 0 if provider != "gemini" else b.client is not None


def test_bedrock_batch_clients_make_one_attempt() -> None:
    e = default_catalog().resolve(MODELS["bedrock"])
    b = BedrockBatch(e, bucket="b", endpoint_url=LOCAL, s3_endpoint_url=LOCAL + "/s3")
    assert b.client.meta.config.retries["total_max_attempts"] == 1
    assert b.s3.meta.config.retries["total_max_attempts"] == 1
    assert b.s3.meta.config.s3 == {"addressing_style": "path"}
