"""Bringing an active learner onto the current lineage: on activation, and after each rollback.

* **Activation** restores the head version (walking back past corrupt ones) and resumes at its offsets —
  or, when a rollback made the lineage and no learner applied it yet (its learner died), after the range
  that rollback discarded, which the rollback itself recorded (``lineage:resume``).
* **A rollback** replaces the learned state with the target's and keeps the current offsets: the events
  between the target's offsets and the current position are skipped, and recorded in the next snapshot.
  Never before the target's offsets (a manual rollback to a version ahead of the learner) nor before what
  the lineage had consumed when the rollback was made.
* **A store that lost its data** (no version, but the consumer group committed offsets) is refused.
"""

from __future__ import annotations

import logging
import time

from monitor.prequential import PrequentialMetrics
from snapshotter.connection import redact_url
from snapshotter.store import ResumePoint, VersionStore
from streaming.config import Settings
from streaming.errors import SnapshotError, StoreLostError
from streaming.learner.lineage_watch import LineageState
from streaming.learner.restore import restore_head
from streaming.learner.state import COUNTERS, LearnerState
from streaming.learner.telemetry import LearnerMetrics
from streaming.model import ModelSpec
from streaming.transport import Consumer, TopicPartition

__all__ = ["Lineage"]

log = logging.getLogger(__name__)

Skipped = dict[str, dict[str, list[int]]]


class Lineage:
    """Restores and follows the lineage of one model for its active learner."""

    def __init__(self, store: VersionStore, spec: ModelSpec, settings: Settings, telemetry: LearnerMetrics) -> None:
        self.store, self.spec, self.settings, self.telemetry = store, spec, settings, telemetry

    def _restore(self, state: LearnerState, control: LineageState, *, activation: bool) -> None:
        state.epoch, state.frozen = control.epoch, control.frozen
        restored = restore_head(self.store, self.spec, self.settings.rolling_window)
        if restored is not None:
            if activation:
                state.adopt(restored)
            else:
                state.adopt_model(restored)
            meta = restored.meta
            log.info(
                "restored version %d (events_seen=%d, epoch %d%s)",
                meta.number,
                meta.events_seen,
                state.epoch,
                ", learning frozen" if state.frozen else "",
            )
        self.telemetry.model_size(state.model.inputs, state.model.capped, restored=True)

    def _resume_point(self, epoch: int) -> ResumePoint | None:
        """The rollback record that made lineage ``epoch`` (``offsets`` consumed, ``from`` version), if any."""
        point = self.store.resume_point()
        return point if point is not None and point["epoch"] == epoch else None

    def activate(self, control: LineageState) -> LearnerState:
        """A state restored from the head, resuming exactly where it stopped (or after a discarded range)."""
        state = LearnerState.fresh(self.spec, self.settings)
        self._restore(state, control, activation=True)
        last = state.last_snapshot
        if last is None:
            return state
        state.offsets = {topic: dict(partitions) for topic, partitions in last.offsets.items()}
        if last.epoch < state.epoch:  # a rollback made this lineage and no snapshot of it records the skip yet
            point = self._resume_point(state.epoch)
            skipped: Skipped = {}
            for topic, partitions in (point["offsets"] if point else {}).items():
                for partition, position in partitions.items():
                    start = state.offsets.get(topic, {}).get(partition, 0)
                    if position > start:
                        skipped.setdefault(topic, {})[partition] = [start, position]
                        state.offsets.setdefault(topic, {})[partition] = position
            self._carry_counts_from(state, point["from"] if point else None)
            self._rolled_back(state, point["from"] if point else None, skipped, recovered=True)
            log.warning(
                "the rollback to version %d was not applied by a learner yet: resuming after the range it discarded %s",
                last.number,
                skipped,
            )
        return state

    def follow(
        self, state: LearnerState, control: LineageState, positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Apply a freeze/resume or a rollback; returns the partitions to seek (forward) and where.

        After a rollback ``state.pending_rollback`` is set: the caller snapshots at once, so the skip is
        recorded before anything else happens.
        """
        if control.frozen != state.frozen:
            state.frozen = control.frozen
            log.warning("learning %s", "frozen: scoring only" if state.frozen else "resumed")
            if not state.frozen and state.held_until is None:
                state.released = "resume"
        if not control.incident and state.watch.incident is not None and state.held_until is None:
            # closed by an operator (learning resume); while replaying a held range, its end releases it
            state.watch.accept_new_normal()
            state.released = "incident closed by an operator"
            log.warning("the data-quality incident was closed by an operator: its rates are the new normal")
        if control.epoch == state.epoch:
            return {}
        head_before = state.parent
        self._restore(state, control, activation=False)
        stored = state.last_snapshot.offsets if state.last_snapshot else {}
        point = self._resume_point(state.epoch)
        consumed = point["offsets"] if point else {}
        skipped: Skipped = {tp.topic: {} for tp in positions}
        seeks: dict[TopicPartition, int] = {}
        for tp, position in positions.items():
            start = stored.get(tp.topic, {}).get(str(tp.partition), 0)
            resume = max(position, start, consumed.get(tp.topic, {}).get(str(tp.partition), 0))
            if resume > start:
                skipped[tp.topic][str(tp.partition)] = [start, resume]
            if resume > position:
                seeks[tp] = resume
        self._rolled_back(state, head_before, skipped, recovered=False)
        log.warning(
            "rolled back to version %s (epoch %d); continuing from the current offsets", state.parent, state.epoch
        )
        return seeks

    def _carry_counts_from(self, state: LearnerState, number: int | None) -> None:
        """After a rollback no learner applied: the counters and cumulative metrics go on from the version the
        rollback left (what its learner scored before dying in no version is lost), the window restarts."""
        if number is None:
            return
        try:
            _meta, left = self.store.load(number)
            metrics = PrequentialMetrics.from_state(left.metrics, self.settings.rolling_window)
        except SnapshotError as exc:  # removed by retention, or unreadable: the target's counts it is
            log.warning("cannot carry the counts of version %d on (%s); counting from the target's", number, exc)
            return
        state.counters = {**dict.fromkeys(COUNTERS, 0), **{k: v for k, v in left.counters.items() if k in COUNTERS}}
        state.metrics = metrics
        state.metrics.restart_window()

    @staticmethod
    def _rolled_back(state: LearnerState, from_version: int | None, skipped: Skipped, *, recovered: bool) -> None:
        state.pending_rollback = {
            "from_version": from_version,
            "to_version": state.parent,
            "epoch": state.epoch,
            "skipped_offsets": skipped,
            "applied_at": time.time(),
        }
        if recovered:
            state.pending_rollback["recovered"] = True
        state.last_rollback = state.pending_rollback

    def refuse_lost_store(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Starting from nothing is right for a new model, wrong when Redis lost the versions of an old one.

        Learners commit their offsets to the model's consumer group after every snapshot (with metadata
        ``livelearn vN`` where the broker keeps it). Committed offsets but no version in Redis: Redis lost
        its data (e.g. restarted without persistence). Starting over would relearn from the beginning and
        reuse version numbers, so the learner refuses unless ``allow_empty_store`` says otherwise; then new
        versions are numbered after the last one Kafka remembers.
        """
        committed = {}
        for tp in partitions:
            mark = consumer.committed(tp, timeout_ms=10_000)
            if mark is not None and mark.offset > 0:
                committed[tp] = mark
        if not committed:
            return
        numbers = [
            int(m.metadata[len("livelearn v") :])
            for m in committed.values()
            if m.metadata and m.metadata.startswith("livelearn v") and m.metadata[11:].isdigit()
        ]
        last = f"version {max(numbers)}" if numbers else "earlier versions"
        s = self.settings
        group, where = (
            s.consumer_group_name,
            ", ".join(f"{tp.topic}[{tp.partition}]@{m.offset}" for tp, m in committed.items()),
        )
        if not s.allow_empty_store:
            raise StoreLostError(
                f"Redis at {redact_url(s.redis_url)} holds no version of model {s.model_name!r}, but Kafka group "
                f"{group!r} committed offsets for {last} ({where}): Redis lost its data. Restore it from a backup "
                "(or enable persistence), or start a new model from LIVELEARN_AUTO_OFFSET_RESET with "
                "--allow-empty-store (LIVELEARN_ALLOW_EMPTY_STORE=true)"
            )
        log.warning(
            "Redis holds no version of model %r although Kafka group %r committed offsets (%s); starting "
            "from nothing as allowed",
            s.model_name,
            group,
            where,
        )
        if numbers:
            self.store.raise_counter(max(numbers))
