"""A restored snapshot predicts and learns bit-identically, in this process and in a fresh one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from reference import contract_features

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState, decode_snapshot, encode_snapshot, sha256_hex
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
