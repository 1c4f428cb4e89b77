"""What the monitor learns from every metric sample besides the judge's verdict: feature drift and the threshold.

* **feature drift** (:class:`~monitor.drift.FeatureDrift`) is a notice: audited with the shared cursor's
  move (so once, by whichever monitor judged the sample), counted, logged; nothing more. Detections come in
  episodes (:class:`~monitor.drift.DriftEpisodes`): the first is a notice at once, the next
  ``drift_group_events`` events' are one notice at the episode's end (each detection counted with its notice).
* **the relative threshold** (:class:`~monitor.prequential.Threshold`, relative mode) is learned from the
  samples, as the learner learns it.

Data-quality *incidents* (label or prediction rates off their reference) are decided by the learner itself,
at the exact event (:mod:`streaming.learner.incidents`); the monitor only reads whether one is open.

Both states here are functions of the samples, so a starting monitor rebuilds them by replaying the history
stream without acting, and a monitor that lost a batch to another one goes back to its
:meth:`DataGuard.checkpoint` and replays.
"""

from __future__ import annotations

import copy

from monitor.drift import DriftEpisodes, FeatureDrift
from monitor.prequential import Threshold
from snapshotter.cursor import Notice
from snapshotter.status import MetricSample, sample_metrics
from streaming.config import GuardSettings, Settings

__all__ = ["DataGuard", "consumed_offsets"]


def consumed_offsets(sample: MetricSample, topic: str) -> dict[str, dict[str, int]]:
    """The per-partition positions a sample was recorded at: ``offset:<partition>`` of the events ``topic``,
    ``offset:<other topic>:<partition>`` of another (the labels topic).

    >>> consumed_offsets({"offset:0": 5.0, "offset:shop.labels:0": 2.0, "accuracy": 0.9}, "shop")
    {'shop': {'0': 5}, 'shop.labels': {'0': 2}}
    """
    consumed: dict[str, dict[str, int]] = {topic: {}}
    for key, value in sample.items():
        if key.startswith("offset:"):
            where, _, partition = key[len("offset:") :].rpartition(":")
            consumed.setdefault(where or topic, {})[partition] = int(value)
    return consumed


class DataGuard:
    """Feature drift and the relative threshold, fed every sample in stream order."""

    def __init__(self, settings: GuardSettings | Settings) -> None:
        self.guard = guard = GuardSettings.of(settings)
        self.drift = FeatureDrift(guard.drift_detector)
        self.episodes = DriftEpisodes(guard.drift_group_events)
        self.threshold = Threshold(guard)
        self.scored = -1  # the highest ``scored`` fed: a sample at or below it is a replay of blocks already seen
        # the lineage epoch of the samples fed: a new lineage (a rebuild's branch promoted) may count ``scored`` from
        # below the old one's, so the replay rule holds within an epoch
        self.epoch = 0

    def checkpoint(self) -> tuple[FeatureDrift, DriftEpisodes, Threshold, int, int]:
        """The state fed so far, to go back to if the batch is lost to another monitor."""
        memo = {id(self.guard): self.guard}
        return (
            copy.deepcopy(self.drift, memo),
            copy.deepcopy(self.episodes, memo),
            copy.deepcopy(self.threshold, memo),
            self.scored,
            self.epoch,
        )

    def restore(self, checkpoint: tuple[FeatureDrift, DriftEpisodes, Threshold, int, int]) -> None:
        self.drift, self.episodes, self.threshold, self.scored, self.epoch = checkpoint

    def feed(self, sample: MetricSample) -> list[Notice] | None:
        """Feed one sample in stream order: the notices it causes; ``None`` for a replayed sample (skipped)."""
        scored, epoch = int(sample.get("scored", 0)), int(sample.get("epoch", 0))
        if epoch < self.epoch or (epoch == self.epoch and scored <= self.scored):
            return None
        self.scored, self.epoch = scored, epoch
        self.threshold.observe(sample)
        position = int(sample.get("stream_position", 0))
        metrics = sample_metrics(sample)
        detected = self.drift.observe(sample, position=position)
        return [
            Notice(
                "feature_drift",
                notice.reason,
                {
                    **metrics,
                    "signal": ",".join(f"feature:{feature}" for feature in notice.features),
                    "value": notice.events[0].value,
                    **({"episode_since": notice.since} if notice.since is not None else {}),
                },
            )
            for notice in self.episodes.notices(detected, position=position)
        ]
