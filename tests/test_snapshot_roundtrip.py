"""A restored snapshot predicts and learns bit-identically, in this process and in a fresh one."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from reference import contract_features

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import FORMAT, SnapshotState, decode_snapshot, encode_snapshot, pack, sha256_hex
from streaming.errors import SnapshotCorruptError
from streaming.learner.restore import restore_state
from streaming.local.dataset import read_events
from streaming.model import ModelSpec, OnlineModel

TESTS_DIR = Path(__file__).parent
EVENTS = [(contract_features(e), e.label) for e in read_events(limit=4000)]
SPLIT = 3000


def trained() -> tuple[OnlineModel, PrequentialMetrics]:
    model, pm = OnlineModel(ModelSpec()), PrequentialMetrics(window=500)
    for x, y in EVENTS[:SPLIT]:
        pm.update(y, model.predict_proba_one(x))
        model.learn_one(x, y)
    return model, pm


def continue_learning(model: OnlineModel, pm: PrequentialMetrics) -> list[float]:
    """Predict-then-learn over the next 1,000 events; returns every probability as exact hex."""
    out = []
    for x, y in EVENTS[SPLIT:]:
        p = model.predict_proba_one(x)
        pm.update(y, p)
        model.learn_one(x, y)
        out.append(p.hex())
    return out


def snapshot_blob(model, pm) -> bytes:
    return encode_snapshot(
        SnapshotState(ModelSpec().to_dict(), model.dump_state(), pm.dump_state(), {"events_seen": SPLIT})
    )


def test_restore_in_process_is_bit_identical():
    model, pm = trained()
    blob = snapshot_blob(model, pm)
    restored, restored_pm = restore_state(decode_snapshot(blob, sha256_hex(blob)), ModelSpec(), window=500)
    assert continue_learning(restored, restored_pm) == continue_learning(model, pm)
    assert restored.dump_state() == model.dump_state()
    assert restored_pm.cumulative_values() == pm.cumulative_values()
    assert restored_pm.rolling_values() == pm.rolling_values()
    assert restored_pm.dump_state() == pm.dump_state()


def test_restore_in_a_fresh_process_is_bit_identical(tmp_path):
    model, pm = trained()
    (tmp_path / "snap.bin").write_bytes(snapshot_blob(model, pm))
    script = textwrap.dedent(f"""
        import json, sys
        from snapshotter.codec import decode_snapshot, sha256_hex
        from streaming.learner.restore import restore_state
        from streaming.model import ModelSpec
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import test_snapshot_roundtrip as t
        blob = open({str(tmp_path / "snap.bin")!r}, "rb").read()
        model, pm = restore_state(decode_snapshot(blob, sha256_hex(blob)), ModelSpec(), window=500)
        probs = t.continue_learning(model, pm)
        state = model.dump_state()
        print(json.dumps({{"probs": probs, "weights": {{k: v.hex() for k, v in state["weights"].items()}},
                          "intercept": state["intercept"].hex(), "acc": pm.rolling_values()["accuracy"].hex()}}))
    """)
    # A different hash seed in the child: set iteration order must not matter.
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
        cwd=str(tmp_path),
    )
    child = json.loads(result.stdout)
    probs = continue_learning(model, pm)
    state = model.dump_state()
    assert child["probs"] == probs
    assert child["weights"] == {k: v.hex() for k, v in state["weights"].items()}
    assert child["intercept"] == state["intercept"].hex()
    assert child["acc"] == pm.rolling_values()["accuracy"].hex()


def test_format_version_1_blobs_stay_readable_and_version_2_keeps_weights_bit_for_bit():
    """Version 2 packs the weights as names + little-endian doubles; version-1 blobs (a map) still decode."""
    model, pm = trained()
    state = model.dump_state()
    state["weights"] = {**state["weights"], "neg_zero": -0.0, "tiny": 5e-324, "big": 1.7976931348623157e308}
    v1 = pack(
        {"format": FORMAT, "format_version": 1, "spec": ModelSpec().to_dict(), "model": state,
         "metrics": pm.dump_state(), "counters": {}}
    )  # fmt: skip
    v2 = encode_snapshot(SnapshotState(ModelSpec().to_dict(), state, pm.dump_state(), {}))
    for blob in (v1, v2):
        decoded = decode_snapshot(blob, sha256_hex(blob)).model["weights"]
        assert list(decoded) == list(state["weights"])  # insertion order: the dot product's order of additions
        assert [v.hex() for v in decoded.values()] == [v.hex() for v in state["weights"].values()]
        assert math.copysign(1.0, decoded["neg_zero"]) == -1.0
    assert len(v2) < len(v1)
    broken = pack(
        {"format": FORMAT, "format_version": 2, "spec": {}, "model": {"weights": {"names": ["a"], "float64le": b""}},
         "metrics": {}, "counters": {}}
    )  # fmt: skip
    with pytest.raises(SnapshotCorruptError, match="differ in number"):
        decode_snapshot(broken, sha256_hex(broken))


def test_successive_snapshots_of_a_growing_model_are_the_bytes_msgpack_writes():
    """The encoder keeps the packed long lists of names (weights, vocabulary) between snapshots and packs only
    what was added: the blob must still be exactly msgpack's, as the model grows, changes and is replaced."""
    import msgpack

    from snapshotter import codec
    from snapshotter.codec import FORMAT_VERSION
    from streaming.weights import PackedWeights

    model = OnlineModel(ModelSpec(max_categories_per_feature=5000, max_inputs=100_000))
    pm = PrequentialMetrics(window=50)

    def plain(state: SnapshotState) -> bytes:
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **state.__dict__}
        del doc["arms"]  # no challengers: not written
        doc["model"] = {**state.model, "weights": PackedWeights.of_dict(state.model["weights"]).document()}
        return msgpack.packb(doc, use_bin_type=True)

    blobs = []
    for rounds in (600, 650, 650, 700):  # a feature with ever more values: its name lists grow past LONG
        for i in range(rounds):
            model.learn_one({"page": f"p{i}", "x": float(i % 7)}, i % 3 == 0)
        state = SnapshotState({"kind": "t"}, model.dump_state(), pm.dump_state(), {"events_seen": rounds})
        blob = encode_snapshot(state)
        assert blob == plain(state)
        assert codec._PACKER.reused >= (600 if blobs else 0)  # from the second on, the names packed before are kept
        blobs.append(blob)
    assert len(set(blobs)) == len(blobs)
    other = OnlineModel(ModelSpec())  # another model in the same process: a different document, same rule
    other.learn_one({"page": "q", "x": 1.0}, True)
    state = SnapshotState({"kind": "t"}, other.dump_state(), pm.dump_state(), {})
    assert encode_snapshot(state) == plain(state)


def test_a_newer_format_says_upgrade_and_a_learner_never_falls_back_past_it():
    """A version a newer livelearn wrote is not corrupt: decoding it says to upgrade (readers first), and
    restoring the head stops there instead of going back to an older version this livelearn can read."""
    import fakeredis

    from snapshotter.codec import EncodedSnapshot
    from snapshotter.store import VersionStore
    from streaming.errors import SnapshotFormatError
    from streaming.learner.restore import restore_head

    model, pm = trained()
    state = SnapshotState(ModelSpec().to_dict(), model.dump_state(), pm.dump_state(), {})
    newer = pack({"format": FORMAT, "format_version": 3, "spec": state.spec, "model": {}, "metrics": {}})
    with pytest.raises(
        SnapshotFormatError, match=r"written by a newer livelearn.*serving and every other reader first"
    ):
        decode_snapshot(newer, sha256_hex(newer))
    odd = pack({"format": FORMAT, "format_version": "x"})
    with pytest.raises(SnapshotCorruptError, match="not one livelearn reads"):
        decode_snapshot(odd, sha256_hex(odd))

    store = VersionStore(fakeredis.FakeRedis(), "m", promotion="immediate")
    first = store.write(state, writer="w", lease_value=None, offsets={}, metrics={}, parent=None)
    encoded = EncodedSnapshot(newer, sha256_hex(newer), state.spec, {})
    store.write(encoded, writer="w", lease_value=None, offsets={}, metrics={}, parent=first.number)
    with pytest.raises(SnapshotFormatError, match="newer livelearn"):
        restore_head(store, ModelSpec(), 500)
    corrupt = pack({"format": FORMAT, "format_version": 2, "spec": state.spec})  # no model: corrupt, not newer
    store.write(EncodedSnapshot(corrupt, sha256_hex(corrupt), state.spec, {}), writer="w", lease_value=None,
                offsets={}, metrics={}, parent=first.number)  # fmt: skip
    restored = restore_head(store, ModelSpec(), 500)  # a corrupt head falls back to its parent, as before
    assert restored is not None and restored.meta.number == first.number


def test_the_compiled_engine_restores_straight_from_the_packed_doubles_bit_for_bit():
    """Restore fast path: the weights stay packed as stored (``PackedWeights``) into ``np.frombuffer``; the model is
    the one the river-shaped map gives, and either engine's version restores into the other bit for bit."""
    import numpy as np

    from streaming.compiled import CompiledModel
    from streaming.weights import PackedWeights

    spec = ModelSpec()
    compiled = CompiledModel(spec)
    for i in range(3000):
        compiled.learn_one({"page": f"p{i % 700}", "x": float(i % 7), "y": i % 5 == 0}, i % 3 == 0)
    state = SnapshotState(spec.to_dict(), compiled.capture_state()(), {}, {})
    assert isinstance(state.model["weights"], PackedWeights)
    blob = encode_snapshot(state)
    assert blob == encode_snapshot(SnapshotState(spec.to_dict(), compiled.dump_state(), {}, {}))  # same bytes
    packed = decode_snapshot(blob, sha256_hex(blob), packed_weights=True).model
    mapped = decode_snapshot(blob, sha256_hex(blob)).model
    assert isinstance(packed["weights"], PackedWeights) and isinstance(mapped["weights"], dict)
    fast, slow = CompiledModel.restore(spec, packed), CompiledModel.restore(spec, mapped)
    n = len(mapped["weights"])
    assert np.array_equal(fast.w[:n], slow.w[:n]) and fast.columns == slow.columns
    assert fast.dump_state() == slow.dump_state() == compiled.dump_state()
    river = OnlineModel.restore(spec, packed)  # the river engine reads the packed form too
    assert river.dump_state() == compiled.dump_state()
    x = {"page": "p3", "x": 2.0, "y": True}
    assert fast.predict_proba_one(x) == river.predict_proba_one(x) == compiled.predict_proba_one(x)
    fast.learn_one(x, True)
    compiled.learn_one(x, True)
    assert fast.dump_state() == compiled.dump_state()


def test_the_vocabulary_positions_restore_the_compiled_fast_path_and_bad_ones_fall_back_to_lookups():
    """The stored positions (where each category's weight is) build the compiled engine's fast path without a
    100k-name lookup; positions that are absent or fail the checks are not trusted: the input names are looked up
    instead, and the model is the same."""
    import struct

    from streaming.compiled import CompiledModel
    from streaming.weights import PackedWeights

    spec = ModelSpec()
    river = OnlineModel(spec)
    for i in range(2000):
        river.learn_one({"page": f"p{i % 300}", "x": float(i % 7), "y": "yes" if i % 5 else "no"}, i % 3 == 0)
    whole = CompiledModel.restore(spec, river.dump_state())
    assert whole._columns is None  # every weight is an entry's: the names -> columns map waits until needed
    assert whole.predict_proba_one({"page": "new", "x": 1.0}) == river.predict_proba_one({"page": "new", "x": 1.0})
    assert whole.columns == {name: column for column, name in enumerate(river.dump_state()["weights"])}
    river.load_vocabulary({**river.dump_vocabulary(), "categories": {"page": ["p1", "unseen"], "y": ["no"]}})
    state = river.dump_state()
    positions = state["vocabulary"]["positions"]
    assert struct.unpack("<2i", positions["categories"]["page"])[1] == -1  # a value with no weight yet
    fast = CompiledModel.restore(spec, state)
    assert fast._categorical == {"page": {"p1": fast.columns["page_p1"]}, "y": {"no": fast.columns["y_no"]}}

    def with_positions(value) -> dict:
        return {**state, "vocabulary": {**state["vocabulary"], "positions": value}}

    n = len(state["weights"])
    page = positions["categories"]["page"]
    bad = [
        None,
        [0, 1],
        {"categories": None, "numeric": b""},
        {"categories": {"page": b"\x00" * 4}},  # one position for two values
        {"categories": {"page": struct.pack("<2i", 0, n)}},  # beyond the last weight
        {"categories": {"page": struct.pack("<2i", -2, 0)}},
        {"categories": {"page": [0, -1]}},
        {"categories": {"page": page}, "numeric": b"\x00"},
        {"categories": {"page": page}, "numeric": struct.pack("<i", n)},
        {"categories": {"page": struct.pack("<2i", *(p + 1 for p in struct.unpack("<2i", page)))}},  # shifted
        {"categories": {"page": page}, "numeric": struct.pack("<i", struct.unpack("<i", positions["numeric"])[0] - 1)},
    ]
    for value in bad:
        model = CompiledModel.restore(spec, with_positions(value))
        assert model._categorical == fast._categorical and model._numeric == fast._numeric, value
        assert not model._collisions
    x = {"page": "p1", "x": 2.0, "y": "no"}
    assert fast.predict_proba_one(x) == river.predict_proba_one(x)
    twice = {**state, "weights": {**state["weights"]}}
    twice["weights"] = PackedWeights([*state["weights"], "x"], b"\x00" * 8 * (n + 1))  # "x" stored twice
    with pytest.raises(SnapshotCorruptError, match="stored twice"):
        CompiledModel.restore(spec, twice)
