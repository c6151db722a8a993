"""``flextier report JOB``: what a job did and what it saved, as text, JSON or one HTML page.

Everything comes from the job's store, read with aggregate queries and bounded samples,
so a report on a million-item job costs seconds and a few MB, and works on a job that
is still running or was killed. The HTML page is self-contained (inline CSS and SVG,
no scripts, no external assets) so it can be mailed or attached to a ticket.

Charts: tier share over time, latency distribution per tier, cumulative cost against
the standard-price cost of the same work.
"""
from __future__ import annotations

import html
import json
import math
import os
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..cost import fmt_usd
from . import charts, clocklag
from .store import JobStore

TIER_COLORS = {"flex": "#2a9d8f", "standard": "#e76f51", "batch": "#457b9d", "priority": "#8e44ad",
               "unknown": "#999999"}
MAX_POINTS = 200
LANES = ("flex", "standard", "batch")
LATENCY_SAMPLE = 20000
#: attempt outcomes that mean "flex had no room now" (flextier/errors.py class names)
FLEX_CAPACITY_ERRORS = ("FlexCapacityUnavailable", "Timeout", "RateLimited", "Overloaded")


def _pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(math.ceil(q * len(sorted_vals))) - 1))
    return sorted_vals[i]


def build_report(store: JobStore) -> dict[str, Any]:
    """Collect the report's figures from a store (a plain dict; money as Decimal)."""
    job = store.job() or {}
    counts = store.counts()
    totals = store.ledger_totals()
    spent, std = totals["spent"], totals["standard"]
    pb_n, pb_bound = store.possibly_billed()
    first_ts, last_ts = store.attempt_span()
    last_done = store.last_finished_at()
    deadline = job.get("deadline")
    complete = counts["done"] + counts["failed"] == counts["total"] and counts["total"] > 0
    met = None
    if deadline is not None and complete and last_done is not None:
        met = last_done <= deadline
    # latency per tier: a bounded stride sample of successful attempts
    latency: dict[str, dict[str, Any]] = {}
    for tier, n in store.ok_latency_counts():
        stride = max(1, n // LATENCY_SAMPLE)
        vals = sorted(store.ok_latency_sample(tier, stride))
        latency[tier] = {"n": n, "p50": _pct(vals, 0.5), "p90": _pct(vals, 0.9), "p99": _pct(vals, 0.99),
                         "max": vals[-1] if vals else None, "sample": vals}
    # time axes start at the job's start (when it was created: the instant a relative deadline such as
    # "10m" counts from), not at the first result; they end at the last result (or now, when running)
    t0 = job.get("created_at")
    if t0 is None:
        t0 = first_ts if first_ts is not None else 0.0
    t_end = max([x for x in (last_ts, last_done, t0) if x is not None])
    width = charts.nice_bucket(t_end - t0)
    nb = max(1, math.ceil((t_end - t0) / width + 1e-9))
    share: dict[int, dict[str, int]] = {}
    for b, tier, n in store.done_per_slice(t0, width):
        share.setdefault(min(max(int(b), 0), nb - 1), {})[tier or "unknown"] = n
    held = _held_back(store, job, t0, width, nb, deadline, last_done)
    # cumulative cost vs standard, sampled to at most MAX_POINTS points
    n_ledger = store.ledger_rows()
    every = max(1, n_ledger // MAX_POINTS)
    cum: list[tuple[float, float, float]] = []
    c = s = Decimal(0)
    for i, (ts, _seq, _tier, cost, sc) in enumerate(store.iter_ledger()):
        c += Decimal(cost) if cost else 0
        s += Decimal(sc) if sc else 0
        if i % every == 0 or i == n_ledger - 1:
            cum.append((ts, float(c), float(s)))
    events = [{"ts": ts, "kind": k, "detail": d} for ts, k, d in store.events()[-50:]]
    # cost per lane (the served tier of each billed result) and what it saved against standard
    items_by_tier = store.tier_counts()
    lanes: dict[str, dict[str, Any]] = {}
    for t in sorted(set(LANES) | set(totals["by_tier"]) | set(items_by_tier)):
        sp = totals["by_tier"].get(t, Decimal(0))
        st = totals["standard_by_tier"].get(t, Decimal(0))
        lanes[t] = {"items": items_by_tier.get(t, 0), "spent": sp, "standard": st, "saved": st - sp}
    p50s = [v["p50"] for v in latency.values() if v["p50"]]
    lag = clocklag.latest(store)
    return {
        "clock_lag": None if lag is None else lag.as_dict(),
        "clock_lag_note": clocklag.assess(lag, min(p50s) if p50s else None),
        "job": {k: job.get(k) for k in ("name", "model", "tier_mode", "deadline", "deadline_spec", "clock_domain",
                                        "created_at", "state", "input_path", "output_path", "runs", "message")},
        "counts": counts,
        "skipped_invalid": job.get("skipped_invalid", 0),
        "by_tier": store.tier_counts(),
        "spent": spent, "standard": std, "saved": std - spent,
        "saved_pct": None if not std else float((std - spent) * 100 / std),
        "spent_by_tier": totals["by_tier"],
        "lanes": lanes,
        "duplicates": {"n": totals["duplicates"], "cost": totals["duplicate_cost"]},
        "billed_total": totals["billed_total"],
        "unknown_cost_rows": totals["unknown_cost_rows"],
        "possibly_billed": {"sends": pb_n, "upper_bound": pb_bound},
        "errors": store.error_counts(),
        "first_ts": first_ts, "last_done": last_done, "deadline_met": met, "complete": complete,
        "latency": latency,
        "share": {"t0": t0, "width": width, "buckets": nb, "data": share},
        "timeline": {"t0": t0, "t_end": t_end, "deadline": deadline},
        "held_back": held,
        "cumulative": cum,
        "events": events,
    }


def _held_back(store: JobStore, job: dict[str, Any], t0: float, width: float, nb: int, deadline: float | None,
               last_done: float | None) -> dict[str, Any] | None:
    """When the planner kept standard closed while flex was refusing or slow, because the job was
    on or ahead of its line to the deadline (by design: standard is bought only when behind).

    Users saw a mostly idle job ("flex 1/1") finishing early and asked why it waited. Counted
    from the attempts: time slices with flex capacity errors and no standard attempt, in a job
    whose planner paced to a deadline (``auto`` mode with a deadline) and met it.
    """
    if deadline is None or job.get("tier_mode") != "auto" or last_done is None or last_done > deadline:
        return None
    rows = store.attempts_per_slice(t0, width)
    flex_err: dict[int, int] = {}
    std: set[int] = set()
    for b, tier, outcome, n in rows:
        if tier == "flex" and outcome in FLEX_CAPACITY_ERRORS:
            flex_err[b] = flex_err.get(b, 0) + n
        elif tier == "standard":
            std.add(b)
    waiting = {b: n for b, n in flex_err.items() if b not in std}
    if len(waiting) < 2:  # one slice is noise (a single shed answered by the next try)
        return None
    return {"slices": len(waiting), "slice_s": width, "seconds": len(waiting) * width,
            "flex_errors": sum(waiting.values()), "early_by": deadline - last_done}


def _when(ts: float | None, utc: bool) -> str:
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(ts, tz=timezone.utc) if utc else datetime.fromtimestamp(ts).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if utc else "")


def format_report(r: dict[str, Any]) -> str:
    """The text summary printed by ``flextier report`` and at the end of ``flextier run``."""
    j, c = r["job"], r["counts"]
    utc = j.get("clock_domain") == "emulated"
    lines = [f"job {j['name']}  model {j['model']}  tier {j['tier_mode']}  state {j['state']}"
             + ("  (emulated clock)" if utc else "")]
    lines.append(f"items: {c['done']} done, {c['failed']} failed, {c['pending'] + c['inflight']} left "
                 f"of {c['total']}" + (f"  ({r['skipped_invalid']} invalid skipped)" if r["skipped_invalid"] else ""))
    if r["by_tier"]:
        n = sum(r["by_tier"].values())
        lines.append("served: " + ", ".join(f"{t} {k} ({k * 100 / n:.0f}%)" for t, k in sorted(r["by_tier"].items())))
    if r["unknown_cost_rows"]:  # an unknown price makes the total and the saving unknown, never $0 / 100%
        lines.append(f"cost: unknown (known part {fmt_usd(r['spent'])}) vs {fmt_usd(r['standard'])} at standard; "
                     f"saved unknown")
    else:
        saved = "-" if r["saved_pct"] is None else f"{fmt_usd(r['saved'])} ({r['saved_pct']:.1f}%)"
        lines.append(f"cost: {fmt_usd(r['spent'])} spent vs {fmt_usd(r['standard'])} at standard; saved {saved}")
    if r["spent_by_tier"]:
        lines.append("by tier: " + ", ".join(f"{t} {fmt_usd(v)}" for t, v in sorted(r["spent_by_tier"].items())))
    lanes = r.get("lanes") or {}
    if any(v["items"] or v["spent"] for v in lanes.values()):
        lines.append("by lane: " + "; ".join(
            f"{t} {v['items']} items {fmt_usd(v['spent'])} (standard {fmt_usd(v['standard'])}, saved "
            f"{fmt_usd(v['saved'])})" for t, v in lanes.items()))
    dup = r.get("duplicates") or {"n": 0}
    if dup["n"]:
        lines.append(f"duplicates: {dup['n']} answers were billed but lost to another copy of their item "
                     f"(batch vs online after a rescue): {fmt_usd(dup['cost'])}, not in 'spent'; billed in all "
                     f"{fmt_usd(r['billed_total'])}")
    if r["unknown_cost_rows"]:
        lines.append(f"note: {r['unknown_cost_rows']} results were served at a tier with no known price "
                     f"(cost unknown, not counted as $0)")
    pb = r["possibly_billed"]
    if pb["sends"]:
        lines.append(f"possibly billed: {pb['sends']} sends were cut off (crash, timeout or hedge) and may have "
                     f"been billed: at most {fmt_usd(pb['upper_bound'])} not in the totals above")
    if r["errors"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items(), key=lambda x: -x[1])))
    for t, lat in sorted(r["latency"].items()):
        if lat["p50"] is not None:
            lines.append(f"latency {t}: p50 {lat['p50']:.1f}s p90 {lat['p90']:.1f}s p99 {lat['p99']:.1f}s "
                         f"({lat['n']} ok)")
    hb = r.get("held_back")
    if hb:
        lines.append(f"note: the planner held work back while ahead of schedule: for about "
                     f"{charts.fmt_rel(hb['seconds'])} flex refused or timed out ({hb['flex_errors']} attempts) and "
                     f"standard stayed closed, because progress was on or ahead of the line to the deadline "
                     f"(standard is bought only when behind it); the job finished "
                     f"{charts.fmt_rel(hb['early_by'])} before the deadline")
    if r.get("clock_lag_note"):
        lines.append(clocklag.describe(r["clock_lag_note"]))
    if j.get("deadline"):
        dl = f"deadline {_when(j['deadline'], utc)}"
        if r["deadline_met"] is True:
            dl += f": met, last result {_when(r['last_done'], utc)}"
        elif r["deadline_met"] is False:
            dl += f": MISSED, last result {_when(r['last_done'], utc)}"
        else:
            dl += " (job not finished)"
        lines.append(dl)
    if j.get("message"):
        lines.append(f"last message: {j['message']}")
    return "\n".join(lines)


def report_json(r: dict[str, Any]) -> str:
    """The report as JSON (money as decimal strings, samples dropped)."""
    def clean(o: Any) -> Any:
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items() if k != "sample"}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    return json.dumps(clean(r), indent=2, sort_keys=True)


# --------------------------------------------------------------------------------------
# HTML with inline SVG (charts.py: why SVG, and the layout rules)
# --------------------------------------------------------------------------------------

SPENT_STYLE = ("#2a9d8f", None)
STANDARD_STYLE = ("#e76f51", "6,4")


def _time_domain(r: dict[str, Any]) -> tuple[float, float, float | None]:
    """(t0, x1, deadline offset): seconds from the job's start. The axis reaches the deadline when
    it is within three times the job's span (else the chart would be mostly empty and the
    deadline is marked at the right edge with how far it lies)."""
    tl = r.get("timeline") or {"t0": r["share"]["t0"], "t_end": r["share"]["t0"], "deadline": None}
    t0 = tl["t0"]
    span = max(tl["t_end"] - t0, 1.0)
    d = None if tl.get("deadline") is None else tl["deadline"] - t0
    x1 = span if d is None or d > 3 * span or d < 0 else max(span, d * 1.04)
    return t0, x1, d


def _time_chart(name: str, r: dict[str, Any], *, y_ticks: list[float], y_fmt: Any, ylabel: str,
                legend: list[charts.LegendItem]) -> tuple[charts.Chart, list[tuple[float, str]]]:
    _, x1, d = _time_domain(r)
    c = charts.Chart(name, x0=0.0, x1=x1, y_ticks=y_ticks, y_fmt=y_fmt, legend=legend, ylabel=ylabel,
                     xlabel="time since the job started" + (" (emulated clock)" if _emulated(r) else ""))
    ticks = [(v, charts.fmt_rel(v)) for v in charts.time_ticks(x1)]
    if d is not None:
        c.deadline(d, f"deadline {charts.fmt_rel(d)}" if d <= x1 else f"deadline at {charts.fmt_rel(d)}")
    return c, ticks


def _emulated(r: dict[str, Any]) -> bool:
    return (r.get("job") or {}).get("clock_domain") == "emulated"


def svg_tier_share(r: dict[str, Any]) -> str:
    """Items finished per time slice, stacked by served tier."""
    sh = r["share"]
    data, nb, width = sh["data"], sh["buckets"], sh["width"]
    tiers = sorted({t for b in data.values() for t in b}) or ["flex"]
    ymax = max([sum(b.values()) for b in data.values()] + [1])
    c, ticks = _time_chart("tier-share", r, y_ticks=charts.count_ticks(ymax), y_fmt=lambda v: f"{v:,.0f}",
                           ylabel=f"items finished per {charts.fmt_rel(width)}",
                           legend=[charts.LegendItem(t, TIER_COLORS.get(t, "#777")) for t in tiers])
    for b in range(nb):
        y = 0
        for t in tiers:
            n = data.get(b, {}).get(t, 0)
            if not n:
                continue
            x_a, x_b = c.sx(b * width), c.sx(min((b + 1) * width, c.x1))
            c.add(f'<rect x="{x_a:.1f}" y="{c.sy(y + n):.1f}" width="{max(x_b - x_a - 1, 1):.1f}" '
                  f'height="{c.sy(y) - c.sy(y + n):.1f}" fill="{TIER_COLORS.get(t, "#777")}">'
                  f'<title>{html.escape(t)}: {n} between {charts.fmt_rel(b * width)} and '
                  f'{charts.fmt_rel((b + 1) * width)}</title></rect>')
            y += n
    return c.render(ticks, "tier share over time")


def svg_cost(r: dict[str, Any]) -> str:
    """Cumulative spend against what the same work would have cost at standard."""
    cum = r["cumulative"]
    t0 = _time_domain(r)[0]
    top = max([p[2] for p in cum] + [p[1] for p in cum] + [0.0])
    yt = charts.money_ticks(top or 0.01)
    step = yt[1] - yt[0] if len(yt) > 1 else 1.0
    places = max(2, min(6, -math.floor(math.log10(step)) + (0 if step >= 0.01 else 1))) if step < 1 else 2
    fmt = lambda v: f"${v:,.{places}f}"  # noqa: E731
    legend = [charts.LegendItem("spent", SPENT_STYLE[0], "line", SPENT_STYLE[1]),
              charts.LegendItem("same work at the standard price", STANDARD_STYLE[0], "line", STANDARD_STYLE[1])]
    c, ticks = _time_chart("cost", r, y_ticks=yt, y_fmt=fmt, ylabel="cumulative USD", legend=legend)
    if cum:
        # nothing is spent before the first answer: flat at 0 until then, not a slope from the start
        pts = [(0.0, 0.0, 0.0), (cum[0][0] - t0, 0.0, 0.0)] + [(ts - t0, a, b) for ts, a, b in cum]
        for idx, (color, dash) in ((2, STANDARD_STYLE), (1, SPENT_STYLE)):
            line = " ".join(f"{c.sx(max(0.0, p[0])):.1f},{c.sy(p[idx]):.1f}" for p in pts)
            d = f' stroke-dasharray="{dash}"' if dash else ""
            c.add(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2"{d} points="{line}"/>')
    return c.render(ticks, "cumulative cost")


def svg_latency(r: dict[str, Any]) -> str:
    """Share of successful requests per latency bin (log scale), one line per tier."""
    lat = r["latency"]
    allv = [v for t in lat.values() for v in t["sample"] if v > 0]
    legend_tiers = sorted(t for t, d in lat.items() if any(v > 0 for v in d["sample"]))
    legend = [charts.LegendItem(t, TIER_COLORS.get(t, "#777"), "line") for t in legend_tiers]
    if not allv:
        c = charts.Chart("latency", x0=0.1, x1=100.0, y_ticks=[0, 25, 50, 75, 100], y_fmt=lambda v: f"{v:.0f}%",
                         xlabel="latency (s, log scale)", ylabel="share of requests", legend=legend, log_x=True)
        return c.render([(v, charts.fmt_num(v)) for v in charts.log_ticks(0.1, 100.0)], "latency")
    lo_e, hi_e = math.log10(min(allv)), math.log10(max(allv)) + 1e-9
    if hi_e - lo_e < 1:  # at least a decade, centred, so the ticks have round values to sit on
        mid = (lo_e + hi_e) / 2
        lo_e, hi_e = mid - 0.5, mid + 0.5
    nb = 30
    hists: dict[str, list[float]] = {}
    for t, d in lat.items():
        h = [0] * nb
        for v in d["sample"]:
            if v > 0:
                h[min(nb - 1, max(0, int((math.log10(v) - lo_e) / (hi_e - lo_e) * nb)))] += 1
        tot = max(1, sum(h))
        hists[t] = [k * 100 / tot for k in h]
    ymax = max(max(h) for h in hists.values()) or 1.0
    c = charts.Chart("latency", x0=10 ** lo_e, x1=10 ** hi_e, y_ticks=charts.money_ticks(ymax),
                     y_fmt=lambda v: f"{v:g}%", xlabel="latency (s, log scale)", ylabel="share of requests",
                     legend=legend, log_x=True)
    for t, h in sorted(hists.items()):
        pts = " ".join(f"{c.sx(10 ** (lo_e + (i + 0.5) * (hi_e - lo_e) / nb)):.1f},{c.sy(v):.1f}"
                       for i, v in enumerate(h))
        c.add(f'<polyline class="series" fill="none" stroke="{TIER_COLORS.get(t, "#777")}" stroke-width="2" '
              f'points="{pts}"/>')
    return c.render([(v, charts.fmt_num(v)) for v in charts.log_ticks(10 ** lo_e, 10 ** hi_e)], "latency")


def render_html(r: dict[str, Any]) -> str:
    """One self-contained page: the text summary, the notes, and three inline SVG charts (no scripts)."""
    title = f"flextier report: {r['job']['name']}"
    notes = []
    if r.get("held_back"):
        notes.append("The planner held work back while ahead of schedule (see the note in the summary): idle "
                     "stretches in the charts below are flex refusing work while standard stayed closed.")
    if r.get("clock_lag_note"):
        notes.append(clocklag.describe(r["clock_lag_note"]))
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:720px;margin:2em auto;color:#222}}
pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}h2{{font-size:1.1em;margin-top:1.6em}}
.note{{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}}svg{{display:block}}</style></head>
<body><h1>{html.escape(title)}</h1>
<pre>{html.escape(format_report(r))}</pre>
{notes_html}
<h2>Tier share over time</h2>{svg_tier_share(r)}
<h2>Latency distribution per tier</h2>{svg_latency(r)}
<h2>Cumulative cost against standard</h2>{svg_cost(r)}
</body></html>
"""


def html_path(r: dict[str, Any], path: str | Path) -> Path:
    """Where ``--html PATH`` writes: PATH itself, or ``PATH/<job>.html`` when PATH is a directory
    (an existing one, or any path written with a trailing slash)."""
    text = str(path)
    p = Path(path)
    if p.is_dir() or text.endswith(("/", os.sep)):
        name = str(r["job"].get("name") or "job").replace(os.sep, "_").replace("/", "_")
        return p / f"{name}.html"
    return p


def write_html(r: dict[str, Any], path: str | Path) -> Path:
    """Write the page (creating parent directories) and return the file written."""
    p = html_path(r, path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(r), encoding="utf-8")
    return p


__all__ = ["build_report", "format_report", "report_json", "render_html", "write_html"]
