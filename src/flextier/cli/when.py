"""``flextier when``: when flex is quiet for a model, from the user's own history, and when to start.

A weekday x hour heat map (UTC) of expected flex availability and queue time, how many attempts
each cell rests on, and the recommended start with its expected cost and finish
(:func:`flextier.history.advice.recommend`). ``--html FILE`` writes the same as one self-contained
page (static, no scripts, like the job report: jobs/charts.py says why), ``--json`` prints it.
With too little history it says so and shows the prior (docs/history.md §3).
"""
from __future__ import annotations

import html as _html
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import UserInputError

__all__ = ["register", "when_data", "render_html"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc).strftime("%a %Y-%m-%d %H:%M UTC")


def when_data(model: str, *, items: int = 1000, input_tokens: int = 1000, output_tokens: int = 500,
              deadline: Optional[str] = None, by: Optional[str] = None, now: Optional[float] = None,
              emulated: bool = False, history: Optional[str] = None, rate: Optional[float] = None) -> dict[str, Any]:
    """Everything ``when`` shows, as plain data (the ``--json`` output)."""
    from ..catalog import default_catalog
    from ..history import load_forecast
    from ..history.advice import recommend
    from ..timeparse import parse_deadline, parse_duration

    entry = default_catalog().resolve(model, field="--model")
    for flag, v in (("--items", items), ("--input-tokens", input_tokens), ("--output-tokens", output_tokens)):
        if v < 0 or (flag == "--items" and v == 0):
            raise UserInputError(f"must be {'more than zero' if flag == '--items' else 'zero or more'}, got {v}",
                                 field=flag)
    if rate is not None and not rate > 0:
        raise UserInputError(f"must be more than zero, got {rate}", field="--rate")
    t_now = time.time() if now is None else now
    if deadline and by:
        raise UserInputError("give either --deadline or --by, not both", field="--by")
    dl = None
    if deadline:
        dl = t_now + parse_duration(deadline, field="--deadline")
    elif by:
        base = datetime.fromtimestamp(t_now, tz=timezone.utc)
        dl = parse_deadline(by, base, field="--by").timestamp()
    fc = load_forecast(entry.provider, entry.name, t_now, emulated=emulated, path=history)
    adv = recommend(entry, fc, items=items, input_tokens=input_tokens, output_tokens=output_tokens, now=t_now,
                    deadline=dl, rate=rate)
    cells = []
    for c in fc.cells:
        peak = entry.peak_hours.is_peak(_week0(t_now) + c.how * 3600 + 1800) if entry.peak_hours else None
        cells.append({"day": DAYS[c.how // 24], "hour": c.how % 24, "availability": round(fc.relative(c.how), 4),
                      "attempts": c.raw_attempts, "weighted_attempts": round(c.attempts, 2),
                      "throughput_per_s": round(c.throughput, 5), "p50_s": None if c.p50 is None else round(c.p50, 1),
                      "p90_s": None if c.p90 is None else round(c.p90, 1),
                      "fail_share": None if c.fail_share is None else round(c.fail_share, 4),
                      "from_prior": c.from_prior, **({"peak_price": peak} if peak is not None else {})})
    rec = adv.as_dict()
    rec["start_utc"], rec["finish_utc"] = _iso(adv.start), _iso(adv.finish)
    return {"model": entry.name, "provider": entry.provider, "domain": fc.domain, "history_file": fc.path,
            "now": t_now, "now_utc": _iso(t_now), "deadline": dl, "deadline_utc": _iso(dl),
            "workload": {"items": items, "input_tokens": input_tokens, "output_tokens": output_tokens},
            "enough_history": fc.enough, "why_not": None if fc.enough else fc.why_not(),
            "observed_hours": fc.observed_cells, "attempts": fc.total_attempts,
            "peak_hours": entry.peak_hours.as_dict() if entry.peak_hours else None,
            "cells": cells, "recommendation": rec}


def _week0(t: float) -> float:
    from ..history.recorder import week_start

    return week_start(t)


def _count(n: int) -> str:
    return "·" if n == 0 else str(n) if n < 1000 else f"{n // 1000}k" if n < 10000 else "9k+"


def _rgb(a: float) -> tuple[int, int, int]:
    """Red (busy) through yellow to green (quiet)."""
    a = max(0.0, min(1.0, a))
    if a < 0.5:
        return 200, int(60 + 300 * a), 60
    return int(200 - 300 * (a - 0.5)), 210, 60


def _print(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = Console()
    cells = {(c["day"], c["hour"]): c for c in data["cells"]}
    clock = data["peak_hours"] is not None
    title = (f"{data['model']}: price by hour (UTC)" if clock else
             f"{data['model']}: expected flex availability by hour of the week (UTC)")
    con.print(Text(title, style="bold"))
    wide = con.width >= 101          # room for 3-character counts and a gap: 4 + 24 x 4 columns
    cw = 3 if wide else 2
    for what in (("price",) if clock else ("availability", "queue")):
        t = Table(show_header=True, header_style="bold", box=None, padding=(0, 0, 0, 1), pad_edge=False)
        t.add_column("", width=3)
        for h in range(24):
            t.add_column(f"{h:02d}", justify="center", width=cw)
        for d in DAYS:
            row: list[Any] = [d]
            for h in range(24):
                c = cells[(d, h)]
                if what == "price":
                    row.append(Text(" P " if c.get("peak_price") else " . ",
                                    style="on rgb(200,90,60)" if c.get("peak_price") else "on rgb(80,170,80)"))
                    continue
                if what == "availability":
                    r, g, b = _rgb(c["availability"])
                    txt = _count(c["attempts"]) if wide else str(min(9, int(c["availability"] * 10)))
                else:
                    p = c["p50_s"]
                    r, g, b = _rgb(1.0 - min(1.0, (p or 900.0) / 300.0)) if c["attempts"] else (90, 90, 90)
                    txt = "-" if p is None else (f"{p:.0f}" if p < 99.5 else f"{p / 60:.0f}m")
                style = f"black on rgb({r},{g},{b})" + (" dim" if c["from_prior"] else "")
                row.append(Text(txt[:cw].center(cw), style=style))
            t.add_row(*row)
        con.print(Text({"availability": "availability (green = quiet; dim = mostly prior; number = attempts "
                                        "observed)" if wide else "availability 0-9 (green = quiet; dim = mostly "
                                        "prior; attempts per cell: --json, --html or a 101-column terminal)",
                        "queue": "median flex latency, queue + service (s; m = minutes)",
                        "price": "P = peak price, . = off-peak (half price)"}[what], style="italic"))
        con.print(t)
    if not clock:
        if data["enough_history"]:
            con.print(f"{data['observed_hours']} of 168 hours rest on enough attempts ({data['attempts']:,} in all; "
                      f"{data['domain']} history, {data['history_file']})")
        else:
            con.print(f"[yellow]{data['why_not']}[/yellow]: the map shows the prior (flat), and the planner keeps "
                      f"a straight line ({data['domain']} history, {data['history_file']})")
    r = data["recommendation"]
    w = data["workload"]
    cost = "unknown" if r["cost_usd"] is None else f"${float(r['cost_usd']):,.4f}"
    if r.get("cost_usd_high"):
        cost += f" (all flex) to ${float(r['cost_usd_high']):,.4f} (all standard)"
    con.print(Text(f"{w['items']:,} items x ({w['input_tokens']:,} in + {w['output_tokens']:,} out tokens)"
                   + (f", deadline {data['deadline_utc']}" if data["deadline"] else ""), style="bold"))
    con.print(f"recommended start: {r['start_utc']}" + (" (now)" if r["start"] == data["now"] else ""))
    con.print(f"expected finish:   {r['finish_utc'] or 'unknown (no forecast)'}")
    con.print(f"expected cost:     {cost}")
    con.print(f"why: {r['why']}")


def render_html(data: dict[str, Any]) -> str:
    """One static page: the heat maps as coloured tables with counts, and the recommendation."""
    esc = _html.escape
    cells = {(c["day"], c["hour"]): c for c in data["cells"]}
    clock = data["peak_hours"] is not None

    def grid(kind: str) -> str:
        head = "".join(f"<th>{h:02d}</th>" for h in range(24))
        rows = []
        for d in DAYS:
            tds = []
            for h in range(24):
                c = cells[(d, h)]
                if kind == "price":
                    peak = c.get("peak_price")
                    tds.append(f'<td style="background:{"#c85a3c" if peak else "#50aa50"}" '
                               f'title="{d} {h:02d}:00 {"peak" if peak else "off-peak"}">{"P" if peak else ""}</td>')
                    continue
                if kind == "availability":
                    r, g, b = _rgb(c["availability"])
                    txt = _count(c["attempts"])
                else:
                    p = c["p50_s"]
                    r, g, b = _rgb(1.0 - min(1.0, (p or 900.0) / 300.0)) if c["attempts"] else (150, 150, 150)
                    txt = "-" if p is None else f"{p:.0f}"
                tip = (f"{d} {h:02d}:00 UTC: availability {c['availability']:.2f}, {c['attempts']} attempts, "
                       f"median latency {c['p50_s']} s, p90 {c['p90_s']} s" + (" (mostly prior)" if c["from_prior"] else ""))
                op = "0.45" if c["from_prior"] else "1"
                tds.append(f'<td style="background:rgba({r},{g},{b},{op})" title="{esc(tip)}">{esc(txt)}</td>')
            rows.append(f"<tr><th>{d}</th>{''.join(tds)}</tr>")
        return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"

    r = data["recommendation"]
    parts = [f"<h1>When to run {esc(data['model'])}</h1>",
             f"<p>{esc(data['domain'])} history: <code>{esc(str(data['history_file']))}</code>; "
             f"{data['attempts']:,} attempts; times in UTC.</p>"]
    if not clock and not data["enough_history"]:
        parts.append(f"<p class=warn>{esc(data['why_not'])}: the map shows the prior (flat).</p>")
    if clock:
        parts += ["<h2>Price by hour (P = peak)</h2>", grid("price")]
    else:
        parts += ["<h2>Expected flex availability (green = quiet; number = attempts observed)</h2>",
                  grid("availability"), "<h2>Median flex latency, queue + service (s)</h2>", grid("queue")]
    cost = "unknown" if r["cost_usd"] is None else f"${float(r['cost_usd']):,.4f}"
    parts.append(f"<h2>Recommendation</h2><ul><li>start: {esc(str(r['start_utc']))}</li>"
                 f"<li>finish: {esc(str(r['finish_utc'] or 'unknown'))}</li><li>cost: {esc(cost)}</li>"
                 f"<li>why: {esc(r['why'])}</li></ul>")
    css = ("body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{width:2.2em;height:1.6em;text-align:center;font-size:11px;border:1px solid #fff}"
           ".warn{color:#a60}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>flextier when {esc(data['model'])}</title>"
            f"<style>{css}</style></head><body>{''.join(parts)}</body></html>\n")


def register(app: typer.Typer) -> None:
    @app.command()
    def when(
        model: str = typer.Option(..., "--model", "-m", help="provider/model-id or alias"),
        items: int = typer.Option(1000, "--items", help="calls in the job"),
        input_tokens: int = typer.Option(1000, "--input-tokens", help="input tokens per call"),
        output_tokens: int = typer.Option(500, "--output-tokens", help="output tokens per call"),
        deadline: Optional[str] = typer.Option(None, "--deadline", help="how long from now the job may take (24h)"),
        by: Optional[str] = typer.Option(None, "--by", help="finish by this time (15:30 or 2026-11-28T06:00, UTC)"),
        rate: Optional[float] = typer.Option(None, "--rate", help="items/s the standard lane sustains "
                                             "(clock-priced models; default 5)"),
        html_out: Optional[str] = typer.Option(None, "--html", help="write a self-contained HTML page here"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        emulated: bool = typer.Option(False, "--emulated", help="read the emulated history (runs under --emulate)"),
        history: Optional[str] = typer.Option(None, "--history", help="history file (default: FLEXTIER_HISTORY or "
                                              "the per-user data directory)"),
        now: Optional[str] = typer.Option(None, "--now", help="plan as if it were this UTC date-time"),
    ) -> None:
        """When flex is quiet for a model (from your own history), and when to start a job."""
        t_now = None
        if now:
            try:
                dt = datetime.fromisoformat(now)
            except ValueError:
                raise UserInputError(f"{now!r} is not a date-time like 2026-11-24T07:00", field="--now") from None
            t_now = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
        if history is not None and not Path(history).exists():
            raise UserInputError("no such history file", field="--history", file=history)
        data = when_data(model, items=items, input_tokens=input_tokens, output_tokens=output_tokens,
                         deadline=deadline, by=by, now=t_now, emulated=emulated, history=history, rate=rate)
        if html_out:
            try:
                Path(html_out).write_text(render_html(data), encoding="utf-8")
            except OSError as exc:
                raise UserInputError(f"cannot write: {exc.strerror}", field="--html", file=html_out) from None
        if as_json:
            typer.echo(json.dumps(data, indent=1))
        else:
            _print(data)
