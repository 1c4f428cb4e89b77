"""The monitor's shared cursor against a real redis-server: every sample judged once, in order, by
whichever monitor gets there first; replays and abandoned lineages skipped; restarts carry on."""

from __future__ import annotations

from conftest import store_for
from prometheus_client import CollectorRegistry

from monitor.guard import Monitor
from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from streaming.model import ModelSpec

STATE = SnapshotState(spec=ModelSpec().to_dict(), model={}, metrics={}, counters={"events_seen": 1})


def monitor(settings, store) -> Monitor:
    return Monitor(settings, store=store, registry=CollectorRegistry())


def sample(store, scored: int, accuracy: float, epoch: int = 0) -> None:
    fields = {
        "time": 1000.0 + scored / 100,
        "epoch": epoch,
        "version": 1,
        "scored": scored,
        "events_seen": scored,
        "stream_position": scored,
        "accuracy": accuracy,
        "samples": 1000,
    }
    store.client.xadd(store.keys.history, fields)


def test_two_monitors_judge_each_sample_once_and_roll_back_once(make_settings):
    settings = make_settings(
        monitor_patience=3, monitor_min_samples=100, monitor_cooldown_seconds=3600, promotion="immediate"
    )
    store = store_for(settings)
    for stable in (True, True, False):
        store.write(
            STATE,
            writer="w",
            lease_value=None,
            offsets={},
            metrics={"rolling": {"accuracy": 0.9}},
            parent=store.head(),
            stable=stable,
        )
    a, b = monitor(settings, store), monitor(settings, store)
    for scored in (100, 200, 300):
        sample(store, scored, 0.9)
    sample(store, 400, 0.5)
    sample(store, 500, 0.5)
    assert [d.action for d in a.check_once()] == ["none", "none", "none", "wait", "wait"]
    assert b.check_once() == []  # nothing new: the cursor is shared
    sample(store, 400, 0.5)  # a restarted learner recording the same events again: not a third breach
    sample(store, 500, 0.5)
    assert b.check_once() == []
    sample(store, 600, 0.5)
    assert [d.action for d in b.check_once()] == ["rollback"]  # b carries on with a's breach count
    sample(store, 700, 0.4)  # recorded before the learner applied the rollback: an abandoned lineage
    assert a.check_once() == []
    rollbacks = read_audit(store.client, store.keys, actions={"rollback"})
    assert len(rollbacks) == 1
    assert rollbacks[0].metrics["stream_position"] == 600
    assert store.epoch() == 1
    sample(store, 300, 0.5, epoch=1)  # the new lineage restarts its count at the target's
    assert [d.action for d in monitor(settings, store).check_once()] == ["wait"]
