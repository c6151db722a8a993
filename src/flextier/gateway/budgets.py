"""Per-key USD budgets per day and per month, with reservations: spent + in flight never passes.

Why reservations (the same reasoning as ``--max-cost``, :mod:`flextier.policy.budget`, whose
:class:`~flextier.policy.budget.Budget` does the arithmetic here too): a call is priced only
when it comes back, and hundreds may be in flight. Before a call is forwarded, the gateway
reserves an upper bound of its cost (every prompt byte a token, the full output bound, the
dearest tier the call may be served on) in both the key's day and month windows; the answer
replaces the reservation with its real cost (a shed is never billed, so a call that shed
twice and was then served on flex costs only the flex answer). An unknown price cannot be
bounded, so a key with a budget is refused a model without known prices.

Windows are UTC calendar days and months on the wall clock; a new window starts from what
the ledger says the key spent in it (so a restart does not reset a budget). The gateway runs
one event loop and nothing here awaits, so a check-and-reserve is atomic; the lock makes it
safe from other threads too.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Hashable

from ..errors import BudgetRefused
from ..policy.budget import Budget

__all__ = ["Budgets", "Refusal", "day_start", "month_start"]


def day_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def month_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


Refusal = BudgetRefused  # the gateway's name for it (flextier.errors.BudgetRefused)


class Budgets:
    """Every key's day and month :class:`Budget`, created on first use per window."""

    def __init__(self, limits: dict[str, tuple[Decimal | None, Decimal | None]],
                 spent_since: Callable[[str, float], Decimal], clock: Callable[[], float] = time.time) -> None:
        """``limits``: key name -> (daily, monthly) cap (None = no cap); ``spent_since(key, ts)``
        seeds a new window from the ledger."""
        self.limits = limits
        self._spent_since = spent_since
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, Budget]] = {}
        self._serial = 0
        self._held: dict[Hashable, list[Budget]] = {}

    def _window(self, key: str, kind: str, now: float) -> Budget | None:
        daily, monthly = self.limits.get(key, (None, None))
        cap = daily if kind == "day" else monthly
        if cap is None:
            return None
        start = day_start(now) if kind == "day" else month_start(now)
        cur = self._windows.get((key, kind))
        if cur is None or cur[0] != start:
            cur = (start, Budget(max_cost=cap, spent=self._spent_since(key, start)))
            self._windows[(key, kind)] = cur
        return cur[1]

    def capped(self, key: str) -> bool:
        return any(v is not None for v in self.limits.get(key, (None, None)))

    def reserve(self, key: str, estimate: Decimal | None) -> Hashable:
        """Hold ``estimate`` in the key's windows; a token to settle with. Raises :class:`Refusal`."""
        with self._lock:
            now = self.clock()
            wins = [(k, b) for k in ("day", "month") if (b := self._window(key, k, now)) is not None]
            self._serial += 1
            token = (key, self._serial, now)
            if not wins:
                return token
            if estimate is None:
                raise Refusal("this key has a USD budget, and the model's price is unknown, so the call's "
                              "cost cannot be bounded", "unknown")
            for kind, b in wins:
                if not b.fits(estimate):
                    raise Refusal(f"the key's {'daily' if kind == 'day' else 'monthly'} budget of "
                                  f"${b.max_cost} would be passed (spent ${b.spent}, in flight "
                                  f"${b.reserved}, this call up to ${estimate})", kind)
            for _kind, b in wins:
                b.reserve(token, estimate)
            self._held[token] = [b for _k, b in wins]
            return token

    def _take(self, token: Hashable) -> list[Budget]:
        return self._held.pop(token, [])

    def settle(self, token: Hashable, actual: Decimal | None) -> None:
        """The call was billed ``actual`` (None: billed at an unknown price: the estimate stays spent).

        A call reserved in one window and settled in the next (midnight) is spent in the new one."""
        with self._lock:
            held = self._take(token)
            for b in held:
                b.settle(token, actual)
            if actual is not None:
                now = self.clock()
                for kind in ("day", "month"):
                    b = self._window(token[0], kind, now)  # type: ignore[index]
                    if b is not None and all(b is not h for h in held):
                        b.spent += actual

    def release(self, token: Hashable) -> None:
        """Not billed (refused, every attempt shed, an error before the provider's answer)."""
        with self._lock:
            for b in self._take(token):
                b.release(token)

    def lose(self, token: Hashable) -> None:
        """Ended without an answer but possibly billed (a timeout): the estimate stays spent."""
        with self._lock:
            for b in self._take(token):
                b.lose(token)

    def snapshot(self, key: str) -> dict[str, dict[str, str]]:
        """What /metrics and the dashboard show: cap, spent, in flight per window."""
        with self._lock:
            out: dict[str, dict[str, str]] = {}
            now = self.clock()
            for kind in ("day", "month"):
                b = self._window(key, kind, now)
                if b is not None:
                    out[kind] = {"cap": str(b.max_cost), "spent": str(b.spent), "reserved": str(b.reserved)}
            return out
