"""Everything an active learner knows: the learned state, and where it stands in the stream and the lineage.

A fresh :class:`LearnerState` is built on every activation and filled from the restored head version; a
rollback replaces its learned part with the target's. :meth:`LearnerState.snapshot_state` is what the
next version's blob holds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

from monitor.prequential import PrequentialMetrics, Threshold
from monitor.signals import SignalEvent, SignalWatch
from snapshotter.codec import Packed, SnapshotState, VersionMeta, pack, unpack
from snapshotter.status import MetricSample
from streaming.config import BASE, ChallengerConfig, ChallengerSettings, Settings
from streaming.engines import LearningModel, configure, new_model
from streaming.learner.arms import Challengers, LoadVersion
from streaming.learner.dedupe import RecentIds
from streaming.learner.join import LabelJoin, LearnedOrder
from streaming.learner.restore import Restored
from streaming.learner.signals import BlockSignals
from streaming.model import ModelSpec, spec_from_settings
from streaming.transport import TopicPartition

__all__ = ["CALIBRATED", "COUNTERS", "CapturedState", "LearnerState", "spec_from_settings"]

log = logging.getLogger(__name__)

#: Model kinds whose scores are probabilities the label-odds rule may judge labels by (a logistic regression's; the
#: margin-based classifiers' and naive Bayes's are not calibrated).
CALIBRATED = frozenset({"logistic_regression"})
#: Counters every snapshot carries (``events_seen``: scored; ``events_learned``: learned from).
COUNTERS = ("events_seen", "events_learned", "dead_lettered", "duplicates")


@dataclasses.dataclass(frozen=True)
class CapturedState:
    """The learned state copied at one stream position; :meth:`document` builds the blob's content later (in the
    snapshot writer thread), whatever the live state did meanwhile."""

    spec: dict[str, Any]
    model: Callable[[], dict[str, Any]]  # the engine's captured state (:meth:`LearningModel.capture_state`)
    metrics: Packed  # small, packed at the capture: some dumps share live maps
    counters: dict[str, int]
    stream: Packed
    join: Callable[[], dict[str, Any]] | None = None  # the label join's captured state (packed in the writer thread)
    learned: dict[str, Any] | None = None  # the pairs learned since the version before, in order (the join on)
    arms: Callable[[], dict[str, Any]] | None = None  # the challengers' captured state (:meth:`Challengers.capture`)

    def document(self) -> SnapshotState:
        """The blob's content (``metrics`` and ``stream`` as packed bytes: the encoder writes them as they are)."""
        metrics, stream = cast(dict[str, Any], self.metrics), cast(dict[str, Any], self.stream)
        if self.learned is not None:  # the pairs learned since the version before (small: one version's worth)
            stream = cast(dict[str, Any], Packed(pack({**unpack(self.stream), "learned": self.learned})))
        arms = {} if self.arms is None else self.arms()
        return SnapshotState(self.spec, self.model(), metrics, dict(self.counters), stream, arms)

    def join_blob(self) -> bytes | None:
        """The label join's state, packed (in the writer thread: the waiting events can be large); stored apart
        from the version, once (:meth:`~snapshotter.store.VersionStore.join_state`)."""
        return None if self.join is None else pack(self.join())


@dataclasses.dataclass
class LearnerState:
    """The learned state of an active learner and its place in the stream and the lineage."""

    spec: ModelSpec
    model: LearningModel
    metrics: PrequentialMetrics
    recent: RecentIds  # the idempotence window (belongs to the stream position, not to a version)
    signals: BlockSignals  # the current block of data signals (also the stream's, not a version's)
    threshold: Threshold  # the guarded metric's threshold (relative mode: learned from the samples)
    watch: SignalWatch  # label and prediction rates: data-quality incidents, calm data (the stream's too)
    counters: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    offsets: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # where learning resumes
    parent: int | None = None  # the version the live model descends from
    last_snapshot: VersionMeta | None = None
    epoch: int = 0  # the lineage the learner is on
    frozen: bool = False  # learning frozen: score only
    pending_rollback: dict[str, Any] | None = None  # recorded in the next snapshot's metadata
    last_rollback: dict[str, Any] | None = None  # shown in the status
    samples: list[MetricSample] = dataclasses.field(default_factory=list)  # not yet in the history stream
    incident_events: list[tuple[SignalEvent, MetricSample]] = dataclasses.field(default_factory=list)  # to act on
    confirmed: int | None = None  # stream position up to which the data was calm: candidates there may be stable
    confirmed_metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # rolling metrics at ``confirmed``
    unconfirmed: list[int] = dataclasses.field(default_factory=list)  # stream positions of candidates written
    # replaying a range the learner before this one held (restored from a version written while learning was held,
    # released since at this stream position): held up to it, as it was, whatever Redis says now
    held_until: int | None = None
    #: ...and, where it was recorded, the release per partition (``(topic, partition) -> offset``): a record before
    #: its partition's release is replayed held, one at or after it learned, whatever order the partitions come in
    held_offsets: dict[tuple[str, int], int] | None = None
    replay_learns: bool = False  # the record being replayed is past its partition's release (``held_offsets``)
    replay_released: bool = False  # a record past the release was replayed: the release took effect
    released: str | None = None  # an operator's resume applied just now: recorded (position) before going on
    join: LabelJoin | None = None  # labels that come after their events (``label_wait`` set), else None
    learned: LearnedOrder | None = None  # with the join: the pairs learned since the last version, in order
    arms: Challengers | None = None  # challengers learning in shadow (``LIVELEARN_CHALLENGERS``), else None
    arm_name: str = BASE  # the champion's arm name: ``base`` (the settings' model) until a promotion
    arm_settings: ChallengerSettings | None = None  # how challengers are compared (None: a state without settings)
    arm_configs: tuple[ChallengerConfig, ...] | None = None  # challengers declared at run time (None: the settings')
    arm_window: int = 1000  # each arm's rolling window (the champion's)
    base_spec: ModelSpec | None = None  # the settings' model: challengers are declared over it (None: ``spec``)
    #: reads a stored version's model, for a challenger declared ``start=version:N`` (the learner's store; None: none)
    load_version: LoadVersion | None = None
    pending_promotion: dict[str, Any] | None = None  # a promotion applied: recorded in the next snapshot's metadata

    @property
    def learning(self) -> bool:
        """Whether labelled events are learned: not frozen (Redis), no data-quality incident open (the watch), not
        replaying a held range."""
        return not self.frozen and self.watch.incident is None and (self.held_until is None or self.replay_learns)

    def replay_at(self, topic: str, partition: int, offset: int, positions: Mapping[TopicPartition, int]) -> None:
        """While replaying a held range: the record at ``offset`` of ``topic[partition]`` comes (``positions``
        include it). Past the release — its partition's release offset, else (recorded as a stream position only)
        the position — it is learned; the first such record is where the release took effect (an incident the watch
        still holds: the new normal, as it was); a record past the release once no partition is before its release
        any more ends the replay (:meth:`end_replayed_hold`)."""
        assert self.held_until is not None
        release = self.held_offsets
        if release is None:  # (one stream position: exact for one partition)
            if sum(positions.values()) > self.held_until:
                self.end_replayed_hold()
            return
        past = offset >= release.get((topic, partition), 0)
        self.replay_learns = past
        if not past:
            return
        if not self.replay_released:
            self.replay_released = True
            self._new_normal()
        if all(positions.get(TopicPartition(t, p), 0) >= at for (t, p), at in release.items()):
            self.end_replayed_hold()

    def end_replayed_hold(self) -> None:
        """The replay reached the position where learning was released: learn from the next event on. An incident
        the watch still holds was closed by an operator then: its rates are the new normal, as they were."""
        self.held_until, self.held_offsets, self.replay_learns, self.replay_released = None, None, False, False
        self._new_normal()

    def _new_normal(self) -> None:
        if self.watch.incident is not None:
            self.watch.accept_new_normal()
            self.metrics.restart_window()  # as the live learner did when the operator's resume came

    def held(self) -> dict[str, Any] | None:
        """Why the candidate versions past the confirmed position wait (the status shows it), or ``None`` when none
        waits: how many, from which stream position, up to where the data was confirmed, and the reason in words."""
        confirmed = self.confirmed
        waiting = [p for p in self.unconfirmed if confirmed is None or p > confirmed]
        if not waiting:
            return None
        incident = self.watch.incident
        if self.frozen:
            reason = "learning is frozen (an operator's freeze, or an incident's until it is resumed)"
        elif incident is not None:
            reason = f"a data incident is open ({incident.signal}, from stream position {incident.change_point})"
        elif self.held_until is not None:
            reason = "replaying a range the lineage held"
        elif self.watch.hold_reason is not None:
            reason = self.watch.hold_reason
        elif not self.threshold.meets(self.metrics.rolling_values()):
            reason = "the rolling metrics miss their threshold"
        elif partial := self.watch.partial_reason(self.signals.peek(), odds=self.odds_judged):
            reason = f"in the block so far, {partial}"
        else:
            reason = "the data up to them is not judged yet (at the next metric sample, or once the stream is quiet)"
        return {"candidates": len(waiting), "from_position": waiting[0], "confirmed_to": confirmed, "reason": reason}

    @property
    def odds_judged(self) -> bool:
        """Whether the label-odds rule judges the labels by the champion's scores (they are probabilities)."""
        return self.spec.kind in CALIBRATED

    @property
    def promotable(self) -> bool:
        """A candidate version waits at or before the confirmed position."""
        return bool(self.unconfirmed) and self.confirmed is not None and self.unconfirmed[0] <= self.confirmed

    @classmethod
    def fresh(cls, spec: ModelSpec, settings: Settings) -> LearnerState:
        """Nothing learned yet (the first call picks the process's learning engine and compiles it)."""
        configure(settings.model.engine, settings.model.cache_dir)
        labels = settings.labels
        model = new_model(spec)
        window = settings.learner.rolling_window
        state = cls(
            spec,
            model,
            PrequentialMetrics(window),
            RecentIds(settings.learner.dedupe_window),
            BlockSignals(
                settings.learner.drift_max_features,
                segments=settings.guard.segments,
                segment_values=settings.guard.segment_values,
                odds_ratio=settings.guard.incident_odds_ratio if settings.guard.incident_odds_threshold else None,
            ),
            Threshold(settings.guard),
            SignalWatch(settings.guard),
            join=None
            if not labels.joined
            else LabelJoin(
                round(labels.wait_seconds * 1000),
                labels.policy,
                max_pending=labels.max_pending,
                max_bytes=labels.max_bytes,
                max_orphans=labels.max_orphans,
                remember=labels.remember,
            ),
            learned=LearnedOrder() if labels.joined else None,
            arm_settings=settings.arms,
            arm_window=window,
            base_spec=spec,
        )
        state.start_arms({}, None, strict=True)  # (the settings' declarations: a wrong one refuses the start)
        return state

    def adopt(self, restored: Restored, join: dict[str, Any] | None = None) -> None:
        """Take all of ``restored``: model, metrics, counters, idempotence window and place (on activation), and
        ``join``, the label join's state stored with it (:meth:`LabelJoin.dump`; ``None``: nothing waits)."""
        counters = dict(restored.counters)
        counters.pop("scored_since_rollback", None)  # kept by versions before 2026-11; the window restart replaced it
        self.counters = {**dict.fromkeys(COUNTERS, 0), **counters}
        self.metrics = restored.metrics
        self.recent.load(restored.stream.get("dedupe"))
        self.signals.load(restored.stream.get("signals"))
        self.threshold.load(restored.stream.get("threshold"))
        self.watch.load(restored.stream.get("watch"))
        if self.join is not None:
            self.join.load(join)
        self.adopt_model(restored)

    def adopt_model(self, restored: Restored) -> None:
        """Take only ``restored``'s model and lineage place (after a rollback): the counters and cumulative
        metrics keep counting every scored event, the offsets and the idempotence window stay where the
        stream is, and the rolling window restarts empty, so it judges the new lineage's scores only. The champion
        is the version's (after a promotion: the promoted arm, with its spec), and so is each challenger."""
        self.model = restored.model
        # the version's champion: a promoted arm with its own spec, else the settings' model (also after a rollback
        # to a version from before a promotion)
        self.spec = restored.spec if restored.spec is not None else (self.base_spec or self.spec)
        self.arm_name = restored.arm
        self.parent, self.last_snapshot = restored.meta.number, restored.meta
        self.metrics.restart_window()
        self.unconfirmed.clear()  # a lineage move drops the candidates (the Redis script did)
        self.start_arms(restored.arms, restored.meta.number)  # each arm the version's (or as declared, if it has none)
        if self.learned is not None:
            self.learned.clear()

    def promote(self, name: str, cooldown: int) -> None:
        """Challenger ``name`` becomes the champion from this event on (:meth:`Challengers.promote`): its model and spec
        serve and are judged by the guard (the rolling window restarts, the prediction rate's reference is learned
        again), the former champion learns on in shadow for ``cooldown`` events, each waiting event's scores follow
        their arms (:meth:`LabelJoin.swap_scores`). Recorded in the next version (``extra.promotion``)."""
        assert self.arms is not None
        former = self.arm_name
        arm = self.arms.promote(
            name, champion_spec=self.spec, champion=self.model, parent=self.parent, cooldown=cooldown
        )
        self.model, self.spec, self.arm_name = arm.model, arm.spec, name
        self.metrics.restart_window()
        self.watch.forget("pred_rate")
        self.watch.restart_odds()  # the label-odds rule judges the new champion's scores from scratch
        if self.join is not None:
            self.join.swap_scores(name, former)
        self.pending_promotion = {"from": former, "to": name, "version": self.parent, "learned": arm.learned}
        if not self.arms.arms:
            self.arms = None

    def start_arms(self, stored: Mapping[str, Any], parent: int | None, *, strict: bool = False) -> None:
        """The challengers from here (:meth:`Challengers.start`): those declared (at run time, else in the settings),
        each restored from ``stored`` (a version's ``arms``) when it holds it as declared, and a former champion
        ``stored`` in its cool-down; ``None`` when there are none (a learner without challengers pays nothing). One
        that cannot start (``start=champion`` with another kind or features than the champion's now, a
        ``start=version:N`` that is gone) is left out, logged — ``strict`` (the settings', at the start): refused."""
        if self.arm_settings is None:
            return
        arms = Challengers.start(
            self.arm_settings,
            self.spec,
            self.model,
            stored,
            window=self.arm_window,
            parent=parent,
            configs=self.arm_configs,
            champion_name=self.arm_name,
            base_spec=self.base_spec,
            leave_out=None if strict else _left_out,
            load_version=self.load_version,
        )
        self.arms = arms if arms.arms else None

    def declare_arms(self, configs: tuple[ChallengerConfig, ...] | None) -> None:
        """Challengers declared anew (at run time; ``None``: back to the settings'), from this event on: an arm declared
        as before goes on as it is, a new one starts as declared, a removed one leaves."""
        self.arm_configs = configs
        self.start_arms({} if self.arms is None else self.arms.dump(), self.parent)

    def capture(self) -> CapturedState:
        """The learned state as it stands, copied (O(copy)): the model by its engine, the rest (metrics, idempotence
        window, signals, watch: small, but some dumps share live maps) packed now (the blob gets the same bytes)."""
        return CapturedState(
            self.spec.to_dict(),
            self.model.capture_state(),
            Packed(pack(self.metrics.dump_state())),
            dict(self.counters),
            Packed(pack(self._stream())),
            None if self.join is None else self.join.capture(),
            None if self.learned is None else self.learned.take(),
            None if self.arms is None else self.arms.capture(),
        )

    def snapshot_state(self) -> SnapshotState:
        """The learned state as it stands: what the next version's blob holds."""
        return SnapshotState(
            spec=self.spec.to_dict(),
            model=self.model.dump_state(),
            metrics=self.metrics.dump_state(),
            counters=dict(self.counters),
            stream={**self._stream(), **({} if self.learned is None else {"learned": self.learned_so_far()})},
            arms={} if self.arms is None else self.arms.dump(),
        )

    def learned_so_far(self) -> dict[str, Any] | None:
        """The pairs learned since the last version, not taken (what :meth:`snapshot_state` shows)."""
        if self.learned is None:
            return None
        return {"ids": list(self.learned.ids), "labels": bytes(self.learned.labels)}

    def _stream(self) -> dict[str, Any]:
        return {
            "dedupe": self.recent.dump(),
            "signals": self.signals.dump(),
            "threshold": self.threshold.dump(),
            "watch": self.watch.dump(),
        }


def _left_out(name: str, exc: Exception) -> None:
    log.error("challenger %s cannot start, left out: %s", name, exc)
