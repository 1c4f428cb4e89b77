"""The model's size is bounded whatever the events carry: high-cardinality strings, ever-new feature names."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from reference import contract_features

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import EncodedSnapshot, SnapshotState, encode_snapshot, pack, unpack
from streaming.compiled import CompiledModel
from streaming.config import load_settings
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.restore import restore_state
from streaming.learner.state import spec_from_settings
from streaming.local.dataset import read_events
from streaming.model import OTHER, ModelSpec, OnlineModel
from streaming.vocabulary import Vocabulary

#: Snapshot size the default caps guarantee, measured below with a million distinct values.
BOUND_BYTES = 8_000_000


def blob_size(model: OnlineModel) -> int:
    state = SnapshotState(model.spec.to_dict(), model.dump_state(), PrequentialMetrics(100).dump_state(), {})
    return len(encode_snapshot(state))


def test_a_million_distinct_strings_keep_the_snapshot_under_the_bound():
    model = OnlineModel(ModelSpec())  # the default caps: 1,000 values per feature, 100,000 inputs in all
    start = time.perf_counter()
    for i in range(1000):  # 1,000 events x 1,000 string features, every value new: 1,000,000 distinct values
        model.learn_one({f"f{j}": f"v{i}-{j}" for j in range(1000)}, i % 2 == 0)
    assert model.inputs == 100_000
    assert len(model.classifier._weights) <= 2 * 100_000
    assert model.capped["category"] == 1_000_000 - 100_000
    size = blob_size(model)
    assert size < BOUND_BYTES, size
    print(f"1M distinct values: {size:,} bytes, {time.perf_counter() - start:.1f}s")


def test_values_beyond_a_features_cap_share_one_weight_and_known_ones_keep_theirs():
    model = OnlineModel(ModelSpec(max_categories_per_feature=3))
    for i in range(50):
        model.learn_one({"page": f"p{i}", "n": float(i)}, i % 3 == 0)
    weights = model.classifier._weights
    assert {k for k in weights if k.startswith("page_")} == {"page_p0", "page_p1", "page_p2", f"page_{OTHER}"}
    assert model.capped["category"] == 47
    # an unseen value is scored with the shared weight; a known one with its own
    assert model.encode({"page": "p999"}) == {"page": OTHER}
    assert model.encode({"page": "p1"}) == {"page": "p1"}
    # the vocabulary survives a snapshot: the restored model folds the same values
    restored, _ = restore_state(
        SnapshotState(model.spec.to_dict(), model.dump_state(), PrequentialMetrics(100).dump_state(), {}),
        model.spec,
        100,
    )
    assert restored.predict_proba_one({"page": "p999", "n": 3.0}) == model.predict_proba_one({"page": "p999", "n": 3.0})
    assert restored.inputs == model.inputs
    assert restored.categories == model.categories


def test_ever_new_feature_names_stop_at_the_input_cap():
    model = OnlineModel(ModelSpec(max_inputs=1000))
    for i in range(300):
        model.learn_one({**{f"n{i}-{j}": 1.0 for j in range(10)}, **{f"s{i}-{j}": "x" for j in range(10)}}, True)
    assert model.inputs == 1000
    assert len(model.scaler.counts) + sum(len(v) for v in model.categories.values()) <= 1000
    assert model.capped["feature"] == 300 * 20 - 1000


def test_below_the_caps_the_model_is_river_unchanged():
    unbounded = ModelSpec(max_categories_per_feature=10**9, max_inputs=10**9, max_vocabulary_bytes=10**12)
    capped, plain = OnlineModel(ModelSpec()), OnlineModel(unbounded)
    for event in read_events(limit=2000):
        x = contract_features(event)
        assert capped.predict_proba_one(x) == plain.predict_proba_one(x)
        capped.learn_one(x, event.label)
        plain.learn_one(x, event.label)
    assert capped.dump_state()["weights"] == plain.dump_state()["weights"]
    assert capped.capped == {"category": 0, "feature": 0}


def test_capped_values_are_counted_in_prometheus():
    registry = CollectorRegistry()
    metrics = LearnerMetrics(registry, "m")
    model = OnlineModel(ModelSpec(max_categories_per_feature=1))
    metrics.model_size(model.inputs, model.capped, restored=True)
    for value in ("a", "b", "c"):
        model.learn_one({"s": value}, True)
    metrics.model_size(model.inputs, model.capped)
    assert registry.get_sample_value("livelearn_inputs_capped_total", {"model": "m", "kind": "category"}) == 2
    assert registry.get_sample_value("livelearn_model_inputs", {"model": "m"}) == 1
    metrics.model_size(0, {"category": 0, "feature": 0}, restored=True)  # a rollback rewinds the model's totals
    model.learn_one({"s": "d"}, True)
    metrics.model_size(model.inputs, {"category": 1, "feature": 0})
    assert registry.get_sample_value("livelearn_inputs_capped_total", {"model": "m", "kind": "category"}) == 3


# --- the byte budget: names and values cannot bloat the model (issue 16, item 4) -----------------------------------

#: The worst case of a snapshot's ``model`` the README states for the default caps: 5 x 4 MiB + 64 x 100,000 + 1 KB.
STATED_WORST_CASE = 27_372_544


def learned_name_bytes(model: Vocabulary) -> int:
    """The UTF-8 bytes of the learned inputs' names, counted afresh from the vocabulary (``feature_value`` for a
    category, the shared ``__other__`` not counted)."""
    numeric = sum(len(name.encode()) for name in model.numeric)
    categories = sum(
        len(f"{name}_{value}".encode())
        for name, values in model.categories.items()
        for value in values
        if value != OTHER
    )
    return numeric + categories


def encoded_model_bytes(model: OnlineModel | CompiledModel) -> tuple[int, int]:
    """The blob's size and its ``model``'s bytes, encoded as a learner does (its captured state, the store's codec)."""
    state = SnapshotState(model.spec.to_dict(), model.capture_state()(), PrequentialMetrics(1000).dump_state(), {})
    blob = EncodedSnapshot.of(state).blob
    return len(blob), len(pack(unpack(blob)["model"]))


def long_names(n_events: int) -> list[dict[str, Any]]:
    """The reported case: 999 numeric features per event under 256-character names, new ones in every event."""
    return [{f"{i:03d}-{j:03d}".ljust(256, "x"): float(j) for j in range(999)} for i in range(n_events)]


def test_long_feature_names_keep_the_snapshot_under_the_stated_worst_case():
    """101 events the contract accepts (999 features, 256-character names) made every snapshot 132.6 MB."""
    model = OnlineModel(ModelSpec())
    for n, x in enumerate(long_names(101)):
        model.learn_one(x, n % 2 == 0)
    size, model_bytes = encoded_model_bytes(model)
    print(f"999 features x 256-character names: {size:,} bytes (bound {STATED_WORST_CASE:,})")
    assert model_bytes <= STATED_WORST_CASE, model_bytes
    assert size < STATED_WORST_CASE + 100_000, size  # spec, metrics: a few KB more
    assert ModelSpec().max_model_bytes() == STATED_WORST_CASE
    assert model.name_bytes == learned_name_bytes(model) <= model.spec.max_vocabulary_bytes
    assert model.inputs == 4 * 1024 * 1024 // 256  # 16,384 names fit in 4 MiB; the later ones are not learned
    assert model.capped == {"category": 0, "feature": 101 * 999 - model.inputs}


def _long_values(n: int) -> dict[str, Any]:
    return {f"f{j}": f"{n}-{j}".ljust(256, "v") for j in range(999)}


def _multibyte_names(n: int) -> dict[str, Any]:
    return {f"{n}-{j}".ljust(256, "\U0001d4b3"): float(j) for j in range(999)}  # 4 bytes a character


def _multibyte_values(n: int) -> dict[str, Any]:
    return {f"é{j}": f"{n}-{j}".ljust(256, "é") for j in range(999)}


def _mix(n: int) -> dict[str, Any]:
    numbers = {f"{n}-{j}".ljust(256, "ü"): float(j) for j in range(0, 999, 3)}
    strings = {f"s{j}".ljust(200, "\u20ac"): f"{n}".ljust(256, "\U0001f600") for j in range(1, 999, 3)}
    return {**numbers, **strings, **{f"b{j}": "true" if (n + j) % 2 else "false" for j in range(2, 999, 3)}}


SHAPES = {
    "long category values": (_long_values, 101),
    "multi-byte feature names": (_multibyte_names, 10),
    "multi-byte category values": (_multibyte_values, 30),
    "a mix": (_mix, 30),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_any_long_or_multibyte_names_and_values_stay_within_the_byte_budget_on_both_engines(shape):
    """Each of these streams is valid under the contract and, without a byte budget, made snapshots over the stated
    worst case; both engines refuse the same inputs, keep the same vocabulary and predict alike."""
    make, n_events = SHAPES[shape]
    events = [make(n) for n in range(n_events)]
    river, compiled = OnlineModel(ModelSpec()), CompiledModel(ModelSpec())
    for n, x in enumerate(events):
        for model in (river, compiled):
            model.learn_one(x, n % 3 == 0)
    for model in (river, compiled):
        size, model_bytes = encoded_model_bytes(model)
        print(f"{shape} ({model.engine}): {size:,} bytes")
        assert model_bytes <= STATED_WORST_CASE, (model.engine, model_bytes)
    assert river.capped["category"] + river.capped["feature"] > 0  # the budget was reached
    assert river.name_bytes == learned_name_bytes(river) <= river.spec.max_vocabulary_bytes
    assert compiled.dump_vocabulary() == river.dump_vocabulary()
    assert (compiled.inputs, compiled.name_bytes, compiled.capped) == (river.inputs, river.name_bytes, river.capped)
    assert compiled.predict_proba_one(events[-1]) == river.predict_proba_one(events[-1])


def test_a_restored_model_counts_its_names_as_the_live_one_and_refuses_the_same_inputs():
    spec = ModelSpec(max_vocabulary_bytes=300, max_categories_per_feature=50)
    events = [{"city": f"c{i}".ljust(20, "é"), f"n{i}": 1.0, "flag": OTHER if i == 2 else "x"} for i in range(40)]
    live = OnlineModel(spec)
    for x in events[:5]:
        live.learn_one(x, True)
    state = SnapshotState(spec.to_dict(), live.dump_state(), PrequentialMetrics(100).dump_state(), {})
    for restored in (OnlineModel.restore(spec, state.model), CompiledModel.restore(spec, state.model)):
        assert (restored.inputs, restored.name_bytes) == (live.inputs, live.name_bytes)  # "__other__" sent: not counted
    again = CompiledModel.restore(spec, live.dump_state())
    for n, x in enumerate(events[5:]):
        live.learn_one(x, n % 2 == 0)
        again.learn_one(x, n % 2 == 0)
    assert live.capped["category"] > 0 and live.capped["feature"] > 0
    assert again.dump_vocabulary() == live.dump_vocabulary()
    assert live.name_bytes == learned_name_bytes(live) <= 300


def test_the_byte_budget_is_part_of_the_spec_and_of_the_settings(monkeypatch):
    spec = ModelSpec(max_vocabulary_bytes=12_345)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    older = {k: v for k, v in spec.to_dict().items() if k != "max_vocabulary_bytes"}  # a version from before it
    assert ModelSpec.from_dict(older).max_vocabulary_bytes == ModelSpec().max_vocabulary_bytes == 4 * 1024 * 1024
    monkeypatch.setenv("LIVELEARN_MAX_VOCABULARY_BYTES", "2048")
    assert spec_from_settings(load_settings()).max_vocabulary_bytes == 2048


# --- scoring only (no label, or learning frozen) never grows the model (issue 16, item 4) ---------------------------


def _model_bits(model: OnlineModel | CompiledModel) -> bytes:
    """The ``model`` of a snapshot, encoded as a learner does."""
    state = SnapshotState(model.spec.to_dict(), model.capture_state()(), PrequentialMetrics(1000).dump_state(), {})
    return pack(unpack(EncodedSnapshot.of(state).blob)["model"])


@pytest.mark.parametrize("engine", [OnlineModel, CompiledModel])
def test_scoring_unlabelled_events_with_ever_new_long_names_and_values_leaves_the_snapshot_unchanged(engine):
    """What the learner does with an unlabelled event (or any event while learning is frozen): encode without
    learning, score. Inputs the vocabulary has not learned — 999 new 256-character numeric names an event, long and
    multi-byte names and category values — neither enter the state (each such event added ~268 KB to every later
    snapshot) nor the memory of a serving replica scoring a restored version."""
    model = engine(ModelSpec())
    for n in range(20):
        model.learn_one({"pages": float(n), "month": f"m{n % 3}", "é" * 3: float(n % 2)}, n % 2 == 0)
    before, size = _model_bits(model), encoded_model_bytes(model)
    served = engine.restore(model.spec, model.dump_state())
    served_before = _model_bits(served)
    streams = [long_names(30), [_long_values(n) for n in range(30)], [_multibyte_names(n) for n in range(30)]]
    streams += [[_multibyte_values(n) for n in range(30)], [_mix(n) for n in range(30)]]
    for stream in streams:
        for event in stream:
            x = {**event, "pages": 3.0, "month": "m1"}
            p = model.predict_encoded(model.encode(x, learn=False))
            assert p == model.predict_proba_one(x) == served.predict_proba_one(x)
            assert p == model.predict_proba_one({"pages": 3.0, "month": "m1"})  # the unlearned inputs add exactly 0
    assert _model_bits(model) == before and encoded_model_bytes(model) == size
    assert _model_bits(served) == served_before
    if isinstance(model, OnlineModel):
        assert len(model.scaler.vars) == len(served.scaler.vars) == 2
    else:
        assert len(model.row_names) == len(served.row_names) == 2
    assert model.capped == {"category": 0, "feature": 0}  # only learned occurrences are counted


@pytest.mark.parametrize("engine", [OnlineModel, CompiledModel])
def test_a_version_written_before_the_vocabulary_still_scores_its_numbers(engine):
    """Versions from before the caps have no vocabulary: their scaler's learned numbers are taken as learned."""
    model = OnlineModel(ModelSpec())
    for n in range(10):
        model.learn_one({"pages": float(n), "month": f"m{n % 3}"}, n % 2 == 0)
    older = {k: v for k, v in model.dump_state().items() if k != "vocabulary"}
    restored = engine.restore(model.spec, older)
    x = {"pages": 7.0, "month": "m1", "new": 1.0}
    assert restored.predict_proba_one(x) == model.predict_proba_one(x) != model.predict_proba_one({"month": "m1"})
    assert list(restored.numeric) == ["pages"] and restored.inputs == 1
