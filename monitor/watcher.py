"""``livelearn monitor``: watch the live model's rolling metric and act on confirmed breaches.

Each check reads the active learner's status from Redis, ignores it when it is stale, already judged,
or from a lineage the learner is leaving, then asks :class:`~monitor.judge.Judge` what to do and does
it through the :class:`~snapshotter.control.ControlPlane`. Rollbacks and freezes carry the epoch that was
judged, so when two monitors see the same breach only the first one acts.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from monitor.judge import Decision, Judge
from monitor.telemetry import MonitorMetrics
from snapshotter.audit import append_audit
from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings
from streaming.errors import ControlError

__all__ = ["Monitor"]

log = logging.getLogger(__name__)


class Monitor:
    """The quality guard of one model."""

    def __init__(self, settings: Settings, *, store: VersionStore | None = None,
                 registry: CollectorRegistry = REGISTRY, actor: str = "monitor") -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.control = ControlPlane(self.store)
        self.judge = Judge(settings)
        self.actor = actor
        self.telemetry = MonitorMetrics(registry, settings.model_name)
        self.telemetry.threshold.labels(settings.model_name, settings.monitor_metric).set(settings.monitor_threshold)
        self._last_seen: float | None = None
        self._failed = False
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Check every ``monitor_check_interval_seconds`` until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                self.check_once()
            except redis.RedisError as exc:  # keep guarding once Redis is back (the client retries first)
                log.error("check failed, Redis unavailable: %s", exc)
                self._failed = True
            self._stop.wait(self.settings.monitor_check_interval_seconds)

    def check_once(self) -> Decision:
        """Judge the newest learner status once and act on the decision."""
        s = self.settings
        status, epoch = self.store.status(), self.store.epoch()
        frozen = self.control.frozen() is not None
        self._update_gauges(frozen)
        if status is None:
            return Decision("none", "no active learner")
        if status["updated_at"] == self._last_seen:
            return Decision("none", "no new status since the last check")
        self._last_seen = status["updated_at"]
        if status.get("epoch", 0) != epoch:
            return Decision("none", f"learner still on epoch {status.get('epoch')}, lineage is on {epoch}")
        rolling = status["rolling"]
        decision = self.judge.decide(rolling, now=time.time(), frozen=frozen,
                                     rollback_times=self.control.recent_rollbacks(s.monitor_rollback_window_seconds))
        if decision.value is not None:
            self.telemetry.metric.labels(s.model_name, s.monitor_metric).set(decision.value)
        metrics = {k: v for k, v in rolling.items()}
        try:
            if decision.action == "rollback":
                target = self.control.rollback(actor=self.actor, reason=decision.reason, metrics=metrics,
                                               expected_epoch=epoch, automatic=True,
                                               fallback=s.monitor_fallback_version)
                self.telemetry.rollbacks.inc()
                log.warning("rolled back to version %d: %s", target, decision.reason)
            elif decision.action == "freeze":
                self.control.freeze(actor=self.actor, reason=decision.reason, metrics=metrics, expected_epoch=epoch)
                self.telemetry.freezes.inc()
                log.error("learning frozen: %s", decision.reason)
            elif decision.action == "resume":
                self.control.resume(actor=self.actor, reason=decision.reason, metrics=metrics)
                log.warning("learning resumed: %s", decision.reason)
            if decision.action in ("none", "insufficient", "rollback", "freeze", "resume"):
                self._failed = False
        except ControlError as exc:
            if "stale" in str(exc) or "already" in str(exc) or "not frozen" in str(exc):
                log.info("another actor got there first: %s", exc)  # e.g. a second monitor
            else:
                log.error("cannot %s: %s", decision.action, exc)
                self._failed = True
                append_audit(self.store.client, self.store.keys, self.store.audit_retention,
                             action=f"{decision.action}_failed", actor=self.actor, reason=str(exc), metrics=metrics)
        return decision

    def _update_gauges(self, frozen: bool) -> None:
        self.telemetry.frozen.set(1 if frozen else 0)
        self.telemetry.alert.set(1 if frozen or self._failed else 0)
        head, serving, pinned = self.store.head(), self.store.serving(), self.store.pinned()
        self.telemetry.head_version.set(head or 0)
        self.telemetry.serving_version.set(serving or 0)
        self.telemetry.pinned.set(1 if pinned is not None else 0)
