"""Prequential (test-then-train) evaluation with river's metrics, cumulative and rolling.

Each labelled event is scored *before* the model learns from it; the score feeds every metric twice:
once cumulatively since the first event, once over a rolling window (``river.utils.Rolling``).
Label metrics use the predicted label ``p > 0.5`` (river's own tie rule); probability metrics use ``p``.

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

from river import metrics, utils

__all__ = ["PrequentialMetrics", "METRICS", "LOWER_IS_BETTER", "meets_threshold"]

#: Metric names livelearn reports, and the river class behind each.
METRICS: dict[str, Callable[[], metrics.base.Metric]] = {
    "accuracy": metrics.Accuracy,
    "precision": metrics.Precision,
    "recall": metrics.Recall,
    "f1": metrics.F1,
    "balanced_accuracy": metrics.BalancedAccuracy,
    "roc_auc": metrics.ROCAUC,
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
        self.rolling = {name: utils.Rolling(METRICS[name], window_size=window) for name in names}

    def update(self, y_true: bool, p_true: float) -> None:
        """Record one prequential score: the probability given *before* learning ``y_true``."""
        y_label = p_true > 0.5
        for name in self.names:
            y_pred = p_true if name in _PROBA else y_label
            self.cumulative[name].update(y_true, y_pred)
            self.rolling[name].update(y_true, y_pred)
        self.samples += 1

    @staticmethod
    def _values(table: dict) -> dict[str, float]:
        return {name: float(metric.get()) for name, metric in table.items()}

    def cumulative_values(self) -> dict[str, float]:
        """Each metric over every scored event, plus ``samples``."""
        return {**self._values(self.cumulative), "samples": self.samples}

    def rolling_values(self) -> dict[str, float]:
        """Each metric over the last ``window`` scored events, plus ``samples`` in the window."""
        first = next(iter(self.rolling.values()))
        return {**self._values(self.rolling), "samples": len(first.window)}


def meets_threshold(rolling: dict[str, float], settings) -> bool:
    """Whether rolling values satisfy the monitor's metric and threshold with enough samples.

    >>> from streaming.config import Settings
    >>> meets_threshold({"accuracy": 0.85, "samples": 500}, Settings())
    True
    >>> meets_threshold({"accuracy": 0.85, "samples": 50}, Settings()), meets_threshold(
    ...     {"log_loss": 0.3, "samples": 500}, Settings(monitor_metric="log_loss", monitor_threshold=0.4))
    (False, True)
    """
    if rolling.get("samples", 0) < settings.monitor_min_samples:
        return False
    value = rolling[settings.monitor_metric]
    if settings.monitor_metric in LOWER_IS_BETTER:
        return value <= settings.monitor_threshold
    return value >= settings.monitor_threshold
