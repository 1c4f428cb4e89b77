"""A plain in-process river loop, written from river's primitives only, to check the learner against."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from river import compose, linear_model, metrics, optim, preprocessing

from streaming.events import Event


def contract_features(event: Event) -> dict:
    """Features as the event contract hands them to the model: booleans become categories."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in event.features.items()}


def plain_river_pipeline(lr: float = 0.01, l2: float = 0.0) -> compose.Pipeline:
    """The default pipeline, built from river's primitives: scaler on numbers, one-hot on strings, SGD."""
    return compose.Pipeline(
        compose.TransformerUnion(
            compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
            compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
        ),
        linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2),
    )


def plain_river_loop(events: Iterable[Event], lr: float = 0.01):
    """Prequential logistic regression; returns (pipeline, cumulative Accuracy, learned count)."""
    model = plain_river_pipeline(lr)
    accuracy = metrics.Accuracy()
    learned = 0
    for event in events:
        x = contract_features(event)
        accuracy.update(event.label, model.predict_one(x))
        model.learn_one(x, event.label)
        learned += 1
    return model, accuracy, learned


def river_state(model) -> dict:
    """Weights, intercept and scaler statistics of a pipeline from :func:`plain_river_loop`, in the
    learner's snapshot layout (``state.model``), to compare them exactly."""
    union = model.steps["TransformerUnion"]
    scaler = next(
        step
        for branch in union.transformers.values()
        for step in branch.steps.values()
        if isinstance(step, preprocessing.StandardScaler)
    )
    classifier = model.steps["LogisticRegression"]
    return {
        "weights": classifier._weights.to_dict(),
        "intercept": classifier.intercept,
        "scaler": {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)},
    }
