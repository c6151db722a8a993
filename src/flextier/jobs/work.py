"""An item inside a running job: what was claimed from the store, and its send bounds.

Why its own module: the lanes, the accounting step and the loop all hold the same
:class:`Work`; :func:`prepare_work` parses the stored request once, when the item is first
sent, and computes what the budget reserves for it (docs/deadline-policy.md, "--max-cost").
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from .._types import CallRequest
from ..catalog import ModelEntry
from ..errors import ProviderError, UserInputError
from ..policy.budget import estimate_cost, output_bound, prompt_tokens_upper_bound, request_answers, request_output_limit
from .input import inject_max, request_to_call
from .store import ClaimedItem

__all__ = ["Work", "work_of", "prepare_work", "input_tokens_estimate", "job_token_estimate"]


@dataclass(slots=True)
class Work:
    """An item in this process: claimed from the store, not yet final."""

    seq: int
    custom_id: str
    request: str
    line: int
    attempts: int
    possibly_billed: int
    req: CallRequest | None = None
    max_out: int | None = None
    out_bound: int | None = None  # per answer: the request's own limit, else the catalog's maximum
    answers: int = 1              # n (candidateCount): the reservation holds this many answers
    prompt_ub: int | None = None
    est_tokens: int = 0
    est_cost: Decimal | None = None
    errors: int = 0
    timeouts: int = 0
    last_error: ProviderError | None = None
    not_before: float = 0.0
    active: int = 0           # attempts in flight (2 while hedged)
    final: bool = False
    flex_started: float | None = None


#: Output tokens assumed for a request that sets no limit, where a token estimate is needed.
DEFAULT_OUT_ESTIMATE = 256


def input_tokens_estimate(prompt_upper_bound: int) -> int:
    """Expected input tokens of a prompt from its byte bound (:func:`prompt_tokens_upper_bound`).

    Why one function: the rate limiter's per-request reservation and ``--start auto``'s workload
    (:func:`job_token_estimate`) must size a prompt alike. A third of the byte bound is close to
    what BPE tokenizers give for English text and code (~3-4 bytes a token) while staying above
    it, so a reservation errs on the safe side (docs/deadline-policy.md).
    """
    return prompt_upper_bound // 3


def job_token_estimate(store: Any, entry: ModelEntry, params: dict[str, Any] | None = None, *,
                       sample: int = 1000) -> tuple[int, int]:
    """(input, output) tokens per item the job's unfinished items are expected to take.

    Read from the job itself, not assumed: up to ``sample`` stored requests spread over the
    items still to do, each parsed as the runner will send it (:func:`request_to_call`), its
    prompt sized by :func:`input_tokens_estimate` and its output by the request's own limit,
    else the job's ``max_tokens``, else :data:`DEFAULT_OUT_ESTIMATE`. Used by ``flextier run
    --start auto`` (docs/history.md), whose start-time advice prices this workload. A line that
    does not parse is skipped (the run reports it); no line at all gives (0, 0).
    """
    p = dict(params or {})
    job_max = p.get("max_tokens")
    ins: list[int] = []
    outs: list[int] = []
    for text in store.open_request_sample(sample):
        try:
            req = request_to_call(text, entry, p)
        except (UserInputError, ValueError, TypeError):
            continue
        src: Any = req.native if req.native is not None else (req.messages or [])
        ins.append(input_tokens_estimate(prompt_tokens_upper_bound(src)))
        outs.append(int(request_output_limit(req) or job_max or DEFAULT_OUT_ESTIMATE) * request_answers(req))
    if not ins:
        return 0, 0
    return -(-sum(ins) // len(ins)), -(-sum(outs) // len(outs))


def work_of(c: ClaimedItem) -> Work:
    """A claimed store row as an item of this process."""
    return Work(seq=c.seq, custom_id=c.custom_id, request=c.request, line=c.line,
                attempts=c.attempts, possibly_billed=c.possibly_billed)


def prepare_work(w: Work, entry: ModelEntry, params: dict[str, Any], *, capped: bool,
                 input_path: Callable[[], str | None] = lambda: None) -> None:
    """Parse the stored request once, when the item is first sent, and bound what it may cost.

    ``capped`` (a ``--max-cost`` job): a limit the request lacks is injected, and the
    reservation is taken at the **standard** price even on flex (a flex request served at
    standard must not push spend past the cap); ``n`` answers reserve ``n`` outputs.
    """
    if w.req is not None:
        return
    req = request_to_call(w.request, entry, params)
    job_max = params.get("max_tokens")
    w.max_out = request_output_limit(req) or job_max
    if capped and w.max_out is not None:
        inject_max(req, w.max_out)
    prompt_src: Any = req.native if req.native is not None else (req.messages or [])
    prompt_ub = prompt_tokens_upper_bound(prompt_src)
    w.est_tokens = input_tokens_estimate(prompt_ub) + (w.max_out or DEFAULT_OUT_ESTIMATE)
    w.out_bound, _ = output_bound(req, entry)
    w.answers, w.prompt_ub = request_answers(req), prompt_ub
    if capped and w.out_bound is None:
        raise UserInputError(f"item {w.custom_id!r} sets no max_tokens and the catalog has no maximum output for "
                             f"{entry.name}, so --max-cost cannot bound its cost; give --max-tokens N",
                             file=input_path(), line=w.line, field="max_tokens")
    w.est_cost = estimate_cost(entry, "standard", prompt_ub, (w.out_bound or 0) * w.answers) if capped else None
    w.req = req
