"""`--max-cost` bounds each request by its own max_tokens, else the catalog's maximum output (issue 11 item 3),
and a request with ``n`` answers reserves ``n`` outputs (issue 18 section 2).

Before: ``--max-cost`` without ``--max-tokens`` was refused outright, and ``n: 5`` was reserved as one answer.
Against the emulator on 127.0.0.1 through the real CLI.
"""
from __future__ import annotations

import json
from pathlib import Path
from decimal import Decimal

import pytest

from flextier._types import CallRequest
from flextier.catalog import default_catalog
from flextier.cli import main
from flextier.policy.budget import output_bound, request_answers, request_output_limit

MODEL = "openai/gpt-5.4-mini"          # catalog: 128,000 output tokens max, $4.50 / 1M output at standard
PER_REQUEST_AT_CATALOG_MAX = Decimal(128_000) * Decimal("4.50") / 1_000_000   # $0.576, before the prompt


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _billed(emu) -> Decimal:
    return sum((Decimal(r["cost"]) for r in emu.ledger() if r.get("cost")), Decimal(0))


def _run(path, *extra):
    return main(["run", str(path), "--model", MODEL, "--emulate", "calm", "--time-scale", "3000", "--quiet", *extra])


def _out():
    """The default results file of the one job run from jobs.jsonl (``jobs-<hash>.results.jsonl``)."""
    (found,) = Path(".").glob("jobs-*.results.jsonl")
    return found


def test_max_cost_without_max_tokens_runs_bounded_by_the_catalog(tmp_path, capsys):
    p = _lines(tmp_path / "jobs.jsonl", [{"id": f"q{i}", "prompt": f"Say a word about {i}."} for i in range(6)])
    # $2 holds three catalog-bounded reservations ($0.576 + prompt each) at a time: the job finishes
    assert _run(p, "--max-cost", "2") == 0, capsys.readouterr().err
    out = [json.loads(x) for x in open(_out())]
    assert sorted(o["custom_id"] for o in out) == [f"q{i}" for i in range(6)]
    spent = sum(Decimal(o["flextier"]["cost"]) for o in out)
    assert 0 < spent <= Decimal(2)


def test_catalog_bound_larger_than_the_cap_pauses_before_sending(tmp_path, capsys):
    p = _lines(tmp_path / "jobs.jsonl", [{"id": "q0", "prompt": "Hi"}])
    assert PER_REQUEST_AT_CATALOG_MAX > Decimal("0.5")
    rc = _run(p, "--max-cost", "0.5")
    err = capsys.readouterr().err
    assert rc == 3 and "spending cap" in err
    assert all(f.read_text() == "" for f in tmp_path.glob("jobs-*.results.jsonl"))


def test_a_line_with_its_own_max_tokens_is_bounded_by_it(tmp_path, capsys):
    # the same $0.50 cap that refuses a catalog-bounded request runs lines that bound themselves
    p = _lines(tmp_path / "jobs.jsonl", [{"id": f"q{i}", "prompt": "Hi", "params": {"max_tokens": 50}}
                                         for i in range(4)])
    assert _run(p, "--max-cost", "0.5") == 0, capsys.readouterr().err
    assert len(open(_out()).readlines()) == 4


def _batch_line(cid, n):
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "Hi"}],
                     "max_completion_tokens": 10_000, "n": n}}


@pytest.mark.parametrize("n,code", [(1, 0), (5, 3)])
def test_n_answers_reserve_n_outputs(tmp_path, capsys, n, code):
    # one answer: 10,000 x $4.50/1M = $0.045 (+ prompt) fits $0.10; five answers ($0.225) do not
    p = _lines(tmp_path / "jobs.jsonl", [_batch_line("a", n)])
    rc = _run(p, "--max-cost", "0.10", "--tier", "standard")
    err = capsys.readouterr().err
    assert rc == code, err
    if n == 5:
        assert "spending cap" in err


def test_no_bound_anywhere_is_one_line_exit_2_naming_the_line(tmp_path, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": [{"name": MODEL, "max_output_tokens": None}]}))
    p = _lines(tmp_path / "jobs.jsonl", [{"id": "q0", "prompt": "Hi"}])
    rc = _run(p, "--max-cost", "5", "--prices", str(prices))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "max_tokens" in err[0] and "jobs.jsonl:1" in err[0] and "--max-tokens" in err[0]
    # with the flag it runs
    assert _run(p, "--max-cost", "5", "--prices", str(prices), "--max-tokens", "20", "--job", "j2") == 0


def test_python_api_max_cost_without_max_tokens(tmp_path):
    import flextier
    from flextier.emulator import serve

    with serve(profile="calm", time_scale=3000, seed=1) as emu:
        res = flextier.run_job([{"id": f"q{i}", "prompt": "Hi"} for i in range(3)], model=MODEL,
                               max_cost="2", base_url=emu.openai_base_url, api_key="test", out="api.jsonl")
        assert _billed(emu) <= Decimal(2)
    assert res is not None
    assert len(open("api.jsonl").readlines()) == 3


@pytest.mark.parametrize("native,provider,limit,answers", [
    ({"max_completion_tokens": 70, "n": 3}, "openai/gpt-5.4", 70, 3),
    ({"max_output_tokens": 71}, "openai/gpt-5.4", 71, 1),
    ({"generationConfig": {"maxOutputTokens": 72, "candidateCount": 2}}, "gemini/gemini-2.5-flash", 72, 2),
    ({"inferenceConfig": {"maxTokens": 73}}, "bedrock/nova-pro", 73, 1),
    ({"max_tokens": 74}, "anthropic/claude-haiku-4-5", 74, 1),
])
def test_request_limit_in_every_provider_spelling(native, provider, limit, answers):
    entry = default_catalog().resolve(provider)
    req = CallRequest(model=entry, native=native)
    assert request_output_limit(req) == limit and request_answers(req) == answers
    assert output_bound(req, entry) == (limit, "request")
    bare = CallRequest(model=entry, messages=[{"role": "user", "content": "x"}])
    assert output_bound(bare, entry) == (entry.max_output_tokens, "catalog")


def test_every_chat_model_has_a_sourced_max_output_field():
    for e in default_catalog():
        if "embed" in e.name or getattr(e, "kind", "chat") != "chat":
            continue  # embedding models have no output to bound
        assert e.max_output_source, e.name
        assert e.max_output_tokens is None or e.max_output_tokens >= 1000, e.name
