"""What the ledger says, summed: totals, per key, per model, and by hour.

One function feeds the dashboard (``GET /api/summary``), ``flextier report --gateway`` and its
``--html`` file, so the three never disagree. Money is summed exactly (Decimal) and shown as
strings; a call whose price is unknown is counted as unpriced, never as $0.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any, Iterable

from ..cost import fmt_usd
from .ledger import CallRow

__all__ = ["summarize", "format_summary"]

ZERO = Decimal(0)


class _Acc:
    def __init__(self) -> None:
        self.calls = self.ok = self.failed = self.refused = self.unpriced = 0
        self.sheds = self.fallbacks = self.flex_attempts = 0
        self.cost = ZERO
        self.standard = ZERO
        self.tiers: dict[str, int] = defaultdict(int)
        self.queue: list[float] = []
        self.latency: list[float] = []

    def add(self, r: CallRow) -> None:
        self.calls += 1
        if r.outcome in ("budget", "unauthorized", "refused"):
            self.refused += 1
            return
        if r.outcome != "ok":
            self.failed += 1
        else:
            self.ok += 1
            self.tiers[r.served_tier or "unknown"] += 1
            if r.cost is None or r.standard_cost is None:
                self.unpriced += 1
            else:
                self.cost += r.cost
                self.standard += r.standard_cost
            self.queue.append(r.queue_s)
            self.latency.append(r.latency_s)
        self.sheds += r.sheds
        self.fallbacks += int(r.fallback)

    def as_dict(self) -> dict[str, Any]:
        saving = self.standard - self.cost
        served = sum(self.tiers.values())
        tried = served + self.failed
        return {
            "calls": self.calls, "ok": self.ok, "failed": self.failed, "refused": self.refused,
            "unpriced": self.unpriced, "cost": str(self.cost), "standard_cost": str(self.standard),
            "saving": str(saving), "cost_fmt": fmt_usd(self.cost), "standard_cost_fmt": fmt_usd(self.standard),
            "saving_fmt": fmt_usd(saving),
            "saving_pct": None if not self.standard else float(saving * 100 / self.standard),
            "tiers": dict(self.tiers),
            "flex_share": None if not served else self.tiers.get("flex", 0) / served,
            "sheds": self.sheds, "fallbacks": self.fallbacks,
            "shed_rate": None if not tried else self.sheds / (self.sheds + tried),
            "queue_p50_s": statistics.median(self.queue) if self.queue else None,
            "latency_p50_s": statistics.median(self.latency) if self.latency else None,
        }


def summarize(rows: Iterable[CallRow], since: float, now: float | None = None) -> dict[str, Any]:
    """Totals, ``by_key``, ``by_model`` and ``hours`` (one entry per UTC hour that had calls)."""
    now = time.time() if now is None else now
    total, keys, models = _Acc(), defaultdict(_Acc), defaultdict(_Acc)
    hours: dict[int, _Acc] = defaultdict(_Acc)
    for r in rows:
        if r.route == "passthrough":
            continue
        total.add(r)
        keys[r.key].add(r)
        models[r.model].add(r)
        hours[int(r.ts // 3600) * 3600].add(r)
    return {
        "since": since, "now": now, "total": total.as_dict(),
        "by_key": {k: a.as_dict() for k, a in sorted(keys.items())},
        "by_model": {k: a.as_dict() for k, a in sorted(models.items())},
        "hours": [{"hour": h, **a.as_dict()} for h, a in sorted(hours.items())],
    }


def format_summary(s: dict[str, Any]) -> str:
    """The terminal text of ``flextier report --gateway``."""
    t = s["total"]
    pct = "" if t["saving_pct"] is None else f" ({t['saving_pct']:.1f}% saved)"
    lines = [f"gateway calls: {t['calls']} ({t['ok']} ok, {t['failed']} failed, {t['refused']} refused)",
             f"cost {t['cost_fmt']} vs {t['standard_cost_fmt']} at standard: saved {t['saving_fmt']}{pct}"
             + (f"; {t['unpriced']} calls unpriced (unknown price)" if t["unpriced"] else ""),
             "served: " + (", ".join(f"{k} {v}" for k, v in sorted(t["tiers"].items())) or "none")
             + f"; sheds {t['sheds']}, fallbacks {t['fallbacks']}"]
    if s["by_key"]:
        lines.append("")
        lines.append(f"{'key':<16} {'calls':>6} {'cost':>12} {'standard':>12} {'saved':>12} {'flex':>6}")
        for k, a in s["by_key"].items():
            fs = "-" if a["flex_share"] is None else f"{a['flex_share'] * 100:.0f}%"
            lines.append(f"{k:<16} {a['calls']:>6} {a['cost_fmt']:>12} {a['standard_cost_fmt']:>12} "
                         f"{a['saving_fmt']:>12} {fs:>6}")
    return "\n".join(lines)
