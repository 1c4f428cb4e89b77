"""Bringing an active learner onto the current lineage: on activation, and after each rollback.

* **Activation** restores the head version (walking back past corrupt ones) and resumes at its offsets —
  or, when a rollback made the lineage and no learner applied it yet (its learner died), after the range
  that rollback discarded, which the rollback itself recorded (``lineage:resume``).
* **A rollback** replaces the learned state with the target's and keeps the current offsets: the events
  between the target's offsets and the current position are skipped, and recorded in the next snapshot.
  Never before the target's offsets (a manual rollback to a version ahead of the learner) nor before what
  the lineage had consumed when the rollback was made.
* **A store that lost its data** (no version, but the consumer group committed offsets) is refused — or, when
  allowed, started over with version numbers above every one Kafka recorded (:mod:`~streaming.learner.numbering`).

**Counters across a rollback no learner applied.** The stream counters (``events_seen``, ``events_learned``,
``dead_lettered``, ``duplicates``) count every event once across rollbacks, as a learner that applies a rollback
keeps its own. When the learner dies first, its successor takes them from the rollback's record (``counters``:
those of the abandoned lineage at exactly the offsets it skips to — the learner's own for an incident, else its
last status, else its head version's; :meth:`~snapshotter.control.ControlPlane.consumed`), so the events the dead
learner scored after its last version are counted too. What stays approximate: the cumulative metrics go on from
the version the rollback left (a status holds their values, not their state), so they miss the scores made after
it; and without such a record (rollbacks made before it existed, sources that disagree — see ``consumed``) the
counters go on from that version as well. A rollback judged by the monitor on a sample newer than any surviving
status records only ``events_seen`` (what a sample holds); the other counters then go on from that version.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from monitor.prequential import PrequentialMetrics
from snapshotter.connection import redact_url
from snapshotter.incidents import NEW_NORMAL
from snapshotter.store import ResumePoint, VersionStore
from streaming.config import ChallengerConfig, Settings, parse_challenger
from streaming.errors import SnapshotError, StoreLostError
from streaming.learner.analysis import AutoPolicy
from streaming.learner.lineage_watch import LineageState
from streaming.learner.numbering import UNRECORDED, committed_number, last_recorded
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.restore import restore_head
from streaming.learner.state import COUNTERS, LearnerState
from streaming.model import ModelSpec
from streaming.transport import Consumer, TopicPartition

__all__ = ["Lineage"]

log = logging.getLogger(__name__)

Skipped = dict[str, dict[str, list[int]]]


class Lineage:
    """Restores and follows the lineage of one model for its active learner."""

    def __init__(self, store: VersionStore, spec: ModelSpec, settings: Settings, telemetry: LearnerMetrics) -> None:
        self.store, self.spec, self.settings, self.telemetry = store, spec, settings, telemetry
        self._refused: set[str] = set()  # declarations and aliases logged as unusable once
        self.auto = AutoPolicy(store, settings.arms)  # the auto policy's promotions and canary steps

    def _restore(self, state: LearnerState, control: LineageState, *, activation: bool) -> None:
        state.epoch, state.frozen = control.epoch, control.frozen
        restored = restore_head(self.store, self.spec, self.settings.rolling_window)
        if restored is not None:
            if activation:
                if state.join is None:
                    self._warn_join_off()
                state.adopt(restored, self._join_state(restored.meta.number) if state.join is not None else None)
            else:
                state.adopt_model(restored)
                state.watch.restart_odds(warm_up=False)  # the label-odds CUSUMs judge the older model from 0
            meta = restored.meta
            log.info(
                "restored version %d (events_seen=%d, epoch %d%s)",
                meta.number,
                meta.events_seen,
                state.epoch,
                ", learning frozen" if state.frozen else "",
            )
        self.telemetry.model_size(state.model.inputs, state.model.capped, restored=True)

    def _warn_join_off(self) -> None:
        """The label join is off now, but the last learner waited for labels: its waiting events are never learned
        (turned on again before more versions are written, it goes on with them)."""
        try:
            stored = self.store.join_state()
        except SnapshotError:
            return
        if stored is not None and stored[1].get("pending"):
            log.warning(
                "the label join is off (LIVELEARN_LABEL_WAIT unset) but %d events scored by version %d's learner wait "
                "for their labels: they will not be learned, and their labels on the events topic are dead-lettered",
                len(stored[1]["pending"]),
                stored[0],
            )

    def _join_state(self, restored: int) -> dict[str, Any] | None:
        """The label join to go on with from version ``restored``: the one stored with the newest version written
        — the head's own, or, after a rollback no learner applied, that of the abandoned lineage's newest version,
        whose offsets the rollback's record resumes after (the records between are skipped: their events never
        wait, their labels are held and expire). Restored past an unreadable head (an older version), the join of
        that version is not stored: the join starts empty (logged)."""
        try:
            stored = self.store.join_state()
        except SnapshotError as exc:
            log.warning("the label join cannot be read (%s): it starts empty", exc)
            return None
        head = self.store.head()
        if stored is None:
            if head is not None:
                log.warning("no label join is stored with version %s: it starts empty", head)
            return None
        number, join = stored
        if restored != head:
            log.warning(
                "restored version %d, not the head %s: its label join is not stored (only the newest is); the join "
                "starts empty — labels for events scored before it count as held, then expire",
                restored,
                head,
            )
            return None
        if number != restored:
            log.info("the label join of version %d goes on from the rollback to version %d", number, restored)
        return join

    def version_model(self, number: int) -> tuple[ModelSpec, dict[str, Any]]:
        """Stored version ``number``'s spec and model state (a challenger declared ``start=version:N`` starts from it);
        a :class:`~streaming.errors.SnapshotError` when it is missing or unreadable."""
        _meta, snapshot = self.store.load(number, packed_weights=True)
        return ModelSpec.from_dict(snapshot.spec), snapshot.model

    def _resume_point(self, epoch: int) -> ResumePoint | None:
        """The rollback record that made lineage ``epoch`` (``offsets`` consumed, ``from`` version), if any."""
        point = self.store.resume_point()
        return point if point is not None and point["epoch"] == epoch else None

    def activate(self, control: LineageState) -> LearnerState:
        """A state restored from the head, resuming exactly where it stopped (or after a discarded range)."""
        state = LearnerState.fresh(self.spec, self.settings)
        state.load_version = self.version_model
        state.arm_configs = self._declared(control)
        self._restore(state, control, activation=True)
        self.follow_arms(state, control)  # a promotion decided while no learner was active: applied now
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
            self._carry_counts(state, point)
            self._rolled_back(state, point["from"] if point else None, skipped, recovered=True)
            log.warning(
                "the rollback to version %d was not applied by a learner yet: resuming after the range it discarded %s",
                last.number,
                skipped,
            )
        return state

    def _declared(self, control: LineageState) -> tuple[ChallengerConfig, ...] | None:
        """The challengers declared at run time (``None``: the settings'), an unreadable declaration left out (logged
        once: ``livelearn challengers`` checks them, so only a hand-written one can be)."""
        if control.arms is None:
            return None
        configs = []
        for text in control.arms:
            try:
                configs.append(parse_challenger(text))
            except ValueError as exc:
                if text not in self._refused:
                    self._refused.add(text)
                    log.error("a challenger declared at run time is left out: %s", exc)
        return tuple(configs)

    def follow_arms(self, state: LearnerState, control: LineageState) -> bool:
        """Apply the challengers declared at run time, the end of a former champion's cool-down and the ``champion``
        alias; ``True`` when a promotion was applied (the caller snapshots at once: the new champion's first version
        is written before anything else)."""
        configs = self._declared(control)
        if configs != state.arm_configs:
            state.declare_arms(configs)
            log.warning("challengers now: %s", ", ".join(state.arms.names) if state.arms else "none")
        self._retire(state)
        alias = control.champion
        if alias is None or alias == state.arm_name:
            alias = self.auto.decide(state)
        return self._apply_champion(state, alias)

    def follow_own(self, state: LearnerState) -> bool:
        """Between two reads of the lineage, what the learner decides from its own counts (they move with every
        label): a former champion's cool-down ended, the auto policy's promotion; ``True`` when it promoted (as
        :meth:`follow_arms`)."""
        self._retire(state)
        return state.arms is not None and self._apply_champion(state, self.auto.decide(state))

    def _retire(self, state: LearnerState) -> None:
        if state.arms is not None:
            for name in state.arms.retire():
                log.info("the former champion %s ends its cool-down: it no longer learns in shadow", name)
            if not state.arms.arms:
                state.arms = None

    def _apply_champion(self, state: LearnerState, alias: str | None) -> bool:
        if alias is None or alias == state.arm_name:
            return False
        if state.arms is None or alias not in state.arms.names:
            if alias not in self._refused:
                self._refused.add(alias)
                log.error(
                    "the champion alias names %s, not a challenger of this learner (%s): the champion stays %s",
                    alias,
                    ", ".join(state.arms.names) if state.arms else "none",
                    state.arm_name,
                )
            return False
        former = state.arm_name
        state.promote(alias, self.settings.arms.cooldown_labels)
        log.warning("challenger %s is the champion now; %s learns on in shadow for its cool-down", alias, former)
        return True

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
            state.metrics.restart_window()  # judged from here on: the window held the incident's own labels
            state.released = NEW_NORMAL
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
        behind = True  # the rollback's record is at or past this learner's position on every partition
        for tp, position in positions.items():
            start = stored.get(tp.topic, {}).get(str(tp.partition), 0)
            recorded = consumed.get(tp.topic, {}).get(str(tp.partition), 0)
            behind = behind and recorded >= position
            resume = max(position, start, recorded)
            if resume > start:
                skipped[tp.topic][str(tp.partition)] = [start, resume]
            if resume > position:
                seeks[tp] = resume
        if seeks and behind and point is not None and point["counters"]:
            # skipping forward past events a dead predecessor scored (its status, recorded by the rollback): they
            # were counted by it, up to exactly there
            state.counters.update({k: int(v) for k, v in point["counters"].items() if k in COUNTERS})
        self._rolled_back(state, head_before, skipped, recovered=False)
        log.warning(
            "rolled back to version %s (epoch %d); continuing from the current offsets", state.parent, state.epoch
        )
        return seeks

    def _carry_counts(self, state: LearnerState, point: ResumePoint | None) -> None:
        """After a rollback no learner applied: the counters go on from the abandoned lineage's, at the offsets the
        rollback recorded when it recorded them (``point["counters"]``), else from the version it left; the
        cumulative metrics from that version (what its learner scored after it is not in them); the window
        restarts."""
        if point is None:
            return
        number, recorded = point["from"], point["counters"] or {}
        if number is not None:
            try:
                _meta, left = self.store.load(number)
                metrics = PrequentialMetrics.from_state(left.metrics, self.settings.rolling_window)
            except SnapshotError as exc:  # removed by retention, or unreadable: the target's metrics it is
                log.warning(
                    "cannot carry the cumulative metrics%s of version %d on (%s): the target's go on",
                    "" if recorded else " and the counts",
                    number,
                    exc,
                )
            else:
                counters = {k: v for k, v in left.counters.items() if k in COUNTERS}
                state.counters = {**dict.fromkeys(COUNTERS, 0), **counters}
                state.metrics = metrics
                state.metrics.restart_window()
        if recorded:
            state.counters.update({k: int(v) for k, v in recorded.items() if k in COUNTERS})

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
        reuse version numbers, so the learner refuses unless ``allow_empty_store`` says otherwise. Then new
        versions are numbered above every number Kafka recorded (commit metadata, the last predictions and dead
        letters: :mod:`~streaming.learner.numbering`); when it recorded none, the numbers may repeat those of the
        lost store, which the learner logs and audits. Either way the start-over is one audited script
        (``store_lost``).
        """
        committed = {}
        for tp in partitions:
            mark = consumer.committed(tp, timeout_ms=10_000)
            if mark is not None and mark.offset > 0:
                committed[tp] = mark
        if not committed:
            return
        numbers = [n for n in (committed_number(m.metadata) for m in committed.values()) if n is not None]
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
        recorded = last_recorded(s, committed.values())
        after = recorded.numbered_after()
        if after is None:
            reason = (
                "Redis lost its data; started over as allowed. Kafka recorded no version number "
                f"({recorded.describe()}): new version numbers may repeat those of the lost store"
            )
        else:
            reason = (
                f"Redis lost its data; started over as allowed. New versions are numbered after {after}: the highest "
                f"number Kafka recorded, {recorded.highest} ({recorded.describe()}), plus {UNRECORDED} that may have "
                "been handed out since"
            )
            if recorded.commits is None:  # outputs only: a stretch without any (duplicates) may hold more versions
                reason += (
                    f"; no commit metadata named a version (this broker keeps none, or none was written), so more "
                    f"than {UNRECORDED} versions written after the last output would repeat"
                )
        self.store.start_over(
            after=after,
            actor=f"{socket.gethostname()}:{os.getpid()}",
            reason=reason,
            recorded=recorded.describe(),
            may_repeat=after is None or recorded.commits is None,
        )
        log.warning(
            "Redis holds no version of model %r although Kafka group %r committed offsets (%s): %s",
            s.model_name,
            group,
            where,
            reason,
        )
