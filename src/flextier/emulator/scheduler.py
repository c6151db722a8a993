"""Async glue between live HTTP requests and the pure :class:`~.capacity.FlexPool`.

The pool decides; this module turns its decisions into awaited futures: a queued
request awaits dispatch (bounded by the wait limit and by its client staying
connected), a running request can be told it was preempted, and a per-pool driver
re-evaluates the pool at every minute boundary of emulated time, when standard
load changes. Everything runs on the server's event loop thread, so the pools
need no locks. The batch lane reuses :meth:`FlexScheduler.pool` to share the same
capacity state.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from ..catalog import ModelEntry
from .capacity import Admission, FlexPool, StandardLoad, Verdict
from .clock import ScaledClock
from .knobs import Knobs

__all__ = ["FlexScheduler", "QueueOutcome", "GoneSignal"]


class GoneSignal(Protocol):
    """Something whose ``event`` is set when the client disconnects (created lazily)."""

    @property
    def event(self) -> asyncio.Event: ...


@dataclass
class QueueOutcome:
    verdict: str            # "dispatched" | "shed" | "timeout" | "gone"
    wait_s: float = 0.0
    admission: Admission | None = None


class FlexScheduler:
    def __init__(self, knobs: Knobs, clock: ScaledClock, seed: int) -> None:
        self.knobs = knobs
        self.clock = clock
        self.seed = seed
        self._loads: dict[str, StandardLoad] = {}
        self._pools: dict[str, FlexPool] = {}
        self._waiters: dict[object, asyncio.Future] = {}
        self._preempt: dict[object, asyncio.Future] = {}
        self._drivers: dict[str, asyncio.Task] = {}

    # -- configuration ----------------------------------------------------------------
    def load(self, provider: str) -> StandardLoad:
        ld = self._loads.get(provider)
        if ld is None:
            ld = self._loads[provider] = StandardLoad(self.knobs, f"{self.seed}:{provider}", self.clock.start)
        return ld

    def pool(self, entry: ModelEntry) -> FlexPool:
        p = self._pools.get(entry.name)
        if p is None:
            p = self._pools[entry.name] = FlexPool(self.knobs, self.load(entry.provider))
        return p

    def set_knobs(self, knobs: Knobs) -> None:
        """Apply new knobs live; a changed burst process regenerates the seeded load."""
        old, self.knobs = self.knobs, knobs
        if (old.burst_sigma, old.burst_ar) != (knobs.burst_sigma, knobs.burst_ar):
            self._loads = {prov: StandardLoad(knobs, f"{self.seed}:{prov}", self.clock.start)
                           for prov in self._loads}
        for ld in self._loads.values():
            ld.knobs = knobs
        for name, p in self._pools.items():
            p.knobs = knobs
            p.load = self.load(name.split("/", 1)[0])
        for name in list(self._pools):
            self._kick(name)

    def snapshot(self) -> dict:
        now = self.clock.now()
        return {name: p.snapshot(now) for name, p in self._pools.items()}

    # -- request lifecycle ------------------------------------------------------------------
    async def acquire(self, entry: ModelEntry, rid: object, service_s: float, max_wait_s: float,
                      u: float, gone: "GoneSignal | None") -> QueueOutcome:
        """Admit a flex request and wait for its slot (or shed / time out / client gone)."""
        pool = self.pool(entry)
        now = self.clock.now()
        adm = pool.admit(now, rid, service_s, max_wait_s, u)
        if adm.verdict is Verdict.DISPATCHED:
            self._ensure_driver(entry.name)
            return QueueOutcome("dispatched", 0.0, adm)
        if adm.verdict is Verdict.SHED:
            return QueueOutcome("shed", 0.0, adm)
        if adm.verdict is Verdict.TIMEOUT:
            return QueueOutcome("timeout", 0.0, adm)
        return await self._wait_dispatch(entry.name, pool, rid, now, max_wait_s, gone, adm)

    async def _wait_dispatch(self, name: str, pool: FlexPool, rid: object, t0: float, max_wait_s: float,
                             gone: "GoneSignal | None", adm: Admission | None) -> QueueOutcome:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        self._kick(name)
        self._ensure_driver(name)
        waits: set[asyncio.Future] = {fut}
        gone_task = None
        if gone is not None:
            gone_task = asyncio.ensure_future(gone.event.wait())
            waits.add(gone_task)
        try:
            remaining = max_wait_s - (self.clock.now() - t0)
            if not fut.done():
                await asyncio.wait(waits, timeout=self.clock.wall(remaining),
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            if gone_task is not None:
                gone_task.cancel()
            self._waiters.pop(rid, None)
        wait_s = self.clock.now() - t0
        if fut.done():
            return QueueOutcome("dispatched", wait_s, adm)
        pool.cancel(rid)
        self._kick(name)
        if gone is not None and gone.event.is_set():
            return QueueOutcome("gone", wait_s, adm)
        return QueueOutcome("timeout", wait_s, adm)

    def preempt_future(self, rid: object) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._preempt[rid] = fut
        return fut

    async def requeue(self, entry: ModelEntry, rid: object, max_wait_s: float,
                      gone: "GoneSignal | None") -> QueueOutcome:
        """After preemption (mode requeue): back to the queue head and wait again."""
        pool = self.pool(entry)
        pool.requeue(rid)
        return await self._wait_dispatch(entry.name, pool, rid, self.clock.now(), max_wait_s, gone, None)

    def release(self, entry: ModelEntry, rid: object) -> None:
        self._preempt.pop(rid, None)
        pool = self._pools.get(entry.name)
        if pool is None:
            return
        pool.finish(self.clock.now(), rid)
        if pool.queue:
            self._kick(entry.name)

    # -- driving the pools --------------------------------------------------------------------
    def _kick(self, name: str) -> None:
        pool = self._pools[name]
        dispatched, preempted = pool.step(self.clock.now())
        for rid in dispatched:
            fut = self._waiters.get(rid)
            if fut is not None and not fut.done():
                fut.set_result(True)
            elif fut is None:       # nobody waits any more (raced with a timeout): free the slot
                pool.cancel(rid)
        for rid in preempted:
            fut = self._preempt.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(True)

    def _ensure_driver(self, name: str) -> None:
        t = self._drivers.get(name)
        if t is None or t.done():
            self._drivers[name] = asyncio.ensure_future(self._drive(name))

    async def _drive(self, name: str) -> None:
        """Re-evaluate the pool at each emulated minute boundary while it holds work."""
        pool = self._pools[name]
        while pool.queue or pool.running:
            now = self.clock.now()
            await self.clock.asleep(pool.next_change(now) - now + 1e-6)
            self._kick(name)

    async def aclose(self) -> None:
        for t in self._drivers.values():
            t.cancel()
        self._drivers.clear()
