"""The one controller of a Ray job: the cluster's flex window, budget and deadline planner.

Why one: a provider's flex capacity, an account's rate limits, a ``--max-cost`` cap and a
deadline all belong to the *job*, not to a worker. Ray Data's own HTTP stage paces per actor
(so the real rate is qps x actors) and has no budget or deadline (see the README, "Scaling
out with Ray"). Here every runner of the job (one per batch on each worker actor,
:mod:`flextier.ray.member`) is a *member* of one named actor per job, built from this class:

* **Flex window.** One :class:`~flextier.policy.concurrency.AimdController` for the whole
  job, fed by every member's successes and sheds; each member may keep its share of the window
  in flight (shares follow each member's unfinished items). Adding workers adds throughput, not
  flex pressure: the cluster never holds more flex requests than one ``flextier run`` would.
* **Budget.** Members reserve from a leased :class:`~flextier.policy.budget.Budget`; a lease is
  granted only while ``spent + possibly billed + granted`` stays under the cap (across earlier
  runs too: the durable state's spend is the starting point).
* **Lane backoff and rate limits.** A flex shed one member sees (the one decision table,
  :func:`flextier.policy.rules.decide`: lane backoff) pauses flex on every member until the
  same instant; the RPM/TPM buckets are one :class:`~flextier.policy.concurrency.RateLimiter`
  holding the user's ``rpm``/``tpm`` and learning the server's limits from the
  ``x-ratelimit-*`` headers every member forwards, exactly as a lone runner's does; members
  lease requests and tokens from it in chunks (:meth:`JobController.rate_lease`), and a 429
  anywhere pauses every member for its retry-after.
* **Planner.** One :class:`~flextier.policy.planner.Planner` over the job's total, fed by the
  members' summed progress, decides the mode and the standard rate (split among members by
  their unfinished items) and which flex requests to hedge at the safety net
  (docs/deadline-policy.md).

Members talk to it in small chunks (an outcome report and a reply per planner tick, a budget
lease per many requests), so it is never on a request's path. It keeps no durable state: what
must survive a crash is in the job's state directory (:mod:`flextier.ray.state`).
"""
from __future__ import annotations

import math
import time
from decimal import Decimal
from typing import Any

from ..policy.concurrency import AimdConfig, AimdController, RateLimiter
from ..policy.planner import SAFETY, Decision, InFlight, Observation, Planner, PlannerConfig, \
    changeover_delay_for, standard_capacity

__all__ = ["JobController", "controller_name", "job_clock", "summary_line"]

ZERO = Decimal(0)


def job_clock(spec: dict[str, Any]) -> Any:
    """The job's clock in this process: the emulator's (synced over ``/_emulator/clock``) or the wall."""
    if spec.get("kind") == "emulator":
        from ..emulator.clock import remote_clock

        c = remote_clock(spec["base_url"])
        if c is not None:
            return c
    from ..jobs.clock import WallClock

    return WallClock()


def controller_name(job: str) -> str:
    """The Ray actor name of a job's controller (one per job, in namespace ``flextier``)."""
    return f"flextier-controller:{job}"


def apportion(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, in whole units that add up to ``total``
    (largest remainder first).

    Why not each part floored: the flex window is small when capacity is short (1-16 on the
    weekday bench), and four floored shares of 7 are 1 each, so the cluster kept 4 flex
    requests in flight where one ``flextier run`` keeps 7 and bought standard for the rest.
    """
    if not weights:
        return []
    tot = sum(weights)
    exact = [total * w / tot for w in weights]
    out = [int(e) for e in exact]
    for i in sorted(range(len(weights)), key=lambda i: (out[i] - exact[i], i))[:total - sum(out)]:
        out[i] += 1
    return out


class _Member:
    __slots__ = ("done", "remaining", "queued", "std_inflight", "std_cap", "std_lat", "flex_lat", "flex_inflight",
                 "allowance", "live", "share", "std_share", "spent", "possibly_billed")

    def __init__(self, remaining: int) -> None:
        self.done = 0
        self.remaining = remaining
        self.queued = 0
        self.std_inflight = 0
        self.std_cap: float | None = None
        self.std_lat: float | None = None
        self.flex_lat: float | None = None
        self.flex_inflight: list[tuple[str, float]] = []
        self.allowance = ZERO
        self.live = True
        self.share = 1
        self.std_share = 1
        self.spent = ZERO
        self.possibly_billed = ZERO


class JobController:
    """Cluster-wide flex window, budget leases and deadline planner of one job (a Ray actor).

    All times are the job clock's seconds (the emulator's when rehearsing); ``clock`` is
    rebuilt in the actor by :func:`flextier.ray.worker.job_clock`.
    """

    def __init__(self, *, job: str, model: str, total: int, done0: int, deadline: float | None, tier: str,
                 concurrency: int, std_concurrency: int, max_cost: str | None, spent0: str, possibly_billed0: str,
                 clock_spec: dict[str, Any], planner_opts: dict[str, Any] | None = None,
                 rpm: float | None = None, tpm: float | None = None) -> None:
        from ..catalog import default_catalog
        self.job = job
        self.entry = default_catalog().resolve(model)
        self.clock = job_clock(clock_spec)
        now = self.clock.now()
        self.created = self.started = now   # started: when the first runner joined (_start_planner)
        self.total, self.done0 = total, done0
        self.deadline = deadline
        self.tier = tier
        self.concurrency, self.std_concurrency = concurrency, std_concurrency
        po = dict(planner_opts or {})
        self.d = po.get("changeover_delay") or changeover_delay_for(
            None if deadline is None else max(0.0, deadline - now))
        self.window = AimdController(AimdConfig(max_concurrency=max(1, concurrency),
                                                cooldown=max(1.0, 2 * self.d / 60), slow_start=True))
        from ..jobs.lanes import RateBuckets

        self.flex_done = RateBuckets(bucket=60.0, n=32)
        self.limiter = RateLimiter(rpm, tpm, now=now)
        self.rpm = rpm
        self.flex_until = -math.inf
        self.flex_ok_at = -math.inf   # the latest flex success any member reported: ends every lane's shed streak
        self.rate_limited = 0   # 429s members reported (for progress and tests)
        self.flex_backoffs = 0
        self.max_cost = None if max_cost is None else Decimal(max_cost)
        self.committed = Decimal(spent0) + Decimal(possibly_billed0)   # spent + possibly billed + granted
        self.spent_total = Decimal(spent0)
        self.pb_total = Decimal(possibly_billed0)
        self.members: dict[str, _Member] = {}
        self.workers: list[Any] = []
        self.tick = float(po.get("tick") or min(30.0, max(1.0, 0.05 * float(getattr(self.clock, "time_scale", 1.0)))))
        self._last_tick = -math.inf
        self.decision: Decision | None = None
        self.by_tier: dict[str, int] = {}
        self.cost = ZERO
        self.std_cost = ZERO
        self.failed = 0
        self.paused: str | None = None
        self._hedges: dict[str, list[str]] = {}   # hedges the planner asked for, per member, not yet handed out
        self._po = po
        self.planner: Planner | None = None  # started when the first runner joins: see _start_planner

    def _start_planner(self, now: float) -> Planner:
        """The job's planner, its uniform line starting when work can start (the first runner joins).

        Why not at construction: the controller exists before Ray has started the worker actors
        (seconds of wall time, which on a rehearsal's scaled clock are many emulated minutes);
        a line begun then would judge the job behind before it could send anything and buy
        standard to catch up. The deadline is the job's either way.
        """
        po, deadline, total, done0 = self._po, self.deadline, self.total, self.done0
        self.started = now
        flex_ok = self.entry.supports_flex and self.tier in ("auto", "flex")
        mode = self.tier if self.tier != "flex" or flex_ok else "standard"
        grace = max(self.d, 300.0)
        dl = deadline if (deadline is not None and deadline > now) else None
        t0 = now if dl is None else now + min(grace, 0.1 * (dl - now))
        lat = float(po.get("assumed_standard_latency", 20.0))
        rpm = None if self.limiter.requests is None else self.limiter.requests.capacity
        self.planner = Planner(PlannerConfig(
            t0=t0, total=max(total, done0), deadline=dl, tier_mode=mode,
            standard_rate=standard_capacity(self.std_concurrency, lat, rpm), d=self.d,
            margin=float(po.get("margin", 60.0)), tail=lat, flex_timeout=float(po.get("flex_timeout", 900.0)),
            allow_batch=False, model_has_flex=flex_ok, model_has_batch=self.entry.supports_batch,
            done0=done0, availability=po.get("availability")))
        return self.planner

    # -- workers register, so a test (or an operator) can find them -----------------------
    def register_worker(self, handle: Any) -> None:
        self.workers.append(handle)

    def worker_handles(self) -> list[Any]:
        return list(self.workers)

    # -- members -------------------------------------------------------------------------
    def join(self, member: str, remaining: int) -> dict[str, Any]:
        """A runner starts on ``remaining`` items of the job: its share and the decision in force."""
        self.members[member] = _Member(remaining)
        self._rebalance()
        return self._reply(member)

    def sync(self, member: str, report: dict[str, Any]) -> dict[str, Any]:
        """One planner tick of a member: its outcomes since the last sync, and its state now."""
        m = self.members.get(member)
        if m is None:
            m = self.members[member] = _Member(report.get("remaining", 0))
        now = self.clock.now()
        for t in report.get("sheds", ()):
            self.window.on_capacity_error(t)
        if report.get("rate_headers"):
            self.limiter.update_from_headers(report["rate_headers"], now)
        for _ in range(int(report.get("successes", 0))):
            self.window.on_success(now)
            self.flex_done.add(now)
        if report.get("ok_at") is not None:
            self.flex_ok_at = max(self.flex_ok_at, float(report["ok_at"]))
        m.done = int(report["done"])
        m.remaining = int(report["remaining"])
        m.queued = int(report.get("queued", 0))
        m.std_inflight = int(report.get("std_inflight", 0))
        m.std_cap, m.std_lat, m.flex_lat = report.get("std_cap"), report.get("std_lat"), report.get("flex_lat")
        m.flex_inflight = [(f"{member}/{i}", s) for i, s in report.get("flex_inflight", ())]
        self._decide(now)
        self._rebalance()
        return self._reply(member)

    def lease(self, member: str, need: str) -> str:
        """Grant budget headroom to a member: at least ``need`` if the cap allows, a little more
        so the next requests need no round trip, never past ``max_cost``."""
        if self.max_cost is None:
            return need
        m = self.members.get(member)
        want = Decimal(need)
        avail = self.max_cost - self.committed
        if avail < want:
            return "0"
        live = max(1, sum(1 for x in self.members.values() if x.live))
        grant = min(avail, max(want, min(want * 16, avail / (2 * live))))
        self.committed += grant
        if m is not None:
            m.allowance += grant
        return str(grant)

    def flex_backoff(self, member: str, until: float) -> None:
        """A member's flex lane backs off after a shed: every member's does, until the same instant."""
        self.flex_backoffs += 1
        self.flex_until = max(self.flex_until, float(until))

    def rate_limited(self, member: str, retry_after: float | None, at: float) -> None:
        """A member got a 429: the job's buckets send nothing until its retry-after."""
        self.rate_limited += 1
        self.limiter.on_rate_limited(retry_after, max(float(at), self.clock.now()))

    def rate_headers(self, member: str, headers: dict[str, str]) -> None:
        """A member's answer said the minute is used up (remaining 0): the job's buckets hold until its reset."""
        self.limiter.update_from_headers(headers, self.clock.now())

    def rate_lease(self, member: str, requests: int, tokens: int, headers: dict[str, str] | None) -> dict[str, Any]:
        """Learn from ``headers`` (a member's latest ``x-ratelimit-*``), then grant up to ``requests``
        sends and ``tokens`` tokens from the job's buckets: at most a share of a bucket per lease
        (its capacity over four times the live members), so no member hoards the minute."""
        now = self.clock.now()
        if headers:
            self.limiter.update_from_headers(headers, now)
        out = self._rate_view(now)
        if not self.limiter.limited:
            return dict(out, requests=0, tokens=0, wait=0.0, at=now)
        live = max(1, len(self._live()))
        n, t, wait = self.limiter.grant(requests, tokens, now, max_share=1.0 / (4 * live))
        return dict(out, requests=n, tokens=t, wait=wait, at=now)

    def _rate_view(self, now: float) -> dict[str, Any]:
        nb = self.limiter.not_before()
        return {"limited": self.limiter.limited, "tokens_limited": self.limiter.tokens is not None,
                "rate_until": nb if nb > now else None, "flex_until": self.flex_until if self.flex_until > now else None,
                "flex_ok_at": self.flex_ok_at if self.flex_ok_at > -math.inf else None}

    def leave(self, member: str, result: dict[str, Any]) -> None:
        """A runner finished (or paused): its unused allowance comes back, its spend stays."""
        m = self.members.get(member)
        if m is None:
            return
        spent, pb = Decimal(result["spent"]), Decimal(result["possibly_billed"])
        if self.max_cost is not None:
            self.committed += spent + pb - m.allowance
        m.allowance = ZERO
        m.spent, m.possibly_billed = spent, pb
        self.spent_total += spent
        self.pb_total += pb
        m.done = int(result["done"])
        m.remaining = 0
        m.live = False
        left = result.get("rate_left")
        if left:  # leased sends it did not use go back into the job's buckets
            now = self.clock.now()
            if self.limiter.requests is not None and left[0]:
                self.limiter.requests.give_back(int(left[0]), now)
            if self.limiter.tokens is not None and left[1]:
                self.limiter.tokens.give_back(float(left[1]), now)
        for t, n in result.get("by_tier", {}).items():
            self.by_tier[t] = self.by_tier.get(t, 0) + int(n)
        self.cost += Decimal(result.get("cost", "0"))
        self.std_cost += Decimal(result.get("standard_cost", "0"))
        self.failed += int(result.get("failed", 0))
        if result.get("paused") and self.paused is None:
            self.paused = str(result["paused"])
        self._rebalance()

    # -- the cluster-wide decisions ------------------------------------------------------------
    def _live(self) -> list[tuple[str, _Member]]:
        return [(k, m) for k, m in self.members.items() if m.live]

    def _rebalance(self) -> None:
        """Split the flex window and the standard concurrency among the live members by their
        unfinished items (at least 1 each): the job has all of both however many batches run."""
        live = self._live()
        if not live:
            return
        weights = [max(1, m.remaining) for _, m in live]
        for (_, m), f, s in zip(live, apportion(self.window.limit, weights), apportion(self.std_concurrency, weights)):
            m.share, m.std_share = max(1, f), max(1, s)

    def done(self) -> int:
        return self.done0 + sum(m.done for m in self.members.values())

    def _decide(self, now: float) -> None:
        if self.decision is not None and now - self._last_tick < self.tick:
            return
        live = self._live()
        lats = [m.std_lat for _, m in live if m.std_lat is not None]
        # the job's standard capacity: all of its standard concurrency (split among the live members,
        # see _rebalance) over the members' mean latency, under the job's rpm
        rpm = None if self.limiter.requests is None else self.limiter.requests.capacity
        caps = [standard_capacity(self.std_concurrency, sum(lats) / len(lats), rpm)] if lats else []
        flats = [m.flex_lat for _, m in live if m.flex_lat is not None]
        planner = self.planner or self._start_planner(now)
        total = max(self.total, planner.total)
        safety = planner.mode == SAFETY
        obs = Observation(
            now=max(now, planner._last_now or now), done=min(self.done(), total),
            pending=sum(m.queued for _, m in live), in_flight_standard=sum(m.std_inflight for _, m in live),
            flex_in_flight=tuple(InFlight(i, s) for _, m in live for i, s in m.flex_inflight) if safety else (),
            total=total, standard_capacity=sum(caps) if caps else None,
            # the job's lane latencies: the runners' moving averages averaged (the slowest of them
            # judged every lane by its worst batch, and the planner then bought standard early)
            standard_latency_p90=sum(lats) / len(lats) if lats else None,
            flex_latency_p90=sum(flats) / len(flats) if flats else None,
            flex_throughput=self.flex_done.rate(now, min(600.0, max(60.0, now - self.started))))
        try:
            self.decision = planner.decide(obs)
        except ValueError:  # pragma: no cover - defensive, as in the runner
            return
        self._last_tick = now
        for h in self.decision.hedge:
            mid, _, local = h.rpartition("/")
            mm = self.members.get(mid)
            if mm is not None:
                mm.flex_inflight = [(i, s) for i, s in mm.flex_inflight if i != h]
                self._hedges.setdefault(mid, []).append(local)

    def _reply(self, member: str) -> dict[str, Any]:
        if self.decision is None:
            self._decide(self.clock.now())
        d = self.decision
        m = self.members[member]
        live = self._live()
        rem = sum(x.remaining for _, x in live) or 1
        rate = 0.0 if d is None else d.standard_rate * (m.remaining / rem)
        hedge = self._hedges.pop(member, [])
        view = self._rate_view(self.clock.now())
        if d is None:
            return dict(view, share=m.share, std_share=m.std_share, mode=None)
        return dict(view, share=m.share, std_share=m.std_share, mode=d.mode, flex_open=d.flex_open, standard_rate=rate,
                    standard_all=d.standard_all, hedge=hedge, reason=d.reason)

    # -- progress ------------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        """Done, tiers, spend, saving and the deadline margin (cluster-wide)."""
        now = self.clock.now()
        d = self.decision
        return {"done": self.done(), "total": self.total, "by_tier": dict(self.by_tier), "spent": str(self.cost),
                "standard_cost": str(self.std_cost), "possibly_billed": str(self.pb_total),
                "committed": str(self.committed), "max_cost": None if self.max_cost is None else str(self.max_cost),
                "mode": None if d is None else d.mode, "slack": None if d is None else d.slack,
                "deadline_left": None if self.deadline is None else self.deadline - now,
                "flex_window": self.window.limit, "members": len(self._live()), "failed": self.failed,
                "rate_limited": self.rate_limited, "flex_backoffs": self.flex_backoffs,
                "rpm_limit": None if self.limiter.requests is None else self.limiter.requests.capacity,
                "paused": self.paused, "wall": time.time(), "created": self.created,
                "started": None if self.planner is None else self.started}

    def summary(self) -> str:
        """flextier's one-line progress summary for the whole cluster."""
        return summary_line(self.progress())


def summary_line(p: dict[str, Any]) -> str:
    """``done 1200/2000 | flex 1100 standard 100 | spent $0.41 (saved 46%) | margin 1h02m | planner up``."""
    from ..cost import fmt_usd

    tiers = " ".join(f"{t} {n}" for t, n in sorted(p["by_tier"].items())) or "no results yet"
    spent, std = Decimal(p["spent"]), Decimal(p["standard_cost"])
    saved = f" (saved {100 * (1 - spent / std):.0f}%)" if std > 0 else ""
    line = f"done {p['done']}/{p['total']} | {tiers} | spent {fmt_usd(spent)}{saved}"
    if p.get("deadline_left") is not None:
        left = p["deadline_left"]
        if p["done"] >= p["total"]:
            line += " | deadline met" if left >= 0 else " | deadline MISSED"
        else:
            s = abs(int(left))
            line += f" | {'left' if left >= 0 else 'late by'} {s // 3600}h{s % 3600 // 60:02d}m"
    if p.get("mode"):
        line += f" | planner {p['mode']}"
    if p.get("paused"):
        line += f" | paused: {p['paused']}"
    return line
