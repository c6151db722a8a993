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
  previous tick is used while the next one is on its way);
* :class:`FlexPause` shares the flex lane's backoff: a shed one runner sees (what the one
  decision table, :func:`flextier.policy.rules.decide`, says about it is unchanged: lane
  backoff + window cut) pauses flex on every runner of the job;
* :class:`LeasedLimiter` stands in for the runner's :class:`~flextier.policy.concurrency.RateLimiter`:
  the RPM/TPM buckets are the controller's (one ``RateLimiter``, learned from every member's
  ``x-ratelimit-*`` headers and 429s); a member leases requests and tokens from them in small
  chunks and spends them locally, and a 429 anywhere pauses every member.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from ..policy.budget import Budget
from ..policy.concurrency import parse_duration
from ..policy.planner import Decision, PlannerConfig

__all__ = ["Member", "LeasedWindow", "ClusterPlanner", "FlexPause", "LeasedLimiter"]

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
        self.member.pause.ok_at = max(self.member.pause.ok_at, now)

    def on_capacity_error(self, now: float) -> bool:
        self.member.sheds.append(now)
        if now - self._last_cut < self.cooldown:
            return False
        self._last_cut = now
        self._local = max(1, self.limit // 2)
        self.cuts += 1
        return True


class FlexPause:
    """The flex lane's backoff, shared by every runner of the job (``FlexLane(pause=...)``)."""

    def __init__(self, member: "Member") -> None:
        self.member = member
        self.until = -math.inf
        self.ok_at = -math.inf   # the job's latest flex success (this runner's or one the controller heard of)

    def backed_off(self, until: float) -> None:
        """This runner's lane backs off until ``until``: so does every other one (via the controller)."""
        if until > self.until:
            self.until = until
            self.member.tell("flex_backoff", until)

    def heard(self, until: float | None, ok_at: float | None = None) -> None:
        if until is not None and until > self.until:
            self.until = until
        if ok_at is not None and ok_at > self.ok_at:
            self.ok_at = ok_at


class LeasedLimiter:
    """A member's lease on the job's RPM/TPM buckets (the :class:`RateLimiter` interface).

    Unlimited until the controller knows a limit (a flag, or a server's header), as a lone
    runner is; then every send spends a leased request (and its estimated tokens), and a new
    lease is asked for, without waiting, before the last one runs out. A lease refused (the
    buckets are empty) says when to ask again.
    """

    def __init__(self, member: "Member", *, max_pause: float, poll: float) -> None:
        self.member = member
        self.max_pause = max_pause
        self.default_pause = 1.0
        self.capped = 0
        self.poll = poll                 # clock seconds between looks at a lease on its way
        self.limited = False
        self.tokens_limited = False
        self.requests_left = 0
        self.tokens_left = 0.0
        self.last_grant = 0
        self.not_before_t = -math.inf
        self._retry_at = -math.inf
        self._ref: Any = None
        self.headers: dict[str, str] | None = None

    # -- the RateLimiter interface the runner uses -----------------------------------------
    def try_acquire(self, tokens: int, now: float) -> float:
        self._poll()
        if now < self.not_before_t:
            return self.not_before_t - now
        if not self.limited:
            return 0.0
        if self.requests_left >= 1 and (not self.tokens_limited or self.tokens_left >= tokens):
            self.requests_left -= 1
            if self.tokens_limited:
                self.tokens_left -= tokens
            if self.requests_left < self.last_grant // 2:  # the next lease on its way before this one runs out
                self._ask(tokens, now)
            return 0.0
        self._ask(tokens, now)
        return max(self.poll, self._retry_at - now)

    def settle_tokens(self, estimated: int, actual: int, now: float) -> None:
        if self.tokens_limited:
            self.tokens_left += estimated - actual

    def on_rate_limited(self, retry_after: float | None, now: float) -> None:
        pause = retry_after if retry_after is not None and retry_after > 0 else self.default_pause
        if not pause <= self.max_pause:
            self.capped += 1
            pause = self.max_pause
        self._pause(now + pause)
        self.member.tell("rate_limited", retry_after, now)

    def update_from_headers(self, headers: Any, now: float) -> None:
        if not headers:
            return
        h = {k.lower(): v for k, v in dict(headers).items() if k.lower().startswith("x-ratelimit-")}
        if not h:
            return
        self.headers = h
        for kind in ("requests", "tokens"):  # the server says the minute is used up: stop now, tell everyone
            rem, reset = h.get(f"x-ratelimit-remaining-{kind}"), h.get(f"x-ratelimit-reset-{kind}")
            try:
                out = rem is not None and reset is not None and float(rem) <= 0
                until = now + min(self.max_pause, parse_duration(reset)) if out else None
            except ValueError:
                until = None
            if until is not None and until > self.not_before_t:
                self._pause(until)
                self.headers = None
                self.member.tell("rate_headers", h)
        if not self.limited and self.headers and self._ref is None:
            self._ask(0, now)  # a limit may be known now: ask at once rather than at the next tick

    # -- the lease ------------------------------------------------------------------------
    def _pause(self, until: float) -> None:
        if until > self.not_before_t:
            self.not_before_t = until
            self.requests_left, self.tokens_left = 0, 0.0  # the account is over: nothing leased still holds

    def heard(self, reply: dict[str, Any]) -> None:
        """The controller's view (in every reply): is there a limit, and is the job paused."""
        if "limited" in reply:
            self.limited = bool(reply["limited"])
            self.tokens_limited = bool(reply.get("tokens_limited"))
        nb = reply.get("rate_until")
        if nb is not None and nb > self.not_before_t:
            self._pause(nb)

    def _ask(self, tokens: int, now: float) -> None:
        if self._ref is not None or now < self._retry_at:
            return
        want = 64
        headers, self.headers = self.headers, None
        self._ref = self.member.controller.rate_lease.remote(self.member.id, want, int(tokens) * want, headers)

    def _poll(self) -> None:
        if self._ref is None:
            return
        ready, _ = self.member._ray.wait([self._ref], timeout=0)
        if not ready:
            return
        r = self.member._ray.get(self._ref)
        self._ref = None
        self.heard(r)
        self.requests_left += int(r.get("requests", 0))
        self.tokens_left += float(r.get("tokens", 0))
        self.last_grant = int(r.get("requests", 0)) or self.last_grant
        if not r.get("requests") and r.get("wait"):
            self._retry_at = float(r["at"]) + float(r["wait"])

    def unspent(self) -> tuple[int, float]:
        if self._ref is not None:
            try:
                self._ref, ref = None, self._ref
                r = self.member._ray.get(ref)
                self.requests_left += int(r.get("requests", 0))
                self.tokens_left += float(r.get("tokens", 0))
            except Exception:  # pragma: no cover - the controller is gone
                pass
        out = (max(0, self.requests_left), max(0.0, self.tokens_left))
        self.requests_left, self.tokens_left = 0, 0.0
        return out


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

    def __init__(self, controller: Any, member_id: str, remaining: int, *, time_scale: float = 1.0) -> None:
        import ray

        self._ray = ray
        self.controller = controller
        self.id = member_id
        self.successes = 0
        self.sheds: list[float] = []
        self._hedges: list[str] = []
        self._ref: Any = None
        self.reply: dict[str, Any] = {}
        self.budget_obj: Budget | None = None
        self.pause = FlexPause(self)
        self.rate = LeasedLimiter(self, max_pause=300.0, poll=0.02 * max(1.0, float(time_scale)))
        self._apply(ray.get(controller.join.remote(member_id, remaining)))

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

    def flex_pause(self) -> FlexPause:
        return self.pause

    def standard_share(self) -> int:
        """This runner's part of the job's standard concurrency (the controller splits it among the
        runners live now, so a job with few batches running still has all of it)."""
        return int(self.reply.get("std_share", 1))

    def limiter(self, rpm: float | None, tpm: float | None, *, now: float, max_pause: float) -> LeasedLimiter:
        """The job's buckets hold the user's ``rpm``/``tpm`` (given to the controller, for the job)."""
        del rpm, tpm, now
        self.rate.max_pause = max_pause
        return self.rate

    def tell(self, what: str, *args: Any) -> None:
        """Tell the controller something every member must hear soon (a shed's backoff, a 429); no wait."""
        getattr(self.controller, what).remote(self.id, *args)

    # -- talking to the controller ---------------------------------------------------------
    @property
    def share(self) -> int:
        return int(self.reply.get("share", 1))

    def _apply(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self._hedges.extend(reply.get("hedge", ()))
        self.pause.heard(reply.get("flex_until"), reply.get("flex_ok_at"))
        self.rate.heard(reply)
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
        headers, self.rate.headers = self.rate.headers, None
        report = dict(state, successes=self.successes, sheds=self.sheds, rate_headers=headers,
                      ok_at=self.pause.ok_at if self.successes else None)
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
                                                  "successes": self.successes, "sheds": self.sheds,
                                                  "ok_at": self.pause.ok_at if self.successes else None})
        left = self.rate.unspent()
        self._ray.get(self.controller.leave.remote(self.id, dict(result, spent=str(spent), possibly_billed=str(pb),
                                                                 rate_left=left)))
