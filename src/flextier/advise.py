"""``flextier advise``: which tier fits a workload, with a one-line reason.

Deliberately simple rules (the runner's planner does the fine-grained work):
a person waiting -> standard; independent calls with >= 24 h -> batch; chained
steps or < 24 h -> flex; no flex for the model -> batch if the deadline allows,
else standard.
"""
from __future__ import annotations

from dataclasses import dataclass

from .catalog import ModelEntry

DAY = 24 * 3600.0


@dataclass(frozen=True)
class Advice:
    tier: str
    reason: str


def advise(entry: ModelEntry, *, human_waiting: bool, deadline_s: float | None, chained: bool) -> Advice:
    """Pick standard, flex or batch for ``entry`` under the given constraints."""
    if human_waiting:
        return Advice("standard", "a person is waiting for the answer: flex can queue for minutes")
    loose = deadline_s is None or deadline_s >= DAY
    if not entry.supports_flex:
        if loose and not chained and entry.supports_batch:
            return Advice("batch", f"{entry.name} has no flex tier; batch is 50% off and the deadline allows 24 h")
        why = "calls depend on each other" if chained else "the deadline is under 24 h"
        return Advice("standard", f"{entry.name} has no flex tier and {why}, so batch cannot be used")
    if chained:
        return Advice("flex", "dependent steps need synchronous answers; flex is 50% off and still synchronous")
    if loose and entry.supports_batch:
        return Advice("batch", "independent calls with 24 h or more: batch is 50% off with no capacity errors to handle")
    return Advice("flex", "independent calls due within a day: flex is 50% off and returns in seconds to minutes")
