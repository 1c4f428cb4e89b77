"""The offline (mini-batch) update of the original design: θ ← θ − α · (1/m) · Σᵢ ∇J(θ; xᵢ, yᵢ), several epochs.

``livelearn rebuild run --mode batch`` learns a range of history this way instead of event by event. What it
computes, exactly (a plain numpy loop over the same definition agrees to 1e-12, ``tests/test_minibatch.py``):

1. **Inputs.** The kept events of the range in read order (decoded and checked as the learner does, duplicates of
   the base's idempotence window and of each other dropped, unlabelled and dead-lettered records skipped) go
   through the model's vocabulary (feature selection and size caps) and its scaler learns from each, in order, as
   river's ``StandardScaler.learn_one`` does (running count, mean and variance; the one-hot encoder learns nothing).
2. **Design matrix.** Each event is transformed with the scaler as it stands after the last event (river's
   ``transform_one``: numbers standardised, strings one-hot as ``feature_value``): a row over the weights' names —
   the base's, in their order, then each new name where it first appears.
3. **Gradient steps.** For each epoch, the rows are shuffled by ``numpy.random.default_rng(seed)`` (one generator
   for the whole run: epoch e uses its e-th permutation) and cut into batches of ``m`` (the last may be smaller);
   for each batch B, with p = σ(X_B·w + b) and g = p − y_B (the log loss's gradient in the score):
   ``w ← w − α · (X_Bᵀ·g / |B| + 2·λ·w)`` and ``b ← b − α_b · mean(g)``, α the model's learning rate, α_b river's
   intercept rate (0.01), λ its ``l2``.

The result is written as a version of the branch (its step counter advanced by the number of batches); no
prediction is scored before learning, so the version's metrics are the base's, and `rebuild show` scores it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.engines import restore_model
from streaming.errors import EventError
from streaming.events import Event, EventLimits, decode_event
from streaming.model import OnlineModel
from streaming.river_internals import set_weights, weights_of

__all__ = ["fit_minibatch", "run_batch_rebuild"]

Matrix = npt.NDArray[np.float64]


def fit_minibatch(
    x: Matrix,
    y: Matrix,
    w: Matrix,
    b: float,
    *,
    lr: float,
    intercept_lr: float,
    l2: float,
    batch_size: int,
    epochs: int,
    seed: int,
    on_epoch: Callable[[], object] | None = None,
) -> tuple[Matrix, float, int]:
    """Mini-batch gradient descent of a logistic regression from ``(w, b)`` over rows ``x`` with labels ``y`` (0/1);
    returns the weights, the intercept and the number of steps taken.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> w, b, steps = fit_minibatch(x, np.array([1.0, 0.0, 1.0]), np.zeros(2), 0.0, lr=0.5, intercept_lr=0.5,
    ...                             l2=0.0, batch_size=2, epochs=3, seed=7)
    >>> steps, bool(w[0] > 0 > w[1])
    (6, True)
    """
    w = np.array(w, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n, steps = len(y), 0
    for _epoch in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            xb, yb = x[rows], y[rows]
            p = 1.0 / (1.0 + np.exp(-(xb @ w + b)))
            g = p - yb
            w = w - lr * (xb.T @ g / len(rows) + 2.0 * l2 * w)
            b = b - intercept_lr * float(g.mean())
            steps += 1
        if on_epoch is not None:
            on_epoch()
    return w, b, steps


def run_batch_rebuild(settings: Settings, store: VersionStore, plan: Any, *, actor: str) -> Any:
    """``plan`` (a :class:`~streaming.learner.rebuild.RebuildPlan` with ``mode="batch"``) as one mini-batch fit,
    written as one version of its branch."""
    from streaming.learner.rebuild import (
        HEARTBEAT_SECONDS,
        RebuildReport,
        check_matched,
        file_records,
        matched,
        merged_records,
        start_branch,
    )
    from streaming.transport import TopicPartition, make_consumer

    started = time.monotonic()
    offline, state, branches, origin = start_branch(settings, store, plan, actor=actor)
    try:
        (topic,) = plan.start
        start = {TopicPartition(topic, int(p)): o for p, o in plan.start[topic].items()}
        until = {TopicPartition(topic, int(p)): o for p, o in plan.until[topic].items()}
        limits = EventLimits.from_settings(offline.limits)
        events: list[Event] = []
        read = excluded = 0
        matches = [0] * len(plan.skip_where)
        consumer = make_consumer(offline.kafka)
        try:
            source = file_records(plan.source, topic) if plan.source else merged_records(consumer, start, until)
            beat = time.monotonic()
            for record in source:
                read += 1
                if time.monotonic() - beat > HEARTBEAT_SECONDS:
                    beat = time.monotonic()
                    branches.report(plan.name, read=read)
                if any(e.partition == record.partition and e.first <= record.offset <= e.last for e in plan.exclusions):
                    excluded += 1
                    continue
                try:
                    event = decode_event(record.value, "msgpack" if plan.source else offline.kafka.event_format, limits)
                except EventError:
                    state.counters["dead_lettered"] += 1
                    continue
                clause = matched(event.features, plan.skip_where) if plan.skip_where else None
                if clause is not None:
                    matches[clause] += 1
                    excluded += 1
                    continue
                if state.recent.seen_before(record.partition, event.event_id):
                    state.counters["duplicates"] += 1
                    continue
                state.counters["events_seen"] += 1
                if event.label is not None:
                    events.append(event)
        finally:
            consumer.close()
        check_matched(plan.skip_where, matches)
        model = OnlineModel.restore(state.spec, state.model.dump_state())  # river's parts: the definition above
        branches.report(plan.name, read=read)  # alive: the fit may take a while
        steps = fit_events(
            model,
            events,
            batch_size=plan.batch_size,
            epochs=plan.epochs,
            seed=plan.seed,
            on_epoch=lambda: branches.report(plan.name, read=read),
        )
        state.model = restore_model(state.spec, model.dump_state())
        state.counters["events_learned"] += len(events)
        positions = (
            plan.offsets
            if plan.source is not None and plan.offsets is not None
            else {topic: {str(tp.partition): o for tp, o in until.items()}}
        )
        meta = branches.write(
            plan.name,
            state.snapshot_state(),
            offsets=positions,
            metrics={"rolling": state.metrics.rolling_values(), "cumulative": state.metrics.cumulative_values()},
            parent=plan.base,
            epoch=plan.epoch,
            extra={"rebuild": {**origin, "steps": steps, "events": len(events)}},
            model_events_learned=state.model.steps,
        )
    except BaseException:
        branches.finish(plan.name, "failed")
        raise
    branches.finish(plan.name, "done", read=read, excluded=excluded, learned=len(events))
    return RebuildReport(plan.name, (meta.number,), read, excluded, len(events), time.monotonic() - started)


def fit_events(
    model: OnlineModel,
    events: list[Event],
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    on_epoch: Callable[[], object] | None = None,
) -> int:
    """Steps 1-3 of the module's definition on ``model`` (river engine) over ``events``; returns the steps taken."""
    union = model.pipeline.steps["TransformerUnion"]
    encoded = []
    for event in events:
        x = model.encode(event.features, learn=True)
        union.learn_one(x)
        encoded.append(x)
    rows = [union.transform_one(x) for x in encoded]
    classifier = model.classifier
    weights = dict(weights_of(classifier))
    names = list(weights)
    index = {name: i for i, name in enumerate(names)}
    for row in rows:
        for name in row:
            if name not in index:
                index[name] = len(names)
                names.append(name)
    x_matrix = np.zeros((len(rows), len(names)))
    for i, row in enumerate(rows):
        for name, value in row.items():
            x_matrix[i, index[name]] = value
    y = np.array([1.0 if e.label else 0.0 for e in events])
    w0 = np.array([weights.get(name, 0.0) for name in names])
    w, b, steps = fit_minibatch(
        x_matrix,
        y,
        w0,
        float(classifier.intercept),
        lr=model.spec.learning_rate,
        intercept_lr=float(classifier.intercept_lr.learning_rate),
        l2=float(classifier.l2),
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        on_epoch=on_epoch,
    )
    set_weights(classifier, {name: float(value) for name, value in zip(names, w, strict=True)})
    classifier.intercept = b
    classifier.optimizer.n_iterations += steps
    return steps
