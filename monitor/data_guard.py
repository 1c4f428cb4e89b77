"""The monitor's watch over the data itself: feeds every metric sample to the :class:`SignalWatch` and acts.

* an **incident start** opens a data-quality incident: quarantine the versions written since the change
  point, freeze learning, roll back to the newest stable version written before it
  (:class:`~snapshotter.incidents.Incidents`);
* an **incident end** closes it and resumes learning;
* **feature drift** is a notice (audited with the shared cursor's move, so once) and nothing more.

The watch's state (references, recent blocks, detectors) is a function of the samples, so a starting
monitor rebuilds it by replaying the history stream without acting, and every monitor of a model agrees; a
monitor that lost a batch to another one goes back to its :meth:`DataGuard.checkpoint` and replays.
The relative threshold (:class:`~monitor.prequential.Threshold`) is rebuilt the same way.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from monitor.prequential import Threshold, meets_threshold
from monitor.signals import SignalEvent, SignalWatch
from monitor.telemetry import MonitorMetrics
from snapshotter.cursor import Notice
from snapshotter.incidents import Incidents
from snapshotter.status import MetricSample
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.errors import ControlError, IncidentOpenError, NoIncidentError, StaleEpochError

__all__ = ["DataGuard", "sample_metrics"]

log = logging.getLogger(__name__)

_NOT_METRICS = ("time", "epoch", "version", "scored")


def sample_metrics(sample: MetricSample) -> dict[str, float]:
    """What an audit entry records of a sample: metrics, signals and stream position (no per-partition fields)."""
    return {k: v for k, v in sample.items() if k not in _NOT_METRICS and not k.startswith(("offset:", "feature:"))}


def consumed_offsets(sample: MetricSample, topic: str) -> dict[str, dict[str, int]]:
    """The per-partition positions a sample was recorded at."""
    return {topic: {k.split(":", 1)[1]: int(v) for k, v in sample.items() if k.startswith("offset:")}}


class DataGuard:
    """Signals, the relative threshold, and the incidents they open and close."""

    def __init__(
        self, settings: Settings, store: VersionStore, incidents: Incidents, telemetry: MonitorMetrics, actor: str
    ) -> None:
        self.settings, self.store, self.incidents, self.telemetry, self.actor = (
            settings,
            store,
            incidents,
            telemetry,
            actor,
        )
        self.watch = SignalWatch(settings)
        self.threshold = Threshold(settings)
        self.scored = -1  # the highest ``scored`` fed: a sample at or below it is a replay of blocks already seen
        self.notices: list[Notice] = []  # caused by the samples fed with an epoch since the last drain

    def checkpoint(self) -> tuple[SignalWatch, Threshold, int]:
        """The state fed so far, to go back to if the batch is lost to another monitor."""
        memo = {id(self.settings): self.settings}
        return copy.deepcopy(self.watch, memo), copy.deepcopy(self.threshold, memo), self.scored

    def restore(self, checkpoint: tuple[SignalWatch, Threshold, int]) -> None:
        self.watch, self.threshold, self.scored = checkpoint
        self.notices = []

    def drain(self) -> list[Notice]:
        notices, self.notices = self.notices, []
        return notices

    def feed(self, sample: MetricSample, *, epoch: int | None = None) -> bool:
        """Feed one sample in stream order; with ``epoch`` (the lineage epoch it is judged under) act on what it
        causes, without (replaying history) only learn from it. ``False`` for a replayed sample (skipped)."""
        scored = int(sample.get("scored", 0))
        if scored <= self.scored:
            return False
        self.scored = scored
        events = self.watch.observe(sample, threshold=self.threshold.value())
        self.threshold.observe(sample)
        if epoch is not None:
            for event in events:
                self._act(event, sample, epoch)
        return True

    def sync_incident(self) -> None:
        """Align the watch with the incident Redis records (an operator, or a trimmed history)."""
        record = self.store.incident()
        if record is None:
            self.watch.incident = None
        elif self.watch.incident is None:
            self.watch.resume_incident(record.get("signal", "label_rate"), int(record.get("change_point", 0)))

    def _act(self, event: SignalEvent, sample: MetricSample, epoch: int) -> None:
        metrics: dict[str, Any] = {**sample_metrics(sample), "signal": event.signal, "value": event.value}
        if event.reference is not None:
            metrics["reference"] = event.reference
        if event.kind == "feature_drift":
            self.notices.append(Notice("feature_drift", event.reason, metrics))
        elif event.kind == "incident_start":
            self._open(event, sample, metrics, epoch)
        else:
            self._close(event, metrics)

    def _open(self, event: SignalEvent, sample: MetricSample, metrics: dict[str, Any], epoch: int) -> None:
        assert event.change_point is not None
        try:
            opened = self.incidents.open(
                signal=event.signal,
                change_point=event.change_point,
                position=event.position,
                actor=self.actor,
                reason=event.reason,
                metrics=metrics,
                expected_epoch=epoch,
                consumed=consumed_offsets(sample, self.settings.events_topic),
                fallback=self.settings.monitor_fallback_version,
            )
        except (IncidentOpenError, StaleEpochError) as exc:
            log.info("another monitor got there first: %s", exc)
            return
        except ControlError as exc:
            log.error("cannot open the incident: %s", exc)
            return
        self.telemetry.incidents.inc()
        log.error(
            "data-quality incident %d: %s; learning frozen, versions %s quarantined, lineage back to %s",
            opened.id,
            event.reason,
            opened.quarantined or "none",
            opened.target or "- (no stable version before the shift: operator needed)",
        )

    def _close(self, event: SignalEvent, metrics: dict[str, Any]) -> None:
        record = self.store.incident()
        if record is None:
            return
        try:
            self.incidents.close(int(record["id"]), actor=self.actor, reason=event.reason, metrics=metrics)
        except NoIncidentError as exc:
            log.info("the incident was closed already: %s", exc)
            return
        log.warning("data-quality incident %s over: %s; learning resumed", record["id"], event.reason)

    def healthy(self, sample: MetricSample) -> bool:
        return meets_threshold(sample, self.settings, self.threshold.value())
