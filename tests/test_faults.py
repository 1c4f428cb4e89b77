"""Fault injection with real processes: learners killed at random moments, Redis and the broker paused,
Redis restarted empty or from its append-only file, Redis out of memory, a rollback whose learner dies.

Every scenario ends the same way: every produced event was scored and learned exactly once, and the
final model is bit-identical to a plain river loop over the events the lineage kept — or the learner
refuses with a clear message. Servers that a test stops or restarts are its own (``private``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import learner_id, metric, produce, settings_on, status_of, store_for, wait_for, wait_until_running
from reference import plain_river_loop, river_state

from snapshotter.control import ControlPlane
from streaming.errors import BrokerUnavailableError
from streaming.local.dataset import read_events
from streaming.local.embedded import EmbeddedServer, free_port, start_redis, start_tansu
from streaming.transport import make_consumer, topic_partitions

EVENTS = list(read_events())
N = len(EVENTS)
pytestmark = pytest.mark.integration


class Private:
    """A broker and a redis-server of one test's own."""

    def __init__(self, appendonly: bool = False) -> None:
        self.appendonly = appendonly
        self.broker: EmbeddedServer = start_tansu()
        self.redis: EmbeddedServer = start_redis(appendonly=appendonly)

    def restart_redis(self, *, keep_data: bool) -> None:
        port, workdir = self.redis.port, self.redis.workdir
        self.redis.process.kill()
        self.redis.process.wait()
        self.redis.stop()
        self.redis = start_redis(port, workdir=workdir if keep_data else None, appendonly=self.appendonly)

    def stop(self) -> None:
        for server in (self.broker, self.redis):
            if server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)
            server.stop()


@pytest.fixture
def private(request) -> Iterator[Private]:
    servers = Private(appendonly=getattr(request, "param", False))
    try:
        yield servers
    finally:
        servers.stop()


def settings_for(private: Private, request, **overrides):
    values = {
        "snapshot_every_events": 500,
        "status_interval_seconds": 0.2,
        "lease_ttl_seconds": 3,
        "redis_timeout_seconds": 0.5,
        "kafka_unreachable_seconds": 2,
        "kafka_bootstrap_timeout_seconds": 3,
    }
    return settings_on(private.broker.address, private.redis.address, request.node.name, **{**values, **overrides})


def streaming(settings, events, rate: float) -> threading.Thread:
    thread = threading.Thread(target=produce, args=(settings, events), kwargs={"rate": rate}, daemon=True)
    thread.start()
    return thread


def seen(settings) -> int:
    return (status_of(settings) or {}).get("counters", {}).get("events_seen", 0)


def assert_learned_exactly(settings, events) -> None:
    """The newest version holds every event once, and the model river would have learned from them."""
    store = store_for(settings)
    meta, state = store.load(store.head())
    assert meta.events_seen == meta.events_learned == len(events)
    assert sum(meta.offsets[settings.events_topic].values()) == len(events)
    expected = river_state(plain_river_loop(events)[0])
    assert state.model["weights"] == expected["weights"]
    assert state.model["intercept"] == expected["intercept"]
    assert state.model["scaler"] == expected["scaler"]


def stopped_at_3200(make_settings, learners):
    """A learner that read 3,200 events (versions 1-6 at 500-3,000, the last 200 events in none), then stopped
    (SIGSTOP: it can no longer apply anything). Returns its settings, the 4,200 events, the learner, the store."""
    settings = make_settings(
        snapshot_every_events=500,
        snapshot_every_seconds=3600,  # versions by events only
        status_interval_seconds=0.1,
        lease_ttl_seconds=2,
        publish_predictions=False,
    )
    events = EVENTS[:4200]
    produce(settings, events[:3200])
    first = learners(settings)
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == 3200, 60, "the learner to read 3,200")
    os.kill(first.proc.pid, signal.SIGSTOP)
    return settings, events, first, store_for(settings)


def test_a_rollback_is_not_undone_when_its_learner_dies_before_applying_it(make_settings, learners):
    settings, events, first, store = stopped_at_3200(make_settings, learners)
    assert store.meta(store.head()).events_seen == 3000  # the last 200 events are in no snapshot
    ControlPlane(store).rollback(to=2, actor="test", reason="bad labels after event 1,000")
    assert store.resume_point()["offsets"] == {settings.events_topic: {"0": 3200}}
    # with the counters there: the dead learner's last status (its last version counted 3,000)
    assert store.resume_point()["counters"]["events_seen"] == 3200
    first.kill()
    first_of_lineage, meta = successor_after_unapplied_rollback(settings, learners, events, epoch=1)
    # the stream counters go on from where the dead learner stopped, its last 200 events (in no version) included:
    # every event produced counted once, as if the learner had applied the rollback itself
    assert first_of_lineage.events_seen == first_of_lineage.events_learned == 3200
    assert meta.events_learned == meta.events_seen == len(events)


def successor_after_unapplied_rollback(settings, learners, events, *, epoch: int):
    """The rest of ``events`` (from 3,200) through a successor of a learner that died before applying a rollback
    to version 2 (its events 0-1,000): the lineage it made skips 1,000-3,200 and its model is a plain river loop
    over the rest. Returns the first version of that lineage and the final one."""
    store = store_for(settings)
    produce(settings, events[3200:])
    successor = learners(settings)
    wait_for(
        lambda: (
            (status_of(settings) or {}).get("epoch") == epoch
            and (status_of(settings) or {}).get("stream_position") == len(events)
        ),
        60,
        "the successor to reach the end",
    )
    successor.terminate()
    first_of_lineage = next(m for m in store.list() if m.epoch == epoch)
    assert first_of_lineage.parent == 2
    assert first_of_lineage.extra["rollback"]["skipped_offsets"] == {settings.events_topic: {"0": [1000, 3200]}}
    meta, state = store.load(store.head())
    expected = river_state(plain_river_loop(events[:1000] + events[3200:])[0])
    assert state.model["weights"] == expected["weights"]
    assert state.model["intercept"] == expected["intercept"]
    assert meta.model_events_learned == 1000 + 1000  # the model: the target's 1,000 and the 1,000 after the skip
    return first_of_lineage, meta


def test_two_rollbacks_no_learner_applied_skip_and_count_as_the_first_one_recorded(make_settings, learners):
    """A second rollback made before any learner applied the first keeps the first one's skip and counts (its
    record outlives the dead learner's status), so the successor neither learns the discarded events again nor
    loses the dead learner's last events from its counters."""
    settings, events, first, store = stopped_at_3200(make_settings, learners)
    control = ControlPlane(store)
    control.rollback(to=4, actor="test", reason="bad labels after event 2,000")
    wait_for(lambda: store.status() is None, 30, "the stopped learner's status to expire")
    control.rollback(to=2, actor="test", reason="bad labels after event 1,000 after all")
    assert store.resume_point()["offsets"] == {settings.events_topic: {"0": 3200}}
    assert store.resume_point()["counters"]["events_seen"] == 3200
    first.kill()
    _first_of_lineage, meta = successor_after_unapplied_rollback(settings, learners, events, epoch=2)
    assert meta.events_learned == meta.events_seen == len(events)


@pytest.mark.parametrize("standby", [False, True], ids=["alone", "with-standby"])
def test_learners_killed_at_random_moments_lose_nothing_and_learn_nothing_twice(make_settings, learners, standby):
    rng = random.Random(20261127 + standby)
    settings = make_settings(snapshot_every_events=400, status_interval_seconds=0.1, lease_ttl_seconds=2)
    producer = streaming(settings, EVENTS, rate=3000)
    running = [learners(settings) for _ in range(1 + standby)]
    for threshold in sorted(rng.sample(range(500, N - 1000), 4)):
        wait_for(
            lambda: (status_of(settings) or {}).get("writer") in {learner_id(p) for p in running},
            60,
            "a running learner to be active",
        )
        wait_for(lambda t=threshold: seen(settings) >= t, 120, f"the learner to pass {threshold:,} events")
        active = next(p for p in running if learner_id(p) == status_of(settings)["writer"])
        active.kill()
        running.remove(active)
        running.append(learners(settings))
        if standby:
            wait_until_running(settings, standbys=tuple(p for p in running if p.proc.poll() is None))
    producer.join()
    # by a running learner: the killed one's status (N seen, if it got there first) outlives it for seconds, and
    # terminating its successor before that one even installed its signal handler would end it with -15
    wait_for(
        lambda: seen(settings) == N and (status_of(settings) or {}).get("writer") in {learner_id(p) for p in running},
        120,
        "a running learner to have learned the stream",
    )
    for process in running:
        process.terminate()
    assert_learned_exactly(settings, EVENTS)


def test_redis_paused_then_back_loses_nothing(private, request, learners):
    settings = settings_for(private, request)
    port = free_port()
    producer = streaming(settings, EVENTS[:8000], rate=2000)
    learner = learners(settings, "--metrics-port", str(port))
    wait_for(lambda: seen(settings) >= 2000, 60, "the learner to pass 2,000 events")
    os.kill(private.redis.process.pid, signal.SIGSTOP)
    wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 60, "the learner to report Redis down")
    os.kill(private.redis.process.pid, signal.SIGCONT)
    producer.join()
    wait_for(lambda: seen(settings) == 8000, 120, "the learner to finish after Redis is back")
    assert metric(port, "livelearn_redis_up") == 1
    out = learner.terminate()
    assert "Redis cannot be reached" in out
    assert "Redis is back" in out
    assert_learned_exactly(settings, EVENTS[:8000])


@pytest.mark.parametrize("private", [True], indirect=True, ids=["appendonly"])
def test_redis_killed_and_restarted_from_its_append_only_file_loses_nothing(private, request, learners):
    settings = settings_for(private, request)
    producer = streaming(settings, EVENTS[:8000], rate=2000)
    learner = learners(settings)
    wait_for(lambda: seen(settings) >= 2500, 60, "the learner to pass 2,500 events")
    private.restart_redis(keep_data=True)
    producer.join()
    wait_for(lambda: seen(settings) == 8000, 120, "the learner to finish after the restart")
    learner.terminate()
    assert_learned_exactly(settings, EVENTS[:8000])


def test_redis_restarted_empty_is_refused_with_a_clear_message(private, request, learners):
    settings = settings_for(private, request)
    producer = streaming(settings, EVENTS[:6000], rate=2000)
    learner = learners(settings)
    wait_for(lambda: seen(settings) >= 2500, 60, "the learner to pass 2,500 events")
    # what tells a lost store from a new model is the offsets the group committed after a version: wait for them
    # (versions are written by a background thread, the commits follow; under load they trail the status)
    wait_for(lambda: committed_offset(settings) > 0, 60, "the learner to commit a version's offsets")
    private.restart_redis(keep_data=False)  # no persistence: every version is gone
    out, _ = learner.proc.communicate(timeout=120)
    producer.join()
    text = out.decode()
    assert learner.proc.returncode == 2, text
    assert "Redis lost its data" in text
    assert "--allow-empty-store" in text
    assert "Traceback" not in text
    assert store_for(settings).head() is None  # it wrote nothing: no version 1 reused
    learners(settings, "--until-caught-up", "--allow-empty-store").wait()  # the explicit way to start over
    assert store_for(settings).meta(store_for(settings).head()).events_seen == 6000


def committed_offset(settings) -> int:
    """The offset the model's consumer group committed for the events topic (0: none yet)."""
    consumer = make_consumer(settings)
    try:
        (tp,) = topic_partitions(consumer, settings.events_topic)
        mark = consumer.committed(tp, timeout_ms=10_000)
        return 0 if mark is None else mark.offset
    finally:
        consumer.close()


def test_redis_out_of_memory_is_reported_as_such_and_waited_out(private, request, learners):
    settings = settings_for(private, request)
    port = free_port()
    admin = store_for(settings).client
    producer = streaming(settings, EVENTS[:8000], rate=2000)
    learner = learners(settings, "--metrics-port", str(port))
    wait_for(lambda: seen(settings) >= 2000, 60, "the learner to pass 2,000 events")
    admin.config_set("maxmemory", 1)  # every write refused (at the memory used now, retention could free room)
    wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 60, "the learner to report the refusal")
    admin.config_set("maxmemory", 0)
    producer.join()
    wait_for(lambda: seen(settings) == 8000, 120, "the learner to finish once Redis accepts writes")
    out = learner.terminate()
    assert "out of memory" in out
    assert "Redis cannot be reached" not in out
    assert_learned_exactly(settings, EVENTS[:8000])


def test_a_silent_broker_is_reported_and_lag_is_unknown_not_zero(private, request, learners):
    settings = settings_for(private, request)
    port = free_port()
    produce(settings, EVENTS[:3000])
    learner = learners(settings, "--metrics-port", str(port))
    wait_for(lambda: (status_of(settings) or {}).get("lag") == 0 and seen(settings) == 3000, 60, "the learner to idle")
    os.kill(private.broker.process.pid, signal.SIGSTOP)
    wait_for(
        lambda: "lag" in (status_of(settings) or {}) and status_of(settings)["lag"] is None,
        60,
        "the status to say the lag is unknown",
    )
    assert metric(port, "livelearn_kafka_up") == 0
    os.kill(private.broker.process.pid, signal.SIGCONT)
    wait_for(lambda: (status_of(settings) or {}).get("lag") == 0, 60, "the lag to be known again")
    produce(settings, EVENTS[3000:5000])
    wait_for(lambda: seen(settings) == 5000, 60, "the learner to go on")
    out = learner.terminate()
    assert "has not answered" in out
    assert "answers again" in out
    assert_learned_exactly(settings, EVENTS[:5000])


def test_a_broker_stalled_while_predictions_are_pending_loses_nothing(private, request, learners):
    # Enough events that the learner is still busy when the broker stops (it learns ~20,000 events/s on a
    # quiet machine, status every 0.2 s): the records it fetched before are scored, their predictions pend.
    events = list(read_events(repeat=3))
    settings = settings_for(private, request, snapshot_every_events=300)
    port = free_port()
    produce(settings, events)
    learner = learners(settings, "--metrics-port", str(port))
    wait_for(lambda: seen(settings) >= 1500, 60, "the learner to pass 1,500 events")
    assert seen(settings) < len(events) - 5000, "the learner got too far ahead of the stall for this test"
    os.kill(private.broker.process.pid, signal.SIGSTOP)  # its predictions cannot be delivered now
    wait_for(lambda: metric(port, "livelearn_kafka_up") == 0, 60, "the learner to notice")
    os.kill(private.broker.process.pid, signal.SIGCONT)
    wait_for(lambda: seen(settings) == len(events), 120, "the learner to finish after the stall")
    out = learner.terminate()
    assert "no snapshot written past them" in out
    assert "resuming from the newest snapshot" in out
    assert_learned_exactly(settings, events)


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_a_consumer_closes_in_bounded_time_while_its_commit_hangs_on_a_stalled_broker(private, request, client):
    """librdkafka's close waits for a commit in flight (minutes on a stopped broker): the adapter bounds it, so a
    learner reaches its outage handling (found by the stalled-broker test above under load)."""
    settings = settings_for(private, request, kafka_client=client)
    consumer = make_consumer(settings)
    tp = topic_partitions(consumer, settings.events_topic)[0]
    consumer.assign([tp])
    consumer.seek(tp, 0)
    consumer.poll(timeout_ms=100, max_records=1)
    consumer.commit({tp: 0}, "livelearn v1", wait=True)
    os.kill(private.broker.process.pid, signal.SIGSTOP)
    try:
        # not answered: given up after its wait (BrokerUnavailableError), and still in flight
        with contextlib.suppress(BrokerUnavailableError):
            consumer.commit({tp: 0}, "livelearn v2", wait=True)
        started = time.monotonic()
        consumer.close()
        assert time.monotonic() - started < 15
    finally:
        os.kill(private.broker.process.pid, signal.SIGCONT)
