"""Cost math: price one usage record at the tier that served it.

Every later part (the client ledger, the runner, the report, the emulator's own
billing) prices tokens through :func:`price_usage`, so there is exactly one
definition of what a call costs. Rules:

* ``input_tokens`` includes ``cached_input_tokens``; cached ones are priced at the
  tier's cached rate, the rest at the input rate.
* ``output_tokens`` includes ``reasoning_tokens`` (reasoning is billed as output).
  Adapters fold provider spellings into this shape (Gemini's ``thoughtsTokenCount``
  is added to output; Anthropic's cache reads are added to input).
* The tier is the one the provider *reports* it served.
* Any price that the catalog does not know makes the cost ``None`` ("unknown"),
  never 0 and never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .catalog import ModelEntry, TierPrices, default_catalog

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Usage:
    """Billed token counts of one call. ``output_tokens`` includes reasoning tokens."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens is part of input_tokens and cannot exceed it")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens is part of output_tokens and cannot exceed it")

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens,
                     self.cached_input_tokens + other.cached_input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.reasoning_tokens + other.reasoning_tokens)

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "cached_input_tokens": self.cached_input_tokens,
                "output_tokens": self.output_tokens, "reasoning_tokens": self.reasoning_tokens}


@dataclass(frozen=True)
class Cost:
    """What a usage record cost at the served tier, and what it would have cost at standard."""

    tier: str
    cost: Decimal | None
    standard_cost: Decimal | None

    @property
    def saving(self) -> Decimal | None:
        if self.cost is None or self.standard_cost is None:
            return None
        return self.standard_cost - self.cost

    @property
    def saving_pct(self) -> Decimal | None:
        s = self.saving
        if s is None or not self.standard_cost:
            return None
        return s * 100 / self.standard_cost


def tier_rates(prices: TierPrices, entry: ModelEntry | None, request_input_tokens: int
               ) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(input, cached input, output) rates for one request whose prompt has ``request_input_tokens``.

    The long-context uplift is a per-request rule: providers raise the rate of a request whose
    *own* prompt passes the threshold, never of a workload whose total does.
    """
    in_rate, cached_rate, out_rate = prices.input, prices.cached_input, prices.output
    if entry is not None and entry.long_context and request_input_tokens > entry.long_context.above_input_tokens:
        lc = entry.long_context
        in_rate = None if in_rate is None else in_rate * lc.input_multiplier
        cached_rate = None if cached_rate is None else cached_rate * lc.input_multiplier
        out_rate = None if out_rate is None else out_rate * lc.output_multiplier
    return in_rate, cached_rate, out_rate


def tier_cost(usage: Usage, prices: TierPrices | None, entry: ModelEntry | None = None, *,
              request_input_tokens: int | None = None) -> Decimal | None:
    """Dollars for ``usage`` at one tier's prices; None when any needed price is unknown.

    ``usage`` is one request unless ``request_input_tokens`` is given: then it is the sum of
    requests that each had that many input tokens (a workload of identical calls), and the
    long-context uplift is decided by that per-request size, not by the sum.
    """
    if prices is None:
        return None
    per_request = usage.input_tokens if request_input_tokens is None else request_input_tokens
    in_rate, cached_rate, out_rate = tier_rates(prices, entry, per_request)
    uncached = usage.input_tokens - usage.cached_input_tokens
    total = Decimal(0)
    for tokens, rate in ((uncached, in_rate), (usage.cached_input_tokens, cached_rate),
                         (usage.output_tokens, out_rate)):
        if tokens == 0:
            continue
        if rate is None:
            return None
        total += Decimal(tokens) * rate
    return total / MILLION


def price_usage(usage: Usage, model: ModelEntry | str, tier: str) -> Cost:
    """Price ``usage`` at the served ``tier`` and at standard (the counterfactual)."""
    entry = default_catalog().resolve(model) if isinstance(model, str) else model
    return Cost(tier=tier,
                cost=tier_cost(usage, entry.tier_prices(tier), entry),
                standard_cost=tier_cost(usage, entry.tier_prices("standard"), entry))


def clock_tier(entry: ModelEntry, ts: float, tier: str = "standard") -> str:
    """The price tier a ``tier`` request to ``entry`` pays when the provider receives it at ``ts``.

    A clock-priced model (catalog ``peak_hours``: DeepSeek) bills standard requests at its
    ``offpeak`` prices outside the peak windows; every other model and tier is unchanged. Adapters
    call this with the provider's own timestamp of the request (DeepSeek's ``created``) and report
    the result as the served tier, so every path prices it through :func:`price_usage` as usual.
    """
    if tier == "standard" and entry.peak_hours is not None and not entry.peak_hours.is_peak(ts):
        return "offpeak"
    return tier


def fmt_usd(value: Decimal | None, places: int = 2) -> str:
    """Dollars for display; ``None`` is shown as "unknown", never $0."""
    if value is None:
        return "unknown"
    if value != 0 and abs(value) < Decimal("0.01") and places == 2:
        places = 6
    return f"${value:,.{places}f}"


__all__ = ["Usage", "Cost", "price_usage", "tier_cost", "tier_rates", "fmt_usd", "clock_tier"]
