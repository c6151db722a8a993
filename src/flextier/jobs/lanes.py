"""The two online lanes of a job: flex (kept full, backs off on sheds) and standard (paced).

Why a module: both lanes start items from the head of the same ready queue under the same
checks (room in the lane, the item not already final elsewhere, the rate limiter and the
budget), so that loop is written once (:meth:`Lane.fill`); what differs is what each lane
remembers. The flex lane holds the AIMD window, the lane-wide backoff after a shed and the
achieved flex throughput the planner reads; the standard lane holds the token bucket that
paces it at the planner's rate. Which lane opens, and how fast, is the planner's call
(docs/deadline-policy.md); what an error does to a lane is the decision table's
(:func:`flextier.policy.rules.decide`, docs/errors.md).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

from ..policy.concurrency import AimdConfig, AimdController
from .work import Work

__all__ = ["Lane", "FlexLane", "StandardLane", "RateBuckets"]

Gate = Callable[[Work, float], float]
"""0.0 when an item may be sent now (limiter charged, budget reserved), else clock seconds to
wait; ``math.inf`` means blocked by the budget cap."""


class RateBuckets:
    """Completions per bucket over a window: a bounded stand-in for a list of timestamps.

    Feeds the planner's ``flex_throughput`` without keeping one float per completion
    (which at a million items would be the biggest thing in memory).
    """

    def __init__(self, bucket: float, n: int) -> None:
        self.bucket, self.n = bucket, n
        self.counts: deque[tuple[int, int]] = deque()

    def add(self, t: float) -> None:
        b = int(t // self.bucket)
        if self.counts and self.counts[-1][0] == b:
            self.counts[-1] = (b, self.counts[-1][1] + 1)
        else:
            self.counts.append((b, 1))
            while len(self.counts) > self.n:
                self.counts.popleft()

    def rate(self, now: float, window: float) -> float:
        lo = int((now - window) // self.bucket)
        k = sum(c for b, c in self.counts if b > lo)
        return k / window if window > 0 else 0.0


class Lane:
    """One online tier: the items in flight on it, and the shared loop that starts more."""

    tier = ""
    alpha = 0.2   # weight of a new latency in the lane's moving average

    def __init__(self) -> None:
        self.active: dict[int, Work] = {}
        self.latency: float | None = None

    def limit(self) -> int:
        raise NotImplementedError

    def _pace(self) -> float:
        """Clock seconds until the lane's pacing lets one more start (0: now)."""
        return 0.0

    def _started(self) -> None:
        """One item started (pacing takes its token)."""

    def fill(self, ready: deque[Work], now: float, *, skip: Callable[[Work], bool], gate: Gate,
             start: Callable[[Work, str, float], None]) -> tuple[float, bool | None]:
        """Start items from the head of ``ready`` while the lane has room.

        Returns (clock seconds until the lane could start another, or inf; True/False when the
        head item was held back by the budget cap / by the rate limiter, None otherwise).
        """
        while ready and len(self.active) < self.limit():
            t = self._pace()
            if t > 0:
                return t, None
            w = ready[0]
            if skip(w):
                ready.popleft()
                continue
            wt = gate(w, now)
            if wt > 0:
                return wt, wt == math.inf
            ready.popleft()
            start(w, self.tier, now)
            self._started()
        return math.inf, None

    def observe_latency(self, latency: float) -> None:
        self.latency = latency if self.latency is None else (1 - self.alpha) * self.latency + self.alpha * latency


class FlexLane(Lane):
    """Flex: as many in flight as the AIMD window allows; the whole lane waits after a shed."""

    tier = "flex"
    alpha = 0.1

    def __init__(self, concurrency: int, cooldown: float, window: Any = None, pause: Any = None) -> None:
        super().__init__()
        # slow start: on a calm provider the window reaches --concurrency within about
        # --concurrency successes; the first shed switches to plain AIMD (see AimdConfig).
        # ``window``: an object with the AimdController interface (``limit``, ``window``,
        # ``on_success(now)``, ``on_capacity_error(now)``) that stands in for this lane's own:
        # flextier.ray passes a share of the cluster-wide window (RunOptions.permits), so many
        # runners together put no more flex pressure on the provider than one would.
        self.aimd = window if window is not None else AimdController(
            AimdConfig(max_concurrency=max(1, concurrency), cooldown=cooldown, slow_start=True))
        self._streak = 0
        self._shed_at = -math.inf
        self._backoff_until = -math.inf
        # ``pause``: an object with ``until`` (a clock value) and ``backed_off(until)`` that shares
        # this lane's backoff with the job's other runners (flextier.ray: a shed seen by one worker
        # pauses flex on all of them, as one ``flextier run``'s lane would); None: this lane's own.
        # It may also have ``ok_at``: the job's latest flex success (see ``fail_streak``).
        self.pause = pause
        self.throughput = RateBuckets(bucket=60.0, n=32)

    def limit(self) -> int:
        return self.aimd.limit

    @property
    def fail_streak(self) -> int:
        """Sheds since the lane's last success: the length of the next backoff (``Backoff.delay``).

        With a shared ``pause`` (flextier.ray) a success anywhere in the job ends the streak, as any
        success ends one ``flextier run``'s: a runner holding a share of one or two flex requests
        rarely sees its own success, and its streak alone would climb to backoffs of minutes that
        then pause flex on every runner (docs/deadline-policy.md, README "Scaling out with Ray").
        """
        ok_at = getattr(self.pause, "ok_at", None)
        if ok_at is not None and ok_at > self._shed_at:
            self._streak = 0
        return self._streak

    def answered(self, now: float, latency: float) -> None:
        self.aimd.on_success(now)
        self._streak = 0
        self.throughput.add(now)
        self.observe_latency(latency)

    @property
    def backoff_until(self) -> float:
        """The clock value before which the lane starts nothing (its own backoff or the job's)."""
        if self.pause is None:
            return self._backoff_until
        return max(self._backoff_until, self.pause.until)

    def back_off(self, now: float, delay: float) -> None:
        """A shed: the lane takes no new work for ``delay`` (the streak lengthens the next one)."""
        self._streak = self.fail_streak + 1
        self._shed_at = now
        self._backoff_until = max(self._backoff_until, now + delay)
        if self.pause is not None:
            self.pause.backed_off(self._backoff_until)


class StandardLane(Lane):
    """Standard: up to its concurrency, paced at the planner's rate unless it takes everything."""

    tier = "standard"

    def __init__(self, concurrency: int, now: float, share: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.concurrency = concurrency
        # ``share``: this runner's part of the job's standard concurrency when it is one of many
        # (flextier.ray: the controller splits it among the runners live now); None: all of it
        self.share = share
        self.tokens = 0.0
        self.tokens_at = now
        self.rate = 0.0
        self.unpaced = False

    def limit(self) -> int:
        if self.share is None:
            return self.concurrency
        return max(1, min(self.concurrency, self.share()))

    def open(self, now: float, rate: float, *, everything: bool) -> None:
        """Accrue tokens at ``rate`` items per clock second (``everything``: no pacing)."""
        self.rate, self.unpaced = rate, everything
        if not everything:
            self.tokens = min(max(1.0, rate * 30.0), self.tokens + rate * max(0.0, now - self.tokens_at))
        self.tokens_at = now

    def closed(self, now: float) -> None:
        self.tokens_at = now

    def reset(self) -> None:
        """The planner closed the lane: what it saved up is forgotten."""
        self.tokens = 0.0

    def _pace(self) -> float:
        if self.unpaced or self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def _started(self) -> None:
        if not self.unpaced:
            self.tokens -= 1.0
