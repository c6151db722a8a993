"""Progress lines and reports render from a store without a running job, and stay self-contained."""
from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from decimal import Decimal

from flextier.jobs.progress import Progress, fmt_span, log_line
from flextier.jobs.report import build_report, format_report, render_html, report_json
from flextier.jobs.runner import Stats


def test_log_line_fields():
    s = Stats(total=100, done=40, failed=2, by_tier=Counter(flex=30, standard=10), errors=Counter(Timeout=3),
              spent=Decimal("1.5"), standard_cost=Decimal("2.5"), flex_inflight=12, flex_limit=16,
              started=0.0, now=600.0, deadline=7200.0, mode="up")
    line = log_line(s, utc=True)
    for part in ("42/100 (2 failed) done", "flex=30 standard=10", "flex share 75%", "flex 12/16 (out/limit)",
                 "Timeout=3", "spent $1.50 vs $2.50", "saved 40%", "planner up", "deadline"):
        assert part in line, part
    assert fmt_span(3725) == "1h02m" and fmt_span(-59) == "-59s" and fmt_span(None) == "-"


async def test_progress_plain_lines_when_not_a_tty():
    buf = io.StringIO()
    p = Progress(lambda: Stats(total=1), stream=buf, interval=0.01)
    p.start()
    import asyncio
    await asyncio.sleep(0.05)
    await p.stop()
    assert buf.getvalue().count("flextier: 0/1 done") >= 2
    quiet = io.StringIO()
    q = Progress(lambda: Stats(total=1), stream=quiet, quiet=True)
    q.start()
    await q.stop()
    assert quiet.getvalue() == ""


async def test_progress_rich_panel_renders():
    buf = io.StringIO()
    p = Progress(lambda: Stats(total=4, done=1, by_tier=Counter(flex=1)), stream=buf, live=True, interval=0.01)
    p.start()
    import asyncio
    await asyncio.sleep(0.03)
    await p.stop()
    assert "served" in buf.getvalue() and "flex=1" in buf.getvalue()


def test_report_from_a_finished_store(emulator, make_store, run_emulated):
    emu = emulator("weekday", time_scale=3000)
    st = make_store(30)
    run_emulated(emu, st, deadline_s=3600)
    r = build_report(st)
    txt = format_report(r)
    assert "30 done" in txt and "saved" in txt and "deadline" in txt and "met" in txt
    assert json.loads(report_json(r))["counts"]["done"] == 30
    page = render_html(r)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svgs = page.split("<svg")[1:]
    assert len(svgs) == 3
    for s in svgs:
        ET.fromstring("<svg" + s.split("</svg>")[0] + "</svg>")  # each chart is well-formed XML


def test_report_of_an_empty_store(make_store):
    st = make_store(3)
    r = build_report(st)
    assert "0 done" in format_report(r)
    assert render_html(r).count("<svg") == 3


def test_items_in_batch_are_shown_only_when_there_are_any():
    s = Stats(total=5000, done=10, started=0.0, now=60.0, in_batch=1234, mode="batch")
    assert "standard 0 out, in batch 1,234, errors" in log_line(s)
    s.in_batch = 0
    assert "in batch" not in log_line(s)
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=200).print(Progress(lambda: Stats(total=5000, in_batch=1234), live=True)._panel())
    assert "1,234 (1,234 in provider batches)" in buf.getvalue()
