"""Emulated history: weeks of flex attempts made against the emulator's own capacity model.

Why: the tests and ``bench/policy_emusim.py`` need "one (or four) emulated weeks of history"
without running a job for a week. This drives the pure model of docs/capacity-model.md
(:class:`~flextier.emulator.capacity.StandardLoad` and :class:`~flextier.emulator.capacity.FlexPool`,
the same code the emulator serves from) with a client that keeps ``concurrency`` flex requests
going for ``window_s`` seconds in every hour of the week (at a seeded offset within the hour),
backs off after a refusal, and records every attempt through a real :class:`Recorder` into a real
(emulated-domain) history file. Nothing here is a shortcut through the history: the forecast
reads what the recorder wrote.
"""
from __future__ import annotations

import random
from typing import Any

from ..history.recorder import WEEK, Recorder, week_start

__all__ = ["synthesise_weeks", "week_start"]


def synthesise_weeks(recorder: Recorder, knobs: Any, *, first_week: float, weeks: int = 1, seed: Any = 1,
                     provider: str = "openai", model: str = "openai/gpt-5.4-mini", concurrency: int = 32,
                     window_s: float = 600.0, step: float = 2.0, service_s: float | None = None) -> int:
    """Record ``weeks`` weeks of attempts starting at Monday ``first_week``; returns the attempt count."""
    from .capacity import FlexPool, StandardLoad, Verdict

    S = service_s if service_s is not None else (knobs.ttft_s + knobs.per_output_token_s * 64) \
        * knobs.latency_scale * knobs.flex_slowdown
    rng = random.Random(f"synth:{seed}")
    n = 0
    for w in range(weeks):
        origin = first_week + w * WEEK
        load = StandardLoad(knobs, f"{seed}:hist:{w}", origin)
        for how in range(168):
            t0 = origin + how * 3600 + rng.uniform(0, 3600 - window_s)
            pool = FlexPool(knobs, load)
            sent: dict[int, float] = {}      # rid -> send time
            ends: dict[int, float] = {}      # rid -> end of service (running)
            queued_at: dict[int, float] = {}
            free_at = [t0] * concurrency     # per client slot: next send time
            slot_of: dict[int, int] = {}
            rid = 0
            now = t0
            while now < t0 + window_s:
                disp, pre = pool.step(now)
                for r in disp:
                    ends[r] = now + S
                    queued_at.pop(r, None)
                for r in pre:
                    ends.pop(r, None)
                    queued_at[r] = now
                    pool.requeue(r)
                for r, e in list(ends.items()):
                    if e <= now:
                        pool.finish(now, r)
                        del ends[r]
                        recorder.record_attempt(provider=provider, model=model, tier="flex", outcome="ok", ts=now,
                                                latency=now - sent.pop(r), output_tokens=64)
                        free_at[slot_of.pop(r)] = now
                        n += 1
                for r, q in list(queued_at.items()):
                    if now - sent[r] >= knobs.w_max_s:
                        pool.cancel(r)
                        del queued_at[r]
                        recorder.record_attempt(provider=provider, model=model, tier="flex", outcome="timeout",
                                                ts=now, latency=now - sent.pop(r))
                        free_at[slot_of.pop(r)] = now + rng.uniform(2, 30)
                        n += 1
                busy = set(slot_of.values())
                for s in range(concurrency):
                    if s in busy or free_at[s] > now:
                        continue
                    rid += 1
                    adm = pool.admit(now, rid, S, knobs.w_max_s)
                    if adm.verdict in (Verdict.DISPATCHED, Verdict.QUEUED):
                        sent[rid] = now
                        slot_of[rid] = s
                        if adm.verdict is Verdict.DISPATCHED:
                            ends[rid] = now + S
                        else:
                            queued_at[rid] = now
                    else:
                        out = "shed" if adm.verdict is Verdict.SHED else "timeout"
                        recorder.record_attempt(provider=provider, model=model, tier="flex", outcome=out, ts=now,
                                                latency=0.0)
                        free_at[s] = now + rng.uniform(2, 30)
                        n += 1
                now += step
    recorder.flush()
    return n
