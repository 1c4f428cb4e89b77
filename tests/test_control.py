"""Control actions against a real redis-server: atomic, audited, and refusing bad targets."""

from __future__ import annotations

import pytest
from conftest import store_for

from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from snapshotter.cursor import CursorState, GuardCursor
from snapshotter.incidents import Incidents
from snapshotter.states import version_states
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


IMMEDIATE = {"promotion": "immediate"}  # versions that meet the threshold are stable when written


def write(store, stable: bool, epoch: int = 0, position: int = 0):
    return store.write(
        STATE,
        writer="w",
        lease_value=None,
        offsets={"events": {"0": position}},
        metrics={"rolling": {"accuracy": 0.9}},
        parent=store.head(),
        stable=stable,
        epoch=epoch,
    ).number


def snapshot_of_state(store) -> tuple:
    return (store.head(), store.serving(), store.pinned(), store.epoch(), len(read_audit(store.client, store.keys)))


def test_stable_versions_are_promoted_and_rollback_moves_lineage_and_serving(make_settings):
    store = store_for(make_settings(**IMMEDIATE))
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
    store = store_for(make_settings(keep_versions=2, keep_stable_versions=1, **IMMEDIATE))
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
    store = store_for(make_settings(**IMMEDIATE))
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


def test_guard_promotion_waits_for_the_monitor_and_never_confirms_across_a_rollback_or_an_incident(make_settings):
    store = store_for(make_settings())  # promotion "guard", the default
    control, cursor = ControlPlane(store), GuardCursor(store.client, store.keys, 1000)
    assert [write(store, True, position=p) for p in (100, 200, 300)] == [1, 2, 3]
    assert (store.serving(), store.stable_numbers(), store.candidates()) == (None, [], {1: 100, 2: 200, 3: 300})

    def judged(read_from: str, to: str, confirmed: int | None, epoch: int = 0) -> int | None:
        return cursor.commit(read_from, CursorState(to, epoch, 0, {}, confirmed), actor="monitor")

    assert judged("0-0", "1-0", 99) == 0  # nothing written at or before 99
    assert judged("0-0", "2-0", 250) is None  # another monitor moved the cursor: nothing happens
    assert judged("1-0", "2-0", 250) == 2
    assert (store.serving(), store.stable_numbers(), store.candidates()) == (2, [1, 2], {3: 300})
    promote = [e for e in read_audit(store.client, store.keys) if e.action in ("stable", "promote")]
    assert [(e.action, e.from_version, e.to_version) for e in promote] == [("stable", None, 2), ("promote", None, 2)]
    assert promote[0].fields["versions"] == "1,2"

    control.pin(1, actor="op", reason="hold")
    assert judged("2-0", "3-0", 300) == 1
    assert (store.serving(), store.stable_numbers()) == (1, [1, 2, 3])  # stable, but serving stays pinned
    control.unpin(actor="op", reason="done")
    assert store.serving() == 3

    write(store, True, position=400)  # 4: a candidate of the lineage a rollback abandons
    control.rollback(to=2, actor="op", reason="bad data")
    assert store.candidates() == {}
    assert judged("3-0", "4-0", 1000, epoch=0) == 0  # judged under the old epoch: confirms nothing
    write(store, True, epoch=1, position=500)  # 5
    assert judged("4-0", "5-0", 1000, epoch=0) == 0  # the confirmation must be of the current lineage
    assert judged("5-0", "6-0", 1000, epoch=1) == 1
    assert store.serving() == 5

    write(store, True, epoch=1, position=600)  # 6, then an incident whose shift began at 550 quarantines it
    Incidents(store, control).open(
        signal="label_rate",
        change_point=550,
        position=700,
        actor="monitor",
        reason="stuck",
        metrics={},
        expected_epoch=1,
    )
    assert store.quarantined() == {6: 1}
    assert store.candidates() == {}
    assert store.serving() == 5  # the newest stable version at or before the change point
    write(store, True, epoch=2, position=800)  # 7: written during the incident, never stable
    assert judged("6-0", "7-0", 1000, epoch=2) == 0
    assert 7 not in store.stable_numbers()
    assert version_states(store)[6] == ["quarantined:1"]
