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
