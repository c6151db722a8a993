"""The ``--max-cost`` cap: money spent plus money reserved never goes over it.

Why reservations: requests are priced only when they come back, and hundreds can be in
flight. Checking only *spent* money would let every in-flight request overshoot the cap at
once. So before a request is sent the runner reserves an **upper-bound** estimate of its cost
(:func:`estimate_cost`), and the cap is enforced on ``spent + reserved + estimate``. When
the answer arrives the reservation is replaced by the real cost (:meth:`Budget.settle`); when
the attempt was not billed (a flex 429) it is dropped (:meth:`Budget.release`).

Crashes: an attempt whose outcome is never learnt (a timeout, a reset, a copy
cancelled in flight, a send in flight when the process died) may still be billed. It is
moved from reserved to :attr:`Budget.possibly_billed` at its reserved (upper-bound) cost
(:meth:`Budget.lose`), and a resumed run seeds that amount from the store's send records, so
``spent + possibly_billed + reserved`` never passes the cap across any number of crashes.

The guarantee "never over the cap" holds as long as estimates are upper bounds; that is why
:func:`estimate_cost` counts every prompt byte as a token, prices no token as cached and
assumes the full output bound for every answer the request asks for. The output bound of a
request (:func:`output_bound`) is its own ``max_tokens`` (in whichever spelling its provider
uses), else the model's maximum output from the catalog; only when neither exists is the
request unbounded. ``n`` answers (``candidateCount`` on Gemini) reserve ``n`` times the bound.
A settle above its estimate is still recorded (money already spent cannot be refused) and is
visible as :attr:`Budget.overrun`; an answer whose usage is impossible for its request is a
provider fault (:func:`implausible_usage`), never spent money to keep going on.

Unknown prices: a capped job cannot bound its spend if any price it may pay is unknown.
:func:`require_known_prices` turns that into a clear error before anything is sent, and
:meth:`Budget.reserve` refuses an unknown (``None``) estimate under a cap for the same
reason. Without a cap, unknown prices are allowed and shown as "unknown".

Money is :class:`~decimal.Decimal` throughout; floats are rejected so a cap of $10.00 is
exactly $10.00.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Hashable, Iterable

from ..catalog import ModelEntry
from ..cost import Usage, tier_cost
from ..errors import UserInputError

ZERO = Decimal(0)


def _money(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{what} must be a Decimal (or int), got {type(value).__name__}")
    d = Decimal(value)
    if not d.is_finite() or d < 0:
        raise ValueError(f"{what} must be a finite amount >= 0, got {value!r}")
    return d


@dataclass
class Budget:
    """Spent + reserved money against an optional cap (``max_cost=None`` = no cap).

    Keys of reservations are whatever identifies one *attempt* in flight (an item id, or
    ``(item_id, lane)`` when an item is hedged on two lanes at once). ``spent`` can be
    seeded from the store on resume.
    """

    max_cost: Decimal | None = None
    spent: Decimal = ZERO
    possibly_billed: Decimal = ZERO
    """Upper bound of attempts that may have been billed though no answer says so (see :meth:`lose`)."""
    _reserved: dict[Hashable, Decimal] = field(default_factory=dict, init=False, repr=False)
    _reserved_total: Decimal = field(default=ZERO, init=False, repr=False)
    overrun: Decimal = field(default=ZERO, init=False)
    """Sum of (actual - estimate) over settles that exceeded their estimate."""
    lease: Callable[[Decimal], Decimal] | None = None
    """Where more headroom comes from when a reservation does not fit (None: the cap is final).

    ``lease(shortfall)`` returns the amount granted (0 when none is left); the cap grows by it.
    flextier.ray gives each runner a budget that starts at 0 and leases from the job's one
    controller, which never grants past the job's ``--max-cost`` (so the runners together never
    pass it). The amount not used by the end is :meth:`unused`, handed back by the caller."""

    def __post_init__(self) -> None:
        if self.max_cost is not None:
            self.max_cost = _money(self.max_cost, "max_cost")
        self.spent = _money(self.spent, "spent")
        self.possibly_billed = _money(self.possibly_billed, "possibly_billed")

    @property
    def reserved(self) -> Decimal:
        """Money held for attempts in flight (a running total: the runner asks on every send)."""
        return self._reserved_total

    @property
    def committed(self) -> Decimal:
        """``spent + possibly_billed + reserved``: what the cap is checked against."""
        return self.spent + self.possibly_billed + self.reserved

    @property
    def available(self) -> Decimal | None:
        """Headroom under the cap (never negative), or None when there is no cap."""
        if self.max_cost is None:
            return None
        return max(ZERO, self.max_cost - self.committed)

    def fits(self, estimate: Decimal) -> bool:
        """Would a reservation of ``estimate`` be accepted now? (With a :attr:`lease`, asks it for
        the shortfall first.)"""
        if self.max_cost is None:
            return True
        need = self.committed + _money(estimate, "estimate") - self.max_cost
        if need > 0 and self.lease is not None:
            granted = _money(self.lease(need), "lease")
            self.max_cost += granted
            need -= granted
        return need <= 0

    def unused(self) -> Decimal:
        """Headroom the cap holds beyond what is committed (what a leased budget hands back)."""
        return ZERO if self.max_cost is None else max(ZERO, self.max_cost - self.committed)

    def shortfall(self, estimate: Decimal) -> Decimal:
        """How much the cap must rise for ``estimate`` to fit (0 if it fits), for the pause message."""
        if self.max_cost is None:
            return ZERO
        return max(ZERO, self.committed + _money(estimate, "estimate") - self.max_cost)

    def reserve(self, key: Hashable, estimate: Decimal | None) -> bool:
        """Hold ``estimate`` for the attempt ``key``; False (nothing held) if it would pass the cap.

        Under a cap an unknown estimate (None) raises ValueError: the spend could not be
        bounded. Without a cap None is held as 0. Reserving a key twice is a bug (ValueError).
        """
        if key in self._reserved:
            raise ValueError(f"{key!r} already holds a reservation")
        if estimate is None:
            if self.max_cost is not None:
                raise ValueError(f"cost of {key!r} is unknown; a capped job needs known prices")
            est = ZERO
        else:
            est = _money(estimate, "estimate")
        if self.max_cost is not None and self.committed + est > self.max_cost:
            return False
        self._reserved[key] = est
        self._reserved_total += est
        return True

    def settle(self, key: Hashable, actual: Decimal | None) -> None:
        """The attempt ``key`` was billed ``actual``: move it from reserved to spent.

        ``actual=None`` (billed, but priced at a tier we have no price for) keeps the
        estimate as spent, the conservative choice. An unknown key is settled directly
        (e.g. a result that arrives after a resume, whose reservation died with the process).
        """
        est = self._reserved.pop(key, None)
        if est is not None:
            self._reserved_total -= est
        if actual is None:
            amount = est if est is not None else ZERO
        else:
            amount = _money(actual, "actual")
        if est is not None and amount > est:
            self.overrun += amount - est
        self.spent += amount

    def lose(self, key: Hashable) -> None:
        """The attempt ``key`` ended without an answer but may have been billed (timeout,
        reset, cancelled in flight): its reservation stays held, as :attr:`possibly_billed`,
        for good. An unknown key changes nothing (no reservation to keep)."""
        est = self._reserved.pop(key, None)
        if est is not None:
            self._reserved_total -= est
            self.possibly_billed += est

    def release(self, key: Hashable) -> None:
        """The attempt ``key`` was not billed (shed, refused): free its reservation."""
        est = self._reserved.pop(key, None)
        if est is not None:
            self._reserved_total -= est

    def raise_cap(self, new_cap: Decimal | None) -> None:
        """Raise the cap (``None`` lifts it). Lowering is refused: it could strand reservations
        already granted, and a running job has no safe answer to that."""
        if new_cap is None:
            self.max_cost = None
            return
        new = _money(new_cap, "new cap")
        if self.max_cost is None or new < self.max_cost:
            raise ValueError(f"the cap can only be raised (now {self.max_cost}, asked {new})")
        self.max_cost = new

    def in_flight(self) -> int:
        """Number of attempts holding a reservation."""
        return len(self._reserved)


# -- estimating ---------------------------------------------------------------------------

MESSAGE_OVERHEAD_TOKENS = 8
"""Per-message framing tokens (role markers etc.); generous compared with OpenAI's 3-4."""

TOOL_OVERHEAD_TOKENS = 600
"""Tokens a provider adds when a request declares tools: Anthropic's tool-use system prompt is
346 tokens (Claude 4, ``tool_choice`` auto), OpenAI frames each function with a few more; the
declarations' own JSON is counted byte by byte on top of this."""

_TOOL_KEYS = ("tools", "toolConfig", "functions", "tool_choice")


def prompt_tokens_upper_bound(prompt: str | Iterable[dict[str, Any]] | dict[str, Any]) -> int:
    """An upper bound on the input tokens of a prompt, without a tokenizer.

    Byte-level BPE tokenizers never emit more tokens than UTF-8 bytes of text, so the byte
    count bounds the text; each message adds :data:`MESSAGE_OVERHEAD_TOKENS`. Accepts a string,
    a list of chat messages, or a native request body (every string in it is counted). This
    over-estimates by ~4x for English, which only makes the cap hold more in reserve while
    requests are in flight; it never lets the cap be passed.
    """
    if isinstance(prompt, str):
        return len(prompt.encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS
    if isinstance(prompt, dict):
        tools = any(prompt.get(k) for k in _TOOL_KEYS)
        return _count_strings(prompt) + MESSAGE_OVERHEAD_TOKENS + (TOOL_OVERHEAD_TOKENS if tools else 0)
    total = 0
    for msg in prompt:
        total += _count_strings(msg) + MESSAGE_OVERHEAD_TOKENS
    return total


def _count_strings(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj.encode("utf-8"))
    if isinstance(obj, dict):  # keys count too: a tool's JSON schema is mostly property names
        return sum(len(str(k).encode("utf-8")) + 1 + _count_strings(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(_count_strings(v) for v in obj)
    if obj is None or isinstance(obj, bool):
        return 0
    return len(json.dumps(obj))


def _positive_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _first(d: Any, keys: Iterable[str]) -> int | None:
    if not isinstance(d, dict):
        return None
    for k in keys:
        v = _positive_int(d.get(k))
        if v is not None:
            return v
    return None


#: Where each provider's body keeps the output limit (per answer), as flextier sends it.
_TOP_LIMIT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "maxOutputTokens")
_GEMINI_CONFIGS = ("generationConfig", "generation_config", "config")
_GEMINI_LIMIT_KEYS = ("maxOutputTokens", "max_output_tokens")
_BEDROCK_CONFIGS = ("inferenceConfig", "inference_config")
_BEDROCK_LIMIT_KEYS = ("maxTokens", "max_tokens")
_ANSWER_KEYS = ("n", "candidateCount", "candidate_count")


def request_output_limit(req: Any) -> int | None:
    """The output limit one answer of ``req`` asks for itself, or None when it sets none.

    Reads the portable ``params`` (``max_tokens``/``max_completion_tokens``/``max_output_tokens``)
    or a native body: OpenAI ``max_completion_tokens``/``max_tokens``/``max_output_tokens``,
    Anthropic ``max_tokens``, Gemini ``generationConfig.maxOutputTokens``, Bedrock
    ``inferenceConfig.maxTokens``.
    """
    src = req.native if getattr(req, "native", None) is not None else getattr(req, "params", None)
    if not isinstance(src, dict):
        return None
    v = _first(src, _TOP_LIMIT_KEYS)
    if v is not None:
        return v
    for ck in _GEMINI_CONFIGS:
        v = _first(src.get(ck), _GEMINI_LIMIT_KEYS)
        if v is not None:
            return v
    for ck in _BEDROCK_CONFIGS:
        v = _first(src.get(ck), _BEDROCK_LIMIT_KEYS)
        if v is not None:
            return v
    return None


def request_answers(req: Any) -> int:
    """How many answers ``req`` asks for (OpenAI ``n``, Gemini ``candidateCount``); 1 by default."""
    src = req.native if getattr(req, "native", None) is not None else getattr(req, "params", None)
    if not isinstance(src, dict):
        return 1
    v = _first(src, _ANSWER_KEYS)
    if v is None:
        for ck in _GEMINI_CONFIGS:
            v = _first(src.get(ck), _ANSWER_KEYS)
            if v is not None:
                break
    return v or 1


def output_bound(req: Any, model: ModelEntry) -> tuple[int | None, str]:
    """(upper bound on one answer's output tokens, where it came from).

    The request's own limit wins ("request"); else the model's maximum output from the catalog
    ("catalog"); else ``(None, "none")``: the request's cost has no bound.
    """
    own = request_output_limit(req)
    if own is not None:
        return own, "request"
    if model.max_output_tokens:
        return model.max_output_tokens, "catalog"
    return None, "none"


#: An input claim beyond this many times the prompt's own upper bound is not believable ...
IMPLAUSIBLE_INPUT_FACTOR = 100
#: ... unless it is below this floor, kept above every model's context window (1,050,000 tokens
#: for gpt-5.4/5.5 today), so cached contexts, images and files behind a short reference never trip
#: it. No single answer can be longer either: it is also the output bound of a model whose maximum
#: output is unknown.
IMPLAUSIBLE_INPUT_FLOOR = 2_000_000


def implausible_usage(usage: Usage, *, out_bound: int | None, answers: int = 1,
                      prompt_upper_bound: int | None = None) -> str | None:
    """Why ``usage`` cannot be the bill of the request it answers, or None when it can.

    Output above the request's bound times its answers is impossible for an honest provider
    (the bound is what the request allowed, or the model's own maximum; with neither known,
    :data:`IMPLAUSIBLE_INPUT_FLOOR`). Input is checked generously: only a claim above both
    :data:`IMPLAUSIBLE_INPUT_FACTOR` times the prompt's upper bound and the floor counts. Such an
    answer is a provider fault: the caller must stop spending, not price the claim.
    """
    n = max(1, answers)
    per_answer = out_bound if out_bound is not None else IMPLAUSIBLE_INPUT_FLOOR
    if usage.output_tokens > per_answer * n:
        allowed = per_answer * n
        return (f"claims {usage.output_tokens:,} output tokens where the request allowed at most {allowed:,}"
                + (f" ({n} answers x {per_answer:,})" if n > 1 else ""))
    if prompt_upper_bound is not None:
        limit = max(IMPLAUSIBLE_INPUT_FACTOR * prompt_upper_bound, IMPLAUSIBLE_INPUT_FLOOR)
        if usage.input_tokens > limit:
            return (f"claims {usage.input_tokens:,} input tokens for a prompt of at most "
                    f"{prompt_upper_bound:,} tokens")
    return None


def estimate_cost(model: ModelEntry, tier: str, prompt_tokens: int, max_output_tokens: int) -> Decimal | None:
    """Upper-bound cost of one attempt at ``tier``: all input uncached, full ``max_output_tokens``
    of output (reasoning included; the bound times ``n`` for a request with ``n`` answers),
    long-context uplift applied. None when a needed price is unknown. ``max_output_tokens``
    must be given: without it a request's cost has no bound (see :func:`output_bound`)."""
    if prompt_tokens < 0 or max_output_tokens < 0:
        raise ValueError("token counts must be >= 0")
    usage = Usage(input_tokens=int(prompt_tokens), output_tokens=int(max_output_tokens))
    return tier_cost(usage, model.tier_prices(tier), model)


def require_known_prices(model: ModelEntry, tiers: Iterable[str]) -> None:
    """Raise :class:`UserInputError` if a capped job could pay a price the catalog does not know.

    Call it before sending anything when ``--max-cost`` is set, with every tier the job may
    use (e.g. ``("flex", "standard")``). Only input and output prices are needed, because
    estimates never assume cached input.
    """
    for tier in tiers:
        prices = model.tier_prices(tier)
        missing = ["input", "output"] if prices is None else [
            f for f in ("input", "output") if getattr(prices, f) is None]
        if missing:
            raise UserInputError(
                f"--max-cost needs known prices, but {model.name} has no {tier} {' and '.join(missing)} "
                f"price; add it with --prices FILE or run without --max-cost",
                field="--max-cost")


__all__ = ["Budget", "estimate_cost", "prompt_tokens_upper_bound", "require_known_prices",
           "MESSAGE_OVERHEAD_TOKENS", "request_output_limit", "request_answers", "output_bound",
           "implausible_usage", "IMPLAUSIBLE_INPUT_FACTOR", "IMPLAUSIBLE_INPUT_FLOOR"]
