"""A refused key stops the job at once, resumably, in every dialect; the key is never echoed."""
from __future__ import annotations

import asyncio

import pytest

from flextier.catalog import default_catalog
from flextier.jobs.runner import JobPaused, Runner, RunOptions
from flextier.policy.errors import Unauthorized
from flextier.providers import get_adapter

BAD = "invalid-sk-planted-0123456789"


@pytest.mark.parametrize("model", ["openai/gpt-5.4-mini", "gemini/gemini-2.5-flash", "bedrock/amazon.nova-lite-v1:0",
                                   "anthropic/claude-haiku-4-5"])
def test_refused_key_pauses_job_at_once(emulator, make_store, model, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BAD)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    emu = emulator("calm", time_scale=1000)
    st = make_store(200, model=model)
    entry = default_catalog().resolve(model)
    adapter = get_adapter(entry, base_url=emu.base_urls()[entry.provider], api_key=BAD)
    runner = Runner(st, adapter, RunOptions(model=entry, deadline=emu.clock.now() + 3600, concurrency=4,
                                            params={"max_tokens": 50}), clock=emu.clock, output=None)
    runner.prepare()
    with pytest.raises(JobPaused) as ei:
        asyncio.run(runner.run())
    assert ei.value.kind == "auth" and BAD not in str(ei.value)
    c = st.counts()
    assert c["done"] == c["failed"] == 0 and c["pending"] == 200  # nothing lost: a resume sends them all
    refused = [r for r in emu.ledger() if r["status"] in (400, 401, 403)]
    assert 1 <= len(refused) <= 8  # stopped at the first refusals, not one per item
    assert not [r for r in emu.ledger() if r.get("cost") not in (None, "0")]


def test_missing_aws_credentials_pause_too(emulator, make_store, monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    emu = emulator("calm", time_scale=1000)
    model = "bedrock/amazon.nova-lite-v1:0"
    st = make_store(50, model=model)
    entry = default_catalog().resolve(model)
    adapter = get_adapter(entry, base_url=emu.base_urls()["bedrock"], api_key=None)
    runner = Runner(st, adapter, RunOptions(model=entry, concurrency=4), clock=emu.clock, output=None)
    runner.prepare()
    with pytest.raises(JobPaused) as ei:
        asyncio.run(runner.run())
    assert ei.value.kind == "auth" and "credentials" in str(ei.value)
    assert st.counts()["pending"] == 50 and not emu.ledger()


def test_unauthorized_is_a_bad_request():
    """Code that already treats BadRequest as final keeps working."""
    from flextier.policy.errors import BadRequest

    assert issubclass(Unauthorized, BadRequest) and not Unauthorized.retryable
