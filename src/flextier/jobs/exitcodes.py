"""The exit codes of ``flextier run`` / ``resume``, in one place, with their precedence.

Why a module: scripts and CI branch on these numbers, so they are a public promise (the
README lists them) and every code path must pick the same one when several apply.

Precedence, when more than one is true, is "what should you do next", most urgent first:

* 2   bad input: nothing was sent; fix the command or file.
* 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): the job stopped; ``flextier resume``.
* 3   paused (spending cap, quota, refused key, wrong endpoint): fix the cause, then resume.
* 1   finished, but some items failed: ``flextier resume JOB --retry-failed``.
* 4   finished, every item has its answer, but the last one came after the deadline.
* 0   finished, every item done, deadline met (or none given).

So a finished job that both failed items and missed its deadline exits 1 (the failures
need action; the summary still says MISSED), and a stopped job is never "missed": it
has not finished yet.
"""
from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1
EXIT_BAD_INPUT = 2
EXIT_PAUSED = 3
EXIT_DEADLINE_MISSED = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: code -> one-line meaning (the README table and ``--help`` text come from the same words)
MEANINGS: dict[int, str] = {
    EXIT_OK: "done: every item answered, deadline met (or none given)",
    EXIT_FAILED_ITEMS: "finished, but some items failed (retry them with `flextier resume JOB --retry-failed`)",
    EXIT_BAD_INPUT: "bad input (flag, job file, price file, config): nothing was sent",
    EXIT_PAUSED: "paused, resumable (spending cap, quota, refused key, wrong endpoint)",
    EXIT_DEADLINE_MISSED: "finished, every item answered, but after the deadline",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): resumable with `flextier resume JOB`",
    EXIT_TERMINATED: "terminated (SIGTERM): resumable with `flextier resume JOB`",
}

#: most urgent first; :func:`pick` returns the first that applies
PRECEDENCE = (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_PAUSED, EXIT_FAILED_ITEMS,
              EXIT_DEADLINE_MISSED, EXIT_OK)


def pick(*codes: int) -> int:
    """The code to exit with when several apply (see the module docstring)."""
    for c in PRECEDENCE:
        if c in codes:
            return c
    return max(codes) if codes else EXIT_OK


def deadline_missed(store: Any) -> bool:
    """True when the job has a deadline and its last finished item came after it.

    Read from the store (the same rule as the report's "MISSED"), so ``run`` and
    ``resume`` agree with ``flextier report`` about the same job.
    """
    job = store.job() or {}
    deadline = job.get("deadline")
    if deadline is None:
        return False
    last = store.last_finished_at()
    return last is not None and last > deadline


def finished_code(store: Any, failed: int) -> int:
    """The exit code of a run that finished every item: 0, 1 (failures) or 4 (late)."""
    codes = [EXIT_OK]
    if failed:
        codes.append(EXIT_FAILED_ITEMS)
    if deadline_missed(store):
        codes.append(EXIT_DEADLINE_MISSED)
    return pick(*codes)


__all__ = ["EXIT_OK", "EXIT_FAILED_ITEMS", "EXIT_BAD_INPUT", "EXIT_PAUSED", "EXIT_DEADLINE_MISSED",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED", "MEANINGS", "PRECEDENCE", "pick", "deadline_missed",
           "finished_code"]
