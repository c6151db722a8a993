"""Flags apply in every lane and to every input shape; replaced body fields are said once (issue 18 §3, issue 11).

Before: ``--max-tokens`` reached OpenAI batch-format lines only with ``--max-cost`` (200 lines
with ``--max-tokens 20``: median 297 output tokens); a body's ``stream``, ``model`` and
``service_tier`` were dropped or replaced without a word, and a ``service_tier`` contradicting
``--tier`` ran anyway.
"""
from __future__ import annotations

import json

import pytest

from flextier.catalog import default_catalog
from flextier.cli import main
from flextier.jobs.input import request_to_call

MODEL = "openai/gpt-5.4-mini"


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _batch_line(i: int, **body) -> dict:
    return {"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": f"Write a long essay on {i}."}],
                     **body}}


@pytest.mark.parametrize("tier", ["flex", "standard", "batch"])
def test_max_tokens_applies_to_batch_lines_in_every_lane(write_jsonl, tier):
    p = write_jsonl([_batch_line(i) for i in range(12)])
    args = ["run", str(p), "--model", MODEL, "--emulate", "calm", "--time-scale", "3000", "--tier", tier,
            "--max-tokens", "20", "--quiet"]
    if tier != "flex":
        args += ["--deadline", "26h"]
    assert main(args) == 0
    lines = [json.loads(x) for x in open(next(__import__("pathlib").Path(".").glob("jobs-*.results.jsonl")))]
    assert len(lines) == 12
    out = [ln["response"]["body"]["usage"]["completion_tokens"] for ln in lines]
    assert max(out) <= 20, out  # before: only with --max-cost; the emulator's essays ran to hundreds
    assert {ln["flextier"]["tier"] for ln in lines} == {tier}


def test_job_params_fill_native_bodies_but_the_line_wins():
    entry = default_catalog().resolve(MODEL)
    chat = json.dumps(_batch_line(1, stream=True, service_tier="flex", model="gpt-4o"))
    r = request_to_call(chat, entry, {"max_tokens": 20, "temperature": 0.5})
    assert r.native["max_completion_tokens"] == 20 and r.native["temperature"] == 0.5
    assert r.native["model"] == entry.model_id
    assert not {"stream", "service_tier"} & set(r.native)
    own = json.dumps(_batch_line(2, max_tokens=7))
    assert request_to_call(own, entry, {"max_tokens": 20}).native == {**json.loads(own)["body"], "model": entry.model_id}
    resp = json.dumps({"custom_id": "r", "method": "POST", "url": "/v1/responses", "body": {"input": "hi"}})
    assert request_to_call(resp, entry, {"max_tokens": 20}).native["max_output_tokens"] == 20
    simple = json.dumps({"id": "s", "prompt": "hi", "params": {"model": "gpt-4o", "stream": True}})
    assert request_to_call(simple, entry, {"max_tokens": 20}).params == {"max_tokens": 20}
    gem = default_catalog().resolve("gemini/gemini-2.5-flash")
    assert request_to_call(chat, gem, {"max_tokens": 20}).params["max_tokens"] == 20  # portable lines too


def test_replaced_fields_are_said_once_with_their_count(emulator, write_jsonl, capsys):
    emu = emulator("calm", time_scale=3000)
    recs = [_batch_line(0, model="gpt-4o"), _batch_line(1, model="gpt-4o", stream=True),
            _batch_line(2, model="gpt-4o-mini", stream=True, stream_options={"include_usage": True}),
            _batch_line(3, service_tier="auto"), _batch_line(4)]
    p = write_jsonl(recs)
    assert main(["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--max-tokens", "20"]) == 0
    err = capsys.readouterr().err
    warns = [ln for ln in err.splitlines() if ln.startswith("flextier: warning:")]
    assert len(warns) == 3, err
    assert "3 lines name another model (gpt-4o, gpt-4o-mini, ...); --model openai/gpt-5.4-mini replaces it" in err
    assert "2 lines ask for streaming" in err
    assert "1 lines set service_tier" in err
    sent = {r.get("model") for r in emu.ledger()}
    assert len(emu.ledger()) == 5 and all("gpt-5.4-mini" in str(m) for m in sent)
    # once per job: a rerun (resume) does not repeat them
    assert main(["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--max-tokens", "20"]) == 0
    assert "warning:" not in capsys.readouterr().err


@pytest.mark.parametrize("value,tier", [("flex", "standard"), ("default", "flex"), ("priority", "auto"),
                                        ("flex", "batch"), ("turbo", "auto")])
def test_contradicting_service_tier_is_refused_before_anything_is_sent(emulator, write_jsonl, capsys, value, tier):
    emu = emulator("calm", time_scale=3000)
    p = write_jsonl([_batch_line(0), _batch_line(1, service_tier=value)])
    args = ["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--tier", tier, "--quiet"]
    if tier in ("standard", "batch"):
        args += ["--deadline", "26h"]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{p}:2: body.service_tier: " in err and "Traceback" not in err
    assert emu.ledger() == []


def test_consistent_service_tier_runs(emulator, write_jsonl, capsys):
    emu = emulator("calm", time_scale=3000)
    p = write_jsonl([_batch_line(0, service_tier="flex"), _batch_line(1, service_tier="auto")])
    assert main(["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url, "--tier", "flex",
                 "--quiet"]) == 0
    assert "2 lines set service_tier" in capsys.readouterr().err
