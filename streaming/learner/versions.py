"""The versions an active learner writes during one activation: captured, released, applied, promoted.

A capture (:meth:`Checkpoints.capture`: a copy of the state at its offsets) costs the learner thread only the copy;
the version may be written once every dead letter and prediction sent before it is delivered. :class:`ActiveVersions`
keeps the captures still waiting for their outputs, oldest first, releases each to the snapshot writer thread once
they are in (checked without blocking), and applies the writes the writer finished (:meth:`Checkpoints.collect`).
With :data:`MAX_PENDING_CAPTURES` pending, a version due waits for the oldest one's write (backpressure): a version
is never skipped nor moved to a later event. It also writes one version at once (:meth:`ActiveVersions.snapshot`:
the final one, a rollback's) and promotes the candidates calm data confirmed. Each of these may find the lineage
moved on (a rollback dropped the capture or the candidates): :attr:`ActiveVersions.lineage_moved` then asks the
learner to follow it before its next event (:meth:`~streaming.learner.lineage.Lineage.follow`).
"""

from __future__ import annotations

import collections
import time

from snapshotter.codec import VersionMeta
from streaming.errors import LeaseLostError, SnapshotFencedError, StaleLineageError
from streaming.learner.checkpoint import Checkpoints, Job
from streaming.learner.outputs import Outputs
from streaming.learner.state import LearnerState
from streaming.transport import Consumer, TopicPartition

__all__ = ["MAX_PENDING_CAPTURES", "ActiveVersions"]

Positions = dict[TopicPartition, int]
#: snapshots captured and not yet written at most; with this many pending, a version due waits for the oldest one
MAX_PENDING_CAPTURES = 4


class ActiveVersions:
    """The versions of one activation, from capture to applied (see the module docstring).

    Parameters
    ----------
    checkpoints
        Captures the state, runs the snapshot writer thread and applies its writes.
    state
        The activation's state (the one :meth:`Lineage.activate` returned: rollbacks change it in place).
    outputs
        The dead letters and predictions: a version is released once those sent before it are delivered.
    consumer
        Where written versions commit their offsets.
    """

    def __init__(self, checkpoints: Checkpoints, state: LearnerState, outputs: Outputs, consumer: Consumer) -> None:
        self.checkpoints, self.state, self.outputs, self.consumer = checkpoints, state, outputs, consumer
        #: captured (handed to the writer thread), oldest first, waiting for the outputs sent before them
        self.waiting: collections.deque[Job] = collections.deque()
        self.lineage_moved = False  # a write or a promotion found the lineage moved on: follow it before going on

    @property
    def in_flight(self) -> int:
        """Captured versions not applied yet (waiting for their outputs, in the writer, or written)."""
        return self.checkpoints.in_flight

    def capture(self, positions: Positions) -> None:
        """Capture a version at ``positions`` (the learner goes on at once); with :data:`MAX_PENDING_CAPTURES`
        pending, the oldest is written first."""
        if self.checkpoints.in_flight >= MAX_PENDING_CAPTURES:
            self._make_room()
        self.waiting.append(self.checkpoints.capture(self.state, self.outputs, positions))

    def write_when_delivered(self, *, wait: bool = False) -> None:
        """Release to the writer thread the captured versions, oldest first, whose outputs (everything sent before
        each) are delivered (checked without blocking), and apply the writes it finished. If the oldest waits
        longer than the outputs' timeout, or with ``wait`` (the learner caught up: a status saying so then speaks
        of durable versions; an incident's target must exist), flush the outputs (and fail as a flush does) and
        wait for the writes."""
        outputs = self.outputs
        while self.waiting:
            job = self.waiting[0]
            if not outputs.delivered(job.captured.mark):
                if not wait and time.monotonic() - job.captured.at < outputs.timeout:
                    break
                outputs.flush()
            self.waiting.popleft()
            self.checkpoints.release(job)
        jobs = self.checkpoints.jobs
        self.collect(until=jobs[-1] if wait and jobs else None)

    def _make_room(self) -> None:
        """Backpressure: :data:`MAX_PENDING_CAPTURES` versions wait for their outputs or the writer (a slow broker
        or Redis). Learning waits here until the oldest one is written (flushing the outputs it waits for, and
        failing as a flush does)."""
        oldest = self.checkpoints.jobs[0]
        if self.waiting and self.waiting[0] is oldest:
            if not self.outputs.delivered(oldest.captured.mark):
                self.outputs.flush()
            self.waiting.popleft()
            self.checkpoints.release(oldest)
        self.collect(until=oldest)

    def collect(self, until: Job | None = None) -> None:
        """Apply the writes the writer finished (waiting for ``until``); a dropped one: follow the lineage first."""
        self.checkpoints.collect(self.state, self.consumer, until=until)
        if self.checkpoints.lineage_moved:
            self.checkpoints.lineage_moved = False
            self.lineage_moved = True  # follow the move first (captures on the old lineage are dropped)

    def snapshot(self, positions: Positions) -> VersionMeta | None:
        """Write the state as a new version now, waiting for its outputs (:meth:`Checkpoints.snapshot`); a captured
        one still waiting is written first (every N events stays a version, even when the final snapshot follows
        it closely). ``None`` when a rollback moved the lineage on meanwhile: the learner follows it first."""
        if self.checkpoints.in_flight:  # (one captured on a lineage moved on since is dropped, as before)
            self.write_when_delivered(wait=True)
        meta = self.checkpoints.snapshot(self.state, self.outputs, positions, self.consumer)
        self.checkpoints.lineage_moved = False
        self.lineage_moved = meta is None
        return meta

    def promote(self, up_to: int | None = None) -> None:
        """Confirm the candidates written at or before the confirmed position (:meth:`Checkpoints.promote`), and at
        or before ``up_to`` when given."""
        try:
            self.checkpoints.promote(self.state, up_to=up_to)
        except SnapshotFencedError as exc:
            raise LeaseLostError(str(exc)) from None
        except StaleLineageError:
            self.lineage_moved = True  # a rollback dropped the candidates: follow it first
