"""The savings calculator behind ``flextier estimate``.

Prices a whole workload (calls x tokens) at standard, flex and batch, with and
without a cached share of the input, from the catalog. Totals are computed on the
workload's total token counts in exact Decimal arithmetic, so "$200 vs $100" is
exactly that, not a float that prints as 199.99999. The long-context uplift is
decided per call, by one call's own input size (``--input-tokens``), never by the
workload's total: 50,000 short calls are 50,000 short calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from .catalog import ModelEntry
from .cost import Usage, tier_cost
from .errors import UserInputError

ESTIMATE_TIERS = ("standard", "flex", "batch")


@dataclass(frozen=True)
class EstimateRow:
    """One line of the table: a model at a tier, with or without caching."""

    model: str
    tier: str
    cached: bool
    available: bool          # is the tier offered for this model at all
    cost: Decimal | None     # None = unknown price (or tier not offered)
    saved_pct: Decimal | None  # against standard without caching
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "tier": self.tier, "cached": self.cached, "available": self.available,
            "cost_usd": None if self.cost is None else float(self.cost),
            "cost_usd_exact": None if self.cost is None else format(self.cost.normalize(), "f"),
            "saved_pct": None if self.saved_pct is None else float(self.saved_pct.quantize(Decimal("0.01"))),
            "note": self.note,
        }


def validate_workload(calls: int, input_tokens: int, output_tokens: int, cached_fraction: float) -> None:
    """Reject impossible workloads with the flag that is wrong."""
    for flag, v in (("--calls", calls), ("--input-tokens", input_tokens), ("--output-tokens", output_tokens)):
        if v < 0:
            raise UserInputError(f"must be zero or more, got {v}", field=flag)
    if not (0.0 <= cached_fraction <= 1.0) or cached_fraction != cached_fraction:
        raise UserInputError(f"must be between 0 and 1, got {cached_fraction}", field="--cached-fraction")


def estimate(entry: ModelEntry, calls: int, input_tokens: int, output_tokens: int,
             cached_fraction: float = 0.0) -> list[EstimateRow]:
    """Rows for standard, flex and batch, each without and (if asked) with caching; a clock-priced
    model (DeepSeek) also gets an ``offpeak`` row, its standard row being the peak price."""
    validate_workload(calls, input_tokens, output_tokens, cached_fraction)
    total_in = calls * input_tokens
    total_out = calls * output_tokens
    frac = Decimal(str(cached_fraction))
    cached_in = int((Decimal(total_in) * frac).to_integral_value(rounding=ROUND_HALF_EVEN))
    variants = [(False, Usage(total_in, 0, total_out))]
    if cached_fraction > 0:
        variants.append((True, Usage(total_in, cached_in, total_out)))
    baseline = tier_cost(variants[0][1], entry.tier_prices("standard"), entry, request_input_tokens=input_tokens)
    rows: list[EstimateRow] = []
    tiers = ESTIMATE_TIERS + (("offpeak",) if entry.peak_hours is not None else ())
    for tier in tiers:
        for cached, usage in variants:
            available = entry.supports(tier)
            note = ""
            if not available:
                cost = None
                note = ("no flex tier for this model: use batch (50% off, async, up to 24 h)"
                        if tier == "flex" and entry.supports_batch else
                        "no flex tier for this model: off-peak hours are its discount"
                        if tier == "flex" and entry.peak_hours is not None else f"no {tier} tier for this model")
            else:
                cost = tier_cost(usage, entry.tier_prices(tier), entry, request_input_tokens=input_tokens)
                if cost is None:
                    note = "price unknown (not confirmed by any source)"
                elif entry.peak_hours is not None and tier in ("standard", "offpeak"):
                    note = (f"{entry.peak_hours.describe()}" if tier == "standard" else
                            f"every hour outside the {entry.peak_hours.describe()}")
            saved = None
            if cost is not None and baseline:
                saved = (baseline - cost) * 100 / baseline
            rows.append(EstimateRow(entry.name, tier, cached, available, cost, saved, note))
    return rows
