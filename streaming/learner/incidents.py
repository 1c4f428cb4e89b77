"""The active learner acts on data-quality incidents at the exact event its watch confirmed them.

A stuck labeller makes every label 1; the model agrees within a hundred events and every accuracy-like
metric *improves*, so only the data itself gives it away. The learner's
:class:`~monitor.signals.SignalWatch` judges each block of labelled events as it is recorded, so the
decisions fall on the same events at any speed — a backlog read at full speed, a trickle, a replay:

* **incident start** (the block that confirmed it is not learned): one script
  (:meth:`snapshotter.incidents.Incidents.open`, fenced by the lease and the lineage epoch) records the
  incident, quarantines every version written after the change point, freezes learning and moves the
  lineage back to the newest stable version written at or before the change point; the learner follows at
  once (restores that version, and keeps scoring). No version written while the incident is open is stable.
* **incident end** (the rates back within their bounds for ``incident_resume_after_events``): the incident
  is closed and learning goes on from the next event. The skipped range is in the rollback's snapshot
  metadata and the ``incident_end`` audit entry.

A learner restarted from a snapshot taken before its decision replays the same events, so it decides again
at the same event; one restarted after it finds the incident open in Redis and carries on watching it.
Redis says whether an incident is open: an operator who closes it (``livelearn learning resume``) ends the
hold at once and declares the shifted rates the new normal (the watch learns a new reference).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from monitor.signals import SignalEvent
from snapshotter.control import ControlPlane
from snapshotter.incidents import NEW_NORMAL, Incidents
from snapshotter.lease import Lease
from snapshotter.status import sample_metrics
from snapshotter.store import VersionStore
from streaming.config import GuardSettings, Settings
from streaming.errors import ControlError, IncidentOpenError, NoIncidentError, StaleEpochError
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState
from streaming.transport import Record

__all__ = ["IncidentActions"]

log = logging.getLogger(__name__)


class IncidentActions:
    """Records the incidents an active learner's watch reports, and syncs the watch with Redis."""

    def __init__(
        self,
        guard: GuardSettings | Settings,
        store: VersionStore,
        lease: Lease,
        writer: str,
        telemetry: LearnerMetrics,
    ) -> None:
        self.guard, self.store, self.lease, self.telemetry = GuardSettings.of(guard), store, lease, telemetry
        self.actor = f"learner {writer}"
        self.incidents = Incidents(store, ControlPlane(store))

    def sync(self, state: LearnerState) -> None:
        """On activation: an incident open in Redis is one the watch keeps watching (it may have been restored
        from a version written before the incident).

        A version written while learning was held (an open incident, a freeze) whose hold was released since,
        at a stream position past the version's: the events up to that position are replayed held, as the
        learner before this one held them — an incident's end is then decided again by the watch on the same
        events, an operator's resume takes effect at the same position. So a learner killed at any moment
        gives the model an uninterrupted one would. Released before the version (or never recorded): nothing
        holds."""
        record = self.store.incident()
        if record is not None:
            if state.watch.incident is None:
                state.watch.open_incident(
                    record.get("signal", "label_rate"),
                    int(record.get("change_point", 0)),
                    scope=record.get("scope", ""),
                )
                log.warning(
                    "data-quality incident %s is open: learning stays held until the data is back", record["id"]
                )
            with contextlib.suppress(NoIncidentError):  # (closed meanwhile: the next check follows that)
                # held from here: the incident's range starts here at the latest
                self.incidents.hold_from(int(record["id"]), state.offsets, lease_value=self.lease.value or "")
        else:
            last = state.last_snapshot
            held = state.watch.incident is not None or bool(last is not None and last.extra.get("frozen"))
            position = sum(sum(partitions.values()) for partitions in state.offsets.values())
            released = self.incidents.released() if held else None
            if released is not None and released > position:
                state.held_until = released
                offsets = self.incidents.released_offsets()
                if offsets is not None:  # each partition held up to its own release, in whatever order they come
                    state.held_offsets = {
                        (topic, int(partition)): offset
                        for topic, parts in offsets.items()
                        for partition, offset in parts.items()
                    }
                log.warning(
                    "restored from a version written while learning was held: the events up to stream position %d "
                    "are replayed held, as they were (learning was released there)",
                    released,
                )
            elif state.watch.incident is not None:  # closed since that snapshot, before it (or not recorded)
                state.watch.accept_new_normal()
        candidates = self.store.candidates()
        state.unconfirmed = sorted(candidates.values())

    def act(self, state: LearnerState, consumed: dict[str, dict[str, int]], confirmed_at: Record | None = None) -> None:
        """Record what the watch reported (``state.incident_events``); ``consumed``: the current positions;
        ``confirmed_at``: the record whose metric sample reported it (an incident's start: its event is the first
        one not learned)."""
        events, state.incident_events = state.incident_events, []
        for event, sample in events:
            metrics: dict[str, Any] = {**sample_metrics(sample), "signal": event.signal, "value": event.value}
            if event.reference is not None:
                metrics["reference"] = event.reference
            if event.kind == "incident_start":
                held_from = consumed
                if confirmed_at is not None and state.join is None:  # (with the join: the label's event is older)
                    held_from = {topic: dict(parts) for topic, parts in consumed.items()}
                    held_from.setdefault(confirmed_at.topic, {})[str(confirmed_at.partition)] = confirmed_at.offset
                self._open(state, event, metrics, consumed, held_from)
            else:
                self._close(event, metrics, consumed)

    def _open(
        self,
        state: LearnerState,
        event: SignalEvent,
        metrics: dict[str, Any],
        consumed: dict[str, dict[str, int]],
        held_from: dict[str, dict[str, int]],
    ) -> None:
        assert event.change_point is not None
        try:
            opened = self.incidents.open(
                signal=event.signal,
                change_point=event.change_point,
                position=event.position,
                actor=self.actor,
                reason=event.reason,
                metrics=metrics,
                expected_epoch=None,  # the learner's own lineage: the lease fences it
                consumed=consumed,
                counters=dict(state.counters),  # at exactly those positions: a successor counts on from them
                fallback=self.guard.fallback_version,
                lease_value=self.lease.value,
                scope=event.scope,
                held_from=held_from,
            )
        except IncidentOpenError as exc:  # decided again after a restart: it is open already
            log.info("%s", exc)
            return
        except (StaleEpochError, ControlError) as exc:
            log.error("cannot record the data-quality incident (%s); learning stays held until the data is back", exc)
            return
        self.telemetry.incidents.inc()
        log.error(
            "data-quality incident %d at stream position %d: %s; learning held, versions %s quarantined, lineage "
            "back to %s",
            opened.id,
            event.position,
            event.reason,
            opened.quarantined or "none",
            opened.target or "- (no stable version before the shift: an operator is needed)",
        )

    def record_release(self, offsets: dict[str, dict[str, int]], cause: str) -> None:
        """An operator's resume took effect at ``offsets`` (nothing after them learned yet): recorded, so a
        learner restored from a version written while held replays up to there held, and an incident the operator
        closed ends its range there."""
        position = sum(sum(partitions.values()) for partitions in offsets.values())
        self.incidents.release(
            position=position, cause=cause, actor=self.actor, lease_value=self.lease.value or "", offsets=offsets
        )

    def settle_release(self, state: LearnerState, offsets: dict[str, dict[str, int]]) -> None:
        """On activation, at the offsets this learner starts from: an incident an operator closed whose release no
        learner recorded (the one before this died before it went on learning) ends here, where learning goes on,
        unless something still holds it (then the release is recorded when that ends)."""
        if state.learning and self.incidents.pending_release() is not None:
            self.record_release(offsets, NEW_NORMAL)

    def _close(self, event: SignalEvent, metrics: dict[str, Any], consumed: dict[str, dict[str, int]]) -> None:
        record = self.store.incident()
        if record is None:
            return
        try:
            self.incidents.close(
                int(record["id"]),
                actor=self.actor,
                reason=event.reason,
                metrics=metrics,
                position=event.position,
                offsets=consumed,  # at the event that ended it: the end of its range
                lease_value=self.lease.value,  # a learner deposed meanwhile closes nothing
            )
        except NoIncidentError as exc:
            log.info("the incident was closed already: %s", exc)
            return
        log.warning(
            "data-quality incident %s over at stream position %d: %s", record["id"], event.position, event.reason
        )
