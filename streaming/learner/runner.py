"""The learner: consume events, score then learn each one, snapshot to Redis, hand over cleanly.

One learner per model is *active* at a time; it holds the model's lease. Others wait as hot
standbys and take over when the lease expires. On activation a learner restores the head version
and seeks every partition to the offsets stored with it, so a restart or failover neither skips
nor repeats an event in the model's state. ``stop()`` (called from SIGTERM) finishes the current
batch, writes a final snapshot, commits offsets, closes the clients and releases the lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from redis.backoff import ExponentialBackoff
from prometheus_client import REGISTRY, CollectorRegistry

from monitor.prequential import PrequentialMetrics, meets_threshold
from streaming.learner.telemetry import LearnerMetrics
from snapshotter.codec import SnapshotState, VersionMeta, pack
from snapshotter.connection import FATAL_FAILURES, describe_failure, redact_url, redis_failure
from snapshotter.lease import Lease
from streaming.learner.restore import restore_head
from snapshotter.store import VersionStore, connect_settings
from streaming.config import Settings
from streaming.learner.lineage_watch import ControlState, ControlWatch
from streaming.learner.dedupe import RecentIds
from streaming.errors import (
    BrokerUnavailableError,
    ConnectionFailedError,
    EventError,
    LeaseLostError,
    OutputDeliveryError,
    SnapshotFencedError,
    StaleLineageError,
    StoreLostError,
)
from streaming.events import EventLimits, decode_event
from streaming.transport import BrokerWatch, lag, make_consumer, make_producer, topic_partitions
from streaming.model import ModelSpec, OnlineModel
from streaming.learner.outputs import Outputs

__all__ = ["Learner", "spec_from_settings"]

# KEYS: lease, status, history.  ARGV: lease value, status doc, ttl ms, history maxlen, fields per sample,
# then the metric samples one after the other (each `fields per sample` values: field, value, field, ...).
_PUBLISH_STATUS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local width = tonumber(ARGV[5])
local i = 6
while width > 0 and i + width - 1 <= #ARGV do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, i, i + width - 1))
  i = i + width
end
return 1
"""

log = logging.getLogger(__name__)


def spec_from_settings(settings: Settings) -> ModelSpec:
    return ModelSpec(
        learning_rate=settings.learning_rate,
        l2=settings.l2,
        features_include=tuple(settings.features_include),
        features_exclude=tuple(settings.features_exclude),
        max_categories_per_feature=settings.max_categories_per_feature,
        max_inputs=settings.max_inputs,
    )


class Learner:
    """A prequential online learner for one model; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis.Redis | None = None,
        writer_id: str | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.redis = redis_client or connect_settings(settings)
        self.writer = writer_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store = VersionStore.for_settings(self.redis, settings)
        self.lease = Lease(self.redis, settings.model_name, self.writer, settings.lease_ttl_seconds)
        self.spec = spec_from_settings(settings)
        self.limits = EventLimits.from_settings(settings)
        self.telemetry = LearnerMetrics(registry, settings.model_name)
        self._publish = self.redis.register_script(_PUBLISH_STATUS)
        self._learned_once = False  # Kafka failures after that are outages to wait out, not setup errors
        self._kafka_failures, self._kafka_backoff = 0, ExponentialBackoff(cap=10.0, base=0.2)
        self._stop = threading.Event()
        self._reset_state()

    # -- state ----------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.model = OnlineModel(self.spec)
        self.prequential = PrequentialMetrics(self.settings.rolling_window)
        self.counters = {"events_seen": 0, "events_learned": 0, "dead_lettered": 0, "duplicates": 0}
        self.recent = RecentIds(self.settings.dedupe_window)  # the idempotence window
        self.offsets: dict[str, dict[str, int]] = {}
        self.parent: int | None = None
        self.last_snapshot: VersionMeta | None = None
        self.epoch = 0
        self.frozen = False
        self._pending_rollback: dict[str, Any] | None = None  # goes into the next snapshot's metadata
        self.last_rollback: dict[str, Any] | None = None  # shown in the status
        self._samples: list[dict[str, Any]] = []  # metric samples not yet in the history stream

    def stop(self) -> None:
        """Ask the learner to finish its batch, snapshot, commit and exit (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- main loop ------------------------------------------------------------------------------
    def run(self, *, until_caught_up: bool = False) -> None:
        """Wait for the lease, then learn until :meth:`stop` (or, optionally, until caught up).

        Redis outages and write refusals (out of memory, persistence failing, read-only replica) are waited
        out with backoff, visibly (log lines, ``livelearn_redis_up``): the learner stops consuming, and when
        Redis answers again it resumes from the newest snapshot. Only failures that waiting cannot cure (a
        missing permission, wrong credentials) end it, with an error naming them.
        """
        try:
            self._run(until_caught_up)
        except redis.RedisError as exc:
            code = redis_failure(exc)
            raise ConnectionFailedError(
                describe_failure(code, self.settings.redis_url, exc) if code else
                f"Redis at {redact_url(self.settings.redis_url)} failed: {exc}; the newest snapshot is safe"
            ) from None
        finally:
            with contextlib.suppress(redis.RedisError):
                self.redis.zrem(self.store.keys.learners, self.writer)

    def _run(self, until_caught_up: bool) -> None:
        standby_logged = False
        while not self._stop.is_set():
            try:
                # after an outage our lease may still be valid: keep it rather than wait for it to expire
                if not (self.lease.value is not None and self.lease.renew()) and not self.lease.acquire():
                    self.check_in()
                    if not standby_logged:
                        log.info("standby: model %r is held by %s", self.settings.model_name,
                                 self.lease.current_holder())
                        standby_logged = True
                    self._stop.wait(min(1.0, self.settings.lease_ttl_seconds / 4))
                    continue
                standby_logged = False
                log.info("active: %s holds the lease of model %r (token %s)", self.writer,
                         self.settings.model_name, self.lease.token)
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
                self._wait_for_redis(code, exc)
            except (BrokerUnavailableError, OutputDeliveryError, KafkaError) as exc:
                if not self._learned_once:
                    raise  # never got going: a wrong address or setup, say so at once
                self._kafka_failures += 1
                self.telemetry.kafka_up.set(0)
                pause = self._kafka_backoff.compute(self._kafka_failures)
                log.error("Kafka failed while learning (%s); resuming from the newest snapshot in %.1fs", exc, pause)
                self._stop.wait(pause)

    def _wait_for_redis(self, code: str, exc: BaseException) -> None:
        """Back off until Redis answers and accepts writes again (or :meth:`stop`)."""
        started = time.monotonic()
        self.telemetry.redis_down(code)
        log.error("%s; pausing (no event is consumed, the newest snapshot is safe) until it recovers",
                  describe_failure(code, self.settings.redis_url, exc))
        backoff, failures, next_log = ExponentialBackoff(cap=5.0, base=0.1), 0, started + 30
        while not self._stop.wait(backoff.compute(failures)):
            try:
                self.check_in()  # a small write: refused while Redis is out of memory, read-only...
                break
            except redis.RedisError as again:
                failures += 1
                code = redis_failure(again) or code
                if time.monotonic() >= next_log:
                    log.error("still waiting for Redis after %.0fs: %s", time.monotonic() - started,
                              describe_failure(code, self.settings.redis_url, again))
                    next_log = time.monotonic() + 30
        else:
            log.warning("stopping while Redis is unavailable: no final snapshot; the next learner replays "
                        "from the newest one")
            return
        self.telemetry.redis_up.set(1)
        log.warning("Redis is back after %.1fs; resuming from the newest snapshot", time.monotonic() - started)

    def check_in(self) -> None:
        """Record that this learner is alive (active or standby) for operators, views and readiness checks."""
        now = time.time()
        keys = self.store.keys
        self.redis.pipeline().zadd(keys.learners, {self.writer: now}).zremrangebyscore(
            keys.learners, "-inf", now - 3600).execute()

    def _run_active(self, until_caught_up: bool) -> None:
        self._reset_state()
        watch = ControlWatch(self.redis, self.store.keys)
        self._load_lineage(watch.read(), activation=True)
        if self.last_snapshot is not None:  # resume exactly where the restored version stopped
            self.offsets = {t: dict(p) for t, p in self.last_snapshot.offsets.items()}
        self._skip_discarded_range()
        consumer = make_consumer(self.settings)
        producer = make_producer(self.settings, linger_ms=20,  # a dead letter copies events up to the limit
                                 max_request_size=max(1_048_576, self.settings.max_event_bytes) + 65_536)
        try:
            positions = self._assign(consumer)
            if self.last_snapshot is None:
                self._refuse_lost_store(consumer, list(positions))
            if not self.lease.renew():  # creating the clients may have taken a while
                raise LeaseLostError(f"lease of model {self.settings.model_name!r} expired while starting")
            outputs = Outputs(producer, self.settings, self.telemetry)
            self._learned_once, self._kafka_failures = True, 0
            if self._pending_rollback:  # record at once the skip a rollback decided while no learner applied it
                self.snapshot(outputs, positions, consumer)
            self._loop(consumer, outputs, positions, watch, until_caught_up)
            self._finish(consumer, outputs, positions)
        finally:  # each step on its own: a failing one (broker or Redis gone) must not hide the real error
            for what, close in (("control watch", watch.close),
                                ("consumer", lambda: consumer.close(autocommit=False, timeout_ms=5000)),
                                ("producer", lambda: producer.close(timeout=5)),
                                ("lease", self.lease.release)):
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - cleanup only; the cause is already on its way up
                    log.debug("closing the %s failed: %s", what, exc)

    def _load_lineage(self, control: ControlState, *, activation: bool = False) -> None:
        """Restore the head version of the current lineage (on activation, and after a rollback).

        The idempotence window belongs to the stream position, not to a version: on activation it comes
        with the restored version's offsets; after a rollback, which keeps the current offsets, it stays.
        """
        self.epoch, self.frozen = control.epoch, control.frozen
        restored = restore_head(self.store, self.spec, self.settings.rolling_window)
        if restored is not None:
            meta = restored.meta
            self.model, self.prequential = restored.model, restored.metrics
            self.counters = {"duplicates": 0, **restored.counters}
            self.parent = meta.number
            self.last_snapshot = meta
            if activation:
                self.recent.load(restored.stream.get("dedupe"))
            log.info("restored version %d (events_seen=%d, epoch %d%s)", meta.number, meta.events_seen,
                     self.epoch, ", learning frozen" if self.frozen else "")
        self.telemetry.model_size(self.model.inputs, self.model.capped, restored=True)

    def _resume_point(self) -> dict[str, Any]:
        """The rollback record that made the current lineage: how far the lineage had consumed (``offsets``)
        and the version it left (``from``); empty when no rollback made this lineage."""
        point = self.store.resume_point()
        return point if point is not None and point["epoch"] == self.epoch else {}

    def _skip_discarded_range(self) -> None:
        """On activation: if a rollback made this lineage and no snapshot of it exists yet (its learner died
        before applying it), resume where the rollback said, not at the target's offsets."""
        last = self.last_snapshot
        if last is None or last.epoch >= self.epoch:
            return  # no rollback since, or its first snapshot already recorded the skip
        skipped: dict[str, dict[str, list[int]]] = {}
        point = self._resume_point()
        for topic, partitions in point.get("offsets", {}).items():
            for partition, position in partitions.items():
                start = self.offsets.get(topic, {}).get(partition, 0)
                if position > start:
                    skipped.setdefault(topic, {})[partition] = [start, position]
                    self.offsets.setdefault(topic, {})[partition] = position
        self._pending_rollback = {"from_version": point.get("from"), "to_version": last.number, "epoch": self.epoch,
                                  "skipped_offsets": skipped, "applied_at": time.time(), "recovered": True}
        self.last_rollback = self._pending_rollback
        self.counters["scored_since_rollback"] = 0
        log.warning("the rollback to version %d was not applied by a learner yet: resuming after the range it "
                    "discarded %s", last.number, skipped)

    def _apply_control(self, control: ControlState, positions: dict[TopicPartition, int],
                       consumer: KafkaConsumer, outputs: Outputs) -> None:
        if control.frozen != self.frozen:
            self.frozen = control.frozen
            log.warning("learning %s", "frozen: scoring only" if self.frozen else "resumed")
        if control.epoch == self.epoch:
            return
        head_before = self.parent
        self._load_lineage(control)
        stored = self.last_snapshot.offsets if self.last_snapshot else {}
        consumed = self._resume_point().get("offsets", {})
        skipped: dict[str, dict[str, list[int]]] = {tp.topic: {} for tp in positions}
        for tp, position in positions.items():
            start = stored.get(tp.topic, {}).get(str(tp.partition), 0)
            # never learn an event twice: not before the target's offsets (manual --to N ahead of us), nor
            # before what the lineage had consumed when the rollback was made
            resume = max(position, start, consumed.get(tp.topic, {}).get(str(tp.partition), 0))
            if resume > start:
                skipped[tp.topic][str(tp.partition)] = [start, resume]
            if resume > position:
                consumer.seek(tp, resume)
                positions[tp] = resume
        self._pending_rollback = {"from_version": head_before, "to_version": self.parent, "epoch": self.epoch,
                                  "skipped_offsets": skipped, "applied_at": time.time()}
        self.last_rollback = self._pending_rollback
        self.counters["scored_since_rollback"] = 0  # its restored window must not make new versions "stable"
        log.warning("rolled back to version %s (epoch %d); continuing from the current offsets", self.parent,
                    self.epoch)
        self.snapshot(outputs, positions, consumer)  # make the skip durable before anything else happens

    def _refuse_lost_store(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Starting from nothing is right for a new model, wrong when Redis lost the versions of an old one.

        Learners commit their offsets to the model's consumer group after every snapshot (with metadata
        ``livelearn vN`` where the broker keeps it). Committed offsets but no version in Redis: Redis lost
        its data (e.g. restarted without persistence). Starting over would relearn from the beginning and
        reuse version numbers, so the learner refuses unless ``allow_empty_store`` says otherwise; then new
        versions are numbered after the last one Kafka remembers.
        """
        committed = {}
        for tp in partitions:
            mark = consumer.committed(tp, metadata=True, timeout_ms=10_000)
            if mark is not None and mark.offset > 0:
                committed[tp] = mark
        if not committed:
            return
        numbers = [int(m.metadata.split("v", 1)[1]) for m in committed.values()
                   if m.metadata and m.metadata.startswith("livelearn v") and m.metadata[11:].isdigit()]
        last = f"version {max(numbers)}" if numbers else "earlier versions"
        group, where = self.settings.consumer_group_name, ", ".join(f"{tp.topic}[{tp.partition}]@{m.offset}"
                                                                    for tp, m in committed.items())
        if not self.settings.allow_empty_store:
            raise StoreLostError(
                f"Redis at {redact_url(self.settings.redis_url)} holds no version of model "
                f"{self.settings.model_name!r}, but Kafka group {group!r} committed offsets for {last} ({where}): "
                "Redis lost its data. Restore it from a backup (or enable persistence), or start a new model "
                "from LIVELEARN_AUTO_OFFSET_RESET with --allow-empty-store (LIVELEARN_ALLOW_EMPTY_STORE=true)")
        log.warning("Redis holds no version of model %r although Kafka group %r committed offsets (%s); starting "
                    "from nothing as allowed", self.settings.model_name, group, where)
        if numbers:
            self.store.raise_counter(max(numbers))

    def _assign(self, consumer: KafkaConsumer) -> dict[TopicPartition, int]:
        partitions = topic_partitions(consumer, self.settings.events_topic)
        consumer.assign(partitions)
        stored = self.offsets.get(self.settings.events_topic, {})
        for tp in partitions:
            if str(tp.partition) in stored:
                consumer.seek(tp, stored[str(tp.partition)])
            elif self.settings.auto_offset_reset == "earliest":
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek_to_end(tp)
        return {tp: consumer.position(tp) for tp in partitions}

    def _loop(self, consumer, outputs: Outputs, positions, watch: ControlWatch, until_caught_up: bool) -> None:
        s = self.settings
        now = time.monotonic()
        next_renew = now + s.lease_ttl_seconds / 3
        next_status = now
        last_snapshot_at = now
        since_snapshot = 0
        rate_mark = (now, self.counters["events_seen"])
        broker = BrokerWatch(consumer, s, interval=s.status_interval_seconds)
        while not self._stop.is_set():
            control = watch.check()
            if control is not None:
                self._apply_control(control, positions, consumer, outputs)
            batch = consumer.poll(timeout_ms=s.poll_timeout_ms, max_records=s.poll_max_records)
            for tp, records in batch.items():
                for record in records:
                    positions[tp] = record.offset + 1
                    self._process(record, outputs, positions)
                    since_snapshot += 1
                    if since_snapshot >= s.snapshot_every_events:
                        self.snapshot(outputs, positions, consumer)
                        since_snapshot, last_snapshot_at = 0, time.monotonic()
            now = time.monotonic()
            if since_snapshot and now - last_snapshot_at >= s.snapshot_every_seconds:
                self.snapshot(outputs, positions, consumer)
                since_snapshot, last_snapshot_at = 0, now
            if now >= next_renew:
                if not self.lease.renew():
                    raise LeaseLostError(f"lease of model {s.model_name!r} expired or was taken over")
                next_renew = now + s.lease_ttl_seconds / 3
            kafka_up = broker.observe(bool(batch), list(positions))
            self.telemetry.kafka_up.set(1 if kafka_up else 0)
            current_lag = lag(consumer, positions) if kafka_up else None
            if now >= next_status:
                rate = (self.counters["events_seen"] - rate_mark[1]) / max(now - rate_mark[0], 1e-9)
                rate_mark = (now, self.counters["events_seen"])
                self.publish_status(rate, current_lag, positions)
                self.check_in()
                next_status = now + s.status_interval_seconds
            if until_caught_up and not batch and current_lag == 0:
                return

    def _process(self, record: Any, outputs: Outputs, positions: dict[TopicPartition, int]) -> None:
        self.telemetry.events_consumed.inc()
        try:
            event = decode_event(record.value, self.settings.event_format, self.limits)
        except EventError as exc:
            outputs.dead_letter(record, exc)
            self.counters["dead_lettered"] += 1
            return
        if self.recent.seen_before(record.partition, event.event_id):  # a producer retry: learned already
            self.counters["duplicates"] += 1
            self.telemetry.duplicates.inc()
            return
        learn = event.label is not None and not self.frozen
        t0 = time.perf_counter()
        x = self.model.encode(event.features, learn=learn)
        p = self.model.predict_encoded(x)
        self.telemetry.predict_seconds.observe(time.perf_counter() - t0)
        self.counters["events_seen"] += 1
        if self.settings.publish_predictions:
            outputs.prediction(event, p, self.parent)
        if event.label is not None:
            self.prequential.update(event.label, p)
            if "scored_since_rollback" in self.counters:
                self.counters["scored_since_rollback"] += 1
            if self.prequential.samples % self.settings.history_every_events == 0:
                self._record_sample(positions)
            if learn:
                t1 = time.perf_counter()
                self.model.learn_encoded(x, event.label)
                self.telemetry.learn_seconds.observe(time.perf_counter() - t1)
                self.counters["events_learned"] += 1
                self.telemetry.events_learned.inc()

    # -- snapshots and status -------------------------------------------------------------------
    def snapshot(self, outputs: Outputs, positions: dict[TopicPartition, int],
                 consumer: KafkaConsumer) -> VersionMeta | None:
        """Write the current state as a new version, then commit its offsets (for monitoring)."""
        t0 = time.perf_counter()
        outputs.flush()  # dead letters and predictions up to here are durable before offsets move past them
        for tp, position in positions.items():
            self.offsets.setdefault(tp.topic, {})[str(tp.partition)] = position
        state = self.snapshot_state()
        rolling = self.prequential.rolling_values()
        metric_values = {"rolling": rolling, "cumulative": self.prequential.cumulative_values()}
        extra: dict[str, Any] = {"dead_lettered": self.counters["dead_lettered"], "frozen": self.frozen}
        if self._pending_rollback:
            extra["rollback"] = self._pending_rollback
        try:
            meta = self.store.write(state, writer=self.writer, lease_value=self.lease.value, offsets=self.offsets,
                                    metrics=metric_values, parent=self.parent, extra=extra, epoch=self.epoch,
                                    stable=self._stable(rolling))
        except SnapshotFencedError as exc:
            raise LeaseLostError(str(exc)) from None
        except StaleLineageError as exc:  # a rollback landed since the last control check: follow it
            log.warning("%s; reloading the lineage", exc)
            self._apply_control(ControlWatch.read_state(self.redis, self.store.keys), positions, consumer, outputs)
            return self.last_snapshot
        self.parent, self.last_snapshot, self._pending_rollback = meta.number, meta, None
        elapsed = time.perf_counter() - t0
        self.telemetry.snapshot_seconds.observe(elapsed)
        self.telemetry.snapshot_written(meta.created_at, meta.size_bytes, meta.number)
        self._commit(consumer, positions, meta.number)
        log.info("version %d written: events_seen=%d, %.1f ms (+ %.1f ms offset commit)", meta.number,
                 meta.events_seen, elapsed * 1e3, (time.perf_counter() - t0 - elapsed) * 1e3)
        return meta

    def snapshot_state(self) -> SnapshotState:
        """The learned state as it stands: what the next snapshot's blob holds."""
        return SnapshotState(spec=self.spec.to_dict(), model=self.model.dump_state(),
                             metrics=self.prequential.dump_state(), counters=dict(self.counters),
                             stream={"dedupe": self.recent.dump()})

    def _record_sample(self, positions: dict[TopicPartition, int]) -> None:
        """Keep the rolling metrics at this exact event for the history stream (the monitor judges each one).

        Samples fall on every ``history_every_events``-th labelled event, so the monitor sees the same
        sequence whatever the event rate; a replay after a crash records the same samples again (same
        ``scored`` count), which the monitor recognises and skips.
        """
        self._samples.append({"time": time.time(), "epoch": self.epoch, "version": self.parent or 0,
                              "scored": self.prequential.samples, "events_seen": self.counters["events_seen"],
                              "stream_position": sum(positions.values()),
                              **{f"offset:{tp.partition}": position for tp, position in positions.items()},
                              **self.prequential.rolling_values()})

    def _stable(self, rolling: dict[str, float]) -> bool:
        """Meets the threshold with enough samples — counting, after a rollback, only events scored since."""
        since = self.counters.get("scored_since_rollback")
        return meets_threshold(rolling, self.settings) and (since is None or since >= self.settings.monitor_min_samples)

    def _commit(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int], number: int) -> None:
        try:
            consumer.commit({tp: OffsetAndMetadata(pos, f"livelearn v{number}", -1) for tp, pos in positions.items()},
                            timeout_ms=2000)
        except Exception as exc:  # commits only feed lag dashboards; never stop learning for them
            log.warning("offset commit after version %d failed: %s", number, exc)

    def publish_status(self, events_per_second: float, current_lag: int | None,
                       positions: dict[TopicPartition, int] | None = None) -> None:
        """Write this learner's live figures to Redis (read by `livelearn up`, the monitor, the API)."""
        rolling = self.prequential.rolling_values()
        self.telemetry.set_rolling(rolling)
        self.telemetry.model_size(self.model.inputs, self.model.capped)
        self.telemetry.consumer_lag.set(float("nan") if current_lag is None else current_lag)
        last = self.last_snapshot
        status = {
            "writer": self.writer,
            "lease_token": self.lease.token,
            "updated_at": time.time(),
            "events_per_second": events_per_second,
            "lag": current_lag,
            "counters": dict(self.counters),
            "rolling": rolling,
            "cumulative": self.prequential.cumulative_values(),
            "head_version": last.number if last else None,
            "version": self.parent,
            "last_snapshot_at": last.created_at if last else None,
            "epoch": self.epoch,
            "frozen": self.frozen,
            "stream_position": sum(positions.values()) if positions else 0,
            "offsets": {tp.topic: {} for tp in positions or {}},
            "last_rollback": self.last_rollback,
        }
        for tp, position in (positions or {}).items():
            status["offsets"][tp.topic][str(tp.partition)] = position
        ttl_ms = int(max(5.0, 5 * self.settings.status_interval_seconds) * 1000)
        keys = self.store.keys
        samples, self._samples = self._samples, []
        fields = [str(x) for sample in samples for pair in sample.items() for x in pair]
        width = len(fields) // len(samples) if samples else 0
        # fenced like snapshots: a learner that lost its lease cannot mislead the monitor
        self._publish(keys=[keys.lease, keys.status, keys.history],
                      args=[self.lease.value or "", pack(status), ttl_ms, self.settings.audit_retention, width,
                            *fields])

    def _finish(self, consumer: KafkaConsumer, outputs: Outputs, positions) -> None:
        """Final snapshot (if the position moved since the last one) and status on the way out."""
        stored = self.last_snapshot.offsets if self.last_snapshot else {}
        moved = any(stored.get(tp.topic, {}).get(str(tp.partition)) != pos for tp, pos in positions.items())
        if moved and (self.last_snapshot is not None or any(self.counters.values())):
            self.snapshot(outputs, positions, consumer)
        outputs.flush()
        self.publish_status(0.0, lag(consumer, positions), positions)
