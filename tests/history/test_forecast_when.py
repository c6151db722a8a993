"""The learned forecast and ``flextier when`` on a seeded emulated week."""
from __future__ import annotations

import json
from pathlib import Path

from flextier.cli import main
from flextier.emulator.capacity import expected_headroom
from flextier.emulator.clock import parse_start
from flextier.history import Recorder, build_forecast, load_forecast
from flextier.history.recorder import week_start

from .conftest import START


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb)


def test_one_emulated_week_recovers_quiet_and_busy_hours(seeded_week: Path, weekday_knobs) -> None:
    now = parse_start(START)
    fc = load_forecast("openai", "openai/gpt-5.4-mini", now, emulated=True, path=str(seeded_week))
    assert fc.enough and fc.availability() is fc
    w0 = week_start(now)
    truth = [expected_headroom(w0 + h * 3600 + 1800, weekday_knobs) for h in range(168)]
    learned = [fc.relative(h) for h in range(168)]
    rho = spearman(truth, learned)
    assert rho >= 0.8, rho
    # the planner's input is the same curve, read at clock values
    assert abs(fc(w0 + 3 * 3600 + 1800) - fc.relative(3)) < 1e-9
    night, peak = fc.relative(24 + 3), fc.relative(24 + 15)          # Tue 03:00 vs Tue 15:00
    assert night > 3 * peak


def test_too_little_history_says_so_and_keeps_the_straight_line(tmp_path: Path, capsys) -> None:
    p = tmp_path / "h.emulated.db"
    rec = Recorder(str(p), emulated=True)
    for i in range(30):
        rec.record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier="flex", outcome="ok",
                           ts=parse_start(START) - 3600 + i, latency=5.0)
    rec.flush()
    fc = load_forecast("openai", "openai/gpt-5.4-mini", parse_start(START), emulated=True, path=str(p))
    assert not fc.enough and fc.availability() is None
    assert set(round(fc.relative(h), 6) for h in range(168)) == {1.0} or fc.total_attempts == 30
    assert build_forecast([], 0.0, provider="openai", model="m").availability() is None
    code = main(["when", "--model", "openai/gpt-5.4-mini", "--history", str(p), "--emulated", "--json",
                 "--now", "2026-11-24T14:00"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["enough_history"] is False and "too little history" in out["why_not"]
    assert out["recommendation"]["finish"] is None          # no made-up precision


def test_when_heat_map_json_html(seeded_week: Path, tmp_path: Path, capsys) -> None:
    html = tmp_path / "when.html"
    code = main(["when", "--model", "openai/gpt-5.4-mini", "--history", str(seeded_week), "--emulated",
                 "--now", "2026-11-24T09:00", "--items", "2000", "--output-tokens", "64", "--deadline", "24h",
                 "--json", "--html", str(html)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["enough_history"] and len(out["cells"]) == 168
    assert sum(c["attempts"] > 0 for c in out["cells"]) >= 150   # (nearly) every hour observed, counts given
    rec = out["recommendation"]
    start_h = int(out["recommendation"]["start_utc"].split()[2].split(":")[0])
    assert rec["start"] > out["now"] and (start_h >= 19 or start_h <= 6)   # a quiet hour, not the Tuesday peak
    assert rec["finish"] <= out["deadline"] and rec["cost_usd"] is not None
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and page.count("<td") >= 2 * 168
    # the terminal map
    assert main(["when", "--model", "openai/gpt-5.4-mini", "--history", str(seeded_week), "--emulated",
                 "--now", "2026-11-24T09:00"]) == 0
    text = capsys.readouterr().out
    assert "recommended start" in text and "Tue" in text and "availability" in text


def test_when_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["when", "--model", "openai/gpt-5.4-mini", "--items", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--items" in err
    assert main(["when", "--model", "openai/gpt-5.4-mini", "--history", str(tmp_path / "none.db")]) == 2
    assert main(["when", "--model", "nope/nope"]) == 2
