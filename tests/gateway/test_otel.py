"""OpenTelemetry spans from the gateway (issue 15 "Operations"), read back with the SDK's
InMemorySpanExporter: one span per call with the GenAI semantic-convention names
(gen_ai.provider.name, gen_ai.request.model, gen_ai.usage.*) and flextier.* attributes (requested
and served tier, attempts, cost), and one child ``flextier.attempt`` span per attempt, on calm
(one flex attempt) and on an outage (flex sheds, then standard). Token counts and cost are the
emulator's own ledger figures.
"""
from __future__ import annotations

from decimal import Decimal

import openai
import pytest

otel_trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

MSG = [{"role": "user", "content": "Tell me something."}]


@pytest.fixture(scope="module")
def exporter():
    exp = InMemorySpanExporter()
    provider = otel_trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):   # the global provider can be set once per process
        provider = sdk_trace.TracerProvider()
        otel_trace.set_tracer_provider(provider)
        provider = otel_trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    return exp


def _call_and_attempts(exporter):
    spans = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "flextier.gateway"]
    calls = [s for s in spans if s.name != "flextier.attempt"]
    assert len(calls) == 1, [s.name for s in spans]
    call = calls[0]
    kids = sorted((s for s in spans if s.name == "flextier.attempt"), key=lambda s: s.attributes["flextier.attempt"])
    assert all(k.parent is not None and k.parent.span_id == call.context.span_id for k in kids)
    assert all(k.context.trace_id == call.context.trace_id for k in kids)
    return call, kids


def test_calm_call_span_and_attempt_span(gateway, emu, exporter):
    gw = gateway()
    exporter.clear()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    before = len(emu.ledger())
    raw = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
    led = [r for r in emu.ledger()[before:] if r["outcome"] == "ok"][0]
    call, kids = _call_and_attempts(exporter)
    a = call.attributes
    assert call.name == "chat gpt-5.4" and call.kind == otel_trace.SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "gpt-5.4"
    assert a["gen_ai.usage.input_tokens"] == led["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == led["output_tokens"]
    assert (a["flextier.requested_tier"], a["flextier.served_tier"], a["flextier.attempts"]) == ("auto", "flex", 1)
    assert a["openai.response.service_tier"] == "flex" and a["flextier.sheds"] == 0
    assert Decimal(a["flextier.cost_usd"]) == Decimal(led["cost"]) == Decimal(raw.headers["x-flextier-cost-usd"])
    assert Decimal(a["flextier.standard_cost_usd"]) == 2 * Decimal(led["cost"])
    assert call.status.status_code != otel_trace.StatusCode.ERROR
    assert [(k.attributes["flextier.tier"], k.attributes["flextier.outcome"]) for k in kids] == [("flex", "ok")]
    assert call.start_time <= kids[0].start_time <= kids[0].end_time <= call.end_time


def test_fallback_call_span_has_one_child_per_attempt(gateway, emu, exporter):
    emu.set_profile("outage", latency_scale=0)
    gw = gateway()
    exporter.clear()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0,
                      default_headers={"x-flextier-deadline": "5m"})
    before = len(emu.ledger())
    raw = c.chat.completions.with_raw_response.create(model="gpt-5.4", messages=MSG)
    rows = emu.ledger()[before:]
    led = [r for r in rows if r["outcome"] == "ok"][0]
    sheds = [r for r in rows if r["outcome"] == "shed"]
    assert len(sheds) >= 2
    call, kids = _call_and_attempts(exporter)
    a = call.attributes
    assert (a["flextier.requested_tier"], a["flextier.served_tier"]) == ("auto", "standard")
    assert a["flextier.attempts"] == len(kids) == len(sheds) + 1 == int(raw.headers["x-flextier-attempts"])
    assert a["flextier.sheds"] == len(sheds)
    assert a["gen_ai.usage.output_tokens"] == led["output_tokens"]
    assert Decimal(a["flextier.cost_usd"]) == Decimal(led["cost"])            # the sheds cost $0
    assert Decimal(a["flextier.cost_usd"]) == Decimal(a["flextier.standard_cost_usd"])
    tiers = [(k.attributes["flextier.tier"], k.attributes["flextier.outcome"]) for k in kids]
    assert tiers[:-1] == [("flex", "FlexCapacityUnavailable")] * len(sheds)
    assert tiers[-1] == ("standard", "ok")
    starts = [k.start_time for k in kids]
    assert starts == sorted(starts)
