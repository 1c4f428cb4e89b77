"""Prequential metrics (real F1, not the seed article's) and the Prometheus metric names."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from monitor.prequential import PrequentialMetrics
from streaming.learner.telemetry import LearnerMetrics

PAIRS = [(True, 0.9), (True, 0.4), (False, 0.6), (False, 0.2), (True, 0.7), (False, 0.1), (False, 0.3)]


def test_f1_is_the_harmonic_mean_of_precision_and_recall():
    pm = PrequentialMetrics(window=100)
    for y, p in PAIRS:
        pm.update(y, p)
    tp, fp, fn = 2, 1, 1
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    values = pm.cumulative_values()
    assert values["precision"] == pytest.approx(precision)
    assert values["recall"] == pytest.approx(recall)
    assert values["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    accuracy = values["accuracy"]
    assert values["f1"] != pytest.approx(2 * accuracy * recall / (accuracy + recall))  # the article's formula


def test_rolling_window_forgets_old_events():
    pm = PrequentialMetrics(window=3)
    for y, p in PAIRS:
        pm.update(y, p)
    assert pm.rolling_values()["samples"] == 3
    assert pm.samples == 7
    assert pm.rolling_values()["accuracy"] == pytest.approx(1.0)  # the last three are all right
    assert pm.cumulative_values()["accuracy"] == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="unknown metrics"):
        PrequentialMetrics(names=("accuracy", "nope"))


def test_learner_metrics_on_an_isolated_registry():
    registry = CollectorRegistry()
    m = LearnerMetrics(registry, "shop")
    m.dead_lettered("non_finite")
    m.learn_seconds.observe(3e-5)
    m.set_rolling({"accuracy": 0.91, "samples": 10})
    sample = registry.get_sample_value
    assert sample("livelearn_events_dead_lettered_total", {"model": "shop", "reason": "non_finite"}) == 1
    assert sample("livelearn_learn_seconds_bucket", {"model": "shop", "le": "5e-05"}) == 1
    assert sample("livelearn_learn_seconds_bucket", {"model": "shop", "le": "2.5e-05"}) == 0
    assert sample("livelearn_rolling_metric_ratio", {"model": "shop", "metric": "accuracy"}) == 0.91
    assert sample("livelearn_rolling_metric_ratio", {"model": "shop", "metric": "samples"}) is None
