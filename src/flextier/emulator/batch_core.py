"""The batch tier of the emulator: one queue and turnaround model shared by four dialects.

Why one core: OpenAI ``/v1/batches``, Anthropic Message Batches, Gemini
``batchGenerateContent`` and Bedrock ``CreateModelInvocationJob`` differ in shapes and
status names, but behave alike underneath (docs/capacity-model.md §4): a batch waits
for spare capacity *below* the flex lane, so it runs fast at night and can sit for
hours at peak; after ``t_age_s`` (10 h) it is promoted to standard priority so it
still meets the 24 h window; whatever is unfinished at the end of the window expires,
unbilled, while finished lines are delivered (partial output) and billed at the batch
tier. The wire modules only parse requests and render results.

Model (all times emulated seconds, :class:`~.clock.ScaledClock`):

* ``validating`` for ``validate_s``; a batch whose input failed validation ends ``failed``.
* ``in_progress``: lines are served one after another in a seeded random order (results
  are not in input order, as with the real APIs). The batch's service rate, in slot
  seconds per second, is ``slots * parallelism * max(0, theta - rho_s(t))`` with
  ``theta = theta_batch`` (0.5) before aging and 1.0 after; ``rho_s`` is the emulator's
  own seeded standard load, so batches see the same day as flex does. A line needs its
  generation service time (the same plan the online API would produce).
* when the last line is done: ``finalizing`` for ``finalize_s``, then ``completed``.
* cancel: ``cancelling`` for ``cancel_s`` (no more lines start), then ``cancelled``.
* at ``created + window``: unfinished lines expire. A seeded share ``expire_p`` of batches
  is "doomed" (stalls part-way and expires, as real batches occasionally do), and the
  ``stall_at`` knob forces that for every batch (tests of partial output).

Progress is integrated lazily and deterministically (piecewise constant per emulated
minute), on every API call and by a small background driver, so the ledger gets each
line's row at the emulated time the line finished.

Billing (the emulator's :class:`~.ledger.Ledger`): a finished line is billed at the
batch tier through ``flextier.cost.price_usage``; errored, expired and cancelled lines
get a row with cost 0.
"""
from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import string
import weakref
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..catalog import ModelEntry
from ..cost import Usage
from .engine import Engine, Session
from .http import json_response, read_json, BadJSON
from .wire import Call

__all__ = ["BatchKnobs", "BatchEngine", "BatchJob", "BatchLine", "batch_engine", "control_routes",
           "rfc3339", "TERMINAL"]

MINUTE = 60.0
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})


@dataclass(frozen=True)
class BatchKnobs:
    """Tunables of the batch tier. Defaults follow docs/capacity-model.md §4."""

    validate_s: float = 60.0        # time in "validating" before work can start
    finalize_s: float = 30.0        # time in "finalizing" after the last line
    cancel_s: float = 20.0          # time in "cancelling" before "cancelled"
    parallelism: float = 1.0        # share of the pool's slots a batch may use (x slots x headroom)
    t_age_s: float = 36_000.0       # after this long a batch runs at standard priority (theta 1.0)
    window_s: float = 0.0           # completion window; 0 = provider default (24 h; Bedrock: the job timeout)
    expire_p: float = 0.005         # share of batches that stall part-way and expire (seeded)
    stall_at: float = -1.0          # >= 0: every new batch stalls after this fraction of lines (forced expiry)
    line_error_p: float = 0.0       # chance a line fails with a server error (seeded, not billed)
    fail_keys: str = ""             # comma-separated item keys that always fail with a server error
    bedrock_min_records: int = 1    # Bedrock's minimum records per job (AWS: 100); 1 keeps tests small
    s3_endpoint_url: str = ""       # Bedrock jobs' S3: "" = the emulator's own (/s3); else another on loopback
    s3_region: str = "us-east-1"
    submit_error: int = 0           # Bedrock: answer CreateModelInvocationJob with this 4xx/5xx (0: accept)

    def replace(self, **changes: Any) -> "BatchKnobs":
        """A copy with ``changes`` applied (strings from HTTP/CLI are coerced); unknown names are errors."""
        types = {f.name: f.type for f in fields(self)}
        out: dict[str, Any] = {}
        for k, v in changes.items():
            if k not in types:
                raise ValueError(f"unknown batch knob {k!r} (known: {', '.join(types)})")
            t = types[k] if isinstance(types[k], str) else getattr(types[k], "__name__", "")
            try:
                out[k] = {"float": float, "int": lambda x: int(float(x)), "str": str}[t](v)
            except (TypeError, ValueError):
                raise ValueError(f"batch knob {k!r} expects {t}, got {v!r}") from None
        new = dataclasses.replace(self, **out)
        for f in fields(new):
            v = getattr(new, f.name)
            if isinstance(v, (int, float)) and v < 0 and f.name != "stall_at":
                raise ValueError(f"batch knob {f.name} must be >= 0")
            if isinstance(v, (int, float)) and not (abs(v) <= 1e10):          # NaN, inf, absurd
                raise ValueError(f"batch knob {f.name} must be a finite number at most 1e10, got {v!r}")
        if new.parallelism > 1000 or new.bedrock_min_records > 50_000:
            raise ValueError("batch knob parallelism must be at most 1000 and bedrock_min_records at most 50000")
        if new.submit_error and not 400 <= new.submit_error <= 599:
            raise ValueError("batch knob submit_error must be 0 (accept) or an HTTP error status (400-599)")
        if not 0 <= new.expire_p <= 1 or not 0 <= new.line_error_p <= 1:
            raise ValueError("probabilities must be in [0, 1]")
        return new

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def failing(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.fail_keys.split(",") if k.strip())


def rfc3339(ts: float | None) -> str | None:
    """Emulated POSIX seconds as the RFC 3339 text Anthropic and Google use."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Req:
    """A stand-in for the Starlette request the online parsers look at (headers only)."""

    headers: dict[str, str] = {}


@dataclass
class BatchLine:
    """One request of a batch and, once served, its outcome."""

    idx: int                          # position in the input
    key: str                          # custom_id / metadata.key / recordId
    body: dict[str, Any]              # the request body as submitted
    call: Call | None = None          # parsed by the online dialect (None: the line is invalid)
    invalid: tuple[int, dict[str, Any]] | None = None   # (status, provider error body) for invalid lines
    work: float = 0.0                 # slot-seconds of service
    state: str = "pending"            # pending | ok | error | expired | cancelled
    done_at: float | None = None
    response: dict[str, Any] | None = None
    usage: Usage | None = None
    error: tuple[int, dict[str, Any]] | None = None    # (status, provider error body)
    rid: str = ""


@dataclass
class BatchJob:
    """One provider batch: its lines, where it is in the model, and provider extras in ``meta``."""

    id: str
    provider: str
    entry: ModelEntry | None
    created_at: float
    window_s: float
    lines: list[BatchLine]
    order: list[int]
    state: str = "validating"
    t: float = 0.0                    # progress is integrated up to this time
    pos: int = 0                      # lines done, in ``order``
    progress: float = 0.0             # slot-seconds spent on the current line
    stall_after: int | None = None
    failure: list[dict[str, Any]] | None = None
    times: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    on_end: Callable[["BatchJob"], Awaitable[None]] | None = None
    end_task: "asyncio.Task[None] | None" = None
    rng: random.Random = field(default_factory=random.Random)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def counts(self) -> dict[str, int]:
        c = {"total": len(self.lines), "ok": 0, "error": 0, "expired": 0, "cancelled": 0, "pending": 0}
        for ln in self.lines:
            c[ln.state] += 1
        return c

    def usage(self) -> Usage:
        u = Usage()
        for ln in self.lines:
            if ln.state == "ok" and ln.usage is not None:
                u = u + ln.usage
        return u


class BatchEngine:
    """All batches of one emulator, advanced against the emulator's clock and load."""

    def __init__(self, engine: Engine, knobs: BatchKnobs | None = None) -> None:
        self.engine = engine
        self.knobs = knobs or BatchKnobs()
        self.jobs: dict[str, BatchJob] = {}
        self.files: dict[str, dict[str, Any]] = {}      # OpenAI / Gemini file store: id -> {meta, data}
        self._ids = random.Random(f"batch-ids:{engine.seed}")
        self._n = 0
        self._driver: asyncio.Task[None] | None = None

    # -- ids ---------------------------------------------------------------------------------
    def new_id(self, n: int = 24, alphabet: str = string.ascii_lowercase + string.digits) -> str:
        return "".join(self._ids.choice(alphabet) for _ in range(n))

    # -- creating ------------------------------------------------------------------------------
    def window_for(self, default_s: float) -> float:
        return self.knobs.window_s if self.knobs.window_s > 0 else default_s

    def create(self, *, job_id: str, provider: str, entry: ModelEntry | None, lines: list[BatchLine],
               window_s: float, meta: dict[str, Any] | None = None,
               failure: list[dict[str, Any]] | None = None,
               on_end: Callable[[BatchJob], Awaitable[None]] | None = None) -> BatchJob:
        """Register a batch whose lines were parsed by the caller; it starts in ``validating``."""
        now = self.engine.clock.now()
        self._n += 1
        rng = random.Random(f"batch:{self.engine.seed}:{self._n}:{job_id}")
        order = list(range(len(lines)))
        rng.shuffle(order)
        k = self.knobs
        stall: int | None = None
        if k.stall_at >= 0:
            stall = int(math.floor(min(1.0, k.stall_at) * len(lines)))
        elif rng.random() < k.expire_p:
            stall = int(rng.random() * len(lines))
        for ln in lines:
            if ln.call is not None:
                ln.work = max(self.engine.plan(ln.call.req).service_s, 1e-3)
            else:
                ln.work = 1e-3
        job = BatchJob(id=job_id, provider=provider, entry=entry, created_at=now, window_s=window_s, lines=lines,
                       order=order, t=now, stall_after=stall, failure=failure, meta=dict(meta or {}),
                       on_end=on_end, rng=rng)
        self.jobs[job_id] = job
        self._ensure_driver()
        return job

    # -- control -----------------------------------------------------------------------------------
    def cancel(self, job: BatchJob) -> None:
        """Start cancelling: no new line starts; the batch ends ``cancelled`` after ``cancel_s``."""
        self.advance(job)
        if job.terminal or job.state == "cancelling":
            return
        now = self.engine.clock.now()
        job.state = "cancelling"
        job.times["cancelling_at"] = now
        job.t = now
        self._ensure_driver()

    async def settle(self, job: BatchJob) -> None:
        """Bring ``job`` up to now and wait for its end-of-batch output (S3, files) to be written."""
        self.advance(job)
        if job.end_task is not None and not job.end_task.done():
            await asyncio.shield(job.end_task)

    # -- the model -----------------------------------------------------------------------------------
    def rate(self, job: BatchJob, t: float) -> float:
        """Slot-seconds per second available to ``job`` at time ``t`` (constant within the minute)."""
        k = self.engine.knobs
        provider = job.provider
        rho = self.engine.scheduler.load(provider).rho(t)
        theta = 1.0 if (t - job.created_at) >= self.knobs.t_age_s else k.theta_batch
        return k.slots * self.knobs.parallelism * max(0.0, theta - rho)

    def advance(self, job: BatchJob | None = None, now: float | None = None) -> None:
        """Integrate every open batch (or one) up to ``now``."""
        now = self.engine.clock.now() if now is None else now
        for j in ([job] if job is not None else list(self.jobs.values())):
            if not j.terminal:
                self._advance(j, now)

    def _advance(self, job: BatchJob, now: float) -> None:
        bk = self.knobs
        guard = 0
        while not job.terminal and job.t < now:
            guard += 1
            if guard > 1_000_000:  # pragma: no cover - a bug guard, never expected
                raise RuntimeError("batch model did not converge")
            if job.state == "validating":
                t_end = job.created_at + bk.validate_s
                if now < t_end:
                    job.t = now
                    return
                job.t = t_end
                if job.failure:
                    self._end(job, "failed", t_end)
                    return
                job.state = "in_progress"
                job.times["in_progress_at"] = t_end
                continue
            if job.state == "cancelling":
                t_end = job.times["cancelling_at"] + bk.cancel_s
                if now < t_end:
                    job.t = now
                    return
                self._close_remaining(job, "cancelled", t_end)
                self._end(job, "cancelled", t_end)
                return
            if job.state == "finalizing":
                t_end = job.times["finalizing_at"] + bk.finalize_s
                if now < t_end:
                    job.t = now
                    return
                self._end(job, "completed", t_end)
                return
            # in_progress
            expiry = job.created_at + job.window_s
            if job.t >= expiry:
                self._close_remaining(job, "expired", expiry)
                self._end(job, "expired", expiry)
                return
            seg_end = min(now, (math.floor(job.t / MINUTE) + 1) * MINUTE, expiry)
            rate = self.rate(job, math.floor(job.t / MINUTE) * MINUTE)   # constant per minute: path-independent
            t = job.t
            limit = len(job.order) if job.stall_after is None else min(len(job.order), job.stall_after)
            while job.pos < limit and rate > 0:
                ln = job.lines[job.order[job.pos]]
                need = ln.work - job.progress
                if t + need / rate <= seg_end:
                    t += need / rate
                    job.progress = 0.0
                    self._serve_line(job, ln, t)
                    job.pos += 1
                else:
                    job.progress += rate * (seg_end - t)
                    t = seg_end
                    break
            if job.pos >= len(job.order):
                job.state = "finalizing"
                job.times["finalizing_at"] = t
                job.t = t
                continue
            job.t = seg_end

    def _serve_line(self, job: BatchJob, ln: BatchLine, t: float) -> None:
        """A line finished at ``t``: its result, and one ledger row."""
        led = self.engine.ledger
        ln.done_at = t
        ln.rid = self.new_id(20)
        entry = ln.call.req.entry if ln.call is not None else job.entry
        model_wire = ln.call.req.model_wire if ln.call is not None else (job.entry.model_id if job.entry else "")
        if ln.call is None:
            assert ln.invalid is not None
            ln.state, ln.error = "error", ln.invalid
            led.record(ts=t, provider=job.provider, model=entry, model_wire=model_wire, requested_tier="batch",
                       served_tier=None, outcome="batch_invalid", status=ln.invalid[0], usage=None,
                       request_id=ln.rid, item=ln.key, latency_s=t - job.created_at, billed=False)
            return
        if ln.key in self.knobs.failing() or job.rng.random() < self.knobs.line_error_p:
            ln.state = "error"
            ln.error = (500, {})     # the wire module renders its own server-error body
            led.record(ts=t, provider=job.provider, model=entry, model_wire=model_wire, requested_tier="batch",
                       served_tier=None, outcome="batch_line_error", status=500, usage=None, request_id=ln.rid,
                       item=ln.key, latency_s=t - job.created_at, billed=False)
            return
        sess = Session(self.engine, ln.call.req, ln.rid, 0, t, [1.0] * Engine.N_DRAWS)
        sess.plan = self.engine.plan(ln.call.req)
        ln.response = ln.call.render(sess)
        ln.usage = sess.plan.usage()
        ln.state = "ok"
        led.record(ts=t, provider=job.provider, model=entry, model_wire=model_wire, requested_tier="batch",
                   served_tier="batch", outcome="ok", status=200, usage=ln.usage, request_id=ln.rid, item=ln.key,
                   queue_wait_s=0.0, latency_s=t - job.created_at, billed=True)

    def _close_remaining(self, job: BatchJob, state: str, t: float) -> None:
        led = self.engine.ledger
        for i in job.order[job.pos:]:
            ln = job.lines[i]
            if ln.state == "pending":
                ln.state = state
                ln.done_at = t
                led.record(ts=t, provider=job.provider, model=job.entry,
                           model_wire=job.entry.model_id if job.entry else "", requested_tier="batch",
                           served_tier=None, outcome=f"batch_{state}", status=0, usage=None, request_id="",
                           item=ln.key, latency_s=t - job.created_at, billed=False)

    def _end(self, job: BatchJob, state: str, t: float) -> None:
        job.state = state
        job.t = t
        job.times[f"{state}_at"] = t
        if job.on_end is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                job.end_task = loop.create_task(job.on_end(job))

    # -- background driver ---------------------------------------------------------------------------
    def _ensure_driver(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())

    async def _drive(self) -> None:
        """Keep open batches moving so the ledger and outputs appear without anyone polling."""
        clock = self.engine.clock
        while any(not j.terminal for j in self.jobs.values()):
            self.advance()
            await asyncio.sleep(min(0.05, max(0.005, clock.wall(MINUTE))))

    def snapshot(self) -> dict[str, Any]:
        self.advance()
        return {"knobs": self.knobs.as_dict(),
                "batches": [{"id": j.id, "provider": j.provider, "state": j.state, **j.counts(),
                             "created_at": j.created_at, **j.times} for j in self.jobs.values()]}

    async def aclose(self) -> None:
        if self._driver is not None:
            self._driver.cancel()


# -- registry and routes -------------------------------------------------------------------------------
_ENGINES: "weakref.WeakKeyDictionary[Engine, BatchEngine]" = weakref.WeakKeyDictionary()


def batch_engine(engine: Engine) -> BatchEngine:
    """The batch tier of an emulator engine (created on first use)."""
    be = _ENGINES.get(engine)
    if be is None:
        be = _ENGINES[engine] = BatchEngine(engine)
    return be


def parse_with(builder: Callable[..., Call], *args: Any) -> tuple[Call | None, tuple[int, dict[str, Any]] | None]:
    """Parse one line with an online dialect's builder; a rejected line keeps its error response."""
    from .wire import WireError
    import json as _json
    from .tokenizer import prompt_overhead
    try:
        call = builder(*args)
        call.req.prompt_overhead += prompt_overhead(call.req.provider, args[0])   # as online
        return call, None
    except WireError as exc:
        try:
            body = _json.loads(bytes(exc.response.body))
        except ValueError:
            body = {"message": bytes(exc.response.body).decode("utf-8", "replace")}
        return None, (exc.response.status_code, body)


def control_routes(be: BatchEngine) -> list[BaseRoute]:
    """``GET/POST /_emulator/batch``: read or change the batch knobs while the emulator runs."""

    async def get(request: Request) -> Response:
        return json_response(be.snapshot())

    async def post(request: Request) -> Response:
        try:
            data = await read_json(request)
            knobs = data.get("knobs", data)
            be.knobs = be.knobs.replace(**knobs)
        except (BadJSON, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"knobs": be.knobs.as_dict()})

    return [Route("/_emulator/batch", get, methods=["GET"]), Route("/_emulator/batch", post, methods=["POST"])]
