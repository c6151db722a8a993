"""How one job runs: the knobs of :class:`~flextier.jobs.runner.Runner`, in one dataclass.

All times are in the clock's seconds (see :mod:`.clock`). The retry limits default to the one
decision table's (:mod:`flextier.policy.rules`, docs/errors.md), so a job, ``wrap`` and the batch
lane agree on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from ..catalog import ModelEntry
from ..policy.backoff import Backoff
from ..policy.planner import PlannerConfig
from ..policy.rules import MAX_ITEM_ERRORS, QUOTA_STOP_AFTER, RESEND_ON_TIMEOUT

__all__ = ["RunOptions"]


@dataclass
class RunOptions:
    """Everything about how a job runs (all times in the clock's seconds)."""

    model: ModelEntry
    tier_mode: str = "auto"
    deadline: float | None = None
    concurrency: int = 256
    standard_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    max_cost: Decimal | None = None
    ordered: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    flex_timeout: float = 900.0
    standard_timeout: float = 600.0
    max_item_errors: int = MAX_ITEM_ERRORS    # the 5th retryable error of an item fails it (policy.rules)
    resend_on_timeout: int = RESEND_ON_TIMEOUT  # cap on resends of a timed-out send (maybe billed)
    quota_stop_after: int = QUOTA_STOP_AFTER  # consecutive quota refusals that pause the job
    min_wall_timeout: float = 10.0        # real seconds; see _attempt
    changeover_delay: float | None = None   # d of the planner; None: changeover_delay_for(window)
    margin: float = 60.0
    assumed_standard_latency: float = 20.0
    flush_interval: float = 0.05          # wall seconds between store commits
    flush_rows: int = 512                 # ... or as soon as this many rows wait
    tick: float | None = None             # planner interval (clock seconds); default from time_scale
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=120.0))
    seed: int | None = None
    #: ask the provider to keep answers findable by item (OpenAI: ``store: true`` + metadata) so a
    #: resume reads back what a crash cut off instead of paying twice (README, "Resume without paying twice")
    provider_store: bool = True
    # [policy hook] a planner class (PlannerConfig -> planner) used instead of Planner; only for
    # bench/policy.py's baselines (flextier.policy.baselines), so all policies share this engine
    policy: Callable[[PlannerConfig], Any] | None = None
    # batch lane; used only when the Runner gets a batch backend
    batch_poll_interval: float = 60.0     # clock seconds between polls of open batches
    batch_window: float = 24 * 3600.0     # the provider's completion window, as the planner assumes it
    batch_min_runway: float = 4 * 3600.0  # model without flex: batch only with this much room (p90 turnaround)
    # expected relative flex availability at a clock value (e.g. the provider's diurnal curve): bends
    # the planner's uniform line toward the hours flex is expected to be plentiful (docs/deadline-policy.md
    # §3 rule 5); None = a straight line. The safety net does not depend on it.
    availability: Callable[[float], float] | None = None
    # with no explicit forecast, the one learned from the per-user history (flextier.history) when it
    # has enough observations for this model; False keeps the straight line (docs/history.md §3)
    forecast_from_history: bool = True
    # where attempts are recorded: "auto" = the per-user history of the clock's domain (emulated
    # clocks never write the real history), a flextier.history.Recorder, or None (record nothing)
    history: Any = "auto"
    # [permit hook] where the flex window, the budget's headroom and the planner's decisions come
    # from when this runner is one of many on one job (flextier.ray: a cluster-wide controller).
    # An object with ``flex_window(concurrency, cooldown)`` (an AimdController-like window),
    # ``budget(max_cost)`` (a Budget, usually with a ``lease``), ``planner(config)`` (a
    # planner-like object), ``flex_pause()`` (the flex lane's shared backoff, see FlexLane),
    # ``standard_share()`` (this runner's part of the standard concurrency, see StandardLane) and
    # ``limiter(rpm, tpm, now=, max_pause=)`` (a RateLimiter-like object whose buckets are the
    # job's); None (the default): this runner decides alone, as it always has.
    permits: Any = None

    @property
    def std_concurrency(self) -> int:
        return self.standard_concurrency or self.concurrency
