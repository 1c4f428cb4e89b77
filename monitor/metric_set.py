"""One set of prequential metrics over (label, probability) pairs, cumulative or over a rolling window.

The five label metrics (accuracy, precision, recall, F1, balanced accuracy) are river's, sharing **one**
river ``ConfusionMatrix`` (river's ``cm=`` parameter): one update per event feeds all five. Log loss is
river's ``LogLoss``; ROC AUC is :class:`~monitor.auc.BinnedAUC` over the stream or
:class:`~monitor.auc.RollingAUC` (exact) over the window. A rolling set keeps the window's pairs once and
reverts the oldest pair before adding a new one, as ``river.utils.Rolling`` does, so every value equals
river's own metric to the last digit at about a third of the cost of fourteen separate metrics.

>>> cumulative, rolling = MetricSet(("accuracy", "f1", "log_loss")), MetricSet(("accuracy", "f1"), window=2)
>>> for y, p in [(True, 0.9), (False, 0.8), (False, 0.1)]:
...     cumulative.update(y, p)
...     rolling.update(y, p)
>>> round(cumulative.values()["accuracy"], 4), rolling.values()["accuracy"], len(rolling)
(0.6667, 0.5, 2)
>>> MetricSet.from_doc(rolling.dump(), ("accuracy", "f1"), window=2).values() == rolling.values()
True
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

from river import metrics

from monitor.auc import BinnedAUC, RollingAUC
from streaming.river_internals import mean_state, running_mean, set_mean_state, set_total_true_positives

__all__ = ["LABEL_METRICS", "METRICS", "MetricSet", "dump_cm", "load_cm", "log_loss_of"]

_LOW, _HIGH = 1e-15, 1 - 1e-15  # river's MeanMetric._clamp_proba bounds

#: The label metrics (``p > 0.5``, river's own tie rule) and the river class behind each.
LABEL_METRICS: dict[str, Callable[..., Any]] = {
    "accuracy": metrics.Accuracy,
    "precision": metrics.Precision,
    "recall": metrics.Recall,
    "f1": metrics.F1,
    "balanced_accuracy": metrics.BalancedAccuracy,
}
#: Every metric livelearn reports, in report order.
METRICS = (*LABEL_METRICS, "roc_auc", "log_loss")


class MetricSet:
    """The metrics ``names`` over every pair (``window=None``) or over the last ``window`` pairs."""

    def __init__(self, names: tuple[str, ...] = METRICS, window: int | None = None) -> None:
        self.names, self.window = names, window
        self.cm: Any = metrics.ConfusionMatrix()  # type: ignore[no-untyped-call]
        self.label = {name: LABEL_METRICS[name](cm=self.cm) for name in names if name in LABEL_METRICS}
        self.log_loss: Any = metrics.LogLoss() if "log_loss" in names else None  # type: ignore[no-untyped-call]
        self._loss_mean: Any = None if self.log_loss is None else running_mean(self.log_loss)  # river's stats.Mean
        self.auc: RollingAUC | BinnedAUC | None = None
        if "roc_auc" in names:
            self.auc = BinnedAUC() if window is None else RollingAUC(window)
        self._auc_update = None if self.auc is None else self.auc.update
        #: the window's (label, probability, its log loss or None): the loss is kept to revert it exactly
        self.pairs: collections.deque[tuple[bool, float, float | None]] = collections.deque()

    def update(self, y_true: bool, p_true: float, loss: float | None = None) -> None:
        """One scored event: its true label and the probability given before learning it (``loss``: its log
        loss, :func:`log_loss_of`, when the caller has it already).

        River's own calls on the parts the metrics share, not on each metric: the one confusion matrix's
        ``update``/``revert`` (what each label metric's ``update`` does), log loss's running mean's (what
        ``LogLoss.update`` does once the pair's loss is known: computed once for both sets), the AUC's bins — so
        every value stays river's to the last digit.
        """
        cm, mean = self.cm if self.label else None, self._loss_mean
        if self.window is not None:
            pairs = self.pairs
            if len(pairs) == self.window:  # the oldest pair leaves first, as in river.utils.Rolling
                old_y, old_p, old_loss = pairs.popleft()
                if cm is not None:
                    cm.revert(old_y, old_p > 0.5)
                if old_loss is not None:
                    mean.revert(old_loss)
            if mean is not None and loss is None:
                loss = log_loss_of(y_true, p_true)
            pairs.append((y_true, p_true, loss if mean is not None else None))
        if cm is not None:
            cm.update(y_true, p_true > 0.5)
        if mean is not None:
            mean.update(log_loss_of(y_true, p_true) if loss is None else loss)
        if self._auc_update is not None:
            self._auc_update(y_true, p_true)

    def update_many(self, ys: list[bool], ps: list[float], losses: list[float] | None = None) -> None:
        """:meth:`update` for each pair in order (``losses``: each pair's log loss, when the caller has them).

        The same state to the last bit: the log loss's running mean and the window's pairs move pair by pair as
        :meth:`update` moves them (their floats depend on the order); the confusion matrix's cells and the binned
        AUC's bins are counts, added (and, leaving the window, subtracted) once per run, each key inserted where
        its first pair would insert it (river's matrix is a map of maps: its order is in the state).

        >>> one, many = MetricSet(window=3), MetricSet(window=3)
        >>> pairs = [(True, 0.9), (False, 0.7), (True, 0.2), (False, 0.1), (True, 0.6)]
        >>> for y, p in pairs:
        ...     one.update(y, p)
        >>> many.update_many([y for y, _ in pairs], [p for _, p in pairs])
        >>> many.dump() == one.dump() and many.values() == one.values()
        True
        """
        n = len(ys)
        if not n:
            return
        mean = self._loss_mean
        if mean is None:
            losses = None  # no log loss here: the window keeps none (as update)
        elif losses is None:
            losses = [log_loss_of(ys[i], ps[i]) for i in range(n)]
        labelled = bool(self.label)
        added: collections.Counter[tuple[bool, bool]] = collections.Counter()
        reverted: collections.Counter[tuple[bool, bool]] = collections.Counter()
        if labelled:
            added.update(zip(ys, [p > 0.5 for p in ps], strict=True))
        # river's stats.Mean, step for step (update: n += 1; mean += (1 / n)(x - mean); revert: n -= 1; mean = 0 at
        # n = 0, else mean -= (1 / n)(x - mean)), on locals: the same floats as its update and revert one by one
        n_loss, mean_loss = mean_state(mean) if mean is not None else (0.0, 0.0)
        if self.window is not None:
            pairs, window = self.pairs, self.window
            popleft, append = pairs.popleft, pairs.append
            for i in range(n):
                if len(pairs) == window:  # the oldest pair leaves first, as in river.utils.Rolling
                    old_y, old_p, old_loss = popleft()
                    if labelled:
                        reverted[old_y, old_p > 0.5] += 1
                    if old_loss is not None:
                        n_loss -= 1.0
                        if n_loss < 0:
                            raise ValueError("Cannot go below 0")
                        mean_loss = 0.0 if n_loss == 0 else mean_loss - (1.0 / n_loss) * (old_loss - mean_loss)
                if losses is None:
                    append((ys[i], ps[i], None))
                else:
                    loss = losses[i]
                    append((ys[i], ps[i], loss))
                    n_loss += 1.0
                    mean_loss += (1.0 / n_loss) * (loss - mean_loss)
        elif losses is not None:
            for loss in losses:
                n_loss += 1.0
                mean_loss += (1.0 / n_loss) * (loss - mean_loss)
        if mean is not None:
            set_mean_state(mean, n_loss, mean_loss)
        if labelled:
            cm = self.cm
            for (y_true, y_pred), count in added.items():  # (in first-seen order: river's keys as one by one)
                cm.update(y_true, y_pred, float(count))
                cm.n_samples += count - 1
            for (y_true, y_pred), count in reverted.items():
                cm.revert(y_true, y_pred, float(count))
                cm.n_samples -= count - 1
        if self.auc is not None:
            self.auc.update_many(ys, ps)

    def __len__(self) -> int:
        """Pairs in the window (rolling); for a cumulative set, use the caller's own count."""
        return len(self.pairs)

    def values(self) -> dict[str, float]:
        """Each metric's value, in ``names`` order."""
        table: dict[str, Any] = {**self.label, "log_loss": self.log_loss, "roc_auc": self.auc}
        return {name: float(table[name].get()) for name in self.names}

    # -- learned state, as plain msgpack-able values (never pickled) --------------------------------
    def dump(self) -> dict[str, Any]:
        """The confusion matrix, log loss and AUC statistics, and the window's pairs (rolling)."""
        doc: dict[str, Any] = {"cm": dump_cm(self.cm)}
        if self.log_loss is not None:
            n, mean = mean_state(self._loss_mean)
            doc["log_loss"] = {"n": n, "mean": mean}
        if isinstance(self.auc, BinnedAUC):
            doc["roc_auc"] = self.auc.dump()
        if self.window is not None:
            doc["pairs"] = [[y, p] for y, p, _ in self.pairs]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], names: tuple[str, ...], window: int | None = None) -> MetricSet:
        """Rebuild from :meth:`dump` output (the rolling AUC from the window's pairs)."""
        new = cls(names, window)
        load_cm(new.cm, doc["cm"])
        if new.log_loss is not None:
            set_mean_state(new._loss_mean, doc["log_loss"]["n"], doc["log_loss"]["mean"])
        if isinstance(new.auc, BinnedAUC):
            new.auc.load(doc["roc_auc"])
        for stored_y, stored_p in doc.get("pairs", []) if window is not None else []:
            y, p = bool(stored_y), float(stored_p)
            new.pairs.append((y, p, None if new.log_loss is None else log_loss_of(y, p)))
            if isinstance(new.auc, RollingAUC):
                new.auc.update(y, p)
        return new


def log_loss_of(y_true: bool, p_true: float) -> float:
    """River's ``LogLoss`` of one pair: the probability clamped to [1e-15, 1 - 1e-15] as river does.

    >>> river_log_loss = metrics.LogLoss()
    >>> river_log_loss.update(True, 1.0)
    >>> log_loss_of(True, 1.0) == river_log_loss.get()
    True
    """
    p = _HIGH if p_true > _HIGH else _LOW if p_true < _LOW else p_true  # max(min(p, _HIGH), _LOW), NaN kept
    return -math.log(p) if y_true else -math.log(1 - p)


def dump_cm(cm: metrics.ConfusionMatrix) -> dict[str, Any]:
    """A river confusion matrix as plain values."""
    return {
        "cells": [[t, p, w] for t, row in cm.data.items() for p, w in row.items()],
        "n_samples": cm.n_samples,
        "total_weight": cm.total_weight,
        "sum_row": list(cm.sum_row.items()),
        "sum_col": list(cm.sum_col.items()),
        "true_positives": cm.total_true_positives,
    }


def load_cm(cm: metrics.ConfusionMatrix, doc: dict[str, Any]) -> None:
    """Fill an empty confusion matrix from :func:`dump_cm` output."""
    for t, p, w in doc["cells"]:
        cm.data[t][p] = w
    cm.n_samples = doc["n_samples"]
    cm.total_weight = doc["total_weight"]
    cm.sum_row.update(dict(doc["sum_row"]))
    cm.sum_col.update(dict(doc["sum_col"]))
    set_total_true_positives(cm, doc["true_positives"])
