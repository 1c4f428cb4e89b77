"""The model's size is bounded whatever the events carry: high-cardinality strings, ever-new feature names."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry
from reference import contract_features

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState, encode_snapshot
from streaming.learner.restore import restore_state
from streaming.learner.telemetry import LearnerMetrics
from streaming.local.dataset import read_events
from streaming.model import OTHER, ModelSpec, OnlineModel

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
    capped, plain = OnlineModel(ModelSpec()), OnlineModel(ModelSpec(max_categories_per_feature=10**9, max_inputs=10**9))
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
