"""Restore the newest usable version of a model into a fresh, live model.

The head version is tried first; if it is corrupt (checksum mismatch, unreadable), its ancestors are
tried newest first, with a loud warning, because their stored offsets are consistent with their state:
the learner simply replays a little more. A snapshot whose *structure* (model kind, feature
selection) differs from the configured one is refused with :class:`ModelSpecMismatchError`;
hyperparameters such as the learning rate may change between runs and are taken from the config.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState, VersionMeta, gc_paused
from snapshotter.store import VersionStore
from streaming.config import BASE
from streaming.engines import LearningModel, restore_model
from streaming.errors import ModelSpecMismatchError, SnapshotCorruptError, SnapshotError, VersionNotFoundError
from streaming.model import ModelSpec

__all__ = ["Restored", "restore_head", "restore_state", "restore_version"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Restored:
    """A version brought back to life: its model and metrics, counters, metadata and stream state."""

    model: LearningModel
    metrics: PrequentialMetrics
    counters: dict[str, int]
    meta: VersionMeta
    stream: dict[str, Any]
    arms: dict[str, Any] = dataclasses.field(default_factory=dict)  # the challengers' stored state, by name
    arm: str = BASE  # the arm name of the version's model (another than ``base`` after a promotion)
    spec: ModelSpec | None = None  # the spec it was restored with (``None``: the configured one)


def restore_state(state: SnapshotState, spec: ModelSpec, window: int) -> tuple[LearningModel, PrequentialMetrics]:
    """Build a model with ``spec``'s hyperparameters and ``state``'s learned numbers (on the process's engine)."""
    stored = ModelSpec.from_dict(state.spec)
    if stored.structure() != spec.structure():
        raise ModelSpecMismatchError(
            f"the snapshot was written for model structure {stored.structure()}, but the configuration says "
            f"{spec.structure()}; restore the old settings or use a new LIVELEARN_MODEL_NAME"
        )
    if stored != spec:
        log.warning("hyperparameters changed since the snapshot: %s -> %s", stored.to_dict(), spec.to_dict())
    with gc_paused():  # ~100k objects for a large model, none of them garbage
        return restore_model(spec, state.model), PrequentialMetrics.from_state(state.metrics, window)


def _lineage(store: VersionStore, head: int) -> Iterator[int]:
    """The head and its ancestors, newest first: never a version of a lineage a rollback abandoned.

    Where a version's metadata cannot be read, its parent is unknown, so the walk goes on with the next
    lower stored number (the best guess left).
    """
    number: int | None = head
    seen: set[int] = set()
    while number is not None and number not in seen:
        seen.add(number)
        yield number
        current = number
        try:
            number = store.meta(current).parent
        except (SnapshotCorruptError, VersionNotFoundError):
            lower = [n for n in store.numbers() if n < current]
            number = lower[-1] if lower else None


def restore_version(store: VersionStore, number: int, spec: ModelSpec, window: int) -> Restored:
    """Version ``number`` brought back to life (raises what :meth:`VersionStore.load` and :func:`restore_state`
    raise)."""
    meta, state = store.load(number, packed_weights=True)  # the compiled engine reads the doubles as stored
    arm = str(meta.extra.get("arm", BASE))
    # after a promotion the champion is the promoted arm: its spec is the version's, not the settings'
    own = ModelSpec.from_dict(state.spec) if arm != BASE else spec
    model, prequential = restore_state(state, own, window)
    stream, arms = dict(state.stream), dict(state.arms)
    return Restored(model, prequential, dict(state.counters), meta, stream, arms, arm, None if arm == BASE else own)


def restore_head(store: VersionStore, spec: ModelSpec, window: int) -> Restored | None:
    """The newest loadable version at or below the head, or ``None`` when none was ever written. A version in a
    newer snapshot format is not skipped (:class:`SnapshotFormatError` goes up): falling back past it would
    re-learn from an older version what a newer learner already learned; this livelearn must be upgraded."""
    head = store.head()
    if head is None:
        return None
    problems = []
    for number in _lineage(store, head):
        try:
            return restore_version(store, number, spec, window)
        except (SnapshotCorruptError, VersionNotFoundError) as exc:
            log.error("version %d cannot be restored (%s); trying an older one", number, exc)
            problems.append(f"v{number}: {exc}")
    raise SnapshotError(
        "no stored version of this model can be restored (" + "; ".join(problems) + "); "
        "inspect them with `livelearn versions list` before starting from scratch under a new model name"
    )
