"""The learner process: hold the lease, consume, learn, snapshot to Redis, hand over cleanly.

One learner per model is *active* at a time; it holds the model's lease. Others wait as hot standbys and
take over when the lease expires. On activation a learner restores the head version and seeks every
partition to the offsets stored with it (:mod:`~streaming.learner.lineage`), so a restart or failover
neither skips nor repeats an event in the model's state. The loop follows the lineage, polls, steps the batch
(:mod:`~streaming.learner.batch`: each record through the per-event step of :mod:`~streaming.learner.step`, then
the event hooks: incidents, promotion, captures), then does the work between batches
(:mod:`~streaming.learner.between`: timed snapshots, lease, broker, lag, idle confirmation, promotion, status);
the cadence (:mod:`~streaming.learner.cadence`) says when to snapshot, renew the lease and publish the status, and
the activation's versions (:mod:`~streaming.learner.versions`) go from capture to written. Outages are waited out
(:mod:`~streaming.learner.outages`), then the learner re-activates from the newest snapshot. ``stop()`` (called
from SIGTERM) finishes the current batch, writes a final snapshot, commits offsets, closes the clients and releases
the lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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
from streaming.errors import BrokerUnavailableError, ConnectionFailedError, LeaseLostError, OutputDeliveryError
from streaming.health import Heartbeat
from streaming.learner.batch import BatchStep, event_hooks
from streaming.learner.between import BetweenBatches, PartialConfirmation
from streaming.learner.cadence import Cadence
from streaming.learner.checkpoint import Checkpoints
from streaming.learner.incidents import IncidentActions
from streaming.learner.join import LabelJoin
from streaming.learner.lineage import Lineage
from streaming.learner.lineage_watch import LineageWatch
from streaming.learner.outages import Outages
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.reference_gate import ReferenceGate, load_reference_set
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.learner.versions import ActiveVersions
from streaming.runtime import refreeze
from streaming.transport import (
    BrokerWatch,
    Consumer,
    Producer,
    TopicPartition,
    lag,
    make_consumer,
    make_producer,
    stored_offsets,
    topic_partitions,
)

__all__ = ["Learner", "spec_from_settings"]

log = logging.getLogger(__name__)

Positions = dict[TopicPartition, int]


@dataclasses.dataclass(frozen=True)
class Activation:
    """What one activation's loop, its lineage following and its final snapshot share."""

    consumer: Consumer
    outputs: Outputs
    positions: Positions  # the next offset of each partition: moved past each stepped record, and by rollbacks
    watch: LineageWatch
    versions: ActiveVersions


class Learner:
    """A prequential online learner for one model; see the module docstring.

    :meth:`run` is ``livelearn learn``: it waits for the lease, then consumes the events topic, scores and learns
    each event and snapshots to Redis until :meth:`stop`. Building one connects to nothing: Redis is first called
    by :meth:`run`, and Kafka when the learner becomes active.

    Parameters
    ----------
    settings
        Every setting it uses: the model (its engine is configured for the process here), Kafka, Redis, the store,
        the learner's cadence and lease, the guard's rules, the limits, the probes. A ``reference_set`` is read
        here (a topic range from Kafka), and a missing or malformed one stops the learner at once.
    redis_client
        The Redis connection (default: a new one to ``settings.redis``, not checked until the first call: a Redis
        down at start is waited out like any outage).
    writer_id
        Who holds the lease and writes the versions (default ``<host>:<pid>``); unique per learner.
    registry
        Where its Prometheus metrics are registered (default: the process's ``REGISTRY``).
    heartbeat
        What ``/healthz`` and ``/readyz`` read (default: a new one, stale after ``health_stale_seconds``).

    Examples
    --------
    >>> import fakeredis
    >>> from prometheus_client import CollectorRegistry
    >>> settings = Settings(model_name="shop", engine="river", learning_rate=0.05)
    >>> learner = Learner(settings, redis_client=fakeredis.FakeRedis(), writer_id="learner-a",
    ...                   registry=CollectorRegistry())
    >>> learner.spec.learning_rate, learner.counters["events_seen"], learner.last_snapshot
    (0.05, 0, None)
    >>> learner.lease.value is None, learner.store.head()  # standby until run() takes the lease; nothing stored
    (True, None)
    >>> learner.stop(); learner.stopping  # signal-safe: run() finishes its batch, snapshots and returns
    True
    """

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
        self.heartbeat = heartbeat or Heartbeat(settings.probes.health_stale_seconds)
        # not checked here: a Redis down or hung at start is waited out like any outage (run()); credentials it
        # rejects fail the first call, at once
        self.redis = redis_client or connect_settings(settings.redis, check=False)
        self.writer = writer_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store = VersionStore.for_settings(self.redis, settings.store)
        self.lease = Lease(self.redis, settings.model_name, self.writer, settings.learner.lease_ttl_seconds)
        self.spec = spec_from_settings(settings.model)
        self.telemetry = LearnerMetrics(registry, settings.model_name)
        self.step = EventStep(settings, self.telemetry)
        self.lineage = Lineage(self.store, self.spec, settings, self.telemetry)
        reference = load_reference_set(settings)  # a missing or malformed set stops the learner here, saying so
        gate = ReferenceGate(settings.guard, reference) if reference is not None else None
        self.checkpoints = Checkpoints(settings, self.store, self.lease, self.writer, self.telemetry, gate=gate)
        self.incidents = IncidentActions(settings.guard, self.store, self.lease, self.writer, self.telemetry)
        self._stop = threading.Event()
        self.outages = Outages(settings.redis, self.telemetry, self._stop, self.heartbeat, probe_redis=self.check_in)
        observe_attempts(self.redis, self.outages)  # a call that gets no answer is reported while it still retries
        self.state = LearnerState.fresh(self.spec, settings)
        self._learned_once = False  # Kafka failures after that are outages to wait out, not setup errors
        # across activations, as the idle judgement it remembers (once per lineage epoch and stream position)
        self.partial_confirmation = PartialConfirmation(self.step, self.telemetry)

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
                describe_failure(code, self.settings.redis.url, exc)
                if code
                else f"Redis at {redact_url(self.settings.redis.url)} failed: {exc}; the newest snapshot is safe"
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
                    self._standby(logged=standby_logged)
                    standby_logged = True
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

    def _standby(self, *, logged: bool) -> None:
        """Another learner holds the lease: check in and wait a little (who holds it is logged once a spell)."""
        self.check_in()
        self.outages.redis_confirmed()  # a standby's work is its check-in
        self.heartbeat.beat("standby")
        if not logged:
            log.info("standby: model %r is held by %s", self.settings.model_name, self.lease.current_holder())
        self._stop.wait(min(1.0, self.settings.learner.lease_ttl_seconds / 4))

    def check_in(self) -> None:
        """Record that this learner is alive (active or standby) for operators, views and readiness checks."""
        check_in(self.redis, self.store.keys.learners, self.writer)

    # -- active -----------------------------------------------------------------------------------
    def _run_active(self, until_caught_up: bool) -> None:
        watch = LineageWatch(self.redis, self.store.keys)
        consumer: Consumer | None = None
        producer: Producer | None = None
        try:
            self.heartbeat.beat("active", ready=False, detail="restoring the newest snapshot")
            self.state = self.lineage.activate(watch.read())
            if self.state.join is not None:  # its running counts are the baseline: a restart counts nothing twice
                self.telemetry.label_join(self.state.join.figures(), restored=True)
            self.checkpoints.start(self.state)  # the snapshot writer thread of this activation
            self.incidents.sync(self.state)
            consumer = make_consumer(self.settings.kafka)
            producer = make_producer(
                self.settings.kafka,
                linger_ms=20,  # a dead letter copies events up to the limit
                max_request_size=max(1_048_576, self.settings.limits.max_event_bytes) + 65_536,
            )
            positions = self._assign(consumer)
            if self.state.last_snapshot is None:
                self.lineage.refuse_lost_store(consumer, list(positions))
            self.incidents.settle_release(self.state, stored_offsets(positions))
            if not self.lease.renew():  # creating the clients may have taken a while
                raise LeaseLostError(f"lease of model {self.settings.model_name!r} expired while starting")
            outputs = Outputs(producer, self.settings, self.telemetry)
            versions = ActiveVersions(self.checkpoints, self.state, outputs, consumer)
            active = Activation(consumer, outputs, positions, watch, versions)
            self._learned_once = True
            self.outages.kafka_recovered()
            if self.state.pending_rollback or self.state.pending_promotion:  # a skip or a promotion no learner
                versions.snapshot(positions)  # applied yet (decided while none was active): recorded at once
            refreeze()  # the activation's model and clients out of the full collections' reach (if frozen before)
            self._loop(active, until_caught_up)
            self._finish(active)
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
        """Every partition of the events topic (and of the labels topic, when labels have one), each at the
        offset the restored version stored, else where ``auto_offset_reset`` says."""
        topics = [self.settings.kafka.events_topic]
        if self.settings.labels.topic:
            topics.append(self.settings.labels.topic)
        partitions = [tp for topic in topics for tp in topic_partitions(consumer, topic)]
        consumer.assign(partitions)
        for tp in partitions:
            stored = self.state.offsets.get(tp.topic, {})
            if str(tp.partition) in stored:
                consumer.seek(tp, stored[str(tp.partition)])
            elif self.settings.kafka.auto_offset_reset == "earliest":
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek_to_end(tp)
        return {tp: consumer.position(tp) for tp in partitions}

    def _loop(self, active: Activation, until_caught_up: bool) -> None:
        """Until stopped (or caught up): follow the lineage, poll, step the batch (:class:`BatchStep` and its event
        hooks), then the work between batches (:class:`BetweenBatches`)."""
        s, state, versions, consumer = self.settings, self.state, active.versions, active.consumer
        cadence = Cadence(s, now=time.monotonic(), seen=self.counters["events_seen"])
        hooks = event_hooks(state, versions, self.incidents, cadence, follow=functools.partial(self._follow, active))
        batch_step = BatchStep(state, self.step, active.outputs, hooks, writer=self.checkpoints)
        between = BetweenBatches(
            s,
            state,
            cadence,
            versions,
            self.partial_confirmation,
            lease=self.lease,
            broker=BrokerWatch(consumer, s.kafka, interval=s.learner.status_interval_seconds),
            consumer=consumer,
            heartbeat=self.heartbeat,
            telemetry=self.telemetry,
            outages=self.outages,
            status=self,
        )
        paused: set[TopicPartition] = set()  # partitions read ahead in event time (the label join)
        while not self._stop.is_set():
            self._follow(active)
            # while a snapshot waits for its outputs, do not sleep in an idle poll: write it as soon as they are in
            kafka = s.kafka
            timeout = min(kafka.poll_timeout_ms, 10) if versions.in_flight else kafka.poll_timeout_ms
            batch = consumer.poll(timeout_ms=timeout, max_records=kafka.poll_max_records)
            if state.join is not None:
                paused = _align_event_time(state.join, consumer, active.positions, paused)
            batch_step.process(batch, active.positions)
            caught_up = between.run(bool(batch), active.positions)
            if until_caught_up and caught_up:
                return

    def _follow(self, active: Activation) -> None:
        """Apply a rollback, freeze or resume made elsewhere (or by this learner's incident) before going on."""
        versions, positions = active.versions, active.positions
        control = active.watch.check(force=versions.lineage_moved)
        versions.lineage_moved = False
        if control is None:
            # what the learner decides from its own counts (a cool-down's end, the auto policy): at every batch, not
            # only when the lineage is read
            if self.state.arms is not None and self.lineage.follow_own(self.state):
                versions.snapshot(positions)
            return
        if versions.in_flight:
            versions.collect()  # the versions written by now are the lineage's before it moves
        epoch = self.state.epoch
        for tp, offset in self.lineage.follow(self.state, control, positions).items():
            active.consumer.seek(tp, offset)
            positions[tp] = offset
        if self.state.released is not None:  # where learning goes on, before any event is learned
            cause, self.state.released = self.state.released, None
            self.incidents.record_release(stored_offsets(positions), cause)
        if self.state.epoch != epoch:
            self.checkpoints.follow(self.state)  # what was captured on the old lineage is dropped
        promoted = self.lineage.follow_arms(self.state, control)
        if self.state.pending_rollback or promoted:
            versions.snapshot(positions)  # make the skip (or the new champion) durable before anything else

    # -- status -------------------------------------------------------------------------------------
    def status_document(
        self, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> LearnerStatus:
        return self.checkpoints.status_document(self.state, events_per_second, current_lag, positions)

    def publish_status(
        self, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> None:
        self.checkpoints.publish_status(self.state, events_per_second, current_lag, positions)

    def _finish(self, active: Activation) -> None:
        """Final snapshot (if the position moved since the last one) and status on the way out."""
        positions = active.positions
        last = self.state.last_snapshot
        stored = last.offsets if last else {}
        moved = any(stored.get(tp.topic, {}).get(str(tp.partition)) != pos for tp, pos in positions.items())
        if moved and (last is not None or any(self.counters.values())):
            # the stream goes no further here: judge the block so far now, as a timed snapshot's would be, so the
            # final version of calm data is stable when written (not a candidate no sample will ever confirm)
            self.partial_confirmation.confirm(self.state, positions)
            active.versions.snapshot(positions)
        active.outputs.flush()
        self.publish_status(0.0, lag(active.consumer, positions), positions)


def _unread(highwater: int | None, position: int) -> bool:
    """Whether a partition has records past ``position`` (unknown before its first fetch: assumed so)."""
    return highwater is None or position < highwater


#: How far in event time a partition may be read ahead of the slowest one with records unread (the label join).
ALIGN_SLACK_MS = 60_000


def _align_event_time(
    join: LabelJoin, consumer: Consumer, positions: Positions, paused: set[TopicPartition]
) -> set[TopicPartition]:
    """Before a batch: the join's clock waits for the partitions with records unread, and those read more than
    :data:`ALIGN_SLACK_MS` (at most a quarter of the wait) ahead of it in event time are paused until the others
    catch up (:meth:`LabelJoin.ahead`); returns the partitions paused now."""
    join.hold_for(tp for tp, at in positions.items() if _unread(consumer.highwater(tp), at))
    ahead = {TopicPartition(*tp) for tp in join.ahead(min(ALIGN_SLACK_MS, join.wait_ms // 4))}  # type: ignore[misc]
    if ahead - paused:
        consumer.pause(sorted(ahead - paused))
    if paused - ahead:
        resumed = sorted(paused - ahead)
        consumer.resume(resumed)
        for tp in resumed:  # from the learner's own position: a client may have dropped what it fetched while paused
            consumer.seek(tp, positions[tp])
    return ahead
