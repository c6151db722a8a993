"""Tool calls (issue 13 item 2) on all four wires, plain and streamed.

Forced choices always call the tool with arguments valid against its schema; ``auto``
calls at the ``tool_call_rate`` knob; a conversation whose last message is a tool
result is answered with text. Streams carry the providers' own tool-call deltas and
the SDKs' stream helpers assemble them.
"""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from flextier.emulator.clients import anthropic_client, bedrock_client, gemini_client, openai_client

WEATHER = {"type": "object", "properties": {"city": {"type": "string"},
                                            "unit": {"type": "string", "enum": ["c", "f"]},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "unit", "days"], "additionalProperties": False}
CLOCK = {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"],
         "additionalProperties": False}
OA_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER, "strict": True}},
            {"type": "function", "function": {"name": "get_time", "parameters": CLOCK}}]


def valid(schema: dict, args: object) -> bool:
    Draft202012Validator(schema).validate(args)
    return True


# -- OpenAI chat --------------------------------------------------------------------------------------
@pytest.mark.parametrize("choice", [{"type": "function", "function": {"name": "get_weather"}}, "required"])
def test_openai_forced_tool_choice(calm, choice):
    c = openai_client(calm)
    for i in range(5):
        r = c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": f"q{i}"}],
                                      tools=OA_TOOLS, tool_choice=choice)
        ch = r.choices[0]
        # as OpenAI does: a forced call ends with "stop"; only an "auto" call says "tool_calls"
        assert ch.finish_reason == "stop" and ch.message.content is None
        tc, = ch.message.tool_calls
        assert tc.id.startswith("call_") and tc.type == "function"
        if isinstance(choice, dict):
            assert tc.function.name == "get_weather"
        schema = WEATHER if tc.function.name == "get_weather" else CLOCK
        assert valid(schema, json.loads(tc.function.arguments))
    rows = calm.ledger()
    assert len(rows) == 5 and all(r["outcome"] == "ok" and r["output_tokens"] > 0 for r in rows)


def test_openai_tool_choice_none_answers_text(calm):
    r = openai_client(calm).chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}],
                                                    tools=OA_TOOLS, tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_openai_auto_follows_tool_call_rate(emulator, rate):
    emu = emulator("calm", tool_call_rate=rate)
    c = openai_client(emu)
    for i in range(6):
        r = c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": f"a{i}"}],
                                      tools=OA_TOOLS)
        assert (r.choices[0].message.tool_calls is not None) is (rate == 1.0)
        assert r.choices[0].finish_reason == ("tool_calls" if rate else "stop")


def test_openai_auto_rate_is_seeded_and_mixed(emulator):
    emu = emulator("calm", tool_call_rate=0.5)
    c = openai_client(emu)

    def calls() -> list[bool]:
        return [c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": f"m{i}"}],
                                          tools=OA_TOOLS).choices[0].message.tool_calls is not None
                for i in range(24)]
    first = calls()
    assert first == calls()
    assert 3 <= sum(first) <= 21


def test_openai_after_tool_result_answers_text(emulator):
    emu = emulator("calm", tool_call_rate=1.0)
    c = openai_client(emu)
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=msgs, tools=OA_TOOLS)
    tc = r.choices[0].message.tool_calls[0]
    msgs += [r.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": tc.id, "content": "sunny, 21C"}]
    r2 = c.chat.completions.create(model="gpt-5.4-mini", messages=msgs, tools=OA_TOOLS)
    assert r2.choices[0].message.tool_calls is None and r2.choices[0].message.content
    assert r2.choices[0].finish_reason == "stop"
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens


def test_openai_stream_tool_call_deltas(calm):
    c = openai_client(calm)
    chunks = list(c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "s"}],
                                            tools=OA_TOOLS, tool_choice="required", stream=True))
    parts = [d for ch in chunks for d in (ch.choices[0].delta.tool_calls or [])] if chunks else []
    assert parts[0].id.startswith("call_") and parts[0].function.name and parts[0].function.arguments == ""
    assert len(parts) > 2 and all(p.index == 0 for p in parts)
    args = "".join(p.function.arguments or "" for p in parts)
    assert valid(WEATHER if parts[0].function.name == "get_weather" else CLOCK, json.loads(args))
    assert chunks[-1].choices[0].finish_reason == "stop"             # forced ("required")
    auto = list(c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "s"}],
                                          tools=OA_TOOLS[:1], stream=True))
    calls = [d for ch in auto for d in (ch.choices[0].delta.tool_calls or [])]
    assert auto[-1].choices[0].finish_reason == ("tool_calls" if calls else "stop")
    with c.chat.completions.stream(model="gpt-5.4-mini", messages=[{"role": "user", "content": "s"}],
                                   tools=OA_TOOLS, tool_choice={"type": "function",
                                                                "function": {"name": "get_weather"}}) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert valid(WEATHER, json.loads(final.choices[0].message.tool_calls[0].function.arguments))


# -- OpenAI Responses ----------------------------------------------------------------------------------
RESP_TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}]


def test_responses_function_call_and_stream(calm):
    c = openai_client(calm)
    r = c.responses.create(model="gpt-5.4-mini", input="weather?", tools=RESP_TOOLS, tool_choice="required")
    fc = next(o for o in r.output if o.type == "function_call")
    assert fc.name == "get_weather" and fc.call_id.startswith("call_") and valid(WEATHER, json.loads(fc.arguments))
    events = []
    with c.responses.stream(model="gpt-5.4-mini", input="weather?", tools=RESP_TOOLS,
                            tool_choice={"type": "function", "name": "get_weather"}) as s:
        for e in s:
            events.append(e.type)
        final = s.get_final_response()
    assert "response.function_call_arguments.delta" in events and "response.function_call_arguments.done" in events
    fc = next(o for o in final.output if o.type == "function_call")
    assert valid(WEATHER, json.loads(fc.arguments))
    # the tool result, chained with previous_response_id, is answered with text
    r2 = c.responses.create(model="gpt-5.4-mini", previous_response_id=final.id, tools=RESP_TOOLS,
                            input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}])
    assert r2.output_text and not [o for o in r2.output if o.type == "function_call"]


# -- Anthropic -------------------------------------------------------------------------------------------
AN_TOOLS = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER},
            {"name": "get_time", "input_schema": CLOCK}]


@pytest.mark.parametrize("choice", [{"type": "tool", "name": "get_weather"}, {"type": "any"}])
def test_anthropic_forced_tool_use(calm, choice):
    r = anthropic_client(calm).messages.create(model="claude-sonnet-4-6", max_tokens=500, tools=AN_TOOLS,
                                               tool_choice=choice, messages=[{"role": "user", "content": "w"}])
    assert r.stop_reason == "tool_use"
    tu, = [b for b in r.content if b.type == "tool_use"]
    assert tu.id.startswith("toolu_")
    if choice["type"] == "tool":
        assert tu.name == "get_weather"
    assert valid(WEATHER if tu.name == "get_weather" else CLOCK, tu.input)


def test_anthropic_stream_and_round_trip(calm):
    c = anthropic_client(calm)
    msgs = [{"role": "user", "content": "weather?"}]
    with c.messages.stream(model="claude-sonnet-4-6", max_tokens=500, tools=AN_TOOLS, messages=msgs,
                           tool_choice={"type": "tool", "name": "get_weather"}) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    assert "input_json" in kinds
    tu = final.content[0]
    assert final.stop_reason == "tool_use" and tu.type == "tool_use" and valid(WEATHER, tu.input)
    msgs += [{"role": "assistant", "content": [b.model_dump() for b in final.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu.id, "content": "sunny"}]}]
    r = c.messages.create(model="claude-sonnet-4-6", max_tokens=500, tools=AN_TOOLS, messages=msgs)
    assert r.stop_reason == "end_turn" and r.content[0].type == "text"


# -- Gemini ------------------------------------------------------------------------------------------------
def test_gemini_function_calling_any_and_stream(calm):
    from google.genai import types
    c = gemini_client(calm)
    decl = types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER)
    cfg = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[decl])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")))
    r = c.models.generate_content(model="gemini-3-flash", contents="weather?", config=cfg)
    fc, = r.function_calls
    assert fc.name == "get_weather" and valid(WEATHER, fc.args)
    assert r.candidates[0].finish_reason == "STOP"
    chunks = list(c.models.generate_content_stream(model="gemini-3-flash", contents="weather?", config=cfg))
    calls = [f for ch in chunks for f in (ch.function_calls or [])]
    assert len(calls) == 1 and valid(WEATHER, calls[0].args)
    assert chunks[-1].usage_metadata.candidates_token_count > 0


def test_gemini_openapi_parameters_and_tool_result(emulator):
    from google.genai import types
    emu = emulator("calm", tool_call_rate=1.0)
    c = gemini_client(emu)
    decl = types.FunctionDeclaration(name="get_time", parameters=types.Schema(
        type="OBJECT", properties={"tz": types.Schema(type="STRING", nullable=True)}, required=["tz"]))
    cfg = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[decl])])
    r = c.models.generate_content(model="gemini-3-flash", contents="time?", config=cfg)
    fc, = r.function_calls
    assert fc.name == "get_time" and "tz" in fc.args
    contents = [types.Content(role="user", parts=[types.Part(text="time?")]), r.candidates[0].content,
                types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
                    name="get_time", response={"time": "12:00"}))])]
    r2 = c.models.generate_content(model="gemini-3-flash", contents=contents, config=cfg)
    assert not r2.function_calls and r2.text


# -- Bedrock -----------------------------------------------------------------------------------------------
BR_TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER}}}],
            "toolChoice": {"tool": {"name": "get_weather"}}}


def test_bedrock_converse_tool_config(calm):
    c = bedrock_client(calm)
    msgs = [{"role": "user", "content": [{"text": "weather?"}]}]
    r = c.converse(modelId="us.amazon.nova-pro-v1:0", messages=msgs, toolConfig=BR_TOOLS,
                   serviceTier={"type": "flex"})
    assert r["stopReason"] == "tool_use"
    tu = r["output"]["message"]["content"][0]["toolUse"]
    assert tu["name"] == "get_weather" and valid(WEATHER, tu["input"])
    msgs += [r["output"]["message"],
             {"role": "user", "content": [{"toolResult": {"toolUseId": tu["toolUseId"],
                                                          "content": [{"json": {"sky": "sunny"}}]}}]}]
    auto = {"tools": BR_TOOLS["tools"], "toolChoice": {"auto": {}}}
    r2 = c.converse(modelId="us.amazon.nova-pro-v1:0", messages=msgs, toolConfig=auto)
    assert r2["stopReason"] == "end_turn" and "text" in r2["output"]["message"]["content"][0]


def test_bedrock_converse_stream_tool_use(calm):
    c = bedrock_client(calm)
    r = c.converse_stream(modelId="us.amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "w"}]}],
                          toolConfig={"tools": BR_TOOLS["tools"], "toolChoice": {"any": {}}})
    events = list(r["stream"])
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e)
    assert valid(WEATHER, json.loads(args))
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"


def test_forced_unknown_tool_is_a_400_and_not_billed(calm):
    import anthropic
    import openai
    from botocore.exceptions import ClientError
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(calm).chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}],
                                                    tools=OA_TOOLS, tool_choice={"type": "function",
                                                                                 "function": {"name": "nope"}})
    assert ei.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError):
        openai_client(calm).chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}],
                                                    tool_choice="required")
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(calm).messages.create(model="claude-sonnet-4-6", max_tokens=50, tools=AN_TOOLS,
                                               tool_choice={"type": "tool", "name": "nope"},
                                               messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ClientError) as be:
        bedrock_client(calm).converse(modelId="us.amazon.nova-pro-v1:0",
                                      messages=[{"role": "user", "content": [{"text": "x"}]}],
                                      toolConfig={"tools": BR_TOOLS["tools"], "toolChoice": {"tool": {"name": "no"}}})
    assert be.value.response["Error"]["Code"] == "ValidationException"
    rows = calm.ledger()
    assert len(rows) == 4 and all(r["status"] == 400 and r["cost"] == "0" for r in rows)


def test_tool_call_cut_by_max_tokens(calm):
    r = openai_client(calm).chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "w"}], tools=OA_TOOLS, max_completion_tokens=6,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, reasoning_effort="none")
    ch = r.choices[0]
    assert ch.finish_reason == "length" and r.usage.completion_tokens <= 6
    with pytest.raises(ValueError):
        json.loads(ch.message.tool_calls[0].function.arguments)
    a = anthropic_client(calm).messages.create(model="claude-sonnet-4-6", max_tokens=6, tools=AN_TOOLS,
                                               tool_choice={"type": "tool", "name": "get_weather"},
                                               messages=[{"role": "user", "content": "w"}])
    assert a.stop_reason == "max_tokens" and a.usage.output_tokens <= 6
