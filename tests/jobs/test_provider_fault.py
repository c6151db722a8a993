"""An answer whose usage its request could not have produced pauses the job (issue 18 section 2).

Before: a response claiming 10^15 tokens on a 16-token request was priced as claimed and the job
ran on ("spent $2,250,000,000", exit 0). Now the runner classifies it as a provider fault where it
accounts results: exit 3, one line naming the item and the claim, nothing priced from that answer.
The hostile provider is a small OpenAI-compatible server of this test's own on 127.0.0.1.
"""
from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flextier.cli import main

MODEL = "openai/gpt-5.4-mini"
ABSURD = 10 ** 15


class Hostile:
    """The usage the server claims, and how many completions it answered."""

    def __init__(self) -> None:
        self.usage = {"prompt_tokens": 16, "completion_tokens": ABSURD, "total_tokens": ABSURD + 16}
        self.calls = 0


@pytest.fixture
def hostile():
    state = Hostile()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def do_GET(self):
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            self.rfile.read(n)
            if not self.path.endswith("/chat/completions"):
                return self.do_GET()
            state.calls += 1
            body = json.dumps({"id": f"chatcmpl-{state.calls}", "object": "chat.completion", "created": 0,
                               "model": "gpt-5.4-mini", "service_tier": "flex",
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                            "finish_reason": "stop"}],
                               "usage": state.usage}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    state.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hostile")


def _job(tmp_path, n=20):
    p = tmp_path / "jobs.jsonl"
    p.write_text("".join(json.dumps({"id": f"q{i}", "prompt": "Say hi"}) + "\n" for i in range(n)))
    return p


def _status():
    from flextier.jobs.store import JobStore
    import glob
    with JobStore(glob.glob(".flextier/*.db")[0], create=False) as st:
        return st.job(), st.ledger_totals(), [dict(r) for r in st.iter_items()]


@pytest.mark.parametrize("extra", [["--max-tokens", "16"], [], ["--max-tokens", "16", "--max-cost", "5"]])
def test_absurd_output_claim_pauses_the_job(hostile, tmp_path, capsys, extra):
    rc = main(["run", str(_job(tmp_path)), "--model", MODEL, "--base-url", hostile.base_url, "--tier", "flex",
               "--concurrency", "2", "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 3, err
    line = next(x for x in err.splitlines() if "provider fault" in x)
    assert "q" in line and "1,000,000,000,000,000 output tokens" in line
    assert "2,250,000,000" not in err
    job, totals, items = _status()
    assert job["state"] == "paused"
    assert totals["billed_total"] == Decimal(0)          # the claim was never priced
    assert not any(it["state"] == "done" for it in items)
    assert hostile.calls <= 2                              # stopped at once: only what was in flight was sent


def test_absurd_input_claim_pauses_the_job(hostile, tmp_path, capsys):
    hostile.usage = {"prompt_tokens": ABSURD, "completion_tokens": 3, "total_tokens": ABSURD + 3}
    rc = main(["run", str(_job(tmp_path, 5)), "--model", MODEL, "--base-url", hostile.base_url, "--tier", "flex",
               "--concurrency", "1", "--quiet", "--max-tokens", "16"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "1,000,000,000,000,000 input tokens" in err
    assert hostile.calls == 1


def test_honest_usage_at_the_bound_is_accepted(hostile, tmp_path, capsys):
    hostile.usage = {"prompt_tokens": 16, "completion_tokens": 16, "total_tokens": 32}
    rc = main(["run", str(_job(tmp_path, 5)), "--model", MODEL, "--base-url", hostile.base_url, "--tier", "flex",
               "--quiet", "--max-tokens", "16"])
    assert rc == 0, capsys.readouterr().err
    job, totals, items = _status()
    assert all(it["state"] == "done" for it in items) and totals["billed_total"] > 0


def test_model_without_a_known_maximum_still_refuses_an_absurd_answer(hostile, tmp_path, capsys):
    # no max_tokens and a catalog maximum of null: only the absolute ceiling bounds the answer
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": [{"name": MODEL, "max_output_tokens": None}]}))
    rc = main(["run", str(_job(tmp_path, 3)), "--model", MODEL, "--base-url", hostile.base_url, "--tier", "flex",
               "--concurrency", "1", "--quiet", "--prices", str(prices)])
    err = capsys.readouterr().err
    assert rc == 3 and "1,000,000,000,000,000 output tokens" in err, err


def test_implausible_usage_rules():
    from flextier.cost import Usage
    from flextier.policy.budget import implausible_usage

    assert implausible_usage(Usage(10, 0, 16), out_bound=16) is None
    assert "17 output" in implausible_usage(Usage(10, 0, 17), out_bound=16)
    assert implausible_usage(Usage(10, 0, 80), out_bound=16, answers=5) is None      # n answers
    assert "5 answers" in implausible_usage(Usage(10, 0, 81), out_bound=16, answers=5)
    # a short reference to a big cached context is fine up to the floor; beyond it is not
    assert implausible_usage(Usage(1_000_000, 0, 5), out_bound=16, prompt_upper_bound=20) is None
    assert "input tokens" in implausible_usage(Usage(3_000_000, 0, 5), out_bound=16, prompt_upper_bound=20)
