"""``livelearn rebuild run --mode batch``: the design's mini-batch update over a range of the events topic equals a
plain numpy implementation of the same update to 1e-12 (real broker and redis-server; the reference below is
written from river's primitives and numpy alone, not from livelearn's code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from clirun import one_line_error
from conftest import produce, store_for
from reference import contract_features, plain_river_pipeline

from snapshotter.branches import Branches
from streaming.local.dataset import read_events

EVENTS = list(read_events(limit=1500))
#: The mini-batch fit runs on river's parts and numpy whatever the engine; the online rebuild's lanes cover the client.
pytestmark = pytest.mark.first_lane


def plain_minibatch(events, *, start=None, batch_size, epochs, seed, lr=0.01):
    """Scaler learned over the events in order, rows transformed once with it, then seeded mini-batch SGD."""
    pipeline = start or plain_river_pipeline(lr)
    union, clf = pipeline.steps["TransformerUnion"], pipeline.steps["LogisticRegression"]
    xs = [contract_features(e) for e in events]
    for x in xs:
        union.learn_one(x)
    rows = [union.transform_one(x) for x in xs]
    names = list(clf._weights)
    for row in rows:
        names += [n for n in row if n not in names]
    matrix = np.array([[row.get(n, 0.0) for n in names] for row in rows])
    y = np.array([float(e.label) for e in events])
    w = np.array([clf._weights.get(n, 0.0) for n in names])
    b = clf.intercept
    generator = np.random.default_rng(seed)
    for _ in range(epochs):
        order = generator.permutation(len(y))
        for i in range(0, len(y), batch_size):
            rows_b = order[i : i + batch_size]
            p = 1 / (1 + np.exp(-(matrix[rows_b] @ w + b)))
            g = p - y[rows_b]
            w = w - lr * (matrix[rows_b].T @ g) / len(rows_b)
            b = b - 0.01 * g.mean()
    return dict(zip(names, w, strict=True)), b


@pytest.mark.parametrize(("batch_size", "epochs"), [(32, 3), (7, 1), (1500, 2)])
def test_batch_mode_equals_a_plain_numpy_minibatch_update(make_settings, cli, batch_size, epochs):
    settings = make_settings()
    produce(settings, EVENTS)
    argv = ["rebuild", "run", "batch", "--from-scratch", "--mode", "batch", "--batch-size", str(batch_size)]
    code, _out, err = cli(
        settings,
        *argv,
        "--epochs",
        str(epochs),
        "--seed",
        "11",
        "--exclude",
        f"kafka:{settings.events_topic}:0:200-399",
    )
    assert code == 0, err
    store = store_for(settings)
    doc = Branches(store).get("batch")
    meta, state = store.load(doc["head"])
    kept = EVENTS[:200] + EVENTS[400:]
    weights, intercept = plain_minibatch(kept, batch_size=batch_size, epochs=epochs, seed=11)
    got = state.model["weights"]
    assert set(got) == set(weights)
    assert max(abs(got[n] - weights[n]) for n in weights) <= 1e-12
    assert abs(state.model["intercept"] - intercept) <= 1e-12
    assert state.model["optimizer_iterations"] == epochs * math.ceil(len(kept) / batch_size)
    assert meta.extra["rebuild"]["mode"] == "batch" and meta.extra["rebuild"]["seed"] == 11
    assert meta.events_learned == len(kept)


def test_batch_mode_from_a_version_goes_on_from_its_state(make_settings, learners, cli):
    settings = make_settings(snapshot_every_events=500, promotion="immediate")
    produce(settings, EVENTS[:1000])
    learners(settings, "--until-caught-up").wait()
    store = store_for(settings)
    base = max(n for n in store.numbers() if store.meta(n).offsets[settings.events_topic]["0"] == 1000)
    produce(settings, EVENTS[1000:])
    code, _out, err = cli(settings, "rebuild", "run", "more", "--from-version", str(base), "--mode", "batch")
    assert code == 0, err
    start = plain_river_pipeline()
    for event in EVENTS[:1000]:  # the learner's own online learning up to the base version
        x = contract_features(event)
        start.predict_proba_one(x)
        start.learn_one(x, event.label)
    weights, intercept = plain_minibatch(EVENTS[1000:], start=start, batch_size=32, epochs=1, seed=0)
    _meta, state = store.load(Branches(store).get("more")["head"])
    assert max(abs(state.model["weights"][n] - weights[n]) for n in weights) <= 1e-12
    assert abs(state.model["intercept"] - intercept) <= 1e-12


def test_batch_options_without_batch_mode_are_refused(make_settings, cli):
    settings = make_settings()
    one_line_error(cli(settings, "rebuild", "run", "x", "--from-scratch", "--epochs", "3"), "are for --mode batch")
    one_line_error(cli(settings, "rebuild", "run", "x", "--from-scratch", "--mode", "fast"), "online or batch")
