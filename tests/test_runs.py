"""Events stepped in runs (:meth:`EventStep.process_run`: the events between two metric samples scored and learned in
one engine call) equal the same records stepped one at a time (:meth:`EventStep.process`), to the last bit.

No Kafka, no Redis: the records go through the learner's own step, once record by record and once through
:class:`~streaming.learner.batch.BatchStep` in polls of uneven sizes. Stated equality: the same model (weights,
scaler, intercept, steps), metrics, counters, stream state (idempotence window, block signals, the watch, the
threshold), the same metric samples field for field (but their wall-clock ``time``), the same incidents, and the
same predictions and dead letters byte for byte, in the same order per topic — with dead letters, producer retries,
unlabelled events, a labeller stuck at 0 that the watch catches (learning held from the sample that confirms it, and
released later), guard segments, new categories arriving late and (compiled engine) two inputs sharing one river
name.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streaming.compiled import CompiledModel
from streaming.config import Settings
from streaming.events import Event, EventLimits, decode_event, encode_event
from streaming.learner.batch import BatchStep
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.local.dataset import read_events
from streaming.transport import Record, TopicPartition
from streaming.vocabulary import ModelSpec

TP = TopicPartition("events", 0)


class Recording:
    """A producer that acknowledges everything and keeps what was sent, per topic, in order."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[bytes, bytes | None]]] = {}

    def send_counted_many(self, topic, records, headers, tally):
        for value, key in records:
            self.send_counted(topic, value, key, headers, tally)

    def send_counted(self, topic: str, value: bytes, key: bytes | None, headers: Any, tally: Any) -> None:
        self.sent.setdefault(topic, []).append((value, key))
        tally.sent += 1
        tally.report(None)

    def serve(self) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True


class _Writer:
    def release_writer(self) -> None:
        pass

    def hold_writer(self) -> None:
        pass


def stream(collide: bool) -> list[bytes]:
    """1,800 events of the dataset made hostile: every 7th unlabelled, every 50th sent twice (a producer retry), every
    97th not an event, labels stuck at 0 from event 700 to 1,300, a new month and visitor type from event 400 on, a
    string where a number was and the other way round, the features in another order, a feature added late, and
    (``collide``) an input named like another's one-hot input."""
    values: list[bytes] = []
    for i, event in enumerate(read_events(limit=1800)):
        features = dict(event.features)
        if i >= 400 and i % 5 == 0:
            features["Month"] = f"M{i % 3}"
            features["VisitorType"] = "Partner"
        if collide and i % 11 == 0:
            features["Month_Feb"] = float(i % 4)  # river's name of the one-hot input Month=Feb
        if i % 13 == 0:
            features["Administrative"] = "many"  # a string where the events around it have a number
        if i % 17 == 0:
            features["Region"] = 5  # a number where the events around it have a string
        if i % 19 == 0:
            features = dict(reversed(features.items()))  # the same features in another order
        if i % 23 == 0:
            features["late_feature"] = i  # a number the model has not seen (at first)
        label = event.label
        if i % 7 == 3:
            label = None
        elif 700 <= i < 1300:
            label = False
        value = encode_event(Event(event.event_id, event.ts, features, label, event.user_id))
        values.append(value)
        if i % 50 == 10:
            values.append(value)
        if i % 97 == 5:
            values.append(b"\xc1 not msgpack")
    return values


def fresh(engine: str, **overrides: Any) -> tuple[Settings, LearnerState, EventStep, Outputs, Recording]:
    settings = Settings(
        **{
            "event_format": "msgpack",
            "history_every_events": 40,
            "incident_patience": 1,
            "incident_resume_after_events": 200,
            "guard_segments": ["VisitorType", "Month", "ProductRelated_Duration>300"],
            **overrides,
            "engine": engine,
        }
    )
    telemetry = LearnerMetrics(CollectorRegistry(), settings.model_name)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    producer = Recording()
    return settings, state, EventStep(settings, telemetry), Outputs(producer, settings, telemetry), producer  # type: ignore[arg-type]


def observed(state: LearnerState, producer: Recording) -> dict[str, Any]:
    snapshot = state.snapshot_state()
    return {
        "model": snapshot.model,
        "steps": state.model.steps,
        "metrics": snapshot.metrics,
        "counters": snapshot.counters,
        "stream": snapshot.stream,
        "samples": [{k: v for k, v in sample.items() if k != "time"} for sample in state.samples],
        "incidents": [(event.kind, sample["scored"]) for event, sample in state.incident_events],
        "sent": producer.sent,
    }


@pytest.mark.parametrize(
    ("engine", "collide", "overrides"),
    [
        ("compiled", False, {}),
        ("river", False, {}),
        ("compiled", True, {}),
        ("river", True, {}),
        ("compiled", False, {"drift_max_features": 4, "rolling_window": 30}),  # features past the first 4 untracked;
        # a window shorter than a run: pairs leave it within one
        ("compiled", False, {"guard_segments": []}),  # no segments (the default): the block's sums over all at once
        ("river", False, {"guard_segments": []}),
    ],
)
def test_runs_equal_one_record_at_a_time_to_the_last_bit(engine, collide, overrides):
    values = stream(collide)
    records = [Record(TP.topic, 0, offset, None, value, [], -1) for offset, value in enumerate(values)]

    _, one, step, outputs, alone = fresh(engine, **overrides)
    positions = {TP: 0}
    for record in records:
        positions[TP] = record.offset + 1
        step.process(one, record, outputs, positions)

    _, runs, step, outputs, together = fresh(engine, **overrides)
    batch = BatchStep(runs, step, outputs, [], _Writer())
    positions, at = {TP: 0}, 0
    for size in itertools.cycle((1, 37, 1000, 3, 250)):
        if at >= len(records):
            break
        batch.process({TP: records[at : at + size]}, positions)
        at += size
    assert positions == {TP: len(records)}

    expected, got = observed(one, alone), observed(runs, together)
    assert len(expected["samples"]) > 30
    if not overrides:  # learning held by the watch, then released
        assert [kind for kind, _ in expected["incidents"]] == ["incident_start", "incident_end"]
    assert expected["counters"]["events_learned"] < expected["counters"]["events_seen"]
    for key in expected:
        assert got[key] == expected[key], key


def test_a_run_ends_at_the_hooks_horizon_and_right_after_a_sample():
    _, state, step, outputs, _ = fresh("compiled")
    records = [
        Record(TP.topic, 0, offset, None, encode_event(e), [], -1) for offset, e in enumerate(read_events(limit=200))
    ]
    positions = {TP: 0}
    ends = []
    i = 0
    while i < len(records):
        i, last, stepped, sampled = step.process_run(
            state, records, i, limit=30, outputs=outputs, positions=positions, tp=TP
        )
        ends.append((last.offset, stepped, sampled))
    # every event labelled: a sample at every 40th; the horizon of 30 records cuts the runs between
    assert ends[:4] == [(29, 30, False), (39, 10, True), (69, 30, False), (79, 10, True)]
    assert sum(stepped for _, stepped, _ in ends) == 200 and positions == {TP: 200}


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(features_exclude=("Month",)), ModelSpec(max_inputs=40)])
def test_the_compiled_engine_steps_a_run_as_it_steps_each_event(spec):
    """:meth:`CompiledModel.step_run` (runs of events with the same features encoded together) against
    encode / predict / learn event by event: the same scores and the same state, with learning on and off."""
    records = [
        decode_event(value, "msgpack", EventLimits()) for value in stream(collide=False)[:1200] if value[0] != 0xC1
    ]
    one, runs = CompiledModel(spec), CompiledModel(spec)
    expected = []
    for k, event in enumerate(records):
        learn = event.label is not None and k % 9 != 4
        x = one.encode(event.features, learn=learn)
        expected.append(one.predict_encoded(x))
        if learn:
            one.learn_encoded(x, event.label)
    got: list[float] = []
    for size in itertools.cycle((1, 64, 5, 300)):
        chunk = records[len(got) : len(got) + size]
        if not chunk:
            break
        at = len(got)
        got += runs.step_run(
            [e.features for e in chunk],
            [e.label for e in chunk],
            [e.label is not None and (at + k) % 9 != 4 for k, e in enumerate(chunk)],
        )
    assert got == expected
    assert runs.dump_state() == one.dump_state() and runs.steps == one.steps
