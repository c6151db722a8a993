"""Structured output (issue 13 item 1): schema-valid, seeded JSON on every provider's wire.

Outputs are checked with the ``jsonschema`` validator against the schema the request sent,
and parsed by the SDKs' own helpers (``.parse()``, ``.parsed``) where they have one.
"""
from __future__ import annotations

import datetime
import json
import random
import uuid
from enum import Enum
from typing import Literal, Optional, Union

import jsonschema
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel, Field

from flextier.emulator.clients import anthropic_client, bedrock_client, gemini_client, openai_client
from flextier.emulator.structured import instance, normalize_gemini


class Color(str, Enum):
    red = "red"
    blue = "blue"


class Line(BaseModel):
    sku: str
    qty: int = Field(ge=1, le=50)
    price: float = Field(ge=0)


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Node(BaseModel):
    name: str
    children: list["Node"] = []


class Invoice(BaseModel):
    number: str
    status: Literal["open", "paid", "void"]
    lines: list[Line]
    note: Optional[str]


class Everything(BaseModel):
    """Every pydantic construct the generator must cover."""

    name: str = Field(min_length=3, max_length=12)
    age: int = Field(ge=0, le=120)
    score: float = Field(gt=0, lt=1)
    email: Optional[str] = None
    color: Color
    lines: list[Line] = Field(min_length=1, max_length=3)
    boss: Optional["Everything"] = None
    pet: Union[Cat, Dog] = Field(discriminator="kind")
    tags: set[str]
    meta: dict[str, int]
    when: datetime.datetime
    day: datetime.date
    uid: uuid.UUID
    tree: Node
    pair: tuple[int, str]
    step: int = Field(multiple_of=5, ge=3, le=40)


def _check(schema: dict, value: object) -> None:
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(value)


# -- the generator --------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [Everything, Invoice, Node])
def test_generator_valid_for_pydantic_schemas(model):
    from openai.lib._pydantic import to_strict_json_schema
    for schema in (model.model_json_schema(), model.model_json_schema(mode="serialization")):
        for seed in range(150):
            v = instance(schema, random.Random(seed))
            _check(schema, v)
            model.model_validate(v)
    if model is not Everything:      # strict mode cannot express dict[str, int] / sets
        strict = to_strict_json_schema(model)
        for seed in range(100):
            _check(strict, instance(strict, random.Random(seed)))


@pytest.mark.parametrize("model", [Everything, Invoice])
def test_generator_honours_constraints_moved_into_descriptions(model):
    """Anthropic's SDK moves keywords its API does not enforce into descriptions; models obey them."""
    from anthropic.lib._parse._transform import transform_schema
    schema = transform_schema(model.model_json_schema())
    assert "\"maximum\":" not in json.dumps(schema) and "{maximum: " in json.dumps(schema)   # moved, not kept
    for seed in range(150):
        model.model_validate(instance(schema, random.Random(seed)))


def test_generator_is_seeded():
    schema = Everything.model_json_schema()
    assert instance(schema, random.Random(3)) == instance(schema, random.Random(3))
    assert len({json.dumps(instance(schema, random.Random(s)), sort_keys=True) for s in range(10)}) == 10


def test_gemini_schema_dialect():
    g = {"type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": True},
                                          "b": {"type": "ARRAY", "items": {"type": "INTEGER"}, "maxItems": 2},
                                          "c": {"type": "STRING", "enum": ["x", "y"]}},
         "required": ["a", "b", "c"], "propertyOrdering": ["c", "b", "a"]}
    js = normalize_gemini(g)
    for seed in range(50):
        v = instance(js, random.Random(seed))
        _check(js, v)
        assert list(v) == ["c", "b", "a"] and len(v["b"]) <= 2


# -- OpenAI -----------------------------------------------------------------------------------------
def test_openai_chat_parse_strict(calm):
    c = openai_client(calm)
    r = c.chat.completions.parse(model="gpt-5.4-mini", messages=[{"role": "user", "content": "extract"}],
                                 response_format=Invoice)
    msg = r.choices[0].message
    assert isinstance(msg.parsed, Invoice) and r.choices[0].finish_reason == "stop"
    from openai.lib._pydantic import to_strict_json_schema
    _check(to_strict_json_schema(Invoice), json.loads(msg.content))
    row, = calm.ledger()
    assert row["output_tokens"] == r.usage.completion_tokens and row["outcome"] == "ok"


def test_openai_json_schema_not_strict_and_json_object(calm):
    c = openai_client(calm)
    schema = Everything.model_json_schema()
    for seed in range(4):
        r = c.chat.completions.create(model="gpt-5.4-mini", seed=seed,
                                      messages=[{"role": "user", "content": "fill it"}],
                                      response_format={"type": "json_schema",
                                                       "json_schema": {"name": "E", "schema": schema}})
        v = json.loads(r.choices[0].message.content)
        _check(schema, v)
        Everything.model_validate(v)
    r = c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "json please"}],
                                  response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    # as OpenAI: JSON mode needs the word "json" in the messages
    import openai
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}],
                                  response_format={"type": "json_object"})
    r = c.responses.create(model="gpt-5.4-mini", input="answer in JSON", text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(r.output_text), dict)


def test_openai_structured_is_deterministic(calm):
    c = openai_client(calm)
    kw = dict(model="gpt-5.4-mini", messages=[{"role": "user", "content": "same"}], response_format=Invoice)
    a = c.chat.completions.parse(**kw).choices[0].message.content
    b = c.chat.completions.parse(**kw).choices[0].message.content
    other = c.chat.completions.parse(**kw, seed=99).choices[0].message.content
    assert a == b and other != a


def test_openai_structured_stream(calm):
    c = openai_client(calm)
    with c.chat.completions.stream(model="gpt-5.4-mini", messages=[{"role": "user", "content": "stream"}],
                                   response_format=Invoice) as s:
        deltas = [e.delta for e in s if e.type == "content.delta"]
        final = s.get_final_completion()
    assert len(deltas) > 1
    assert isinstance(final.choices[0].message.parsed, Invoice)
    assert "".join(deltas) == final.choices[0].message.content


def test_openai_structured_truncated_by_max_tokens(calm):
    r = openai_client(calm).chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}], max_completion_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "E",
                                                                "schema": Everything.model_json_schema()}})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens <= 5
    with pytest.raises(ValueError):
        json.loads(r.choices[0].message.content)


def test_responses_parse_and_stream(calm):
    c = openai_client(calm)
    r = c.responses.parse(model="gpt-5.4-mini", input="extract", text_format=Invoice)
    assert isinstance(r.output_parsed, Invoice)
    assert r.text.format.type == "json_schema"
    with c.responses.stream(model="gpt-5.4-mini", input="extract", text_format=Invoice) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert isinstance(final.output_parsed, Invoice)


# -- Gemini -----------------------------------------------------------------------------------------
def test_gemini_response_schema_parsed(calm):
    from google.genai import types
    c = gemini_client(calm)
    r = c.models.generate_content(model="gemini-3-flash", contents="extract",
                                  config=types.GenerateContentConfig(response_mime_type="application/json",
                                                                     response_schema=Invoice))
    assert isinstance(r.parsed, Invoice)
    _check(Invoice.model_json_schema(), json.loads(r.text))


def test_gemini_response_json_schema_and_stream(calm):
    from google.genai import types
    c = gemini_client(calm)
    schema = Everything.model_json_schema()
    cfg = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    r = c.models.generate_content(model="gemini-3-flash", contents="fill", config=cfg)
    _check(schema, json.loads(r.text))
    text = "".join(ch.text or "" for ch in c.models.generate_content_stream(model="gemini-3-flash",
                                                                           contents="fill", config=cfg))
    _check(schema, json.loads(text))


def test_gemini_enum_mime_type(calm):
    from google.genai import types

    class Mood(str, Enum):
        happy = "happy"
        sad = "sad"
    g = gemini_client(calm)
    r = g.models.generate_content(model="gemini-3-flash", contents="how do I feel?",
                                  config=types.GenerateContentConfig(response_mime_type="text/x.enum",
                                                                     response_schema=Mood))
    assert r.text in ("happy", "sad") and isinstance(r.parsed, Mood)


# -- Anthropic and Bedrock --------------------------------------------------------------------------
def test_anthropic_output_config_format(calm):
    schema = Invoice.model_json_schema()
    r = anthropic_client(calm).messages.create(
        model="claude-sonnet-4-6", max_tokens=2000, messages=[{"role": "user", "content": "extract"}],
        output_config={"format": {"type": "json_schema", "schema": schema}})
    assert r.stop_reason == "end_turn"
    _check(schema, json.loads(r.content[0].text))


def test_anthropic_messages_parse(calm):
    r = anthropic_client(calm).messages.parse(model="claude-sonnet-4-6", max_tokens=2000, output_format=Invoice,
                                              messages=[{"role": "user", "content": "extract"}])
    assert isinstance(r.parsed_output, Invoice)


def test_bedrock_output_config_json_schema(calm):
    schema = Invoice.model_json_schema()
    r = bedrock_client(calm).converse(
        modelId="us.amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "extract"}]}],
        inferenceConfig={"maxTokens": 2000},
        outputConfig={"textFormat": {"type": "json_schema",
                                     "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "inv"}}}})
    _check(schema, json.loads(r["output"]["message"]["content"][0]["text"]))
    assert r["stopReason"] == "end_turn"


def test_schema_counts_as_input_tokens(calm):
    c = openai_client(calm)
    plain = c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "extract"}])
    typed = c.chat.completions.parse(model="gpt-5.4-mini", messages=[{"role": "user", "content": "extract"}],
                                     response_format=Invoice)
    assert typed.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_invalid_json_validation_is_real():
    """The validator used above does reject a wrong instance (the checks can fail)."""
    with pytest.raises(jsonschema.ValidationError):
        _check(Invoice.model_json_schema(), {"number": "1", "status": "lost", "lines": [], "note": None})


# -- property: any schema built from the supported keywords gets a valid instance ------------------
def _schemas():
    from hypothesis import strategies as st
    names = st.sampled_from(["a", "b", "c", "d", "e"])
    leaf = st.one_of(
        st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
                  st.integers(-50, 50), st.integers(0, 20)),
        st.builds(lambda lo, ex: {"type": "number", ("exclusiveMinimum" if ex else "minimum"): lo,
                                  "maximum": lo + 5}, st.integers(-5, 5), st.booleans()),
        st.builds(lambda lo, span: {"type": "string", "minLength": lo, "maxLength": lo + span},
                  st.integers(0, 8), st.integers(0, 8)),
        st.sampled_from([{"type": "string", "format": f} for f in ("date-time", "date", "email", "uuid", "uri")]),
        st.just({"type": "boolean"}), st.just({"type": "null"}),
        st.lists(st.sampled_from(["x", "y", 1, None, True]), min_size=1, max_size=4, unique=True).map(
            lambda vs: {"enum": vs}),
        st.builds(lambda step: {"type": "integer", "multipleOf": step, "minimum": 1, "maximum": 60},
                  st.integers(2, 7)),
        st.just({"$ref": "#/$defs/Item"}),
    )

    def extend(inner):
        obj = st.builds(lambda props, req, closed: {"type": "object", "properties": props,
                                                    "required": [k for k in props if k in req],
                                                    **({"additionalProperties": False} if closed else {})},
                        st.dictionaries(names, inner, max_size=4), st.sets(names), st.booleans())
        arr = st.builds(lambda it, lo, span: {"type": "array", "items": it, "minItems": lo, "maxItems": lo + span},
                        inner, st.integers(0, 2), st.integers(0, 3))
        return st.one_of(obj, arr, st.lists(inner, min_size=1, max_size=3).map(lambda bs: {"anyOf": bs}),
                         inner.map(lambda s: {"type": [s["type"], "null"]} if isinstance(s.get("type"), str)
                                   and s["type"] not in ("object", "array", "null") else s))
    body = st.recursive(leaf, extend, max_leaves=12)
    item = {"type": "object", "properties": {"id": {"type": "integer"}, "next": {"anyOf": [
        {"$ref": "#/$defs/Item"}, {"type": "null"}]}}, "required": ["id", "next"], "additionalProperties": False}
    return body.map(lambda s: {**s, "$defs": {"Item": item}})


def test_generator_property_valid_for_random_schemas():
    from hypothesis import given, settings, HealthCheck
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(_schemas(), st.integers(0, 2**32))
    def check(schema, seed):
        _check(schema, instance(schema, random.Random(seed)))
    check()
