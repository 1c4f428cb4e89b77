"""An active learner and a hot standby on a 3-partition topic; the active one is SIGKILLed."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import produce, status_of, store_for, wait_for, wait_until_running

from streaming.errors import SnapshotFencedError
from streaming.local.dataset import read_events

N = 12_330
TTL = 6.0  # renewed every TTL/3 between poll batches: a loaded machine can stall a learner for 2 s


def test_standby_takes_over_without_loss_and_fences_the_dead_writer(make_settings, learners):
    settings = make_settings(
        partitions=3, snapshot_every_events=700, status_interval_seconds=0.1, lease_ttl_seconds=TTL
    )
    events = list(read_events())
    active = learners(settings)
    produce(settings, events[:3000])
    wait_for(
        lambda: (status_of(settings) or {}).get("counters", {}).get("events_seen", 0) >= 3000,
        60,
        "the active learner to pass 3,000 events",
    )
    standby = learners(settings)
    wait_until_running(settings, standbys=(standby,))  # the standby is up and waiting for the lease
    # more of the stream while the active learner runs; the rest only after it is killed, so the standby has events
    # to learn however slowly either learner runs on a busy machine
    producer = threading.Thread(target=produce, args=(settings, events[3000:6000]), kwargs={"rate": 1500})
    producer.start()
    first = wait_for(
        lambda: (
            (status_of(settings) or {})
            if (status_of(settings) or {}).get("counters", {}).get("events_seen", 0) >= 4500
            else None
        ),
        60,
        "the active learner to pass 4,500 events",
    )
    killed_writer, killed_token = first["writer"], first["lease_token"]
    active.kill()
    killed_at = time.monotonic()
    producer.join()
    producer = threading.Thread(target=produce, args=(settings, events[6000:]), kwargs={"rate": 1500})
    producer.start()  # events arriving while nobody holds the lease
    took_over = wait_for(
        lambda: (status_of(settings) or {}).get("lease_token", killed_token) != killed_token,
        TTL + 5,
        "the standby to take the lease",
    )
    assert took_over
    assert time.monotonic() - killed_at > TTL / 2  # it waited for the lease to expire (how soon: a benchmark's)
    producer.join()
    wait_for(
        lambda: (status_of(settings) or {}).get("counters", {}).get("events_seen") == N,
        120,
        "the standby to reach the end of the stream",
    )
    assert status_of(settings)["writer"] != killed_writer
    standby.terminate()

    store = store_for(settings)
    newest = store.meta(store.head())
    assert newest.events_seen == newest.events_learned == N
    assert sum(newest.offsets[settings.events_topic].values()) == N
    assert newest.lease_token > killed_token
    # a late snapshot from the killed learner's lease is rejected
    _meta, state = store.load(newest.number)
    with pytest.raises(SnapshotFencedError, match="no longer holds the lease"):
        store.write(
            state,
            writer=killed_writer,
            lease_value=f"{killed_token}:{killed_writer}",
            offsets={},
            metrics={},
            parent=newest.number,
        )
    assert store.head() == newest.number
