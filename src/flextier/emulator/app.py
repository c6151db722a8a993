"""The Starlette application: the four provider dialects plus the control plane.

Routes come from route factories (``engine -> list of routes``), so another module
(the batch lane, issue 7) adds endpoints with :func:`register_routes` without
touching this file. Control plane under ``/_emulator/``: ledger, stats, profile,
knobs, clock.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .anthropic_api import AnthropicAPI
from .batch_core import batch_routes  # issue 7: batch APIs of the four providers
from .bedrock_api import BedrockAPI
from .engine import Engine
from .gemini_api import GeminiAPI
from .http import BadJSON, json_response, read_json
from .knobs import KnobError
from .openai_api import OpenAIAPI
from .profiles import PROFILES, build_knobs

__all__ = ["build_app", "register_routes", "RouteFactory", "apply_profile", "stats"]

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
    routes: list[BaseRoute] = _control_routes(engine)
    routes += batch_routes(engine)  # issue 7: ahead of the online dialects (Gemini's POST catch-all)
    for api in (OpenAIAPI(engine), GeminiAPI(engine), BedrockAPI(engine), AnthropicAPI(engine)):
        routes += api.routes()
    for factory in _EXTRA:
        routes += factory(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine.loop = asyncio.get_running_loop()   # type: ignore[attr-defined]
        yield
        await engine.scheduler.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.engine = engine
    return app
