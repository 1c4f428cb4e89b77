"""The work of an active learner between two poll batches (:mod:`streaming.learner.between`), without a broker or
Redis: the real cadence, heartbeat, state and metrics on a clock of the test's; the lease, the broker watch, the
consumer's high-water marks, the versions, the block-so-far confirmation, the outages and the status publisher are
fakes that log what they were asked, in one log, so the order of the effects is checked too."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streaming.config import Settings
from streaming.errors import LeaseLostError
from streaming.health import Heartbeat
from streaming.learner.between import BetweenBatches, PartialConfirmation
from streaming.learner.cadence import Cadence
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.transport import TopicPartition

P0, P1 = TopicPartition("events", 0), TopicPartition("events", 1)
MODEL = {"model": "between"}


class Fakes:
    """Everything a :class:`BetweenBatches` calls that does I/O, answering as told and logging each call."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.renews = self.kafka_up = True
        self.calm = False  # what confirming the block so far finds
        self.highwater: dict[TopicPartition, int | None] = {}
        self.in_flight = 0
        self.redis_down = False
        self.state: LearnerState | None = None
        self.writes_version = False  # a write applied: the state's newest version changes

    # the lease, the broker watch, the consumer
    def renew(self) -> bool:
        self.log.append("renew")
        return self.renews

    def observe(self, answered: bool, partitions: list) -> bool:
        self.log.append(("observe", answered, partitions))
        return self.kafka_up

    def highwater_of(self, tp: TopicPartition) -> int | None:
        self.log.append(("highwater", tp.partition))
        return self.highwater.get(tp)

    # the versions
    def capture(self, positions: dict) -> None:
        self.log.append(("capture", dict(positions)))
        self.in_flight += 1

    def write_when_delivered(self, *, wait: bool = False) -> None:
        self.log.append(("write when delivered", wait))
        if self.writes_version and self.state is not None:
            self.state.last_snapshot = SimpleNamespace(number=7)  # type: ignore[assignment]

    def promote(self) -> None:
        self.log.append("promote")
        assert self.state is not None
        self.state.unconfirmed = []

    # the block so far
    def confirm(self, state: LearnerState, positions: dict) -> bool:
        self.log.append(("confirm", sum(positions.values())))
        if self.calm:
            state.confirmed = sum(positions.values())
        return self.calm

    def confirm_idle(self, state: LearnerState, positions: dict) -> bool:
        self.log.append(("confirm idle", sum(positions.values())))
        return self.confirm(state, positions)

    # outages and status
    def redis_confirmed(self) -> None:
        self.log.append("redis confirmed")

    def publish_status(self, events_per_second: float, current_lag: int | None, positions: dict | None = None) -> None:
        self.log.append(("status", current_lag, dict(positions or {})))

    def check_in(self) -> None:
        self.log.append("check in")


def between(fakes: Fakes, now: list[float], **overrides: Any) -> tuple[BetweenBatches, Cadence, Heartbeat, Any]:
    """A :class:`BetweenBatches` on ``fakes``, the clock reading ``now[0]``; the loop began at 0."""
    values = {
        "model_name": "between",
        "engine": "river",
        "snapshot_every_seconds": 30.0,
        "lease_ttl_seconds": 9.0,
        "status_interval_seconds": 1.0,
        **overrides,
    }
    settings = Settings(**values)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    fakes.state = state
    registry = CollectorRegistry()
    telemetry = LearnerMetrics(registry, settings.model_name)
    cadence = Cadence(settings, now=0.0, seen=0)
    heartbeat = Heartbeat(60.0, clock=lambda: now[0])
    consumer = SimpleNamespace(highwater=fakes.highwater_of)
    unit = BetweenBatches(
        settings,
        state,
        cadence,
        fakes,  # type: ignore[arg-type]
        fakes,  # type: ignore[arg-type]
        lease=fakes,  # type: ignore[arg-type]
        broker=fakes,  # type: ignore[arg-type]
        consumer=consumer,  # type: ignore[arg-type]
        heartbeat=heartbeat,
        telemetry=telemetry,
        outages=fakes,  # type: ignore[arg-type]
        status=fakes,
        clock=lambda: now[0],
    )
    return unit, cadence, heartbeat, registry


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, MODEL)


def test_everything_due_at_once_happens_in_its_order():
    fakes, now = Fakes(), [30.0]
    unit, cadence, heartbeat, _registry = between(fakes, now)
    cadence.since_snapshot = 40  # events since the last version, the interval passed: a timed snapshot is due
    fakes.calm, fakes.redis_down, fakes.writes_version = True, True, True
    fakes.highwater = {P0: 100, P1: 50}
    unit.state.unconfirmed = [140]
    positions = {P0: 100, P1: 50}
    assert unit.run(False, positions) is True  # an empty poll, no lag: caught up
    assert fakes.log == [
        ("confirm", 150),  # the block so far is calm: the timed version is stable at once
        ("capture", positions),
        "renew",
        ("observe", False, [P0, P1]),
        ("highwater", 0),
        ("highwater", 1),
        ("write when delivered", True),  # caught up: its outputs are waited for
        ("confirm idle", 150),
        ("confirm", 150),
        "promote",  # confirmed by then: promoted in the same pass
        ("status", 0, positions),
        "check in",
        "redis confirmed",  # a version was written since the loop began
    ]
    assert cadence.since_snapshot == 0 and cadence.last_snapshot_at == 30.0
    assert heartbeat.readiness() == (False, {**heartbeat.readiness()[1], "detail": "Redis unavailable"})


def test_nothing_is_due_right_after_the_loop_began_but_the_first_status():
    fakes, now = Fakes(), [0.5]
    unit, _cadence, _heartbeat, _registry = between(fakes, now)
    fakes.highwater = {P0: 10}
    assert unit.run(True, {P0: 4}) is False  # records came: not caught up, whatever the lag
    assert fakes.log == [("observe", True, [P0]), ("highwater", 0), ("status", 6, {P0: 4}), "check in"]
    del fakes.log[:]
    now[0] = 1.2
    unit.run(True, {P0: 10})
    assert fakes.log == [("observe", True, [P0]), ("highwater", 0)]  # the next status is due at 1.5


def test_a_timed_snapshot_waits_for_the_versions_in_flight_and_without_a_calm_block_for_twice_the_interval():
    fakes, now = Fakes(), [31.0]
    unit, cadence, _heartbeat, _registry = between(fakes, now)
    cadence.since_snapshot = 1
    fakes.in_flight = 1
    unit.run(True, {P0: 5})
    assert not [c for c in fakes.log if c[0] in ("confirm", "capture")]  # not even judged while one is in flight
    fakes.in_flight, fakes.log = 0, []
    unit.run(True, {P0: 6})
    assert [c for c in fakes.log if c[0] in ("confirm", "capture")] == [("confirm", 6)]  # suspect: no version yet
    now[0], fakes.log = 61.0, []
    unit.run(True, {P0: 7})
    assert [c for c in fakes.log if c[0] in ("confirm", "capture")] == [("confirm", 7), ("capture", {P0: 7})]
    assert cadence.last_snapshot_at == 61.0


def test_the_lease_is_renewed_every_third_of_its_ttl_and_a_refusal_ends_the_activation():
    fakes, now = Fakes(), [2.9]
    unit, _cadence, _heartbeat, _registry = between(fakes, now)
    unit.run(True, {P0: 1})
    assert "renew" not in fakes.log
    now[0] = 3.0
    unit.run(True, {P0: 1})
    assert fakes.log.count("renew") == 1
    now[0], fakes.renews = 6.0, False
    with pytest.raises(LeaseLostError, match="'between' expired or was taken over"):
        unit.run(True, {P0: 1})


@pytest.mark.parametrize(
    ("kafka_up", "redis_down", "ready", "detail"),
    [
        (True, False, True, ""),
        (False, False, False, "Kafka does not answer"),
        (True, True, False, "Redis unavailable"),
        (False, True, False, "Redis unavailable"),
    ],
)
def test_ready_while_kafka_answers_and_redis_works_and_the_lag_is_unknown_while_kafka_is_silent(
    kafka_up, redis_down, ready, detail
):
    fakes, now = Fakes(), [0.0]
    unit, _cadence, heartbeat, registry = between(fakes, now)
    fakes.kafka_up, fakes.redis_down, fakes.highwater = kafka_up, redis_down, {P0: 3}
    assert unit.run(False, {P0: 3}) is kafka_up  # an empty poll is caught up only when the lag is known
    ok, body = heartbeat.readiness()
    assert ok is ready and body["role"] == "active" and body.get("detail", "") == detail
    assert gauge(registry, "livelearn_kafka_up") == (1.0 if kafka_up else 0.0)
    assert (("highwater", 0) in fakes.log) is kafka_up
    assert [c for c in fakes.log if c[0] == "status"] == [("status", 0 if kafka_up else None, {P0: 3})]


@pytest.mark.parametrize(
    ("polled", "kafka_up", "highwater", "wait"),
    [
        (False, True, 10, True),  # caught up: nothing to learn meanwhile
        (True, True, 10, True),  # records came, but none is left: a status now speaks of durable versions
        (False, True, 12, False),  # an empty poll with a lag: the next fetch is on its way
        (True, True, 12, False),
        (False, False, 10, True),  # Kafka silent, no records: the flush says whether it is down
        (True, False, 10, False),  # records came: Kafka answers, learning goes on
        (False, True, None, True),  # a high-water mark not known yet: the lag is unknown
    ],
)
def test_versions_in_flight_are_waited_for_only_when_there_is_nothing_to_learn_meanwhile(
    polled, kafka_up, highwater, wait
):
    fakes, now = Fakes(), [0.2]
    unit, cadence, _heartbeat, _registry = between(fakes, now)
    cadence.next_status = 99.0
    fakes.in_flight, fakes.kafka_up, fakes.highwater = 2, kafka_up, {P0: highwater}
    unit.run(polled, {P0: 10})
    assert [c for c in fakes.log if c[0] == "write when delivered"] == [("write when delivered", wait)]
    fakes.in_flight, fakes.log = 0, []
    unit.run(polled, {P0: 10})
    assert not [c for c in fakes.log if c[0] == "write when delivered"]  # none in flight: nothing to release


@pytest.mark.parametrize(("polled", "highwater", "caught_up"), [(False, 8, True), (True, 8, False), (False, 9, False)])
def test_only_an_empty_poll_without_lag_is_caught_up_and_judges_the_block_so_far(polled, highwater, caught_up):
    fakes, now = Fakes(), [0.2]
    unit, cadence, _heartbeat, _registry = between(fakes, now)
    cadence.next_status = 99.0
    fakes.highwater = {P0: highwater}
    assert unit.run(polled, {P0: 8}) is caught_up
    assert (("confirm idle", 8) in fakes.log) is caught_up


def test_candidates_confirmed_before_are_promoted_between_batches():
    fakes, now = Fakes(), [0.2]
    unit, cadence, _heartbeat, _registry = between(fakes, now)
    cadence.next_status = 99.0
    unit.state.unconfirmed, unit.state.confirmed = [40], 39
    unit.run(True, {P0: 50})
    assert "promote" not in fakes.log
    unit.state.confirmed = 45  # (a metric sample after the candidate was written)
    unit.run(True, {P0: 50})
    assert fakes.log.count("promote") == 1


@pytest.mark.parametrize(
    ("polled", "since_snapshot", "in_flight", "version_written", "over"),
    [
        (False, 0, 0, False, True),  # caught up, every event in a version, and the status was written
        (False, 3, 0, False, False),  # events not in a version yet: only a version says Redis works again
        (False, 0, 1, False, False),  # a version still on its way
        (True, 0, 0, False, False),  # records came: not caught up
        (True, 3, 1, True, True),  # a version was written since the loop began
    ],
)
def test_an_outage_is_over_once_a_version_was_written_or_there_is_nothing_to_write_and_the_status_was(
    polled, since_snapshot, in_flight, version_written, over
):
    fakes, now = Fakes(), [0.2]
    unit, cadence, _heartbeat, _registry = between(fakes, now)
    cadence.snapshot_due = lambda *_a, **_k: False  # type: ignore[method-assign]
    cadence.since_snapshot, fakes.in_flight, fakes.redis_down = since_snapshot, in_flight, True
    fakes.writes_version, fakes.highwater = version_written, {P0: 5}
    unit.run(polled, {P0: 5})
    assert ("redis confirmed" in fakes.log) is over
    fakes.log, fakes.redis_down = [], False
    now[0] = 2.0
    unit.run(polled, {P0: 5})
    assert "redis confirmed" not in fakes.log  # no outage open: nothing to confirm


# -- the block so far ----------------------------------------------------------------------------------------------
class _Step:
    """Judges the block so far as told, logging when asked."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.calm = True

    def confirm_partial(self, state: Any, positions: dict) -> bool:
        self.asked.append(sum(positions.values()))
        if self.calm:
            state.confirmed = sum(positions.values())
        return self.calm


def test_confirming_the_block_so_far_counts_only_the_confirmations():
    registry = CollectorRegistry()
    step = _Step()
    partial = PartialConfirmation(step, LearnerMetrics(registry, "between"))  # type: ignore[arg-type]
    state = SimpleNamespace(confirmed=None)
    assert partial.confirm(state, {P0: 10}) and state.confirmed == 10  # type: ignore[arg-type]
    step.calm = False
    assert not partial.confirm(state, {P0: 20}) and state.confirmed == 10  # type: ignore[arg-type]
    assert registry.get_sample_value("livelearn_partial_block_confirmations_total", MODEL) == 1.0


def test_caught_up_the_block_so_far_is_judged_once_per_epoch_and_position_and_only_for_candidates_past_it():
    step = _Step()
    partial = PartialConfirmation(step, LearnerMetrics(CollectorRegistry(), "between"))  # type: ignore[arg-type]
    state = SimpleNamespace(epoch=0, confirmed=None, unconfirmed=[])
    assert not partial.confirm_idle(state, {P0: 10})  # type: ignore[arg-type]
    state.unconfirmed, state.confirmed = [50], 50
    assert not partial.confirm_idle(state, {P0: 60})  # type: ignore[arg-type]  # (confirmed already)
    assert step.asked == []
    step.calm = False
    state.unconfirmed = [50, 70]
    assert not partial.confirm_idle(state, {P0: 80})  # type: ignore[arg-type]  # suspect: they wait
    assert not partial.confirm_idle(state, {P0: 80})  # type: ignore[arg-type]  # judged here already: not again
    assert step.asked == [80]
    step.calm = True
    state.epoch = 1  # a rollback since: the same position is another block
    assert partial.confirm_idle(state, {P0: 80}) and state.confirmed == 80  # type: ignore[arg-type]
    state.unconfirmed = [50, 70, 85]
    assert partial.confirm_idle(state, {P0: 90})  # type: ignore[arg-type]  # further on
    assert step.asked == [80, 80, 90]
