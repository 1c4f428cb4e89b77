"""``livelearn monitor``: judge every metric sample of the live model and act on confirmed breaches.

Learners record their rolling metrics in the model's history stream every ``history_every_events``
labelled events. The monitor reads that stream **in order, every sample**, from a cursor kept in Redis
together with the judge's state, so the decisions depend on the events, not on how fast they flow or
when the monitor looked: a burst shorter than any polling interval is still judged, a restarted monitor
carries on where the last one stopped, and two monitors share one cursor (one of them commits each
step; the other re-reads). Samples of a lineage a rollback abandoned, and samples a restarted learner
recorded twice, are skipped. Rollbacks and freezes carry the epoch that was judged, so when two
monitors see the same breach only the first one acts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from monitor.judge import Action, Decision, Judge, JudgeState
from monitor.telemetry import MonitorMetrics
from snapshotter.audit import append_audit
from snapshotter.connection import describe_failure, redis_failure
from snapshotter.control import ControlPlane
from snapshotter.cursor import CursorState, GuardCursor
from snapshotter.presence import check_in, sign_off
from snapshotter.status import parse_sample
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings
from streaming.errors import AlreadyFrozenError, ControlError, NotFrozenError, StaleEpochError, VersionNotFoundError

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

_BATCH = 1000  # samples judged per step


class Monitor:
    """The quality guard of one model."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VersionStore | None = None,
        registry: CollectorRegistry = REGISTRY,
        actor: str = "monitor",
    ) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.control = ControlPlane(self.store)
        self.judge = Judge(settings)
        self.actor = actor
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.telemetry = MonitorMetrics(registry, settings.model_name)
        self.telemetry.threshold.labels(settings.model_name, settings.monitor_metric).set(settings.monitor_threshold)
        self.cursor = GuardCursor(self.store.client, self.store.keys)
        self._failed = False
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Judge new samples as they arrive (waiting at most ``monitor_check_interval_seconds``) until stopped."""
        s = self.settings  # a blocked read must end well before the client's socket timeout
        block_ms = int(min(s.monitor_check_interval_seconds, 2.0, 0.8 * s.redis_timeout_seconds) * 1000)
        try:
            while not self._stop.is_set():
                try:
                    self.check_once(block_ms=block_ms)
                except redis.RedisError as exc:  # keep guarding once Redis is back (the client retries first)
                    code = redis_failure(exc)
                    log.error("check failed: %s; retrying", describe_failure(code, s.redis_url, exc) if code else exc)
                    self._failed = True
                    self._stop.wait(self.settings.monitor_check_interval_seconds)
        finally:
            with contextlib.suppress(redis.RedisError):
                sign_off(self.store.client, self.store.keys.monitors, self.id)

    # -- one step ---------------------------------------------------------------------------------
    def check_once(self, *, block_ms: int | None = None) -> list[Decision]:
        """Judge every sample recorded since the shared cursor (waiting up to ``block_ms`` for one)."""
        client, keys = self.store.client, self.store.keys
        now = time.time()
        check_in(client, keys.monitors, self.id, now=now)
        frozen = self.control.frozen() is not None
        self._update_gauges(frozen)
        start = self.cursor.load()
        self.judge.state = JudgeState(start.breaches, start.healthy_since)
        entries = self.cursor.entries(start.cursor, count=_BATCH, block_ms=block_ms)
        if not entries:
            return []
        cursor, state_epoch, last_scored = start.cursor, start.epoch, start.scored
        epoch = self.store.epoch()
        rollback_times = self.control.recent_rollbacks(self.settings.monitor_rollback_window_seconds)
        decisions = []
        for _entry_id, fields in entries:
            sample = parse_sample(fields)
            sample_epoch, scored = int(sample.get("epoch", 0)), int(sample.get("scored", 0))
            if sample_epoch != epoch:
                continue  # recorded before a rollback the learner had not applied yet: that lineage is gone
            if sample_epoch == state_epoch and scored <= last_scored:
                continue  # the same events again: a restarted learner replaying from its last snapshot
            if sample_epoch != state_epoch:
                self.judge.reset()
                state_epoch = sample_epoch
            last_scored = scored
            decision = self.judge.decide(
                sample, now=sample.get("time", now), rollback_times=rollback_times, frozen=frozen
            )
            decisions.append(decision)
            epoch, frozen = self._act(decision, sample, epoch, frozen)
            if decision.action is Action.ROLLBACK:
                rollback_times = self.control.recent_rollbacks(self.settings.monitor_rollback_window_seconds)
        cursor = entries[-1][0]
        judged = CursorState(
            cursor, state_epoch, last_scored, self.judge.state.breaches, self.judge.state.healthy_since
        )
        if not self.cursor.commit(start.cursor, judged):
            log.info("another monitor judged these samples first; re-reading the shared cursor")
        return decisions

    def _act(self, decision: Decision, sample: dict[str, float], epoch: int, frozen: bool) -> tuple[int, bool]:
        """Carry out ``decision``; returns the (epoch, frozen) the following samples are judged under."""
        s = self.settings
        if decision.value is not None:
            self.telemetry.metric.labels(s.model_name, s.monitor_metric).set(decision.value)
        metrics = {
            k: v
            for k, v in sample.items()
            if k not in ("time", "epoch", "version", "scored") and not k.startswith("offset:")
        }
        try:
            if decision.action is Action.ROLLBACK:
                # everything up to the judged sample is discarded, even if the learner dies before it reads on
                consumed = {
                    s.events_topic: {k.split(":", 1)[1]: int(v) for k, v in sample.items() if k.startswith("offset:")}
                }
                target = self.control.rollback(
                    actor=self.actor,
                    reason=decision.reason,
                    metrics=metrics,
                    expected_epoch=epoch,
                    automatic=True,
                    fallback=s.monitor_fallback_version,
                    consumed=consumed,
                )
                self.telemetry.rollbacks.inc()
                log.warning("rolled back to version %d: %s", target, decision.reason)
            elif decision.action is Action.FREEZE:
                self.control.freeze(actor=self.actor, reason=decision.reason, metrics=metrics, expected_epoch=epoch)
                self.telemetry.freezes.inc()
                log.error("learning frozen: %s", decision.reason)
            elif decision.action is Action.RESUME:
                self.control.resume(actor=self.actor, reason=decision.reason, metrics=metrics)
                log.warning("learning resumed: %s", decision.reason)
            if decision.action not in (Action.WAIT, Action.COOLDOWN):
                self._failed = False
        except (StaleEpochError, AlreadyFrozenError, NotFrozenError) as exc:
            log.info("another actor got there first: %s", exc)  # e.g. a second monitor
        except (ControlError, VersionNotFoundError) as exc:
            log.error("cannot %s: %s", decision.action, exc)
            self._failed = True
            append_audit(
                self.store.client,
                self.store.keys,
                self.store.audit_retention,
                action=f"{decision.action}_failed",
                actor=self.actor,
                reason=str(exc),
                metrics=metrics,
            )
        if decision.action in (Action.ROLLBACK, Action.FREEZE, Action.RESUME):
            return self.store.epoch(), self.control.frozen() is not None
        return epoch, frozen

    def _update_gauges(self, frozen: bool) -> None:
        self.telemetry.frozen.set(1 if frozen else 0)
        self.telemetry.alert.set(1 if frozen or self._failed else 0)
        head, serving, pinned = self.store.head(), self.store.serving(), self.store.pinned()
        self.telemetry.head_version.set(head or 0)
        self.telemetry.serving_version.set(serving or 0)
        self.telemetry.pinned.set(1 if pinned is not None else 0)
