"""On the ``peak`` profile, structured and tool requests shed and fall back exactly like plain chat.

Two emulators with the same seed and start serve the same sequence of flex calls through
``flextier.wrap`` (flex first, standard after one flex failure): one plain, one with a JSON
schema or a forced tool. The ledgers must match row for row (outcome, requested and served
tier): the capacity model does not look at what is generated. ``q_max=0`` and a tiny
``w_max_s`` make every flex verdict immediate (dispatch, shed or queue timeout), so the run
does not depend on wall-clock pacing; the load itself (rho 0.75 with seeded bursts) is peak's.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from jsonschema import Draft202012Validator

import flextier
from flextier import Policy
from flextier.emulator.clients import bedrock_client, gemini_client, openai_client

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["label", "score"],
          "properties": {"label": {"type": "string", "enum": ["spam", "ham"]},
                         "score": {"type": "number", "minimum": 0, "maximum": 1}}}
PEAK = dict(time_scale=1.0, latency_scale=0, q_max=0, w_max_s=0.05)
#: per provider, seeds whose peak minute at the start serves flex, sheds it (U >= theta_shed) and
#: times it out in the queue (theta_admit <= U < theta_shed)
SEEDS = {"openai": (0, 2, 5), "gemini": (3, 0, 1), "bedrock": (1, 0, 2)}


def _policy() -> Policy:
    return Policy(fallback=1, sleep=lambda s: None)


def _openai(emu, structured: str | None) -> None:
    c = flextier.wrap(openai_client(emu), _policy())
    kw: dict[str, Any] = {}
    if structured == "schema":
        kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "C", "strict": True,
                                                                        "schema": SCHEMA}}
    elif structured == "tool":
        kw["tools"] = [{"type": "function", "function": {"name": "classify", "parameters": SCHEMA}}]
        kw["tool_choice"] = "required"
    for i in range(3):
        r = c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": f"mail {i}"}],
                                      **kw)
        msg = r.choices[0].message
        if structured == "schema":
            Draft202012Validator(SCHEMA).validate(json.loads(msg.content))
        elif structured == "tool":
            Draft202012Validator(SCHEMA).validate(json.loads(msg.tool_calls[0].function.arguments))


def _gemini(emu, structured: str | None) -> None:
    from google.genai import types
    g = gemini_client(emu)
    c = flextier.wrap(g, _policy())
    cfg = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=SCHEMA) \
        if structured else None
    for i in range(3):
        r = c.models.generate_content(model="gemini-3-flash", contents=f"mail {i}", config=cfg)
        if structured:
            Draft202012Validator(SCHEMA).validate(json.loads(r.text))


def _bedrock(emu, structured: str | None) -> None:
    c = flextier.wrap(bedrock_client(emu), _policy())
    kw: dict[str, Any] = {}
    if structured:
        kw["toolConfig"] = {"tools": [{"toolSpec": {"name": "classify", "inputSchema": {"json": SCHEMA}}}],
                            "toolChoice": {"any": {}}}
    for i in range(3):
        r = c.converse(modelId="us.amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": f"m{i}"}]}],
                       **kw)
        if structured:
            Draft202012Validator(SCHEMA).validate(r["output"]["message"]["content"][0]["toolUse"]["input"])


def _trace(emulator: Callable[..., Any], seed: int, call: Callable, structured: str | None) -> list[tuple]:
    emu = emulator("peak", seed=seed, **PEAK)
    call(emu, structured)
    return [(r["outcome"], r["requested_tier"], r["served_tier"]) for r in emu.ledger()]


@pytest.mark.parametrize("call,structured", [(_openai, "schema"), (_openai, "tool"), (_gemini, "schema"),
                                             (_bedrock, "tool")],
                         ids=["openai-json_schema", "openai-tool", "gemini-schema", "bedrock-tool"])
def test_peak_sheds_and_falls_back_like_plain_chat(emulator, call, structured):
    outcomes: set[str] = set()
    for seed in SEEDS[call.__name__.strip("_")]:
        plain = _trace(emulator, seed, call, None)
        typed = _trace(emulator, seed, call, structured)
        assert typed == plain, f"seed {seed}"
        outcomes |= {o for o, _, _ in plain}
    # the seeds cover served flex, shed flex, queue timeouts, and the standard fallback after each
    assert outcomes == {"ok", "shed", "timeout"}
