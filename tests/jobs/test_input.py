"""Streamed input reading: every malformed record becomes an error with file, line and field."""
from __future__ import annotations

import csv
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flextier.errors import UserInputError
from flextier.jobs.input import (MAX_LINE_BYTES, InvalidLine, JobItem, PromptTemplate, item_from_object, iter_input,
                                 request_to_call)
from flextier.catalog import default_catalog


def _collect(path, **kw):
    items, bad = [], []
    for r in iter_input(path, **kw):
        (items if isinstance(r, JobItem) else bad).append(r)
    return items, bad


def test_batch_lines_kept_verbatim(write_jsonl):
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}}
    resp = {"custom_id": "b", "method": "POST", "url": "/v1/responses", "body": {"input": "hello"}}
    p = write_jsonl([line, "", resp])
    items, bad = _collect(p)
    assert not bad
    assert [i.custom_id for i in items] == ["a", "b"]
    assert [i.line for i in items] == [1, 3]
    assert json.loads(items[0].request) == line
    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    req = request_to_call(items[0].request, entry)
    assert req.native["model"] == entry.model_id and req.endpoint == "chat" and req.custom_id == "a"
    assert request_to_call(items[1].request, entry).endpoint == "responses"


def test_simple_lines(write_jsonl):
    p = write_jsonl([{"id": 1, "prompt": "x"}, {"id": "m", "messages": [{"role": "user", "content": "y"}],
                                                 "params": {"temperature": 0}}])
    items, bad = _collect(p)
    assert not bad and [i.custom_id for i in items] == ["1", "m"]
    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    r0 = request_to_call(items[0].request, entry, {"max_tokens": 7})
    assert r0.messages == [{"role": "user", "content": "x"}] and r0.params == {"max_tokens": 7}
    assert request_to_call(items[1].request, entry, {"temperature": 1}).params == {"temperature": 0}


@pytest.mark.parametrize("rec,field", [
    ({"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}, "method"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}, "url"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": "hi"}},
     "body.messages"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
      "body": {"messages": [{"role": "user", "content": 5}]}}, "body.messages[0].content"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
      "body": {"messages": [{"content": "x"}]}}, "body.messages[0].role"),
    ({"custom_id": 3.5, "method": "POST", "url": "/v1/chat/completions", "body": {}}, "custom_id"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {"input": 3}}, "body.input"),
    ({"id": "a"}, "prompt"),
    ({"id": "a", "prompt": "x", "messages": []}, "prompt"),
    ({"id": "", "prompt": "x"}, "id"),
    ({"id": "a", "prompt": ["x"]}, "prompt"),
    ({"prompt": "x"}, "id"),
    ({"id": "a", "messages": []}, "messages"),
])
def test_invalid_fields(write_jsonl, rec, field):
    p = write_jsonl([{"id": "ok", "prompt": "fine"}, rec])
    items, bad = _collect(p)
    assert len(items) == 1 and len(bad) == 1
    assert bad[0].line == 2 and bad[0].field == field
    err = bad[0].to_error(str(p))
    assert f"{p}:2: {field}: " in err.one_line()


def test_broken_bytes_and_json(write_jsonl):
    p = write_jsonl([b"\xff\xfe{not utf8", b'{"id": "a", "prompt": "trunc', b"[1, 2]", b"null",
                     b'{"id": "z", "prompt": "\\ud800"}', b"{" * 100_000, {"id": "fine", "prompt": "ok"}])
    items, bad = _collect(p)
    assert [i.custom_id for i in items] == ["fine"]
    assert [b.line for b in bad] == [1, 2, 3, 4, 5, 6]
    assert "UTF-8" in bad[0].message and "malformed JSON" in bad[1].message
    assert "surrogate" in bad[4].message


def test_huge_line_is_rejected_without_loading(tmp_path):
    p = tmp_path / "big.jsonl"
    with open(p, "wb") as f:
        f.write(b'{"id": "big", "prompt": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n')
        f.write(b'{"id": "small", "prompt": "y"}\n')
    items, bad = _collect(p)
    assert [i.custom_id for i in items] == ["small"] and items[0].line == 2
    assert bad[0].line == 1 and "longer than" in bad[0].message


def test_missing_file_and_bom(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        list(iter_input(tmp_path / "nope.jsonl"))
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "a", "prompt": "x"}\n')
    assert [i.custom_id for i in _collect(p)[0]] == ["a"]


def test_csv_with_template(tmp_path):
    p = tmp_path / "rows.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "body"])
        w.writerow(["r1", "Hello", "multi\nline"])
        w.writerow(["r2", "Bye", ""])
        w.writerow(["", "no id", "x"])
        w.writerow(["r4", "short"])
    items, bad = _collect(p, prompt_template="Title: {title} {{literal}} Body: {body}")
    assert [i.custom_id for i in items] == ["r1", "r2"]
    assert json.loads(items[0].request)["prompt"] == "Title: Hello {literal} Body: multi\nline"
    assert [(b.line, b.field) for b in bad] == [(5, "id"), (6, None)]
    with pytest.raises(UserInputError) as ei:
        list(iter_input(p, prompt_template="{nope}"))
    assert ei.value.field == "--prompt-template"
    with pytest.raises(UserInputError):
        list(iter_input(p))  # no prompt column, no template


def test_csv_not_utf8(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"id,prompt\na,caf\xe9\nb,ok\n")
    items, bad = _collect(p)
    assert bad and bad[0].line == 2 and "UTF-8" in bad[0].message


def test_template_parsing():
    assert PromptTemplate("a {x} b {{y}}").columns == ["x"]
    for t in ("a { b", "}", "{}"):
        with pytest.raises(UserInputError):
            PromptTemplate(t)


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    p = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["one", "two", None], "n": [1, 2, 3]}), p)
    items, bad = _collect(p, prompt_template="Summarise {text} ({n})")
    assert [i.custom_id for i in items] == ["row-1", "row-2", "row-3"]
    assert json.loads(items[2].request)["prompt"] == "Summarise  (3)"
    bad_file = tmp_path / "bad.parquet"
    bad_file.write_bytes(b"not parquet")
    with pytest.raises(UserInputError, match="Parquet"):
        list(iter_input(bad_file, prompt_template="{x}"))


def test_item_from_object():
    assert isinstance(item_from_object("hello", 0), JobItem)
    assert item_from_object({"prompt": "x"}, 4).custom_id == "4"
    assert isinstance(item_from_object({"id": "a"}, 0), InvalidLine)
    assert isinstance(item_from_object(42, 0), InvalidLine)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.binary(max_size=200),
                                st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                             lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                                 st.sampled_from(["id", "prompt", "messages", "custom_id", "body",
                                                                  "method", "url", "role", "content"]), c,
                                                 max_size=5), max_leaves=12).map(json.dumps).map(str.encode)),
                      max_size=20))
def test_fuzz_never_raises(tmp_path_factory, lines):
    p = tmp_path_factory.mktemp("fz") / "f.jsonl"
    p.write_bytes(b"\n".join(lines))
    for r in iter_input(p):
        if isinstance(r, InvalidLine):
            assert r.line >= 1 and r.message
        else:
            json.loads(r.request)
