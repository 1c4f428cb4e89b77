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
from kafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY, CollectorRegistry

from monitor.prequential import PrequentialMetrics, meets_threshold
from monitor.telemetry import LearnerMetrics
from snapshotter.codec import SnapshotState, VersionMeta, pack
from snapshotter.connection import redact_url
from snapshotter.lease import Lease
from snapshotter.restore import restore_head
from snapshotter.state import dump_metrics_state, dump_model_state
from snapshotter.store import VersionStore, connect_settings
from streaming.config import Settings
from streaming.control_watch import ControlState, ControlWatch
from streaming.errors import ConnectionFailedError, EventError, LeaseLostError, SnapshotFencedError, StaleLineageError
from streaming.events import EventLimits, decode_event
from streaming.kafka import lag, make_consumer, make_producer, topic_partitions
from streaming.model import ModelSpec, OnlineModel
from streaming.outputs import Outputs

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
        self.limits = EventLimits(
            settings.max_event_bytes, settings.max_features, settings.max_string_length, settings.max_abs_value
        )
        self.telemetry = LearnerMetrics(registry, settings.model_name)
        self._publish = self.redis.register_script(_PUBLISH_STATUS)
        self._stop = threading.Event()
        self._reset_state()

    # -- state ----------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.model = OnlineModel(self.spec)
        self.prequential = PrequentialMetrics(self.settings.rolling_window)
        self.counters = {"events_seen": 0, "events_learned": 0, "dead_lettered": 0}
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
        """Wait for the lease, then learn until :meth:`stop` (or, optionally, until caught up)."""
        try:
            self._run(until_caught_up)
        except redis.RedisError as exc:
            raise ConnectionFailedError(
                f"lost Redis at {redact_url(self.settings.redis_url)} ({exc}); the newest snapshot is safe, "
                "restart the learner once Redis is back"
            ) from None
        finally:
            with contextlib.suppress(redis.RedisError):
                self.redis.zrem(self.store.keys.learners, self.writer)

    def _run(self, until_caught_up: bool) -> None:
        standby_logged = False
        while not self._stop.is_set():
            if not self.lease.acquire():
                self.check_in()
                if not standby_logged:
                    log.info("standby: model %r is held by %s", self.settings.model_name, self.lease.current_holder())
                    standby_logged = True
                self._stop.wait(min(1.0, self.settings.lease_ttl_seconds / 4))
                continue
            standby_logged = False
            log.info("active: %s holds the lease of model %r (token %s)", self.writer, self.settings.model_name,
                     self.lease.token)
            self.telemetry.lease_held.set(1)
            try:
                self._run_active(until_caught_up)
                return
            except LeaseLostError as exc:
                log.warning("lease lost, back to standby: %s", exc)
            finally:
                self.telemetry.lease_held.set(0)

    def check_in(self) -> None:
        """Record that this learner is alive (active or standby) for operators, views and readiness checks."""
        now = time.time()
        keys = self.store.keys
        self.redis.pipeline().zadd(keys.learners, {self.writer: now}).zremrangebyscore(
            keys.learners, "-inf", now - 3600).execute()

    def _run_active(self, until_caught_up: bool) -> None:
        self._reset_state()
        watch = ControlWatch(self.redis, self.store.keys)
        self._load_lineage(watch.read())
        if self.last_snapshot is not None:  # resume exactly where the restored version stopped
            self.offsets = {t: dict(p) for t, p in self.last_snapshot.offsets.items()}
        consumer = make_consumer(self.settings)
        producer = make_producer(self.settings, linger_ms=20,  # a dead letter copies events up to the limit
                                 max_request_size=max(1_048_576, self.settings.max_event_bytes) + 65_536)
        try:
            positions = self._assign(consumer)
            if not self.lease.renew():  # creating the clients may have taken a while
                raise LeaseLostError(f"lease of model {self.settings.model_name!r} expired while starting")
            outputs = Outputs(producer, self.settings, self.telemetry)
            self._loop(consumer, outputs, positions, watch, until_caught_up)
            self._finish(consumer, outputs, positions)
        finally:
            watch.close()
            consumer.close(autocommit=False, timeout_ms=5000)
            producer.close(timeout=5)
            self.lease.release()

    def _load_lineage(self, control: ControlState) -> None:
        """Restore the head version of the current lineage (on activation, and after a rollback)."""
        self.epoch, self.frozen = control.epoch, control.frozen
        restored = restore_head(self.store, self.spec, self.settings.rolling_window)
        if restored is not None:
            self.model, self.prequential, self.counters, meta = restored
            self.parent = meta.number
            self.last_snapshot = meta
            log.info("restored version %d (events_seen=%d, epoch %d%s)", meta.number, meta.events_seen,
                     self.epoch, ", learning frozen" if self.frozen else "")

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
        skipped = {tp.topic: {} for tp in positions}
        for tp, position in positions.items():
            start = stored.get(tp.topic, {}).get(str(tp.partition), 0)
            if position > start:
                skipped[tp.topic][str(tp.partition)] = [start, position]
            elif position < start:  # a version ahead of us (manual --to N): never learn an event twice
                consumer.seek(tp, start)
                positions[tp] = start
        self._pending_rollback = {"from_version": head_before, "to_version": self.parent, "epoch": self.epoch,
                                  "skipped_offsets": skipped, "applied_at": time.time()}
        self.last_rollback = self._pending_rollback
        self.counters["scored_since_rollback"] = 0  # its restored window must not make new versions "stable"
        log.warning("rolled back to version %s (epoch %d); continuing from the current offsets", self.parent,
                    self.epoch)
        self.snapshot(outputs, positions, consumer)  # make the skip durable before anything else happens

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
            current_lag = lag(consumer, positions)
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
        t0 = time.perf_counter()
        p = self.model.predict_proba_one(event.features)
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
            if not self.frozen:
                t1 = time.perf_counter()
                self.model.learn_one(event.features, event.label)
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
        state = SnapshotState(
            spec=self.spec.to_dict(),
            model=dump_model_state(self.model),
            metrics=dump_metrics_state(self.prequential),
            counters=dict(self.counters),
        )
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

    def _record_sample(self, positions: dict[TopicPartition, int]) -> None:
        """Keep the rolling metrics at this exact event for the history stream (the monitor judges each one).

        Samples fall on every ``history_every_events``-th labelled event, so the monitor sees the same
        sequence whatever the event rate; a replay after a crash records the same samples again (same
        ``scored`` count), which the monitor recognises and skips.
        """
        self._samples.append({"time": time.time(), "epoch": self.epoch, "version": self.parent or 0,
                              "scored": self.prequential.samples, "events_seen": self.counters["events_seen"],
                              "stream_position": sum(positions.values()), **self.prequential.rolling_values()})

    def _stable(self, rolling: dict[str, float]) -> bool:
        """Meets the threshold with enough samples — counting, after a rollback, only events scored since."""
        since = self.counters.get("scored_since_rollback")
        return meets_threshold(rolling, self.settings) and (since is None or since >= self.settings.monitor_min_samples)

    def _commit(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int], number: int) -> None:
        try:
            consumer.commit({tp: OffsetAndMetadata(pos, f"livelearn v{number}", -1) for tp, pos in positions.items()})
        except Exception as exc:  # commits only feed lag dashboards; never stop learning for them
            log.warning("offset commit after version %d failed: %s", number, exc)

    def publish_status(self, events_per_second: float, current_lag: int | None,
                       positions: dict[TopicPartition, int] | None = None) -> None:
        """Write this learner's live figures to Redis (read by `livelearn up`, the monitor, the API)."""
        rolling = self.prequential.rolling_values()
        self.telemetry.set_rolling(rolling)
        if current_lag is not None:
            self.telemetry.consumer_lag.set(current_lag)
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
            "last_rollback": self.last_rollback,
        }
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
