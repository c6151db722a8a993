"""A runner's side of the job controller: the ``RunOptions.permits`` one runner gets on Ray.

Each batch a worker actor runs is an ordinary :class:`~flextier.jobs.runner.Runner` (the
same lanes, decision table, accounting and store as ``flextier run``); its permit source is a
:class:`Member` of the job's :class:`~flextier.ray.controller.JobController`:

* :class:`LeasedWindow` stands in for the flex lane's AIMD window: ``limit`` is this member's
  share of the cluster window, and successes and sheds are reported to the controller (a shed
  also halves the local share at once, so a member reacts before the next sync);
* the budget starts at 0 and leases headroom from the controller (``Budget.lease``);
* :class:`ClusterPlanner` stands in for the planner: at each planner tick it sends the
  member's progress and takes the cluster decision back without waiting (the reply to the
  previous tick is used while the next one is on its way).
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from ..policy.budget import Budget
from ..policy.planner import Decision, PlannerConfig

__all__ = ["Member", "LeasedWindow", "ClusterPlanner"]

ZERO = Decimal(0)


class LeasedWindow:
    """A member's share of the cluster's flex window (the AimdController interface)."""

    def __init__(self, member: "Member", cooldown: float) -> None:
        self.member = member
        self.cooldown = cooldown
        self.max = 1 << 30
        self._local: int | None = None   # a local cut since the last reply
        self._last_cut = -math.inf
        self.cuts = 0
        self.slow_start = False

    @property
    def limit(self) -> int:
        share = self.member.share if self._local is None else min(self._local, self.member.share)
        return max(1, min(self.max, share))

    @property
    def window(self) -> float:
        return float(self.limit)

    def on_success(self, now: float) -> None:
        self.member.successes += 1

    def on_capacity_error(self, now: float) -> bool:
        self.member.sheds.append(now)
        if now - self._last_cut < self.cooldown:
            return False
        self._last_cut = now
        self._local = max(1, self.limit // 2)
        self.cuts += 1
        return True


class ClusterPlanner:
    """The planner a member's runner asks: the controller's decision, split for this member."""

    def __init__(self, member: "Member", config: PlannerConfig) -> None:
        self.member = member
        self.config = config
        self.total = config.total
        self._last_now: float | None = None

    @property
    def mode(self) -> str | None:
        return self.member.reply.get("mode")

    def decide(self, obs: Any) -> Decision:
        self._last_now = obs.now
        if obs.total is not None:
            self.total = max(self.total, obs.total)
        self.member.sync({
            "done": obs.done, "remaining": max(0, self.total - obs.done), "queued": obs.pending,
            "std_inflight": obs.in_flight_standard, "std_cap": obs.standard_capacity,
            "std_lat": obs.standard_latency_p90, "flex_lat": obs.flex_latency_p90,
            "flex_inflight": [(f.item_id, f.started_at) for f in obs.flex_in_flight]})
        r = self.member.reply
        hedge = tuple(self.member.take_hedges())
        if r.get("mode") is None:  # no cluster decision yet: keep flex going, buy nothing
            return Decision(mode="up", flex_open=True, reason="waiting for the job controller")
        return Decision(mode=r["mode"], flex_open=bool(r["flex_open"]), standard_rate=float(r["standard_rate"]),
                        standard_all=bool(r["standard_all"]), hedge=hedge, reason=str(r.get("reason", "")))


class Member:
    """One runner's membership in the job's controller (its ``RunOptions.permits``)."""

    def __init__(self, controller: Any, member_id: str, remaining: int) -> None:
        import ray

        self._ray = ray
        self.controller = controller
        self.id = member_id
        self.successes = 0
        self.sheds: list[float] = []
        self._hedges: list[str] = []
        self._ref: Any = None
        self.reply: dict[str, Any] = {}
        self._apply(ray.get(controller.join.remote(member_id, remaining)))
        self.budget_obj: Budget | None = None

    # -- the permits interface (RunOptions.permits) -------------------------------------
    def flex_window(self, concurrency: int, cooldown: float) -> LeasedWindow:
        w = LeasedWindow(self, cooldown)
        w.max = max(1, concurrency)
        self.window = w
        return w

    def budget(self, max_cost: Decimal | None) -> Budget:
        b = Budget(max_cost=None) if max_cost is None else Budget(max_cost=ZERO, lease=self._lease)
        self.budget_obj = b
        return b

    def planner(self, config: PlannerConfig) -> ClusterPlanner:
        return ClusterPlanner(self, config)

    # -- talking to the controller ---------------------------------------------------------
    @property
    def share(self) -> int:
        return int(self.reply.get("share", 1))

    def _apply(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self._hedges.extend(reply.get("hedge", ()))
        w = getattr(self, "window", None)
        if w is not None:
            w._local = None

    def take_hedges(self) -> list[str]:
        out, self._hedges = self._hedges, []
        return out

    def sync(self, state: dict[str, Any]) -> None:
        """Send this tick's report unless the previous one is still unanswered (never waits)."""
        if self._ref is not None:
            ready, _ = self._ray.wait([self._ref], timeout=0)
            if not ready:
                return
            self._apply(self._ray.get(self._ref))
            self._ref = None
        report = dict(state, successes=self.successes, sheds=self.sheds)
        self.successes, self.sheds = 0, []
        self._ref = self.controller.sync.remote(self.id, report)

    def _lease(self, need: Decimal) -> Decimal:
        return Decimal(self._ray.get(self.controller.lease.remote(self.id, str(need))))

    def leave(self, result: dict[str, Any]) -> None:
        """The runner ended: hand back the unused allowance and report what it did."""
        b = self.budget_obj
        spent = b.spent if b is not None else ZERO
        pb = b.possibly_billed if b is not None else ZERO
        if self._ref is not None:
            try:
                self._ray.get(self._ref)
            except Exception:  # pragma: no cover - the controller is gone; nothing to hand back to
                pass
            self._ref = None
        if self.successes or self.sheds:
            self.controller.sync.remote(self.id, {"done": result["done"], "remaining": 0,
                                                  "successes": self.successes, "sheds": self.sheds})
        self._ray.get(self.controller.leave.remote(self.id, dict(result, spent=str(spent), possibly_billed=str(pb))))
