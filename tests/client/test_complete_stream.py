"""``complete(stream=True)`` / ``acomplete(stream=True)`` against the emulator over 127.0.0.1 (issue 14).

Through the transport engine (the SDK's own stream call on a wrapped client): on ``calm`` the
stream is served flex and its cost equals the emulator's ledger; on ``outage`` two flex sheds
come first (before the first byte, where fallback is allowed), then standard, cost == ledger.
The policy's clock is fake (``fallback=2``), so nothing sleeps.
"""
from __future__ import annotations

import asyncio
import importlib.util as _ilu
from decimal import Decimal
from pathlib import Path as _Path

import pytest

import flextier
from flextier.client import AsyncCompletionStream, CompletionStream
from flextier.errors import TierNotSupported

_spec = _ilu.spec_from_file_location("_client_conftest", _Path(__file__).with_name("conftest.py"))
_cc = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_cc)  # type: ignore[union-attr]
FLEX_CASES, base_url = _cc.FLEX_CASES, _cc.base_url

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hello to the emulator."}]
PROFILES = ["calm", "outage"]
ids = [c[0] for c in FLEX_CASES]


def _check(emu, before: int, profile: str, s, pieces: list[str]) -> None:
    rows = emu.ledger()[before:]
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert len(ok) == 1, rows
    assert s.done and pieces and "".join(pieces) == s.text
    r = flextier.info(s)
    assert r is s.result and r.text == s.text
    assert r.cost == Decimal(ok[0]["cost"]) and r.usage.output_tokens == ok[0]["output_tokens"]
    assert r.usage.input_tokens == ok[0]["input_tokens"]
    if profile == "calm":
        assert r.tier == "flex" == ok[0]["served_tier"] and [a.tier for a in r.attempts] == ["flex"]
        assert r.standard_cost == 2 * r.cost
    else:
        assert sum(1 for x in rows if x["outcome"] == "shed") == 2
        assert r.tier == "standard" == ok[0]["served_tier"]
        assert [a.tier for a in r.attempts] == ["flex", "flex", "standard"]
    t = flextier.totals()
    assert t.calls == 1 and t.cost == r.cost and t.unpriced == 0


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", FLEX_CASES, ids=ids)
def test_stream_flex_first_and_fallback_before_first_byte(emu, make_policy, case, profile):
    _, model, ep = case
    emu.set_profile(profile, latency_scale=0)
    before = len(emu.ledger())
    flextier.totals(reset=True)
    s = flextier.complete(model, MSGS, base_url=base_url(emu, model), api_key="test", endpoint=ep,
                          policy=make_policy(fallback=2), max_tokens=40, stream=True)
    assert isinstance(s, CompletionStream)
    assert flextier.info(s).cost is None            # the bill comes at the stream's end
    pieces = list(s)
    _check(emu, before, profile, s, pieces)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", FLEX_CASES, ids=ids)
def test_async_stream(emu, make_policy, case, profile):
    _, model, ep = case
    emu.set_profile(profile, latency_scale=0)
    before = len(emu.ledger())
    flextier.totals(reset=True)

    async def go():
        s = await flextier.acomplete(model, MSGS, base_url=base_url(emu, model), api_key="test", endpoint=ep,
                                     policy=make_policy(fallback=2), max_tokens=40, stream=True)
        assert isinstance(s, AsyncCompletionStream)
        return s, [p async for p in s]

    s, pieces = asyncio.run(go())
    _check(emu, before, profile, s, pieces)


def test_claude_stream_is_standard_and_no_flex_raises_before_streaming(emu, make_policy):
    model = "anthropic/claude-haiku-4-5"
    with pytest.raises(TierNotSupported):   # raised by complete() itself: nothing to iterate
        flextier.complete(model, MSGS, base_url=base_url(emu, model), api_key="test", policy=make_policy(),
                          stream=True, max_tokens=40)
    before = len(emu.ledger())
    with flextier.complete(model, MSGS, base_url=base_url(emu, model), api_key="test", tier="standard",
                           policy=make_policy(), stream=True, max_tokens=40) as s:
        text = "".join(s)
    row = emu.ledger()[before:][-1]
    r = flextier.info(s)
    assert text and r.tier == "standard" == row["served_tier"] and r.cost == Decimal(row["cost"])


def test_stream_with_a_users_client_and_chat_usage_hidden(emu, make_policy):
    """A client the user hands in is wrapped (not changed); the usage chunk flextier asked for is
    read for the bill, and the text is the same the non-streamed path would carry."""
    from flextier.emulator import clients as C

    raw = C.openai_client(emu)
    before = len(emu.ledger())
    s = flextier.complete("openai/gpt-5.4", MSGS, client=raw, policy=make_policy(), max_tokens=40, stream=True)
    text = "".join(s)
    row = emu.ledger()[before:][-1]
    assert flextier.info(s).cost == Decimal(row["cost"]) and flextier.info(s).usage.output_tokens == row["output_tokens"]
    assert text and flextier.info(s).tier == "flex"
    # the user's client is unchanged: its own transport, not flextier's
    assert raw._client._transport.__class__.__name__ != "FlexTransport"  # noqa: SLF001


def test_abandoned_stream_is_left_unpriced(emu, make_policy):
    """A stream closed before its end has no bill: cost unknown (None), never $0."""
    flextier.totals(reset=True)
    s = flextier.complete("openai/gpt-5.4", MSGS, base_url=base_url(emu, "openai/gpt-5.4"), api_key="test",
                          policy=make_policy(), max_tokens=200, stream=True)
    next(iter(s))
    s.close()
    r = flextier.info(s)
    assert r is not None and r.cost is None and not s.done
    assert flextier.totals().unpriced == 1


def test_stream_deadline_is_the_policys(emu, make_policy):
    """``deadline=`` reaches the engine: too close for flex (the standard budget is 120 s), so the
    one attempt is standard and the outage's flex sheds are never met."""
    emu.set_profile("outage", latency_scale=0)
    before = len(emu.ledger())
    s = flextier.complete("openai/gpt-5.4", MSGS, base_url=base_url(emu, "openai/gpt-5.4"), api_key="test",
                          policy=make_policy(), max_tokens=40, stream=True, deadline=120.5)
    "".join(s)
    rows = emu.ledger()[before:]
    assert [a.tier for a in flextier.info(s).attempts] == ["standard"]
    assert [r["outcome"] for r in rows] == ["ok"] and rows[0]["served_tier"] == "standard"


def test_a_client_of_the_other_kind_is_refused_before_sending(emu, make_policy):
    from flextier.emulator import clients as C

    before = len(emu.ledger())
    with pytest.raises(TypeError, match="acomplete"):
        flextier.complete("openai/gpt-5.4", MSGS, client=C.async_openai_client(emu), policy=make_policy(),
                          stream=True)
    with pytest.raises(TypeError, match=r"use complete\(stream=True\)"):
        asyncio.run(flextier.acomplete("openai/gpt-5.4", MSGS, client=C.openai_client(emu), policy=make_policy(),
                                       stream=True))
    assert len(emu.ledger()) == before

