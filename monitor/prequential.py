"""Prequential (test-then-train) evaluation with river's metrics, cumulative and rolling.

Each labelled event is scored *before* the model learns from it; the score feeds every metric twice:
once cumulatively since the first event, once over a rolling window (``river.utils.Rolling``).
Label metrics use the predicted label ``p > 0.5`` (river's own tie rule); probability metrics use ``p``.
ROC AUC is exact over the window and high-resolution over the stream (:mod:`monitor.auc`), not river's
10-threshold approximation. After a rollback the rolling window restarts empty (:meth:`restart_window`)
while the cumulative metrics keep counting every scored event.

>>> pm = PrequentialMetrics(window=2)
>>> for y, p in [(True, 0.9), (False, 0.8), (False, 0.1)]:
...     pm.update(y, p)
>>> round(pm.cumulative_values()["accuracy"], 4), pm.rolling_values()["accuracy"]
(0.6667, 0.5)
>>> pm.rolling_values()["samples"], pm.samples
(2, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from river import metrics, utils

from monitor.auc import BinnedAUC, RollingAUC
from streaming.config import Settings
from streaming.errors import SnapshotCorruptError

__all__ = ["LOWER_IS_BETTER", "METRICS", "PrequentialMetrics", "Threshold", "is_healthy", "meets_threshold"]

#: Metric names livelearn reports, and the river class behind each.
METRICS: dict[str, Callable[[], Any]] = {
    "accuracy": metrics.Accuracy,
    "precision": metrics.Precision,
    "recall": metrics.Recall,
    "f1": metrics.F1,
    "balanced_accuracy": metrics.BalancedAccuracy,
    "roc_auc": BinnedAUC,
    "log_loss": metrics.LogLoss,
}
#: Metrics where a smaller value is better.
LOWER_IS_BETTER = frozenset({"log_loss"})
_PROBA = frozenset({"roc_auc", "log_loss"})


class PrequentialMetrics:
    """Cumulative and rolling river metrics over (true label, predicted probability) pairs."""

    def __init__(self, window: int = 1000, names: tuple[str, ...] = tuple(METRICS)) -> None:
        unknown = set(names) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {sorted(METRICS)}")
        self.window = window
        self.names = names
        self.samples = 0
        self.cumulative = {name: METRICS[name]() for name in names}
        self.rolling: dict[str, Any] = {}
        self.restart_window()

    def restart_window(self) -> None:
        """Empty the rolling window (after a rollback: it must hold the new lineage's scores only)."""
        window = self.window
        self.rolling = {
            name: RollingAUC(window) if name == "roc_auc" else utils.Rolling(METRICS[name], window_size=window)
            for name in self.names
        }

    def update(self, y_true: bool, p_true: float) -> None:
        """Record one prequential score: the probability given *before* learning ``y_true``."""
        y_label = p_true > 0.5
        for name in self.names:
            y_pred = p_true if name in _PROBA else y_label
            self.cumulative[name].update(y_true, y_pred)
            self.rolling[name].update(y_true, y_pred)
        self.samples += 1

    @staticmethod
    def _values(table: dict[str, Any]) -> dict[str, float]:
        return {name: float(metric.get()) for name, metric in table.items()}

    def cumulative_values(self) -> dict[str, float]:
        """Each metric over every scored event, plus ``samples``."""
        return {**self._values(self.cumulative), "samples": self.samples}

    def rolling_values(self) -> dict[str, float]:
        """Each metric over the last ``window`` scored events, plus ``samples`` in the window."""
        first = next(iter(self.rolling.values()))
        return {**self._values(self.rolling), "samples": len(first.window)}

    # -- learned state, as plain msgpack-able values (never pickled) --------------------------------
    def dump_state(self) -> dict[str, Any]:
        """Every cumulative and rolling metric's sufficient statistics, and the rolling windows."""
        return {
            "window": self.window,
            "samples": self.samples,
            "cumulative": {name: _dump_metric(m) for name, m in self.cumulative.items()},
            "rolling": {name: _dump_metric(m) for name, m in self.rolling.items()},
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any], window: int) -> PrequentialMetrics:
        """Rebuild from :meth:`dump_state` output.

        If ``window`` differs from the stored one the old window cannot be resized exactly, so the
        rolling metrics start empty and only the cumulative ones carry over.

        >>> pm = PrequentialMetrics(window=2)
        >>> pm.update(True, 0.9); pm.update(False, 0.7)
        >>> PrequentialMetrics.from_state(pm.dump_state(), 2).rolling_values() == pm.rolling_values()
        True
        """
        try:
            names = tuple(doc["cumulative"])
            pm = cls(window=window, names=names)
            pm.samples = int(doc["samples"])
            for name in names:
                _load_metric(pm.cumulative[name], doc["cumulative"][name])
                if doc["window"] == window:
                    _load_metric(pm.rolling[name], doc["rolling"][name])
            return pm
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"metrics state is malformed ({exc!r}); pick another version") from None


def is_healthy(metric: str, value: float, threshold: float) -> bool:
    """The one threshold rule: ``value`` meets ``threshold`` (at or above it; at or below for log loss).

    >>> is_healthy("accuracy", 0.85, 0.8), is_healthy("log_loss", 0.5, 0.4)
    (True, False)
    """
    return value <= threshold if metric in LOWER_IS_BETTER else value >= threshold


def meets_threshold(rolling: dict[str, float], settings: Settings, threshold: float | None = None) -> bool:
    """Whether rolling values satisfy the monitor's metric and threshold with enough samples; ``threshold``
    overrides the configured one (relative mode), and is ``None`` while it cannot be known yet.

    >>> from streaming.config import Settings
    >>> meets_threshold({"accuracy": 0.85, "samples": 500}, Settings())
    True
    >>> meets_threshold({"accuracy": 0.85, "samples": 50}, Settings()), meets_threshold(
    ...     {"log_loss": 0.3, "samples": 500}, Settings(monitor_metric="log_loss", monitor_threshold=0.4))
    (False, True)
    """
    if rolling.get("samples", 0) < settings.monitor_min_samples or settings.monitor_metric not in rolling:
        return False
    if threshold is None and settings.monitor_threshold_mode == "relative":
        return False
    limit = settings.monitor_threshold if threshold is None else threshold
    return is_healthy(settings.monitor_metric, rolling[settings.monitor_metric], limit)


class Threshold:
    """The guarded metric's threshold: ``monitor_threshold`` as it is (absolute mode), or ``monitor_relative_drop``
    below the metric's own healthy level (relative mode) — an exponential average of the sampled values that
    met the threshold (half-life ``reference_half_life_events``), known once it has seen
    ``reference_min_events`` events. Learners (stable versions) and monitors (breaches) keep the same one.

    >>> from streaming.config import Settings
    >>> rule = Threshold(Settings(monitor_threshold_mode="relative", monitor_relative_drop=0.05,
    ...                           reference_min_events=200, monitor_min_samples=10))
    >>> rule.value() is None
    True
    >>> for _ in range(3):
    ...     rule.observe({"accuracy": 0.9, "samples": 500})
    >>> round(rule.value(), 2)
    0.85
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        blocks = max(settings.reference_half_life_events / settings.history_every_events, 1.0)
        self.alpha = 1 - 0.5 ** (1 / blocks)
        self.reference: float | None = None
        self.events = 0

    def value(self) -> float | None:
        s = self.settings
        if s.monitor_threshold_mode == "absolute":
            return s.monitor_threshold
        if self.reference is None or self.events < s.reference_min_events:
            return None
        drop = s.monitor_relative_drop
        return self.reference + drop if s.monitor_metric in LOWER_IS_BETTER else self.reference - drop

    def observe(self, rolling: dict[str, float]) -> None:
        """One metric sample (relative mode learns from those that meet the current threshold)."""
        s = self.settings
        value = rolling.get(s.monitor_metric)
        if s.monitor_threshold_mode == "absolute" or value is None or rolling.get("samples", 0) < s.monitor_min_samples:
            return
        current = self.value()
        if current is not None and not is_healthy(s.monitor_metric, value, current):
            return
        self.reference = value if self.reference is None else self.reference + self.alpha * (value - self.reference)
        self.events += s.history_every_events

    def dump(self) -> dict[str, Any]:
        return {"reference": self.reference, "events": self.events}

    def load(self, doc: dict[str, Any] | None) -> None:
        if doc:
            self.reference, self.events = doc.get("reference"), int(doc.get("events", 0))


# -- the metrics' state codec ---------------------------------------------------------------------------
def _dump_cm(cm: metrics.ConfusionMatrix) -> dict[str, Any]:
    return {
        "cells": [[t, p, w] for t, row in cm.data.items() for p, w in row.items()],
        "n_samples": cm.n_samples,
        "total_weight": cm.total_weight,
        "sum_row": list(cm.sum_row.items()),
        "sum_col": list(cm.sum_col.items()),
        "true_positives": cm._total_true_positives,
    }


def _load_cm(cm: metrics.ConfusionMatrix, doc: dict[str, Any]) -> None:
    for t, p, w in doc["cells"]:
        cm.data[t][p] = w
    cm.n_samples = doc["n_samples"]
    cm.total_weight = doc["total_weight"]
    cm.sum_row.update(dict(doc["sum_row"]))
    cm.sum_col.update(dict(doc["sum_col"]))
    cm._total_true_positives = doc["true_positives"]


def _dump_metric(metric: Any) -> dict[str, Any]:
    if isinstance(metric, RollingAUC | BinnedAUC):
        return metric.dump()
    if isinstance(metric, utils.Rolling):
        window = [list(args) for args, _kwargs in metric.window]
        return {"window": window, "inner": _dump_metric(metric.obj)}
    if isinstance(metric, metrics.ROCAUC):
        return {"cms": [_dump_cm(cm) for cm in metric.cms]}
    if isinstance(metric, metrics.base.MeanMetric):
        return {"n": metric._mean.n, "mean": metric._mean._mean}
    if isinstance(getattr(metric, "cm", None), metrics.ConfusionMatrix):
        return {"cm": _dump_cm(metric.cm)}
    raise TypeError(f"no snapshot codec for metric {type(metric).__name__}")


def _load_metric(metric: Any, doc: dict[str, Any]) -> None:
    if isinstance(metric, RollingAUC | BinnedAUC):
        if "cms" in doc or "window" in doc:
            return  # written by river's ROCAUC before livelearn 2026-11: start this metric afresh
        metric.load(doc)
    elif isinstance(metric, utils.Rolling):
        metric.window.extend((tuple(args), {}) for args in doc["window"])
        _load_metric(metric.obj, doc["inner"])
    elif isinstance(metric, metrics.ROCAUC):
        for cm, cm_doc in zip(metric.cms, doc["cms"], strict=True):
            _load_cm(cm, cm_doc)
    elif isinstance(metric, metrics.base.MeanMetric):
        metric._mean.n, metric._mean._mean = doc["n"], doc["mean"]
    else:
        _load_cm(metric.cm, doc["cm"])
