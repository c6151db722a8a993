"""OpenTelemetry spans per call and per attempt, when ``opentelemetry-api`` is installed (``flextier[otel]``).

Why optional: the API package is the only thing needed to emit spans (an SDK and exporter are
the operator's choice); without it this module is a no-op. Names follow the GenAI semantic
conventions (``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``,
``openai.request.service_tier``/``openai.response.service_tier``; see docs/providers.md), plus
``flextier.*`` attributes for what the conventions have no name for yet: requested and served
tier, sheds, attempts, cost and standard cost. Attempts become child spans (``flextier.attempt``)
with their tier, outcome and latency, started at their real start times.
"""
from __future__ import annotations

from typing import Any

__all__ = ["record_call", "enabled"]

try:  # pragma: no cover - depends on the extra
    from opentelemetry import trace as _trace
    _NOOP_PROVIDERS: tuple[type, ...] = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
except ImportError:  # pragma: no cover
    _trace = None  # type: ignore[assignment]
    _NOOP_PROVIDERS = ()

_PROVIDER_NAMES = {"openai": "openai", "gemini": "gcp.gemini", "bedrock": "aws.bedrock", "anthropic": "anthropic"}


def enabled() -> bool:
    """True when spans would go somewhere: the API is installed *and* a real tracer provider is set.
    With only the API (or before the operator's SDK set a provider) every span is a no-op, and
    building its attributes was 2% of the gateway's CPU per call (docs/gateway.md)."""
    if _trace is None:
        return False
    return not isinstance(_trace.get_tracer_provider(), _NOOP_PROVIDERS)


def record_call(*, provider: str, model: str, wire_model: str | None, stream: bool, requested: str,
                served: str | None, attempts: list[Any], usage: Any, cost: Any, standard_cost: Any,
                key: str, outcome: str, started_wall: float, ended_wall: float) -> None:
    """One finished call as a span with attempt children (timestamps in wall nanoseconds)."""
    if _trace is None:
        return
    tracer = _trace.get_tracer("flextier.gateway")
    start_ns = int(started_wall * 1e9)
    span = tracer.start_span(f"chat {wire_model or model}", start_time=start_ns,
                             kind=_trace.SpanKind.CLIENT)
    try:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": _PROVIDER_NAMES.get(provider, provider),
            "gen_ai.request.model": wire_model or model, "gen_ai.request.stream": bool(stream),
            "flextier.key": key, "flextier.requested_tier": requested, "flextier.served_tier": served or "",
            "flextier.attempts": len(attempts), "flextier.outcome": outcome,
            "flextier.sheds": sum(1 for a in attempts if a.outcome == "FlexCapacityUnavailable"),
        }
        if wire_model:
            attrs["gen_ai.response.model"] = wire_model
        if provider == "openai":
            attrs["openai.request.service_tier"] = requested
            if served:
                attrs["openai.response.service_tier"] = served
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
            attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
            attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
        if cost is not None:
            attrs["flextier.cost_usd"] = str(cost)
        if standard_cost is not None:
            attrs["flextier.standard_cost_usd"] = str(standard_cost)
        span.set_attributes(attrs)
        ctx = _trace.set_span_in_context(span)
        base = attempts[0].started_at if attempts else 0.0
        for i, a in enumerate(attempts):
            a_start = started_wall + max(0.0, (a.started_at or base) - base)
            child = tracer.start_span("flextier.attempt", context=ctx, start_time=int(a_start * 1e9))
            child.set_attributes({"flextier.attempt": i + 1, "flextier.tier": a.tier, "flextier.outcome": a.outcome,
                                  "flextier.served_tier": a.served_tier or "",
                                  "flextier.possibly_billed": bool(a.possibly_billed)})
            child.end(end_time=int((a_start + max(0.0, a.latency_s)) * 1e9))
        if outcome != "ok":
            span.set_status(_trace.Status(_trace.StatusCode.ERROR, outcome))
    finally:
        span.end(end_time=int(ended_wall * 1e9))
