"""The Starlette application: the four provider dialects plus the control plane.

Routes come from route factories (``engine -> list of routes``), so another module
(the batch lane) adds endpoints with :func:`register_routes` without
touching this file. Control plane under ``/_emulator/``: ledger, stats, profile,
knobs, clock.
The same way come embeddings, token counting, model listings and Bedrock InvokeModel
(modules beside this one), and answers unknown routes in the asked provider's error shape.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable

import inspect

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from .anthropic_api import AnthropicAPI
from .batch_routes import batch_routes  # batch APIs of the four providers
from .bedrock_api import BedrockAPI
from .bedrock_invoke import BedrockInvokeAPI
from .count_tokens import count_routes
from .embeddings import GeminiEmbeddings, OpenAIEmbeddings
from .engine import Engine
from .errors_shape import route_error
from .gemini_api import GeminiAPI
from .http import BadJSON, json_response, read_json
from .knobs import KnobError
from .models_api import model_routes
from .openai_api import OpenAIAPI
from .deepseek_api import DeepSeekAPI
from .profiles import PROFILES, build_knobs
from .s3 import s3_routes  # the in-memory S3 of Bedrock batch rehearsals
from .tokenizer import warm as warm_tokenizer

__all__ = ["build_app", "register_routes", "RouteFactory", "apply_profile", "stats", "EmulatorApp"]

RouteFactory = Callable[[Engine], list[BaseRoute]]
_EXTRA: list[RouteFactory] = []


def register_routes(factory: RouteFactory) -> RouteFactory:
    """Add a route factory to every app built afterwards (usable as a decorator)."""
    if factory not in _EXTRA:
        _EXTRA.append(factory)
    return factory


def apply_profile(engine: Engine, profile: str | None, knobs: dict[str, Any] | None) -> None:
    """Switch profile (defaults + profile + startup knobs + ``knobs``) or just layer ``knobs``."""
    if profile is not None:
        new = build_knobs(profile, getattr(engine, "sticky_knobs", None), knobs)
    else:
        new = engine.knobs.replace(**(knobs or {}))
    engine.set_knobs(new, profile)


def stats(engine: Engine) -> dict[str, Any]:
    out = engine.ledger.stats()
    out["profile"] = engine.profile
    out["now"] = engine.clock.now()
    out["pools"] = engine.scheduler.snapshot()
    return out


def _control_routes(engine: Engine) -> list[BaseRoute]:
    async def ledger(request: Request) -> Response:
        return json_response(engine.ledger.rows())

    async def get_stats(request: Request) -> Response:
        return json_response(stats(engine))

    async def profile(request: Request) -> Response:
        if request.method == "GET":
            return json_response({"profile": engine.profile, "knobs": engine.knobs.as_dict(),
                                  "profiles": list(PROFILES)})
        try:
            body = await read_json(request)
            prof = body.get("profile")
            knobs = body.get("knobs") or {}
            if prof is not None and not isinstance(prof, str):
                raise KnobError("'profile' must be a string")
            if not isinstance(knobs, dict):
                raise KnobError("'knobs' must be an object")
            apply_profile(engine, prof, knobs)
        except (BadJSON, KnobError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"profile": engine.profile, "knobs": engine.knobs.as_dict()})

    async def clock(request: Request) -> Response:
        return json_response({"now": engine.clock.now(), "time_scale": engine.clock.time_scale,
                              "iso": engine.clock.isoformat()})

    async def reset(request: Request) -> Response:
        engine.ledger.clear()
        return json_response({"ok": True})

    return [Route("/_emulator/ledger", ledger, methods=["GET"]),
            Route("/_emulator/stats", get_stats, methods=["GET"]),
            Route("/_emulator/profile", profile, methods=["GET", "POST"]),
            Route("/_emulator/clock", clock, methods=["GET"]),
            Route("/_emulator/ledger/clear", reset, methods=["POST"])]


def build_app(engine: Engine) -> Starlette:
    warm_tokenizer()     # load the BPE ranks at start-up, not on the first request
    routes: list[BaseRoute] = _control_routes(engine)
    routes += batch_routes(engine)  # ahead of the online dialects (Gemini's POST catch-all)
    routes += s3_routes(engine)     # path-style S3 under /s3 (Bedrock batch input/output)
    # embeddings, token counts, model listings, InvokeModel — also ahead of that catch-all
    routes += count_routes(engine) + model_routes(engine)
    for extra in (OpenAIEmbeddings(engine), GeminiEmbeddings(engine), BedrockInvokeAPI(engine)):
        routes += extra.routes()
    for api in (OpenAIAPI(engine), GeminiAPI(engine), BedrockAPI(engine), AnthropicAPI(engine), DeepSeekAPI(engine)):
        routes += api.routes()
    for factory in _EXTRA:
        routes += factory(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine.loop = asyncio.get_running_loop()   # type: ignore[attr-defined]
        yield
        await engine.scheduler.aclose()

    async def unrouted(request: Request, exc: Exception) -> Response:
        return route_error(request, getattr(exc, "status_code", 404))

    # unknown paths and wrong methods answer in the dialect of the provider asked
    app = EmulatorApp(routes=routes, lifespan=lifespan, exception_handlers={404: unrouted, 405: unrouted})
    app.state.engine = engine
    return app


class EmulatorApp(Starlette):
    """Starlette with a per-(method, path) route cache and a lean call path.

    Every request of a benchmark walks the same few endpoints, yet Starlette's router
    tries each of ~40 routes in turn and wraps the call in three middleware layers.
    Here the first request to a (method, path) resolves it exactly as the router does
    (first full match wins); if the winner is a plain function ``Route``, later requests
    to that path call its endpoint directly and send its response. Anything else —
    mounts, class endpoints, route middleware, 404/405, lifespan — takes Starlette's
    normal path. Behaviour is the same: an endpoint's ``HTTPException`` becomes the
    same response Starlette's default handler gives, and any other exception goes to
    the server, which answers 500 and logs it (Starlette would re-raise it too).
    """

    _CACHE_MAX = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast: dict[tuple[str, str], tuple[Route, dict[str, Any]] | None] = {}

    def _resolve(self, scope: Scope) -> tuple[Route, dict[str, Any]] | None:
        hit: tuple[Route, dict[str, Any]] | None = None
        for route in self.router.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                app = getattr(route, "app", None)
                if (type(route) is Route and getattr(app, "__qualname__", "") == "request_response.<locals>.app"
                        and inspect.iscoroutinefunction(route.endpoint)):
                    hit = (route, child.get("path_params") or {})
                break
        if len(self._fast) < self._CACHE_MAX:
            self._fast[(scope["method"], scope["path"])] = hit
        return hit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path") and "path_params" not in scope:
            try:
                hit = self._fast[(scope["method"], scope["path"])]
            except KeyError:
                hit = self._resolve(scope)
            if hit is not None:
                route, params = hit
                scope["app"] = self
                scope["router"] = self.router
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = dict(params) if params else {}
                try:
                    response = await route.endpoint(Request(scope, receive, send))
                except ClientDisconnect:
                    return  # the client went away mid-body (a killed run): nobody to answer, not a bug
                except HTTPException as exc:
                    if exc.status_code in (204, 304):
                        response = Response(status_code=exc.status_code, headers=exc.headers)
                    else:
                        response = PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
                await response(scope, receive, send)
                return
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            return
