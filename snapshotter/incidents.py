"""Data-quality incidents: open one (quarantine, freeze, roll back to before the shift) and close it, atomically.

When the monitor confirms that the data went wrong — e.g. a stuck labeller made every label 1 from some
point on — it calls :meth:`Incidents.open` with the change point (the stream position where the shift
began). One script then records the incident, **quarantines** every version written after the change point
(they leave the stable set for good: no rollback or unpin goes back to them; an operator can still pin one
with force), **freezes** learning (scoring goes on) and **rolls the lineage back** to the newest stable
version written before the change point. While the incident is open no version is stable. When the data
is back to normal, :meth:`Incidents.close` records the end and resumes learning.

Each incident's **range** — the offsets of the events topic the lineage did not learn because of it — is kept for
good (``incident_ranges``; :meth:`Incidents.range`): from its target's offsets (the lineage went back there; with no
target, from where it held) to where learning went on, recorded by the close that the learner's watch made, or, for
an operator's close, by the active learner as it goes on learning (:meth:`Incidents.release`). ``livelearn rebuild
--exclude incident:N`` skips it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from snapshotter.codec import VersionMeta, pack, unpack
from snapshotter.control import ControlPlane, Offsets, run_script
from snapshotter.scripts import CLOSE_INCIDENT, OPEN_INCIDENT, RELEASE, WIDEN_INCIDENT, bind, refusal_error
from snapshotter.store import VersionStore
from streaming.errors import HeadMovedError, IncidentRangeError, ScriptRefusal

__all__ = ["NEW_NORMAL", "IncidentRange", "Incidents", "OpenedIncident", "position_of"]

#: The cause recorded when learning goes on after an operator closed an incident (its shifted data the new normal);
#: the monitor gives the model a cooldown's worth of events from there to learn it.
NEW_NORMAL = "incident closed by an operator"


def position_of(meta: VersionMeta) -> int:
    """A version's stream position: the sum of its offsets (what metric samples call ``stream_position``)."""
    return meta.position


@dataclasses.dataclass(frozen=True)
class OpenedIncident:
    id: int
    target: int | None  # the version the lineage went back to (None: no stable version before the shift)
    quarantined: list[int]


@dataclasses.dataclass(frozen=True)
class IncidentRange:
    """The offsets the lineage did not learn because of one incident: per topic and partition, ``start`` (included)
    to ``end`` (not included).

    >>> IncidentRange(3, {"shop": {"0": 1200}}, {"shop": {"0": 2750}}).spans()
    [('shop', 0, 1200, 2749)]
    """

    incident: int
    start: Offsets
    end: Offsets

    def spans(self) -> list[tuple[str, int, int, int]]:
        """``(topic, partition, first, last)`` (both included) of every partition where it skipped something."""
        out = []
        for topic, parts in sorted(self.end.items()):
            for partition, end in sorted(parts.items(), key=lambda item: int(item[0])):
                first = int(self.start.get(topic, {}).get(partition, 0))
                if end > first:
                    out.append((topic, int(partition), first, int(end) - 1))
        return out


class Incidents:
    """Open and close the data-quality incidents of one model."""

    def __init__(self, store: VersionStore, control: ControlPlane) -> None:
        self.store, self.control, self.keys = store, control, store.keys
        self._open = bind(store.client, OPEN_INCIDENT)
        self._close = bind(store.client, CLOSE_INCIDENT)
        self._release = bind(store.client, RELEASE)
        self._widen = bind(store.client, WIDEN_INCIDENT)

    def open(
        self,
        *,
        signal: str,
        change_point: int,
        position: int,
        actor: str,
        reason: str,
        metrics: dict[str, Any],
        expected_epoch: int | None,
        consumed: dict[str, dict[str, int]] | None = None,
        counters: dict[str, int] | None = None,
        fallback: int | None = None,
        lease_value: str | None = None,
        scope: str = "",
        held_from: Offsets | None = None,
    ) -> OpenedIncident:
        """Record the incident, quarantine the versions written after ``change_point``, freeze learning, and roll
        back to the newest stable version written at or before it (else ``fallback``, else none). With
        ``lease_value`` only the holder of the writer lease may (the active learner that saw the shift).
        ``consumed``: the positions consumed, with the stream ``counters`` there (recorded with the rollback:
        :meth:`ControlPlane.consumed`); ``scope``: what the signal watched (``""``: the stream; a label-odds incident:
        ``<group>:up`` or ``<group>:down``), kept with the record so a restarted watch judges its end alike;
        ``held_from``: the first offsets the learner did not learn (the event that confirmed it), the start of the
        incident's range when there is no version to go back to (default: the consumed offsets)."""
        k = self.keys
        for _attempt in range(10):
            head = self.store.head()
            versions = self.store.list()
            stable = set(self.store.stable_numbers())
            quarantine = [m.number for m in versions if position_of(m) > change_point]
            before = [m.number for m in versions if m.number in stable and position_of(m) <= change_point]
            target = before[-1] if before else fallback
            point = self.control.consumed(head, consumed, counters)
            start = held_from or point.offsets
            if target is not None:  # the lineage goes back there: it learns nothing from there on
                known = {m.number: m for m in versions}
                start = (known[target] if target in known else self.store.meta(target)).offsets
            try:
                incident_id = run_script(
                    self._open,
                    k,
                    maxlen=self.store.audit_retention,
                    expected_epoch=expected_epoch,
                    actor=actor,
                    reason=reason,
                    metrics=json.dumps(metrics),
                    now=time.time(),
                    channel=k.channel,
                    signal=signal,
                    change_point=change_point,
                    position=position,
                    target=target,
                    target_meta=None if target is None else k.meta(target),
                    head=head,
                    resume_offsets=pack(point.offsets),
                    lease_value=lease_value,
                    resume_counters=point.packed_counters(),
                    scope=scope,
                    held_from=pack(start) if start else "",
                    quarantine=quarantine,
                )
            except HeadMovedError:
                continue  # a snapshot landed meanwhile: it may need quarantining too
            return OpenedIncident(int(incident_id), target, quarantine)
        raise HeadMovedError("the head kept moving while opening the incident; try again")

    def close(
        self,
        incident_id: int,
        *,
        actor: str,
        reason: str,
        metrics: dict[str, Any],
        position: int | None = None,
        offsets: Offsets | None = None,
        lease_value: str | None = None,
    ) -> None:
        """End incident ``incident_id`` and resume learning if it froze it; ``position``: the stream position
        where learning goes on (recorded as the release: see :meth:`release`), ``offsets``: there, per topic and
        partition (the end of its range; without them the active learner records it as it goes on learning);
        ``lease_value``: the closing learner's lease (refused, :class:`LeaseLostError`, when it no longer holds
        it)."""
        run_script(
            self._close,
            self.keys,
            maxlen=self.store.audit_retention,
            incident_id=incident_id,
            actor=actor,
            reason=reason,
            metrics=json.dumps(metrics),
            now=time.time(),
            channel=self.keys.channel,
            position=position,
            offsets=pack(offsets) if offsets else "",
            lease_value=lease_value or "",
        )

    def release(
        self, *, position: int, cause: str, actor: str, lease_value: str, offsets: Offsets | None = None
    ) -> None:
        """Record that the active learner (``lease_value``) went on learning at stream ``position`` (``offsets``
        per topic and partition) after a hold an operator lifted (``cause``); an incident the operator closed ends
        its range there."""
        try:
            self._release(
                self.keys,
                lease_value=lease_value,
                position=position,
                cause=cause,
                actor=actor,
                now=time.time(),
                offsets=pack(offsets) if offsets else "",
            )
        except ScriptRefusal as refusal:  # FENCED: a LeaseLostError
            raise refusal_error(refusal, refusal.detail) from None

    def released(self) -> int | None:
        """The stream position where learning was last released after a hold (None: never recorded)."""
        value = self.store.client.hget(self.keys.released, "position")
        return int(value) if value not in (None, b"", "") else None

    def hold_from(self, incident_id: int, offsets: Offsets, *, lease_value: str) -> None:
        """The active learner (``lease_value``) holds open incident ``incident_id`` from ``offsets``: where they are
        before its range's start (on any partition), the range starts there (a learner restored from a version
        written before the incident opened learns nothing from there on). Refused (:class:`NoIncidentError`) when
        the incident is no longer open; nothing when its start was never recorded."""
        raw = self.store.client.hget(self.keys.incident_ranges, f"{incident_id}:from")
        if not isinstance(raw, bytes) or not raw:
            return  # no start recorded (an incident from before ranges were kept): it stays not known
        recorded: Offsets = unpack(raw)
        start = {topic: dict(parts) for topic, parts in recorded.items()}
        for topic, parts in offsets.items():
            for partition, offset in parts.items():
                held = start.setdefault(topic, {})
                held[partition] = min(offset, held.get(partition, offset))
        if start == recorded:
            return
        run_script(self._widen, self.keys, lease_value=lease_value, incident_id=incident_id, held_from=pack(start))

    def released_offsets(self) -> Offsets | None:
        """Where learning was last released after a hold, per topic and partition (None: recorded as a stream
        position only, or never)."""
        raw = self.store.client.hget(self.keys.released, "offsets")
        return unpack(raw) if isinstance(raw, bytes) and raw else None

    def pending_release(self) -> int | None:
        """The incident an operator closed whose end (where learning went on) no learner has recorded yet."""
        value = self.store.client.hget(self.keys.incident_ranges, "pending")
        return int(value) if value not in (None, b"", "") else None

    def range(self, incident_id: int) -> IncidentRange:
        """The offsets the lineage did not learn because of incident ``incident_id``; raises
        :class:`IncidentRangeError` (a one-line reason) when that is not known: no such incident, still open, or a
        start or end that was not recorded (an incident from before ranges were kept, or its learner died before it
        went on learning)."""
        raw = [self.store.client.hget(self.keys.incident_ranges, f"{incident_id}:{end}") for end in ("from", "to")]
        start, end = (unpack(value) if isinstance(value, bytes) and value else None for value in raw)
        last = int(self.store.client.get(self.keys.incident_counter) or 0)
        model = self.keys.model_name
        if not 1 <= incident_id <= last:
            raise IncidentRangeError(f"model {model!r} has no incident {incident_id} (its last is {last or 'none'})")
        open_now = self.store.incident()
        if open_now is not None and int(open_now.get("id", 0)) == incident_id:
            raise IncidentRangeError(f"incident {incident_id} is open: its range ends where learning goes on")
        if start is None or end is None:
            missing = "start" if start is None else "end (where learning went on)"
            raise IncidentRangeError(
                f"incident {incident_id}'s {missing} was not recorded (an incident from before livelearn kept "
                "ranges, or learning went on without a learner to record where): exclude its offsets instead "
                "(kafka:TOPIC:PARTITION:FROM-TO; `livelearn audit` and `livelearn versions show` say where)"
            )
        return IncidentRange(incident_id, start, end)
