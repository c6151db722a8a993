"""The gateway's routes (Starlette): OpenAI, Gemini and Anthropic wire, operations, pages.

===========================================  ==============================================
``POST /v1/chat/completions``                OpenAI Chat (a ``provider/model`` name goes
                                             through that provider's adapter)
``POST /v1/responses``                       OpenAI Responses
``GET  /v1/models``                          the catalog, as OpenAI's model list
``/v1/embeddings``, ``/v1/files...``,        passed through to OpenAI (same transport)
``/v1/batches...``
``POST /v1beta/models/{m}:generateContent``  Gemini (and ``:streamGenerateContent``); other
                                             ``/v1beta`` paths pass through
``POST /v1/messages``                        Anthropic Messages (standard; batches pass through)
``GET  /healthz``, ``GET /metrics``          liveness; Prometheus text
``GET  /``, ``GET /calculator``              the dashboard and the savings calculator
``GET  /api/summary``, ``GET /api/estimate`` their data (JSON)
``GET  /api/calls/{id}``                     one call's tier, attempts and cost by its
                                             ``x-flextier-call-id`` (key-scoped)
===========================================  ==============================================

Every call handler is in :mod:`.service`; this module only maps paths to it.

The operations routes (``/``, ``/calculator``, ``/api/*``, ``/metrics``) show spend by key, so
when ``gateway.toml`` defines keys they need one too (:func:`_ops_guard`): ``Authorization:
Bearer <gateway key>`` (a Prometheus scraper's ``bearer_token``, ``curl -H``), or, for a browser,
``/?key=<gateway key>`` once: the gateway answers with a redirect to the same page without the
key and an ``HttpOnly; SameSite=Strict`` session cookie (a random token, kept in memory; never
the key itself), which the page's own ``fetch`` calls then carry. ``/healthz`` stays open for
liveness probes, and single-user loopback mode (no keys) stays open throughout (docs/gateway.md).
"""
from __future__ import annotations

import contextlib
import json
import secrets
from urllib.parse import urlencode
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import UnknownModel
from .pages import calculator_page, dashboard_page, estimate_json, summary as summary_of
from .config import PROVIDERS
from .errors import error_response
from .forward import presented_key
from .metrics import CONTENT_TYPE_LATEST
from .service import Gateway, TooLarge

__all__ = ["build_app", "SESSION_COOKIE", "call_json"]


def call_json(row: Any) -> dict[str, Any]:
    """One ledger row as ``GET /api/calls/{id}`` answers it: money as exact decimal strings, null =
    unknown (never 0 for an unpriced call); no prompt, answer or key, only the key's name."""
    def money(v: Any) -> str | None:
        return None if v is None else str(v)
    return {"id": row.call_id, "state": "done", "key": row.key, "provider": row.provider, "model": row.model,
            "route": row.route, "stream": row.stream, "requested_tier": row.requested_tier,
            "served_tier": row.served_tier, "attempts": row.attempts, "sheds": row.sheds, "fallback": row.fallback,
            "input_tokens": row.input_tokens, "cached_input_tokens": row.cached_input_tokens,
            "output_tokens": row.output_tokens, "cost_usd": money(row.cost),
            "standard_cost_usd": money(row.standard_cost), "latency_s": round(row.latency_s, 6),
            "status": row.status, "outcome": row.outcome, "ended_at": row.ts}

SESSION_COOKIE = "flextier_session"
_MAX_SESSIONS = 1024
_LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>flextier gateway</title>
<p>This gateway has keys: open this page as <code>{path}?key=YOUR_GATEWAY_KEY</code> (once; the key is
swapped for a session cookie and removed from the address).</p>"""


def build_app(gw: Gateway) -> Starlette:
    sessions: dict[str, str] = {}     # session token -> key name (in memory: a restart logs everyone out)

    def _ops_guard(request: Request, page: bool) -> Response | None:
        """None when the caller may see an operations route, else the answer (see the module doc)."""
        return _ops_identity(request, page)[1]

    def _ops_identity(request: Request, page: bool) -> tuple[str | None, Response | None]:
        """(the caller's key name, None) or (None, the answer); the name is None in single-user mode."""
        if gw.cfg.single_user:
            return None, None
        tok = request.cookies.get(SESSION_COOKIE)
        if tok and tok in sessions:
            return sessions[tok], None
        q = request.query_params
        key = gw.cfg.find_key(presented_key(request.headers, q))
        if key is not None and page and "key" in q:
            tok = secrets.token_urlsafe(32)
            if len(sessions) >= _MAX_SESSIONS:
                sessions.pop(next(iter(sessions)))
            sessions[tok] = key.name
            rest = urlencode([(k, v) for k, v in q.multi_items() if k != "key"])
            resp = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
            resp.set_cookie(SESSION_COOKIE, tok, httponly=True, samesite="strict", path="/")
            return None, resp
        if key is not None:
            return key.name, None
        gw.metrics.refused.labels("-", "unauthorized").inc()
        if page:
            return None, HTMLResponse(_LOGIN_PAGE.format(path=request.url.path), status_code=401)
        return None, error_response("openai", 401, "this gateway has keys: send one as 'Authorization: Bearer <key>' "
                                             "(or open the page with ?key= once for a session cookie)",
                              code="invalid_api_key")

    async def _openai_json(request: Request) -> tuple[Any, bytes, Any] | Response:
        """An OpenAI-route request's key, raw body and parsed JSON, or the error response to send."""
        key, denied = gw.authenticate(request, "openai")
        if denied is not None:
            return denied
        try:
            raw = await gw.read_body(request)
        except TooLarge:
            return gw._too_large("openai")  # noqa: SLF001
        try:
            return key, raw, json.loads(raw or b"null")
        except ValueError:
            return error_response("openai", 400, "request body is not JSON")

    async def chat(request: Request) -> Response:
        got = await _openai_json(request)
        if isinstance(got, Response):
            return got
        key, raw, body = got
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and "/" in model and model.split("/", 1)[0] in PROVIDERS:
            try:
                entry = gw.catalog.resolve(model)
            except UnknownModel as e:
                return error_response("openai", 404, e.one_line(), code="model_not_found")
            if entry.provider == "openai":
                return await gw.native(request, "openai", "chat", body_override={**body, "model": entry.model_id},
                                       key=key)
            return await gw.routed(request, entry, body, key, model)
        return await gw.native(request, "openai", "chat", raw_body=raw, key=key, parsed=body)

    async def responses(request: Request) -> Response:
        got = await _openai_json(request)
        if isinstance(got, Response):
            return got
        key, raw, body = got
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and "/" in model and model.split("/", 1)[0] in PROVIDERS:
            if not model.startswith("openai/"):
                return error_response("openai", 400, "the Responses API is OpenAI's: use /v1/chat/completions for "
                                                     f"{model}")
            try:
                entry = gw.catalog.resolve(model)
            except UnknownModel as e:
                return error_response("openai", 404, e.one_line(), code="model_not_found")
            return await gw.native(request, "openai", "responses", body_override={**body, "model": entry.model_id},
                                   key=key)
        return await gw.native(request, "openai", "responses", raw_body=raw, key=key, parsed=body)

    async def models(request: Request) -> Response:
        key, denied = gw.authenticate(request, "openai")
        if denied is not None:
            return denied
        data = []
        for e in gw.catalog:
            ids = ([e.model_id] if e.provider == "openai" else []) + [e.name, *e.aliases]
            for i in ids:
                if key is None or key.allows_model(e.name, i):
                    data.append({"id": i, "object": "model", "created": 0, "owned_by": e.provider})
        return JSONResponse({"object": "list", "data": data})

    async def openai_pass(request: Request) -> Response:
        key, denied = gw.authenticate(request, "openai")
        if denied is not None:
            return denied
        return await gw.passthrough(request, "openai", key)

    async def gemini(request: Request) -> Response:
        key, denied = gw.authenticate(request, "gemini")
        if denied is not None:
            return denied
        path = request.url.path
        verb = path.rpartition(":")[2]
        if request.method == "POST" and verb in ("generateContent", "streamGenerateContent") and "/models/" in path:
            return await gw.native(request, "gemini", "generate", path=path, key=key)
        return await gw.passthrough(request, "gemini", key)

    async def messages(request: Request) -> Response:
        key, denied = gw.authenticate(request, "anthropic")
        if denied is not None:
            return denied
        return await gw.native(request, "anthropic", "messages", key=key)

    async def anthropic_pass(request: Request) -> Response:
        key, denied = gw.authenticate(request, "anthropic")
        if denied is not None:
            return denied
        return await gw.passthrough(request, "anthropic", key)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "in_flight": gw.in_flight})

    async def metrics(request: Request) -> Response:
        if (denied := _ops_guard(request, page=False)) is not None:
            return denied
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def dashboard(request: Request) -> Response:
        if (denied := _ops_guard(request, page=True)) is not None:
            return denied
        return HTMLResponse(dashboard_page())

    async def calculator(request: Request) -> Response:
        if (denied := _ops_guard(request, page=True)) is not None:
            return denied
        return HTMLResponse(calculator_page(gw.catalog))

    async def summary(request: Request) -> Response:
        if (denied := _ops_guard(request, page=False)) is not None:
            return denied
        since = request.query_params.get("since", "24h")
        try:
            return JSONResponse(summary_of(gw, since))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    async def estimate(request: Request) -> Response:
        if (denied := _ops_guard(request, page=False)) is not None:
            return denied
        try:
            return JSONResponse(estimate_json(gw.catalog, request.query_params))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    async def call_info(request: Request) -> Response:
        """A call's served tier, attempts and cost by its ``x-flextier-call-id`` (key-scoped): how a
        stream's caller learns the cost its headers could not carry (docs/gateway.md)."""
        who, denied = _ops_identity(request, page=False)
        if denied is not None:
            return denied
        try:
            wait = min(60.0, max(0.0, float(request.query_params.get("wait", "10"))))
        except ValueError:
            return error_response("openai", 400, "wait: must be a number of seconds")
        cid = request.path_params["call_id"]
        got = await gw.call_row(cid, who, wait)
        if got is None:
            return error_response("openai", 404, f"no call {cid!r} for this key", code="call_not_found")
        if isinstance(got, str):
            return JSONResponse({"id": cid, "state": got}, status_code=202)
        return JSONResponse(call_json(got))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response("openai", 404, f"no such route: {request.method} {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        gw.ledger.flush()
        await gw.aclose()

    any_m = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/embeddings", openai_pass, methods=["POST"]),
        Route("/v1/files{rest:path}", openai_pass, methods=any_m),
        Route("/v1/batches{rest:path}", openai_pass, methods=any_m),
        Route("/v1/responses/{rest:path}", openai_pass, methods=any_m),
        Route("/v1beta/{rest:path}", gemini, methods=any_m),
        Route("/v1/models/{rest:path}", gemini, methods=any_m),     # google-genai's v1 spelling
        Route("/upload/v1beta/{rest:path}", gemini, methods=any_m),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/{rest:path}", anthropic_pass, methods=any_m),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Route("/calculator", calculator, methods=["GET"]),
        Route("/api/summary", summary, methods=["GET"]),
        Route("/api/estimate", estimate, methods=["GET"]),
        Route("/api/calls/{call_id}", call_info, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found}, lifespan=lifespan)

