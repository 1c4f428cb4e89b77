"""What an active learner writes to Redis: numbered versions (snapshots) and its status.

A snapshot first flushes the dead letters and predictions produced so far (so no offset moves past an
undelivered one), then writes the learned state with its offsets in one fenced script, then commits the
offsets to the consumer group (for lag dashboards and the lost-store check). The status, with the metric
samples recorded since the last one, is fenced by the lease the same way.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from monitor.prequential import meets_threshold
from snapshotter.codec import SnapshotState, VersionMeta
from snapshotter.lease import Lease
from snapshotter.status import LearnerStatus, StatusWriter
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.errors import LeaseLostError, SnapshotError, SnapshotFencedError, StaleLineageError
from streaming.learner.outputs import Outputs
from streaming.learner.reference_gate import ReferenceGate
from streaming.learner.restore import restore_state
from streaming.learner.state import LearnerState
from streaming.learner.telemetry import LearnerMetrics
from streaming.model import ModelSpec
from streaming.transport import Consumer, TopicPartition

__all__ = ["Checkpoints"]


def state_spec(snapshot: SnapshotState) -> ModelSpec:
    return ModelSpec.from_dict(snapshot.spec)


log = logging.getLogger(__name__)

Positions = dict[TopicPartition, int]


class Checkpoints:
    """Writes the versions and the status of one active learner."""

    def __init__(
        self,
        settings: Settings,
        store: VersionStore,
        lease: Lease,
        writer: str,
        telemetry: LearnerMetrics,
        *,
        gate: ReferenceGate | None = None,
    ) -> None:
        self.settings, self.store, self.lease, self.writer, self.telemetry = settings, store, lease, writer, telemetry
        self.gate = gate
        self.status_writer = StatusWriter(store.client, store.keys, history_maxlen=settings.audit_retention)

    def snapshot(
        self, state: LearnerState, outputs: Outputs, positions: Positions, consumer: Consumer
    ) -> VersionMeta | None:
        """Write ``state`` as a new version and commit its offsets; ``None`` when a rollback moved the lineage
        on meanwhile (the caller follows it, then snapshots). Raises :class:`LeaseLostError` when fenced."""
        t0 = time.perf_counter()
        outputs.flush()  # dead letters and predictions up to here are durable before offsets move past them
        for tp, position in positions.items():
            state.offsets.setdefault(tp.topic, {})[str(tp.partition)] = position
        rolling = state.metrics.rolling_values()
        extra: dict[str, Any] = {"dead_lettered": state.counters["dead_lettered"], "frozen": not state.learning}
        if state.pending_rollback:
            extra["rollback"] = state.pending_rollback
        stable = self.stable(state, rolling)
        if stable and self.gate is not None:
            extra["reference"] = verdict = self._judge_on_reference(state)
            stable = verdict["passed"]
        try:
            meta = self.store.write(
                state.snapshot_state(),
                writer=self.writer,
                lease_value=self.lease.value,
                offsets=state.offsets,
                parent=state.parent,
                extra=extra,
                epoch=state.epoch,
                stable=stable,
                model_events_learned=state.model.steps,
                metrics={"rolling": rolling, "cumulative": state.metrics.cumulative_values()},
                confirmed=state.confirmed,
            )
        except SnapshotFencedError as exc:
            raise LeaseLostError(str(exc)) from None
        except StaleLineageError as exc:
            log.warning("%s; following the rollback first", exc)
            return None
        state.parent, state.last_snapshot, state.pending_rollback = meta.number, meta, None
        if self.gate is not None and "reference" in extra:
            self.gate.remember(meta.number, extra["reference"]["score"])
        position = sum(sum(partitions.values()) for partitions in meta.offsets.values())
        if (
            meta.stable
            and self.settings.promotion == "guard"
            and (state.confirmed is None or position > state.confirmed)
        ):
            state.unconfirmed.append(position)  # a candidate until the data up to it is seen calm
        elapsed = time.perf_counter() - t0
        self.telemetry.snapshot_seconds.observe(elapsed)
        self.telemetry.snapshot_written(meta.created_at, meta.size_bytes, meta.number)
        self._commit(consumer, positions, meta.number)
        log.info(
            "version %d written: events_seen=%d, %.1f ms (+ %.1f ms offset commit)",
            meta.number,
            meta.events_seen,
            elapsed * 1e3,
            (time.perf_counter() - t0 - elapsed) * 1e3,
        )
        return meta

    def stable(self, state: LearnerState, rolling: dict[str, float]) -> bool:
        """Meets the threshold with enough samples (after a rollback the window restarts: only new scores),
        and learned: a version written while learning is frozen (flapping, an open incident) never is."""
        return state.learning and meets_threshold(rolling, self.settings, state.threshold.value())

    def _judge_on_reference(self, state: LearnerState) -> dict[str, Any]:
        """The reference-set gate's verdict on the live model, against the serving version's score."""
        assert self.gate is not None
        serving = self.store.serving()
        serving_score = None if serving is None else self._reference_score(serving)
        verdict = self.gate.judge(state.model, serving=serving, serving_score=serving_score)
        if not verdict["passed"]:
            self.telemetry.reference_gate_failures.inc()
            log.warning(
                "reference set: %s %.4f vs %.4f of serving version %d (tolerance %s): kept, not stable",
                verdict["metric"],
                verdict["score"],
                serving_score,
                serving,
                verdict["tolerance"],
            )
        return verdict

    def _reference_score(self, number: int) -> float | None:
        """Version ``number``'s reference score: remembered, from its metadata, or scored once."""
        assert self.gate is not None
        known = self.gate.known(number)
        if known is not None:
            return known
        try:
            meta, snapshot = self.store.load(number)
        except SnapshotError as exc:
            log.warning("cannot score serving version %d on the reference set (%s): no comparison", number, exc)
            return None
        recorded = meta.extra.get("reference") or {}
        if recorded.get("metric") == self.gate.metric and recorded.get("rows") == len(self.gate.events):
            score = float(recorded["score"])
        else:
            model, _ = restore_state(snapshot, state_spec(snapshot), self.settings.rolling_window)
            score = self.gate.score(model)
        self.gate.remember(number, score)
        return score

    def promote(self, state: LearnerState) -> None:
        """Confirm the candidates written at or before ``state.confirmed`` (promotion ``guard``)."""
        confirmed = state.confirmed
        assert confirmed is not None
        number = self.store.promote(
            lease_value=self.lease.value or "",
            epoch=state.epoch,
            confirmed=confirmed,
            actor=self.writer,
            metrics=state.confirmed_metrics,
        )
        state.unconfirmed = [p for p in state.unconfirmed if p > confirmed]
        if number:
            log.info("%d version(s) confirmed stable: the data up to stream position %d was calm", number, confirmed)

    def _commit(self, consumer: Consumer, positions: Positions, number: int) -> None:
        try:
            consumer.commit(positions, f"livelearn v{number}", wait=True)
        except Exception as exc:  # noqa: BLE001 - commits only feed lag dashboards and the lost-store check
            log.warning("offset commit after version %d failed: %s", number, exc)

    def status_document(
        self, state: LearnerState, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> LearnerStatus:
        """The learner's live figures, as the status document others read."""
        last = state.last_snapshot
        offsets: dict[str, dict[str, int]] = {}
        for tp, position in (positions or {}).items():
            offsets.setdefault(tp.topic, {})[str(tp.partition)] = position
        return LearnerStatus(
            writer=self.writer,
            lease_token=self.lease.token,
            updated_at=time.time(),
            events_per_second=events_per_second,
            lag=current_lag,
            counters=dict(state.counters),
            rolling=state.metrics.rolling_values(),
            cumulative=state.metrics.cumulative_values(),
            head_version=last.number if last else None,
            version=state.parent,
            last_snapshot_at=last.created_at if last else None,
            epoch=state.epoch,
            frozen=not state.learning,
            stream_position=sum(positions.values()) if positions else 0,
            offsets=offsets,
            last_rollback=state.last_rollback,
        )

    def publish_status(
        self, state: LearnerState, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> None:
        """Write the status and the metric samples recorded since; a no-op without the lease."""
        status = self.status_document(state, events_per_second, current_lag, positions)
        self.telemetry.set_rolling(status["rolling"])
        self.telemetry.model_size(state.model.inputs, state.model.capped)
        self.telemetry.consumer_lag.set(float("nan") if current_lag is None else current_lag)
        samples, state.samples = state.samples, []
        ttl_ms = int(max(5.0, 5 * self.settings.status_interval_seconds) * 1000)
        self.status_writer.publish(self.lease.value, status, samples, ttl_ms)
