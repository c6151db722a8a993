"""Token counts that look like real ones (issue 13 item 6): o200k BPE plus the overheads the
providers document, checked through the SDKs against the reference encoder."""
from __future__ import annotations

import random
import re

import pytest

from emu_tokens import o200k
from flextier.emulator import tokenizer as tk
from flextier.emulator.clients import openai_client

_WORDS = re.compile(r"\w+|[^\w\s]")


def test_counts_are_o200k_not_words():
    text = "Tokenization isn't word-splitting: 'internationalisation' costs several tokens."
    assert tk.exact()
    assert tk.count_tokens(text) == o200k(text) != len(_WORDS.findall(text))
    assert len(tk.tokenize(text)) == o200k(text)
    assert tk.count_tokens("bad \ud800 surrogate") >= 3        # JSON can carry lone surrogates: never raises


def test_generated_words_retokenize_to_the_reported_count():
    for seed in range(20):
        words = tk.generate_words(random.Random(seed), 300)
        assert o200k(" ".join(words)) == len(words)


def test_approximation_error_against_o200k_on_a_sample():
    sample = [
        "Flex processing halves the price of requests that can wait; a shed request costs nothing.",
        "def plan(self, req):\n    tokens = tokenize(req.prompt_text)\n    return len(tokens)\n",
        '{"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hello"}], "n": 2}',
        "The emulator counts prompt tokens with a byte-pair encoder, as the providers bill them.",
    ]
    real = sum(o200k(s) for s in sample)
    approx = sum(tk.approx_count(s) for s in sample)
    assert abs(approx - real) / real < 0.10


def test_openai_chat_adds_documented_message_framing(calm):
    c = openai_client(calm)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi", "name": "ann"},
            {"role": "user", "content": "and again"}]
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=msgs, max_completion_tokens=5)
    text = o200k("\n".join(m["content"] for m in msgs))     # the wire module joins the messages' text
    # 3 per message, 1 per name, 3 priming the reply (OpenAI cookbook)
    assert r.usage.prompt_tokens == text + 3 * 3 + 1 + 3


def test_openai_tool_definitions_are_billed_as_input_once(calm):
    """The definitions are billed as their JSON, once (not also by a framing formula)."""
    import json

    c = openai_client(calm)
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                             "parameters": {"type": "object", "properties": {
                                                 "city": {"type": "string", "description": "City name"},
                                                 "unit": {"type": "string", "enum": ["c", "f"]}}}}}
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    bare = c.chat.completions.create(model="gpt-5.4-mini", messages=msgs, max_completion_tokens=5)
    tooled = c.chat.completions.create(model="gpt-5.4-mini", messages=msgs, tools=[tool], tool_choice="none",
                                       max_completion_tokens=5)
    expected = o200k(json.dumps([tool], separators=(",", ":")))
    assert tooled.usage.prompt_tokens - bare.usage.prompt_tokens == expected


@pytest.mark.parametrize("choice,prompt", [("auto", 346), ("any", 313)])
def test_anthropic_tool_prompt_overhead(choice, prompt):
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    body = {"tools": tools, "tool_choice": {"type": choice}}
    assert tk.prompt_overhead("anthropic", body) == prompt  # the definitions are billed by the dialect
    assert tk.prompt_overhead("anthropic", {"messages": []}) == 0


def test_batch_line_is_billed_the_same_prompt_tokens_as_online(emulator):
    import io
    import json
    import time
    emu = emulator("calm", time_scale=3600.0)
    c = openai_client(emu)
    body = {"model": "gpt-5.4-mini", "max_completion_tokens": 5,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Same prompt"}]}
    online = c.chat.completions.create(**body).usage.prompt_tokens
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body}
    f = c.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    end = time.monotonic() + 20
    while b.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < end:
        time.sleep(0.02)
        b = c.batches.retrieve(b.id)
    assert b.status == "completed"
    out = json.loads(c.files.content(b.output_file_id).text.splitlines()[0])
    assert out["response"]["body"]["usage"]["prompt_tokens"] == online == o200k("Be brief.\nSame prompt") + 9


def test_without_the_package_a_calibrated_approximation_counts(monkeypatch):
    monkeypatch.setattr(tk, "_fns", None)
    monkeypatch.setattr(tk, "_loaded", True)
    text = "Flex processing halves the price of requests that can wait."
    assert not tk.exact()
    assert tk.count_tokens(text) == tk.approx_count(text) == len(tk.tokenize(text))
    assert abs(tk.count_tokens(text) - o200k(text)) <= 2
