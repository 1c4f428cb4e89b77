"""What an active learner does between two poll batches, in this order.

1. a timed snapshot, when none is in flight and the snapshot interval passed (at once at a partial calm block:
   :class:`PartialConfirmation`, else after twice the interval; :class:`~streaming.learner.cadence.Cadence`);
2. the lease renewed every TTL/3 (refused: :class:`~streaming.errors.LeaseLostError`, back to standby);
3. whether Kafka answers (:class:`~streaming.transport.BrokerWatch`), the ``livelearn_kafka_up`` gauge and the
   heartbeat behind the probes (ready while Kafka and Redis both work);
4. the lag (unknown while Kafka does not answer);
5. the captured versions whose outputs are delivered released and applied — caught up, it waits for them
   (nothing to learn meanwhile);
6. caught up (an empty poll, no lag): the block so far judged once per position, so the versions at the end of a
   burst are confirmed without waiting for the next metric sample;
7. the confirmed candidates promoted;
8. every status interval: the status with the metric samples (and the check-in); an open Redis outage is over
   once a version was written since the loop began, or there is nothing to write and the status was.

:meth:`BetweenBatches.run` returns whether the learner is caught up (``learn --until-caught-up`` stops there).

>>> class Step:  # the block so far is calm: confirmed up to here
...     def confirm_partial(self, state, positions):
...         state.confirmed = sum(positions.values())
...         return True
>>> class State:
...     epoch, confirmed, unconfirmed = 0, None, [120]
>>> from prometheus_client import CollectorRegistry
>>> from streaming.learner.prometheus import LearnerMetrics
>>> partial = PartialConfirmation(Step(), LearnerMetrics(CollectorRegistry()))
>>> state, positions = State(), {TopicPartition("events", 0): 150}
>>> partial.confirm_idle(state, positions), state.confirmed
(True, 150)
>>> partial.confirm_idle(state, positions)  # judged at this position already
False
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from snapshotter.lease import Lease
from streaming.config import Settings
from streaming.errors import LeaseLostError
from streaming.health import Heartbeat
from streaming.learner.cadence import Cadence
from streaming.learner.outages import Outages
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState
from streaming.learner.step import EventStep
from streaming.learner.versions import ActiveVersions
from streaming.transport import BrokerWatch, Consumer, TopicPartition, lag

__all__ = ["BetweenBatches", "PartialConfirmation", "StatusPublisher"]

Positions = dict[TopicPartition, int]


class StatusPublisher(Protocol):
    """Where the status goes (:class:`~streaming.learner.runner.Learner`)."""

    def publish_status(
        self, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> None:
        """Write the status and the metric samples recorded since the last one (lease-fenced)."""

    def check_in(self) -> None:
        """Record that this learner is alive."""


class PartialConfirmation:
    """Confirms the data up to here on the block so far (:meth:`EventStep.confirm_partial`), counted in
    ``livelearn_partial_confirmations_total``; kept by the learner across activations (the idle judgement is made
    once per lineage epoch and stream position).

    Parameters
    ----------
    step
        Judges the block so far by the rule of full blocks.
    telemetry
        Counts the confirmations.
    """

    def __init__(self, step: EventStep, telemetry: LearnerMetrics) -> None:
        self.step, self.telemetry = step, telemetry
        self.judged: tuple[int, int] | None = None  # (epoch, stream position) of the last idle judgement

    def confirm(self, state: LearnerState, positions: Positions) -> bool:
        """Confirm the data up to ``positions`` if the block so far is calm; ``True`` if it did."""
        if not self.step.confirm_partial(state, positions):
            return False
        self.telemetry.partial_confirmations.inc()
        return True

    def confirm_idle(self, state: LearnerState, positions: Positions) -> bool:
        """Caught up, with candidate versions past the confirmed position: no metric sample comes before new data
        does, so judge the block so far now, by the rule a timed snapshot's partial block is judged by, once per
        position. Calm, it confirms them (served at once); not calm, they wait for the full block as before.
        Without this, a version written between samples at the end of a burst stayed a candidate until the stream
        went on. ``True`` if it confirmed."""
        if not state.unconfirmed or (state.confirmed is not None and state.unconfirmed[-1] <= state.confirmed):
            return False
        judged = (state.epoch, sum(positions.values()))
        if judged == self.judged:
            return False
        self.judged = judged
        return self.confirm(state, positions)


class BetweenBatches:
    """The work of one active learner between its poll batches (see the module docstring).

    Parameters
    ----------
    settings
        The learner's settings (the model's name for errors).
    state
        The activation's state.
    cadence
        When a snapshot, a renewal and a status are due (shared with the batch's capture hook).
    versions
        The activation's versions: captured, released, applied, promoted.
    partial
        Confirms calm blocks so far (timed snapshots, idle).
    lease
        Renewed every TTL/3.
    broker
        Whether Kafka answers.
    consumer
        Its high-water marks give the lag.
    heartbeat
        Behind the probes.
    telemetry
        The Kafka gauge.
    outages
        An open Redis outage, confirmed over here.
    status
        Publishes the status and checks in.
    clock
        Monotonic seconds (the cadence's clock).
    """

    def __init__(
        self,
        settings: Settings,
        state: LearnerState,
        cadence: Cadence,
        versions: ActiveVersions,
        partial: PartialConfirmation,
        *,
        lease: Lease,
        broker: BrokerWatch,
        consumer: Consumer,
        heartbeat: Heartbeat,
        telemetry: LearnerMetrics,
        outages: Outages,
        status: StatusPublisher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.state, self.cadence, self.versions = settings, state, cadence, versions
        self.partial, self.lease, self.broker, self.consumer = partial, lease, broker, consumer
        self.heartbeat, self.telemetry, self.outages, self.status = heartbeat, telemetry, outages, status
        self.clock = clock
        self.restored = state.last_snapshot  # after an outage: it is over once a version is written past it

    def run(self, polled: bool, positions: Positions) -> bool:
        """After a poll (``polled``: it returned records) and its batch; ``True`` when caught up (an empty poll
        and no lag)."""
        now = self.clock()
        self._snapshot_when_due(now, positions)
        if self.cadence.renew_due(now) and not self.lease.renew():
            raise LeaseLostError(f"lease of model {self.settings.model_name!r} expired or was taken over")
        kafka_up = self._observe_broker(polled, positions)
        current_lag = lag(self.consumer, positions) if kafka_up else None
        caught_up = not polled and current_lag == 0
        if self.versions.in_flight:  # caught up: nothing to learn meanwhile, so wait for the deliveries
            # (an empty poll with a lag is not caught up: the next fetch is on its way, learning waits for no
            # flush; with the lag unknown, Kafka may be down: the flush says so)
            self.versions.write_when_delivered(wait=current_lag == 0 or (current_lag is None and not polled))
        if caught_up:
            self.partial.confirm_idle(self.state, positions)
        if self.state.promotable:  # a candidate written after the sample that confirmed it, or confirmed idle
            self.versions.promote()
        if self.cadence.status_due(now):
            self._publish_status(now, current_lag, positions, caught_up=caught_up)
        return caught_up

    def _snapshot_when_due(self, now: float, positions: Positions) -> None:
        """A timed snapshot, none being in flight: at once if the block so far is calm (then it is stable at once),
        else after twice the interval (:meth:`Cadence.snapshot_due`)."""
        if self.versions.in_flight:
            return
        if self.cadence.snapshot_due(now, at_sample=self._partial_calm(now, positions)):
            self.versions.capture(positions)
            self.cadence.snapshotted(now)

    def _partial_calm(self, now: float, positions: Positions) -> bool:
        """A timed snapshot is due between metric samples and the block so far is calm: the data up to here is
        confirmed, so a snapshot taken now is stable at once (:meth:`EventStep.confirm_partial`)."""
        return self.cadence.snapshot_due(now, at_sample=True) and self.partial.confirm(self.state, positions)

    def _observe_broker(self, polled: bool, positions: Positions) -> bool:
        """Whether Kafka answers; the gauge and the heartbeat say so (ready while Kafka and Redis both work)."""
        kafka_up = self.broker.observe(polled, list(positions))
        self.telemetry.kafka_up.set(1 if kafka_up else 0)
        redis_up = not self.outages.redis_down
        self.heartbeat.beat(
            "active",
            ready=kafka_up and redis_up,
            detail="" if kafka_up and redis_up else "Kafka does not answer" if redis_up else "Redis unavailable",
        )
        return kafka_up

    def _publish_status(self, now: float, current_lag: int | None, positions: Positions, *, caught_up: bool) -> None:
        self.status.publish_status(self.cadence.rate(now, self.state.counters["events_seen"]), current_lag, positions)
        self.status.check_in()
        # what failed works again: a version was written since the outage, or there is nothing to write (caught up,
        # every event consumed in a version) and the status was — not merely a probe write
        nothing_to_write = caught_up and not self.cadence.since_snapshot and not self.versions.in_flight
        if self.outages.redis_down and (self.state.last_snapshot is not self.restored or nothing_to_write):
            self.outages.redis_confirmed()
