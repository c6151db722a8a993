"""``GET /metrics``: the gateway's Prometheus counters and histograms (``prometheus-client``).

Why its own registry: tests start several gateways in one process, and the global registry
refuses a metric name twice. Labels are the key's *name*, the catalog model and the tier:
never a secret, never a prompt. Money counters are floats (Prometheus has no decimals); the
exact sums are in the ledger (``flextier report --gateway``).

Children are cached per label tuple (:meth:`Metrics.child`): ``labels()`` validates and locks on
every call, and a call observes six of them (docs/gateway.md, "Per-call CPU").
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

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
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached (the registry keeps the child for ever anyway)."""
        k = (id(metric), *labels)
        c = self._children.get(k)
        if c is None:
            c = self._children[k] = metric.labels(*labels)
        return c

    def observe(self, *, key: str, model: str, route: str, served: str | None, outcome: str, sheds: int,
                fallback: bool, cost: Decimal | None, standard_cost: Decimal | None, latency: float,
                queue: float) -> None:
        st = served or "none"
        ch = self.child
        ch(self.requests, key, model, route, st, outcome).inc()
        if sheds:
            ch(self.sheds, key, model).inc(sheds)
        if fallback:
            ch(self.fallbacks, key, model).inc()
        if outcome == "ok":
            if cost is None or standard_cost is None:
                ch(self.unpriced, key, model, st).inc()
            else:
                ch(self.cost, key, model, st).inc(float(cost))
                ch(self.saving, key, model, st).inc(float(standard_cost - cost))
            ch(self.queue, model).observe(queue)
        ch(self.latency, route, st).observe(latency)

    def render(self) -> bytes:
        return generate_latest(self.registry)
