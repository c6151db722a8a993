"""A wrong ``--base-url`` pauses the job at once instead of failing every item (issue 11 item 7).

Before: 50 items failed as "BadRequest 50", the summary said the deadline was met, and a
rerun with the right URL did nothing (the items were final). Now a 404/405 on the endpoint
itself is :class:`EndpointNotFound`: exit 3, nothing marked failed, one line naming the URL
(without credentials) and the status; ``resume --base-url RIGHT`` finishes the job. A
provider's own "model not found" 404 stays a BadRequest.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from flextier.cli import main

MODEL = "openai/gpt-5.4-mini"


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_wrong_base_url_pauses_then_resume_with_the_right_one_finishes(emulator, simple_jobs, capsys):
    emu = emulator("calm", time_scale=3000)
    p = simple_jobs(50)
    root = emu.openai_base_url.rsplit("/v1", 1)[0]
    wrong = root.replace("http://", "http://user:hunter2-secret@") + "/wrong/v1"
    rc = main(["run", str(p), "--model", MODEL, "--base-url", wrong, "--deadline", "24h", "--max-tokens", "20"])
    cap = capsys.readouterr()
    assert rc == 3
    paused = [ln for ln in cap.err.splitlines() if ln.startswith("flextier: paused:")]
    assert len(paused) == 1, cap.err
    assert f"{root}/wrong/v1/chat/completions answered HTTP 404" in paused[0]
    assert "hunter2" not in cap.err + cap.out  # the URL is named without its credentials
    assert re.search(r"resume jobs-[0-9a-f]{8} --base-url", paused[0]), paused[0]
    assert "Traceback" not in cap.err
    assert "deadline" not in cap.out or ": met" not in cap.out  # never "met" for a job that did not run
    st = json.loads(_status_json(capsys))
    assert st["state"] == "paused" and st["counts"]["failed"] == 0 and st["counts"]["done"] == 0
    assert st["counts"]["pending"] == 50
    assert len(emu.ledger()) == 0  # the wrong route never reached the provider

    rc = main(["resume", "jobs", "--base-url", emu.openai_base_url, "--quiet"])
    assert rc == 0
    st = json.loads(_status_json(capsys))
    assert st["state"] == "done" and st["counts"]["done"] == 50 and st["counts"]["failed"] == 0
    assert len([json.loads(x) for x in open(next(__import__("pathlib").Path(".").glob("jobs-*.results.jsonl")))]) == 50


def _status_json(capsys) -> str:
    assert main(["status", "jobs", "--json"]) == 0
    return capsys.readouterr().out


def test_rerun_of_a_job_with_failed_items_says_how_to_retry_them(emulator, write_jsonl, capsys):
    emu = emulator("calm", time_scale=3000)
    p = write_jsonl([{"id": "good", "prompt": "hi"}, {"id": "bad", "prompt": "hi", "params": {"max_tokens": -1}}])
    base = ["run", str(p), "--model", MODEL, "--base-url", emu.openai_base_url]
    assert main(base) == 1
    assert re.search(r"flextier resume jobs-[0-9a-f]{8} --retry-failed", capsys.readouterr().err)
    assert main([*base, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 items failed in an earlier run" not in err  # --quiet stays quiet
    assert main(base) == 1
    assert "1 items failed in an earlier run and are not sent again; add --retry-failed" in capsys.readouterr().err


def test_model_not_found_stays_a_bad_request(emulator, make_store):
    """At the right URL, the provider's own 404 for an unknown model fails the item, it does not pause."""
    import dataclasses

    from flextier.catalog import default_catalog
    from flextier.jobs.runner import Runner, RunOptions
    from flextier.providers import get_adapter

    emu = emulator("calm", time_scale=3000)
    entry = default_catalog().resolve(MODEL)
    nope = dataclasses.replace(entry, model_id=entry.model_id + "-nope")
    st = make_store(3)
    runner = Runner(st, get_adapter(nope, base_url=emu.openai_base_url, api_key="k"),
                    RunOptions(model=nope, concurrency=2, params={"max_tokens": 20}), clock=emu.clock, output=None)
    runner.prepare()
    asyncio.run(runner.run())
    assert st.counts()["failed"] == 3 and st.error_counts() == {"BadRequest": 3}


@pytest.mark.parametrize("body,status,route", [
    ("Not Found", 404, True),                                                     # a web server's page
    ({"detail": "Not Found"}, 404, True),                                         # a generic JSON shape
    ({"error": {"message": "Invalid URL (POST /v1/chat/completionz)", "type": "invalid_request_error",
                "code": None}}, 404, True),                                       # OpenAI's own route 404
    ({"message": "no such path", "code": "x"}, 405, True),                        # any 405
    ({"error": {"message": "The model `x` does not exist", "code": "model_not_found"}}, 404, False),
    ({"message": "The model `x` does not exist", "type": "invalid_request_error", "code": "model_not_found"},
     404, False),                                                                 # openai SDK: exc.body is the inner object
    ({"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}}, 404, False),
    ({"error": {"code": 404, "message": "models/gemini-x is not found for API version v1beta",
                "status": "NOT_FOUND"}}, 404, False),
    ({"error": {"message": "bad"}}, 400, False),
    ({"message": "m", "type": "invalid_request_error", "code": None}, 404, False),  # a provider's own words
    ({"error": {"message": "Not Found", "type": "not_found_error"}}, 404, True),  # its generic route answer
])
def test_route_error_tells_a_missing_route_from_a_missing_model(body, status, route):
    from flextier.policy.errors import EndpointNotFound
    from flextier.providers.base import route_error

    err = route_error(status, body, "m", "http://u:pw@127.0.0.1:9/x/v1/chat/completions?key=k", tier="flex",
                      provider="openai")
    assert isinstance(err, EndpointNotFound) is route
    if route:
        assert err.url == "http://127.0.0.1:9/x/v1/chat/completions" and "pw" not in str(err)


@pytest.mark.parametrize("model", ["openai/gpt-5.4-mini", "gemini/gemini-2.5-flash", "bedrock/amazon.nova-lite-v1:0",
                                   "anthropic/claude-haiku-4-5"])
def test_wrong_path_pauses_the_runner_in_every_dialect(emulator, make_store, model, monkeypatch):
    from flextier.catalog import default_catalog
    from flextier.jobs.runner import JobPaused, Runner, RunOptions
    from flextier.providers import get_adapter

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    emu = emulator("calm", time_scale=1000)
    entry = default_catalog().resolve(model)
    st = make_store(40, model=model)
    wrong = emu.base_urls()[entry.provider].rstrip("/") + "/nope"
    runner = Runner(st, get_adapter(entry, base_url=wrong, api_key="k-test"),
                    RunOptions(model=entry, tier_mode="standard", concurrency=4, params={"max_tokens": 20}),
                    clock=emu.clock, output=None)
    runner.prepare()
    with pytest.raises(JobPaused) as ei:
        asyncio.run(runner.run())
    assert ei.value.kind == "endpoint" and "/nope" in str(ei.value) and "HTTP 404" in str(ei.value)
    c = st.counts()
    assert c["failed"] == 0 and c["done"] == 0 and c["pending"] == 40
