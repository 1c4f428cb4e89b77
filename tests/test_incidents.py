"""The quality guard against drift scenarios no accuracy rule catches, with real processes.

Each scenario streams the whole dataset (12,330 sessions) with some corruption through a learner and a
monitor — as a backlog the learner reads as fast as it can, or produced at a fixed rate while they run —
waits until the monitor has judged every metric sample, and checks what the guard did: where it acted
(stream positions), which version it went back to, what it quarantined, what it never served.

Bounds stated here (the defaults): blocks of ``history_every_events`` = 100 labelled events, an incident
confirmed after ``incident_patience`` = 2 blocks off the reference, closed after the rates were back for
``incident_resume_after_events`` = 1,000 events.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator

import httpx
import pytest
from conftest import guard_caught_up, learner_id, produce, status_of, store_for, wait_for, wait_until_running
from reference import contract_features

from snapshotter.audit import AuditEntry, read_audit
from snapshotter.incidents import position_of
from snapshotter.status import read_samples
from snapshotter.store import VersionStore
from streaming.events import Event
from streaming.learner.restore import restore_state
from streaming.learner.state import spec_from_settings
from streaming.local.dataset import read_events
from streaming.local.embedded import free_port
from streaming.local.replay import flip_labels
from streaming.model import ModelSpec, OnlineModel

EVENTS = list(read_events())
N = len(EVENTS)
GUARD = {
    "partitions": 1,
    "snapshot_every_events": 250,
    "snapshot_every_seconds": 3600,  # versions by count only: the same numbers at any rate
    "keep_versions": 500,  # keep every version, to check what each one was
    "status_interval_seconds": 0.2,
    "monitor_check_interval_seconds": 0.2,
    "publish_predictions": False,
}
PATIENCE, BLOCK, RESUME_AFTER = 2, 100, 1000
TOLERANCE = 0.005  # final-model accuracy: the guarded run skips 1,000 more clean events than the reference


@dataclasses.dataclass
class Outcome:
    settings: object
    store: VersionStore
    audit: list[AuditEntry]
    monitor_metrics: str = ""

    def actions(self, *names: str) -> list[AuditEntry]:
        return [e for e in self.audit if e.action in names]

    def served(self) -> set[int]:
        """Every version serving was ever moved to."""
        moved = {e.to_version for e in self.actions("promote", "pin", "unpin") if e.to_version}
        return moved | {int(e.fields["serving_to"]) for e in self.actions("rollback") if e.fields.get("serving_to")}

    def at(self, number: int) -> int:
        return position_of(self.store.meta(number))


def run(make_settings, learners, events: list[Event], *, rate: float | None = None, monitors: int = 1, **overrides):
    """Stream ``events`` through a learner and ``monitors`` monitors until every metric sample is judged."""
    settings = make_settings(**{**GUARD, **overrides})
    if rate is None:
        produce(settings, events)  # a backlog: the learner runs through it as fast as it can
    learners(settings)
    port = free_port()
    running = [
        learners(settings, command="monitor", **({"LIVELEARN_METRICS_PORT": str(port)} if i == 0 else {}))
        for i in range(monitors)
    ]
    if rate is not None:
        wait_until_running(settings, monitors=monitors)
        thread = threading.Thread(target=produce, args=(settings, events), kwargs={"rate": rate})
        thread.start()
        thread.join()
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == len(events), 120, "the end of the stream")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitors to judge every metric sample")
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for monitor in running:
        monitor.terminate()
    store = store_for(settings)
    return Outcome(settings, store, read_audit(store.client, store.keys, routine=True), scraped)


def gauge(outcome: Outcome, name: str) -> float:
    line = next(line for line in outcome.monitor_metrics.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def position(entry: AuditEntry) -> int:
    return int(entry.metrics.get("stream_position", -1))


def stuck(events: list[Event], start: int, count: int, label: bool = True) -> list[Event]:
    return [dataclasses.replace(e, label=label) if start <= i < start + count else e for i, e in enumerate(events)]


def slow_drift(events: list[Event], start: int, span: int, seed: int = 1) -> Iterator[Event]:
    """Labels flipped with a probability rising from 0 at ``start`` to 0.5 ``span`` events later."""
    rng = random.Random(seed)
    for i, event in enumerate(events):
        p = 0.0 if i < start else min(0.5, 0.5 * (i - start) / span)
        yield dataclasses.replace(event, label=not event.label) if rng.random() < p else event


def accuracy(model: OnlineModel, events: list[Event]) -> float:
    return sum((model.predict_proba_one(contract_features(e)) > 0.5) == e.label for e in events) / len(events)


def trained(settings, events: list[Event]) -> OnlineModel:
    """A plain loop over ``events`` with the learner's model (the learner equals it to the last digit)."""
    model = OnlineModel(spec_from_settings(settings))
    for event in events:
        model.learn_one(contract_features(event), event.label)
    return model


def decisions(outcome: Outcome) -> tuple:
    """What the guard decided, by stream position and version number (both counted in events)."""
    (start,), (end,) = outcome.actions("incident_start"), outcome.actions("incident_end")
    (rollback,) = outcome.actions("rollback")
    return (
        position(start),
        int(start.fields["change_point"]),
        rollback.to_version,
        start.fields["quarantined"],
        position(end),
    )


def run_start(events: list[Event], at: int) -> int:
    """Where the run of equal labels that goes on at ``at`` began (the labels before a stuck one may agree)."""
    while at > 0 and events[at - 1].label == events[at].label:
        at -= 1
    return at


def check_stuck_labeller(
    outcome: Outcome,
    at: int,
    count: int,
    *,
    within: int = BLOCK,
    began: int | None = None,
    signal: str = "label_run",
    slack: int = 0,
) -> None:
    """``within``: events into the incident by which learning is held (an improbable run of one label value
    opens it at the end of the block where its probability fell below incident_label_run_probability);
    ``began``: where the run began, if clean labels before ``at`` already had the stuck value; ``signal``: the rule
    that opens it, whose change point is the run's first event (``label_run``) or at most ``slack`` events before
    it (``label_odds``: the start of the block where its CUSUM last left 0)."""
    store = outcome.store
    (start,) = outcome.actions("incident_start")
    (rollback,) = outcome.actions("rollback")
    (end,) = outcome.actions("incident_end")
    assert start.fields["signal"] == signal
    cp = int(start.fields["change_point"])
    first = at if began is None else began  # the run's first event
    assert first - slack <= cp <= (first if signal == "label_run" else at)  # the CUSUM's: a block start, by at
    assert at < position(start) <= at + within
    assert rollback.actor.startswith("learner")
    assert rollback.fields["incident"] == start.fields["incident"]
    target = store.meta(rollback.to_version)
    assert rollback.to_version in store.stable_numbers()
    assert position_of(target) <= cp  # written before the incident began, not merely older than the head
    # resumed once the labels were normal again for RESUME_AFTER events
    assert end.fields["resumed"] == "1"
    assert at + count + RESUME_AFTER <= position(end) <= at + count + RESUME_AFTER + 2 * BLOCK
    inside = {m.number for m in store.list() if at < position_of(m) < position(end)}  # written while it was open
    assert inside
    assert not inside & set(store.stable_numbers())
    assert not inside & outcome.served()
    assert set(store.quarantined()) <= {m.number for m in store.list() if cp < position_of(m) < position(end)}
    assert not set(store.quarantined()) & set(store.stable_numbers())
    # nothing learned while held: every version of the new lineage up to the end is the target's model
    held = [m for m in store.list() if m.epoch == target.epoch + 1 and position_of(m) <= position(end)]
    assert held
    assert {m.model_events_learned for m in held} == {target.model_events_learned}
    # ...and learning went on afterwards, into stable versions that are served
    head = store.meta(store.head())
    assert head.model_events_learned > target.model_events_learned
    assert store.serving() in store.stable_numbers()
    assert outcome.at(store.serving()) > position(end)
    assert store.incident() is None


def test_a_stuck_labeller_is_an_incident_nothing_from_it_is_served_and_the_model_recovers(make_settings, learners):
    at, count = 4000, 2000
    events = stuck(EVENTS, at, count)
    outcome = run(make_settings, learners, events)  # a backlog: the learner is far ahead of the monitor
    check_stuck_labeller(outcome, at, count)

    # the final model on the rows after the incident, against a run without the incident's events
    head = outcome.store.head()
    meta, state = outcome.store.load(head)
    final, _ = restore_state(state, ModelSpec.from_dict(state.spec), window=10)
    end = position_of(meta)
    after = EVENTS[at + count : end]
    reference = trained(outcome.settings, EVENTS[:at] + EVENTS[at + count : end])
    assert accuracy(final, after) >= accuracy(reference, after) - TOLERANCE
    # exactly what it learned: up to the rollback target, then from the event after the incident's end
    (rollback,), (incident_end,) = outcome.actions("rollback"), outcome.actions("incident_end")
    learned = events[: outcome.at(rollback.to_version)] + events[position(incident_end) : end]
    assert final.dump_state() == trained(outcome.settings, learned).dump_state()

    # the same decisions, at the same events, when the events arrive at 1,500/s while everything runs
    live = run(make_settings, learners, events, rate=1500)
    check_stuck_labeller(live, at, count)
    assert decisions(live) == decisions(outcome)


@pytest.mark.parametrize("odds", [True, False])
def test_a_labeller_stuck_at_zero_is_caught_by_the_label_odds_or_its_improbable_run(make_settings, learners, odds):
    """All labels 0 move a 0.1 label rate by less than its bound (0.25). The label-odds rule sees labels far less
    often positive than the model's scores say within two blocks (its CUSUM gains ~0.1 per zero), its change point
    the start of the block where the CUSUM last left 0 (at most two blocks before the first zero); with it off, 200
    zeros in a row have a chance of 1e-9 at that rate: an incident from the run's first event, as for labels stuck
    at 1."""
    at, count = 4000, 2000
    events = stuck(EVENTS, at, count, label=False)
    began = run_start(events, at)
    assert began < at  # here, 21 clean zeros lead into it: the incident starts with them (conservative)
    outcome = run(make_settings, learners, events, **({} if odds else {"incident_odds_threshold": 0}))
    (start,) = outcome.actions("incident_start")
    if odds:
        check_stuck_labeller(outcome, at, count, within=2 * BLOCK, began=began, signal="label_odds", slack=2 * BLOCK)
        assert "less often positive than the model's scores say" in start.reason
    else:
        # held by the end of the block where 0.9**n fell below 1e-9 (n = 197 at the reference label rate ~0.1)
        check_stuck_labeller(outcome, at, count, within=3 * BLOCK, began=began)
        assert "labels in a row were 0" in start.reason


def test_a_label_flip_burst_is_one_incident_and_one_rollback_even_with_two_monitors(make_settings, learners):
    at, count = 3000, 1500
    events = list(flip_labels(EVENTS, at, count, probability=0.5, seed=7))
    outcome = run(make_settings, learners, events, rate=1500, monitors=2)
    store = outcome.store
    (incident,) = outcome.actions("incident_start")
    (rollback,) = outcome.actions("rollback", "manual_rollback")
    # labels flipped at random disagree with the model's scores at once (the label-odds rule, its change point the
    # start of the block where its CUSUM left 0), before the label rate has been off its bound for two blocks
    assert incident.fields["signal"] == "label_odds"
    assert at - 2 * BLOCK <= int(incident.fields["change_point"]) <= at
    assert at < position(incident) <= at + PATIENCE * BLOCK
    assert position_of(store.meta(rollback.to_version)) <= at
    (end,) = outcome.actions("incident_end")
    assert position(end) >= at + count + RESUME_AFTER
    inside = {m.number for m in store.list() if at < position_of(m) < position(end)}
    assert inside
    assert not inside & (set(store.stable_numbers()) | outcome.served())
    assert not outcome.actions("freeze")
    # the breach the burst causes is reported once (learning is held already), by one of the two monitors
    (suppressed,) = outcome.actions("breach_suppressed")
    assert position(incident) < position(suppressed) < position(end)
    assert len(outcome.actions("feature_drift")) == len({e.id for e in outcome.actions("feature_drift")})
    final = status_of(outcome.settings)
    assert final["counters"]["events_seen"] == N
    assert not final["frozen"]
    assert final["rolling"]["accuracy"] >= 0.8
    assert store.serving() == store.stable_numbers()[-1]


def breach_runs(outcome: Outcome) -> list[tuple[int, int]]:
    """Every run of ``monitor_patience`` or more samples in a row below the threshold (a confirmed breach), as
    (first, last) stream positions, from the history the learner recorded."""
    s = outcome.settings
    runs, current = [], []
    for _id, sample in read_samples(outcome.store.client, outcome.store.keys):
        below = sample["samples"] >= s.monitor_min_samples and sample[s.monitor_metric] < s.monitor_threshold
        if below:
            current.append(int(sample["stream_position"]))
            continue
        if len(current) >= s.monitor_patience:
            runs.append((current[0], current[-1]))
        current = []
    if len(current) >= s.monitor_patience:
        runs.append((current[0], current[-1]))
    return runs


def test_slow_drift_is_never_silent(make_settings, learners):
    outcome = run(make_settings, learners, list(slow_drift(EVENTS, 3000, 6000)))
    runs = breach_runs(outcome)
    assert runs  # the drift does push the rolling accuracy below the threshold
    acted = outcome.actions("rollback", "freeze", "breach_suppressed", "incident_start")
    for first, last in runs:  # every confirmed breach was acted on, or reported as suppressed
        assert any(first <= position(e) <= last for e in acted), (first, last, [(e.action, position(e)) for e in acted])
    assert outcome.actions("incident_start")  # the label rate left its reference: learning is held
    assert gauge(outcome, "livelearn_alert") == 1  # and an operator is called while it lasts


def test_clean_data_at_the_default_threshold_is_left_alone(make_settings, learners):
    outcome = run(make_settings, learners, EVENTS)
    assert not outcome.actions("rollback", "freeze", "incident_start", "breach_suppressed")
    assert outcome.store.quarantined() == {}
    assert outcome.store.serving() == outcome.store.stable_numbers()[-1]
    assert gauge(outcome, "livelearn_alert") == 0


def test_a_feature_unit_change_is_recorded_as_drift_and_rolls_nothing_back(make_settings, learners):
    at, feature = 6000, "ProductRelated_Duration"
    events = [
        dataclasses.replace(e, features={**e.features, feature: e.features[feature] * 50}) if i >= at else e
        for i, e in enumerate(EVENTS)
    ]
    outcome = run(make_settings, learners, events)
    assert not outcome.actions("rollback", "freeze", "incident_start")
    drift = [e for e in outcome.actions("feature_drift") if e.metrics["signal"] == f"feature:{feature}"]
    assert drift
    assert at < position(drift[0]) <= at + 3 * BLOCK
    assert status_of(outcome.settings)["rolling"]["accuracy"] >= 0.8


def test_learners_killed_during_an_incident_change_none_of_its_decisions(make_settings, learners):
    """The active learner is SIGKILLed as soon as the incident is open, and again while learning is held; a
    standby takes over each time. The watch's state is in every snapshot and a replay records the same
    samples, so the incident still starts, rolls back, holds and ends where it does without the kills."""
    at, count = 4000, 2000
    settings = make_settings(**{**GUARD, "lease_ttl_seconds": 2})
    store = store_for(settings)
    running = [learners(settings), learners(settings)]
    monitor = learners(settings, command="monitor")
    wait_until_running(settings, monitors=1, standbys=(running[1],))
    producer = threading.Thread(target=produce, args=(settings, stuck(EVENTS, at, count)), kwargs={"rate": 1500})
    producer.start()
    for moment in (lambda: store.incident() is not None, lambda: store.status() and seen(store) >= at + 1500):
        wait_for(moment, 120, "the moment to kill the active learner")
        wait_for(lambda: (store.status() or {}).get("writer") in {learner_id(p) for p in running}, 60, "an active one")
        active = next(p for p in running if learner_id(p) == store.status()["writer"])
        active.kill()
        running.remove(active)
        running.append(learners(settings))
        wait_until_running(settings, standbys=(running[-1],))
    producer.join()
    wait_for(lambda: (store.status() or {}).get("stream_position") == N, 120, "the end of the stream")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitor to judge every metric sample")
    monitor.terminate()
    check_stuck_labeller(Outcome(settings, store, read_audit(store.client, store.keys, routine=True)), at, count)


def seen(store: VersionStore) -> int:
    return int((store.status() or {}).get("stream_position", 0))


def test_an_operator_can_declare_the_shift_the_new_normal(make_settings, learners):
    """`livelearn learning resume` during an incident closes it (audited as the operator's), learning goes on at
    once, and the watch learns the shifted rates as its new reference instead of opening the incident again; the
    metric rule gives the model a cooldown's worth of events to learn the new normal (a breach meanwhile is reported,
    not rolled back to before the shift)."""
    import subprocess
    import sys

    from conftest import settings_env

    at = 4000
    settings = make_settings(**GUARD)
    store = store_for(settings)
    learners(settings)
    monitor = learners(settings, command="monitor")
    wait_until_running(settings, monitors=1)
    events, first = stuck(EVENTS, at, N), at + 1000
    produce(settings, events[:first])  # through the incident's start; the rest only after the override
    wait_for(lambda: store.incident() is not None, 120, "the incident")
    held = (store.status() or {})["counters"]["events_learned"]
    # the override comes once the learner has read what was produced (at the same stream position however slowly
    # it runs): the watch's new normal starts there
    wait_for(lambda: (store.status() or {}).get("stream_position") == first, 120, "the learner to read it all")
    result = subprocess.run(
        [sys.executable, "-m", "streaming", "learning", "resume", "--reason", "a sale: everyone buys"],
        capture_output=True,
        text=True,
        env=settings_env(settings),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert store.incident() is None
    produce(settings, events[first:], rate=1500)
    wait_for(lambda: (store.status() or {}).get("stream_position") == N, 120, "the end of the stream")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitor to judge every metric sample")
    monitor.terminate()
    audit = read_audit(store.client, store.keys)
    assert len([e for e in audit if e.action == "incident_start"]) == 1  # the new normal is not a new incident
    (end,) = [e for e in audit if e.action == "incident_end"]
    assert end.reason == "closed by an operator: a sale: everyone buys"
    assert not end.actor.startswith(("learner", "monitor"))
    final = store.status()
    assert not final["frozen"]
    assert position(end) <= first
    assert final["counters"]["events_learned"] >= held + N - first  # every event after the override was learned
