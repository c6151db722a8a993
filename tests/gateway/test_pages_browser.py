"""The dashboard and the savings calculator in headless Chromium, served by a live gateway.

Checks that Chart.js (inlined, nothing fetched from outside) drew every chart, that the
calculator shows the seed article's numbers computed by ``flextier estimate``'s code ($200.00 /
$100.00 for Gemini 3 Flash, $800.00 / $400.00 for Gemini 3.1 Pro: 50,000 calls x 2,000 in, 1,000
out), and saves screenshots as artifacts (``$FLEXTIER_ARTIFACTS`` or ``.artifacts/gateway/``).
Skipped only when no chromium is installed (CI installs it: .ci/run).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("FLEXTIER_ARTIFACTS", Path(__file__).resolve().parents[2] / ".artifacts")) / "gateway"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1000",
         "--virtual-time-budget=8000"]


def _dom(url: str) -> str:
    return subprocess.run([_CHROMIUM, *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout


def _shot(url: str, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    subprocess.run([_CHROMIUM, *FLAGS, f"--screenshot={out}", url], capture_output=True, timeout=120)
    return out


def _cell(dom: str, model: str, tier: str) -> str:
    row = re.search(rf'<tr data-model="{re.escape(model)}">(.*?)</tr>', dom, re.S)
    assert row, dom[-3000:]
    m = re.search(rf'<td data-tier="{tier}">([^<]*)</td>', row.group(1))
    assert m, row.group(1)
    return m.group(1)


def test_pages_are_self_contained():
    from flextier.catalog import default_catalog
    from flextier.gateway.pages import calculator_page, dashboard_page

    for page in (dashboard_page(), calculator_page(default_catalog())):
        assert "Chart.js v4" in page
        assert not re.search(r'(src|href)="(https?:)?//', page)      # nothing loaded from elsewhere


def test_estimate_api_is_flextier_estimate(gateway):
    gw = gateway()
    d = httpx.get(gw.url + "/api/estimate", params=[("model", "gemini/gemini-3-flash"),
                                                    ("model", "gemini/gemini-3.1-pro"), ("calls", "50000"),
                                                    ("input", "2000"), ("output", "1000"), ("cached", "0")]).json()
    got = {m["model"]: {r["tier"]: r["cost_fmt"] for r in m["rows"]} for m in d["models"]}
    assert got["gemini/gemini-3-flash-preview"] == {"standard": "$200.00", "flex": "$100.00", "batch": "$100.00"}
    assert got["gemini/gemini-3.1-pro-preview"] == {"standard": "$800.00", "flex": "$400.00", "batch": "$400.00"}


@pytest.mark.skipif(_CHROMIUM is None, reason="chromium is not installed (CI installs it: .ci/run)")
def test_dashboard_and_calculator_in_headless_chromium(gateway, emu):
    import openai

    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    for _ in range(3):
        c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}],
                              extra_headers={"x-flextier-tier": "standard"})
    gw.ledger.flush()

    calc = _dom(gw.url + "/calculator")
    assert 'data-rendered="1"' in calc, calc[-2000:]
    assert re.search(r'<canvas id="chart"[^>]*style="[^"]*display: block', calc)     # Chart.js laid it out
    assert _cell(calc, "gemini/gemini-3-flash-preview", "standard") == "$200.00"
    assert _cell(calc, "gemini/gemini-3-flash-preview", "flex") == "$100.00"
    assert _cell(calc, "gemini/gemini-3.1-pro-preview", "standard") == "$800.00"
    assert _cell(calc, "gemini/gemini-3.1-pro-preview", "flex") == "$400.00"

    dash = _dom(gw.url + "/")
    assert 'data-rendered="1"' in dash, dash[-2000:]
    for cid in ("c-spend", "c-tiers", "c-shed", "c-queue"):
        assert re.search(rf'<canvas id="{cid}"[^>]*style="[^"]*display: block', dash), cid
    assert re.search(r'<b id="k-calls">4</b>', dash)
    assert re.search(r'<b id="k-flex">75.0%</b>', dash)

    for url, name in ((gw.url + "/", "dashboard.png"), (gw.url + "/calculator", "calculator.png")):
        shot = _shot(url, name)
        assert shot.stat().st_size > 20_000, name     # a drawn page, not a blank one
