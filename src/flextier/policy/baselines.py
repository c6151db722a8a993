"""Baseline deadline policies, for comparing the UP-tiers planner against (``bench/policy.py``).

Both are drop-in replacements for :class:`~flextier.policy.planner.Planner`: the runner builds
one from the same :class:`~flextier.policy.planner.PlannerConfig` when it is given
``RunOptions(policy=GreedyPolicy)`` (or ``flextier.arun_job(..., policy=GreedyPolicy)``), so every
policy runs through the same engine (same AIMD, backoff, store, emulator); only the lane
decisions differ. They are not user features: ``flextier run`` always uses the planner.

* :class:`GreedyPolicy` — *Can't Be Late*'s greedy: flex only, with the lane's backoff, and
  nothing on standard until the safety net (``R < C + 2d + margin``, the same sticky rule and
  hedging as the planner); then everything left goes to standard. Never uses batch.
* :class:`FlexRetriesPolicy` — the provider-docs pattern: every item tries flex up to
  ``max_flex_attempts`` times (3; the runner's backoff between tries), then goes to standard
  on its own. No deadline logic at all (no safety net, no batch): a deadline is met only if
  the retries happen to leave time.

The per-item routing of :class:`FlexRetriesPolicy` uses the runner's one optional hook for
policies: a ``divert_to_standard(attempts) -> bool`` method, asked for the item at the head of
the ready queue; True sends it to standard even while the planner keeps standard closed.
"""
from __future__ import annotations

from .planner import DONE, Decision, Observation, Planner, PlannerConfig

GREEDY = "greedy"        # Decision.mode of GreedyPolicy before its safety net
FLEX_RETRIES = "flex-retries"


class GreedyPolicy(Planner):
    """Flex until the safety net, then standard (the planner's safety net and hedging, no line)."""

    name = "greedy"

    def _batch_gate(self, r: float, c: float) -> bool:
        return False  # greedy is the flex/standard baseline: no batch lane

    def _up(self, obs: Observation, r_s: float, tail: float, slack: float, rescue: str) -> Decision:
        # The planner's UP step, minus the uniform line and the projection: standard stays shut.
        return Decision(mode=GREEDY, flex_open=True, standard_rate=0.0, batch_rescue=rescue, slack=slack,
                        reason="greedy: flex only until the safety net")


class FlexRetriesPolicy(Planner):
    """Per item: flex up to ``max_flex_attempts`` tries with backoff, then standard. No deadline logic."""

    name = "flex-3-then-standard"
    max_flex_attempts = 3

    def __init__(self, config: PlannerConfig, max_flex_attempts: int | None = None) -> None:
        super().__init__(config)
        if max_flex_attempts is not None:
            if max_flex_attempts < 1:
                raise ValueError("max_flex_attempts must be >= 1")
            self.max_flex_attempts = max_flex_attempts

    def decide(self, obs: Observation) -> Decision:
        self._validate(obs)
        if obs.total is not None:
            self.total = obs.total
        self._last_now = obs.now
        self._last_done = obs.done
        cfg = self.config
        slack = None
        if cfg.deadline is not None:
            r_s = obs.standard_capacity if obs.standard_capacity is not None else cfg.standard_rate
            tail = obs.standard_latency_p90 if obs.standard_latency_p90 is not None else cfg.tail
            n = self.total - obs.done
            c = n / r_s + tail if n > 0 else 0.0
            slack = cfg.deadline - obs.now - (c + 2 * cfg.d + cfg.margin)
        if self.total - obs.done <= 0:
            self.mode = DONE
            return Decision(mode=DONE, slack=slack, reason="nothing left to do")
        self.mode = FLEX_RETRIES
        return Decision(mode=FLEX_RETRIES, flex_open=True, standard_rate=0.0, slack=slack,
                        reason=f"flex, up to {self.max_flex_attempts} tries per item, then standard")

    def divert_to_standard(self, attempts: int) -> bool:
        """True when an item that is not done after ``attempts`` tries must go to standard now."""
        return attempts >= self.max_flex_attempts


def flex_retries(n: int):  # noqa: ANN201 - a policy factory for RunOptions(policy=...)
    """A :class:`FlexRetriesPolicy` factory with ``n`` flex tries per item."""
    def make(config: PlannerConfig) -> FlexRetriesPolicy:
        return FlexRetriesPolicy(config, n)
    return make


POLICIES = {"greedy": GreedyPolicy, "flex-3-then-standard": FlexRetriesPolicy}

__all__ = ["GreedyPolicy", "FlexRetriesPolicy", "flex_retries", "POLICIES", "GREEDY", "FLEX_RETRIES"]
