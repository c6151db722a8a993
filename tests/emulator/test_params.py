"""Parameters that used to be ignored (issue 13 item 3), and the Responses API's stored responses.

``n`` (choices, billed as output tokens x choices, in the ledger too), ``stop`` (the text ends
before the stop sequence), ``logprobs``/``top_logprobs`` (well-formed), ``seed`` (same output
for the same seed and prompt); ``GET /v1/responses/{id}`` and ``previous_response_id``.
"""
from __future__ import annotations

import openai
import pytest

from flextier.emulator.clients import anthropic_client, bedrock_client, gemini_client, openai_client

M = [{"role": "user", "content": "tell me something"}]


def test_n_choices_billed_for_each(calm):
    c = openai_client(calm)
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=M, n=2, max_completion_tokens=400,
                                  reasoning_effort="none")
    assert [ch.index for ch in r.choices] == [0, 1]
    a, b = (ch.message.content for ch in r.choices)
    assert a and b and a != b
    one = c.chat.completions.create(model="gpt-5.4-mini", messages=M, max_completion_tokens=400,
                                    reasoning_effort="none")
    words = len(a.split()) + len(b.split())
    assert r.usage.completion_tokens == words
    assert one.usage.completion_tokens == len(one.choices[0].message.content.split())
    row = calm.ledger()[0]
    assert row["output_tokens"] == r.usage.completion_tokens
    assert row["cost"] != calm.ledger()[1]["cost"]


def test_n_stream_has_every_index(calm):
    chunks = list(openai_client(calm).chat.completions.create(model="gpt-5.4-mini", messages=M, n=3, stream=True))
    texts: dict[int, str] = {}
    finish = {}
    for ch in chunks:
        for c in ch.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    assert sorted(texts) == [0, 1, 2] and all(texts.values()) and finish == {0: "stop", 1: "stop", 2: "stop"}


def test_gemini_candidate_count(calm):
    from google.genai import types
    g = gemini_client(calm)
    r = g.models.generate_content(model="gemini-3-flash", contents="hi",
                                  config=types.GenerateContentConfig(candidate_count=2))
    assert len(r.candidates) == 2
    total = sum(len(cd.content.parts[0].text.split()) for cd in r.candidates)
    assert r.usage_metadata.candidates_token_count == total


def test_gemini_logprobs(calm):
    from google.genai import types
    g = gemini_client(calm)
    r = g.models.generate_content(model="gemini-3-flash", contents="hi",
                                  config=types.GenerateContentConfig(response_logprobs=True, logprobs=2))
    cd = r.candidates[0]
    chosen = cd.logprobs_result.chosen_candidates
    assert "".join(c.token for c in chosen) == cd.content.parts[0].text
    assert all(c.log_probability <= 0 for c in chosen) and cd.avg_logprobs <= 0
    assert all(len(t.candidates) == 2 for t in cd.logprobs_result.top_candidates)


def test_n_out_of_range_is_400(calm):
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(calm).chat.completions.create(model="gpt-5.4-mini", messages=M, n=0)
    assert ei.value.body["param"] == "n"


def _stop_word(text: str) -> str:
    words = text.split()
    return next(w for w in words[3:] if w.islower() and len(w) > 3)


def test_stop_sequence_openai(calm):
    c = openai_client(calm)
    full = c.chat.completions.create(model="gpt-5.4-mini", messages=M, seed=7).choices[0].message.content
    word = _stop_word(full)
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=M, seed=7, stop=[" " + word, "\n\n\n"])
    assert r.choices[0].message.content == full[:full.index(" " + word)]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < len(full.split())
    assert calm.ledger()[-1]["output_tokens"] == r.usage.completion_tokens


def test_stop_sequence_other_providers(calm):
    from google.genai import types
    a = anthropic_client(calm)
    full = a.messages.create(model="claude-sonnet-4-6", max_tokens=4000, messages=M).content[0].text
    word = _stop_word(full)
    r = a.messages.create(model="claude-sonnet-4-6", max_tokens=4000, messages=M, stop_sequences=[word])
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == word
    assert r.content[0].text == full[:full.index(word)]
    b = bedrock_client(calm)
    bm = [{"role": "user", "content": [{"text": "tell me"}]}]
    full = b.converse(modelId="us.amazon.nova-pro-v1:0", messages=bm)["output"]["message"]["content"][0]["text"]
    word = _stop_word(full)
    r = b.converse(modelId="us.amazon.nova-pro-v1:0", messages=bm, inferenceConfig={"stopSequences": [word]})
    assert r["stopReason"] == "stop_sequence"
    assert r["output"]["message"]["content"][0]["text"] == full[:full.index(word)]
    g = gemini_client(calm)
    full = g.models.generate_content(model="gemini-3-flash", contents="tell").text
    word = _stop_word(full)
    r = g.models.generate_content(model="gemini-3-flash", contents="tell",
                                  config=types.GenerateContentConfig(stop_sequences=[word]))
    assert r.text == full[:full.index(word)] and r.candidates[0].finish_reason == "STOP"


def test_seed_same_output_and_different_seed_differs(calm):
    c = openai_client(calm)
    same = {c.chat.completions.create(model="gpt-5.4-mini", messages=M, seed=11).choices[0].message.content
            for _ in range(2)}
    other = c.chat.completions.create(model="gpt-5.4-mini", messages=M, seed=12).choices[0].message.content
    assert len(same) == 1 and other not in same


def test_logprobs_well_formed(calm):
    c = openai_client(calm)
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=M, logprobs=True, top_logprobs=3,
                                  max_completion_tokens=60)
    ch = r.choices[0]
    toks = ch.logprobs.content
    assert "".join(t.token for t in toks) == ch.message.content
    for t in toks:
        assert t.logprob <= 0 and bytes(t.bytes) == t.token.encode()
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        lps = [x.logprob for x in t.top_logprobs]
        assert lps == sorted(lps, reverse=True)
    plain = c.chat.completions.create(model="gpt-5.4-mini", messages=M, max_completion_tokens=60)
    assert plain.choices[0].logprobs is None
    streamed = list(c.chat.completions.create(model="gpt-5.4-mini", messages=M, logprobs=True, top_logprobs=1,
                                              max_completion_tokens=60, stream=True))
    lp = [t for ch in streamed for c2 in ch.choices if c2.logprobs for t in c2.logprobs.content]
    assert "".join(t.token for t in lp) == "".join(c2.delta.content or "" for ch in streamed for c2 in ch.choices)
    resp = c.responses.create(model="gpt-5.4-mini", input="hi", include=["message.output_text.logprobs"],
                              top_logprobs=2)
    part = resp.output[-1].content[0]
    assert "".join(t.token for t in part.logprobs) == part.text and len(part.logprobs[0].top_logprobs) == 2


# -- stored responses -------------------------------------------------------------------------------
def test_get_response_and_previous_response_id(calm):
    c = openai_client(calm)
    first = c.responses.create(model="gpt-5.4-mini", input="remember the word quartz", max_output_tokens=50)
    got = c.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text and got.usage == first.usage
    second = c.responses.create(model="gpt-5.4-mini", input="what was it?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    alone = c.responses.create(model="gpt-5.4-mini", input="what was it?")
    # the chained request is billed for the whole conversation: the earlier input and answer too
    from flextier.emulator.tokenizer import OPENAI_PER_MESSAGE, OPENAI_REPLY_PRIMING

    framing = OPENAI_PER_MESSAGE + OPENAI_REPLY_PRIMING   # counted once per request, not once per turn
    assert second.usage.input_tokens >= alone.usage.input_tokens + first.usage.input_tokens - framing \
        + len(first.output_text.split())
    assert calm.ledger()[-2]["input_tokens"] == second.usage.input_tokens


def test_unknown_response_ids(calm):
    c = openai_client(calm)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve("resp_nope")
    with pytest.raises(openai.BadRequestError) as ei:
        c.responses.create(model="gpt-5.4-mini", input="x", previous_response_id="resp_nope")
    assert ei.value.body["param"] == "previous_response_id"
    row, = calm.ledger()           # the refused request: recorded, not billed
    assert row["outcome"] == "error" and row["status"] == 400 and row["cost"] == "0"


def test_store_false_is_not_retrievable(calm):
    c = openai_client(calm)
    r = c.responses.create(model="gpt-5.4-mini", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
