"""One call through the gateway: admit, reserve, forward through the engine, answer, record.

Why this shape: the gateway must behave exactly like ``flextier.wrap`` (issue 14), so it has no
policy of its own. A native request (OpenAI Chat/Responses, Gemini generateContent, Anthropic
Messages) is forwarded as an ``httpx`` request through :func:`flextier.intercept.async_transport`,
the same engine ``wrap`` puts under an SDK: the provider's dialect recognises it, the one retry
loop (:mod:`flextier.policy.fallback`, every decision from :func:`flextier.policy.rules.decide`)
sets the tier per attempt, backs off, falls back before the first byte, and the engine prices
the served tier with :mod:`flextier.cost`. The call's own :class:`~flextier.policy.fallback.Policy`
(key defaults + control headers) rides in the request's extensions
(:data:`flextier.intercept.POLICY_EXTENSION`). A ``provider/model`` name on the OpenAI route goes
through that provider's adapter instead (:mod:`.translate`), under the same loop.

Around that: the key (:mod:`.config`), the body cap, the key's model list and tiers
(:mod:`.controls`), a budget reservation (:mod:`.budgets`) settled with the served cost, and
one record per call in the ledger, the metrics, an OpenTelemetry span and the history.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, AsyncIterator, Callable

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .._loopback import is_loopback_url
from .._types import Attempt, CallResult
from ..catalog import Catalog, ModelEntry, default_catalog
from ..errors import ProviderError, RequestTooLarge, Timeout, UserInputError
from ..intercept import CALL_EXTENSION, HEADERS, POLICY_EXTENSION, async_transport, flextier_headers, info, lookup
from ..policy.budget import estimate_cost, output_bound, prompt_tokens_upper_bound
from ..policy.fallback import Policy, acall_with_policy
from ..providers import get_adapter
from ..providers.anthropic.wire import AnthropicDialect
from ..providers.gemini.wire import GeminiDialect
from ..providers.openai.wire import OpenAIDialect, explicit_tier
from .telemetry import enabled as otel_enabled, record_call as otel_record
from .translate import call_request, chat_chunks, chat_completion
from .budgets import Budgets, Refusal
from .config import PROVIDERS, GatewayConfig, KeyConfig
from .controls import Controls, read_controls
from .errors import error_response, provider_error_response, scrub
from .forward import (presented_key, response_headers, strip_key_query, upstream_headers, upstream_transport,
                      upstream_url)
from .ledger import CallRow, Ledger
from .metrics import Metrics

__all__ = ["Gateway", "Ctx", "CALL_ID_HEADER"]

#: on every call's response (streams included: it leaves with the headers, before the usage):
#: the id to ask ``GET /api/calls/{id}`` for the served tier, attempts and cost (docs/gateway.md)
CALL_ID_HEADER = "x-flextier-call-id"
_RECENT = 10_000        # finished calls answered from memory (the ledger commits in batches)

log = logging.getLogger("flextier.gateway")
SINGLE_USER = "-"


TooLarge = RequestTooLarge  # the gateway's name for it (flextier.errors.RequestTooLarge)


@dataclass
class Ctx:
    """What one call carries from admission to its record."""

    provider: str
    route: str
    key: KeyConfig | None
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    model: str = "unknown"              # catalog name when known
    wire_model: str | None = None
    stream: bool = False
    requested: str = "auto"
    token: Any = None
    shape: str = ""                     # whose error shape the caller reads (its SDK's)
    call_id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))

    def __post_init__(self) -> None:
        self.shape = self.shape or self.provider

    @property
    def key_name(self) -> str:
        return self.key.name if self.key is not None else SINGLE_USER


class Gateway:
    """The gateway's state (config, engine transport, ledger, budgets, metrics) and its call handling."""

    def __init__(self, cfg: GatewayConfig, ledger: Ledger, *, policy: Policy | None = None,
                 catalog: Catalog | None = None, emulated: bool = False,
                 wall: Callable[[], float] = time.time, upstream: str = "auto") -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.catalog = catalog or default_catalog()
        self.base_policy = policy or Policy()
        self.metrics = Metrics()
        self.emulated = emulated
        self.budgets = Budgets({k.name: (k.daily_usd, k.monthly_usd) for k in cfg.keys}, ledger.spent, wall)
        inner = upstream_transport(httpx, upstream)   # aiohttp when installed, else httpx pools
        self.dialects = {"openai": OpenAIDialect(), "gemini": GeminiDialect(), "anthropic": AnthropicDialect()}
        self.transport = async_transport(inner, httpx, list(self.dialects.values()), self.base_policy, self.catalog)
        self.in_flight = 0
        self.started = time.time()
        self._urls: dict[tuple[str, str, str, bool], httpx.URL] = {}
        self._policies: dict[tuple[Controls, bool], Policy] = {}
        self._pending: dict[str, tuple[str, asyncio.Event]] = {}   # call id -> (key name, set when recorded)
        self._recent: dict[str, CallRow] = {}            # call id -> its row, the last _RECENT calls

    async def aclose(self) -> None:
        await self.transport.aclose()

    def _url(self, provider: str, path: str, query: str, key: KeyConfig | None) -> httpx.URL:
        """The parsed upstream URL of a call, kept per (provider, path, query): parsing it was 1% of
        the gateway's CPU per call (docs/gateway.md), and a deployment sees few distinct ones."""
        ck = (provider, path, query, key is None)
        u = self._urls.get(ck)
        if u is None:
            if len(self._urls) > 4096:
                self._urls.clear()
            u = self._urls[ck] = httpx.URL(upstream_url(self.cfg, provider, path, strip_key_query(query, key)))
        return u

    # -- secrets: every configured upstream credential, for scrubbing ----------------------------
    def secrets(self, extra: str | None = None) -> list[str]:
        out = [extra] if extra else []
        for k in self.cfg.keys:
            for p in PROVIDERS:
                c = k.credential(p)
                if c:
                    out.append(c)
        return out

    # -- admission ---------------------------------------------------------------------------------
    def authenticate(self, request: Request, provider: str) -> tuple[KeyConfig | None, Response | None]:
        if self.cfg.single_user:
            return None, None
        k = self.cfg.find_key(presented_key(request.headers, request.query_params))
        if k is None:
            self.metrics.refused.labels(SINGLE_USER, "unauthorized").inc()
            return None, error_response("openai" if provider not in ("gemini", "anthropic") else provider, 401,
                                        "Incorrect or missing gateway API key. Send the key from gateway.toml as "
                                        "'Authorization: Bearer <key>'.", code="invalid_api_key",
                                        err_type="invalid_request_error" if provider == "openai" else None)
        return k, None

    async def read_body(self, request: Request) -> bytes:
        cap = self.cfg.max_body_bytes
        cl = request.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > cap:
            raise TooLarge("request body over the gateway's cap")
        chunks, n = [], 0
        async for c in request.stream():
            n += len(c)
            if n > cap:
                raise TooLarge("request body over the gateway's cap")
            chunks.append(c)
        return b"".join(chunks)

    def _too_large(self, provider: str) -> Response:
        return error_response(provider, 413, f"request body is larger than the gateway's limit of "
                                             f"{self.cfg.max_body_bytes} bytes (max_body_bytes in gateway.toml)")

    def _bad(self, provider: str, msg: str, status: int = 400, code: str | None = None) -> Response:
        return error_response(provider, status, msg, code=code)

    def _tiers_for(self, ctl: Controls, explicit: str | None) -> tuple[str, ...]:
        if explicit is not None:
            return (explicit,)
        if ctl.tier == "flex":
            return ("flex",)
        if ctl.tier in ("standard", "priority"):
            return (ctl.tier,)
        return ("flex", "standard")

    def _estimate(self, entry: ModelEntry, body: dict[str, Any], tiers: tuple[str, ...]) -> Decimal | None:
        from .._types import CallRequest

        bound, _src = output_bound(CallRequest(model=entry, native=body), entry)
        if bound is None:
            return None
        p = prompt_tokens_upper_bound(body)
        costs = [estimate_cost(entry, t, p, bound) for t in tiers]
        if any(c is None for c in costs):
            return None
        return max(costs)  # type: ignore[type-var]

    def admit(self, ctx: Ctx, entry: ModelEntry, body: dict[str, Any], ctl: Controls,
              explicit: str | None) -> Response | None:
        """The key's model list, tiers and budget; a response when the call is refused (nothing sent)."""
        k = ctx.key
        if k is not None and not k.allows_model(entry.name, ctx.wire_model, body.get("model")):
            self.metrics.refused.labels(ctx.key_name, "model").inc()
            return self._bad(ctx.shape, f"model {body.get('model')!r} is not allowed for this key", 403,
                             "model_not_allowed")
        if k is not None and explicit is not None and explicit not in k.tiers:
            self.metrics.refused.labels(ctx.key_name, "tier").inc()
            return self._bad(ctx.shape, f"service tier {explicit!r} is not allowed for this key", 403,
                             "tier_not_allowed")
        if k is not None and self.budgets.capped(k.name):
            try:
                ctx.token = self.budgets.reserve(k.name, self._estimate(entry, body, self._tiers_for(ctl, explicit)))
            except Refusal as r:
                self.metrics.refused.labels(ctx.key_name, "budget").inc()
                self._record_refusal(ctx, 429, "budget")
                return error_response(ctx.shape, 429, str(r), code="budget_exceeded",
                                      err_type="insufficient_quota" if ctx.shape == "openai" else None)
        elif k is not None:
            ctx.token = self.budgets.reserve(k.name, None)
        return None

    def policy_for(self, ctx: Ctx, ctl: Controls) -> Policy:
        allow_std = ctx.key is None or "standard" in ctx.key.tiers or "auto" in ctx.key.tiers
        if ctx.provider == "anthropic" and ctl.tier == "auto":   # no flex at Anthropic: standard
            ctl = Controls("standard", ctl.deadline, ctl.max_wait)
        # kept per (controls, allow_std): a Policy is only read by the loop, and building one per
        # call (dataclasses.replace) was a visible share of the gateway's CPU (docs/gateway.md)
        ck = (ctl, allow_std)
        pol = self._policies.get(ck)
        if pol is None:
            if len(self._policies) > 1024:
                self._policies.clear()
            pol = self._policies[ck] = ctl.policy(self.base_policy, allow_standard=allow_std)
        return pol

    # -- native: the engine ------------------------------------------------------------------------
    async def native(self, request: Request, provider: str, route: str, path: str | None = None,
                     body_override: dict[str, Any] | None = None, raw_body: bytes | None = None,
                     key: KeyConfig | None = None, parsed: Any = None) -> Response:
        """``parsed`` is ``raw_body`` already decoded by the route (decoded once, not twice)."""
        ctx = Ctx(provider, route, key)
        try:
            resp = await self._native(ctx, request, provider, path, body_override, raw_body, parsed)
        except BaseException:
            self._forget(ctx)
            raise
        return self._tag(ctx, resp)

    async def _native(self, ctx: Ctx, request: Request, provider: str, path: str | None,
                      body_override: dict[str, Any] | None, raw_body: bytes | None, parsed: Any) -> Response:
        key = ctx.key
        try:
            raw = raw_body if raw_body is not None else await self.read_body(request)
        except TooLarge:
            return self._too_large(provider)
        try:
            if body_override is not None:
                body = body_override
            elif parsed is not None and raw_body is not None:
                body = parsed
            else:
                body = json.loads(raw or b"null")
        except ValueError:
            return self._bad(provider, "request body is not JSON")
        if not isinstance(body, dict):
            return self._bad(provider, "request body must be a JSON object")
        if body_override is not None:
            raw = json.dumps(body_override, separators=(",", ":")).encode()
        try:
            ctl = read_controls(request.headers, key, self.cfg)
        except UserInputError as e:
            return self._bad(provider, e.one_line())
        wire_model = body.get("model") if provider != "gemini" else (path or "").rpartition("/models/")[2].split(":")[0]
        ctx.wire_model = str(wire_model) if wire_model else None
        entry = lookup(self.catalog, provider, ctx.wire_model)
        ctx.model = entry.name
        ctx.stream = bool(body.get("stream")) or (path or "").endswith(":streamGenerateContent")
        d = self.dialects[provider]
        rpath = path or request.scope["path"]   # not request.url: that builds a URL object per call
        # recognised once, from the body the route already decoded; the engine reuses this Call
        call = d.recognise("POST", rpath, body if body_override is None and parsed is not None else raw)
        explicit = call.explicit if call is not None else None
        ctx.requested = explicit or ctl.tier
        refused = self.admit(ctx, entry, body, ctl, explicit)
        if refused is not None:
            return refused
        pol = self.policy_for(ctx, ctl)
        req = httpx.Request("POST", self._url(provider, rpath, request.scope.get("query_string", b"").decode("latin-1"),
                                              key),
                            headers=upstream_headers(request.headers.items(), provider, key),
                            content=raw, extensions={POLICY_EXTENSION: pol, CALL_EXTENSION: (d, call),
                                                     "timeout": {"connect": 30.0, "read": None, "write": 60.0,
                                                                 "pool": None}})
        self._begin(ctx)
        try:
            resp = await self.transport.handle_async_request(req)
        except ProviderError as err:
            self._done()
            return self._failed(ctx, err, request)
        except Exception as exc:  # noqa: BLE001 - a gateway bug must still answer, without secrets
            self._done()
            log.warning("gateway: %s on %s: %s", type(exc).__name__, ctx.route,
                        scrub(str(exc), self.secrets(presented_key(request.headers, request.query_params))))
            self._settle(ctx, None, possibly_billed=True)
            self._record(ctx, None, [], 502, type(exc).__name__)
            return error_response(provider, 502, "the gateway could not complete the call")
        result = info(resp)
        headers = response_headers(resp.headers.multi_items())
        if not ctx.stream or resp.status_code >= 300 or "text/event-stream" not in resp.headers.get("content-type", ""):
            content = await resp.aread()
            await resp.aclose()
            self._done()
            self._finish(ctx, result, resp.status_code)
            return Response(content, status_code=resp.status_code, headers=headers)
        return StreamingResponse(self._relay(ctx, resp, result), status_code=resp.status_code, headers=headers)

    async def _relay(self, ctx: Ctx, resp: httpx.Response, result: CallResult | None) -> AsyncIterator[bytes]:
        """Chunk by chunk, as the engine hands them on (fallback was only possible before the first byte)."""
        outcome_err: BaseException | None = None
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        except ProviderError as err:      # cut after the first byte: nothing more can be retried
            outcome_err = err
        finally:
            await resp.aclose()
            self._done()
            if outcome_err is not None:
                self._settle(ctx, None, possibly_billed=True)
                self._record(ctx, result, list(result.attempts) if result else [], 502,
                             type(outcome_err).__name__)
            else:
                self._finish(ctx, result, resp.status_code)

    def _begin(self, ctx: Ctx) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        self._pending[ctx.call_id] = (ctx.key_name, asyncio.Event())

    def _done(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()

    async def call_row(self, call_id: str, key_name: str | None, wait: float) -> CallRow | str | None:
        """``GET /api/calls/{id}``: the call's row, waiting up to ``wait`` seconds for one still
        running (a stream's usage arrives at its end); ``"in_flight"`` if it still is; None when
        unknown or another key's (``key_name`` None = single-user: every call is the caller's)."""
        pend = self._pending.get(call_id)
        if pend is not None and key_name is not None and pend[0] != key_name:
            return None
        if pend is not None and wait > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(pend[1].wait(), wait)
        row = self._recent.get(call_id)
        if row is None:
            if call_id in self._pending:
                return "in_flight"
            row = self.ledger.call(call_id)
        if row is None or (key_name is not None and row.key != key_name):
            return None
        return row

    def _failed(self, ctx: Ctx, err: ProviderError, request: Request) -> Response:
        attempts: list[Attempt] = list(getattr(err, "attempts", None) or [])
        self._settle(ctx, None, possibly_billed=bool(getattr(err, "possibly_billed", False)) or isinstance(err, Timeout))
        status = provider_error_response(ctx.shape, err, []).status_code
        self._record(ctx, None, attempts, status, type(err).__name__)
        billed = any(a.possibly_billed for a in attempts) or bool(getattr(err, "possibly_billed", False))
        h = {"x-flextier-served-tier": "", "x-flextier-attempts": str(len(attempts)),
             "x-flextier-cost-usd": "" if billed else "0", "x-flextier-standard-cost-usd": "" if billed else "0"}
        return provider_error_response(ctx.shape, err,
                                       self.secrets(presented_key(request.headers, request.query_params)), h)

    def _settle(self, ctx: Ctx, result: CallResult | None, *, possibly_billed: bool = False) -> None:
        if ctx.token is None:
            return
        tok, ctx.token = ctx.token, None
        if result is not None:
            self.budgets.settle(tok, result.cost)
        elif possibly_billed:
            self.budgets.lose(tok)
        else:
            self.budgets.release(tok)

    def _finish(self, ctx: Ctx, result: CallResult | None, status: int) -> None:
        if result is None:   # not a generation call after all (the dialect passed it through)
            self._settle(ctx, None)
            self._record(ctx, None, [], status, "ok" if status < 400 else f"http_{status}")
            return
        self._settle(ctx, result)
        self._record(ctx, result, list(result.attempts), status, "ok" if status < 400 else f"http_{status}")

    # -- routed: provider/model through that provider's adapter -------------------------------------
    async def routed(self, request: Request, entry: ModelEntry, body: dict[str, Any], key: KeyConfig | None,
                     requested_name: str) -> Response:
        ctx = Ctx(entry.provider, "chat", key, model=entry.name, wire_model=entry.model_id,
                  stream=bool(body.get("stream")), shape="openai")
        try:
            resp = await self._routed(ctx, request, entry, body, key, requested_name)
        except BaseException:
            self._forget(ctx)
            raise
        return self._tag(ctx, resp)

    def _tag(self, ctx: Ctx, resp: Response) -> Response:
        """The call id on the answer; a call that ended without a record is no longer waited for."""
        resp.headers[CALL_ID_HEADER] = ctx.call_id
        if not isinstance(resp, StreamingResponse):   # a relayed stream records when it ends
            self._forget(ctx)
        return resp

    def _forget(self, ctx: Ctx) -> None:
        pend = self._pending.pop(ctx.call_id, None)
        if pend is not None:
            pend[1].set()

    async def _routed(self, ctx: Ctx, request: Request, entry: ModelEntry, body: dict[str, Any],
                      key: KeyConfig | None, requested_name: str) -> Response:
        try:
            ctl = read_controls(request.headers, key, self.cfg)
            creq = call_request(entry, body)
        except (UserInputError, ValueError) as e:
            return self._bad("openai", e.one_line() if isinstance(e, UserInputError) else str(e))
        explicit = explicit_tier(body.get("service_tier"))
        ctx.requested = explicit or ctl.tier
        refused = self.admit(ctx, entry, body, ctl, explicit)
        if refused is not None:
            return refused
        if explicit is not None:
            ctl = Controls(explicit, ctl.deadline, ctl.max_wait)
        pol = self.policy_for(ctx, ctl)
        if key is not None:
            api_key = key.credential(entry.provider)
        else:
            api_key = presented_key(request.headers, request.query_params)
        base = self.cfg.upstreams.get(entry.provider) or None
        self._begin(ctx)
        try:
            adapter = get_adapter(entry, base_url=base, api_key=api_key, timeouts=pol.timeouts())
            result = await acall_with_policy(lambda t, to: adapter.asend(creq, t, to), pol, entry=entry)
        except ProviderError as err:
            _history(ctx, getattr(err, "attempts", None) or [], None, self.emulated or is_loopback_url(base))
            return self._failed(ctx, err, request)
        finally:
            self._done()
        self._settle(ctx, result)
        self._record(ctx, result, list(result.attempts), 200, "ok")
        _history(ctx, list(result.attempts), result.usage, self.emulated or is_loopback_url(base))
        hdrs = {k: v for k, v in flextier_headers(result, "") if k != HEADERS[-1]}
        if ctx.stream:
            so = body.get("stream_options")
            inc = isinstance(so, dict) and so.get("include_usage") is True
            chunks = chat_chunks(result, requested_name, inc)

            async def gen() -> AsyncIterator[bytes]:
                for c in chunks:
                    yield c
            return StreamingResponse(gen(), media_type="text/event-stream", headers=hdrs)
        return JSONResponse(chat_completion(result, requested_name), headers=hdrs)

    # -- passthrough ---------------------------------------------------------------------------------
    async def passthrough(self, request: Request, provider: str, key: KeyConfig | None) -> Response:
        """Files, batches, embeddings, counting: the same transport (the dialects let them through)."""
        try:
            raw = await self.read_body(request)
        except TooLarge:
            return self._too_large(provider)
        url = upstream_url(self.cfg, provider, request.url.path, strip_key_query(request.url.query, key))
        req = httpx.Request(request.method, url, headers=upstream_headers(request.headers.items(), provider, key),
                            content=raw, extensions={"timeout": {"connect": 30.0, "read": 600.0, "write": 600.0,
                                                                 "pool": None}})
        try:
            resp = await self.transport.handle_async_request(req)
        except Exception as exc:  # noqa: BLE001
            log.warning("gateway: passthrough %s: %s", request.url.path, type(exc).__name__)
            return error_response(provider, 502, "the upstream could not be reached")
        content = await resp.aread()
        await resp.aclose()
        headers = response_headers(resp.headers.multi_items())
        return Response(content, status_code=resp.status_code, headers=headers)

    # -- records ------------------------------------------------------------------------------------
    def _record_refusal(self, ctx: Ctx, status: int, outcome: str) -> None:
        self._record(ctx, None, [], status, outcome)

    def _record(self, ctx: Ctx, result: CallResult | None, attempts: list[Attempt], status: int,
                outcome: str) -> None:
        latency = time.perf_counter() - ctx.t0
        sheds = sum(1 for a in attempts if a.outcome == "FlexCapacityUnavailable")
        fallback = any(a.tier == "flex" for a in attempts) and bool(attempts) and attempts[-1].tier != "flex"
        queue = (attempts[-1].started_at - attempts[0].started_at) if len(attempts) > 1 else 0.0
        served = None
        u = None
        cost = std = None
        if result is not None and outcome == "ok":
            served = None if result.tier in (None, "unknown") else result.tier
            u = result.usage
            cost, std = result.cost, result.standard_cost
        now = time.time()
        row = CallRow(
            ts=now, key=ctx.key_name, provider=ctx.provider, model=ctx.model, route=ctx.route, stream=ctx.stream,
            requested_tier=ctx.requested, served_tier=served, attempts=len(attempts), sheds=sheds, fallback=fallback,
            input_tokens=None if u is None else u.input_tokens,
            cached_input_tokens=None if u is None else u.cached_input_tokens,
            output_tokens=None if u is None else u.output_tokens, cost=cost, standard_cost=std,
            latency_s=latency, queue_s=max(0.0, queue), status=status, outcome=outcome, call_id=ctx.call_id)
        self.ledger.add(row)
        if len(self._recent) >= _RECENT:
            self._recent.pop(next(iter(self._recent)))
        self._recent[ctx.call_id] = row
        pend = self._pending.pop(ctx.call_id, None)
        if pend is not None:
            pend[1].set()
        self.metrics.observe(key=ctx.key_name, model=ctx.model, route=ctx.route, served=served, outcome=outcome,
                             sheds=sheds, fallback=fallback, cost=cost, standard_cost=std, latency=latency,
                             queue=max(0.0, queue))
        if otel_enabled():
            otel_record(provider=ctx.provider, model=ctx.model, wire_model=ctx.wire_model,
                                  stream=ctx.stream, requested=ctx.requested, served=served, attempts=attempts,
                                  usage=u, cost=cost, standard_cost=std, key=ctx.key_name, outcome=outcome,
                                  started_wall=ctx.started, ended_wall=now)
        log.info("call key=%s model=%s route=%s requested=%s served=%s attempts=%d status=%d outcome=%s "
                 "cost=%s latency=%.3f", ctx.key_name, ctx.model, ctx.route, ctx.requested, served, len(attempts),
                 status, outcome, cost, latency)


def _history(ctx: Ctx, attempts: list[Attempt], usage: Any, emulated: bool) -> None:
    """A routed call's attempts into the per-user history (docs/history.md); never fails a call.

    Native routes need not call this: they go through the intercept engine, which records every
    call it carries (``flextier.intercept._Totals``)."""
    from ..history.recorder import record_call

    record_call(provider=ctx.provider, model=ctx.model, attempts=attempts,
                output_tokens=usage.output_tokens if usage is not None else 0, emulated=emulated)

