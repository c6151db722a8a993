"""The provider-neutral core: what happens to one generation request.

Each wire module (OpenAI, Gemini, Bedrock, Anthropic) parses its request into a
:class:`GenRequest`, calls :meth:`Engine.begin` — faults, rate limits, overload,
flex admission and queueing — and gets a :class:`Session` back (or an
:class:`EmuError` to render in its own error dialect). The session then performs
the service time (whole or piece by piece for streams, surviving preemption) and
bills the ledger exactly once via :meth:`Session.complete`.
"""
from __future__ import annotations

import asyncio
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from ..catalog import ModelEntry, default_catalog
from ..cost import Usage
from .cache import PrefixCache
from .clock import ScaledClock
from .knobs import Knobs
from .ledger import Ledger
from .scheduler import FlexScheduler, GoneSignal
from .tokenizer import count_tokens, generate_words, join_tokens, request_rng, tokenize
from .tools import OutputSpec, ToolCall, decide, json_text, tool_call

__all__ = ["Engine", "EmuError", "GenRequest", "Plan", "Session", "is_reasoning_model", "text_chunks"]

_REASONING = re.compile(r"^(o\d|gpt-5|gemini-(3|2\.5))")


def is_reasoning_model(provider: str, model_id: str) -> bool:
    """Models that think by default and report reasoning tokens."""
    return provider in ("openai", "gemini") and bool(_REASONING.match(model_id.lower()))


class EmuError(Exception):
    """A refusal or failure that a wire module renders in its provider's shape.

    ``kind``: shed | timeout | preempted | rate_limit | quota | server_500 | server_502 |
    overloaded | gone. ``u`` is a uniform draw for choosing among provider flavours.
    """

    def __init__(self, kind: str, message: str = "", *, retry_after: float | None = None,
                 u: float = 1.0, outcome: str | None = None, detail: dict | None = None) -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.message = message or kind
        self.retry_after = retry_after
        self.u = u
        self.outcome = outcome or kind
        self.detail = detail or {}


@dataclass
class GenRequest:
    """A generation request, provider-neutral. ``tier`` is canonical (standard|flex|priority)."""

    provider: str
    model_wire: str
    entry: ModelEntry
    tier: str
    served_tier: str
    prompt_text: str
    max_tokens: int | None = None
    stream: bool = False
    cache_eligible: bool = True
    reasoning: bool = False
    reasoning_scale: float = 1.0
    item: str | None = None
    server_timeout_s: float | None = None
    prompt_overhead: int = 0      # framing + tool tokens beyond prompt_text (tokenizer.prompt_overhead)
    no_output: bool = False       # embeddings: input only, nothing generated or billed as output
    # -- beyond plain chat; the defaults keep plain chat on its fast path --------
    n: int = 1                                 # choices (OpenAI ``n``, Gemini ``candidateCount``)
    stop: tuple[str, ...] | None = None        # stop sequences
    seed: int | None = None                    # the request's own ``seed``
    output: OutputSpec | None = None           # structured output / tools
    created: int | None = None                 # the response's ``created`` when fixed at parse time (DeepSeek
                                               # bills by it: emulator/deepseek_api.py)
    prompt_prefix: str = ""                    # tool and schema definitions, billed ahead of the prompt


@dataclass
class Plan:
    """One answer. ``finish``: stop | length | tool_calls | stop_sequence (each dialect maps it).

    A plain answer is ``words``; a JSON answer or a text cut at a stop sequence keeps its
    exact text in ``text_override``; a tool call is in ``tool_calls``. ``others`` are the
    further choices of an ``n`` > 1 request: billed with this one.
    """

    words: list[str]
    reasoning_tokens: int
    input_tokens: int
    cached_tokens: int
    finish: str
    service_s: float
    prompt_tokens: list[str] = field(default_factory=list, repr=False)
    text_override: str | None = None
    visible_override: int | None = None
    tool_calls: list[ToolCall] | None = None
    stop_sequence: str | None = None
    others: list["Plan"] | None = None

    @property
    def text(self) -> str:
        if self.text_override is not None:
            return self.text_override
        return " ".join(self.words)

    @property
    def visible_tokens(self) -> int:
        """Visible output tokens of this choice (text or JSON, plus tool-call arguments)."""
        return len(self.words) if self.visible_override is None else self.visible_override

    @property
    def output_tokens(self) -> int:
        """Billed output tokens: every choice's visible and reasoning tokens."""
        own = (len(self.words) if self.visible_override is None else self.visible_override) + self.reasoning_tokens
        if self.others:
            own += sum(o.output_tokens for o in self.others)
        return own

    @property
    def choices(self) -> list["Plan"]:
        return [self] + (self.others or [])

    @property
    def all_reasoning_tokens(self) -> int:
        return self.reasoning_tokens + sum(o.reasoning_tokens for o in self.others or [])

    def usage(self) -> Usage:
        reasoning = self.reasoning_tokens if self.others is None else self.all_reasoning_tokens
        return Usage(self.input_tokens, self.cached_tokens, self.output_tokens, reasoning)


def _truncate(plan: Plan, limit: int) -> None:
    """Cut a JSON/text answer to ``limit`` tokens (what a max-tokens stop does): finish ``length``."""
    text = plan.text
    total = max(1, plan.visible_tokens)
    keep = int(len(text) * limit / total)
    while keep > 0 and count_tokens(text[:keep]) > limit:
        keep -= max(1, keep // 20)
    plan.text_override = text[:max(0, keep)]
    plan.visible_override = count_tokens(plan.text_override)
    plan.finish = "length"


def _apply_stop(plan: Plan, stops: tuple[str, ...]) -> None:
    """End the text before the first stop sequence it contains (finish ``stop_sequence``)."""
    text = plan.text
    at, hit = -1, None
    for s in stops:
        if s:
            i = text.find(s)
            if i >= 0 and (at < 0 or i < at):
                at, hit = i, s
    if hit is None:
        return
    plan.text_override = text[:at]
    plan.visible_override = count_tokens(plan.text_override)
    plan.words = []
    plan.finish = "stop_sequence"
    plan.stop_sequence = hit


def text_chunks(plan: Plan, n_chunks: int = 8) -> list[str]:
    """The visible text of ``plan`` in about ``n_chunks`` stream deltas that concatenate to it."""
    if plan.text_override is None:
        words = plan.words
        if not words:
            return []
        size = max(1, math.ceil(len(words) / max(1, n_chunks)))
        return [("" if i == 0 else " ") + " ".join(words[i:i + size]) for i in range(0, len(words), size)]
    text = plan.text
    if not text:
        return []
    size = max(1, math.ceil(len(text) / max(1, n_chunks)))
    return [text[i:i + size] for i in range(0, len(text), size)]


class Engine:
    """Shared state of one emulator: knobs, clock, capacity, caches, ledger, seeded draws."""

    N_DRAWS = 10

    def __init__(self, knobs: Knobs, clock: ScaledClock, seed: int = 0, profile: str = "custom") -> None:
        self.knobs = knobs
        self.profile = profile
        self.clock = clock
        self.seed = seed
        self.catalog = default_catalog()
        self.ledger = Ledger()
        self.scheduler = FlexScheduler(knobs, clock, seed)
        self.cache = PrefixCache(knobs.cache_min_tokens, knobs.cache_block_tokens, knobs.cache_lru_size)
        self._draws = random.Random(f"decide:{seed}")
        self._seq = 0
        self._windows: dict[str, tuple[int, int, int]] = {}   # key -> (minute, requests, tokens)
        self._prefix_cache: dict[str, list[str]] = {}

    # -- control ---------------------------------------------------------------------------
    def set_knobs(self, knobs: Knobs, profile: str | None = None) -> None:
        self.knobs = knobs
        if profile:
            self.profile = profile
        self.scheduler.set_knobs(knobs)
        self.cache.min_tokens = knobs.cache_min_tokens
        self.cache.block_tokens = max(1, knobs.cache_block_tokens)
        self.cache.lru_size = knobs.cache_lru_size

    def next_id(self) -> tuple[int, str]:
        self._seq += 1
        return self._seq, f"{self._seq:06d}{self._draws.getrandbits(40):010x}"

    # -- planning ------------------------------------------------------------------------------
    def plan(self, req: GenRequest) -> Plan:
        """Deterministic output for this request (seed + request), before prompt caching."""
        if req.seed is None and not req.prompt_prefix:
            rng = request_rng(self.seed, req.provider, req.model_wire, req.prompt_text, req.max_tokens,
                              req.reasoning, req.reasoning_scale)
        else:
            rng = request_rng(self.seed, req.provider, req.model_wire, req.prompt_text, req.max_tokens,
                              req.reasoning, req.reasoning_scale, req.seed, req.prompt_prefix)
        if req.output is not None or req.n > 1 or req.stop:
            return self._plan_rich(req, rng)
        tokens = tokenize(req.prompt_text)
        if req.prompt_prefix:  # tools declared but no structured output asked for (tool_choice none)
            tokens = join_tokens(self._prefix_tokens(req.prompt_prefix), tokens)
        visible, reasoning = self._draw(req, rng)
        if req.no_output:
            visible = reasoning = 0
        finish = "stop"
        if req.max_tokens is not None:
            cap = max(1, req.max_tokens)
            reasoning = min(reasoning, cap // 2)
            if visible > cap - reasoning:
                visible = max(0, cap - reasoning)
                finish = "length"
        words = generate_words(rng, visible)
        plan = Plan(words, reasoning, len(tokens) + req.prompt_overhead, 0, finish, 0.0, tokens)
        plan.service_s = self.service_time(req, plan)
        return plan

    def _draw(self, req: GenRequest, rng: random.Random) -> tuple[int, int]:
        """(visible, reasoning) lengths of one answer, before any max-tokens cap."""
        k = self.knobs
        mu = math.log(max(1, k.output_tokens_median))
        visible = int(round(math.exp(rng.gauss(mu, k.output_tokens_sigma)))) if k.output_tokens_sigma > 0 \
            else k.output_tokens_median
        visible = max(1, min(visible, k.output_tokens_max))
        reasoning = 0
        if req.reasoning and req.reasoning_scale > 0:
            reasoning = int(round(visible * k.reasoning_ratio * req.reasoning_scale * rng.uniform(0.5, 1.5)))
        return visible, reasoning

    def _plan_rich(self, req: GenRequest, rng: random.Random) -> Plan:
        """Plan for structured output, tools, ``n`` choices or stop sequences."""
        tokens = join_tokens(self._prefix_tokens(req.prompt_prefix), tokenize(req.prompt_text))
        choices = [self._choice(req, rng) for _ in range(max(1, req.n))]
        plan = choices[0]
        plan.input_tokens = len(tokens) + req.prompt_overhead
        plan.prompt_tokens = tokens
        plan.others = choices[1:] or None
        plan.service_s = self.service_time(req, plan)
        return plan

    def _prefix_tokens(self, prefix: str) -> Sequence[str]:
        """Tokens of a tools/schema prefix; a pipeline sends the same one on every request, so cache it."""
        if not prefix:
            return []
        hit = self._prefix_cache.get(prefix)
        if hit is None:
            if len(self._prefix_cache) >= 256:
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            hit = self._prefix_cache[prefix] = tokenize(prefix)
        return hit

    def _choice(self, req: GenRequest, rng: random.Random) -> Plan:
        visible, reasoning = self._draw(req, rng)
        cap = max(1, req.max_tokens) if req.max_tokens is not None else None
        if cap is not None:
            reasoning = min(reasoning, cap // 2)
        spec = req.output
        tool = decide(spec, rng, self.knobs.tool_call_rate) if spec is not None else None
        if tool is not None:
            call = tool_call(tool, rng)
            overhead = count_tokens(call.name) + 3
            args = call.arguments_json
            n_args = count_tokens(args)
            plan = Plan([], reasoning, 0, 0, "tool_calls", 0.0, text_override=args, visible_override=n_args,
                        tool_calls=[call])
            if cap is not None and overhead + n_args > cap - reasoning:
                _truncate(plan, max(0, cap - reasoning - overhead))       # a call cut by max tokens
                call.cut = plan.text_override
            plan.text_override = ""
            plan.visible_override = (plan.visible_override or 0) + overhead
            return plan
        capped = cap is not None and visible > cap - reasoning
        if capped:
            visible = max(0, cap - reasoning)
        if spec is not None and spec.wants_json:
            text = json_text(spec, rng, generate_words(rng, min(visible, 40)) if spec.json_schema is None else [])
            plan = Plan([], reasoning, 0, 0, "stop", 0.0, text_override=text, visible_override=count_tokens(text))
            if cap is not None and plan.visible_tokens > cap - reasoning:
                _truncate(plan, max(0, cap - reasoning))
        else:
            plan = Plan(generate_words(rng, visible), reasoning, 0, 0, "length" if capped else "stop", 0.0)
        if req.stop:
            _apply_stop(plan, req.stop)
        return plan

    def service_time(self, req: GenRequest, plan: Plan) -> float:
        k = self.knobs
        s = k.ttft_s + k.per_input_token_s * (plan.input_tokens - plan.cached_tokens) \
            + k.per_output_token_s * plan.output_tokens
        if req.served_tier == "flex":
            s *= k.flex_slowdown
        return s * k.latency_scale

    def apply_cache(self, req: GenRequest, plan: Plan) -> None:
        if req.cache_eligible:
            plan.cached_tokens = self.cache.lookup_and_store(f"{req.provider}/{req.model_wire}",
                                                             plan.prompt_tokens)
            plan.service_s = self.service_time(req, plan)
        plan.prompt_tokens = []

    # -- rate limits -----------------------------------------------------------------------------
    def _rate_check(self, req: GenRequest, tokens: int) -> tuple[bool, float, dict[str, str]]:
        """Count this request in the current emulated minute; (allowed, retry_after, headers)."""
        k = self.knobs
        now = self.clock.now()
        minute = int(now // 60)
        key = f"{req.provider}/{req.model_wire}"
        m, n, t = self._windows.get(key, (minute, 0, 0))
        if m != minute:
            n, t = 0, 0
        reset = 60.0 - (now % 60.0)
        allowed = n + 1 <= k.rpm_limit and t + tokens <= k.tpm_limit
        if allowed:
            n, t = n + 1, t + tokens
        self._windows[key] = (minute, n, t)
        headers = {
            "x-ratelimit-limit-requests": str(k.rpm_limit),
            "x-ratelimit-limit-tokens": str(k.tpm_limit),
            "x-ratelimit-remaining-requests": str(max(0, k.rpm_limit - n)),
            "x-ratelimit-remaining-tokens": str(max(0, k.tpm_limit - t)),
            "x-ratelimit-reset-requests": f"{reset:.3f}s",
            "x-ratelimit-reset-tokens": f"{reset:.3f}s",
        }
        return allowed, reset, headers

    # -- admission ----------------------------------------------------------------------------------
    async def begin(self, req: GenRequest, gone: "GoneSignal | None" = None,
                    ids: tuple[int, str] | None = None) -> "Session":
        """Run everything before service; raise :class:`EmuError` on refusal. ``ids``: the
        request's (seq, id) from :meth:`next_id` when it was named before admission (a background
        response's id is answered at once)."""
        k = self.knobs
        seq, rid = ids if ids is not None else self.next_id()
        u = [self._draws.random() for _ in range(self.N_DRAWS)]
        t0 = self.clock.now()
        sess = Session(self, req, rid, seq, t0, u)
        if u[0] < k.fault_slow_first_byte_p and k.slow_first_byte_s > 0:
            await self.clock.asleep(k.slow_first_byte_s)
        plan = self.plan(req)
        sess.plan = plan
        if u[1] < k.fault_quota_p:
            raise EmuError("quota", "You exceeded your current quota, please check your plan and billing details.",
                           outcome="fault:quota")
        allowed, reset, headers = self._rate_check(req, plan.input_tokens + plan.output_tokens)
        sess.rate_headers = headers
        if u[2] < k.fault_rate_limit_p:
            raise EmuError("rate_limit", "Rate limit reached (injected).", retry_after=k.rate_limit_retry_after_s,
                           outcome="fault:rate_limit", detail={"headers": headers, "scope": "requests"})
        if not allowed:
            raise EmuError("rate_limit", f"Rate limit reached for {req.model_wire}: "
                           f"Limit {k.rpm_limit} requests / {k.tpm_limit} tokens per min.",
                           retry_after=math.ceil(reset), outcome="rate_limited",
                           detail={"headers": headers, "scope": "tokens"})
        if u[3] < k.fault_500_p:
            raise EmuError("server_500", "The server had an error while processing your request.",
                           outcome="fault:500")
        if u[4] < k.fault_502_p:
            raise EmuError("server_502", "Bad gateway.", outcome="fault:502")
        if req.provider == "anthropic":
            rho = self.scheduler.load(req.provider).rho(t0)
            if u[5] < k.anthropic_overload_p or rho >= k.overload_rho:
                raise EmuError("overloaded", "Overloaded", outcome="overloaded")
        if req.served_tier == "flex":
            max_wait = k.w_max_s
            if req.server_timeout_s is not None:
                max_wait = min(max_wait, req.server_timeout_s)
            out = await self.scheduler.acquire(req.entry, rid, plan.service_s, max_wait, u[6], gone)
            sess.queue_wait_s = out.wait_s
            if out.verdict == "shed":
                raise EmuError("shed", "Flex capacity is currently unavailable; try again later.", u=u[7])
            if out.verdict == "timeout":
                bound = "server" if (req.server_timeout_s is not None and req.server_timeout_s < k.w_max_s) \
                    else "w_max"
                raise EmuError("timeout", "Timed out waiting for flex capacity.", u=u[7],
                               detail={"bound": bound, "waited_s": out.wait_s})
            if out.verdict == "gone":
                raise EmuError("gone", "client went away while queued", outcome="client_gone_queued")
            sess.holding = True
            sess.preempt = self.scheduler.preempt_future(rid)
        self.apply_cache(req, plan)
        sess.dispatched_at = self.clock.now()
        sess.fault_reset = u[8] < k.fault_reset_p
        sess.fault_truncate = u[9] < k.fault_truncate_p
        return sess

    def record_error(self, req: GenRequest | None, err: EmuError, status: int, *, provider: str,
                     model_wire: str, entry: ModelEntry | None, tier: str | None, request_id: str,
                     item: str | None, wait_s: float = 0.0) -> None:
        self.ledger.add(ts=self.clock.now(), provider=provider, model=entry, model_wire=model_wire,
                        requested_tier=tier, served_tier=None, outcome=err.outcome, status=status,
                        usage=None, request_id=request_id, item=item, queue_wait_s=wait_s, billed=False)


class Session:
    """One admitted request: its plan, its slot (if flex) and its single ledger row."""

    def __init__(self, engine: Engine, req: GenRequest, rid: str, seq: int, t0: float, u: list[float]) -> None:
        self.engine = engine
        self.req = req
        self.rid = rid
        self.seq = seq
        self.t0 = t0
        self.u = u
        self.plan: Plan | None = None
        self.queue_wait_s = 0.0
        self.dispatched_at = t0
        self.holding = False
        self.preempt: asyncio.Future | None = None
        self.rate_headers: dict[str, str] = {}
        self.fault_reset = False
        self.fault_truncate = False
        self.completed: bool | None = None     # True once the ledger row is written
        self._row: int | None = None
        self.request_id = rid

    @property
    def clock(self) -> ScaledClock:
        return self.engine.clock

    async def wait(self, seconds: float, gone: GoneSignal | None = None) -> None:
        """Spend ``seconds`` of service; survive preemption (requeue) or raise (fail)."""
        remaining = seconds
        while remaining > 0:
            if self.preempt is None:
                await self.clock.asleep(remaining)
                return
            start = self.clock.now()
            await asyncio.wait({self.preempt}, timeout=self.clock.wall(remaining))
            if not self.preempt.done():
                return
            await self._on_preempted(gone)
            remaining = seconds    # decoded work of this segment is lost
            _ = start

    async def _on_preempted(self, gone: GoneSignal | None) -> None:
        k = self.engine.knobs
        sched = self.engine.scheduler
        self.holding = False
        if k.preempt_mode == "fail" and self.u[7] < k.p_fail_on_preempt:
            raise EmuError("preempted", "The request was preempted by higher-priority traffic.",
                           outcome="preempted")
        out = await sched.requeue(self.req.entry, self.rid, k.w_max_s, gone)
        self.queue_wait_s += out.wait_s
        if out.verdict != "dispatched":
            raise EmuError("timeout" if out.verdict == "timeout" else "gone",
                           "Timed out waiting for flex capacity after preemption.",
                           outcome="preempted" if out.verdict == "timeout" else "client_gone_queued")
        self.holding = True
        self.preempt = sched.preempt_future(self.rid)

    async def serve(self, gone: GoneSignal | None = None) -> None:
        """Whole service time (non-streaming)."""
        assert self.plan is not None
        await self.wait(self.plan.service_s, gone)

    async def paced(self, items: list[Any], gone: GoneSignal | None = None) -> AsyncIterator[Any]:
        """Yield ``items`` (stream deltas of any kind) paced over the service time.

        The first arrives after the time to first token (prefill and reasoning), the rest
        evenly over the remaining decode time.
        """
        assert self.plan is not None
        total = self.plan.service_s
        k = self.engine.knobs
        first = min(total, (k.ttft_s + k.per_output_token_s * self.plan.reasoning_tokens) * k.latency_scale)
        per = (total - first) / max(1, len(items))
        await self.wait(first + per, gone)
        for i, it in enumerate(items):
            if i:
                await self.wait(per, gone)
            yield it

    def pieces(self, n_chunks: int, gone: GoneSignal | None = None) -> AsyncIterator[list[str]]:
        """The visible words in about ``n_chunks`` groups, paced like :meth:`paced` (model-native
        streams of Bedrock InvokeModel use it)."""
        assert self.plan is not None
        words = self.plan.words
        n_chunks = max(1, min(n_chunks, len(words) or 1))
        size = max(1, math.ceil(len(words) / n_chunks)) if words else 1
        return self.paced([words[i:i + size] for i in range(0, len(words), size)] or [[]], gone)

    def release(self) -> None:
        if self.holding:
            self.engine.scheduler.release(self.req.entry, self.rid)
            self.holding = False
        elif self.req.served_tier == "flex":
            self.engine.scheduler.pool(self.req.entry).cancel(self.rid)

    def complete(self, outcome: str, status: int, *, billed: bool = True,
                 request_id: str | None = None) -> None:
        """Release the slot and write the ledger row (once; the row is :attr:`row`)."""
        if self.completed is None:
            self.release()
            now = self.clock.now()
            req = self.req
            self._row = self.engine.ledger.add(
                ts=now, provider=req.provider, model=req.entry, model_wire=req.model_wire, requested_tier=req.tier,
                served_tier=req.served_tier, outcome=outcome, status=status,
                usage=self.plan.usage() if self.plan else None, request_id=request_id or self.request_id,
                item=req.item, queue_wait_s=self.queue_wait_s, latency_s=now - self.t0, billed=billed)
            self.completed = True

    @property
    def row(self) -> dict[str, Any]:
        """This session's ledger row (built on demand; ``{}`` before :meth:`complete`)."""
        if self._row is None:
            return {}
        led = self.engine.ledger
        with led._lock:
            return led._build(self._row)

    def fail(self, err: EmuError, status: int) -> None:
        """End with an error after admission (e.g. preempted): nothing billed."""
        self.complete(err.outcome, status, billed=False)
