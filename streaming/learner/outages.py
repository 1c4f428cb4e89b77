"""How a learner waits out Redis and Kafka trouble: visibly (log lines, gauges) and with backoff.

The learner treats an outage as it treats a restart: it leaves its active state, waits here, then
re-activates from the newest snapshot. Only failures waiting cannot cure (a missing permission, wrong
credentials) are not waited out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import ExponentialBackoff

from snapshotter.connection import describe_failure, redis_failure
from streaming.config import Settings
from streaming.health import Heartbeat
from streaming.learner.telemetry import LearnerMetrics

__all__ = ["Outages"]

log = logging.getLogger(__name__)


class Outages:
    """Waits for Redis or Kafka on behalf of one learner; returns early when the learner is stopped."""

    def __init__(
        self,
        settings: Settings,
        telemetry: LearnerMetrics,
        stop: threading.Event,
        heartbeat: Heartbeat,
        probe_redis: Callable[[], None],
    ) -> None:
        self.settings, self.telemetry, self._stop, self.heartbeat = settings, telemetry, stop, heartbeat
        self._probe_redis = probe_redis  # a small write: refused while Redis is out of memory, read-only...
        self._kafka_failures = 0
        self._kafka_backoff = ExponentialBackoff(cap=10.0, base=0.2)

    def wait_for_redis(self, code: str, exc: BaseException) -> None:
        """Back off until Redis answers and accepts writes again (or the learner stops)."""
        started = time.monotonic()
        self.telemetry.redis_down(code)
        log.error(
            "%s; pausing (no event is consumed, the newest snapshot is safe) until it recovers",
            describe_failure(code, self.settings.redis_url, exc),
        )
        backoff, failures, next_log = ExponentialBackoff(cap=5.0, base=0.1), 0, started + 30
        while not self._stop.wait(backoff.compute(failures)):
            self.heartbeat.beat("waiting", ready=False, detail=f"Redis unavailable ({code})")
            try:
                self._probe_redis()
                break
            except redis.RedisError as again:
                failures += 1
                code = redis_failure(again) or code
                if time.monotonic() >= next_log:
                    log.error(
                        "still waiting for Redis after %.0fs: %s",
                        time.monotonic() - started,
                        describe_failure(code, self.settings.redis_url, again),
                    )
                    next_log = time.monotonic() + 30
        else:
            log.warning(
                "stopping while Redis is unavailable: no final snapshot; the next learner replays from the newest one"
            )
            return
        self.telemetry.redis_up.set(1)
        log.warning("Redis is back after %.1fs; resuming from the newest snapshot", time.monotonic() - started)

    def pause_for_kafka(self, exc: BaseException) -> None:
        """Kafka failed while learning: wait a little longer each time before re-activating."""
        self._kafka_failures += 1
        self.telemetry.kafka_up.set(0)
        pause = self._kafka_backoff.compute(self._kafka_failures)
        log.error("Kafka failed while learning (%s); resuming from the newest snapshot in %.1fs", exc, pause)
        self.heartbeat.beat("waiting", ready=False, detail=f"Kafka failed: {exc}")
        self._stop.wait(pause)

    def kafka_recovered(self) -> None:
        self._kafka_failures = 0
