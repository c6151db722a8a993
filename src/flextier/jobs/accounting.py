"""One accounting step per result: what every answer, error and failure does to the books.

Why one home: a job's money is read in four places (the progress panel, the budget cap, the
ledger the report adds up, the output line) and they must agree with each other and with the
provider's bill. Every result goes through :class:`Accounting` -- an online answer, a duplicate
answer that lost to another copy of its item, a batch line, an error, a cut-off send -- and it
updates the :class:`~.stats.Stats`, the :class:`~flextier.policy.budget.Budget` and the store's
ledger and attempt rows together. It decides nothing: the runner's decision table
(:func:`flextier.policy.rules.decide`) says what happens next; this only records what happened.

Pricing is :func:`flextier.cost.price_usage` at the tier the provider says it served; a tier
with no known price is counted as unknown (``Stats.unknown_cost``), never as $0
(docs/errors.md, "What a result costs").
"""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING

from .._types import AttemptOutcome
from ..catalog import ModelEntry
from ..cost import Cost, price_usage
from ..errors import ProviderError
from ..policy.budget import Budget
from .lines import answer_line, error_line, failure_line
from .stats import Stats
from .store import DONE, FAILED, FinishedItem, JobStore
from .work import Work

if TYPE_CHECKING:  # pragma: no cover
    from ..batch.base import ItemResult

__all__ = ["Accounting", "Priced"]

Priced = tuple[str, "Decimal | None", "Decimal | None"]
"""(served tier or "unknown", cost or None when unknown, standard-price cost or None)."""


def _request_id(outcome: AttemptOutcome) -> str | None:
    h = {k.lower(): v for k, v in (outcome.headers or {}).items()}
    return h.get("x-request-id") or h.get("request-id") or h.get("x-amzn-requestid") or (
        outcome.body.get("id") if isinstance(outcome.body, dict) else None)


class Accounting:
    """The books of one run: counters, budget, ledger and attempt rows, kept in step."""

    def __init__(self, store: JobStore, entry: ModelEntry, budget: Budget, stats: Stats) -> None:
        self.store = store
        self.entry = entry
        self.budget = budget
        self.stats = stats
        self.finals = 0   # items final in memory, committed or not: the planner's "done"

    # -- a resumed job continues its money and counts ----------------------------------
    def load(self) -> None:
        """Seed the counters and the budget from the store."""
        st, s = self.store, self.stats
        c = st.counts()
        s.total, s.done, s.failed = c["total"], c[DONE], c[FAILED]
        s.done_at_start = self.finals = c[DONE] + c[FAILED]
        s.by_tier = Counter(st.tier_counts())
        t = st.ledger_totals()
        s.spent, s.standard_cost = t["spent"], t["standard"]
        s.spent_by_tier = dict(t["by_tier"])
        s.duplicates, s.duplicate_cost = t["duplicates"], t["duplicate_cost"]
        s.errors = Counter(st.error_counts())
        self.budget.spent = t["billed_total"]  # duplicates were paid for too: they count against --max-cost
        # sends cut off by a crash, a timeout or a reset may be billed: held at their reserved cost
        self.budget.possibly_billed = st.possibly_billed()[1]
        s.skipped_invalid = (st.job() or {}).get("skipped_invalid", 0)

    # -- answers -------------------------------------------------------------------------
    def price(self, oc: AttemptOutcome) -> Priced:
        served = oc.served_tier or "unknown"
        try:
            cost = price_usage(oc.usage, self.entry, served) if served != "unknown" else None
        except Exception:  # an unknown tier string must not crash pricing
            cost = None
        c = cost.cost if cost is not None else None
        sc = cost.standard_cost if cost is not None else price_usage(oc.usage, self.entry, "standard").standard_cost
        return served, c, sc

    def _spent(self, served: str, c: Decimal | None, sc: Decimal | None) -> None:
        s = self.stats
        if c is not None:
            s.spent += c
            s.spent_by_tier[served] = s.spent_by_tier.get(served, Decimal(0)) + c
        else:
            s.unknown_cost += 1
        if sc is not None:
            s.standard_cost += sc

    def bill(self, w: Work, tier: str, oc: AttemptOutcome, latency: float, now: float, *,
             duplicate: bool) -> Priced:
        """A billed answer: budget settled, attempt and ledger rows, counters.

        ``duplicate``: another copy of the item (its hedge twin, or its batch copy after a
        straggler rescue) finished first. This answer was paid for too, so it is a
        ``duplicate`` ledger row and counts against ``--max-cost``, but not as the item's result.
        """
        priced = served, c, sc = self.price(oc)
        self.budget.settle((w.seq, tier), c)
        self.store.add_attempt(w.seq, tier, "ok", latency, 200, None, False, now)
        u = oc.usage
        if duplicate:
            self.store.add_ledger(now, w.seq, served, c, sc, u.input_tokens, u.output_tokens, kind="duplicate")
            self.stats.duplicates += 1
            self.stats.duplicate_cost += c or Decimal(0)
        else:
            self.store.add_ledger(now, w.seq, served, c, sc, u.input_tokens, u.output_tokens)
            self._spent(served, c, sc)
        return priced

    def answered(self, w: Work, tier: str, oc: AttemptOutcome, priced: Priced, latency: float, now: float) -> None:
        """The answer became the item's result (after :meth:`bill`): queued for the output."""
        served, c, sc = priced
        self.finals += 1
        line = answer_line(w.seq, w.custom_id, request_id=_request_id(oc), body=oc.body, tier=served,
                           attempts=w.attempts, cost=c, standard_cost=sc, possibly_billed=w.possibly_billed > 0)
        self.store.finish(FinishedItem(
            seq=w.seq, state=DONE, result=line, tier=tier, attempts=w.attempts, served_tier=served, cost=c,
            standard_cost=sc, error_class=None, latency=latency, finished_at=now,
            possibly_billed=w.possibly_billed, text=oc.text))

    def batch_result(self, result: "ItemResult", cost: Cost) -> None:
        """A batch line became its item's final result (its rows are written by the lane's store)."""
        self.finals += 1
        if result.ok:
            self._spent(result.tier, cost.cost, cost.standard_cost)
            if cost.cost is not None:
                self.budget.spent += cost.cost

    # -- errors ---------------------------------------------------------------------------
    def error(self, w: Work, tier: str, err: BaseException, latency: float, now: float) -> None:
        """An attempt that failed: its reservation released, or kept as possibly billed."""
        pe = err if isinstance(err, ProviderError) else None
        billed = bool(pe and pe.possibly_billed)
        if billed:
            self.budget.lose((w.seq, tier))
            w.possibly_billed += 1
        else:
            self.budget.release((w.seq, tier))
        self.stats.errors[type(err).__name__] += 1
        self.store.add_attempt(w.seq, tier, type(err).__name__, latency, pe.status if pe else None,
                               (pe.code if pe else None), billed, now)

    def fault(self, w: Work, tier: str, oc: AttemptOutcome, latency: float, now: float, why: str) -> None:
        """An answer whose usage its request could not have produced: the claim is never priced.

        The send counts at its reserved upper bound and as possibly billed.
        """
        self.budget.settle((w.seq, tier), None)
        w.possibly_billed += 1
        self.stats.errors["ProviderFault"] += 1
        self.store.add_attempt(w.seq, tier, "ProviderFault", latency, 200, "implausible_usage", True, now)
        self.store.event(now, "provider_fault", {"item": w.custom_id, "tier": tier, "why": why,
                                                 "usage": oc.usage.as_dict()})

    def cancelled(self, w: Work, tier: str, now: float) -> None:
        """An attempt cut off mid-flight (hedge loser, shutdown): it may have been billed."""
        self.budget.lose((w.seq, tier))
        self.store.add_attempt(w.seq, tier, "Cancelled", None, None, None, True, now)

    def failed(self, w: Work, tier: str, err: BaseException, latency: float, now: float) -> None:
        """The item failed for good: its failure line is queued for the output."""
        self.finals += 1
        pe = err if isinstance(err, ProviderError) else None
        line = failure_line(w.seq, w.custom_id, status=pe.status if pe and pe.status else None,
                            error=error_line(err), attempts=w.attempts, possibly_billed=w.possibly_billed > 0)
        self.store.finish(FinishedItem(seq=w.seq, state=FAILED, result=line, tier=tier, attempts=w.attempts,
                                       served_tier=None, cost=None, standard_cost=None,
                                       error_class=type(err).__name__, latency=latency, finished_at=now))


