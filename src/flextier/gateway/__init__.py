"""``flextier serve``: a flex gateway, so any app in any language gets half price by changing one URL.

An OpenAI-, Gemini- and Anthropic-compatible HTTP server that sends every generation call
through the same engine as ``flextier.wrap`` (:mod:`flextier.intercept`: flex first, backoff,
deadline-aware fallback, served-tier pricing), with per-key budgets, a SQLite ledger,
Prometheus metrics, OpenTelemetry spans, a dashboard and the savings calculator. See README
"Gateway" and docs/errors.md (what happens after an error: the gateway adds nothing to it).

Modules, one idea each: :mod:`.config` (gateway.toml), :mod:`.controls` (per-request headers ->
policy), :mod:`.forward` (upstream URL, credentials), :mod:`.service` (one call), :mod:`.translate`
(``provider/model`` from an OpenAI client), :mod:`.budgets`, :mod:`.ledger` (all the gateway's
SQL), :mod:`.summary`, :mod:`.metrics`, :mod:`.telemetry`, :mod:`.errors` (provider error shapes),
:mod:`.pages`, :mod:`.app` (routes), :mod:`.server`.
"""
from __future__ import annotations

from .config import GatewayConfig, KeyConfig, load_config
from .server import GatewayServer, serve

__all__ = ["GatewayConfig", "KeyConfig", "load_config", "GatewayServer", "serve"]
