"""Prometheus metrics of a `livelearn serve` process, declared once per registry.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> ServingMetrics(registry, "shop").predictions.inc()
>>> registry.get_sample_value("livelearn_serving_predictions_total", {"model": "shop"})
1.0
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from streaming.observability import counter, gauge

__all__ = ["REQUEST_BUCKETS", "ServingMetrics"]

#: Buckets (seconds) for one HTTP prediction: 100 us .. 1 s.
REQUEST_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


class ServingMetrics:
    """Metrics of a `livelearn serve` process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        self.request_seconds = Histogram(
            "livelearn_serving_request_seconds",
            "Time to answer one request.",
            ["model", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.predictions = counter("livelearn_serving_predictions_total", "Predictions returned.", registry, model)
        self.serving_version = gauge("livelearn_serving_loaded_version", "Version loaded for serving.", registry, model)
        self.swaps = counter("livelearn_serving_swaps_total", "Serving model swaps.", registry, model)
