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
from . import clocklag
from .store import JobStore

TIER_COLORS = {"flex": "#2a9d8f", "standard": "#e76f51", "batch": "#457b9d", "priority": "#8e44ad",
               "unknown": "#999999"}
MAX_POINTS = 200
LANES = ("flex", "standard", "batch")
LATENCY_SAMPLE = 20000


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
    db = store.db
    first_ts, last_ts = db.execute("SELECT MIN(ts), MAX(ts) FROM attempts").fetchone()
    last_done = db.execute("SELECT MAX(finished_at) FROM items WHERE state IN ('done','failed')").fetchone()[0]
    deadline = job.get("deadline")
    complete = counts["done"] + counts["failed"] == counts["total"] and counts["total"] > 0
    met = None
    if deadline is not None and complete and last_done is not None:
        met = last_done <= deadline
    # latency per tier: a bounded stride sample of successful attempts
    latency: dict[str, dict[str, Any]] = {}
    for tier, n in db.execute("SELECT tier, COUNT(*) FROM attempts WHERE outcome = 'ok' AND latency IS NOT NULL "
                              "GROUP BY tier").fetchall():
        stride = max(1, n // LATENCY_SAMPLE)
        vals = sorted(v for (v,) in db.execute(
            "SELECT latency FROM attempts WHERE outcome = 'ok' AND tier = ? AND latency IS NOT NULL AND id % ? = 0",
            (tier, stride)))
        latency[tier] = {"n": n, "p50": _pct(vals, 0.5), "p90": _pct(vals, 0.9), "p99": _pct(vals, 0.99),
                         "max": vals[-1] if vals else None, "sample": vals}
    # tier share over time
    t0 = first_ts if first_ts is not None else job.get("created_at") or 0.0
    t1 = max(x for x in (last_ts, last_done, t0) if x is not None)
    nb = 40
    width = max((t1 - t0) / nb, 1e-9)
    share: dict[int, dict[str, int]] = {}
    for b, tier, n in db.execute("SELECT CAST((finished_at - ?) / ? AS INTEGER), served_tier, COUNT(*) FROM items "
                                 "WHERE state = 'done' AND finished_at IS NOT NULL GROUP BY 1, 2", (t0, width)):
        share.setdefault(min(int(b), nb - 1), {})[tier or "unknown"] = n
    # cumulative cost vs standard, sampled to at most MAX_POINTS points
    n_ledger = db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
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
        "cumulative": cum,
        "events": events,
    }


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
# HTML with inline SVG
# --------------------------------------------------------------------------------------

W, H, PAD = 640, 240, 44


def _axes(xlabel: str, ylabel: str, ymax: float, yfmt: str = "{:.0f}") -> str:
    parts = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>',
             f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
             f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="12">{html.escape(xlabel)}</text>',
             f'<text x="12" y="{H / 2}" font-size="12" transform="rotate(-90 12 {H / 2})" '
             f'text-anchor="middle">{html.escape(ylabel)}</text>']
    for k in range(5):
        v = ymax * k / 4
        y = H - PAD - (H - PAD - 10) * k / 4
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{html.escape(yfmt.format(v))}</text>')
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - 10}" y2="{y:.1f}" stroke="#eee"/>')
    return "".join(parts)


def _legend(items: list[tuple[str, str]]) -> str:
    out = []
    for i, (name, color) in enumerate(items):
        x = PAD + 10 + i * 110
        out.append(f'<rect x="{x}" y="14" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="23" font-size="11">{html.escape(name)}</text>')
    return "".join(out)


def _svg(body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'role="img" aria-label="{html.escape(title)}">{body}</svg>')


def svg_tier_share(r: dict[str, Any]) -> str:
    sh = r["share"]
    data, nb = sh["data"], sh["buckets"]
    tiers = sorted({t for b in data.values() for t in b}) or ["flex"]
    ymax = max([sum(b.values()) for b in data.values()] + [1])
    bw = (W - 10 - PAD) / nb
    rects = []
    for b in range(nb):
        y = H - PAD
        for t in tiers:
            n = data.get(b, {}).get(t, 0)
            if not n:
                continue
            h = (H - PAD - 10) * n / ymax
            y -= h
            rects.append(f'<rect x="{PAD + b * bw:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" '
                         f'fill="{TIER_COLORS.get(t, "#777")}"><title>{html.escape(t)}: {n}</title></rect>')
    span = sh["width"] * nb
    return _svg(_axes(f"time since start (0 to {span / 3600:.1f} h)", "items finished", ymax)
                + "".join(rects) + _legend([(t, TIER_COLORS.get(t, "#777")) for t in tiers]), "tier share over time")


def svg_latency(r: dict[str, Any]) -> str:
    lat = r["latency"]
    allv = [v for t in lat.values() for v in t["sample"] if v > 0]
    if not allv:
        return _svg(_axes("latency (s, log scale)", "share of requests", 1.0, "{:.2f}"), "latency")
    lo, hi = math.log10(min(allv)), math.log10(max(allv)) + 1e-9
    nb = 30
    paths = []
    ymax = 0.0
    hists = {}
    for t, d in lat.items():
        h = [0] * nb
        for v in d["sample"]:
            if v > 0:
                h[min(nb - 1, int((math.log10(v) - lo) / (hi - lo + 1e-12) * nb))] += 1
        tot = max(1, sum(h))
        hists[t] = [k / tot for k in h]
        ymax = max(ymax, max(hists[t]))
    ymax = ymax or 1.0
    for t, h in sorted(hists.items()):
        pts = " ".join(f"{PAD + (i + 0.5) * (W - 10 - PAD) / nb:.1f},{H - PAD - (H - PAD - 10) * v / ymax:.1f}"
                       for i, v in enumerate(h))
        paths.append(f'<polyline fill="none" stroke="{TIER_COLORS.get(t, "#777")}" stroke-width="2" points="{pts}"/>')
    ticks = []
    for k in range(5):
        v = 10 ** (lo + (hi - lo) * k / 4)
        x = PAD + (W - 10 - PAD) * k / 4
        ticks.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{v:.3g}</text>')
    return _svg(_axes("latency (s, log scale)", "share of requests", ymax, "{:.2f}") + "".join(ticks)
                + "".join(paths) + _legend([(t, TIER_COLORS.get(t, "#777")) for t in sorted(hists)]), "latency")


def svg_cost(r: dict[str, Any]) -> str:
    cum = r["cumulative"]
    if not cum:
        return _svg(_axes("time", "USD", 1.0, "${:.2f}"), "cost")
    t0, t1 = cum[0][0], max(cum[-1][0], cum[0][0] + 1e-9)
    ymax = max(cum[-1][2], cum[-1][1], 1e-9)

    def pts(idx: int) -> str:
        return " ".join(f"{PAD + (W - 10 - PAD) * (p[0] - t0) / (t1 - t0):.1f},"
                        f"{H - PAD - (H - PAD - 10) * p[idx] / ymax:.1f}" for p in cum)

    fmt = "${:.2f}" if ymax >= 1 else "${:.4f}"
    return _svg(_axes(f"time since start (0 to {(t1 - t0) / 3600:.1f} h)", "cumulative USD", ymax, fmt)
                + f'<polyline fill="none" stroke="#e76f51" stroke-width="2" stroke-dasharray="5,3" points="{pts(2)}"/>'
                + f'<polyline fill="none" stroke="#2a9d8f" stroke-width="2" points="{pts(1)}"/>'
                + _legend([("spent", "#2a9d8f"), ("at standard price", "#e76f51")]), "cumulative cost")


def render_html(r: dict[str, Any]) -> str:
    """One self-contained HTML page: the text summary and three inline SVG charts."""
    title = f"flextier report: {r['job']['name']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:720px;margin:2em auto;color:#222}}
pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}h2{{font-size:1.1em;margin-top:1.6em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<pre>{html.escape(format_report(r))}</pre>
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
