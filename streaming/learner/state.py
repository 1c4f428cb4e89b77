"""Everything an active learner knows: the learned state, and where it stands in the stream and the lineage.

A fresh :class:`LearnerState` is built on every activation and filled from the restored head version; a
rollback replaces its learned part with the target's. :meth:`LearnerState.snapshot_state` is what the
next version's blob holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState, VersionMeta
from snapshotter.status import MetricSample
from streaming.config import Settings
from streaming.learner.dedupe import RecentIds
from streaming.learner.restore import Restored
from streaming.model import ModelSpec, OnlineModel

__all__ = ["COUNTERS", "LearnerState", "spec_from_settings"]

#: Counters every snapshot carries (``events_seen``: scored; ``events_learned``: learned from).
COUNTERS = ("events_seen", "events_learned", "dead_lettered", "duplicates")


def spec_from_settings(settings: Settings) -> ModelSpec:
    """The model the settings describe."""
    return ModelSpec(
        learning_rate=settings.learning_rate,
        l2=settings.l2,
        features_include=tuple(settings.features_include),
        features_exclude=tuple(settings.features_exclude),
        max_categories_per_feature=settings.max_categories_per_feature,
        max_inputs=settings.max_inputs,
    )


@dataclasses.dataclass
class LearnerState:
    """The learned state of an active learner and its place in the stream and the lineage."""

    spec: ModelSpec
    model: OnlineModel
    metrics: PrequentialMetrics
    recent: RecentIds  # the idempotence window (belongs to the stream position, not to a version)
    counters: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    offsets: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # where learning resumes
    parent: int | None = None  # the version the live model descends from
    last_snapshot: VersionMeta | None = None
    epoch: int = 0  # the lineage the learner is on
    frozen: bool = False  # learning frozen: score only
    #: labelled events scored since the rollback that made this lineage; until it reaches min_samples no new
    #: version counts as stable (the restored window is the target's). ``None``: no rollback to outgrow.
    scored_since_rollback: int | None = None
    pending_rollback: dict[str, Any] | None = None  # recorded in the next snapshot's metadata
    last_rollback: dict[str, Any] | None = None  # shown in the status
    samples: list[MetricSample] = dataclasses.field(default_factory=list)  # not yet in the history stream

    @classmethod
    def fresh(cls, spec: ModelSpec, settings: Settings) -> LearnerState:
        """Nothing learned yet."""
        return cls(
            spec, OnlineModel(spec), PrequentialMetrics(settings.rolling_window), RecentIds(settings.dedupe_window)
        )

    def adopt(self, restored: Restored, *, with_stream: bool) -> None:
        """Take ``restored``'s learned state and lineage position. ``with_stream``: also its idempotence window
        (on activation, where its offsets are taken too; a rollback keeps the current offsets and window)."""
        meta, stream = restored.meta, restored.stream
        self.model, self.metrics = restored.model, restored.metrics
        counters = dict(restored.counters)
        legacy = counters.pop("scored_since_rollback", None)  # where versions before 2026-11 kept it
        self.counters = {**dict.fromkeys(COUNTERS, 0), **counters}
        self.scored_since_rollback = stream.get("scored_since_rollback", legacy)
        self.parent, self.last_snapshot = meta.number, meta
        if with_stream:
            self.recent.load(stream.get("dedupe"))

    def snapshot_state(self) -> SnapshotState:
        """The learned state as it stands: what the next version's blob holds."""
        stream: dict[str, Any] = {"dedupe": self.recent.dump()}
        if self.scored_since_rollback is not None:
            stream["scored_since_rollback"] = self.scored_since_rollback
        return SnapshotState(
            spec=self.spec.to_dict(),
            model=self.model.dump_state(),
            metrics=self.metrics.dump_state(),
            counters=dict(self.counters),
            stream=stream,
        )
