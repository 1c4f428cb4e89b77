"""Control actions against a real redis-server: atomic, audited, and refusing bad targets."""

from __future__ import annotations

import pytest
from conftest import store_for

from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from streaming.errors import (
    AlreadyFrozenError,
    ControlError,
    NotFrozenError,
    NotPinnedError,
    StaleEpochError,
    StaleLineageError,
    VersionNotFoundError,
)
from streaming.model import ModelSpec

STATE = SnapshotState(spec=ModelSpec().to_dict(), model={}, metrics={}, counters={"events_seen": 1})


def write(store, stable: bool, epoch: int = 0):
    return store.write(
        STATE,
        writer="w",
        lease_value=None,
        offsets={},
        metrics={"rolling": {"accuracy": 0.9}},
        parent=store.head(),
        stable=stable,
        epoch=epoch,
    ).number


def snapshot_of_state(store) -> tuple:
    return (store.head(), store.serving(), store.pinned(), store.epoch(), len(read_audit(store.client, store.keys)))


def test_stable_versions_are_promoted_and_rollback_moves_lineage_and_serving(make_settings):
    store = store_for(make_settings())
    control = ControlPlane(store)
    assert [write(store, s) for s in (True, True, False, False)] == [1, 2, 3, 4]
    assert store.serving() == 2
    assert store.stable_numbers() == [1, 2]
    assert control.rollback_target(store.head()) == 2
    assert control.rollback(actor="monitor", reason="breach", expected_epoch=0, automatic=True) == 2
    assert (store.head(), store.serving(), store.epoch()) == (2, 2, 1)
    with pytest.raises(StaleLineageError):  # a learner still on epoch 0 cannot write
        write(store, True, epoch=0)
    with pytest.raises(StaleEpochError, match="stale"):  # a second monitor judging epoch 0 changes nothing
        control.rollback(actor="monitor-2", reason="same breach", expected_epoch=0, automatic=True)
    assert write(store, False, epoch=1) == 5
    entries = read_audit(store.client, store.keys)
    assert [e.action for e in entries] == [
        "snapshot",
        "promote",
        "snapshot",
        "promote",
        "snapshot",
        "snapshot",
        "rollback",
        "snapshot",
    ]
    assert entries[6].from_version == 4
    assert entries[6].to_version == 2
    assert entries[6].fields["epoch"] == "1"


def test_missing_or_corrupt_targets_change_nothing(make_settings):
    store = store_for(make_settings())
    control = ControlPlane(store)
    write(store, True)
    write(store, False)
    before = snapshot_of_state(store)
    with pytest.raises(VersionNotFoundError, match="version 9"):  # missing: not found, not a conflict
        control.pin(9, actor="op", reason="typo")
    store.client.set(store.keys.blob(1), b"rot")
    with pytest.raises(ControlError, match="checksum"):
        control.rollback(to=1, actor="op", reason="corrupt")
    with pytest.raises(ControlError, match="checksum"):
        control.pin(1, actor="op", reason="corrupt")
    with pytest.raises(NotPinnedError, match="not pinned"):
        control.unpin(actor="op", reason="nothing pinned")
    with pytest.raises(NotFrozenError, match="not frozen"):
        control.resume(actor="op", reason="not frozen")
    assert snapshot_of_state(store) == before


def test_pin_holds_serving_and_retention_keeps_pinned_serving_and_stable(make_settings):
    store = store_for(make_settings(keep_versions=2, keep_stable_versions=1))
    control = ControlPlane(store)
    write(store, True)  # 1
    write(store, False)  # 2
    control.pin(2, actor="op", reason="canary")
    write(store, True)  # 3: stable, but serving stays pinned
    assert store.serving() == 2
    for _ in range(3):
        write(store, False)  # 4..6
    assert store.numbers() == [2, 3, 5, 6]  # 2 pinned+serving, 3 newest stable, 5-6 newest
    control.unpin(actor="op", reason="canary done")
    assert store.serving() == 3
    assert store.pinned() is None
    control.freeze(actor="monitor", reason="flapping")
    with pytest.raises(AlreadyFrozenError, match="already"):
        control.freeze(actor="monitor-2", reason="flapping")
    control.resume(actor="op", reason="fixed")
    assert control.frozen() is None


def test_a_rollback_abandons_the_stable_versions_above_its_target(make_settings):
    store = store_for(make_settings())
    control = ControlPlane(store)
    for _ in range(3):
        write(store, True)  # 1..3 stable
    control.rollback(to=1, actor="op", reason="bad release")
    write(store, False, epoch=1)  # 4
    assert store.stable_numbers() == [1]
    assert control.rollback_target(store.head()) == 1  # not 3: that would undo the operator's rollback
    control.pin(2, actor="op", reason="look at it")
    control.pin(4, actor="op", reason="changed my mind")
    control.unpin(actor="op", reason="done")
    assert store.serving() == 1
    assert store.client.smembers(store.keys.protected) == set()
