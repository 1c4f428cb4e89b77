"""Prometheus metrics of the Kubernetes integration, declared in every `learn` and `monitor` process (zero while
the integration is off), so a dashboard can tell "off" from "failing".

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> metrics = KubeMetrics(registry, "shop")
>>> metrics.api_errors.labels("shop", "create_event").inc()
>>> registry.get_sample_value("livelearn_kubernetes_api_errors_total", {"model": "shop", "operation": "create_event"})
1.0
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from streaming.observability import counter

__all__ = ["KubeMetrics"]


class KubeMetrics:
    """Counters of the Kubernetes integration of one process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        self.model = model
        self.api_errors = Counter(
            "livelearn_kubernetes_api_errors_total",
            "Kubernetes API calls that failed (error status, timeout, unreachable), by operation; never fatal.",
            ["model", "operation"],
            registry=registry,
        )
        self.events = Counter(
            "livelearn_kubernetes_events_total",
            "Kubernetes Events this process created, by reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.dropped = counter(
            "livelearn_kubernetes_dropped_total",
            "Kubernetes API jobs dropped because the integration's queue was full.",
            registry,
            model,
        )

    def error(self, operation: str) -> None:
        self.api_errors.labels(self.model, operation).inc()

    def emitted(self, reason: str) -> None:
        self.events.labels(self.model, reason).inc()
