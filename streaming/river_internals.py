"""River's learned state where river offers no API for it, read and written in this one module.

A snapshot holds the learned state as plain values and restores it bit for bit. River keeps part of that state
where only its own code goes: the weights of ``LogisticRegression`` (``_weights``, read through the public
``weights``, written only here), the running mean behind ``LogLoss`` (``MeanMetric._mean``, a ``stats.Mean`` whose
value is ``Mean._mean``) and the confusion matrix's true positives (``ConfusionMatrix._total_true_positives``).
Restoring also rebuilds public containers with the exact types river's ``learn_one`` expects (the scaler's
``Counter`` and ``defaultdict(float)`` maps). Every attribute of a river object that livelearn's snapshots read or
write directly, rather than through a river method, is listed in :data:`RELIED_ON` with the type it holds once the
object has learned one event; ``tests/test_river_internals.py`` checks each against the installed river and names
the attribute and river's version when an upgrade renames or retypes one (a renamed private attribute would
otherwise be set beside the real one, silently: the restored model would learn from zero).

Everywhere else livelearn reaches river through its public API (methods, and the public attributes listed here), so
these functions are the whole of its dependence on river's private layout.

>>> from river import linear_model
>>> clf = linear_model.LogisticRegression()
>>> set_weights(clf, {"a": 0.5, "b": -1.0})
>>> weights_of(clf), clf.predict_proba_one({"a": 2.0})[True]
({'a': 0.5, 'b': -1.0}, 0.7310585786300049)
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from river import stats, utils

__all__ = [
    "RELIED_ON",
    "Relied",
    "buffer_rolling_auc",
    "gaussian_state",
    "mean_state",
    "running_mean",
    "scaler_state",
    "set_gaussian_state",
    "set_mean_state",
    "set_scaler_state",
    "set_total_true_positives",
    "set_weights",
    "weights_of",
]


@dataclasses.dataclass(frozen=True)
class Relied:
    """One attribute of a river object that a snapshot reads or writes directly."""

    owner: str  #: river's class name of the object
    attribute: str  #: the attribute, dotted from the object
    kind: type  #: the type it holds once the object has learned one event
    default: Callable[[], Any] | None = None  #: a ``defaultdict``'s ``default_factory``, which restores rebuild


#: Every attribute :mod:`streaming.model` and :mod:`monitor.metric_set` reach without a river method, through here.
RELIED_ON = (
    Relied("LogisticRegression", "_weights", utils.VectorDict),
    Relied("LogisticRegression", "weights", dict),
    Relied("LogisticRegression", "intercept", float),
    Relied("LogisticRegression", "optimizer.n_iterations", int),
    Relied("StandardScaler", "counts", collections.Counter),
    Relied("StandardScaler", "means", collections.defaultdict, float),
    Relied("StandardScaler", "vars", collections.defaultdict, float),
    Relied("LogLoss", "_mean", stats.Mean),
    Relied("Mean", "n", float),
    Relied("Mean", "_mean", float),
    Relied("ConfusionMatrix", "data", collections.defaultdict),
    Relied("ConfusionMatrix", "n_samples", int),
    Relied("ConfusionMatrix", "total_weight", float),
    Relied("ConfusionMatrix", "sum_row", collections.defaultdict, float),
    Relied("ConfusionMatrix", "sum_col", collections.defaultdict, float),
    Relied("ConfusionMatrix", "_total_true_positives", float),
    Relied("ConfusionMatrix", "total_true_positives", float),
    Relied("PAClassifier", "weights", collections.defaultdict, float),
    Relied("PAClassifier", "intercept", float),
    Relied("ALMAClassifier", "w", collections.defaultdict, float),
    Relied("ALMAClassifier", "k", int),
    Relied("GaussianNB", "class_counts", collections.Counter),
    Relied("GaussianNB", "gaussians", collections.defaultdict),
    Relied("Gaussian", "_var", stats.Var),
    Relied("Var", "_S", float),
    Relied("Var", "mean", stats.Mean),
    Relied("RollingROCAUC", "_buf_labels", list),
    Relied("RollingROCAUC", "_buf_scores", list),
)


# -- LogisticRegression ------------------------------------------------------------------------------------------------
def weights_of(classifier: Any) -> dict[str, float]:
    """A copy of a river linear model's weights, in the order river created them (the order of its dot product)."""
    weights: dict[str, float] = classifier.weights
    return weights


def set_weights(classifier: Any, weights: dict[str, float]) -> None:
    """Give a river linear model ``weights`` (kept in their order), as :func:`weights_of` returned them."""
    classifier._weights = utils.VectorDict(weights)


# -- StandardScaler ----------------------------------------------------------------------------------------------------
def scaler_state(scaler: Any) -> dict[str, dict[str, Any]]:
    """Copies of a river ``StandardScaler``'s ``counts``, ``means`` and ``vars``, in river's orders."""
    return {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)}


def set_scaler_state(
    scaler: Any, counts: Mapping[str, int], means: Mapping[str, float], variances: Mapping[str, float]
) -> None:
    """Fill a fresh river ``StandardScaler`` with :func:`scaler_state`'s maps, as the types its ``learn_one`` and
    ``transform_one`` expect (a feature it never saw reads as 0 from ``means`` and ``vars``).

    >>> from river import preprocessing
    >>> scaler = preprocessing.StandardScaler()
    >>> set_scaler_state(scaler, {"x": 2}, {"x": 1.0}, {"x": 4.0})
    >>> scaler.transform_one({"x": 3.0, "y": 1.0}), scaler_state(scaler)["counts"]
    ({'x': 1.0, 'y': 0.0}, {'x': 2})
    """
    scaler.counts = collections.Counter(counts)
    scaler.means = collections.defaultdict(float, means)
    scaler.vars = collections.defaultdict(float, variances)


# -- LogLoss and its running mean --------------------------------------------------------------------------------------
def running_mean(metric: Any) -> Any:
    """The ``stats.Mean`` a river mean metric (``LogLoss``) keeps: its ``update``/``revert`` are the metric's, once
    the metric's own per-pair value is known (river's ``MeanMetric.update`` is ``_mean.update(_eval(...))``)."""
    return metric._mean


def mean_state(mean: Any) -> tuple[float, float]:
    """A river ``stats.Mean`` as ``(n, mean)``."""
    return mean.n, mean.get()


def set_mean_state(mean: Any, n: float, value: float) -> None:
    """Give a river ``stats.Mean`` the state :func:`mean_state` returned.

    >>> from river import metrics
    >>> log_loss = metrics.LogLoss()
    >>> set_mean_state(running_mean(log_loss), 2.0, 0.25)
    >>> log_loss.get(), mean_state(running_mean(log_loss))
    (0.25, (2.0, 0.25))
    """
    mean.n, mean._mean = n, value


# -- GaussianNB --------------------------------------------------------------------------------------------------------
def gaussian_state(gaussian: Any) -> list[float]:
    """A river ``proba.Gaussian`` as ``[n, mean, S]`` (its running mean and sum of squared deviations, exactly: the
    variance alone would not give ``S`` back bit for bit)."""
    var = gaussian._var
    return [var.mean.n, var.mean._mean, var._S]


def set_gaussian_state(gaussian: Any, n: float, mean: float, s: float) -> None:
    """Give a fresh river ``proba.Gaussian`` the state :func:`gaussian_state` returned."""
    var = gaussian._var
    var.mean.n, var.mean._mean, var._S = n, mean, s


# -- ConfusionMatrix ---------------------------------------------------------------------------------------------------
def set_total_true_positives(cm: Any, total: float) -> None:
    """Give a river ``ConfusionMatrix`` its true positives over every class (read: ``cm.total_true_positives``);
    the rest of its state is public (``data``, ``n_samples``, ``total_weight``, ``sum_row``, ``sum_col``)."""
    cm._total_true_positives = total


# -- RollingROCAUC -----------------------------------------------------------------------------------------------------
def buffer_rolling_auc(metric: Any, ys: list[bool], ps: list[float]) -> None:
    """River's ``RollingROCAUC.update`` for each ``(label, score)`` pair in order, in one step: river's ``update``
    appends each pair to two buffers (``int(label)``, the score) that its Rust window takes, in order, when the
    metric is next read or reverted; here a run's pairs join the same buffers at once.

    >>> from river import metrics
    >>> one, many = metrics.RollingROCAUC(window_size=3), metrics.RollingROCAUC(window_size=3)
    >>> pairs = [(True, 0.9), (False, 0.7), (True, 0.2), (False, 0.1)]
    >>> for y, p in pairs:
    ...     one.update(y, p)
    >>> buffer_rolling_auc(many, [y for y, _ in pairs], [p for _, p in pairs])
    >>> one.get() == many.get()
    True
    """
    metric._buf_labels.extend(map(int, ys))
    metric._buf_scores.extend(ps)
