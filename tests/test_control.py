"""Control actions against a real redis-server: atomic, audited, and refusing bad targets."""

from __future__ import annotations

import pytest
from conftest import store_for

from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from snapshotter.incidents import Incidents
from snapshotter.lease import Lease
from snapshotter.states import version_states
from streaming.errors import (
    AlreadyFrozenError,
    ControlError,
    LeaseLostError,
    NoIncidentError,
    NotFrozenError,
    NotPinnedError,
    QuarantinedError,
    SnapshotFencedError,
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
    return (
        store.head(),
        store.serving(),
        store.pinned(),
        store.epoch(),
        len(read_audit(store.client, store.keys, routine=True)),
    )


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
    assert [e.action for e in read_audit(store.client, store.keys)] == ["rollback"]  # the routine ones apart
    entries = read_audit(store.client, store.keys, routine=True)
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


def test_guard_promotion_confirms_candidates_up_to_calm_data_and_never_across_a_rollback_or_an_incident(
    make_settings,
):
    store = store_for(make_settings())  # promotion "guard", the default
    control = ControlPlane(store)
    lease = Lease(store.client, store.keys.model_name, "w", 30)
    assert lease.acquire()

    def write_at(position: int, epoch: int = 0, confirmed: int | None = None) -> int:
        meta = store.write(
            STATE,
            writer="w",
            lease_value=lease.value,
            offsets={"events": {"0": position}},
            metrics={"rolling": {"accuracy": 0.9}},
            parent=store.head(),
            stable=True,
            epoch=epoch,
            confirmed=confirmed,
        )
        return meta.number

    def promote(confirmed: int, epoch: int = 0) -> int:
        return store.promote(lease_value=lease.value, epoch=epoch, confirmed=confirmed, actor="w", metrics={})

    assert [write_at(p) for p in (100, 200, 300)] == [1, 2, 3]
    assert (store.serving(), store.stable_numbers(), store.candidates()) == (None, [], {1: 100, 2: 200, 3: 300})
    assert promote(99) == 0
    assert promote(250) == 2
    assert (store.serving(), store.stable_numbers(), store.candidates()) == (2, [1, 2], {3: 300})
    promoted = read_audit(store.client, store.keys, actions={"stable", "promote"})  # from the version log
    assert [(e.action, e.from_version, e.to_version) for e in promoted] == [("stable", None, 2), ("promote", None, 2)]
    assert promoted[0].fields["versions"] == "1,2"
    with pytest.raises(SnapshotFencedError):  # only the lease holder confirms
        store.promote(lease_value="0:other", epoch=0, confirmed=300, actor="x", metrics={})

    control.pin(1, actor="op", reason="hold")
    assert write_at(400, confirmed=400) == 4  # calm data up to its own position: stable when written
    assert (store.serving(), store.stable_numbers(), store.candidates()) == (1, [1, 2, 3, 4], {})  # pinned stays
    control.unpin(actor="op", reason="done")
    assert store.serving() == 4

    write_at(500)  # 5: a candidate of the lineage a rollback abandons
    control.rollback(to=2, actor="op", reason="bad data")
    assert store.candidates() == {}
    with pytest.raises(StaleLineageError):
        promote(1000, epoch=0)
    write_at(600, epoch=1)  # 6
    assert promote(1000, epoch=1) == 1
    assert store.serving() == 6

    write_at(700, epoch=1)  # 7, then an incident whose shift began at 650 quarantines it
    Incidents(store, control).open(
        signal="label_rate",
        change_point=650,
        position=800,
        actor="learner",
        reason="stuck",
        metrics={},
        expected_epoch=None,
        lease_value=lease.value,
    )
    assert (store.quarantined(), store.candidates(), store.serving()) == ({7: 1}, {}, 6)  # back to before 650
    assert write_at(900, epoch=2, confirmed=900) == 8  # written during the incident: refused as stable
    assert 8 not in store.stable_numbers()
    assert promote(1000, epoch=2) == 0
    assert version_states(store)[7] == ["quarantined:1"]
    with pytest.raises(QuarantinedError, match="quarantined by incident 1"):
        control.pin(7, actor="op", reason="look")
    with pytest.raises(QuarantinedError):
        control.rollback(to=7, actor="op", reason="no")
    control.pin(7, actor="op", reason="inspect it live", force=True)  # an operator may, explicitly
    (forced,) = [e for e in read_audit(store.client, store.keys) if e.action == "pin" and e.to_version == 7]
    assert forced.fields["forced"] == "1"
    assert store.serving() == 7
    control.unpin(actor="op", reason="done")
    assert store.serving() == 6  # back to the newest stable version, never to the quarantined one
    with pytest.raises(LeaseLostError):  # nobody but the lease holder opens an incident
        Incidents(store, control).open(
            signal="label_rate",
            change_point=0,
            position=1,
            actor="x",
            reason="x",
            metrics={},
            expected_epoch=None,
            lease_value="0:other",
        )


def test_each_incident_keeps_the_range_the_lineage_did_not_learn_whoever_closed_it(make_settings):
    """From its target's offsets (else where it held from) to where learning went on: recorded by the watch's close,
    or, for an operator's close, by the active learner's release (the next incident forgets an unrecorded one)."""
    from streaming.errors import IncidentRangeError

    store = store_for(make_settings(**IMMEDIATE))
    control, incidents = ControlPlane(store), Incidents(store, ControlPlane(store))
    lease = Lease(store.client, store.keys.model_name, "learner", ttl=30)
    assert lease.acquire()
    opened = {"actor": "learner", "reason": "stuck", "metrics": {}, "expected_epoch": None, "lease_value": lease.value}
    with pytest.raises(IncidentRangeError, match="has no incident 1 "):
        incidents.range(1)
    write(store, True, position=100)  # 1: stable, before the shift
    write(store, False, position=300)  # 2: after it
    first = incidents.open(
        signal="label_run", change_point=150, position=320, consumed={"events": {"0": 320}}, **opened
    )
    assert first.target == 1
    with pytest.raises(IncidentRangeError, match="incident 1 is open"):
        incidents.range(1)
    deposed = {
        "actor": "learner",
        "reason": "calm",
        "metrics": {},
        "position": 1400,
        "offsets": {"events": {"0": 1400}},
    }
    with pytest.raises(LeaseLostError, match="lease is held by"):  # a learner that lost its lease closes nothing
        incidents.close(1, **deposed, lease_value="0:someone-else")
    assert store.incident() is not None and store.client.exists(store.keys.frozen)
    incidents.close(1, **deposed, lease_value=lease.value)
    assert incidents.range(1).spans() == [("events", 0, 100, 1399)]  # back to version 1's offsets, to the close

    write(store, True, epoch=1, position=2000)  # 3
    incidents.open(signal="label_rate", change_point=2100, position=2300, consumed={"events": {"0": 2300}}, **opened)
    control.resume(actor="op", reason="new normal")  # the operator closes it: the learner records where it goes on
    assert incidents.pending_release() == 2
    with pytest.raises(IncidentRangeError, match=r"incident 2's end .* was not recorded"):
        incidents.range(2)
    incidents.release(
        position=2450, cause="resume", actor="learner", lease_value=lease.value, offsets={"events": {"0": 2450}}
    )
    assert incidents.range(2).spans() == [("events", 0, 2000, 2449)]
    assert incidents.pending_release() is None
    incidents.release(
        position=2600, cause="resume", actor="learner", lease_value=lease.value, offsets={"events": {"0": 2600}}
    )
    assert incidents.range(2).spans() == [("events", 0, 2000, 2449)]  # a later release is another hold's

    incidents.open(signal="label_rate", change_point=2700, position=2800, consumed={"events": {"0": 2800}}, **opened)
    control.resume(actor="op", reason="go on")  # ...and the learner dies before it goes on learning
    incidents.open(signal="label_rate", change_point=2900, position=3000, consumed={"events": {"0": 3000}}, **opened)
    incidents.close(4, actor="learner", reason="calm", metrics={}, position=3300, offsets={"events": {"0": 3300}})
    with pytest.raises(IncidentRangeError, match=r"incident 3's end .* was not recorded"):
        incidents.range(3)  # never attributed to another incident's release
    assert incidents.range(4).spans()[0][3] == 3299


def test_an_incident_with_no_version_to_go_back_to_ranges_from_where_learning_was_held(make_settings):
    store = store_for(make_settings(**IMMEDIATE))
    incidents = Incidents(store, ControlPlane(store))
    lease = Lease(store.client, store.keys.model_name, "learner", ttl=30)
    assert lease.acquire()
    write(store, False, position=300)  # 1: no stable version before the shift: the lineage stays, learning is held
    opened = incidents.open(
        signal="label_run",
        change_point=150,
        position=320,
        consumed={"events": {"0": 320}},
        actor="learner",
        reason="stuck",
        metrics={},
        expected_epoch=None,
        lease_value=lease.value,
    )
    assert opened.target is None
    incidents.hold_from(1, {"events": {"0": 400}}, lease_value=lease.value)  # later: the range keeps its start
    incidents.hold_from(1, {"events": {"0": 250}}, lease_value=lease.value)  # a successor restored from before it
    with pytest.raises(LeaseLostError):
        incidents.hold_from(1, {"events": {"0": 200}}, lease_value="0:other")
    incidents.close(1, actor="learner", reason="calm", metrics={}, position=900, offsets={"events": {"0": 900}})
    assert incidents.range(1).spans() == [("events", 0, 250, 899)]
    with pytest.raises(NoIncidentError):
        incidents.hold_from(1, {"events": {"0": 100}}, lease_value=lease.value)


def test_a_store_that_went_back_never_hands_a_number_out_again(make_settings):
    """Found by a review: Redis restarted from a snapshot older than its last writes (or a replica promoted without
    them) kept the learner's lease, and the learner wrote versions 7-12 again under numbers already published with
    predictions, the new 7 naming 12 as its parent. The writer's parent above the counter now raises it."""
    store = store_for(make_settings(**IMMEDIATE))
    for position in range(100, 700, 100):
        write(store, True, position=position)  # 1-6
    assert store.counter() == 6
    store.client.set(store.keys.counter, 3)  # the store went back to when it had handed out 3
    meta = store.write(
        SnapshotState(spec={}, model={}, metrics={}, counters={}),
        writer="learner",
        lease_value=None,
        offsets={"events": {"0": 700}},
        metrics={},
        parent=6,  # the version the learner wrote last
        stable=True,
    )
    assert meta.number == 7 and store.counter() == 7
    (entry,) = [e for e in read_audit(store.client, store.keys, actions={"snapshot"}) if e.to_version == 7]
    assert "the store went back" in entry.reason


def test_a_version_write_sent_again_is_not_written_twice(make_settings):
    """Found by a review: a write whose reply a timeout lost was sent again by the client and Redis ran both: one
    capture under two numbers, the second naming the first's parent. A write carries an id: sent again, it answers
    the number it wrote."""
    from snapshotter.codec import EncodedSnapshot
    from snapshotter.scripts import WRITE_VERSION, bind

    store = store_for(make_settings(**IMMEDIATE))
    write(store, True, position=100)
    encoded = EncodedSnapshot.of(STATE)
    args = {
        "lease_value": "",
        "blob": encoded.blob,
        "meta": b"m",
        "keep": 10,
        "version_prefix": store.keys.version_prefix,
        "epoch": "0",
        "stable": "1",
        "keep_stable": 3,
        "version_log_maxlen": 100,
        "writer": "w",
        "metrics": "{}",
        "parent": 1,
        "channel": store.keys.channel,
        "promotion": "immediate",
        "position": 200,
        "confirmed": "",
        "created_at": "1.0",
        "thinning": "[]",
        "join": "",
        "join_sha256": "",
        "write_id": "0123abcd",
    }
    script = bind(store.client, WRITE_VERSION)
    assert script(store.keys, **args) == 2
    assert script(store.keys, **args) == 2  # the resend: the version it wrote
    assert store.numbers() == [1, 2] and store.counter() == 2
    assert script(store.keys, **{**args, "write_id": "feed0001", "parent": 2}) == 3  # another write
