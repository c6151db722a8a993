"""Commit before report: the store's writes become durable, then the output file and counters see them.

Why a module: "done" must mean durable. Results are queued on the store's batched writer
(:meth:`JobStore.finish`); :meth:`Publisher.flush` commits them (with any items claimed in the
same transaction) and only then appends their lines to the results file, raises the done
counters and calls the user's ``on_result``. The results file is rebuilt from the store when
it does not hold exactly the committed results (a crash between commit and write, a file
edited by hand; see :mod:`.output`). The order of lines is either commit order, or input order
with ``--ordered`` (a line is written once every earlier item is final).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from .clock import Clock
from .output import OutputSink
from .stats import Stats
from .store import DONE, FinishedItem, FlushResult, JobStore

log = logging.getLogger("flextier.runner")

__all__ = ["Publisher", "ResultHook"]

ResultHook = Callable[[FinishedItem, dict[str, Any]], None]


class Publisher:
    """The one path from the store's queued writes to the results file and the counters."""

    def __init__(self, store: JobStore, output: OutputSink | None, *, ordered: bool, stats: Stats, clock: Clock,
                 on_result: ResultHook | None = None) -> None:
        self.store = store
        self.output = output
        self.ordered = ordered
        self.stats = stats
        self.clock = clock
        self.on_result = on_result
        job = store.job() or {}
        self.out_gen = job.get("out_gen", 0)
        self.out_next_seq = job.get("out_next_seq", 0)

    def rebuild(self) -> None:
        """Make the output file hold exactly the committed results (see the store module doc)."""
        if self.output is None:
            return
        job = self.store.job() or {}
        intact = self.output.prepare(job.get("out_offset", 0), self.store, self.ordered)
        if not intact:
            self.out_gen, self.out_next_seq = 0, 0
        if self.ordered:
            self._write_ordered()
        else:
            lines = [r for _, r in self.store.results_after_gen(self.out_gen)]
            for i in range(0, len(lines), 1000):
                self.output.write(lines[i:i + 1000])
            self.out_gen = self.store.generation
        self.store.flush(out_offset=self.output.offset, out_gen=self.out_gen, out_next_seq=self.out_next_seq)

    def _write_ordered(self) -> None:
        assert self.output is not None
        while True:
            rows = self.store.final_prefix(self.out_next_seq, 1000)
            if not rows:
                return
            self.output.write([r for _, r in rows if r is not None])
            self.out_next_seq = rows[-1][0] + 1

    def flush(self, claim: int = 0) -> FlushResult:
        """Commit queued writes (and claim ``claim`` items), then report what became durable."""
        self.store.queue_job_update(last_clock=self.clock.now())
        kw: dict[str, Any] = {}
        if self.output is not None:
            kw = dict(out_offset=self.output.offset, out_gen=self.out_gen, out_next_seq=self.out_next_seq)
        fr = self.store.flush(claim=claim, **kw)
        if fr.finished:
            self._report(fr)
        return fr

    def _report(self, fr: FlushResult) -> None:
        """After commit: output file, counters, callbacks. Never before."""
        s = self.stats
        lines = []
        for f in fr.finished:
            if f.state == DONE:
                s.done += 1
                s.by_tier[f.served_tier or "unknown"] += 1
            else:
                s.failed += 1
            lines.append(f.result)
        if self.output is not None:
            if self.ordered:
                self._write_ordered()
            else:
                self.output.write(lines)
                self.out_gen = fr.gen
        if self.on_result is not None:
            for f in fr.finished:
                try:
                    self.on_result(f, json.loads(f.result))
                except Exception:  # a user callback must not kill the job
                    log.exception("on_result callback failed")

    async def run(self, now: asyncio.Event, interval: float, *, woke: Callable[[], None],
                  failed: Callable[[BaseException], None]) -> None:
        """Flush every ``interval`` wall seconds, or at once when ``now`` is set, until cancelled."""
        while True:
            try:
                await asyncio.wait_for(now.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            now.clear()
            try:
                self.flush()
            except Exception as exc:  # disk full, locked store...
                failed(exc)
                return
            woke()
