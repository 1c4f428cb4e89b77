"""Prequential (test-then-train) evaluation with river's metrics, cumulative and rolling.

Each labelled event is scored *before* the model learns from it; the score feeds every metric twice:
once cumulatively since the first event, once over a rolling window — two
:class:`~monitor.metric_set.MetricSet` (river's metrics, the label ones sharing one confusion matrix).
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

import math
from typing import Any

from monitor.metric_set import LABEL_METRICS, METRICS, MetricSet, log_loss_of
from streaming.config import GuardSettings, Settings
from streaming.errors import SnapshotCorruptError

__all__ = ["LOWER_IS_BETTER", "METRICS", "PrequentialMetrics", "Threshold", "is_healthy", "meets_threshold"]

#: Metrics where a smaller value is better.
LOWER_IS_BETTER = frozenset({"log_loss"})
#: The layout of :meth:`PrequentialMetrics.dump_state` (1: one river metric per name, before 2026-11-28).
LAYOUT = 2


class PrequentialMetrics:
    """Cumulative and rolling metrics (:class:`~monitor.metric_set.MetricSet`) over (label, probability) pairs.

    The learner feeds it each labelled event's probability, scored before it learned the event; the rolling values
    are what it records in every metric sample and what the monitor judges. Its state is part of every snapshot
    (:meth:`dump_state`, :meth:`from_state`).

    Parameters
    ----------
    window
        Scored events in the rolling window (default ``1000``; ``LIVELEARN_ROLLING_WINDOW``).
    names
        The metrics to keep (default :data:`METRICS`: all of them); an unknown name is a ``ValueError``.

    Examples
    --------
    >>> pm = PrequentialMetrics(window=2, names=("accuracy", "log_loss"))
    >>> for y, p in [(True, 0.9), (False, 0.8), (False, 0.1)]:
    ...     pm.update(y, p)
    >>> pm.cumulative_values()
    {'accuracy': 0.6667, 'log_loss': 0.6067, 'samples': 3}
    >>> pm.rolling_values()  # the last two: (False, 0.8) is wrong, (False, 0.1) right
    {'accuracy': 0.5, 'log_loss': 0.8574, 'samples': 2}
    >>> pm.restart_window()  # after a rollback
    >>> pm.rolling_values()["samples"], pm.cumulative_values()["samples"]
    (0, 3)
    """

    def __init__(self, window: int = 1000, names: tuple[str, ...] = METRICS) -> None:
        unknown = set(names) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {sorted(METRICS)}")
        self.window = window
        self.names = names
        self.samples = 0
        self.cumulative = MetricSet(names)
        self.rolling = MetricSet(names, window)

    def restart_window(self) -> None:
        """Empty the rolling window (after a rollback: it must hold the new lineage's scores only)."""
        self.rolling = MetricSet(self.names, self.window)

    def update(self, y_true: bool, p_true: float) -> None:
        """Record one prequential score: the probability given *before* learning ``y_true``."""
        loss = log_loss_of(y_true, p_true) if "log_loss" in self.names else None  # once for both sets
        self.cumulative.update(y_true, p_true, loss)
        self.rolling.update(y_true, p_true, loss)
        self.samples += 1

    def update_many(self, ys: list[bool], ps: list[float]) -> None:
        """:meth:`update` for each pair in order: the same state to the last bit (:meth:`MetricSet.update_many`)."""
        losses = [log_loss_of(ys[i], ps[i]) for i in range(len(ys))] if "log_loss" in self.names else None
        self.cumulative.update_many(ys, ps, losses)
        self.rolling.update_many(ys, ps, losses)
        self.samples += len(ys)

    def cumulative_values(self) -> dict[str, float]:
        """Each metric over every scored event, plus ``samples``."""
        return {**self.cumulative.values(), "samples": self.samples}

    def rolling_values(self) -> dict[str, float]:
        """Each metric over the last ``window`` scored events, plus ``samples`` in the window."""
        return {**self.rolling.values(), "samples": len(self.rolling)}

    # -- learned state, as plain msgpack-able values (never pickled) --------------------------------
    def dump_state(self) -> dict[str, Any]:
        """The sufficient statistics of both sets and the rolling window's pairs (once)."""
        return {
            "layout": LAYOUT,
            "names": list(self.names),
            "window": self.window,
            "samples": self.samples,
            "cumulative": self.cumulative.dump(),
            "rolling": self.rolling.dump(),
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any], window: int) -> PrequentialMetrics:
        """Rebuild from :meth:`dump_state` output (either layout).

        If ``window`` differs from the stored one the old window cannot be resized exactly, so the
        rolling metrics start empty and only the cumulative ones carry over.

        >>> pm = PrequentialMetrics(window=2)
        >>> pm.update(True, 0.9); pm.update(False, 0.7)
        >>> PrequentialMetrics.from_state(pm.dump_state(), 2).rolling_values() == pm.rolling_values()
        True
        """
        try:
            if doc.get("layout") != LAYOUT:
                doc = _from_layout_1(doc)
            names = tuple(doc["names"])
            pm = cls(window=window, names=names)
            pm.samples = int(doc["samples"])
            pm.cumulative = MetricSet.from_doc(doc["cumulative"], names)
            if doc["window"] == window:
                pm.rolling = MetricSet.from_doc(doc["rolling"], names, window)
            return pm
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotCorruptError(f"metrics state is malformed ({exc!r}); pick another version") from None


def _from_layout_1(doc: dict[str, Any]) -> dict[str, Any]:
    """Layout 1 (one river metric per name, a rolling window per metric) as layout 2.

    The label metrics all held the same confusion matrix; the window's pairs come from the exact rolling
    AUC (``pairs``), else from log loss's window (``[y, p]``), else from a label metric's (``[y, p > 0.5]``,
    all those metrics need).
    """
    cumulative, rolling, names = doc["cumulative"], doc["rolling"], tuple(doc["cumulative"])
    label = next((name for name in names if name in LABEL_METRICS), None)
    empty_cm = {"cells": [], "n_samples": 0, "total_weight": 0.0, "sum_row": [], "sum_col": [], "true_positives": 0}
    auc = cumulative.get("roc_auc", {})
    new_cumulative = {
        "cm": cumulative[label]["cm"] if label else empty_cm,
        "log_loss": cumulative.get("log_loss"),
        "roc_auc": auc if "bins" in auc else {"bins": 4096, "positive": {}, "negative": {}},  # river's: afresh
    }
    if "pairs" in rolling.get("roc_auc", {}):
        pairs = rolling["roc_auc"]["pairs"]
    elif "log_loss" in rolling:
        pairs = rolling["log_loss"]["window"]
    else:
        pairs = [[y, 1.0 if y_label else 0.0] for y, y_label in rolling[label]["window"]] if label else []
    new_rolling = {
        "cm": rolling[label]["inner"]["cm"] if label else empty_cm,
        "log_loss": rolling["log_loss"]["inner"] if "log_loss" in rolling else None,
        "pairs": pairs,
    }
    return {**doc, "names": list(names), "cumulative": new_cumulative, "rolling": new_rolling}


def is_healthy(metric: str, value: float, threshold: float) -> bool:
    """The one threshold rule: ``value`` meets ``threshold`` (at or above it; at or below for log loss).

    >>> is_healthy("accuracy", 0.85, 0.8), is_healthy("log_loss", 0.5, 0.4)
    (True, False)
    """
    return value <= threshold if metric in LOWER_IS_BETTER else value >= threshold


def meets_threshold(
    rolling: dict[str, float], settings: GuardSettings | Settings, threshold: float | None = None
) -> bool:
    """Whether rolling values satisfy the monitor's metric and threshold with enough samples; ``threshold``
    overrides the configured one (relative mode), and is ``None`` while it cannot be known yet.

    >>> from streaming.config import GuardSettings, Settings
    >>> meets_threshold({"accuracy": 0.85, "samples": 500}, Settings())
    True
    >>> meets_threshold({"accuracy": 0.85, "samples": 50}, Settings()), meets_threshold(
    ...     {"log_loss": 0.3, "samples": 500}, Settings(monitor_metric="log_loss", monitor_threshold=0.4))
    (False, True)
    """
    guard = GuardSettings.of(settings)
    if rolling.get("samples", 0) < guard.min_samples or guard.metric not in rolling:
        return False
    if threshold is None and guard.threshold_mode == "relative":
        return False
    limit = guard.threshold if threshold is None else threshold
    return is_healthy(guard.metric, rolling[guard.metric], limit)


class Threshold:
    """The guarded metrics' bounds: ``monitor_threshold`` as it is (absolute mode), or ``monitor_relative_drop``
    below the metric's own healthy level (relative mode) — an exponential average of the sampled values that
    met the threshold (half-life ``reference_half_life_events``), known once it has seen
    ``reference_min_events`` events; and each further rule of ``monitor_also``
    (:class:`~streaming.config.MetricRule`), a relative one's healthy level learned the same way from the values
    that met it. Learners (stable versions) and monitors (breaches) keep the same one.

    >>> from streaming.config import GuardSettings, Settings
    >>> rule = Threshold(Settings(monitor_threshold_mode="relative", monitor_relative_drop=0.05,
    ...                           monitor_also=["recall:drop=0.5"], reference_min_events=200, monitor_min_samples=10))
    >>> rule.value() is None
    True
    >>> for _ in range(3):
    ...     rule.observe({"accuracy": 0.9, "recall": 0.4, "samples": 500})
    >>> round(rule.value(), 2), rule.limits()
    (0.85, {'recall': 0.2})
    >>> rule.breaches({"accuracy": 0.9, "recall": 0.1, "samples": 500})
    {'recall': 'recall 0.1000 below 0.2000 (recall:drop=0.5, healthy level 0.4000)'}
    >>> rule.meets({"accuracy": 0.9, "recall": 0.1, "samples": 500}), rule.meets({"accuracy": 0.9, "samples": 500})
    (False, True)
    """

    def __init__(self, settings: GuardSettings | Settings) -> None:
        self.guard = guard = GuardSettings.of(settings)
        blocks = max(guard.reference_half_life_events / guard.history_every_events, 1.0)
        self.alpha = 1 - 0.5 ** (1 / blocks)
        self.reference: float | None = None
        self.events = 0
        self.rules = guard.rules
        #: each relative further rule's healthy level and the events it was learned from
        self.levels: dict[str, list[Any]] = {rule.metric: [None, 0] for rule in self.rules if rule.relative}
        #: every guarded metric's healthy level, in either mode (not stored: the monitor's change points read it)
        self.healthy: dict[str, float] = {}

    def value(self) -> float | None:
        s = self.guard
        if s.threshold_mode == "absolute":
            return s.threshold
        if self.reference is None or self.events < s.reference_min_events:
            return None
        drop = s.relative_drop
        return self.reference + drop if s.metric in LOWER_IS_BETTER else self.reference - drop

    def limits(self) -> dict[str, float]:
        """The further rules' bounds known so far (a relative rule's once its level has seen enough events)."""
        out: dict[str, float] = {}
        for rule in self.rules:
            level, events = self.levels.get(rule.metric, (None, 0))
            limit = rule.limit(level if events >= self.guard.reference_min_events else None)
            if limit is not None:
                out[rule.metric] = limit
        return out

    def breaches(self, rolling: dict[str, float]) -> dict[str, str]:
        """The further rules ``rolling`` breaks: metric -> the breach in words (none while the window is short)."""
        if rolling.get("samples", 0) < self.guard.min_samples:
            return {}
        limits, out = self.limits(), {}
        for rule in self.rules:
            value, limit = rolling.get(rule.metric), limits.get(rule.metric)
            if value is None or limit is None or math.isnan(value) or rule.healthy(value, limit):
                continue
            side = "above" if rule.lower_is_better else "below"
            level = f", healthy level {self.levels[rule.metric][0]:.4f}" if rule.relative else ""
            out[rule.metric] = f"{rule.metric} {value:.4f} {side} {limit:.4f} ({rule.describe()}{level})"
        return out

    def meets(self, rolling: dict[str, float]) -> bool:
        """The guarded metric meets its threshold with enough samples and no further rule is broken."""
        return meets_threshold(rolling, self.guard, self.value()) and not self.breaches(rolling)

    def observe(self, rolling: dict[str, float]) -> None:
        """One metric sample (relative rules learn from those that meet their current bound; none from a sample
        judged on an incident's labels)."""
        s = self.guard
        if rolling.get("samples", 0) < s.min_samples or rolling.get("incident"):
            return
        value = rolling.get(s.metric)
        if s.threshold_mode == "relative" and value is not None:
            current = self.value()
            if current is None or is_healthy(s.metric, value, current):
                self.reference = (
                    value if self.reference is None else self.reference + self.alpha * (value - self.reference)
                )
                self.events += s.history_every_events
        self._observe_healthy(rolling)
        limits = self.limits()
        for metric, level in self.levels.items():
            value = rolling.get(metric)
            rule = next(rule for rule in self.rules if rule.metric == metric)
            if value is None or math.isnan(value):
                continue
            if metric in limits and not rule.healthy(value, limits[metric]):
                continue
            level[0] = value if level[0] is None else level[0] + self.alpha * (value - level[0])
            level[1] += s.history_every_events

    def _observe_healthy(self, rolling: dict[str, float]) -> None:
        """Each guarded metric's healthy level learns from the samples near it (no shortfall): a decline that stays
        within the bound does not drag the level down with it, so where the decline began stays visible."""
        primary, limits, short = self.value(), self.limits(), self.shortfalls(rolling)
        for metric in (self.guard.metric, *(rule.metric for rule in self.rules)):
            value = rolling.get(metric)
            if value is None or math.isnan(value) or short.get(metric, 0.0) > 0.0:
                continue
            limit = primary if metric == self.guard.metric else limits.get(metric)
            if limit is not None and not is_healthy(metric, value, limit):
                continue
            level = self.healthy.get(metric)
            self.healthy[metric] = value if level is None else level + self.alpha * (value - level)

    def shortfalls(self, rolling: dict[str, float]) -> dict[str, float]:
        """Each guarded metric's shortfall from its healthy level in ``rolling``, less half the margin its bound
        allows (:class:`~monitor.judge.Judge` keeps the last sample without one: the start of its rolling window is
        the change point of a later breach). Positive: worse than the level by more than that slack; only metrics
        with a level and a known bound.

        >>> from streaming.config import Settings
        >>> rule = Threshold(Settings(monitor_min_samples=10, monitor_also=[]))
        >>> rule.observe({"accuracy": 0.9, "samples": 100})  # healthy level 0.9; threshold 0.8: slack 0.05
        >>> {m: round(v, 3) for m, v in rule.shortfalls({"accuracy": 0.7, "samples": 100}).items()}
        {'accuracy': 0.15}
        """
        if rolling.get("samples", 0) < self.guard.min_samples:
            return {}
        limits, out = {self.guard.metric: self.value(), **self.limits()}, {}
        for metric, level in self.healthy.items():
            value, limit = rolling.get(metric), limits.get(metric)
            if value is None or limit is None or math.isnan(value):
                continue
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            slack = max(sign * (level - limit), 0.0) / 2
            out[metric] = sign * (level - value) - slack
        return out

    def dump(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"reference": self.reference, "events": self.events}
        if self.levels:
            doc["levels"] = {metric: list(level) for metric, level in self.levels.items()}
        return doc

    def load(self, doc: dict[str, Any] | None) -> None:
        if doc:
            self.reference, self.events = doc.get("reference"), int(doc.get("events", 0))
            for metric, (level, events) in (doc.get("levels") or {}).items():
                if metric in self.levels:  # a rule still configured keeps its level; a new one starts afresh
                    self.levels[metric] = [None if level is None else float(level), int(events)]
