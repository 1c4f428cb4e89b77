"""What an active learner writes to Redis: numbered versions (snapshots) and its status.

A snapshot costs the learner thread only a copy of its state: :meth:`Checkpoints.capture` copies the learned
state (:meth:`LearnerState.capture`: the compiled engine's arrays, river's maps, the small rest) with its offsets
and the metadata known now, and hands it to the snapshot writer thread (:mod:`~streaming.learner.writer`), which
encodes it (msgpack + SHA-256) at once and writes it in one fenced script, in capture order with the version
before as parent, once the learner :meth:`~Checkpoints.release` s it: the dead letters and predictions produced
up to its offsets are delivered (so no offset moves past an undelivered one; the runner checks the delivery
without blocking). :meth:`Checkpoints.collect` applies the finished writes on the learner thread — parent,
offsets, candidates, the reference gate's memory, then the offset commit to the consumer group (for lag
dashboards and the lost-store check) — and raises a failed write's error there. :meth:`Checkpoints.snapshot`
does it all at once, flushing and waiting (the final snapshot, a rollback's). The status, with the metric
samples recorded since the last one, is fenced by the lease the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from snapshotter.codec import EncodedSnapshot, SnapshotState, VersionMeta, gc_paused
from snapshotter.lease import Lease
from snapshotter.status import LearnerStatus, StatusWriter
from snapshotter.store import VersionStore
from streaming.config import BASE, Settings
from streaming.errors import LeaseLostError, SnapshotError, SnapshotFencedError
from streaming.learner.join import RecentDelays
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.reference_gate import ReferenceGate
from streaming.learner.restore import restore_state
from streaming.learner.state import CapturedState, LearnerState
from streaming.learner.writer import Job, SnapshotWriter
from streaming.model import ModelSpec
from streaming.transport import Consumer, TopicPartition, stored_offsets

__all__ = ["Captured", "Checkpoints", "Job"]


def state_spec(snapshot: SnapshotState) -> ModelSpec:
    return ModelSpec.from_dict(snapshot.spec)


log = logging.getLogger(__name__)

Positions = dict[TopicPartition, int]


@dataclasses.dataclass(frozen=True)
class Captured:
    """The learner's state at one stream position, copied, with what its version's metadata will say.

    ``mark`` is the outputs' mark at that position: the version may be written once every dead letter and
    prediction sent before it is delivered.
    """

    state: CapturedState
    positions: Positions
    offsets: dict[str, dict[str, int]]
    metrics: dict[str, dict[str, float]]
    extra: dict[str, Any]
    stable: bool
    epoch: int
    model_events_learned: int
    mark: int
    at: float  # time.monotonic() of the capture
    seconds: float  # what the capture cost the learner thread (the copy)
    lease_value: str | None  # the lease it is written under
    confirmed: int | None  # the calm data seen by then: may confirm this version at once


def encode_captured(captured: Captured) -> EncodedSnapshot:
    """The blob of a captured state (in the writer thread). No cyclic collection meanwhile (in any thread): the
    document's long lists of names (~200k entries for a 100k-weight model) are all alive until it is packed, and
    a collection starting in between would walk every one of them while the learner waits for the GIL."""
    with gc_paused():
        return EncodedSnapshot.of(captured.state.document())


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
        self.settings, self.store, self.lease, self.telemetry = settings, store, lease, telemetry
        self.writer_id = writer
        self.gate = gate
        self.writer: SnapshotWriter | None = None  # one per activation (:meth:`start`)
        self.jobs: list[Job] = []
        self.lineage_moved = False  # a collected snapshot was dropped: the lineage moved on
        self.status_writer = StatusWriter(store.client, store.keys, history_maxlen=settings.audit_retention)
        self.delays = RecentDelays()  # the label delays of the last labels joined (the status shows quantiles)

    # -- the writer thread --------------------------------------------------------------------------
    def start(self, state: LearnerState) -> None:
        """A new snapshot writer for an activation (the one before, if any, is closed)."""
        self.close()
        self.writer = SnapshotWriter(encode_captured, self._write, epoch=state.epoch)
        self.jobs.clear()
        self.lineage_moved = False

    def close(self) -> None:
        """Join the writer thread (what it did not write is dropped: the next activation restores the head)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    @property
    def in_flight(self) -> int:
        """Captured snapshots not collected yet (waiting for their outputs, in the writer, or finished)."""
        return len(self.jobs)

    def hold_writer(self) -> None:
        """The learner leaves its batch for the work between polls: the writer waits a little (see
        :meth:`SnapshotWriter.hold`)."""
        if self.writer is not None:
            self.writer.hold()

    def release_writer(self) -> None:
        """The learner steps events again: the writer works."""
        if self.writer is not None:
            self.writer.go()

    def follow(self, state: LearnerState) -> None:
        """The learner moved to ``state.epoch``: snapshots captured before are dropped, not written."""
        if self.writer is not None:
            self.writer.follow(state.epoch)

    # -- snapshots ------------------------------------------------------------------------------------
    def snapshot(
        self, state: LearnerState, outputs: Outputs, positions: Positions, consumer: Consumer
    ) -> VersionMeta | None:
        """Write ``state`` as a new version now — waiting for the outputs up to here and every snapshot captured
        before — and commit its offsets; ``None`` when a rollback moved the lineage on meanwhile (the caller
        follows it, then snapshots). Raises :class:`LeaseLostError` when fenced. The final snapshot and a
        rollback's use this."""
        job = self.capture(state, outputs, positions)
        outputs.flush()  # dead letters and predictions up to here are durable before offsets move past them
        for pending in self.jobs:
            self.release(pending)
        return self.collect(state, consumer, until=job, wait_commit=True)

    def capture(self, state: LearnerState, outputs: Outputs, positions: Positions) -> Job:
        """Copy ``state`` as it stands at ``positions`` (the learner goes on at once) and hand it to the writer,
        which encodes it now and writes it once :meth:`release` d (``outputs`` delivered everything sent up to
        here)."""
        t0 = time.perf_counter()
        offsets = stored_offsets(positions)
        rolling = state.metrics.rolling_values()
        extra: dict[str, Any] = {"dead_lettered": state.counters["dead_lettered"], "frozen": not state.learning}
        if state.join is not None:  # the join's counts, waits and recent label delays
            self._label_delays(state)
            extra["labels"] = {**state.join.figures(), **self.delays.summary()}
        if state.arms is not None:  # each challenger's figures and comparison (its state is in the blob)
            extra["arms"] = state.arms.summary()
        if state.arms is not None or state.arm_name != BASE:
            extra["arm"] = state.arm_name  # the arm name of this version's model (serving resolves the alias by it)
        if state.pending_promotion is not None:
            extra["promotion"] = state.pending_promotion
        if state.pending_rollback:
            extra["rollback"] = state.pending_rollback
        stable = self.stable(state, rolling)
        if stable and self.gate is not None:
            extra["reference"] = verdict = self._judge_on_reference(state)
            stable = verdict["passed"]
        captured = Captured(
            state=state.capture(),
            positions=dict(positions),
            offsets=offsets,
            metrics={"rolling": rolling, "cumulative": state.metrics.cumulative_values()},
            extra=extra,
            stable=stable,
            epoch=state.epoch,
            model_events_learned=state.model.steps,
            mark=outputs.mark(),
            at=time.monotonic(),
            seconds=time.perf_counter() - t0,
            lease_value=self.lease.value,
            confirmed=state.confirmed,
        )
        if self.writer is None:
            raise RuntimeError("Checkpoints.start() was not called: no snapshot writer")
        job = self.writer.submit(captured, epoch=state.epoch, parent=state.parent)
        self.jobs.append(job)
        return job

    def release(self, job: Job) -> None:
        """Everything sent before ``job``'s mark is delivered: the writer may write it."""
        if self.writer is not None:
            self.writer.release(job)

    def collect(
        self, state: LearnerState, consumer: Consumer, *, until: Job | None = None, wait_commit: bool = False
    ) -> VersionMeta | None:
        """Apply the writes the writer finished, oldest first (with ``until``: wait for that job first, and
        return its version); raise the first failure (fenced: :class:`LeaseLostError`). ``None`` when ``until``
        was dropped — the lineage moved on (a dropped job sets ``lineage_moved``: the caller follows first)."""
        if until is not None and self.writer is not None:
            self.writer.wait(until)
        result: VersionMeta | None = None
        while self.jobs and self.jobs[0].done.is_set():  # the writer finishes them in order
            job = self.jobs.pop(0)
            meta = self._apply(state, job, consumer, wait_commit=wait_commit and job is until)
            if job is until:
                result = meta
        return result

    def _apply(self, state: LearnerState, job: Job, consumer: Consumer, *, wait_commit: bool) -> VersionMeta | None:
        if job.error is not None:
            self.jobs.clear()  # the writer dropped the rest: the learner re-activates from the newest version
            if isinstance(job.error, SnapshotFencedError):
                raise LeaseLostError(str(job.error)) from None
            raise job.error
        captured: Captured = job.captured
        meta = job.meta
        if meta is None or captured.epoch != state.epoch:
            self.lineage_moved = True
            return None
        state.parent, state.last_snapshot, state.offsets = meta.number, meta, captured.offsets
        if state.pending_rollback is not None and captured.extra.get("rollback") is state.pending_rollback:
            state.pending_rollback = None
        if state.pending_promotion is not None and captured.extra.get("promotion") is state.pending_promotion:
            state.pending_promotion = None
        if self.gate is not None and "reference" in captured.extra:
            self.gate.remember(meta.number, captured.extra["reference"]["score"])
        position = sum(sum(partitions.values()) for partitions in meta.offsets.values())
        if (
            meta.stable
            and self.settings.promotion == "guard"
            and (captured.confirmed is None or position > captured.confirmed)
        ):
            state.unconfirmed.append(position)  # a candidate until the data up to it is seen calm
        elapsed = captured.seconds + job.encode_seconds + job.write_seconds
        self.telemetry.snapshot_seconds.observe(elapsed)
        self.telemetry.snapshot_written(meta.created_at, meta.size_bytes, meta.number)
        t1 = time.perf_counter()
        self._commit(consumer, captured.positions, meta.number, wait=wait_commit)
        log.info(
            "version %d written: events_seen=%d, copy %.1f ms (learner), encode %.1f ms + write %.1f ms (writer "
            "thread), %.0f ms after the capture; + %.1f ms offset commit",
            meta.number,
            meta.events_seen,
            captured.seconds * 1e3,
            job.encode_seconds * 1e3,
            job.write_seconds * 1e3,
            (time.monotonic() - captured.at) * 1e3,
            (time.perf_counter() - t1) * 1e3,
        )
        return meta

    def _write(self, captured: Captured, encoded: EncodedSnapshot, parent: int | None) -> VersionMeta:
        """Write one encoded snapshot as the next version (in the writer thread; its outputs are delivered)."""
        return self.store.write(
            encoded,
            writer=self.writer_id,
            lease_value=captured.lease_value,
            offsets=captured.offsets,
            parent=parent,  # written in order: the one before is the parent
            extra=captured.extra,
            epoch=captured.epoch,
            stable=captured.stable,
            model_events_learned=captured.model_events_learned,
            metrics=captured.metrics,
            confirmed=captured.confirmed,
            join=captured.state.join_blob(),
        )

    def stable(self, state: LearnerState, rolling: dict[str, float]) -> bool:
        """Meets the threshold with enough samples (after a rollback the window restarts: only new scores),
        and learned: a version written while learning is frozen (flapping, an open incident) never is."""
        return state.learning and state.threshold.meets(rolling)

    def _judge_on_reference(self, state: LearnerState) -> dict[str, Any]:
        """The reference-set gate's verdict on the live model, against the best of the serving version and the
        newest ``reference_best_of`` stable versions."""
        assert self.gate is not None
        serving, best_of = self.store.serving(), self.settings.guard.reference_best_of
        compared = ([serving] if serving is not None else []) + (
            self.store.stable_numbers()[-best_of:] if best_of else []
        )
        against, against_score = self.gate.best({number: self._reference_score(number) for number in compared})
        verdict = self.gate.judge(state.model, against=against, against_score=against_score)
        if not verdict["passed"]:
            self.telemetry.reference_gate_failures.inc()
            log.warning(
                "reference set: %s %.4f vs %.4f of version %d, the best of serving and the newest stable ones "
                "(tolerance %s): kept, not stable",
                verdict["metric"],
                verdict["score"],
                against_score,
                against,
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
            recorded = self.store.meta(number).extra.get("reference") or {}
            if recorded.get("metric") == self.gate.metric and recorded.get("rows") == len(self.gate.events):
                score = float(recorded["score"])  # gated when it was written: no need to load it
            else:
                _meta, snapshot = self.store.load(number, packed_weights=True)
                model, _ = restore_state(snapshot, state_spec(snapshot), self.settings.rolling_window)
                score = self.gate.score(model)
        except SnapshotError as exc:
            log.warning("cannot score version %d on the reference set (%s): not compared with", number, exc)
            return None
        self.gate.remember(number, score)
        return score

    def promote(self, state: LearnerState, *, up_to: int | None = None) -> None:
        """Confirm the candidates written at or before ``state.confirmed`` (promotion ``guard``), and at or before
        ``up_to`` when given (an incident's change point: it quarantines those after it)."""
        confirmed = state.confirmed
        assert confirmed is not None
        if up_to is not None:
            confirmed = min(confirmed, up_to)
        number = self.store.promote(
            lease_value=self.lease.value or "",
            epoch=state.epoch,
            confirmed=confirmed,
            actor=self.writer_id,
            metrics=state.confirmed_metrics,
        )
        state.unconfirmed = [p for p in state.unconfirmed if p > confirmed]
        if number:
            log.info("%d version(s) confirmed stable: the data up to stream position %d was calm", number, confirmed)

    def _commit(self, consumer: Consumer, positions: Positions, number: int, *, wait: bool) -> None:
        """Commit the version's offsets to the consumer group: for lag dashboards and the lost-store check only
        (the offsets that count are in the version), so in the loop without waiting for the broker."""
        try:
            consumer.commit(positions, f"livelearn v{number}", wait=wait)
        except Exception as exc:  # noqa: BLE001 - commits only feed lag dashboards and the lost-store check
            log.warning("offset commit after version %d failed: %s", number, exc)

    def status_document(
        self, state: LearnerState, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> LearnerStatus:
        """The learner's live figures, as the status document others read."""
        last = state.last_snapshot
        offsets = stored_offsets(positions or {})
        return LearnerStatus(
            writer=self.writer_id,
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
            labels=None if state.join is None else {**state.join.figures(), **self.delays.summary()},
            arms=None if state.arms is None else state.arms.summary(),
            held=state.held(),
        )

    def _label_delays(self, state: LearnerState) -> None:
        """The label delays (ms) since the last call, kept for the status's and the versions' quantiles, and
        observed by the delay histogram."""
        assert state.join is not None
        delays = state.join.take_delays()
        self.delays.add(delays)
        for delay in delays:
            self.telemetry.label_delay.observe(delay / 1000)

    def publish_status(
        self, state: LearnerState, events_per_second: float, current_lag: int | None, positions: Positions | None = None
    ) -> None:
        """Write the status and the metric samples recorded since; a no-op without the lease."""
        if state.join is not None:
            self._label_delays(state)
            self.telemetry.label_join(state.join.figures())
        status = self.status_document(state, events_per_second, current_lag, positions)
        self.telemetry.set_rolling(status["rolling"])
        self.telemetry.set_challengers(status.get("arms"))
        self.telemetry.model_size(state.model.inputs, state.model.capped)
        self.telemetry.consumer_lag.set(float("nan") if current_lag is None else current_lag)
        samples, state.samples = state.samples, []
        ttl_ms = int(max(5.0, 5 * self.settings.status_interval_seconds) * 1000)
        self.status_writer.publish(self.lease.value, status, samples, ttl_ms)
