"""``livelearn monitor``: judge every metric sample of the live model and act, in event order.

Learners record their rolling metrics and data signals in the model's history stream every
``history_every_events`` labelled events. The monitor reads that stream **in order, every sample**, from a
cursor kept in Redis together with the judge's state, so the decisions depend on the events, not on how fast
they flow or when the monitor looked: a burst shorter than any polling interval is still judged, a restarted
monitor carries on where the last one stopped, and two monitors share one cursor (one of them commits each
step; the other re-reads). Each sample goes

* to the **data guard** (:mod:`monitor.data_guard`): feature drift (audited once), the relative threshold;
* to the **judge** (:mod:`monitor.judge`), if it belongs to the current lineage: breaches of the guarded
  metric, rollbacks, suppressed breaches (logged, audited as ``breach_suppressed``, alerted), freezes,
  resumes. During a data-quality incident (which the learner opened at the exact event, see
  :mod:`streaming.learner.incidents`; the sample says so) a confirmed breach is only reported.

Samples a restarted learner recorded twice are skipped. Every action carries the epoch that was judged, so
when two monitors see the same breach only the first one acts.

``livelearn_alert`` (an operator is needed) is 1 while learning is frozen, while a confirmed breach is suppressed,
while the monitor's checks fail (Redis down, or an error no outage explains: cleared by the next check that
works) and after a control action failed (cleared by the next one that succeeds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from monitor.data_guard import DataGuard, consumed_offsets
from monitor.judge import Action, Decision, Judge, JudgeState
from monitor.prometheus import MonitorMetrics
from snapshotter.audit import append_audit
from snapshotter.connection import FATAL_FAILURES, as_text, describe_failure, observe_attempts, redis_failure
from snapshotter.control import ControlPlane
from snapshotter.cursor import START, CursorState, GuardCursor, Notice
from snapshotter.incidents import NEW_NORMAL
from snapshotter.outage import RedisOutage
from snapshotter.presence import check_in, sign_off
from snapshotter.status import MetricSample, parse_sample, sample_metrics
from snapshotter.store import VersionStore, connect_settings
from streaming.config import Settings
from streaming.errors import (
    AlreadyFrozenError,
    ConnectionFailedError,
    ControlError,
    NotFrozenError,
    StaleEpochError,
    VersionNotFoundError,
)
from streaming.health import Heartbeat

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

_BATCH = 1000  # samples judged per step


def _id(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


class Monitor:
    """The quality guard of one model.

    :meth:`run` is ``livelearn monitor``: it calls :meth:`check_once` until :meth:`stop`, waiting out Redis
    outages. Each check judges every metric sample recorded since the shared cursor (see the module's docstring)
    and acts through the :class:`~snapshotter.control.ControlPlane`: rollback, freeze, resume.

    Parameters
    ----------
    settings
        The settings: the guard's rules (``settings.guard``), Redis, the probes' staleness, the model's name and
        events topic.
    store
        The model's version store (default: one on a new connection to ``settings.redis``, not checked until the
        first call: a Redis down at start is waited out like any outage).
    registry
        Where its Prometheus metrics are registered (default: the process's ``REGISTRY``).
    actor
        Who its actions are audited as (default ``"monitor"``).
    heartbeat
        What ``/healthz`` and ``/readyz`` read (default: a new one, stale after ``health_stale_seconds``).

    Examples
    --------
    >>> import fakeredis
    >>> from prometheus_client import CollectorRegistry
    >>> store = VersionStore(fakeredis.FakeRedis(), "shop")
    >>> monitor = Monitor(Settings(model_name="shop"), store=store, registry=CollectorRegistry())
    >>> monitor.check_once()  # no learner recorded a sample yet: nothing to judge
    []
    >>> store.client.zcard(store.keys.monitors)  # but the monitor checked in
    1
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: VersionStore | None = None,
        registry: CollectorRegistry = REGISTRY,
        actor: str = "monitor",
        heartbeat: Heartbeat | None = None,
    ) -> None:
        # the groups the monitor uses: the guard's rules, Redis, the probes; and the model's name and events topic
        self.guard, self.redis = settings.guard, settings.redis
        self.model_name, self.events_topic = settings.model_name, settings.events_topic
        self.heartbeat = heartbeat or Heartbeat(settings.probes.health_stale_seconds)
        # not checked here: a Redis down or hung at start is waited out like any outage (run())
        self.store = store or VersionStore.for_settings(connect_settings(self.redis, check=False), settings.store)
        self.control = ControlPlane(self.store)
        self.judge = Judge(self.guard)
        self.actor = actor
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.telemetry = MonitorMetrics(registry, self.model_name)
        self.telemetry.threshold.labels(self.model_name, self.guard.metric).set(self.guard.threshold)
        self.cursor = GuardCursor(self.store.client, self.store.keys, self.store.audit_retention)
        self.data = DataGuard(self.guard)
        self._fed = START  # the newest history entry the data guard has seen
        # what livelearn_alert is made of (_publish_alert): the last check failed; the last control action failed;
        # learning was frozen at the last check. Kept apart so a working check clears only its own failure.
        self._check_failed = self._action_failed = self._frozen = False
        self._stop = threading.Event()
        self.outage = RedisOutage(
            self.redis.url,
            log=log,
            doing="the monitor judges nothing meanwhile (samples wait in the history) and waits for it with backoff",
            back="judging again from the shared cursor",
            on_down=self._redis_down,
            on_up=lambda: self.telemetry.redis_up.set(1),
        )
        observe_attempts(self.store.client, self.outage)  # a call that gets no answer is reported at once

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Judge new samples as they arrive (waiting at most ``monitor_check_interval_seconds``) until stopped.

        Redis down, hung or refusing writes — also at start — is one outage (:class:`RedisOutage`): logged once
        within about a socket timeout, ``livelearn_redis_up`` 0, checks retried with a growing backoff, over at the
        first check that works (it writes: a check-in, the cursor). While checks fail, ``livelearn_alert`` is 1;
        the first check that works clears that again. Rejected credentials or a missing permission end the monitor
        with an error naming them.
        """
        guard, url = self.guard, self.redis.url  # a blocked read must end well before the client's socket timeout
        block_ms = int(min(guard.check_interval_seconds, 2.0, 0.8 * self.redis.timeout_seconds) * 1000)
        try:
            while not self._stop.is_set():
                try:
                    self.check_once(block_ms=block_ms)
                except redis.RedisError as exc:  # keep guarding once Redis is back (the client retries first)
                    code = redis_failure(exc)
                    if code in FATAL_FAILURES:
                        raise ConnectionFailedError(describe_failure(code, url, exc)) from None
                    self._set_check_failed(True)
                    if code is None:  # not an outage (a bug, or data livelearn did not write): say so each time
                        self.heartbeat.beat("monitor", ready=False, detail=f"Redis failed: {exc}")
                        log.error("check failed: %s; retrying", exc)
                        self._stop.wait(guard.check_interval_seconds)
                        continue
                    self.outage.failed(code, exc)
                    self.heartbeat.beat("monitor", ready=False, detail=f"Redis unavailable ({code})")
                    self._stop.wait(self.outage.pause())
                    continue
                self.outage.confirmed()  # the check worked (it wrote its check-in): an outage is over
                self._set_check_failed(False)  # and no longer calls an operator
                self.heartbeat.beat("monitor")
        finally:
            if not self.outage.down:  # (while Redis hangs, signing off would only hang the exit)
                with contextlib.suppress(redis.RedisError):
                    sign_off(self.store.client, self.store.keys.monitors, self.id)

    def _redis_down(self, code: str, detail: str) -> None:
        self.telemetry.redis_down(code)
        self.heartbeat.beat("monitor", ready=False, detail=f"Redis unavailable ({code})")

    # -- one step ---------------------------------------------------------------------------------
    def _replay(self, until: str) -> None:
        """Feed the data guard the history it has not seen up to ``until``, without acting (warm-up, or samples
        another monitor judged meanwhile)."""
        client, history = self.store.client, self.store.keys.history
        while _id(self._fed) < _id(until):
            entries: list[tuple[Any, dict[Any, Any]]] = client.xrange(  # type: ignore[assignment]
                history, min=f"({self._fed}", max=until, count=_BATCH
            )
            if not entries:
                break
            for entry_id, fields in entries:
                self.data.feed(parse_sample(fields))
                self._fed = as_text(entry_id)
        self._fed = max(self._fed, until, key=_id)

    def check_once(self, *, block_ms: int | None = None) -> list[Decision]:
        """Judge every sample recorded since the shared cursor (waiting up to ``block_ms`` for one)."""
        client, keys = self.store.client, self.store.keys
        now = time.time()
        check_in(client, keys.monitors, self.id, now=now)
        frozen = self.control.frozen() is not None
        start = self.cursor.load()
        self._replay(start.cursor)
        self.judge.state = JudgeState.from_dict(start.judge)
        self._update_gauges(frozen)
        entries = self.cursor.entries(start.cursor, count=_BATCH, block_ms=block_ms)
        if not entries:
            return []
        state_epoch, last_scored = start.epoch, start.scored
        epoch = self.store.epoch()
        decisions: list[Decision] = []
        notices: list[Notice] = []
        checkpoint, fed, settled = self.data.checkpoint(), self._fed, self._settled()  # (once per check)
        for entry_id, fields in entries:
            sample = parse_sample(fields)
            if _id(entry_id) > _id(self._fed):
                self._fed = entry_id
                notices += self.data.feed(sample) or []
            sample_epoch, scored = int(sample.get("epoch", 0)), int(sample.get("scored", 0))
            if sample_epoch != epoch:
                continue  # recorded before a rollback the learner had not applied yet: that lineage is gone
            if sample_epoch == state_epoch and scored <= last_scored:
                continue  # the same events again: a restarted learner replaying from its last snapshot
            if sample_epoch != state_epoch:
                self.judge.reset()
                state_epoch = sample_epoch
            last_scored = scored
            decision = self._decide(sample, frozen, now, settled)
            decisions.append(decision)
            epoch, frozen = self._act(decision, sample, epoch, frozen)
            if decision.action is Action.COOLDOWN and decision.notify:
                notices.append(Notice("breach_suppressed", decision.reason, sample_metrics(sample)))
        judged = CursorState(entries[-1][0], state_epoch, last_scored, self.judge.state.to_dict())
        if self.cursor.commit(start.cursor, judged, actor=self.actor, notices=notices):
            self._report(notices)
        else:  # its notices are the winner's to record; go back and replay what it judged
            log.info("another monitor judged these samples first; re-reading the shared cursor")
            self.data.restore(checkpoint)
            self._fed = fed
        self._update_gauges(frozen)
        return decisions

    def _report(self, notices: list[Notice]) -> None:
        """Log and count the notices this monitor recorded."""
        for notice in notices:
            position = int(notice.metrics.get("stream_position", 0))
            if notice.action == "feature_drift":  # one notice may hold an episode's detections: each counted
                for signal in str(notice.metrics.get("signal", "")).split(","):
                    self.telemetry.feature_drift.labels(self.model_name, signal.removeprefix("feature:")).inc()
                log.warning("feature drift at stream position %d: %s", position, notice.reason)
            else:
                self.telemetry.suppressed.inc()
                log.warning("breach suppressed at stream position %d: %s", position, notice.reason)

    def _settled(self) -> int | None:
        """Where an operator last declared a new normal (learning went on after closing an incident), if so: the
        model learns it from there, a cooldown's worth of events."""
        released, client = self.store.keys.released, self.store.client  # (by field: its offsets are msgpack, not text)
        position, cause = (as_text(client.hget(released, field) or b"") for field in ("position", "cause"))
        return int(position) if cause == NEW_NORMAL and position.isdigit() else None

    def _decide(self, sample: MetricSample, frozen: bool, now: float, settled: int | None = None) -> Decision:
        threshold = self.data.threshold.value()
        if threshold is None:
            return Decision(Action.INSUFFICIENT, "the relative threshold has no reference level yet")
        rollbacks = [(r.position, r.time) for r in self.control.recent_rollbacks()]
        return self.judge.decide(
            sample,
            position=int(sample.get("stream_position", 0)),
            now=sample.get("time", now),
            rollbacks=rollbacks,
            frozen=frozen,
            threshold=threshold,
            incident=bool(sample.get("incident")),  # as the learner saw it at that event, not as Redis says now
            also=self.data.threshold.breaches(sample),  # the further rules (monitor_also) it breaks
            shortfalls=self.data.threshold.shortfalls(sample),  # where a breach began: a rollback goes before it
            settled=settled,
        )

    def _act(self, decision: Decision, sample: MetricSample, epoch: int, frozen: bool) -> tuple[int, bool]:
        """Carry out ``decision``; returns the (epoch, frozen) the following samples are judged under."""
        if decision.value is not None:
            self.telemetry.metric.labels(self.model_name, self.guard.metric).set(decision.value)
            for rule in self.guard.rules:  # and the further guarded metrics (monitor_also)
                if isinstance(sample.get(rule.metric), float):
                    self.telemetry.metric.labels(self.model_name, rule.metric).set(sample[rule.metric])
        metrics = sample_metrics(sample)
        position = int(sample.get("stream_position", 0))
        if decision.change_point is not None:
            metrics["change_point"] = decision.change_point
        try:
            if decision.action is Action.ROLLBACK:
                target = self.control.rollback(
                    actor=self.actor,
                    reason=decision.reason,
                    metrics=metrics,
                    expected_epoch=epoch,
                    automatic=True,
                    fallback=self.guard.fallback_version,
                    position=position,
                    change_point=decision.change_point,  # the newest stable version before the degradation
                    # everything up to the judged sample is discarded, even if the learner dies before reading on
                    consumed=consumed_offsets(sample, self.events_topic),
                    # and how many events were scored up to there (the status, if fresh, tells all the counters)
                    counters={"events_seen": int(sample["events_seen"])} if "events_seen" in sample else None,
                )
                self.telemetry.rollbacks.inc()
                log.warning("rolled back to version %d: %s", target, decision.reason)
                point = decision.change_point
                if point is not None and self.store.meta(target).position > point:  # no stable version before it
                    log.warning(
                        "no stable version from before the change point %d: version %d may have learned some of the "
                        "degradation (LIVELEARN_MONITOR_FALLBACK_VERSION names one to go to instead)",
                        point,
                        target,
                    )
            elif decision.action is Action.FREEZE:
                self.control.freeze(actor=self.actor, reason=decision.reason, metrics=metrics, expected_epoch=epoch)
                self.telemetry.freezes.inc()
                log.error("learning frozen: %s", decision.reason)
            elif decision.action is Action.RESUME:
                self.control.resume(actor=self.actor, reason=decision.reason, metrics=metrics)
                log.warning("learning resumed: %s", decision.reason)
            if decision.action not in (Action.WAIT, Action.COOLDOWN):
                self._action_failed = False
        except (StaleEpochError, AlreadyFrozenError, NotFrozenError) as exc:
            log.info("another actor got there first: %s", exc)  # e.g. a second monitor
        except (ControlError, VersionNotFoundError) as exc:
            log.error("cannot %s: %s", decision.action, exc)
            self._action_failed = True
            self._audit(f"{decision.action}_failed", str(exc), metrics)
        if decision.action in (Action.ROLLBACK, Action.FREEZE, Action.RESUME):
            return self.store.epoch(), self.control.frozen() is not None
        return epoch, frozen

    def _audit(self, action: str, reason: str, metrics: dict[str, Any]) -> None:
        append_audit(
            self.store.client,
            self.store.keys,
            self.store.audit_retention,
            action=action,
            actor=self.actor,
            reason=reason,
            metrics=metrics,
        )

    def _set_check_failed(self, failed: bool) -> None:
        """A check failed (``livelearn_alert`` 1 at once: the monitor guards nothing meanwhile), or worked."""
        self._check_failed = failed
        self._publish_alert()

    def _publish_alert(self) -> None:
        needed = self._frozen or self._check_failed or self._action_failed or self.judge.state.suppressed
        self.telemetry.alert.set(1 if needed else 0)

    def _update_gauges(self, frozen: bool) -> None:
        self.telemetry.frozen.set(1 if frozen else 0)
        self._frozen = frozen
        self._publish_alert()
        head, serving, pinned = self.store.head(), self.store.serving(), self.store.pinned()
        self.telemetry.head_version.set(head or 0)
        self.telemetry.serving_version.set(serving or 0)
        self.telemetry.pinned.set(1 if pinned is not None else 0)
        self.telemetry.incident_open.set(0 if self.store.incident() is None else 1)
        self.telemetry.backup_age.set(self.store.backup_age())
        threshold = self.data.threshold.value()
        if threshold is not None:
            self.telemetry.threshold.labels(self.model_name, self.guard.metric).set(threshold)
        for metric, limit in self.data.threshold.limits().items():  # the further rules' bounds known so far
            self.telemetry.threshold.labels(self.model_name, metric).set(limit)
