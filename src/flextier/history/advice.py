"""When to start a job: the recommendation behind ``flextier when`` and ``flextier run --start auto``.

Pure: the forecast, the catalog entry and the clock value come in; nothing is read or sent.

* **Flex model with enough history** (docs/history.md §4): for each candidate start (now, then
  every hour up to the deadline, or a week without one) the expected flex work is the learned
  throughput integrated from the start; items it cannot carry by the deadline are priced at
  standard. The recommendation is the cheapest start, and among starts within 0.5% of that cost
  the one with the shortest run (so a job that will be all-flex anyway starts in the quiet hours
  instead of sitting in a busy queue), and then the earliest.
* **Flex model without enough history**: start now, no finish time (the forecast would be made-up
  precision); the cost is given as the range all-flex to all-standard.
* **Clock-priced model** (DeepSeek): the run takes ``items / rate`` seconds at the standard lane's
  rate; its cost is the share of that run in peak and off-peak hours. The cheapest start that
  still finishes by the deadline wins, earliest first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..catalog import ModelEntry
from ..cost import Usage, tier_cost

__all__ = ["Advice", "recommend", "DEFAULT_RATE"]

DEFAULT_RATE = 5.0        # items/s a standard lane sustains when the user gives no --rate (an assumption)
STEP = 300.0
WEEK = 7 * 86400.0


@dataclass
class Advice:
    start: float
    finish: float | None
    cost: Decimal | None
    cost_high: Decimal | None = None       # the range's top when the mix is unknown
    flex_items: float | None = None
    standard_items: float | None = None
    offpeak_share: float | None = None
    why: str = ""
    meets_deadline: bool | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def money(v: Decimal | None) -> str | None:
            return None if v is None else format(v.normalize(), "f")

        return {"start": self.start, "finish": self.finish, "cost_usd": money(self.cost),
                "cost_usd_high": money(self.cost_high), "flex_items": self.flex_items,
                "standard_items": self.standard_items, "offpeak_share": self.offpeak_share,
                "meets_deadline": self.meets_deadline, "why": self.why}


def _unit(entry: ModelEntry, tier: str, i: int, o: int) -> Decimal | None:
    return tier_cost(Usage(i, 0, o), entry.tier_prices(tier), entry)


def _mul(a: Decimal | None, n: float) -> Decimal | None:
    return None if a is None else a * Decimal(str(round(n, 6)))


def recommend(entry: ModelEntry, forecast: Any, *, items: int, input_tokens: int, output_tokens: int, now: float,
              deadline: float | None, rate: float | None = None) -> Advice:
    """The recommended start for ``items`` calls of that size (see the module doc)."""
    if entry.peak_hours is not None and not entry.supports_flex:
        return _clock(entry, items=items, i=input_tokens, o=output_tokens, now=now, deadline=deadline,
                      rate=rate or DEFAULT_RATE)
    flex_u, std_u = _unit(entry, "flex", input_tokens, output_tokens), _unit(entry, "standard", input_tokens,
                                                                           output_tokens)
    if not entry.supports_flex:
        return Advice(now, None, _mul(std_u, items), why="no flex tier for this model: time of day does not "
                      "change its price", meets_deadline=None)
    if forecast is None or not getattr(forecast, "enough", False):
        why = "too little history for a forecast: start now; the planner keeps a straight line"
        if forecast is not None:
            why = forecast.why_not() + "; start now, the planner keeps a straight line"
        return Advice(now, None, _mul(flex_u, items), cost_high=_mul(std_u, items), why=why)
    horizon = deadline if deadline is not None else now + WEEK
    starts = [now]
    h = (now // 3600 + 1) * 3600
    while h < horizon:
        starts.append(h)
        h += 3600
    cands = []
    for s in starts:
        end = horizon if deadline is not None else s + WEEK
        cum, t, fin = 0.0, s, None
        while t < end:
            dt = min(STEP, end - t)
            r = forecast.throughput_at(t + dt / 2, output_tokens or None)
            if cum + r * dt >= items:
                fin = t + (items - cum) / r if r > 0 else t
                cum = float(items)
                break
            cum += r * dt
            t += dt
        flex_n = min(float(items), cum)
        std_n = items - flex_n
        if flex_u is None or (std_n > 0 and std_u is None):
            cost = None
        else:
            cost = flex_u * Decimal(str(round(flex_n, 6))) + (std_u or Decimal(0)) * Decimal(str(round(std_n, 6)))
        finish = fin if fin is not None else (deadline if deadline is not None else None)
        cands.append({"start": s, "finish": finish, "cost": cost, "flex_items": flex_n, "standard_items": std_n})
    priced = [c for c in cands if c["cost"] is not None]
    pool = priced or cands
    if priced:
        best_cost = min(c["cost"] for c in priced)
        pool = [c for c in priced if c["cost"] <= best_cost * Decimal("1.005")]
    pool.sort(key=lambda c: ((c["finish"] - c["start"]) if c["finish"] is not None else float("inf"), c["start"]))
    best = pool[0]
    why = ("the cheapest start, and among those the shortest run (the quiet hours)" if best["start"] > now
           else "starting now is cheapest and as fast as any later start")
    return Advice(best["start"], best["finish"], best["cost"], flex_items=round(best["flex_items"], 1),
                  standard_items=round(best["standard_items"], 1), why=why,
                  meets_deadline=None if deadline is None else (best["finish"] is not None and best["finish"] <= deadline),
                  alternatives=[{k: (format(v.normalize(), "f") if isinstance(v, Decimal) else v) for k, v in c.items()}
                                for c in cands[:1]])


def _clock(entry: ModelEntry, *, items: int, i: int, o: int, now: float, deadline: float | None,
           rate: float) -> Advice:
    ph = entry.peak_hours
    assert ph is not None
    peak_u, off_u = _unit(entry, "standard", i, o), _unit(entry, "offpeak", i, o)
    dur = items / rate
    horizon = deadline - dur if deadline is not None else now + WEEK
    starts = [now]
    t = now
    while True:
        t = ph.next_change(t)
        if t > horizon:
            break
        if not ph.is_peak(t):
            starts.append(t)
    best = None
    for s in starts:
        peak_s, t, end = 0.0, s, s + dur
        while t < end:
            nxt = min(end, ph.next_change(t))
            if ph.is_peak(t):
                peak_s += nxt - t
            t = nxt
        share_off = 1.0 - (peak_s / dur if dur > 0 else 0.0)
        if peak_u is None or off_u is None:
            cost = None
        else:
            cost = (peak_u * Decimal(str(round(items * (1 - share_off), 6)))
                    + off_u * Decimal(str(round(items * share_off, 6))))
        key = (cost if cost is not None else Decimal("Infinity"), s)
        if best is None or key < best[0]:
            best = (key, s, cost, share_off)
    assert best is not None
    _, s, cost, share = best
    why = (f"{ph.describe()}; off-peak is half price" + ("" if s == now else ": waiting for the off-peak start")
           + f" (assuming {rate:g} items/s; --rate changes it)")
    return Advice(s, s + dur, cost, offpeak_share=round(share, 4), standard_items=float(items), why=why,
                  meets_deadline=None if deadline is None else s + dur <= deadline)
