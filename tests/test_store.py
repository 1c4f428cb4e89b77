"""The version store and the lease against a real redis-server."""

from __future__ import annotations

import threading

import pytest
from conftest import store_for, wait_for

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState
from snapshotter.lease import Lease
from streaming.errors import ModelSpecMismatchError, SnapshotCorruptError, SnapshotFencedError, VersionNotFoundError
from streaming.learner.restore import restore_head
from streaming.model import ModelSpec, OnlineModel

STATE = SnapshotState(spec=ModelSpec().to_dict(), model={}, metrics={}, counters={"events_seen": 7})


def write(store, lease_value=None, parent=None):
    return store.write(
        STATE,
        writer="w",
        lease_value=lease_value,
        offsets={"t": {"0": 7}},
        metrics={"rolling": {"accuracy": 0.9}},
        parent=parent,
    )


def test_versions_are_numbered_immutable_and_checksummed(make_settings):
    store = store_for(make_settings())
    metas = [write(store, parent=n or None) for n in range(3)]
    assert [m.number for m in metas] == [1, 2, 3]
    assert store.head() == 3
    loaded_meta, loaded = store.load(2)
    assert loaded_meta == metas[1]
    assert loaded == STATE
    store.client.set(store.keys.blob(2), store.client.get(store.keys.blob(2)) + b"\x00")  # bit rot
    with pytest.raises(SnapshotCorruptError, match="checksum mismatch"):
        store.load(2)
    with pytest.raises(VersionNotFoundError, match="version 9 of model"):
        store.load(9)


def test_concurrent_writers_get_distinct_numbers(make_settings):
    store = store_for(make_settings(keep_versions=100))
    threads = [threading.Thread(target=lambda: [write(store) for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.numbers() == list(range(1, 81))
    assert all(store.meta(n).events_seen == 7 for n in (1, 40, 80))


def test_retention_keeps_newest_k_and_protected_versions(make_settings):
    store = store_for(make_settings(keep_versions=3))
    write(store)
    store.client.sadd(store.keys.protected, 1)  # e.g. pinned
    for _ in range(6):
        write(store)
    assert store.numbers() == [1, 5, 6, 7]
    assert store.client.get(store.keys.blob(2)) is None
    assert store.client.get(store.keys.meta(2)) is None


def test_lease_is_exclusive_fenced_and_expires(make_settings):
    settings = make_settings()
    store = store_for(settings)
    a = Lease(store.client, settings.model_name, "a", ttl=1)
    b = Lease(store.client, settings.model_name, "b", ttl=1)
    assert a.acquire()
    assert not b.acquire()
    assert write(store, a.value).number == 1
    stale_value, stale_token = a.value, a.token
    store.client.pexpire(store.keys.lease, 1)  # a stalls past its TTL
    wait_for(lambda: not store.client.exists(store.keys.lease), 5, "the lease to expire")
    with pytest.raises(SnapshotFencedError, match=r"held by nobody \(it expired, or Redis lost it\)"):
        write(store, stale_value)  # nobody holds it now: said so, not "held by false"
    assert b.acquire()
    assert b.token == stale_token + 1
    assert not a.renew()
    assert a.value is None
    with pytest.raises(SnapshotFencedError, match=f"held by {b.value}"):
        write(store, stale_value)
    assert write(store, b.value).number == 2


def test_restore_falls_back_past_a_corrupt_head_and_refuses_another_structure(make_settings):
    store = store_for(make_settings())
    model = OnlineModel(ModelSpec())
    model.learn_one({"x": 1.0}, True)
    good = SnapshotState(
        ModelSpec().to_dict(), model.dump_state(), PrequentialMetrics(100).dump_state(), {"events_seen": 1}
    )
    store.write(good, writer="w", lease_value=None, offsets={}, metrics={}, parent=None)
    store.write(good, writer="w", lease_value=None, offsets={}, metrics={}, parent=1)
    store.client.set(store.keys.blob(2), b"garbage")
    restored = restore_head(store, ModelSpec(), 100)
    assert restored is not None
    assert restored.meta.number == 1
    with pytest.raises(ModelSpecMismatchError, match="LIVELEARN_MODEL_NAME"):
        restore_head(store, ModelSpec(features_exclude=("x",)), 100)


def test_status_is_published_only_by_the_lease_holder(make_settings):
    from prometheus_client import CollectorRegistry

    from streaming.learner.runner import Learner

    settings = make_settings()
    store = store_for(settings)
    learner = Learner(settings, redis_client=store.client, registry=CollectorRegistry())
    learner.publish_status(0.0, 0)  # no lease: nothing written
    assert store.client.get(store.keys.status) is None
    assert store.client.xlen(store.keys.history) == 0
    assert learner.lease.acquire()
    learner.publish_status(12.0, 3)  # no metric sample recorded yet: status only
    assert store.client.get(store.keys.status) is not None
    assert store.client.xlen(store.keys.history) == 0
    learner.step.record_sample(learner.state, {})
    learner.step.record_sample(learner.state, {})
    learner.publish_status(12.0, 3)
    assert store.client.xlen(store.keys.history) == 2
    store.client.delete(store.keys.lease, store.keys.status)  # the lease expired; someone else may hold it
    learner.publish_status(12.0, 3)
    assert store.client.get(store.keys.status) is None


def test_status_publish_appends_every_sample_field_by_field_and_is_fenced(make_settings):
    """The samples travel as one msgpack argument and the script adds them one stream entry each, as they were."""
    from snapshotter.status import StatusWriter, read_samples, read_status

    settings = make_settings()
    store = store_for(settings)
    lease = Lease(store.client, settings.model_name, "w", ttl=30)
    assert lease.acquire()
    writer = StatusWriter(store.client, store.keys, history_maxlen=1000)
    samples = [{"time": 1.5, "accuracy": 0.8125, "offset:0": 300.0}, {"time": 2.0, "epoch": 1.0, "feature:x": -0.1}]
    status = {"writer": "w", "epoch": 1}
    assert writer.publish(lease.value, status, samples, ttl_ms=5000)  # type: ignore[arg-type]
    assert writer.publish(lease.value, status, [], ttl_ms=5000)  # type: ignore[arg-type]
    assert [sample for _id, sample in read_samples(store.client, store.keys)] == samples
    assert read_status(store.client, store.keys) == status
    assert not writer.publish("stale", status, samples, ttl_ms=5000)  # type: ignore[arg-type]
    assert len(read_samples(store.client, store.keys)) == 2
