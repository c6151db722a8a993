"""Fuzzed job files through the real CLI: never a traceback, exit 2 naming file:line and field, nothing sent.

Hypothesis builds files line by line from valid records and every kind of bad one (random
bytes, truncated JSON, wrong types, huge fields, non-UTF-8, duplicate ids). Each generated
line carries what the runner must say about it (valid / invalid with field / blank), so
the CLI's verdict is checked line by line against an independent oracle, and the emulator's
ledger (which records each request's ``x-flextier-item``) proves what was sent.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardening_support import MODEL, PY, python_env, run_cli

SETTINGS = settings(max_examples=int(os.environ.get("FLEXTIER_FUZZ_EXAMPLES", "35")), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# -- line strategies: (bytes, verdict) where verdict is ("valid", id) | ("invalid", field) | ("blank", None)

_id_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                   min_size=1, max_size=24)
ids = st.one_of(_id_text, st.integers(min_value=0, max_value=10**6))
prompts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60) \
    .filter(lambda s: s.strip())


def _dump(obj: Any, ascii_: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_).encode("utf-8")


@st.composite
def valid_line(draw):
    i = draw(ids)
    p = draw(prompts)
    shape = draw(st.sampled_from(["simple", "messages", "batch"]))
    if shape == "simple":
        obj = {"id": i, "prompt": p}
        if draw(st.booleans()):
            obj["params"] = {"temperature": 0.5}
    elif shape == "messages":
        obj = {"id": i, "messages": [{"role": "user", "content": p}]}
    else:
        obj = {"custom_id": str(i), "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "x", "messages": [{"role": "user", "content": p}], "max_tokens": 16}}
    return _dump(obj, draw(st.booleans())), ("valid", str(i))


@st.composite
def wrong_type_line(draw):
    i = draw(_id_text.map(lambda s: "bad-" + s))
    junk = draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                          st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                               max_size=2)))
    case = draw(st.sampled_from(["id", "prompt", "messages", "system", "params", "custom_id", "body", "method",
                                 "max_tokens"]))
    if case == "id":
        if isinstance(junk, int) and not isinstance(junk, bool):
            junk = [junk]  # an integer id is valid
        return _dump({"id": junk, "prompt": "p"}, True), ("invalid", "id")
    if case == "prompt":
        return _dump({"id": i, "prompt": junk}, True), ("invalid", "prompt")
    if case == "messages":
        return _dump({"id": i, "messages": junk}, True), ("invalid", "messages")
    if case == "system":
        return _dump({"id": i, "prompt": "p", "system": junk if junk is not None else 5}, True), ("invalid", "system")
    if case == "params":
        return _dump({"id": i, "prompt": "p", "params": junk if not isinstance(junk, dict) else 1}, True), \
            ("invalid", "params")
    body = {"messages": [{"role": "user", "content": "p"}]}
    if case == "custom_id":
        cid = junk if not (isinstance(junk, int) and not isinstance(junk, bool)) else [junk]
        return _dump({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}, True), \
            ("invalid", "custom_id")
    if case == "body":
        return _dump({"custom_id": i, "method": "POST", "url": "/v1/chat/completions",
                      "body": junk if not isinstance(junk, dict) else "x"}, True), ("invalid", "body")
    if case == "method":
        return _dump({"custom_id": i, "method": "GET", "url": "/v1/chat/completions", "body": body}, True), \
            ("invalid", "method")
    mt = junk if not (isinstance(junk, int) and not isinstance(junk, bool) and junk > 0) else -1
    if mt is None:
        mt = 0
    return _dump({"custom_id": i, "method": "POST", "url": "/v1/chat/completions",
                  "body": {**body, "max_tokens": mt}}, True), ("invalid", "body.max_tokens")


@st.composite
def truncated_line(draw):
    raw, _ = draw(valid_line())
    k = draw(st.integers(min_value=1, max_value=len(raw) - 1))
    return raw[:k], ("invalid", None)


@st.composite
def random_bytes_line(draw):
    b = draw(st.binary(max_size=40)).replace(b"\n", b"")
    return draw(st.sampled_from([b"#", b"\xff", b"[", b"x"])) + b, ("invalid", None)


@st.composite
def non_utf8_line(draw):
    raw, _ = draw(valid_line())
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
    k = draw(st.integers(min_value=1, max_value=len(raw) - 1))
    return raw[:k] + bad + raw[k:], ("invalid", None)


@st.composite
def huge_line(draw):
    kind = draw(st.sampled_from(["id", "prompt"]))
    if kind == "id":
        return _dump({"id": "i" * draw(st.integers(513, 5000)), "prompt": "p"}, True), ("invalid", "id")
    i = draw(_id_text)
    return _dump({"id": i, "prompt": "w " * draw(st.integers(2000, 20000))}, True), ("valid", i)


@st.composite
def misc_invalid(draw):
    return draw(st.sampled_from([
        (b"{}", ("invalid", "id")),
        (b"[1, 2]", ("invalid", None)),
        (b'"just a string"', ("invalid", None)),
        (b'{"id": "  ", "prompt": "p"}', ("invalid", "id")),
        (b'{"id": "e", "prompt": "   "}', ("invalid", "prompt")),
        (b'{"id": "pm", "prompt": "p", "messages": []}', ("invalid", "prompt")),
        (b'{"id": "m0", "messages": []}', ("invalid", "messages")),
        (b'{"id": "m1", "messages": [{"role": "wizard", "content": "x"}]}', ("invalid", "messages[0].role")),
        (b'{"id": "m2", "messages": [{"role": "user"}]}', ("invalid", "messages[0].content")),
        (b'{"id": "ls", "prompt": "\\ud800"}', ("invalid", None)),
        (b'{"custom_id": "u", "method": "POST", "url": "/v1/embeddings", "body": {}}', ("invalid", "url")),
        (b"[" * 100_000, ("invalid", None)),
        (b"   ", ("blank", None)),
        (b"", ("blank", None)),
    ]))


lines = st.lists(st.one_of(valid_line(), valid_line(), wrong_type_line(), truncated_line(), random_bytes_line(),
                           non_utf8_line(), huge_line(), misc_invalid()), min_size=1, max_size=12)


def oracle(lines_: list[tuple[bytes, tuple[str, Any]]]) -> tuple[dict[int, str | None], list[tuple[int, str]]]:
    """(invalid line -> field, valid (line, id)) including duplicate ids (later ones are invalid)."""
    invalid: dict[int, str | None] = {}
    valid: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, (_, (kind, x)) in enumerate(lines_, start=1):
        if kind == "invalid":
            invalid[n] = x
        elif kind == "valid":
            if x in seen:
                invalid[n] = "dup"
            else:
                seen[x] = n
                valid.append((n, x))
    return invalid, valid


def write(tmp: Path, name: str, lines_: list[tuple[bytes, Any]], bom: bool) -> Path:
    p = tmp / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"".join(raw + b"\n" for raw, _ in lines_))
    return p


_ERR = re.compile(r"^flextier: invalid: (.+?):(\d+): (.*)$")


def check_invalid_output(rc: int, se: str, path: Path, invalid: dict[int, str | None]) -> None:
    assert "Traceback" not in se, se
    assert rc == 2, se
    err_lines = [ln for ln in se.splitlines() if ln.strip()]
    assert err_lines and all(ln.startswith("flextier: ") for ln in err_lines), se
    summary = [ln for ln in err_lines if ln.startswith("flextier: error: ")]
    assert len(summary) == 1
    assert f"{len(invalid)} invalid record" in summary[0], (summary, invalid)
    assert str(path) in summary[0]
    reported = 0
    for ln in err_lines:
        m = _ERR.match(ln)
        if not m:
            continue
        reported += 1
        assert m.group(1) == str(path)
        n = int(m.group(2))
        assert n in invalid, (n, invalid, ln)
        field = invalid[n]
        msg = m.group(3)
        if field == "dup":
            assert re.match(r"(id|custom_id): duplicate id", msg), ln
        elif field is not None:
            assert msg.startswith(f"{field}: "), (field, ln)
    assert reported == min(len(invalid), 20)


@SETTINGS
@given(lines_=lines, bom=st.booleans())
def test_fuzzed_job_file(calm_emu, tmp_path_factory, lines_, bom):
    tmp = tmp_path_factory.mktemp("fz")
    path = write(tmp, "jobs.jsonl", lines_, bom)
    invalid, valid = oracle(lines_)
    before = len(calm_emu.ledger())
    base = ["run", str(path), "--model", MODEL, "--base-url", calm_emu.openai_base_url, "--max-tokens", "8",
            "--concurrency", "16", "-q"]
    rc, so, se = run_cli(base + ["--store", str(tmp / "a.db"), "--out", str(tmp / "a.jsonl")])
    if invalid:
        check_invalid_output(rc, se, path, invalid)
        assert len(calm_emu.ledger()) == before, "a request was sent for a file with invalid lines"
        assert not (tmp / "a.jsonl").exists() or not (tmp / "a.jsonl").read_bytes()
        # with --skip-invalid: exactly the valid lines are sent
        rc, so, se = run_cli(base + ["--store", str(tmp / "b.db"), "--out", str(tmp / "b.jsonl"), "--skip-invalid"])
        out_file = tmp / "b.jsonl"
    else:
        out_file = tmp / "a.jsonl"
    assert "Traceback" not in se, se
    if not valid:
        assert rc == 2 or (rc == 0 and not len(calm_emu.ledger()) - before), se
        assert len(calm_emu.ledger()) == before
        return
    assert rc == 0, se
    sent = {unquote(r["item"]) for r in calm_emu.ledger()[before:]}
    assert sent == {i for _, i in valid}
    got = [json.loads(x)["custom_id"] for x in out_file.read_text("utf-8").splitlines()]
    assert sorted(got) == sorted(i for _, i in valid)


def test_fuzzed_files_through_subprocess(calm_emu, tmp_path):
    """The console entry in a real process: the same one-line errors, exit 2, nothing sent."""
    cases = [
        [(b'{"id": "a", "prompt": "ok"}', None), (b'{"id": "a", "prompt": "again"}', None)],
        [(b'{"id": "a", "prompt": "ok"}', None), (b"\xff\xfe{garbage", None), (b'{"id": 1.5, "prompt": "x"}', None)],
        [(b'{"id": "b", "prompt": ' + b'"x' * 3, None)],
    ]
    before = len(calm_emu.ledger())
    for k, c in enumerate(cases):
        p = write(tmp_path, f"j{k}.jsonl", c, False)
        r = subprocess.run([PY, "-m", "flextier", "run", str(p), "--model", MODEL, "--base-url",
                            calm_emu.openai_base_url, "--store", str(tmp_path / f"{k}.db"), "--out",
                            str(tmp_path / f"{k}.out"), "-q"], capture_output=True, text=True, timeout=60,
                           env=python_env(), cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert all(ln.startswith("flextier: ") for ln in r.stderr.splitlines()), r.stderr
        assert f"{p}:" in r.stderr
    assert len(calm_emu.ledger()) == before
