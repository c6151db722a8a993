"""The live panel and `status` as a user reads them: clear words, steady box, honest money, same counts."""
from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

from flextier.catalog import default_catalog
from flextier.cli import main
from flextier.jobs.progress import (Progress, log_line, money_fields, resume_command, stopped_message,
                                    summary_fields)
from flextier.jobs.runner import Runner, RunOptions, Stats
from flextier.providers import get_adapter

T0 = 1795528800.0  # 2026-11-24 14:00 UTC, the emulator's default start


def _stats(**kw):
    base = dict(total=500, done=120, by_tier=Counter(flex=100, standard=20), spent=Decimal("1.5"),
                standard_cost=Decimal("2.5"), flex_inflight=12, flex_limit=16, std_inflight=3, held=268,
                started=T0, now=T0 + 725, deadline=T0 + 7200, mode="up")
    base.update(kw)
    return Stats(**base)


def _render(s: Stats, width: int = 200, panel: int | None = None, **kw) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width).print(Progress(lambda: s, live=True, utc=True, **kw)._panel(panel))
    return buf.getvalue().splitlines()


def test_panel_explains_itself_and_shows_clock_and_elapsed():
    class Lag:
        time_scale = 600.0
    text = "\n".join(_render(_stats(), lag=Lag(), panel=200))
    assert "11-24 14:12:05Z (emulated, x600)" in text and "elapsed 12m05s" in text
    assert "pacing to the deadline: flex, plus standard only when behind" in text      # "planner up"
    assert "flex 12 of 16 allowed" in text and "flex N of M: flex requests out / adaptive limit" in text
    assert "safety net: everything left goes to standard" in "\n".join(_render(_stats(mode="safety")))


def test_panel_width_is_steady():
    small = _render(_stats(done=1, held=1, by_tier=Counter(flex=1), errors=Counter()))
    big = _render(_stats(total=2_000_000, done=1_234_567, held=25_600, by_tier=Counter(flex=1_000_000, standard=234_567),
                         errors=Counter(FlexCapacityUnavailable=123456, Timeout=9999, RateLimited=77, Transient=5),
                         spent=Decimal("12345.678"), standard_cost=Decimal("24691.356"), paused="spending cap"))
    widths = {len(ln) for ln in small + big}
    assert widths == {Progress.WIDTH}
    narrow = _render(_stats(), width=70)
    assert {len(ln) for ln in narrow} == {70}  # never wider than the terminal


def test_no_margin_before_the_rate_settles():
    # 3 slow first answers after 20 s: the rate says "1 h late"; the panel must not
    early = _stats(done=1, started=T0, now=T0 + 30, done_at_start=0, deadline=T0 + 3600)
    assert early.eta() > early.deadline  # the naive estimate is a large negative margin
    f = summary_fields(early, utc=True)
    assert f["margin"].startswith("settling") and f["eta"] == "settling"
    assert "-" not in f["margin"].split("(")[0]
    later = _stats(done=200, now=T0 + 1200, deadline=T0 + 7200)
    assert summary_fields(later, utc=True)["margin"] == "1h10m"  # 300 left at 10/min: done at 0h50m
    assert "margin settling" in log_line(early, utc=True)


def test_unknown_price_is_never_zero_or_100_percent_saved():
    s = _stats(spent=Decimal(0), standard_cost=Decimal("0.10"), unknown_cost=3, by_tier=Counter(priority=3))
    text = "\n".join(_render(s)) + log_line(s)
    assert "unknown" in text and "$0.00" not in text and "100%" not in text
    assert money_fields(Decimal("0.5"), Decimal("1"), 0)["saved"] == "50%"
    assert money_fields(Decimal("0.5"), Decimal("1"), 1)["saved"] == "unknown"


def test_resume_command_names_the_store_only_when_not_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resume_command("jobs", ".flextier/jobs.db") == "flextier resume jobs"
    assert resume_command("jobs", "/elsewhere/j.db") == "flextier resume jobs --store /elsewhere/j.db"
    assert resume_command("my job") == "flextier resume 'my job'"
    assert "continue with: flextier resume jobs" in stopped_message("jobs")


# -- end to end ---------------------------------------------------------------------------

class _Priority(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint on loopback that claims every answer was served at priority."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"id": "chatcmpl-p", "object": "chat.completion", "created": 0, "model": "gpt-5.4-mini",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                        "finish_reason": "stop"}],
                           "service_tier": "priority",
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def priority_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Priority)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_priority_answers_show_unknown_in_panel_and_status(priority_server, simple_jobs, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.chdir(tmp_path)
    p = simple_jobs(3)
    rc = main(["run", str(p), "--model", "openai/gpt-5.4-mini", "--base-url", priority_server, "--tier", "standard"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    panel = [ln for ln in cap.err.splitlines() if "done," in ln][-1]   # the last progress line
    assert "spent unknown" in panel and "saved unknown" in panel and "100%" not in panel, panel
    assert "saved unknown" in cap.out and "100" not in cap.out.split("cost:")[1].splitlines()[0]
    assert main(["status", "jobs"]) == 0
    out = capsys.readouterr().out
    assert "spent unknown" in out and "saved unknown" in out and "$0.00 vs" not in out and "100%" not in out, out
    assert main(["status", "jobs", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["spent"] is None and js["unknown_cost_results"] == 3


async def test_panel_and_status_agree_on_in_flight(emulator, make_store):
    # a slow flex lane: many items claimed from the store, few requests out at a time
    emu = emulator("weekday", time_scale=20)
    st = make_store(120)
    entry = default_catalog().resolve("openai/gpt-5.4-mini")
    adapter = get_adapter(entry, base_url=emu.openai_base_url, api_key="k")
    runner = Runner(st, adapter, RunOptions(model=entry, tier_mode="flex", concurrency=8), clock=emu.clock)
    runner.prepare()
    task = asyncio.get_running_loop().create_task(runner.run())
    try:
        seen = []
        for _ in range(200):
            await asyncio.sleep(0.02)
            s = runner.snapshot()
            store_inflight = st.counts()["inflight"]
            if s.held and s.finished == 0:  # nothing finished yet: the store is exactly in step
                seen.append((s.held + s.in_batch, store_inflight, s.flex_inflight + s.std_inflight))
            if len(seen) >= 3:
                break
        assert seen, "the run never had items in flight"
        for panel, status, requests_out in seen:
            assert panel == status, seen
        assert any(status > out for _, status, out in seen), seen  # requests out alone would disagree
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
