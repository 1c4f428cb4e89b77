"""Prequential metrics (real F1, not the seed article's) and the Prometheus metric names."""

from __future__ import annotations

import bisect
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from reference import contract_features
from river import metrics, utils

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import pack, unpack
from streaming.learner.prometheus import LearnerMetrics
from streaming.local.dataset import read_events
from streaming.model import ModelSpec, OnlineModel

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


def exact_auc(pairs: list[tuple[bool, float]]) -> float:
    """Mann-Whitney: the share of (positive, negative) pairs ranked right, ties one half."""
    positives = sorted(p for y, p in pairs if y)
    negatives = sorted(p for y, p in pairs if not y)
    wins = 0.0
    for p in positives:
        below = bisect.bisect_left(negatives, p)
        ties = bisect.bisect_right(negatives, p) - below
        wins += below + ties / 2
    return wins / (len(positives) * len(negatives))


def test_roc_auc_is_exact_over_the_window_and_within_a_thousandth_over_the_stream():
    model, pm, pairs = OnlineModel(ModelSpec()), PrequentialMetrics(window=1000), []
    river_default = metrics.ROCAUC()
    for event in read_events():
        x = contract_features(event)
        p = model.predict_proba_one(x)
        pm.update(event.label, p)
        river_default.update(event.label, p)
        pairs.append((event.label, p))
        model.learn_one(x, event.label)
    exact = exact_auc(pairs)
    assert pm.rolling_values()["roc_auc"] == pytest.approx(exact_auc(pairs[-1000:]), abs=1e-12)
    assert abs(pm.cumulative_values()["roc_auc"] - exact) < 0.001
    assert exact - river_default.get() > 0.01  # what river's default 10 thresholds would have reported


def test_a_restarted_window_forgets_but_the_cumulative_metrics_keep_counting():
    pm = PrequentialMetrics(window=3)
    for y, p in PAIRS:
        pm.update(y, p)
    cumulative = pm.cumulative_values()
    pm.restart_window()
    assert pm.rolling_values()["samples"] == 0
    assert pm.cumulative_values() == cumulative
    pm.update(True, 0.9)
    assert pm.rolling_values()["samples"] == 1
    assert pm.cumulative_values()["samples"] == len(PAIRS) + 1


def river_values(pairs: list[tuple[bool, float]], window: int | None) -> dict[str, float]:
    """Each label metric and log loss as its own river object (``utils.Rolling`` for a window)."""
    classes = {"accuracy": metrics.Accuracy, "precision": metrics.Precision, "recall": metrics.Recall}
    classes |= {"f1": metrics.F1, "balanced_accuracy": metrics.BalancedAccuracy, "log_loss": metrics.LogLoss}
    values = {}
    for name, cls in classes.items():
        metric = cls() if window is None else utils.Rolling(cls, window_size=window)
        for y, p in pairs:
            metric.update(y, p if name == "log_loss" else p > 0.5)
        values[name] = metric.get()
    return values


def test_one_shared_confusion_matrix_gives_river_values_to_the_last_digit():
    rng = random.Random(3)
    pairs = [(rng.random() < 0.3, rng.random()) for _ in range(2500)] + [(True, 0.5), (False, 0.5)]  # ties at 0.5
    pm = PrequentialMetrics(window=700)
    for y, p in pairs:
        pm.update(y, p)
    cumulative, rolling = pm.cumulative_values(), pm.rolling_values()
    for name, value in river_values(pairs, None).items():
        assert cumulative[name] == value, name
    for name, value in river_values(pairs, 700).items():
        assert rolling[name] == value, name
    restored = PrequentialMetrics.from_state(unpack(pack(pm.dump_state())), 700)
    assert (restored.cumulative_values(), restored.rolling_values()) == (cumulative, rolling)


def test_metrics_written_in_the_older_layout_restore_and_go_on_exactly():
    """A snapshot's metrics as written before the shared matrix (one river metric and window per name)."""
    old = unpack((Path(__file__).parent / "data" / "metrics_layout1.msgpack").read_bytes())
    pairs = [(bool(y), float(p)) for y, p in old["pairs"]]
    restored = PrequentialMetrics.from_state(old["state"], 500)
    assert restored.cumulative_values() == old["cumulative"]
    assert restored.rolling_values() == old["rolling"]
    fresh = PrequentialMetrics(window=500)  # the same stream, never written
    for y, p in pairs[: old["learned"]]:
        fresh.update(y, p)
    for y, p in pairs[old["learned"] :]:
        restored.update(y, p)
        fresh.update(y, p)
    assert restored.rolling_values() == fresh.rolling_values()
    assert restored.cumulative_values() == fresh.cumulative_values()


def test_inlined_updates_keep_river_state_exactly_at_the_clamps_and_through_reverts():
    """The set's inlined arithmetic (confusion matrix counts, log loss mean, reverts) against river's own calls,
    with probabilities at and beyond the clamp bounds and a window reverted many times over."""
    rng = random.Random(11)
    extremes = [0.0, 1.0, 1e-20, 1 - 1e-17, 0.5, 1e-15, 1 - 1e-15]
    pairs = [(rng.random() < 0.5, rng.choice(extremes) if rng.random() < 0.3 else rng.random()) for _ in range(600)]
    pm = PrequentialMetrics(window=5)
    reference_cm = metrics.ConfusionMatrix()
    rolling_loss = utils.Rolling(metrics.LogLoss, window_size=5)
    for y, p in pairs:
        pm.update(y, p)
        reference_cm.update(y, p > 0.5)
        rolling_loss.update(y, p)
    assert pm.cumulative_values() == {**river_values(pairs, None), "roc_auc": pm.cumulative_values()["roc_auc"],
                                      "samples": len(pairs)}  # fmt: skip
    assert {k: v for k, v in pm.rolling_values().items() if k in river_values(pairs, 5)} == river_values(pairs, 5)
    assert pm.rolling.log_loss._mean.n == rolling_loss.obj._mean.n
    assert pm.rolling.log_loss._mean._mean == rolling_loss.obj._mean._mean
    cm = pm.cumulative.cm
    assert (cm.data, cm.n_samples, cm.total_weight) == (
        reference_cm.data,
        reference_cm.n_samples,
        reference_cm.total_weight,
    )
    assert (cm.sum_row, cm.sum_col, cm._total_true_positives) == (
        reference_cm.sum_row, reference_cm.sum_col, reference_cm._total_true_positives,
    )  # fmt: skip


def test_the_binned_auc_counts_a_run_as_pair_by_pair_and_reads_its_bins_as_the_maps_hold_them():
    """``BinnedAUC.update_many`` (numpy: the product, toward zero, clamped) counts each pair in the bin ``update``
    counts it in — scores at and past the edges, negative, tiny, huge — each bin where its first pair is counted;
    ``get`` reads the same value from its arrays as the maps give, also after a reload and reverts; a NaN or an
    infinity raises as ``update`` raises, before anything is counted."""
    from monitor.auc import BinnedAUC

    rng = random.Random(7)
    edges = [0.0, -0.0, 1.0, 1 - 2**-53, 2**-12, 4095 / 4096, 4095.9999 / 4096, 1e-320, -1e-300, -5.0, 7.5, 1e300]
    scores = edges + [rng.choice([rng.random(), rng.uniform(-2, 2), rng.random() * 1e-3]) for _ in range(3000)]
    labels = [rng.random() < 0.4 for _ in scores]
    one, many = BinnedAUC(), BinnedAUC()
    for y, p in zip(labels, scores, strict=True):
        one.update(y, p)
    for i in range(0, len(scores), 37):
        many.update_many(labels[i : i + 37], scores[i : i + 37])
    assert many.dump() == one.dump() and list(many.positive) == list(one.positive)
    assert list(many.negative) == list(one.negative)
    loop = BinnedAUC()  # the maps' own value (the loop get takes past 2^51 pairs)
    loop.load(one.dump())
    for y, p in zip(labels[:500], scores[:500], strict=True):
        one.revert(y, p)
        many.revert(y, p)
        loop.revert(y, p)
    below, wins = 0, 0.0
    for b in sorted(loop.positive.keys() | loop.negative.keys()):
        pos, neg = loop.positive.get(b, 0), loop.negative.get(b, 0)
        wins += pos * (below + neg / 2)
        below += neg
    expected = wins / (sum(loop.positive.values()) * sum(loop.negative.values()))
    assert one.get() == many.get() == loop.get() == expected
    for bad in (float("nan"), float("inf"), 1e308):
        with pytest.raises((ValueError, OverflowError)) as raised:
            BinnedAUC().update(True, bad)
        fresh = BinnedAUC()
        with pytest.raises(raised.type):
            fresh.update_many([False, True], [0.5, bad])
        assert not fresh.positive and not fresh.negative and fresh.get() == 0.0
