"""What the guard decides does not depend on how fast the snapshot writer thread writes versions.

The guard counts in events ("the same stream gives the same decisions at any rate"), and so must the rollback
target of an incident: the newest stable version at or before the change point, where a candidate is stable once
the data up to it was confirmed calm. A version is a candidate only once written, so a slow writer (a loaded
machine, a slow Redis) once left a candidate the data had confirmed unpromoted when the incident opened, and the
incident rolled back further (or found no target at all): found by a review, one run in three under load.

Two in-process learners over the same stream (a labeller stuck at 1), one whose writer writes each version as soon
as it is captured (an infinitely fast writer), one whose writer writes nothing until the learner waits for it (as
slow as a writer can be): the same incident, the same target, the same model to the last digit.
"""

from __future__ import annotations

import threading

import pytest
from conftest import produce, store_for
from prometheus_client import CollectorRegistry
from test_incidents import EVENTS, GUARD, stuck

from snapshotter.audit import read_audit
from streaming.learner import batch, runner, versions, writer
from streaming.learner.checkpoint import Checkpoints

pytestmark = pytest.mark.first_lane

STUCK = stuck(EVENTS, 4000, 2000)


def _run(
    make_settings, monkeypatch, speed: str, *, events=STUCK, every: int = 2450
) -> tuple[list[tuple[str, int | None]], dict]:
    settings = make_settings(**{**GUARD, "snapshot_every_events": every})
    produce(settings, events)
    if speed == "eager":  # each version written at its capture: what a writer that always keeps up does
        capture = batch.CaptureWhenDue.after_run

        def after_run(self, record, positions, sampled, stepped):
            capture(self, record, positions, sampled, stepped)
            if self.versions.in_flight:
                self.versions.write_when_delivered(wait=True)

        monkeypatch.setattr(batch.CaptureWhenDue, "after_run", after_run)
    else:  # nothing written until the learner waits for it: the slowest writer there can be
        gate = threading.Event()
        wait, write = writer.SnapshotWriter.wait, Checkpoints._write

        def waited(self, job, timeout=None):
            gate.set()
            try:
                return wait(self, job, timeout)
            finally:
                gate.clear()

        def gated(self, captured, encoded, parent):
            gate.wait()
            return write(self, captured, encoded, parent)

        monkeypatch.setattr(versions, "MAX_PENDING_CAPTURES", 10**6)  # no backpressure wait either
        monkeypatch.setattr(writer.SnapshotWriter, "wait", waited)
        monkeypatch.setattr(Checkpoints, "_write", gated)
    learner = runner.Learner(settings, registry=CollectorRegistry())
    learner.run(until_caught_up=True)
    store = store_for(settings)
    moves = [
        (e.action, e.to_version)
        for e in read_audit(store.client, store.keys)
        if e.action in ("incident_start", "rollback")
    ]
    _meta, state = store.load(store.head())
    return moves, state.model


def test_an_incidents_target_is_the_same_whether_versions_are_written_at_once_or_late(make_settings, monkeypatch):
    with monkeypatch.context() as patch:
        eager, eager_model = _run(make_settings, patch, "eager")
    with monkeypatch.context() as patch:
        late, late_model = _run(make_settings, patch, "late")
    # version 1 (at 2,450, between two metric samples: a candidate when written) was confirmed calm at 2,500, long
    # before the labeller got stuck at 4,000
    assert ("rollback", 1) in eager
    assert late == eager
    assert late_model == eager_model
