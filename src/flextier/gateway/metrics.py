"""``GET /metrics``: the gateway's Prometheus counters and histograms (``prometheus-client``).

Why its own registry: tests start several gateways in one process, and the global registry
refuses a metric name twice. Labels are the key's *name*, the catalog model and the tier:
never a secret, never a prompt. Money counters are floats (Prometheus has no decimals); the
exact sums are in the ledger (``flextier report --gateway``).
"""
from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        lab = ("key", "model", "served_tier")
        self.requests = Counter("flextier_gateway_requests", "Calls answered, by outcome",
                                ("key", "model", "route", "served_tier", "outcome"), registry=r)
        self.sheds = Counter("flextier_gateway_sheds", "Flex attempts the provider shed", ("key", "model"),
                             registry=r)
        self.fallbacks = Counter("flextier_gateway_fallbacks", "Calls that fell back from flex", ("key", "model"),
                                 registry=r)
        self.cost = Counter("flextier_gateway_cost_usd", "Money spent (served tier prices)", lab, registry=r)
        self.saving = Counter("flextier_gateway_saving_usd", "Standard price minus the price paid", lab, registry=r)
        self.unpriced = Counter("flextier_gateway_unpriced", "Calls whose price is unknown", lab, registry=r)
        self.latency = Histogram("flextier_gateway_latency_seconds", "Call latency through the gateway",
                                 ("route", "served_tier"), buckets=_LATENCY, registry=r)
        self.queue = Histogram("flextier_gateway_queue_seconds", "Time before the serving attempt (sheds, backoff)",
                               ("model",), buckets=_LATENCY, registry=r)
        self.in_flight = Gauge("flextier_gateway_in_flight", "Calls in flight", registry=r)
        self.refused = Counter("flextier_gateway_refused", "Calls refused before sending", ("key", "reason"),
                               registry=r)

    def observe(self, *, key: str, model: str, route: str, served: str | None, outcome: str, sheds: int,
                fallback: bool, cost: Decimal | None, standard_cost: Decimal | None, latency: float,
                queue: float) -> None:
        st = served or "none"
        self.requests.labels(key, model, route, st, outcome).inc()
        if sheds:
            self.sheds.labels(key, model).inc(sheds)
        if fallback:
            self.fallbacks.labels(key, model).inc()
        if outcome == "ok":
            if cost is None or standard_cost is None:
                self.unpriced.labels(key, model, st).inc()
            else:
                self.cost.labels(key, model, st).inc(float(cost))
                self.saving.labels(key, model, st).inc(float(standard_cost - cost))
            self.queue.labels(model).observe(queue)
        self.latency.labels(route, st).observe(latency)

    def render(self) -> bytes:
        return generate_latest(self.registry)
