"""Time as the job runner sees it: an injected clock, so tests and the emulator can scale it.

Everything in a run (the planner, backoff, timeouts, the deadline) reads :class:`Clock`, so
with the emulator's ``ScaledClock`` a 3-hour deadline plays out in seconds and nothing ever
sleeps through a real backoff (docs/deadline-policy.md).
"""
from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "WallClock"]


class Clock(Protocol):
    """What the runner needs of time. The emulator's ``ScaledClock`` satisfies it."""

    time_scale: float

    def now(self) -> float: ...

    async def asleep(self, seconds: float) -> None: ...


class WallClock:
    """Real time: epoch seconds, ordinary sleeps."""

    time_scale = 1.0

    def now(self) -> float:
        return time.time()

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
