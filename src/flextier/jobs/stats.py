"""Live counters of a run, for the progress panel and the summary (done counts are committed ones)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["Stats"]


@dataclass
class Stats:
    """Live counters for progress and the summary. Done counts are durable (committed) ones."""

    total: int = 0
    done: int = 0
    failed: int = 0
    done_at_start: int = 0
    by_tier: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    spent: Decimal = Decimal(0)
    standard_cost: Decimal = Decimal(0)
    spent_by_tier: dict[str, Decimal] = field(default_factory=dict)
    duplicates: int = 0               # billed answers that lost to another copy of their item
    duplicate_cost: Decimal = Decimal(0)
    flex_inflight: int = 0
    std_inflight: int = 0
    flex_limit: int = 0
    in_batch: int = 0                 # items inside provider batches (submitted or about to be)
    mode: str = ""
    reason: str = ""
    started: float = 0.0
    now: float = 0.0
    deadline: float | None = None
    recovered: int = 0
    settled_from_provider: int = 0   # resumed items whose cut-off answer was read back from the provider
    possibly_billed: int = 0
    paused: str | None = None
    skipped_invalid: int = 0
    unknown_cost: int = 0             # results served at a tier with no known price (cost unknown, not $0)
    held: int = 0                     # items claimed from the store, not final: what `status` calls in flight

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def saved_pct(self) -> float | None:
        if not self.standard_cost:
            return None
        return float((self.standard_cost - self.spent) * 100 / self.standard_cost)

    @property
    def flex_share(self) -> float | None:
        n = sum(self.by_tier.values())
        return None if not n else self.by_tier.get("flex", 0) / n

    def rate(self) -> float | None:
        """Items per clock second since this run started."""
        el = self.now - self.started
        k = self.finished - self.done_at_start
        return k / el if el > 0 and k > 0 else None

    def eta(self) -> float | None:
        r = self.rate()
        left = self.total - self.finished
        if left <= 0:
            return self.now
        return None if not r else self.now + left / r
