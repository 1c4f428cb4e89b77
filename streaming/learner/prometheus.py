"""Prometheus metrics of a learner process, declared once per registry.

Per-event latencies use microsecond-scale buckets: one SGD step on this model takes tens of
microseconds, so the default buckets (5 ms and up) would put every observation in the first one.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> m = LearnerMetrics(registry, "shop")
>>> m.events_consumed.inc(3)
>>> registry.get_sample_value("livelearn_events_consumed_total", {"model": "shop"})
3.0

Every dead-letter reason is counted from 0 at start, so a dashboard shows 0 rather than "No data" until the first
dead letter:

>>> registry.get_sample_value("livelearn_events_dead_lettered_total", {"model": "shop", "reason": "non_finite"})
0.0

Each challenger's comparison with the champion, as the status says it (:meth:`LearnerMetrics.set_challengers`):

>>> m.set_challengers({"fast": {"learned": 3412, "rolling": {"log_loss": 0.31}, "comparison": {"labels": 3412,
...     "relative_gain": 0.021, "gain_lower": 0.004, "gain_upper": None, "decision": "promote"}}})
>>> registry.get_sample_value("livelearn_challenger_relative_gain_ratio", {"model": "shop", "arm": "fast",
...                                                                     "bound": "lower"})
0.004
>>> registry.get_sample_value("livelearn_challenger_decision", {"model": "shop", "arm": "fast", "decision": "worse"})
0.0
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from streaming.learner.join import COUNTS as _JOIN_COUNTS
from streaming.observability import counter, gauge, histogram

__all__ = [
    "DEAD_LETTER_REASONS",
    "DECISIONS",
    "EVENT_LATENCY_BUCKETS",
    "LABEL_DELAY_BUCKETS",
    "SNAPSHOT_BUCKETS",
    "LearnerMetrics",
]

#: Buckets (seconds) for one predict or learn step: 5 us .. 50 ms.
EVENT_LATENCY_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2)
#: Buckets (seconds) for one snapshot write: 0.5 ms .. 5 s.
SNAPSHOT_BUCKETS = (5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0, 5.0)
#: Buckets (seconds) for a label's delay after its event, in event time: 1 s .. 1 day.
LABEL_DELAY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21_600.0, 86_400.0)
#: The reasons an event is dead-lettered for (``EventError.reason``, raised by :mod:`streaming.events`; a test holds
#: the two together), each series of ``livelearn_events_dead_lettered_total`` created at 0.
DEAD_LETTER_REASONS = (
    "bad_feature_name",
    "bad_field",
    "bad_label",
    "bad_shape",
    "bad_string",
    "bad_type",
    "non_finite",
    "not_a_label",
    "oversized",
    "too_many_features",
    "undecodable",
)
#: A challenger's decisions (:class:`monitor.compare.ComparisonResult`; a test holds the two together), each a series of
#: ``livelearn_challenger_decision``.
DECISIONS = ("promote", "worse", "undecided")
#: The bounds of ``livelearn_challenger_relative_gain_ratio`` and the status fields they come from.
_GAIN_BOUNDS = {"point": "relative_gain", "lower": "gain_lower", "upper": "gain_upper"}


class LearnerMetrics:
    """Every metric a learner exports; each carries the ``model`` label."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        self._model = model
        self.events_consumed = counter(
            "livelearn_events_consumed_total", "Records taken from the events topic.", registry, model
        )
        self.events_learned = counter(
            "livelearn_events_learned_total", "Labelled events the model learned from.", registry, model
        )
        self.duplicates = counter(
            "livelearn_events_duplicate_total",
            "Events skipped because their id was seen on the partition within the idempotence window.",
            registry,
            model,
        )
        self._dead_lettered = Counter(
            "livelearn_events_dead_lettered_total",
            "Events rejected to the dead-letter topic, by reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.predict_seconds = histogram(
            "livelearn_predict_seconds",
            "Time to score one event (one in 16 is timed; in a run of events stepped together: the run's mean per "
            "event, scoring and learning).",
            registry,
            model,
            EVENT_LATENCY_BUCKETS,
        )
        self.learn_seconds = histogram(
            "livelearn_learn_seconds",
            "Time of one SGD step (one in 16 is timed).",
            registry,
            model,
            EVENT_LATENCY_BUCKETS,
        )
        self.snapshot_seconds = histogram(
            "livelearn_snapshot_seconds", "Time to write one version to Redis.", registry, model, SNAPSHOT_BUCKETS
        )
        self.snapshot_bytes = gauge(
            "livelearn_snapshot_size_bytes", "Size of the newest snapshot blob.", registry, model
        )
        self.snapshot_timestamp = gauge(
            "livelearn_snapshot_timestamp_seconds", "Unix time of the newest snapshot.", registry, model
        )
        self._last_snapshot_at = 0.0
        gauge(
            "livelearn_snapshot_age_seconds", "Seconds since the newest snapshot (0: none yet).", registry, model
        ).set_function(lambda: time.time() - self._last_snapshot_at if self._last_snapshot_at else 0.0)
        self.head_version = gauge(
            "livelearn_learner_head_version", "Newest version of the learner lineage.", registry, model
        )
        self._rolling = Gauge(
            "livelearn_rolling_metric_ratio",
            "Rolling prequential metric, by name.",
            ["model", "metric"],
            registry=registry,
        )
        self.consumer_lag = gauge(
            "livelearn_consumer_lag_events",
            "High-water mark minus position, summed over partitions (NaN: unknown, Kafka unreachable).",
            registry,
            model,
        )
        self.lease_held = gauge("livelearn_lease_held", "1 while this process is the active learner.", registry, model)
        self.model_inputs = gauge(
            "livelearn_model_inputs", "Inputs the model has learned (numeric features + categories).", registry, model
        )
        self._capped = Counter(
            "livelearn_inputs_capped_total",
            "Learned feature values beyond the size caps, by "
            "kind (category: folded into '__other__'; feature: ignored).",
            ["model", "kind"],
            registry=registry,
        )
        self._capped_seen: dict[str, int] = {}
        self.redis_up = gauge(
            "livelearn_redis_up",
            "0 while Redis is unreachable or refusing writes (the learner waits).",
            registry,
            model,
        )
        self._redis_outages = Counter(
            "livelearn_redis_outages_total",
            "Times the learner had to wait for Redis, by "
            "Redis error code (unreachable, OOM, MISCONF, READONLY, LOADING...).",
            ["model", "code"],
            registry=registry,
        )
        self.kafka_up = gauge(
            "livelearn_kafka_up",
            "0 while no broker has answered for LIVELEARN_KAFKA_UNREACHABLE_SECONDS.",
            registry,
            model,
        )
        self.incidents = counter(
            "livelearn_incidents_total", "Data-quality incidents this learner opened.", registry, model
        )
        self.reference_gate_failures = counter(
            "livelearn_reference_gate_failures_total",
            "Versions that met the threshold but scored worse than serving on the reference set (kept, not stable).",
            registry,
            model,
        )
        self.partial_confirmations = counter(
            "livelearn_partial_block_confirmations_total",
            "Timed snapshots confirmed stable between metric samples, on the block so far (promotion guard).",
            registry,
            model,
        )
        self.labels_consumed = counter(
            "livelearn_labels_consumed_total",
            "Label records taken (labels topic, or label records on the events topic).",
            registry,
            model,
        )
        self._label_outcomes = Counter(
            "livelearn_label_outcomes_total",
            "What the label join did, by outcome (matched, expired, evicted, late, duplicates, orphaned, "
            "orphans_expired, orphans_evicted, conflicts, inline, pending_in: streaming.learner.join).",
            ["model", "outcome"],
            registry=registry,
        )
        self._label_seen: dict[str, int] = {}
        self.label_delay = histogram(
            "livelearn_label_delay_seconds",
            "Event time from an event to its label, for the labels joined.",
            registry,
            model,
            LABEL_DELAY_BUCKETS,
        )
        self.labels_pending = gauge(
            "livelearn_labels_pending_events", "Scored events waiting for their labels.", registry, model
        )
        self.labels_pending_bytes = gauge(
            "livelearn_labels_pending_bytes", "Bytes of the events waiting (packed features).", registry, model
        )
        self.labels_oldest_pending = gauge(
            "livelearn_labels_oldest_pending_seconds",
            "Event time the oldest waiting event has waited (0: none waits).",
            registry,
            model,
        )
        self.labels_orphans = gauge("livelearn_labels_orphans", "Labels held for events not seen yet.", registry, model)
        self.label_coverage = gauge(
            "livelearn_label_coverage_ratio",
            "Share of the events whose wait ended that got their label (matched + inline over those plus expired "
            "and evicted; NaN before any).",
            registry,
            model,
        )
        self._challenger_labels = Gauge(
            "livelearn_challenger_labels",
            "Labelled events each challenger was compared with the champion on (as of the version: a rollback "
            "rewinds it).",
            ["model", "arm"],
            registry=registry,
        )
        self._challenger_gain = Gauge(
            "livelearn_challenger_relative_gain_ratio",
            "Each challenger's relative log-loss gain over the champion (bound point) and its anytime-valid "
            "confidence interval (lower, upper; NaN while infinite, before 2 labels).",
            ["model", "arm", "bound"],
            registry=registry,
        )
        self._challenger_log_loss = Gauge(
            "livelearn_challenger_log_loss",
            "Each challenger's rolling log loss (the champion's: livelearn_rolling_metric_ratio{metric=log_loss}).",
            ["model", "arm"],
            registry=registry,
        )
        self._challenger_learned = Gauge(
            "livelearn_challenger_learned_events",
            "Events each challenger learned (as of the version: a rollback rewinds it).",
            ["model", "arm"],
            registry=registry,
        )
        self._challenger_decision = Gauge(
            "livelearn_challenger_decision",
            "1 for each challenger's current decision (promote, worse, undecided), 0 for the others.",
            ["model", "arm", "decision"],
            registry=registry,
        )
        self._arms: set[str] = set()
        for outcome in _JOIN_COUNTS:
            self._label_outcomes.labels(model, outcome)
        for kind in ("category", "feature"):
            self._capped.labels(model, kind)
        for reason in DEAD_LETTER_REASONS:
            self._dead_lettered.labels(model, reason)
        self._redis_outages.labels(model, "unreachable")
        self.redis_up.set(1)
        self.kafka_up.set(1)

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

    def label_join(self, figures: dict[str, int | float | None], *, restored: bool = False) -> None:
        """Report the label join (:meth:`~streaming.learner.join.LabelJoin.figures`); the outcome counts are the
        join's running totals (kept in versions): with ``restored`` only taken as the baseline, as
        :meth:`model_size` does. (The delays go to :attr:`label_delay` as they are taken.)"""
        for outcome in _JOIN_COUNTS:
            total = int(figures.get(outcome) or 0)
            delta = total - self._label_seen.get(outcome, 0)
            if delta > 0 and not restored:
                self._label_outcomes.labels(self._model, outcome).inc(delta)
            self._label_seen[outcome] = total
        self.labels_pending.set(figures.get("pending") or 0)
        self.labels_pending_bytes.set(figures.get("pending_bytes") or 0)
        self.labels_oldest_pending.set(figures.get("oldest_pending_seconds") or 0)
        self.labels_orphans.set(figures.get("orphans") or 0)
        coverage = figures.get("coverage")
        self.label_coverage.set(float("nan") if coverage is None else coverage)

    def set_challengers(self, arms: Mapping[str, Any] | None) -> None:
        """Report each challenger's figures as the status gives them (:meth:`streaming.learner.arms.Arm.summary`;
        ``None``: no challengers). An arm no longer reported loses its series, so none stays frozen at old values."""
        arms = arms or {}
        model = self._model
        for name in self._arms - set(arms):
            self._drop_challenger(name)
        self._arms = set(arms)
        for name, arm in arms.items():
            comparison = arm["comparison"]
            self._challenger_labels.labels(model, name).set(comparison["labels"])
            self._challenger_learned.labels(model, name).set(arm["learned"])
            log_loss = arm["rolling"].get("log_loss")  # None: nothing scored yet (a challenger just started)
            self._challenger_log_loss.labels(model, name).set(math.nan if log_loss is None else log_loss)
            for bound, field in _GAIN_BOUNDS.items():
                value = comparison[field]  # None: the interval is still infinite
                self._challenger_gain.labels(model, name, bound).set(math.nan if value is None else value)
            for decision in DECISIONS:
                self._challenger_decision.labels(model, name, decision).set(comparison["decision"] == decision)

    def _drop_challenger(self, name: str) -> None:
        model = self._model
        for series in (self._challenger_labels, self._challenger_log_loss, self._challenger_learned):
            series.remove(model, name)
        for bound in _GAIN_BOUNDS:
            self._challenger_gain.remove(model, name, bound)
        for decision in DECISIONS:
            self._challenger_decision.remove(model, name, decision)

    def redis_down(self, code: str) -> None:
        self.redis_up.set(0)
        self._redis_outages.labels(self._model, code).inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead_lettered.labels(self._model, reason).inc()

    def set_rolling(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            if name != "samples":
                self._rolling.labels(self._model, name).set(value)
