"""Explicit learned state of the model and its metrics, as plain msgpack-able values.

Nothing here is pickled: every field is named and typed, and restoring builds a fresh pipeline
from the spec and fills in these numbers. Dict order is kept (msgpack maps keep it), which matters:
the weight vector's iteration order decides the order of float additions in the dot product, so a
restored model gives bit-identical predictions and learns bit-identically afterwards.

>>> from streaming.model import ModelSpec, OnlineModel
>>> a = OnlineModel(ModelSpec())
>>> a.learn_one({"x": 2.0, "c": "u"}, True)
>>> b = OnlineModel(ModelSpec())
>>> load_model_state(b, dump_model_state(a))
>>> a.predict_proba_one({"x": 1.0}) == b.predict_proba_one({"x": 1.0})
True
"""

from __future__ import annotations

import collections
from typing import Any

from river import metrics, utils

from monitor.prequential import PrequentialMetrics
from streaming.errors import SnapshotCorruptError
from streaming.model import OTHER, OnlineModel

__all__ = ["dump_model_state", "load_model_state", "dump_metrics_state", "load_metrics_state"]


def dump_model_state(model: OnlineModel) -> dict[str, Any]:
    """The scaler statistics, weights, intercept and optimizer step counter of ``model``."""
    scaler, clf = model.scaler, model.classifier
    return {
        "scaler": {
            "counts": dict(scaler.counts),
            "means": dict(scaler.means),
            "vars": dict(scaler.vars),
        },
        "weights": clf._weights.to_dict(),
        "intercept": clf.intercept,
        "optimizer_iterations": clf.optimizer.n_iterations,
        "vocabulary": {
            "categories": {name: list(values) for name, values in model.categories.items()},
            "numeric": list(model.numeric),
            "capped": dict(model.capped),
        },
    }


def load_model_state(model: OnlineModel, state: dict[str, Any]) -> None:
    """Fill a freshly built ``model`` with ``state`` from :func:`dump_model_state`."""
    try:
        scaler, clf = model.scaler, model.classifier
        scaler.counts = collections.Counter(state["scaler"]["counts"])
        scaler.means = collections.defaultdict(float, state["scaler"]["means"])
        scaler.vars = collections.defaultdict(float, state["scaler"]["vars"])
        clf._weights = utils.VectorDict(dict(state["weights"]))
        clf.intercept = float(state["intercept"])
        clf.optimizer.n_iterations = int(state["optimizer_iterations"])
        vocabulary = state.get("vocabulary") or {}  # absent in snapshots written before the caps existed
        model.categories = {name: dict.fromkeys(values) for name, values in vocabulary.get("categories", {}).items()}
        model.numeric = dict.fromkeys(vocabulary.get("numeric", ()))
        model.inputs = len(model.numeric) + sum(len(v) - (OTHER in v) for v in model.categories.values())
        model.capped = {"category": 0, "feature": 0, **vocabulary.get("capped", {})}
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotCorruptError(f"model state is malformed ({exc!r}); pick another version") from None


# -- metrics --------------------------------------------------------------------------------------
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
    if isinstance(metric, utils.Rolling):
        metric.window.extend((tuple(args), {}) for args in doc["window"])
        _load_metric(metric.obj, doc["inner"])
    elif isinstance(metric, metrics.ROCAUC):
        for cm, cm_doc in zip(metric.cms, doc["cms"], strict=True):
            _load_cm(cm, cm_doc)
    elif isinstance(metric, metrics.base.MeanMetric):
        metric._mean.n, metric._mean._mean = doc["n"], doc["mean"]
    else:
        _load_cm(metric.cm, doc["cm"])


def dump_metrics_state(pm: PrequentialMetrics) -> dict[str, Any]:
    """Every cumulative and rolling metric's sufficient statistics, and the rolling windows."""
    return {
        "window": pm.window,
        "samples": pm.samples,
        "cumulative": {name: _dump_metric(m) for name, m in pm.cumulative.items()},
        "rolling": {name: _dump_metric(m) for name, m in pm.rolling.items()},
    }


def load_metrics_state(doc: dict[str, Any], window: int) -> PrequentialMetrics:
    """Rebuild :class:`PrequentialMetrics`.

    If ``window`` differs from the stored one the old window cannot be resized exactly, so the
    rolling metrics start empty and only the cumulative ones carry over.
    """
    try:
        names = tuple(doc["cumulative"])
        pm = PrequentialMetrics(window=window, names=names)
        pm.samples = int(doc["samples"])
        for name in names:
            _load_metric(pm.cumulative[name], doc["cumulative"][name])
            if doc["window"] == window:
                _load_metric(pm.rolling[name], doc["rolling"][name])
        return pm
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotCorruptError(f"metrics state is malformed ({exc!r}); pick another version") from None
