"""The reference-set gate with a real learner: a model that learned a wrong but learnable stream is kept, never stable.

Labels inverted for good from some row on are learnable: within a few hundred events the model predicts
"buy" for almost everyone and agrees with the (wrong) labels, so its rolling accuracy is back above the
threshold. Data-quality incidents are switched off here (bounds 1.0, label runs and the label-odds rule off) and
versions are stable when written (promotion ``immediate``), so the gate is what is tested.
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import produce, store_for

from streaming.errors import InputError
from streaming.learner.reference_gate import load_reference_set
from streaming.local.dataset import DATASET_PATH, read_events

AT, N = 3000, 9000


def reference_csv(tmp_path, rows: int):
    lines = DATASET_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "reference.csv"
    path.write_text("".join(lines[: rows + 1]), encoding="utf-8")  # header + the first rows: a known-good slice
    return path


def test_versions_that_learned_inverted_labels_fail_the_reference_gate_and_are_never_served(
    make_settings, learners, tmp_path
):
    settings = make_settings(
        reference_set=str(reference_csv(tmp_path, 1500)),
        snapshot_every_events=500,
        snapshot_every_seconds=3600,
        keep_versions=100,
        incident_label_rate_bound=1.0,
        incident_odds_threshold=0,
        incident_prediction_rate_bound=1.0,
        incident_label_run_probability=0,
        publish_predictions=False,
        promotion="immediate",  # stable when written unless the gate says no: the gate alone decides here
    )
    events = [dataclasses.replace(e, label=not e.label) if i >= AT else e for i, e in enumerate(read_events(limit=N))]
    produce(settings, events)
    learners(settings, "--until-caught-up").wait()
    store = store_for(settings)
    metas = store.list()
    verdicts = {m.number: m.extra["reference"] for m in metas if "reference" in m.extra}
    before = [m for m in metas if sum(m.offsets[settings.events_topic].values()) <= AT]
    after = [m for m in metas if sum(m.offsets[settings.events_topic].values()) > AT + 1500]
    assert before
    assert all(verdicts[m.number]["passed"] for m in before if m.number in verdicts)
    # the model follows the inverted labels: its rolling accuracy says "fine", the reference set does not
    eligible_after = [m for m in after if m.number in verdicts]
    assert eligible_after, "the inverted stream must look healthy to the rolling metric"
    assert all(m.metrics["rolling"]["accuracy"] >= settings.monitor_threshold for m in eligible_after)
    failed = [m for m in eligible_after if not verdicts[m.number]["passed"]]
    assert failed
    for m in failed:
        verdict = verdicts[m.number]
        assert verdict["against_score"] - verdict["score"] > settings.reference_tolerance
        assert m.number not in store.stable_numbers()  # kept, never stable
    assert store.serving() in [m.number for m in before]
    assert sum(store.meta(store.serving()).offsets[settings.events_topic].values()) <= AT + 500


def test_a_topic_range_reference_set_is_the_same_events_as_the_csv_slice(make_settings, tmp_path):
    """``kafka:TOPIC:PARTITION:FROM-TO`` reads exactly those offsets; an open or malformed range is one clear error."""
    settings = make_settings()
    produce(settings, [*read_events(limit=600), b"not an event"])  # an undecodable record is skipped, as learned
    from_csv = load_reference_set(settings.model_copy(update={"reference_set": str(reference_csv(tmp_path, 600))}))
    from_topic = load_reference_set(
        settings.model_copy(update={"reference_set": f"kafka:{settings.events_topic}:0:0-601"})
    )
    assert from_topic == from_csv and len(from_topic) == 600
    middle = load_reference_set(
        settings.model_copy(update={"reference_set": f"kafka:{settings.events_topic}:0:100-200"})
    )
    assert middle == from_csv[100:200]
    for value, message in (
        (f"kafka:{settings.events_topic}:0:0-", "has no end offset"),
        (f"kafka:{settings.events_topic}:0:0-5000", "ends at offset 601"),
        (f"kafka:{settings.events_topic}:7:0-10", "has no partition 7"),
        ("kafka:shop.events:zero:0-10", "is not kafka:TOPIC:PARTITION:FROM-TO"),
    ):
        with pytest.raises(InputError, match=message):
            load_reference_set(settings.model_copy(update={"reference_set": value}))
    # a CSV row the event contract refuses (an infinite duration) is named, not scored
    lines = reference_csv(tmp_path, 3).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].replace(",0.2,0.2,", ",0.2,1e400,", 1)
    (tmp_path / "bad.csv").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.csv line 4 breaks the event contract: .*NaN or infinite"):
        load_reference_set(settings.model_copy(update={"reference_set": str(tmp_path / "bad.csv")}))
