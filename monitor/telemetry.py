"""Prometheus metrics of a learner process, declared once per registry.

Per-event latencies use microsecond-scale buckets: one SGD step on this model takes tens of
microseconds, so the default buckets (5 ms and up) would put every observation in the first one.

>>> import time

from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> m = LearnerMetrics(registry, "shop")
>>> m.events_consumed.inc(3)
>>> registry.get_sample_value("livelearn_events_consumed_total", {"model": "shop"})
3.0
"""

from __future__ import annotations

import time
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streaming.errors import ConfigError

__all__ = ["LearnerMetrics", "MonitorMetrics", "ServingMetrics", "EVENT_LATENCY_BUCKETS", "serve_metrics"]

#: Buckets (seconds) for one predict or learn step: 5 us .. 50 ms.
EVENT_LATENCY_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2)
#: Buckets (seconds) for one snapshot write: 0.5 ms .. 5 s.
SNAPSHOT_BUCKETS = (5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0, 5.0)


class LearnerMetrics:
    """Every metric a learner exports; each carries the ``model`` label."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        def labelled(metric):  # bind the model label once
            return metric.labels(model)

        kw = {"registry": registry}
        self.events_consumed = labelled(
            Counter("livelearn_events_consumed_total", "Records taken from the events topic.", ["model"], **kw))
        self.events_learned = labelled(
            Counter("livelearn_events_learned_total", "Labelled events the model learned from.", ["model"], **kw))
        self._dead_lettered = Counter(
            "livelearn_events_dead_lettered_total", "Events rejected to the dead-letter topic, by reason.",
            ["model", "reason"], **kw)
        self.predict_seconds = labelled(Histogram(
            "livelearn_predict_seconds", "Time to score one event.", ["model"], buckets=EVENT_LATENCY_BUCKETS, **kw))
        self.learn_seconds = labelled(Histogram(
            "livelearn_learn_seconds", "Time of one SGD step.", ["model"], buckets=EVENT_LATENCY_BUCKETS, **kw))
        self.snapshot_seconds = labelled(Histogram(
            "livelearn_snapshot_seconds", "Time to write one version to Redis.", ["model"],
            buckets=SNAPSHOT_BUCKETS, **kw))
        self.snapshot_bytes = labelled(
            Gauge("livelearn_snapshot_size_bytes", "Size of the newest snapshot blob.", ["model"], **kw))
        self.snapshot_timestamp = labelled(Gauge(
            "livelearn_snapshot_timestamp_seconds", "Unix time of the newest snapshot.", ["model"], **kw))
        self._last_snapshot_at = 0.0
        labelled(Gauge("livelearn_snapshot_age_seconds", "Seconds since the newest snapshot (0: none yet).",
                       ["model"], **kw)).set_function(
            lambda: time.time() - self._last_snapshot_at if self._last_snapshot_at else 0.0)
        self.head_version = labelled(
            Gauge("livelearn_learner_head_version", "Newest version of the learner lineage.", ["model"], **kw))
        self._rolling = Gauge(
            "livelearn_rolling_metric_ratio", "Rolling prequential metric, by name.", ["model", "metric"], **kw)
        self.consumer_lag = labelled(Gauge(
            "livelearn_consumer_lag_events", "High-water mark minus position, summed over partitions (NaN: unknown, "
            "Kafka unreachable).",
            ["model"], **kw))
        self.lease_held = labelled(
            Gauge("livelearn_lease_held", "1 while this process is the active learner.", ["model"], **kw))
        self.duplicates = labelled(Counter(
            "livelearn_events_duplicate_total", "Events skipped because their id was seen on the partition "
            "within the idempotence window.", ["model"], **kw))
        self.model_inputs = labelled(Gauge(
            "livelearn_model_inputs", "Inputs the model has learned (numeric features + categories).", ["model"], **kw))
        self._capped = Counter(
            "livelearn_inputs_capped_total", "Learned feature values beyond the size caps, by kind (category: "
            "folded into '__other__'; feature: ignored).", ["model", "kind"], **kw)
        for kind in ("category", "feature"):
            self._capped.labels(model, kind)
        self.redis_up = labelled(Gauge(
            "livelearn_redis_up", "0 while Redis is unreachable or refusing writes (the learner waits).",
            ["model"], **kw))
        self.redis_up.set(1)
        self._redis_outages = Counter(
            "livelearn_redis_outages_total", "Times the learner had to wait for Redis, by Redis error code "
            "(unreachable, OOM, MISCONF, READONLY, LOADING...).", ["model", "code"], **kw)
        self._redis_outages.labels(model, "unreachable")
        self.kafka_up = labelled(Gauge(
            "livelearn_kafka_up", "0 while no broker has answered for LIVELEARN_KAFKA_UNREACHABLE_SECONDS.",
            ["model"], **kw))
        self.kafka_up.set(1)
        self._capped_seen: dict[str, int] = {}
        self._model = model

    def snapshot_written(self, created_at: float, size_bytes: int, number: int) -> None:
        self._last_snapshot_at = created_at
        self.snapshot_timestamp.set(created_at)
        self.snapshot_bytes.set(size_bytes)
        self.head_version.set(number)

    def model_size(self, inputs: int, capped: dict[str, int], *, restored: bool = False) -> None:
        """Report the model's vocabulary size and what its caps turned away since the last call.

        ``capped`` holds the model's own running totals (kept in snapshots); with ``restored`` they are
        only taken as the new baseline, so a restart or rollback does not count old events again.
        """
        self.model_inputs.set(inputs)
        for kind, total in capped.items():
            delta = total - self._capped_seen.get(kind, 0)
            if delta > 0 and not restored:
                self._capped.labels(self._model, kind).inc(delta)
            self._capped_seen[kind] = total

    def redis_down(self, code: str) -> None:
        self.redis_up.set(0)
        self._redis_outages.labels(self._model, code).inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead_lettered.labels(self._model, reason).inc()

    def set_rolling(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            if name != "samples":
                self._rolling.labels(self._model, name).set(value)


class MonitorMetrics:
    """Metrics of a `livelearn monitor` process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        kw = {"registry": registry}
        self.rollbacks = Counter("livelearn_rollbacks_total", "Automatic rollbacks made by this monitor.",
                                 ["model"], **kw).labels(model)
        self.freezes = Counter("livelearn_freezes_total", "Times this monitor froze learning.", ["model"],
                               **kw).labels(model)
        self.threshold = Gauge("livelearn_threshold_ratio", "Threshold of the guarded metric.", ["model", "metric"],
                               **kw)
        self.metric = Gauge("livelearn_monitored_metric_ratio", "Last judged value of the guarded metric.",
                            ["model", "metric"], **kw)
        self.frozen = Gauge("livelearn_learning_frozen", "1 while learning is frozen.", ["model"], **kw).labels(model)
        self.alert = Gauge("livelearn_alert", "1 when an operator is needed (frozen, or no rollback target).",
                           ["model"], **kw).labels(model)
        self.head_version = Gauge("livelearn_monitor_head_version", "Head version seen by the monitor.", ["model"],
                                  **kw).labels(model)
        self.serving_version = Gauge("livelearn_serving_version", "Version serving follows.", ["model"],
                                     **kw).labels(model)
        self.pinned = Gauge("livelearn_pinned", "1 while a version is pinned.", ["model"], **kw).labels(model)


#: Buckets (seconds) for one HTTP prediction: 100 us .. 1 s.
REQUEST_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


class ServingMetrics:
    """Metrics of a `livelearn serve` process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        kw = {"registry": registry}
        self.request_seconds = Histogram("livelearn_serving_request_seconds", "Time to answer one request.",
                                         ["model", "route"], buckets=REQUEST_BUCKETS, **kw)
        self.predictions = Counter("livelearn_serving_predictions_total", "Predictions returned.", ["model"],
                                   **kw).labels(model)
        self.serving_version = Gauge("livelearn_serving_loaded_version", "Version loaded for serving.", ["model"],
                                     **kw).labels(model)
        self.swaps = Counter("livelearn_serving_swaps_total", "Serving model swaps.", ["model"], **kw).labels(model)


def serve_metrics(port: int, registry: CollectorRegistry = REGISTRY, host: str = "127.0.0.1") -> WSGIServer:
    """Expose ``registry`` on ``http://host:port/metrics`` from a daemon thread; returns the server.

    Raises :class:`ConfigError` naming the settings when the address cannot be bound (port in use,
    unknown host), instead of an ``OSError`` traceback.
    """
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); choose a free port with --metrics-port "
            "(LIVELEARN_METRICS_PORT) or another address with --metrics-host (LIVELEARN_METRICS_HOST)"
        ) from None
    return server
