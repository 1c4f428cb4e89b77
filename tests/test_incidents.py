"""The data guard against drift scenarios no accuracy rule catches, with real processes.

Each scenario streams the whole dataset (12,330 sessions) with some corruption through a learner and a
monitor, waits until the monitor has judged every metric sample, and checks what the guard did: where it
acted (stream positions), which version it went back to, what it quarantined, what it never served.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator

from conftest import guard_caught_up, produce, status_of, store_for, wait_for, wait_until_running

from snapshotter.audit import AuditEntry, read_audit
from snapshotter.incidents import position_of
from streaming.events import Event
from streaming.local.dataset import read_events
from streaming.local.replay import flip_labels

EVENTS = list(read_events())
N = len(EVENTS)
GUARD = {
    "partitions": 1,
    "snapshot_every_events": 250,
    "snapshot_every_seconds": 3600,  # versions by count only: the same numbers at any rate
    "status_interval_seconds": 0.2,
    "monitor_check_interval_seconds": 0.2,
    "publish_predictions": False,
}
PATIENCE, BLOCK = 2, 100  # the defaults: incident_patience blocks of history_every_events labelled events


@dataclasses.dataclass
class Outcome:
    settings: object
    audit: list[AuditEntry]

    def actions(self, *names: str) -> list[AuditEntry]:
        return [e for e in self.audit if e.action in names]


def run(
    make_settings, learners, events: list[Event], *, rate: float | None = None, monitors: int = 1, **overrides
) -> Outcome:
    """Stream ``events`` through a learner and ``monitors`` monitors until every sample is judged."""
    settings = make_settings(**{**GUARD, **overrides})
    if rate is None:
        produce(settings, events)  # a backlog: the learner runs through it as fast as it can
    learners(settings)
    running = [learners(settings, command="monitor") for _ in range(monitors)]
    if rate is not None:
        wait_until_running(settings, monitors=monitors)
        thread = threading.Thread(target=produce, args=(settings, events), kwargs={"rate": rate})
        thread.start()
        thread.join()
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == len(events), 120, "the end of the stream")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitors to judge every metric sample")
    for monitor in running:
        monitor.terminate()
    store = store_for(settings)
    return Outcome(settings, read_audit(store.client, store.keys))


def stuck(events: list[Event], start: int, count: int) -> Iterator[Event]:
    for i, event in enumerate(events):
        yield dataclasses.replace(event, label=True) if start <= i < start + count else event


def slow_drift(events: list[Event], start: int, span: int, seed: int = 1) -> Iterator[Event]:
    """Labels flipped with a probability rising from 0 at ``start`` to 0.5 ``span`` events later."""
    rng = random.Random(seed)
    for i, event in enumerate(events):
        p = 0.0 if i < start else min(0.5, 0.5 * (i - start) / span)
        yield dataclasses.replace(event, label=not event.label) if rng.random() < p else event


def position(entry: AuditEntry) -> int:
    return int(entry.metrics.get("stream_position", -1))


def test_a_label_flip_burst_is_one_incident_and_one_rollback_even_with_two_monitors(make_settings, learners):
    at, count = 3000, 1500
    outcome = run(
        make_settings, learners, list(flip_labels(EVENTS, at, count, probability=0.5, seed=7)), rate=1500, monitors=2
    )
    store = store_for(outcome.settings)
    (incident,) = outcome.actions("incident_start")
    (rollback,) = outcome.actions("rollback", "manual_rollback")
    assert incident.fields["signal"] == "label_rate"
    assert int(incident.fields["change_point"]) == at  # where the burst began, to the block
    assert at < position(incident) <= at + PATIENCE * BLOCK  # caught within patience blocks of its start
    assert rollback.actor == "monitor"
    assert rollback.reason.startswith(f"incident {incident.fields['incident']}")
    target = store.meta(rollback.to_version)
    assert target.stable
    assert position_of(target) <= at  # back to before the incident, not merely older than the head
    quarantined = store.quarantined()
    assert quarantined
    assert all(position_of(store.meta(n)) > at for n in quarantined)
    assert not set(quarantined) & set(store.stable_numbers())
    (end,) = outcome.actions("incident_end")
    assert end.fields["resumed"] == "1"
    assert position(end) >= at + count + 1000  # the rates were normal for incident_resume_after_events
    first = next(m for m in store.list() if m.epoch == 1)
    assert first.parent == rollback.to_version
    assert not first.stable
    final = status_of(outcome.settings)
    assert final["counters"]["events_seen"] == N
    assert not final["frozen"]
    assert final["rolling"]["accuracy"] >= 0.8
    assert store.serving() == store.stable_numbers()[-1]
    assert store.incident() is None
