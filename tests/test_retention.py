"""Retention: the newest versions, the protected ones, and old stable versions thinned by age.

Frequent snapshots (several a second) must not swamp retention: beyond the newest ``keep`` versions and the
newest ``keep_stable`` stable ones, the write script keeps the newest stable version of each time bucket of
each thinning tier (:data:`snapshotter.store.THINNING`) once it is at least a bucket old, and never drops a
pinned, protected, serving or candidate version, nor the open incident's target or the versions it
quarantined. The scripts run on fakeredis (Lua).
"""

from __future__ import annotations

import itertools

import fakeredis

from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from snapshotter.store import THINNING, VersionStore

STATE = SnapshotState(spec={"kind": "k"}, model={}, metrics={}, counters={})
NOW = 1_800_000_000.0


def write(store: VersionStore, at: float, *, stable: bool = True) -> int:
    meta = store.write(
        STATE, writer="w", lease_value=None, offsets={}, metrics={}, parent=None, stable=stable, created_at=at
    )
    return meta.number


def expected_thinned(created: dict[int, float], now: float) -> set[int]:
    """The rule, written out: the newest stable version of each bucket of each tier, among those younger than
    its horizon and at least the first bucket old."""
    kept: set[int] = set()
    for bucket, horizon in THINNING:
        newest: dict[int, int] = {}
        for number, at in created.items():
            if THINNING[0][0] <= now - at < horizon:
                key = int(at // bucket)
                newest[key] = max(newest.get(key, 0), number)
        kept |= set(newest.values())
    return kept


def test_old_stable_versions_are_thinned_by_age_and_the_count_stays_bounded():
    store = VersionStore(fakeredis.FakeRedis(), "m", keep=5, keep_stable=2, promotion="immediate")
    created: dict[int, float] = {}
    start = NOW - 2 * 86_400
    at = start
    while at < NOW:  # two days of stable versions, one every 10 minutes (a long-running learner)...
        created[write(store, at)] = at
        at += 600 if at < NOW - 720 else 2  # ... then one every 2 s for the last 12 minutes
    newest = max(created)
    numbers = set(store.numbers())
    recent = set(sorted(created)[-5:])
    assert numbers == recent | expected_thinned(created, created[newest])
    assert len(numbers) <= 5 + 2 + sum(horizon // bucket + 1 for bucket, horizon in THINNING)
    assert len(created) > 4 * len(numbers)  # most of the churn is gone
    # one stable version at least every 10 s over the last 10 minutes: an incident's change point finds a target
    last_ten = sorted(created[n] for n in numbers if created[newest] - created[n] < 600)
    assert max(b - a for a, b in itertools.pairwise(last_ten)) <= 20
    # dropped versions leave nothing behind
    gone = min(set(created) - numbers)
    assert store.client.get(store.keys.blob(gone)) is None
    assert store.client.zscore(store.keys.created, gone) is None
    assert set(store.stable_numbers()) == numbers


def test_versions_written_seconds_apart_never_keep_each_other():
    """Thinning starts a bucket back: fresh versions are kept only by the newest-K rules (deterministic)."""
    store = VersionStore(fakeredis.FakeRedis(), "m", keep=2, keep_stable=1, promotion="immediate")
    for i in range(6):
        write(store, NOW - 5 + i)  # straddles a 10 s boundary
    assert store.numbers() == [5, 6]


def test_thinning_never_drops_pinned_protected_candidate_or_incident_versions():
    store = VersionStore(fakeredis.FakeRedis(), "m", keep=3, keep_stable=1, promotion="guard")
    old = NOW - 10 * 86_400  # beyond every horizon
    unstable = write(store, old, stable=False)
    protected = write(store, old + 1, stable=False)
    store.client.sadd(store.keys.protected, protected)
    candidate = write(store, old + 2, stable=True)  # guard: a candidate until confirmed
    target = write(store, old + 3, stable=False)
    quarantined = write(store, old + 4, stable=False)
    store.client.hset(store.keys.incident, mapping={"id": 7, "target": target})
    store.client.hset(store.keys.quarantined, mapping={quarantined: 7})
    for i in range(20):
        write(store, NOW + i, stable=False)
    numbers = set(store.numbers())
    assert unstable not in numbers
    assert {protected, candidate, target, quarantined} <= numbers
    store.client.delete(store.keys.incident)  # the incident closed: its versions are ordinary again
    write(store, NOW + 30, stable=False)
    numbers = set(store.numbers())
    assert target not in numbers
    assert quarantined not in numbers
    assert {protected, candidate} <= numbers


def test_version_churn_never_pushes_operator_actions_out_of_the_audit_stream():
    """Each version adds routine entries (snapshot, promote) to the version log, capped on its own: thousands of
    them leave the operators' pin and unpin in the audit stream, however small its retention."""
    store = VersionStore(
        fakeredis.FakeRedis(),
        "m",
        keep=5,
        keep_stable=2,
        audit_retention=100,
        version_log_retention=100,
        promotion="immediate",
    )
    control = ControlPlane(store)
    write(store, NOW)
    control.pin(1, actor="op", reason="hold")
    control.unpin(actor="op", reason="done")
    for i in range(1, 600):  # 599 more stable versions: a snapshot and a promote entry each
        write(store, NOW + i)
    assert [(e.action, e.actor) for e in read_audit(store.client, store.keys)] == [("pin", "op"), ("unpin", "op")]
    assert 100 <= store.client.xlen(store.keys.version_log) <= 300  # trimmed at its own retention (~: whole nodes)
    routine = read_audit(store.client, store.keys, count=3, routine=True)
    assert [(e.action, e.to_version) for e in routine] == [("promote", 599), ("snapshot", 600), ("promote", 600)]
