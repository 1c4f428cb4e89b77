"""One poll batch of an active learner: its records stepped run by run, each run followed by the event hooks, in order.

:class:`BatchStep` takes the records one poll returned and steps them, partition by partition, in **runs**
(:meth:`EventStep.process_run <streaming.learner.step.EventStep.process_run>`: decode, skip duplicates, score,
publish, learn, metric samples — the events between two metric samples scored and learned in one engine call, the
same bits as one by one), each record past the partition's position moving the position past it; after each run,
every :class:`EventHook` of its list runs, in list order, before the next run. A run ends right after an event that
recorded a metric sample (what a hook acts on is decided there), and before any hook's **horizon** — the records
it lets pass before it must run (:meth:`EventHook.horizon`: 1 for a hook that must see every event). The hooks of a
live learner (:func:`event_hooks`) are

1. :class:`ActOnIncidents` — an incident the watch confirmed or ended at this event is recorded and the lineage
   move it made followed (a rollback may move the positions past records still in the batch: they are skipped);
2. :class:`PromoteConfirmed` — the candidate versions the calm data confirmed are promoted;
3. :class:`CaptureWhenDue` — a version is captured every ``snapshot_every_events`` records (its horizon: a run ends
   at that record), or at a metric sample once the snapshot interval passed.

A later stage hooks in by taking its place in that list (a stage that must see the event before the versions are
captured goes before :class:`CaptureWhenDue`), without changing the loop. While events are stepped the snapshot
writer thread may take its share of the GIL; the Prometheus counts are added once per batch.

>>> from prometheus_client import CollectorRegistry
>>> from streaming.config import Settings
>>> from streaming.events import Event, encode_event
>>> from streaming.learner.state import LearnerState, spec_from_settings
>>> from streaming.learner.prometheus import LearnerMetrics
>>> class Seen:  # a hook that sees every event (horizon 1): what it saw after each
...     def __init__(self): self.events = []
...     def horizon(self): return 1
...     def after_run(self, record, positions, sampled, stepped):
...         self.events.append((record.offset, sum(positions.values())))
>>> class Writer:
...     def release_writer(self): pass
...     def hold_writer(self): pass
>>> settings = Settings(engine="river", publish_predictions=False)
>>> state = LearnerState.fresh(spec_from_settings(settings), settings)
>>> step = EventStep(settings, LearnerMetrics(CollectorRegistry()))
>>> tp, seen = TopicPartition("events", 0), Seen()
>>> records = [
...     Record("events", 0, offset, None, encode_event(Event(f"e{offset}", 0, {"x": 1.0}, True)), [], -1)
...     for offset in (3, 4, 5)
... ]
>>> outputs = Outputs(None, settings, step.telemetry)  # predictions off: nothing to send
>>> BatchStep(state, step, outputs, [seen], Writer()).process({tp: records}, {tp: 4})  # offset 3: consumed already
>>> seen.events, state.counters["events_learned"]
([(4, 5), (5, 6)], 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from streaming.learner.cadence import Cadence
from streaming.learner.incidents import IncidentActions
from streaming.learner.outputs import Outputs
from streaming.learner.state import LearnerState
from streaming.learner.step import EventStep
from streaming.learner.versions import ActiveVersions
from streaming.transport import Record, TopicPartition, stored_offsets

__all__ = [
    "ActOnIncidents",
    "BatchStep",
    "CaptureWhenDue",
    "EventHook",
    "PromoteConfirmed",
    "WriterTurns",
    "event_hooks",
]

Positions = dict[TopicPartition, int]


class EventHook(Protocol):
    """Work after each run of stepped events, before the next run."""

    def horizon(self) -> int | None:
        """How many records may be stepped, at most, before this hook runs again (``None``: no bound of its own — it
        acts on what a metric sample decides, and a run ends at each sample)."""

    def after_run(self, record: Record, positions: Positions, sampled: bool, stepped: int) -> None:
        """``stepped`` records were just stepped, ``record`` the last; ``positions`` already include it (a hook may
        move them forward: the records before them are skipped); ``sampled``: a metric sample was recorded at
        ``record``."""


class WriterTurns(Protocol):
    """The snapshot writer thread's share of the GIL (:class:`~streaming.learner.checkpoint.Checkpoints`)."""

    def release_writer(self) -> None:
        """The learner steps events: the writer works meanwhile."""

    def hold_writer(self) -> None:
        """The learner leaves its batch for the work between polls: the writer waits a little."""


class BatchStep:
    """Steps the records of one poll batch, each followed by the event hooks (see the module docstring).

    Parameters
    ----------
    state
        What the learner knows; the events are learned into it.
    step
        The per-event work (:meth:`EventStep.process_run`, looked up per batch: a benchmark may wrap it).
    outputs
        Where dead letters and predictions go.
    hooks
        Run after each run of events, in this order.
    writer
        Released while events are stepped, held after.
    """

    def __init__(
        self,
        state: LearnerState,
        step: EventStep,
        outputs: Outputs,
        hooks: Sequence[EventHook],
        writer: WriterTurns,
    ) -> None:
        self.state, self.step, self.outputs, self.writer = state, step, outputs, writer
        self.hooks = tuple(hooks)

    def process(self, batch: Mapping[TopicPartition, Sequence[Record]], positions: Positions) -> None:
        """Step every record of ``batch`` past ``positions`` (moved past each one as it is stepped), run by run."""
        state, outputs, hooks, run = self.state, self.outputs, self.hooks, self.step.process_run
        self.writer.release_writer()  # stepping events: the snapshot writer may take its GIL slices
        for tp, records in batch.items():
            i, n = 0, len(records)
            while i < n:
                limit = n
                for hook in hooks:
                    horizon = hook.horizon()
                    if horizon is not None and horizon < limit:
                        limit = horizon
                i, last, stepped, sampled = run(
                    state, records, i, limit=limit, outputs=outputs, positions=positions, tp=tp
                )
                if last is None:
                    break
                for hook in hooks:
                    hook.after_run(last, positions, sampled, stepped)
        # between batches the learner mostly calls what releases the GIL (Redis, the producer, the poll): a busy
        # writer taking it each time would cost the learner a switch interval back each time
        self.writer.hold_writer()
        self.step.flush_telemetry()


class ActOnIncidents:
    """An incident the watch confirmed or ended at this event: recorded, and the lineage move it made followed
    before the next event (:mod:`~streaming.learner.incidents`).

    Parameters
    ----------
    state
        Its ``incident_events`` are what the watch reported.
    versions
        The versions captured before the incident are written first, and those the data was confirmed calm up to
        promoted: one of them may be its target, whatever the writer thread's speed.
    incidents
        Records the incident (open: quarantine, freeze, roll back; end: close).
    follow
        Applies the lineage move (a rollback seeks the partitions forward, moving the positions).
    """

    def __init__(
        self,
        state: LearnerState,
        versions: ActiveVersions,
        incidents: IncidentActions,
        follow: Callable[[], None],
    ) -> None:
        self.state, self.versions, self.incidents, self.follow = state, versions, incidents, follow

    def horizon(self) -> int | None:
        return None  # (incidents are confirmed at metric samples)

    def after_run(self, record: Record, positions: Positions, sampled: bool, stepped: int) -> None:
        if not self.state.incident_events:
            return
        if self.versions.in_flight:  # the versions captured before it exist (and may be its target) first
            self.versions.write_when_delivered(wait=True)
        # ...and those the data was confirmed calm up to are stable, as a writer that kept up would have made them
        # (the target must not depend on how fast versions were written) — none past an incident's change point:
        # it quarantines those, and serving must not go to one on the way
        starts = [e.change_point for e, _ in self.state.incident_events if e.kind == "incident_start"]
        cap = min((p for p in starts if p is not None), default=None)
        if self.state.promotable and (cap is None or self.state.unconfirmed[0] <= cap):
            self.versions.promote(up_to=cap)
        self.incidents.act(self.state, stored_offsets(positions), confirmed_at=record)
        self.versions.lineage_moved = True  # an incident start rolled back: read the lineage now, not at a poll
        self.follow()


class PromoteConfirmed:
    """Candidate versions at or before the position the data was confirmed calm up to: promoted at once."""

    def __init__(self, state: LearnerState, versions: ActiveVersions) -> None:
        self.state, self.versions = state, versions

    def horizon(self) -> int | None:
        # a candidate confirmed already (a write applied after the data was confirmed): promoted after the next event,
        # as one record at a time did — not at the end of a run whose sample may open an incident first
        return 1 if self.state.promotable else None

    def after_run(self, record: Record, positions: Positions, sampled: bool, stepped: int) -> None:
        if self.state.promotable:
            self.versions.promote()


class CaptureWhenDue:
    """A version every ``snapshot_every_events`` records, and at a metric sample once the snapshot interval passed
    (:class:`~streaming.learner.cadence.Cadence`) — even while earlier ones wait for their outputs: learning does
    not wait for their delivery, until too many are pending (:meth:`ActiveVersions.capture`).

    Parameters
    ----------
    cadence
        Counts the records and says when a version is due.
    versions
        Releases the earlier captures whose outputs are in, and captures.
    clock
        Monotonic seconds (the cadence's clock).
    """

    def __init__(self, cadence: Cadence, versions: ActiveVersions, clock: Callable[[], float] = time.monotonic) -> None:
        self.cadence, self.versions, self.clock = cadence, versions, clock

    def horizon(self) -> int | None:
        return self.cadence.until_due()

    def after_run(self, record: Record, positions: Positions, sampled: bool, stepped: int) -> None:
        cadence, versions = self.cadence, self.versions
        due = cadence.consumed(stepped)
        if sampled:  # a metric sample at this event: a version here is judged
            due = due or cadence.snapshot_due(self.clock(), at_sample=True)
        if versions.in_flight:
            versions.write_when_delivered()
        if due:
            versions.capture(positions)
            cadence.snapshotted(self.clock())


def event_hooks(
    state: LearnerState,
    versions: ActiveVersions,
    incidents: IncidentActions,
    cadence: Cadence,
    follow: Callable[[], None],
) -> list[EventHook]:
    """The event hooks of a live learner, in their order: what a metric sample decided is acted on (an incident
    first: its rollback drops the candidates a promotion would confirm) before a version is captured at the
    event."""
    return [
        ActOnIncidents(state, versions, incidents, follow),
        PromoteConfirmed(state, versions),
        CaptureWhenDue(cadence, versions),
    ]
