"""What the emulated providers billed: one row per request, priced by flextier's catalog.

Tests and benchmarks reconcile a client's own accounting against this ledger, so
it bills the way providers do: at the tier that *served* the request, nothing for
shed/refused/failed requests, and in full for work that was dispatched even when
the client went away before reading the answer.
"""
from __future__ import annotations

import threading
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from ..catalog import ModelEntry
from ..cost import Usage, price_usage

__all__ = ["Ledger", "ZERO_USAGE"]

ZERO_USAGE = Usage()


class Ledger:
    """Thread-safe append-only list of billing rows.

    Recording is on every request's hot path, so :meth:`add` only appends the raw
    facts as a tuple; pricing and the row dict are built the first time a row is read
    (:meth:`rows`, :meth:`stats`) and then kept. :meth:`record` (same arguments) also
    returns the row dict at once, for callers that want it.
    """

    def __init__(self) -> None:
        self._rows: list[Any] = []     # dict (built) or tuple (raw facts, see add)
        self._lock = threading.Lock()

    def add(self, *, ts: float, provider: str, model: ModelEntry | None, model_wire: str,
            requested_tier: str | None, served_tier: str | None, outcome: str, status: int,
            usage: Usage | None, request_id: str, item: str | None = None,
            queue_wait_s: float = 0.0, latency_s: float = 0.0, billed: bool) -> int:
        """Append a row (built lazily); returns its index."""
        raw = (ts, provider, model, model_wire, requested_tier, served_tier, outcome, status, usage,
               request_id, item, queue_wait_s, latency_s, billed)
        with self._lock:
            self._rows.append(raw)
            return len(self._rows) - 1

    def record(self, *, ts: float, provider: str, model: ModelEntry | None, model_wire: str,
               requested_tier: str | None, served_tier: str | None, outcome: str, status: int,
               usage: Usage | None, request_id: str, item: str | None = None,
               queue_wait_s: float = 0.0, latency_s: float = 0.0, billed: bool) -> dict[str, Any]:
        """Append a row and return it. ``billed=False`` (or no usage) bills zero tokens and cost "0"."""
        i = self.add(ts=ts, provider=provider, model=model, model_wire=model_wire, requested_tier=requested_tier,
                     served_tier=served_tier, outcome=outcome, status=status, usage=usage, request_id=request_id,
                     item=item, queue_wait_s=queue_wait_s, latency_s=latency_s, billed=billed)
        with self._lock:
            return self._build(i)

    @staticmethod
    def _make(index: int, raw: tuple) -> dict[str, Any]:
        (ts, provider, model, model_wire, requested_tier, served_tier, outcome, status, usage,
         request_id, item, queue_wait_s, latency_s, billed) = raw
        u = usage if (billed and usage is not None) else ZERO_USAGE
        cost: str | None
        if not billed or usage is None or model is None:
            cost = "0"
        else:
            c = price_usage(u, model, served_tier or "standard").cost
            cost = None if c is None else str(c)
        return {
            "id": f"led_{index + 1:07d}",
            "ts": round(ts, 3),
            "provider": provider,
            "model": model.name if model is not None else f"{provider}/{model_wire}",
            "requested_tier": requested_tier,
            "served_tier": served_tier if billed else None,
            "outcome": outcome,
            "status": status,
            "input_tokens": u.input_tokens,
            "cached_tokens": u.cached_input_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "cost": cost,
            "request_id": request_id,
            "item": item,
            "queue_wait_s": round(queue_wait_s, 3),
            "latency_s": round(latency_s, 3),
        }

    def _build(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a dict, built once (call with the lock held)."""
        row = self._rows[i]
        if type(row) is tuple:
            row = self._rows[i] = self._make(i, row)
        return row

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            build = self._build
            return [dict(build(i)) for i in range(len(self._rows))]

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def stats(self) -> dict[str, Any]:
        """Counts by provider/tier/outcome and billed totals."""
        rows = self.rows()
        by_provider: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        by_tier: dict[str, Counter] = defaultdict(Counter)
        by_outcome: Counter = Counter()
        by_served: Counter = Counter()
        cost = Decimal(0)
        unknown_cost = 0
        tokens = Counter()
        for r in rows:
            tier = r["requested_tier"] or "standard"
            by_provider[r["provider"]][tier][r["outcome"]] += 1
            by_tier[tier][r["outcome"]] += 1
            by_outcome[r["outcome"]] += 1
            if r["served_tier"]:
                by_served[r["served_tier"]] += 1
            if r["cost"] is None:
                unknown_cost += 1
            else:
                cost += Decimal(r["cost"])
            for k in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"):
                tokens[k] += r[k]
        billed = sum(1 for r in rows if r["served_tier"])
        return {
            "requests": len(rows),
            "billed_requests": billed,
            "by_provider": {p: {t: dict(c) for t, c in tiers.items()} for p, tiers in by_provider.items()},
            "by_requested_tier": {t: dict(c) for t, c in by_tier.items()},
            "by_served_tier": dict(by_served),
            "by_outcome": dict(by_outcome),
            "totals": {**{k: tokens[k] for k in ("input_tokens", "cached_tokens", "output_tokens",
                                                 "reasoning_tokens")},
                       "cost": str(cost), "rows_with_unknown_cost": unknown_cost},
        }
