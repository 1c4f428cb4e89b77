"""The snapshot writer thread, with the real classes: a real store and lease on redis-server, a real producer.

Versions are written in capture order with the one before as parent, whatever order their outputs are
delivered in; a capture on a lineage the learner left is dropped; a fenced write surfaces in the learner
thread as :class:`LeaseLostError` and stops the writer; closing joins the thread.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from snapshotter.lease import Lease
from snapshotter.store import open_store
from streaming.errors import LeaseLostError
from streaming.learner.checkpoint import Checkpoints
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.transport import TopicPartition, make_consumer, make_producer

WAIT = 60.0  # seconds: generous on a busy machine; a pass never waits this long


@pytest.fixture
def parts(make_settings):
    settings = make_settings(engine="compiled")
    store = open_store(settings)
    lease = Lease(store.client, settings.model_name, "writer-test", settings.lease_ttl_seconds)
    assert lease.acquire()
    telemetry = LearnerMetrics(CollectorRegistry(), settings.model_name)
    checkpoints = Checkpoints(settings, store, lease, "writer-test", telemetry)
    producer, consumer = make_producer(settings), make_consumer(settings)
    outputs = Outputs(producer, settings, telemetry)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    checkpoints.start(state)
    yield settings, store, lease, checkpoints, outputs, consumer, state
    checkpoints.close()
    consumer.close()
    producer.close(timeout=5)


def learn(state: LearnerState, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        state.model.learn_one({"page": f"p{i % 50}", "x": float(i % 7)}, i % 3 == 0)
        state.counters["events_seen"] += 1


def test_versions_are_written_in_capture_order_with_the_one_before_as_parent(parts):
    settings, store, _lease, checkpoints, outputs, consumer, state = parts
    tp = TopicPartition(settings.events_topic, 0)
    jobs, expected = [], []
    for k in range(3):
        learn(state, 40, 40 * k)
        expected.append(state.model.dump_state())
        jobs.append(checkpoints.capture(state, outputs, {tp: 40 * (k + 1)}))
        learn(state, 5, 1000 + k)  # the live model moves on before anything is written
    checkpoints.release(jobs[2])  # the newest's outputs first: still written last
    checkpoints.release(jobs[1])
    assert not jobs[2].done.wait(0.3)  # waits for the oldest
    checkpoints.release(jobs[0])
    meta = checkpoints.collect(state, consumer, until=jobs[2])
    assert meta is not None and checkpoints.in_flight == 0
    numbers = [job.meta.number for job in jobs]
    assert numbers == sorted(numbers) and state.parent == numbers[-1] == meta.number
    assert [store.meta(n).parent for n in numbers] == [None, numbers[0], numbers[1]]
    assert state.offsets == {settings.events_topic: {"0": 120}}
    for number, dumped in zip(numbers, expected, strict=True):  # each version is the state at its capture
        _meta, loaded = store.load(number)
        assert loaded.model == dumped


def test_a_capture_on_a_lineage_the_learner_left_is_dropped_and_the_next_one_written(parts):
    settings, store, _lease, checkpoints, outputs, consumer, state = parts
    tp = TopicPartition(settings.events_topic, 0)
    learn(state, 30)
    old = checkpoints.capture(state, outputs, {tp: 30})
    state.epoch += 1  # as following a rollback does (here without one: the writer's own check drops it)
    checkpoints.follow(state)
    checkpoints.release(old)
    assert checkpoints.collect(state, consumer, until=old) is None
    assert old.meta is None and old.error is None and "moved on" in old.dropped
    assert checkpoints.lineage_moved and store.head() is None


def test_a_fenced_write_is_lease_lost_in_the_learner_thread_and_stops_the_writer(parts):
    settings, store, lease, checkpoints, outputs, consumer, state = parts
    tp = TopicPartition(settings.events_topic, 0)
    learn(state, 30)
    first = checkpoints.capture(state, outputs, {tp: 30})
    second = checkpoints.capture(state, outputs, {tp: 31})
    lease.release()
    other = Lease(store.client, settings.model_name, "another", settings.lease_ttl_seconds)
    assert other.acquire()  # another learner took over: our writes are fenced
    checkpoints.release(first)
    checkpoints.release(second)
    assert second.done.wait(WAIT)
    with pytest.raises(LeaseLostError, match="no longer holds"):
        checkpoints.collect(state, consumer)
    assert second.meta is None and "earlier snapshot write failed" in second.dropped
    assert store.head() is None and checkpoints.in_flight == 0


def test_closing_joins_the_writer_and_drops_what_was_not_released(parts):
    settings, store, _lease, checkpoints, outputs, _consumer, state = parts
    learn(state, 30)
    job = checkpoints.capture(state, outputs, {TopicPartition(settings.events_topic, 0): 30})
    writer = checkpoints.writer
    assert writer is not None and writer.alive
    checkpoints.close()
    assert not writer.alive and job.done.is_set() and job.meta is None and "closing" in job.dropped
    assert store.head() is None


def test_the_synchronous_snapshot_waits_for_the_ones_captured_before(parts):
    settings, store, _lease, checkpoints, outputs, consumer, state = parts
    tp = TopicPartition(settings.events_topic, 0)
    learn(state, 30)
    pending = checkpoints.capture(state, outputs, {tp: 30})  # never released by hand: snapshot() flushes
    learn(state, 10, 30)
    meta = checkpoints.snapshot(state, outputs, {tp: 40}, consumer)
    assert meta is not None and pending.meta is not None
    assert meta.parent == pending.meta.number and store.head() == meta.number == state.parent


def test_a_held_writer_starts_no_work_until_the_learner_steps_events_or_waits_for_it(monkeypatch):
    """Between batches (``hold``) the writer does not start encoding; ``go`` or the learner waiting lets it."""
    import threading

    from snapshotter.codec import EncodedSnapshot, SnapshotState, VersionMeta
    from streaming.learner import writer as writer_module

    monkeypatch.setattr(writer_module, "PACE_SECONDS", WAIT)  # the bound is far away: only go/wait open it
    encoding = threading.Event()

    def encode(captured):
        encoding.set()
        return EncodedSnapshot.of(captured)

    def write(captured, encoded, parent):
        return VersionMeta(1, 0.0, "w", 0, 0, 0, {}, {}, parent, {}, 2, encoded.sha256, 1)

    writer = writer_module.SnapshotWriter(encode, write, epoch=0)
    try:
        writer.hold()
        job = writer.submit(SnapshotState({}, {}, {}, {}), epoch=0, parent=None)
        writer.release(job)
        assert not encoding.wait(0.3)  # held: the learner is polling, delivering, talking to Redis
        writer.go()
        assert encoding.wait(WAIT) and job.done.wait(WAIT) and job.meta is not None
        writer.hold()
        second = writer.submit(SnapshotState({}, {}, {}, {}), epoch=0, parent=None)
        writer.release(second)
        assert writer.wait(second, timeout=WAIT) and second.meta is not None  # the learner waits: no hold
    finally:
        writer.close()
