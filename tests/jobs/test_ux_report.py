"""The HTML report as a reader sees it: ticks, deadline, integer counts, matching legends, no overlaps.

Fast checks parse the SVG; one test opens the page in headless Chromium and measures the
laid-out text (skipped only when no chromium is installed; CI installs it in .ci/run).
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from flextier.cli import main
from flextier.jobs.report import build_report, format_report, render_html, write_html

NS = {"s": "http://www.w3.org/2000/svg"}
START = 1795528800.0  # 2026-11-24 14:00 UTC


def _job(make_store, *, deadline_after=3600.0, flex_errors=True, n=40, name="job"):
    """A finished job: created at START, first result 5 min later, last at 25 min; deadline 1 h."""
    st = make_store(n, name=name)
    st.update_job(created_at=START, deadline=START + deadline_after, clock_domain="emulated", tier_mode="auto",
                  state="done")
    for i in range(n):
        t = START + 300 + i * 30
        tier = "flex" if i % 4 else "standard"
        st.db.execute("UPDATE items SET state = 'done', served_tier = ?, finished_at = ?, cost = ?, "
                      "standard_cost = ?, latency = ? WHERE seq = ?",
                      (tier, t, "0.001" if tier == "flex" else "0.002", "0.002", 12.0 + i, i))
        st.add_attempt(i, tier, "ok", 12.0 + i, 200, None, False, t)
        st.add_ledger(t, i, tier, Decimal("0.001") if tier == "flex" else Decimal("0.002"), Decimal("0.002"), 10, 5)
    if flex_errors:  # 10 minutes of flex refusing work, no standard attempt, while on schedule
        for k in range(10):
            st.add_attempt(0, "flex", "FlexCapacityUnavailable", 0.1, 429, "flex_unavailable", False,
                           START + 1600 + k * 60)
    st.flush()
    return st


def _svgs(page: str) -> dict[str, ET.Element]:
    out = {}
    for m in re.finditer(r"<svg.*?</svg>", page, re.S):
        el = ET.fromstring(m.group(0))
        out[el.get("data-chart")] = el
    return out


def test_time_axes_have_tick_labels_from_the_jobs_start(make_store):
    r = build_report(_job(make_store))
    assert r["timeline"]["t0"] == START            # not the first result (5 minutes later)
    svgs = _svgs(render_html(r))
    assert set(svgs) == {"tier-share", "latency", "cost"}
    for name in ("tier-share", "cost"):
        ticks = [t.text for t in svgs[name].iterfind(".//s:text[@class='tick x']", NS)]
        assert ticks[0] == "0" and len(ticks) >= 4, ticks
        assert all(re.fullmatch(r"0|\d+(s|m|h|d)(\d\d(s|m|h))?", t) for t in ticks), ticks
    # the first bar starts at 5 minutes on the axis, not at 0
    tier = svgs["tier-share"]
    xs = sorted(float(rc.get("x")) for rc in tier.iterfind(".//s:rect", NS) if rc.find("s:title", NS) is not None)
    zero = float(next(t for t in tier.iterfind(".//s:text[@class='tick x']", NS) if t.text == "0").get("x"))
    assert xs[0] > zero + 20  # 5 of ~62 minutes: ~45 px in; a chart from the first result puts it at 0
    lat_ticks = [t.text for t in svgs["latency"].iterfind(".//s:text[@class='tick x']", NS)]
    assert len(lat_ticks) >= 2 and all(float(v) > 0 for v in lat_ticks)


def test_deadline_on_every_time_chart(make_store):
    for after in (3600.0, 86400.0 * 3):  # within the axis, and far past it (marked at the edge)
        svgs = _svgs(render_html(build_report(_job(make_store, deadline_after=after, name=f"j{after:.0f}"))))
        for name in ("tier-share", "cost"):
            d = svgs[name].find(".//s:g[@data-role='deadline']", NS)
            assert d is not None, (name, after)
            assert "deadline" in "".join(d.itertext())


def test_count_axis_ticks_are_integers(make_store):
    svgs = _svgs(render_html(build_report(_job(make_store, n=3))))  # 3 items: ticks must not be 0.75, 1.5
    ys = [t.text for t in svgs["tier-share"].iterfind(".//s:text[@class='tick y']", NS)]
    assert all(re.fullmatch(r"\d[\d,]*", y) for y in ys) and len(set(ys)) == len(ys), ys


def test_legend_swatches_match_the_series_style(make_store):
    cost = _svgs(render_html(build_report(_job(make_store))))["cost"]
    series = [(p.get("stroke"), p.get("stroke-dasharray")) for p in cost.iterfind(".//s:polyline", NS)]
    swatches = [(ln.get("stroke"), ln.get("stroke-dasharray"))
                for ln in cost.iterfind(".//s:g[@class='legend']/s:line", NS)]
    assert sorted(series, key=str) == sorted(swatches, key=str) and any(d for _, d in series)


def test_held_back_note(make_store):
    r = build_report(_job(make_store))
    assert r["held_back"] and r["held_back"]["flex_errors"] == 10
    assert "held work back while ahead of schedule" in format_report(r)
    assert "held work back" in render_html(r)
    assert build_report(_job(make_store, flex_errors=False, name="calm"))["held_back"] is None


def test_report_html_into_a_directory(make_store, tmp_path, monkeypatch, capsys):
    st = _job(make_store)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "some" / "dir"
    assert main(["report", str(st.path), "--html", f"{out}/"]) == 0
    assert (out / "job.html").is_file() and "report:" in capsys.readouterr().out
    out.mkdir(parents=True, exist_ok=True)
    assert write_html(build_report(st), out).name == "job.html"   # an existing directory, no slash


# -- a real browser ------------------------------------------------------------------------------

_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

_PROBE = """<script>
window.addEventListener('load', () => {
  const out = {};
  for (const svg of document.querySelectorAll('svg[data-chart]')) {
    const boxes = [...svg.querySelectorAll('text')].map(t => {
      const b = t.getBoundingClientRect();
      return {text: t.textContent, cls: t.getAttribute('class') || '', x: b.x, y: b.y, w: b.width, h: b.height};
    });
    const overlaps = [];
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.w > 0 && b.w > 0 && a.x < b.x + b.w - 0.5 && b.x < a.x + a.w - 0.5 &&
          a.y < b.y + b.h - 0.5 && b.y < a.y + a.h - 0.5)
        overlaps.push([a.text, b.text]);
    }
    const sv = svg.getBoundingClientRect();
    const dl = svg.querySelector('[data-role=deadline] line');
    out[svg.dataset.chart] = {
      ticks_x: boxes.filter(b => b.cls === 'tick x' && b.w > 0).map(b => b.text),
      ticks_y: boxes.filter(b => b.cls === 'tick y' && b.w > 0).map(b => b.text),
      overlaps, outside: boxes.filter(b => b.x < sv.x - 0.5 || b.x + b.w > sv.x + sv.width + 0.5).map(b => b.text),
      deadline: dl ? dl.getBoundingClientRect().height : null};
  }
  const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.skipif(_CHROMIUM is None, reason="chromium is not installed (CI installs it: .ci/run)")
def test_report_in_headless_chromium(make_store, tmp_path):
    page = render_html(build_report(_job(make_store)))
    assert "<script" not in page                       # the real page stays script-free
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=800,1900"]
    dom = subprocess.run([_CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    layout = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                        .replace("&gt;", ">"))
    assert set(layout) == {"tier-share", "latency", "cost"}
    for name, lay in layout.items():
        assert lay["overlaps"] == [], (name, lay["overlaps"])
        assert lay["outside"] == [], (name, lay["outside"])
        assert len(lay["ticks_x"]) >= 2 and len(lay["ticks_y"]) >= 2, (name, lay)
    for name in ("tier-share", "cost"):
        assert layout[name]["deadline"] and layout[name]["deadline"] > 100, layout[name]   # drawn, full height
        assert layout[name]["ticks_x"][0] == "0"
    shot = tmp_path / "report.png"
    real = tmp_path / "report.html"
    real.write_text(page, encoding="utf-8")
    subprocess.run([_CHROMIUM, *flags, f"--screenshot={shot}", real.as_uri()], capture_output=True, timeout=120)
    w, h = _png_size(shot)
    assert (w, h) == (800, 1900) and shot.stat().st_size > 30_000   # a rendered page, not a blank one
