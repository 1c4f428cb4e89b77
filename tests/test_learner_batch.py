"""One poll batch of an active learner (:mod:`streaming.learner.batch`), and the versions its captures go to
(:mod:`streaming.learner.versions`), without a broker or Redis.

The real per-event step runs over the bundled dataset, fed records as a poll returns them (the producer is a narrow
fake that acknowledges everything): what the batches learn is what a plain river loop learns from the same events,
bit for bit. The event hooks and the versions run against fakes that record what they were asked, in order.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import DeliveringProducer
from prometheus_client import CollectorRegistry
from reference import plain_river_loop, river_state

from streaming.config import Settings
from streaming.errors import LeaseLostError, SnapshotFencedError, StaleLineageError
from streaming.events import encode_event
from streaming.learner.batch import ActOnIncidents, BatchStep, CaptureWhenDue, PromoteConfirmed, event_hooks
from streaming.learner.cadence import Cadence
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.learner.versions import MAX_PENDING_CAPTURES, ActiveVersions
from streaming.local.dataset import read_events
from streaming.transport import Record, TopicPartition

EVENTS = list(read_events(limit=1200))
P0, P1 = TopicPartition("events", 0), TopicPartition("events", 1)


class _Writer:
    """The snapshot writer's turns, in the log the hooks write to, with the events counted in Prometheus by then."""

    def __init__(self, log: list, registry: CollectorRegistry) -> None:
        self.log, self.registry = log, registry

    def counted(self) -> float:
        return self.registry.get_sample_value("livelearn_events_consumed_total", {"model": "default"}) or 0.0

    def release_writer(self) -> None:
        self.log.append(("release writer", self.counted()))

    def hold_writer(self) -> None:
        self.log.append(("hold writer", self.counted()))


class _Seen:
    """A hook that notes what it saw."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def horizon(self) -> int:
        return 1  # after every event

    def after_run(self, record: Record, positions: dict, sampled: bool, stepped: int) -> None:
        assert stepped == 1
        self.log.append((self.name, record.partition, record.offset, positions[P0], positions.get(P1), sampled))


def record(tp: TopicPartition, offset: int, value: bytes) -> Record:
    return Record(tp.topic, tp.partition, offset, None, value, [], -1)


def batch_step(hooks=(), *, log: list | None = None, **overrides: Any) -> tuple[BatchStep, LearnerState]:
    settings = Settings(publish_predictions=False, event_format="msgpack", **overrides)
    registry = CollectorRegistry()
    telemetry = LearnerMetrics(registry, settings.model_name)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    outputs = Outputs(DeliveringProducer(), settings, telemetry)  # type: ignore[arg-type]
    step = EventStep(settings, telemetry)
    return BatchStep(state, step, outputs, list(hooks), _Writer([] if log is None else log, registry)), state


def two_partitions(events: list) -> dict[TopicPartition, list[Record]]:
    """Every third event to partition 1, the rest to partition 0, each with the offsets of its partition."""
    records: dict[TopicPartition, list[Record]] = {P0: [], P1: []}
    for i, event in enumerate(events):
        tp = P1 if i % 3 == 0 else P0
        records[tp].append(record(tp, len(records[tp]), encode_event(event)))
    return records


@pytest.mark.parametrize("engine", ["river", "compiled"])
def test_batches_learn_what_a_plain_river_loop_learns_from_the_same_events_bit_for_bit(engine):
    step, state = batch_step(engine=engine)
    records = two_partitions(EVENTS)
    decoded = {tp: [EVENTS[i] for i in range(len(EVENTS)) if (i % 3 == 0) == (tp == P1)] for tp in records}
    positions = {P0: 0, P1: 0}
    learned_order = []
    # polls of uneven sizes from both partitions, a producer's retry and an undecodable record among them, and a
    # poll that hands back records consumed already (a fetch repeated after a seek): those are not stepped again
    retry = records[P0][5]._replace(offset=len(records[P0]))
    records[P0].append(retry)
    records[P1].append(record(P1, len(records[P1]), b"\xff not an event"))
    cursor = {P0: 0, P1: 0}
    for size in itertools.cycle((1, 37, 250, 3)):
        batch = {tp: records[tp][cursor[tp] : cursor[tp] + size] for tp in (P0, P1) if cursor[tp] < len(records[tp])}
        if not batch:
            break
        for tp, polled in batch.items():
            learned_order += [decoded[tp][r.offset] for r in polled if r.offset < len(decoded[tp])]
            cursor[tp] += len(polled)
        step.process(batch, positions)
        step.process({P0: records[P0][max(0, cursor[P0] - 2) : cursor[P0]]}, positions)  # repeated: skipped
    assert positions == {P0: len(records[P0]), P1: len(records[P1])}
    assert state.counters == {
        "events_seen": len(EVENTS),
        "events_learned": len(EVENTS),
        "dead_lettered": 1,
        "duplicates": 1,
    }
    expected = river_state(plain_river_loop(learned_order)[0])
    learned = state.model.dump_state()
    assert learned["weights"] == expected["weights"]
    assert learned["intercept"] == expected["intercept"]
    assert learned["scaler"] == expected["scaler"]


def test_each_hook_runs_after_each_stepped_event_in_list_order_knowing_whether_it_recorded_a_sample():
    log: list = []
    step, state = batch_step([_Seen("first", log), _Seen("second", log)], log=log, history_every_events=50)
    records = two_partitions(EVENTS[:300])
    step.process(records, {P0: 0, P1: 0})
    # the writer works while events are stepped; held after the batch, and only then are the counts added
    assert log[0] == ("release writer", 0.0) and log[-1] == ("hold writer", 0.0)
    assert step.writer.counted() == 300.0  # type: ignore[attr-defined]
    seen = log[1:-1]
    assert [name for name, *_ in seen] == ["first", "second"] * 300
    firsts = seen[0::2]
    assert [entry[1:] for entry in seen[1::2]] == [entry[1:] for entry in firsts]
    # partition 0's records first (as the poll returned them), each seen with the position just past it
    assert [(p, offset) for _, p, offset, *_ in firsts] == [(0, n) for n in range(200)] + [(1, n) for n in range(100)]
    assert all(at0 == offset + 1 for _, p, offset, at0, _, _ in firsts if p == 0)
    assert all(at1 == offset + 1 and at0 == 200 for _, p, offset, at0, at1, _ in firsts if p == 1)
    # every event of the dataset is labelled: a sample at every 50th stepped event, and only there
    assert [n for n, entry in enumerate(firsts, 1) if entry[5]] == [50, 100, 150, 200, 250, 300]
    assert len(state.samples) == 6


def test_a_hook_that_moves_the_position_forward_skips_the_records_before_it_in_the_same_batch():
    class Rollback:
        """At partition 0's offset 10, seeks it to 20 (as following a rollback does)."""

        def horizon(self) -> int:
            return 1

        def after_run(self, record: Record, positions: dict, sampled: bool, stepped: int) -> None:
            if record.partition == 0 and record.offset == 10:
                positions[P0] = 20

    log: list = []
    step, state = batch_step([Rollback(), _Seen("seen", log)], log=log)
    records = two_partitions(EVENTS[:90])
    positions = {P0: 0, P1: 0}
    step.process(records, positions)
    stepped = [(p, offset) for _, p, offset, *_ in log[1:-1]]  # (between the writer's turns)
    assert stepped == [(0, n) for n in [*range(11), *range(20, 60)]] + [(1, n) for n in range(30)]
    assert state.counters["events_seen"] == 81 and positions == {P0: 60, P1: 30}


# -- the event hooks -----------------------------------------------------------------------------------------------
class _Versions:
    """What the hooks ask of the activation's versions, logged."""

    def __init__(self, log: list, in_flight: int = 0) -> None:
        self.log, self.in_flight, self.lineage_moved = log, in_flight, False

    def write_when_delivered(self, *, wait: bool = False) -> None:
        self.log.append(("write when delivered", wait))

    def capture(self, positions: dict) -> None:
        self.log.append(("capture", dict(positions)))

    def promote(self, up_to: int | None = None) -> None:
        self.log.append("promote")


class _Incidents:
    def __init__(self, log: list) -> None:
        self.log = log

    def act(self, state: Any, consumed: dict, confirmed_at: Any = None) -> None:
        self.log.append(("act", consumed))
        state.incident_events = []


def fresh_state() -> LearnerState:
    settings = Settings(engine="river")
    return LearnerState.fresh(spec_from_settings(settings), settings)


@pytest.mark.parametrize("in_flight", [0, 2])
def test_an_incident_is_recorded_after_the_versions_before_it_are_written_then_followed_at_once(in_flight):
    log: list = []
    state, versions = fresh_state(), _Versions(log, in_flight)
    follow = lambda: log.append(("follow", versions.lineage_moved))  # noqa: E731
    hook = ActOnIncidents(state, versions, _Incidents(log), follow)  # type: ignore[arg-type]
    positions = {P0: 120, P1: 80, TopicPartition("other", 0): 7}
    hook.after_run(record(P0, 119, b""), positions, True, 1)
    assert log == []  # no incident: nothing
    state.incident_events = [(SimpleNamespace(kind="incident_start", change_point=None), {"scored": 200})]  # type: ignore[list-item]
    hook.after_run(record(P0, 119, b""), positions, True, 1)
    written = [("write when delivered", True)] if in_flight else []  # its target may be among them
    consumed = {"events": {"0": 120, "1": 80}, "other": {"0": 7}}
    assert log == [*written, ("act", consumed), ("follow", True)]  # the lineage is read at once, not at a poll


def test_confirmed_candidates_are_promoted_at_the_event_and_only_then():
    log: list = []
    state, versions = fresh_state(), _Versions(log)
    hook = PromoteConfirmed(state, versions)  # type: ignore[arg-type]
    state.unconfirmed = [500]
    for confirmed in (None, 499, 500):
        state.confirmed = confirmed
        # a confirmed candidate waiting ends the next run after one record (before a sample could open an incident)
        assert hook.horizon() == (1 if confirmed == 500 else None)
        hook.after_run(record(P0, 0, b""), {P0: 1}, False, 1)
    assert log == ["promote"]


def test_a_version_is_captured_every_n_records_and_at_a_sample_once_the_interval_passed():
    log: list = []
    now = [0.0]
    versions = _Versions(log)
    cadence = Cadence(Settings(snapshot_every_events=5, snapshot_every_seconds=30), now=0.0, seen=0)
    hook = CaptureWhenDue(cadence, versions, clock=lambda: now[0])  # type: ignore[arg-type]

    def step(offset: int, sampled: bool = False) -> None:
        hook.after_run(record(P0, offset, b""), {P0: offset + 1}, sampled, 1)

    for offset in range(10):
        step(offset)
    assert log == [("capture", {P0: 5}), ("capture", {P0: 10})]
    now[0] = 20.0
    step(10, sampled=True)  # a sample before the interval passed: no version
    now[0] = 40.0
    step(11)  # the interval passed, no sample here: no version
    step(12, sampled=True)  # at the sample: a version, and the count starts over
    assert log[2:] == [("capture", {P0: 13})]
    assert cadence.last_snapshot_at == 40.0 and cadence.since_snapshot == 0
    versions.in_flight = 1  # earlier versions whose outputs may be in: released first, without waiting
    for offset in range(13, 18):
        step(offset)
    assert log[3:] == [("write when delivered", False)] * 5 + [("capture", {P0: 18})]


def test_the_hooks_act_on_an_incident_before_promoting_and_capture_last():
    log: list = []
    state, versions = fresh_state(), _Versions(log)
    cadence = Cadence(Settings(snapshot_every_events=1), now=0.0, seen=0)

    def follow() -> None:
        log.append("follow")
        state.unconfirmed, state.confirmed = [10], 10  # as if the move left a confirmed candidate

    hooks = event_hooks(state, versions, _Incidents(log), cadence, follow)  # type: ignore[arg-type]
    state.incident_events = [(SimpleNamespace(kind="incident_end", change_point=None), {})]  # type: ignore[list-item]
    for hook in hooks:
        hook.after_run(record(P0, 9, b""), {P0: 10}, True, 1)
    assert log == [("act", {"events": {"0": 10}}), "follow", "promote", ("capture", {P0: 10})]


# -- the activation's versions -------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Job:
    name: str
    captured: Any


class _Checkpoints:
    """The capture/release/collect side of :class:`Checkpoints`, logged: a job is collected when waited for."""

    def __init__(self, log: list) -> None:
        self.log, self.jobs, self.lineage_moved, self.count = log, [], False, 0
        self.snapshot_result: Any = SimpleNamespace(number=1)
        self.promote_error: Exception | None = None

    @property
    def in_flight(self) -> int:
        return len(self.jobs)

    def capture(self, state: Any, outputs: Any, positions: dict) -> _Job:
        self.count += 1
        job = _Job(f"v{self.count}", SimpleNamespace(mark=self.count, at=time.monotonic() - outputs.age))
        self.jobs.append(job)
        self.log.append(("capture", job.name))
        return job

    def release(self, job: _Job) -> None:
        self.log.append(("release", job.name))

    def collect(self, state: Any, consumer: Any, *, until: Any = None) -> None:
        self.log.append(("collect", until.name if until else None))
        if until is not None:
            del self.jobs[: self.jobs.index(until) + 1]

    def snapshot(self, state: Any, outputs: Any, positions: dict, consumer: Any) -> Any:
        self.log.append("snapshot")
        return self.snapshot_result

    def promote(self, state: Any, *, up_to: int | None = None) -> None:
        self.log.append("promote")
        if self.promote_error is not None:
            raise self.promote_error


class _Outputs:
    def __init__(self, log: list) -> None:
        self.log, self.delivered_up_to, self.timeout = log, 0, 60.0
        self.age = 0.0  # how long before now the next capture was taken

    def delivered(self, mark: int) -> bool:
        return mark <= self.delivered_up_to

    def flush(self) -> None:
        self.log.append("flush")
        self.delivered_up_to = 10**9


def versions_on_fakes() -> tuple[ActiveVersions, _Checkpoints, _Outputs, list]:
    log: list = []
    checkpoints, outputs = _Checkpoints(log), _Outputs(log)
    return ActiveVersions(checkpoints, fresh_state(), outputs, None), checkpoints, outputs, log  # type: ignore[arg-type]


def test_captures_are_released_oldest_first_once_their_outputs_are_delivered():
    versions, _checkpoints, outputs, log = versions_on_fakes()
    for _ in range(3):
        versions.capture({P0: 1})
    outputs.delivered_up_to = 2
    versions.write_when_delivered()  # v3's outputs are not in, nor is it late: it waits (no flush)
    assert log[3:] == [("release", "v1"), ("release", "v2"), ("collect", None)]
    assert [job.name for job in versions.waiting] == ["v3"]
    versions.write_when_delivered(wait=True)  # caught up: flushed, released, and waited for
    assert log[6:] == ["flush", ("release", "v3"), ("collect", "v3")]
    assert not versions.waiting and versions.in_flight == 0
    outputs.delivered_up_to, outputs.age = 0, 61.0  # waiting longer than the outputs' timeout: flushed, not left
    versions.capture({P0: 2})
    versions.write_when_delivered()
    assert log[9:] == [("capture", "v4"), "flush", ("release", "v4"), ("collect", None)]


def test_with_too_many_pending_a_capture_waits_for_the_oldest_one_to_be_written():
    versions, checkpoints, _outputs, log = versions_on_fakes()
    for _ in range(MAX_PENDING_CAPTURES):
        versions.capture({P0: 1})
    del log[:]
    versions.capture({P0: 2})
    assert log == ["flush", ("release", "v1"), ("collect", "v1"), ("capture", "v5")]  # never skipped, never later
    assert [job.name for job in checkpoints.jobs] == ["v2", "v3", "v4", "v5"]


def test_a_dropped_write_a_stale_promotion_or_a_refused_snapshot_asks_to_follow_the_lineage_first():
    versions, checkpoints, _outputs, _log = versions_on_fakes()
    checkpoints.lineage_moved = True
    versions.collect()
    assert versions.lineage_moved and not checkpoints.lineage_moved
    versions.lineage_moved = False
    checkpoints.promote_error = StaleLineageError("moved")
    versions.promote()
    assert versions.lineage_moved
    checkpoints.snapshot_result = None
    assert versions.snapshot({P0: 1}) is None and versions.lineage_moved
    checkpoints.snapshot_result = SimpleNamespace(number=2)
    assert versions.snapshot({P0: 1}) is not None and not versions.lineage_moved
    checkpoints.promote_error = SnapshotFencedError("fenced")
    with pytest.raises(LeaseLostError, match="fenced"):
        versions.promote()
