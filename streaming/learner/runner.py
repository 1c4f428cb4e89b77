"""The learner process: hold the lease, consume, learn, snapshot to Redis, hand over cleanly.

One learner per model is *active* at a time; it holds the model's lease. Others wait as hot standbys and
take over when the lease expires. On activation a learner restores the head version and seeks every
partition to the offsets stored with it (:mod:`~streaming.learner.lineage`), so a restart or failover
neither skips nor repeats an event in the model's state. Each record goes through the per-event step
(:mod:`~streaming.learner.step`); the cadence (:mod:`~streaming.learner.cadence`) says when to snapshot,
renew the lease and publish the status. Outages are waited out (:mod:`~streaming.learner.outages`), then
the learner re-activates from the newest snapshot. ``stop()`` (called from SIGTERM) finishes the current
batch, writes a final snapshot, commits offsets, closes the clients and releases the lease.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from snapshotter.codec import VersionMeta
from snapshotter.connection import FATAL_FAILURES, describe_failure, observe_attempts, redact_url, redis_failure
from snapshotter.lease import Lease
from snapshotter.presence import check_in, sign_off
from snapshotter.status import LearnerStatus
from snapshotter.store import VersionStore, connect_settings
from streaming.config import Settings
from streaming.errors import (
    BrokerUnavailableError,
    ConnectionFailedError,
    LeaseLostError,
    OutputDeliveryError,
    SnapshotFencedError,
    StaleLineageError,
)
from streaming.health import Heartbeat
from streaming.learner.cadence import Cadence
from streaming.learner.checkpoint import Checkpoints, Job
from streaming.learner.incidents import IncidentActions
from streaming.learner.lineage import Lineage
from streaming.learner.lineage_watch import LineageWatch
from streaming.learner.outages import Outages
from streaming.learner.outputs import Outputs
from streaming.learner.reference_gate import ReferenceGate, load_reference_set
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.learner.telemetry import LearnerMetrics
from streaming.runtime import refreeze
from streaming.transport import (
    BrokerWatch,
    Consumer,
    Producer,
    TopicPartition,
    lag,
    make_consumer,
    make_producer,
    topic_partitions,
)

__all__ = ["Learner", "spec_from_settings"]

log = logging.getLogger(__name__)

Positions = dict[TopicPartition, int]
#: snapshots captured and not yet written at most; with this many pending, a version due waits for the oldest one
MAX_PENDING_CAPTURES = 4


class Learner:
    """A prequential online learner for one model; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis.Redis | None = None,
        writer_id: str | None = None,
        registry: CollectorRegistry = REGISTRY,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.settings = settings
        self.heartbeat = heartbeat or Heartbeat(settings.health_stale_seconds)
        # not checked here: a Redis down or hung at start is waited out like any outage (run()); credentials it
        # rejects fail the first call, at once
        self.redis = redis_client or connect_settings(settings, check=False)
        self.writer = writer_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store = VersionStore.for_settings(self.redis, settings)
        self.lease = Lease(self.redis, settings.model_name, self.writer, settings.lease_ttl_seconds)
        self.spec = spec_from_settings(settings)
        self.telemetry = LearnerMetrics(registry, settings.model_name)
        self.step = EventStep(settings, self.telemetry)
        self.lineage = Lineage(self.store, self.spec, settings, self.telemetry)
        reference = load_reference_set(settings)  # a missing or malformed set stops the learner here, saying so
        gate = ReferenceGate(settings, reference) if reference is not None else None
        self.checkpoints = Checkpoints(settings, self.store, self.lease, self.writer, self.telemetry, gate=gate)
        self.incidents = IncidentActions(settings, self.store, self.lease, self.writer, self.telemetry)
        self._stop = threading.Event()
        self.outages = Outages(settings, self.telemetry, self._stop, self.heartbeat, probe_redis=self.check_in)
        observe_attempts(self.redis, self.outages)  # a call that gets no answer is reported while it still retries
        self.state = LearnerState.fresh(self.spec, settings)
        self._learned_once = False  # Kafka failures after that are outages to wait out, not setup errors
        self._lineage_moved = False  # a snapshot found the lineage moved on: follow it before going on
        self._idle_judged: tuple[int, int] | None = None  # (epoch, stream position) of the last idle judgement
        #: snapshots captured (handed to the writer thread), oldest first, waiting for the outputs sent before them
        self._captures: collections.deque[Job] = collections.deque()

    @property
    def counters(self) -> dict[str, int]:
        return self.state.counters

    @property
    def last_snapshot(self) -> VersionMeta | None:
        return self.state.last_snapshot

    def stop(self) -> None:
        """Ask the learner to finish its batch, snapshot, commit and exit (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- lease, standby, outages ------------------------------------------------------------------
    def run(self, *, until_caught_up: bool = False) -> None:
        """Wait for the lease, then learn until :meth:`stop` (or, optionally, until caught up).

        Redis outages and write refusals (out of memory, persistence failing, read-only replica) are waited
        out with backoff, visibly (log lines, ``livelearn_redis_up``): the learner stops consuming, and when
        Redis answers again it resumes from the newest snapshot. The same holds for a Redis down or hung when the
        learner starts. Only failures that waiting cannot cure (a missing permission, wrong credentials) end it,
        with an error naming them.
        """
        try:
            self._run(until_caught_up)
        except redis.RedisError as exc:
            code = redis_failure(exc)
            raise ConnectionFailedError(
                describe_failure(code, self.settings.redis_url, exc)
                if code
                else f"Redis at {redact_url(self.settings.redis_url)} failed: {exc}; the newest snapshot is safe"
            ) from None
        finally:
            if not self.outages.redis_down:  # (while Redis hangs, signing off would only hang the exit)
                with contextlib.suppress(redis.RedisError):
                    sign_off(self.redis, self.store.keys.learners, self.writer)

    def _run(self, until_caught_up: bool) -> None:
        standby_logged = False
        while not self._stop.is_set():
            try:
                # after an outage our lease may still be valid: keep it rather than wait for it to expire
                if not (self.lease.value is not None and self.lease.renew()) and not self.lease.acquire():
                    self.check_in()
                    self.outages.redis_confirmed()  # a standby's work is its check-in
                    self.heartbeat.beat("standby")
                    if not standby_logged:
                        log.info(
                            "standby: model %r is held by %s", self.settings.model_name, self.lease.current_holder()
                        )
                        standby_logged = True
                    self._stop.wait(min(1.0, self.settings.lease_ttl_seconds / 4))
                    continue
                standby_logged = False
                log.info(
                    "active: %s holds the lease of model %r (token %s)",
                    self.writer,
                    self.settings.model_name,
                    self.lease.token,
                )
                self.telemetry.lease_held.set(1)
                try:
                    self._run_active(until_caught_up)
                    return
                except LeaseLostError as exc:
                    log.warning("lease lost, back to standby: %s", exc)
                finally:
                    self.telemetry.lease_held.set(0)
            except redis.RedisError as exc:
                code = redis_failure(exc)
                if code is None or code in FATAL_FAILURES:
                    raise
                self.outages.wait_for_redis(code, exc)
            except (BrokerUnavailableError, OutputDeliveryError) as exc:
                if not self._learned_once:
                    raise  # never got going: a wrong address or setup, say so at once
                self.outages.pause_for_kafka(exc)

    def check_in(self) -> None:
        """Record that this learner is alive (active or standby) for operators, views and readiness checks."""
        check_in(self.redis, self.store.keys.learners, self.writer)

    # -- active -----------------------------------------------------------------------------------
    def _run_active(self, until_caught_up: bool) -> None:
        self._captures.clear()
        watch = LineageWatch(self.redis, self.store.keys)
        consumer: Consumer | None = None
        producer: Producer | None = None
        try:
            self.heartbeat.beat("active", ready=False, detail="restoring the newest snapshot")
            self.state = self.lineage.activate(watch.read())
            self.checkpoints.start(self.state)  # the snapshot writer thread of this activation
            self.incidents.sync(self.state)
            consumer = make_consumer(self.settings)
            producer = make_producer(
                self.settings,
                linger_ms=20,  # a dead letter copies events up to the limit
                max_request_size=max(1_048_576, self.settings.max_event_bytes) + 65_536,
            )
            positions = self._assign(consumer)
            if self.state.last_snapshot is None:
                self.lineage.refuse_lost_store(consumer, list(positions))
            if not self.lease.renew():  # creating the clients may have taken a while
                raise LeaseLostError(f"lease of model {self.settings.model_name!r} expired while starting")
            outputs = Outputs(producer, self.settings, self.telemetry)
            self._learned_once = True
            self.outages.kafka_recovered()
            if self.state.pending_rollback:  # record at once the skip a rollback decided while no learner applied it
                self.snapshot(outputs, positions, consumer)
            refreeze()  # the activation's model and clients out of the full collections' reach (if frozen before)
            self._loop(consumer, outputs, positions, watch, until_caught_up)
            self._finish(consumer, outputs, positions)
        finally:
            self.checkpoints.close()  # joins the writer thread (all written by now, or dropped on a failure)
            self._close(watch, consumer, producer)

    def _close(self, watch: LineageWatch, consumer: Consumer | None, producer: Producer | None) -> None:
        """Each step on its own: a failing one (broker or Redis gone) must not hide the error on its way up."""
        steps: list[tuple[str, Callable[[], object]]] = [("lineage watch", watch.close)]
        if consumer is not None:
            steps.append(("consumer", consumer.close))
        if producer is not None:
            steps.append(("producer", lambda: producer.close(timeout=5)))
        if not self.outages.redis_down:  # (during an outage it expires on its own: releasing would only wait)
            steps.append(("lease", self.lease.release))
        for what, close in steps:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - cleanup only
                log.debug("closing the %s failed: %s", what, exc)

    def _assign(self, consumer: Consumer) -> Positions:
        partitions = topic_partitions(consumer, self.settings.events_topic)
        consumer.assign(partitions)
        stored = self.state.offsets.get(self.settings.events_topic, {})
        for tp in partitions:
            if str(tp.partition) in stored:
                consumer.seek(tp, stored[str(tp.partition)])
            elif self.settings.auto_offset_reset == "earliest":
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek_to_end(tp)
        return {tp: consumer.position(tp) for tp in partitions}

    def _loop(
        self,
        consumer: Consumer,
        outputs: Outputs,
        positions: Positions,
        watch: LineageWatch,
        until_caught_up: bool,
    ) -> None:
        s = self.settings
        cadence = Cadence(s, now=time.monotonic(), seen=self.counters["events_seen"])
        broker = BrokerWatch(consumer, s, interval=s.status_interval_seconds)
        restored = self.state.last_snapshot  # after an outage: it is over once a version is written past it
        while not self._stop.is_set():
            self._follow(consumer, outputs, positions, watch)
            # while a snapshot waits for its outputs, do not sleep in an idle poll: write it as soon as they are in
            timeout = min(s.poll_timeout_ms, 10) if self.checkpoints.in_flight else s.poll_timeout_ms
            batch = consumer.poll(timeout_ms=timeout, max_records=s.poll_max_records)
            self.checkpoints.release_writer()  # stepping events: the snapshot writer may take its GIL slices
            for tp, records in batch.items():
                for record in records:
                    if record.offset < positions[tp]:
                        continue  # a rollback in this batch moved the partition past it
                    positions[tp] = record.offset + 1
                    samples = len(self.state.samples)
                    self.step.process(self.state, record, outputs, positions)
                    if self.state.incident_events or self.state.promotable:
                        self._after_sample(consumer, outputs, positions, watch)
                    due = cadence.consumed()
                    if len(self.state.samples) > samples:  # a metric sample at this event: a version here is judged
                        due = due or cadence.snapshot_due(time.monotonic(), at_sample=True)
                    if self.checkpoints.in_flight:
                        self._write_when_delivered(outputs, consumer)
                    # every N events is a version, even while earlier ones wait for their outputs: learning does
                    # not wait for their delivery, until too many are pending (then the oldest is written first)
                    if due:
                        if self.checkpoints.in_flight >= MAX_PENDING_CAPTURES:
                            self._make_room(outputs, consumer)
                        self._captures.append(self.checkpoints.capture(self.state, outputs, positions))
                        cadence.snapshotted(time.monotonic())
            # between batches the learner mostly calls what releases the GIL (Redis, the producer, the poll): a
            # busy writer taking it each time would cost the learner a switch interval back each time
            self.checkpoints.hold_writer()
            self.step.flush_telemetry()
            now = time.monotonic()
            if not self.checkpoints.in_flight and cadence.snapshot_due(
                now, at_sample=self._partial_calm(cadence, now, positions)
            ):
                self._captures.append(self.checkpoints.capture(self.state, outputs, positions))
                cadence.snapshotted(now)
            if cadence.renew_due(now) and not self.lease.renew():
                raise LeaseLostError(f"lease of model {s.model_name!r} expired or was taken over")
            kafka_up = broker.observe(bool(batch), list(positions))
            self.telemetry.kafka_up.set(1 if kafka_up else 0)
            redis_up = not self.outages.redis_down
            self.heartbeat.beat(
                "active",
                ready=kafka_up and redis_up,
                detail="" if kafka_up and redis_up else "Kafka does not answer" if redis_up else "Redis unavailable",
            )
            current_lag = lag(consumer, positions) if kafka_up else None
            if self.checkpoints.in_flight:  # caught up: nothing to learn meanwhile, so wait for the deliveries
                # (an empty poll with a lag is not caught up: the next fetch is on its way, learning waits for no
                # flush; with the lag unknown, Kafka may be down: the flush says so)
                caught_up = current_lag == 0 or (current_lag is None and not batch)
                self._write_when_delivered(outputs, consumer, wait=caught_up)
            if not batch and current_lag == 0:
                self._confirm_idle(positions)
            if self.state.promotable:  # a candidate written after the sample that confirmed it, or confirmed idle
                self._promote()
            if cadence.status_due(now):
                self.publish_status(cadence.rate(now, self.counters["events_seen"]), current_lag, positions)
                self.check_in()
                if self.outages.redis_down and (
                    self.state.last_snapshot is not restored
                    or (
                        not batch and current_lag == 0 and not cadence.since_snapshot and not self.checkpoints.in_flight
                    )
                ):
                    # what failed works again: a version was written since the outage, or there is nothing to write
                    # (caught up, every event consumed in a version) and the status was — not merely a probe write
                    self.outages.redis_confirmed()
            if until_caught_up and not batch and current_lag == 0:
                return

    def _partial_calm(self, cadence: Cadence, now: float, positions: Positions) -> bool:
        """A timed snapshot is due between metric samples and the block so far is calm: the data up to here is
        confirmed, so a snapshot taken now is stable at once (:meth:`EventStep.confirm_partial`)."""
        return cadence.snapshot_due(now, at_sample=True) and self._confirm_partial(positions)

    def _confirm_partial(self, positions: Positions) -> bool:
        """Confirm the data up to here if the block so far is calm (:meth:`EventStep.confirm_partial`), counted."""
        if not self.step.confirm_partial(self.state, positions):
            return False
        self.telemetry.partial_confirmations.inc()
        return True

    def _follow(self, consumer: Consumer, outputs: Outputs, positions: Positions, watch: LineageWatch) -> None:
        """Apply a rollback, freeze or resume made elsewhere (or by this learner's incident) before going on."""
        control = watch.check(force=self._lineage_moved)
        self._lineage_moved = False
        if control is None:
            return
        if self.checkpoints.in_flight:
            self._collect(consumer)  # the versions written by now are the lineage's before it moves
        epoch = self.state.epoch
        for tp, offset in self.lineage.follow(self.state, control, positions).items():
            consumer.seek(tp, offset)
            positions[tp] = offset
        if self.state.released is not None:  # where learning goes on, before any event is learned
            cause, self.state.released = self.state.released, None
            self.incidents.record_release(sum(positions.values()), cause)
        if self.state.epoch != epoch:
            self.checkpoints.follow(self.state)  # what was captured on the old lineage is dropped
        if self.state.pending_rollback:
            self.snapshot(outputs, positions, consumer)  # make the skip durable before anything else

    def _after_sample(self, consumer: Consumer, outputs: Outputs, positions: Positions, watch: LineageWatch) -> None:
        """At the event a metric sample was recorded: record the incident the watch confirmed or ended, and follow
        the lineage move it made, before the next event; confirm the candidate versions the calm data allows."""
        if self.state.incident_events:
            if self.checkpoints.in_flight:  # the versions captured before it exist (and may be its target) first
                self._write_when_delivered(outputs, consumer, wait=True)
            consumed: dict[str, dict[str, int]] = {}
            for tp, position in positions.items():
                consumed.setdefault(tp.topic, {})[str(tp.partition)] = position
            self.incidents.act(self.state, consumed)
            self._lineage_moved = True
            self._follow(consumer, outputs, positions, watch)
        if self.state.promotable:
            self._promote()

    def _promote(self) -> None:
        try:
            self.checkpoints.promote(self.state)
        except SnapshotFencedError as exc:
            raise LeaseLostError(str(exc)) from None
        except StaleLineageError:
            self._lineage_moved = True  # a rollback dropped the candidates: follow it first

    def _confirm_idle(self, positions: Positions) -> None:
        """Caught up, with candidate versions past the confirmed position: no metric sample comes before new
        data does, so judge the block so far now, by the rule a timed snapshot's partial block is judged by
        (:meth:`EventStep.confirm_partial`), once per position. Calm, it confirms them (served at once); not calm,
        they wait for the full block as before. Without this, a version written between samples at the end of
        a burst stayed a candidate until the stream went on."""
        state = self.state
        if not state.unconfirmed or (state.confirmed is not None and state.unconfirmed[-1] <= state.confirmed):
            return
        judged = (state.epoch, sum(positions.values()))
        if judged == self._idle_judged:
            return
        self._idle_judged = judged
        self._confirm_partial(positions)

    # -- snapshots and status -----------------------------------------------------------------------
    def snapshot(self, outputs: Outputs, positions: Positions, consumer: Consumer) -> VersionMeta | None:
        """Write the current state as a new version now, waiting for its outputs (see :class:`Checkpoints`); a
        captured one still waiting is written first (every N events stays a version, even when the final
        snapshot follows it closely). ``None`` when a rollback moved the lineage on meanwhile: the loop follows
        it first."""
        if self.checkpoints.in_flight:  # (one captured on a lineage moved on since is dropped, as before)
            self._write_when_delivered(outputs, consumer, wait=True)
        meta = self.checkpoints.snapshot(self.state, outputs, positions, consumer)
        self.checkpoints.lineage_moved = False
        self._lineage_moved = meta is None
        return meta

    def _write_when_delivered(self, outputs: Outputs, consumer: Consumer, *, wait: bool = False) -> None:
        """Release to the writer thread the captured snapshots, oldest first, whose outputs (everything sent
        before each) are delivered (checked without blocking), and apply the writes it finished. If the oldest
        waits longer than the outputs' timeout, or with ``wait`` (the learner has caught up: a status saying so
        then speaks of durable snapshots), flush the outputs (and fail as a flush does) and wait for the
        writes."""
        while self._captures:
            job = self._captures[0]
            if not outputs.delivered(job.captured.mark):
                if not wait and time.monotonic() - job.captured.at < outputs.timeout:
                    break
                outputs.flush()
            self._captures.popleft()
            self.checkpoints.release(job)
        jobs = self.checkpoints.jobs
        self._collect(consumer, until=jobs[-1] if wait and jobs else None)

    def _make_room(self, outputs: Outputs, consumer: Consumer) -> None:
        """Backpressure: :data:`MAX_PENDING_CAPTURES` versions wait for their outputs or the writer (a slow
        broker or Redis). A version due is never skipped nor moved to a later event, so learning waits here
        until the oldest one is written (flushing the outputs it waits for, and failing as a flush does)."""
        oldest = self.checkpoints.jobs[0]
        if self._captures and self._captures[0] is oldest:
            if not outputs.delivered(oldest.captured.mark):
                outputs.flush()
            self._captures.popleft()
            self.checkpoints.release(oldest)
        self._collect(consumer, until=oldest)

    def _collect(self, consumer: Consumer, until: Job | None = None) -> None:
        """Apply the writes the writer finished (waiting for ``until``); a dropped one: follow the lineage first."""
        self.checkpoints.collect(self.state, consumer, until=until)
        if self.checkpoints.lineage_moved:
            self.checkpoints.lineage_moved = False
            self._lineage_moved = True  # follow the move first (captures on the old lineage are dropped)

    def status_document(
        self, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> LearnerStatus:
        return self.checkpoints.status_document(self.state, events_per_second, current_lag, positions)

    def publish_status(
        self, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> None:
        self.checkpoints.publish_status(self.state, events_per_second, current_lag, positions)

    def _finish(self, consumer: Consumer, outputs: Outputs, positions: Positions) -> None:
        """Final snapshot (if the position moved since the last one) and status on the way out."""
        last = self.state.last_snapshot
        stored = last.offsets if last else {}
        moved = any(stored.get(tp.topic, {}).get(str(tp.partition)) != pos for tp, pos in positions.items())
        if moved and (last is not None or any(self.counters.values())):
            # the stream goes no further here: judge the block so far now, as a timed snapshot's would be, so the
            # final version of calm data is stable when written (not a candidate no sample will ever confirm)
            self._confirm_partial(positions)
            self.snapshot(outputs, positions, consumer)
        outputs.flush()
        self.publish_status(0.0, lag(consumer, positions), positions)
