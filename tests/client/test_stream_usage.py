"""Stream usage is exact or unknown, never $0 (issue 11 item 2), on every provider's stream path.

Before: a wrapped OpenAI Chat stream without ``stream_options.include_usage`` reported zero usage
and cost $0 while the emulator billed it, and every provider's stream cut (or abandoned) before its
final usage event was priced at $0 or at a partial count. Now a wrapped Chat stream asks for usage
itself and hides what that adds from the caller; a stream whose bill never arrived has usage,
cost and standard cost None. Official SDKs against the emulator on 127.0.0.1, compared with the
emulator's own ledger.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import flextier
from flextier.emulator import clients as C
from flextier.errors import ProviderError

MSG = [{"role": "user", "content": "Tell me something."}]
BMSG = [{"role": "user", "content": [{"text": "Tell me something."}]}]


def _ledger_row(emu, request_id: str):
    rows = [r for r in emu.ledger() if r["request_id"] and r["request_id"] in request_id]
    assert len(rows) == 1, (request_id, rows[-3:])
    return rows[0]


def _matches(info, row) -> None:
    assert info.cost == Decimal(row["cost"]) and info.cost > 0
    assert info.usage.input_tokens == row["input_tokens"] and info.usage.output_tokens == row["output_tokens"]


# -- OpenAI Chat: usage asked for by flextier, invisible to the caller ---------------------------

def test_chat_stream_without_include_usage_is_priced_exactly_and_chunks_unchanged(emu, make_policy):
    raw = C.openai_client(emu)
    plain = list(raw.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True, max_completion_tokens=40))
    w = flextier.wrap(raw, make_policy(tier="standard"))
    s = w.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True, max_completion_tokens=40)
    got = list(s)
    # the caller sees what an unwrapped stream without include_usage gives: same chunks, same fields
    assert [c.to_dict() for c in got] == [{**c.to_dict(), "id": got[0].id, "created": got[0].created}
                                          for c in plain]
    assert all(c.choices for c in got) and all("usage" not in c.to_dict() for c in got)
    i = flextier.info(s)
    _matches(i, _ledger_row(emu, got[0].id))


def test_chat_stream_that_asked_for_usage_still_gets_the_usage_chunk(emu, make_policy):
    w = flextier.wrap(C.openai_client(emu), make_policy(tier="standard"))
    s = w.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True, stream_options={"include_usage": True})
    got = list(s)
    assert got[-1].choices == [] and got[-1].usage is not None
    i = flextier.info(s)
    assert i.usage.output_tokens == got[-1].usage.completion_tokens
    _matches(i, _ledger_row(emu, got[0].id))


def test_async_chat_stream_without_include_usage(emu, make_policy):
    async def go():
        w = flextier.wrap(C.async_openai_client(emu), make_policy(tier="standard"))
        s = await w.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True)
        return s, [c async for c in s]

    s, got = asyncio.run(go())
    assert all(c.choices for c in got)
    _matches(flextier.info(s), _ledger_row(emu, got[0].id))


def test_unconsumed_and_abandoned_chat_streams_are_unknown_not_zero(emu, make_policy):
    w = flextier.wrap(C.openai_client(emu), make_policy(tier="standard"))
    s = w.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True)
    i = flextier.info(s)
    assert i.usage is None and i.cost is None and i.standard_cost is None and i.saving is None
    it = iter(s)
    next(it)
    it.close()  # the caller stops reading before the end
    s.close()
    i = flextier.info(s)
    assert i.usage is None and i.cost is None


# -- every provider: a stream cut before its usage is unknown, a whole one matches the ledger -----

STREAM_CALLS = {
    "openai-chat": (lambda w: w.chat.completions.create(model="gpt-5.4", messages=MSG, stream=True),
                    lambda s: s),
    "openai-responses": (lambda w: w.responses.create(model="gpt-5.4", input="hi", stream=True), lambda s: s),
    "gemini": (lambda w: w.models.generate_content_stream(model="gemini-3-flash-preview", contents="hi"),
               lambda s: s),
    "bedrock": (lambda w: w.converse_stream(modelId="us.amazon.nova-pro-v1:0", messages=BMSG),
                lambda s: s["stream"]),
    "anthropic": (lambda w: w.messages.create(model="claude-haiku-4-5", max_tokens=60, messages=MSG,
                                              stream=True), lambda s: s),
}
CLIENTS = {"openai": C.openai_client, "gemini": C.gemini_client, "bedrock": C.bedrock_client,
           "anthropic": C.anthropic_client}


def _wrapped(emu, make_policy, name):
    client = CLIENTS[name.split("-")[0]](emu)
    pol = make_policy(tier="standard")
    return flextier.wrap(client, pol), *STREAM_CALLS[name]


@pytest.mark.parametrize("name", list(STREAM_CALLS))
def test_cut_stream_is_unknown_never_zero(emu, make_policy, clock, name):
    w, fn, events = _wrapped(emu, make_policy, name)
    cut = 0
    clock.on_sleep = lambda _s: emu.set_knobs(fault_truncate_p=0.0)  # a cut before the first token is retried
    for _ in range(12):
        emu.set_knobs(fault_truncate_p=1.0)
        before = len(emu.ledger())
        s = None
        got = []
        try:
            s = fn(w)
            for ev in events(s):
                got.append(ev)
        except ProviderError as err:
            assert err.possibly_billed
            # google-genai streams are plain generators: info() takes any chunk
            i = flextier.info(s) or flextier.info(got[-1])
            assert i.usage is None and i.cost is None and i.standard_cost is None, (name, i.usage, i.cost)
            billed = [r for r in emu.ledger()[before:] if r["cost"] not in (None, "0")]
            assert billed, "the emulator bills the cut stream: flextier must not say $0"
            cut += 1
        finally:
            emu.set_knobs(fault_truncate_p=0.0)
        if cut >= 2:
            break
    if name in ("openai-chat", "gemini", "bedrock"):
        assert cut >= 1
    # and a whole stream of the same kind is priced exactly as the emulator billed it
    before = len(emu.ledger())
    s = fn(w)
    got = list(events(s))
    rows = [r for r in emu.ledger()[before:] if r["outcome"] == "ok"]
    assert len(got) > 1 and len(rows) == 1
    _matches(flextier.info(s) or flextier.info(got[-1]), rows[0])


def test_langchain_streaming_through_a_wrapped_client_sees_the_same_chunks(emu, make_policy):
    """A library built on the SDK (LangChain) that did not ask for usage gets exactly the chunks it
    would get unwrapped: no usage-only chunk leaks into its message stream."""
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    seen = []
    for cl in (C.openai_client(emu), flextier.wrap(C.openai_client(emu), make_policy(tier="standard"))):
        llm = ChatOpenAI(model="gpt-5.4", api_key="test", base_url=emu.openai_base_url, streaming=True,
                         stream_usage=False, client=cl.chat.completions, root_client=cl, max_retries=0)
        chunks = list(llm.stream("Tell me something."))
        seen.append(([c.content for c in chunks], [c.usage_metadata for c in chunks if c.usage_metadata]))
    assert seen[0] == seen[1] and seen[1][1] == []
