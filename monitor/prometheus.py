"""Prometheus metrics of a `livelearn monitor` process, declared once per registry.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> MonitorMetrics(registry, "shop").rollbacks.inc()
>>> registry.get_sample_value("livelearn_rollbacks_total", {"model": "shop"})
1.0
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from streaming.observability import counter, gauge

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    """Metrics of a `livelearn monitor` process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        self.rollbacks = counter(
            "livelearn_rollbacks_total", "Automatic rollbacks made by this monitor.", registry, model
        )
        self.freezes = counter("livelearn_freezes_total", "Times this monitor froze learning.", registry, model)
        self.threshold = Gauge(
            "livelearn_threshold_ratio", "Threshold of the guarded metric.", ["model", "metric"], registry=registry
        )
        self.metric = Gauge(
            "livelearn_monitored_metric_ratio",
            "Last judged value of the guarded metric.",
            ["model", "metric"],
            registry=registry,
        )
        self.frozen = gauge("livelearn_learning_frozen", "1 while learning is frozen.", registry, model)
        self.alert = gauge(
            "livelearn_alert",
            "1 while an operator is needed: learning frozen, a confirmed breach suppressed, the monitor's checks "
            "failing (until one works), a control action failed (until one succeeds).",
            registry,
            model,
        )
        self.head_version = gauge(
            "livelearn_monitor_head_version", "Head version seen by the monitor.", registry, model
        )
        self.serving_version = gauge("livelearn_serving_version", "Version serving follows.", registry, model)
        self.pinned = gauge("livelearn_pinned", "1 while a version is pinned.", registry, model)
        self.suppressed = counter(
            "livelearn_breaches_suppressed_total",
            "Confirmed breaches during a cooldown (reported once per cooldown).",
            registry,
            model,
        )
        self.incident_open = gauge(
            "livelearn_incident_open", "1 while a data-quality incident is open.", registry, model
        )
        self.backup_age = gauge(
            "livelearn_backup_age_seconds",
            "Seconds since the last completed `livelearn backup` of the model; with none, since its oldest stored "
            "version was written (0 with no version).",
            registry,
            model,
        )
        self.redis_up = gauge(
            "livelearn_redis_up",
            "0 while Redis is unreachable or refusing writes (the monitor waits).",
            registry,
            model,
        )
        self._redis_outages = Counter(
            "livelearn_redis_outages_total",
            "Times the monitor had to wait for Redis, by Redis error code (unreachable, OOM, MISCONF, READONLY...).",
            ["model", "code"],
            registry=registry,
        )
        self._model = model
        self._redis_outages.labels(model, "unreachable")
        self.redis_up.set(1)
        self.feature_drift = Counter(
            "livelearn_feature_drift_total",
            "Drift reports on a tracked numeric feature's block means, by feature.",
            ["model", "feature"],
            registry=registry,
        )

    def redis_down(self, code: str) -> None:
        """An outage began: ``livelearn_redis_up`` 0, and one more outage of that code."""
        self.redis_up.set(0)
        self._redis_outages.labels(self._model, code).inc()
