"""Broken provider responses: the runner classifies each and never records an item done without a result.

A tiny ASGI app (``fuzz_server``) answers every provider's path with malformed JSON, a
missing usage block, an unknown tier string, an HTTP 200 carrying an error body, a stream
cut mid-event, an HTML page, or an empty body. ``flextier run`` is pointed at it with
``--base-url``; each item must end ``failed`` with a reason (after its retries), or, for an
unknown tier, ``done`` with the cost recorded as unknown (never as $0).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardening_support import PROVIDER_MODELS, run_cli, store_items

N = 3
BROKEN = ("malformed_json", "no_usage", "error_200", "cut_stream", "wrong_ctype", "empty")


def _job(tmp_path: Path) -> Path:
    p = tmp_path / "jobs.jsonl"
    p.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"say {i}"}) + "\n" for i in range(N)))
    return p


def _run(fuzz_server, tmp_path: Path, provider: str, mode: str) -> tuple[int, str, str, Path, Path]:
    fuzz_server.mode = mode
    fuzz_server.requests.clear()
    db, out = tmp_path / "s.db", tmp_path / "out.jsonl"
    args = ["run", str(_job(tmp_path)), "--model", PROVIDER_MODELS[provider], "--base-url",
            fuzz_server.base_url(provider), "--store", str(db), "--out", str(out), "--max-tokens", "20",
            "--concurrency", "4", "--html", str(tmp_path / "r.html")]
    if provider == "anthropic":
        args += ["--tier", "standard"]  # no flex tier
    rc, so, se = run_cli(args)
    return rc, so, se, db, out


def _output(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("provider", list(PROVIDER_MODELS))
@pytest.mark.parametrize("mode", BROKEN)
def test_broken_response_never_done(fuzz_server, tmp_path, provider, mode):
    rc, so, se, db, out = _run(fuzz_server, tmp_path, provider, mode)
    assert "Traceback" not in se and "Traceback" not in so, se
    assert rc == 1, (rc, se)
    items = store_items(db)
    assert len(items) == N
    for it in items:
        assert it["state"] == "failed", (mode, provider, it)
        assert it["error_class"], it
        assert it["served_tier"] is None and it["cost"] is None
        res = json.loads(it["result"])
        assert res["error"] and res["error"]["message"], res
    lines = _output(out)
    assert sorted(x["custom_id"] for x in lines) == [f"r{i}" for i in range(N)]
    assert all(x["error"] is not None and x["flextier"]["tier"] is None for x in lines)
    # every item was tried, and retried: classified as retryable (not a bad request) except
    # where the provider said so
    sent = [r for r in fuzz_server.requests if r["provider"] == provider]
    assert len(sent) >= N
    if mode != "error_200" or provider != "bedrock":
        assert len(sent) > N, f"{mode}: not retried ({len(sent)} sends)"
    # every send carried the item id
    assert {r["headers"].get("x-flextier-item") for r in sent} == {f"r{i}" for i in range(N)}


@pytest.mark.parametrize("provider", list(PROVIDER_MODELS))
def test_unknown_tier_is_done_with_unknown_cost(fuzz_server, tmp_path, provider):
    """A valid answer at a tier flextier has no price for: done, but its cost is unknown, not $0."""
    rc, so, se, db, out = _run(fuzz_server, tmp_path, provider, "unknown_tier")
    assert "Traceback" not in se
    assert rc == 0, se
    for it in store_items(db):
        assert it["state"] == "done"
        assert it["served_tier"] == "unknown" and it["cost"] is None
        assert json.loads(it["result"])["response"]["body"]
    assert "cost unknown" in so
    rc, so2, _ = run_cli(["report", str(db)])
    assert rc == 0 and "3 results were served at a tier with no known price" in so2


@pytest.mark.parametrize("provider", list(PROVIDER_MODELS))
def test_control_ok(fuzz_server, tmp_path, provider):
    rc, so, se, db, out = _run(fuzz_server, tmp_path, provider, "ok")
    assert rc == 0, se
    items = store_items(db)
    assert all(it["state"] == "done" and it["cost"] is not None for it in items)
    assert len(_output(out)) == N
