"""complete()/acomplete() and the adapters against the emulator, with the real SDKs over HTTP.

Backoff sleeps go to the fake clock (``make_policy``); switching the emulator's profile
inside ``clock.on_sleep`` makes "capacity error, then success after backoff" exact.
"""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

import flextier
from flextier.intercept import _synthetic_entry
from flextier.errors import BadRequest, QuotaExhausted, TierNotSupported, Timeout

# This directory's conftest, by path: a bare ``from conftest import`` picks up whichever
# conftest was imported last when several test directories are collected in one run.
import importlib.util as _ilu  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_spec = _ilu.spec_from_file_location("_client_conftest", _Path(__file__).with_name("conftest.py"))
_cc = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_cc)  # type: ignore[union-attr]
ALL_CASES, FLEX_CASES, base_url = _cc.ALL_CASES, _cc.FLEX_CASES, _cc.base_url

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hello to the emulator."}]
ids = [c[0] for c in ALL_CASES]
flex_ids = [c[0] for c in FLEX_CASES]


def call(emu, model, endpoint, policy, **kw):
    return flextier.complete(model, MSGS, base_url=base_url(emu, model), api_key="test", endpoint=endpoint,
                             policy=policy, max_tokens=40, **kw)


def new_rows(emu, n, provider=None):
    """Ledger rows since ``n`` (successful ones and sheds), skipping abandoned slow requests of
    earlier tests that finish late ("ok_client_gone")."""
    return [r for r in emu.ledger()[n:] if r["outcome"] != "ok_client_gone"]


def std_policy(make_policy, model, **kw):
    """Flex for flex models; Claude has none, so standard."""
    if model.startswith("anthropic/"):
        kw.setdefault("tier", "standard")
    return make_policy(**kw)


@pytest.mark.parametrize("case", FLEX_CASES, ids=flex_ids)
def test_success_on_flex_cost_equals_ledger(emu, make_policy, case):
    _, model, ep = case
    n = len(emu.ledger())
    r = call(emu, model, ep, make_policy())
    rows = new_rows(emu, n)
    assert r.tier == "flex" and [a.outcome for a in r.attempts] == ["ok"]
    assert r.text and isinstance(r.raw, dict) and r.body is r.raw
    assert len(rows) == 1 and rows[0]["served_tier"] == "flex" and rows[0]["requested_tier"] == "flex"
    assert r.cost == Decimal(rows[0]["cost"]) and r.standard_cost == 2 * r.cost and r.saving == r.cost
    assert r.usage.input_tokens == rows[0]["input_tokens"] and r.usage.output_tokens == rows[0]["output_tokens"]


@pytest.mark.parametrize("case", ALL_CASES, ids=ids)
async def test_async_success_cost_equals_ledger(emu, make_policy, case):
    _, model, ep = case
    n = len(emu.ledger())
    r = await flextier.acomplete(model, MSGS, base_url=base_url(emu, model), api_key="test", endpoint=ep,
                                 policy=std_policy(make_policy, model), max_tokens=40)
    rows = new_rows(emu, n)
    assert r.cost == Decimal(rows[-1]["cost"]) and r.tier == rows[-1]["served_tier"]


@pytest.mark.parametrize("case", FLEX_CASES, ids=flex_ids)
def test_capacity_error_then_success_after_backoff(emu, make_policy, clock, case):
    _, model, ep = case
    emu.set_profile("outage", latency_scale=0)
    clock.on_sleep = lambda s: emu.set_profile("calm", latency_scale=0)
    r = call(emu, model, ep, make_policy())
    assert [a.outcome for a in r.attempts] == ["FlexCapacityUnavailable", "ok"]
    assert r.tier == "flex" and len(clock.sleeps) == 1


@pytest.mark.parametrize("case", FLEX_CASES, ids=flex_ids)
def test_fallback_to_standard_in_outage(emu, make_policy, case):
    _, model, ep = case
    emu.set_profile("outage", latency_scale=0)
    n = len(emu.ledger())
    r = call(emu, model, ep, make_policy(fallback=3))
    rows = new_rows(emu, n)
    assert [a.tier for a in r.attempts] == ["flex"] * 3 + ["standard"]
    assert r.tier == "standard" and r.cost == r.standard_cost == Decimal(rows[-1]["cost"])
    assert rows[-1]["served_tier"] == "standard" and all(row["cost"] in ("0", "0.0", None) or
                                                         Decimal(row["cost"]) == 0 for row in rows[:-1])


def test_auto_fallback_after_max_flex_wait(emu, make_policy, clock):
    emu.set_profile("outage", latency_scale=0)
    from flextier.policy.backoff import Backoff
    import random
    r = call(emu, "gemini/gemini-3-flash", "chat",
             make_policy(max_flex_wait=120, backoff=Backoff(base=30, cap=60, rng=random.Random(1))))
    assert r.tier == "standard" and r.attempts[-1].tier == "standard"
    assert sum(clock.sleeps) < 120 + 60


@pytest.mark.parametrize("case", ALL_CASES, ids=ids)
def test_quota_error_is_not_retried(emu, make_policy, clock, case):
    _, model, ep = case
    emu.set_knobs(fault_quota_p=1.0)
    with pytest.raises(QuotaExhausted) as ei:
        call(emu, model, ep, std_policy(make_policy, model))
    assert len(ei.value.attempts) == 1 and clock.sleeps == []


@pytest.mark.parametrize("case", ALL_CASES, ids=ids)
def test_bad_request_is_not_retried(emu, make_policy, clock, case):
    _, model, ep = case
    entry = _synthetic_entry(model.split("/")[0], "no-such-model")
    with pytest.raises(BadRequest) as ei:
        flextier.complete(entry, MSGS, base_url=base_url(emu, model), api_key="test", endpoint=ep,
                          policy=make_policy(tier="standard"))
    assert len(ei.value.attempts) == 1 and clock.sleeps == [] and 400 <= ei.value.status < 500


@pytest.mark.parametrize("case", ALL_CASES, ids=ids)
def test_retry_after_is_honoured(emu, make_policy, clock, case):
    _, model, ep = case
    emu.set_knobs(fault_rate_limit_p=1.0, rate_limit_retry_after_s=3.0)
    clock.on_sleep = lambda s: emu.set_knobs(fault_rate_limit_p=0.0)
    r = call(emu, model, ep, std_policy(make_policy, model))
    # Bedrock says ThrottlingException both for quotas and for shed flex work, so on flex it
    # counts as a capacity error; its retry-after is honoured all the same.
    first = "FlexCapacityUnavailable" if model.startswith("bedrock/") else "RateLimited"
    assert [a.outcome for a in r.attempts] == [first, "ok"]
    assert r.attempts[0].retry_after == 3.0 and clock.sleeps == [3.0]
    assert r.attempts[0].tier == r.attempts[1].tier  # a rate limit is not a reason to change tier


@pytest.mark.parametrize("case", ALL_CASES, ids=ids)
def test_timeout_is_resent_once_and_possibly_billed(emu, make_policy, case):
    _, model, ep = case
    emu.set_knobs(fault_slow_first_byte_p=1.0, slow_first_byte_s=1.0)
    # resend_on_timeout=1 caps the resends (by default a timeout counts as a same-tier error: 5 attempts)
    pol = std_policy(make_policy, model, flex_timeout=0.25, standard_timeout=0.25, resend_on_timeout=1)
    n = len(emu.ledger())
    with pytest.raises(Timeout) as ei:
        call(emu, model, ep, pol)
    atts = ei.value.attempts
    assert [a.outcome for a in atts] == ["Timeout", "Timeout"] and all(a.possibly_billed for a in atts)
    assert ei.value.possibly_billed
    # the server finishes the abandoned work anyway (that is why it is "possibly billed");
    # wait for its two rows so they do not land in a later test's ledger slice
    end = time.monotonic() + 5
    while len(emu.ledger()) - n < 2 and time.monotonic() < end:
        time.sleep(0.05)
    assert len(emu.ledger()) - n == 2


def test_flex_on_claude_is_a_clear_error_or_standard_with_warning(emu, make_policy):
    with pytest.raises(TierNotSupported, match="batch"):
        call(emu, "anthropic/claude-haiku-4-5", "chat", make_policy())
    with pytest.warns(flextier.policy.fallback.FlexFallbackWarning):
        r = call(emu, "anthropic/claude-haiku-4-5", "chat", make_policy(allow_standard_for_no_flex=True))
    assert r.tier == "standard"


def test_bedrock_model_without_flex_raises_before_sending(emu, make_policy):
    n = len(emu.ledger())
    with pytest.raises(TierNotSupported):
        call(emu, "bedrock/nova-lite", "chat", make_policy())
    assert len(emu.ledger()) == n


def test_adapter_contract_one_attempt_plain_dict(emu):
    from flextier._types import CallRequest
    from flextier.catalog import default_catalog
    from flextier.providers import get_adapter
    entry = default_catalog().resolve("openai/gpt-5.4")
    a = get_adapter(entry, base_url=emu.openai_base_url, api_key="test")
    assert get_adapter(entry, base_url=emu.openai_base_url, api_key="test").transport is a.transport
    out = a.send(CallRequest(model=entry, messages=MSGS, params={"max_tokens": 10}), "standard", 30.0)
    assert out.served_tier == "standard" and out.body["service_tier"] == "default" and out.headers
    assert "test" not in repr(a)
