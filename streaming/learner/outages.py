"""How a learner waits out Redis and Kafka trouble: visibly (log lines, gauges) and with backoff.

The learner treats an outage as it treats a restart: it leaves its active state, waits here, then
re-activates from the newest snapshot. Only failures waiting cannot cure (a missing permission, wrong
credentials) are not waited out. A Redis outage is one :class:`~snapshotter.outage.RedisOutage`: reported
within about one socket timeout (the client's retries tell :class:`Outages` of a call that gets no answer),
counted once, waited out with a backoff that keeps growing, and over when the learner's own work succeeds again
(:meth:`Outages.redis_confirmed`), not when a probe does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.backoff import ExponentialBackoff

from snapshotter.connection import FATAL_FAILURES, redis_failure
from snapshotter.outage import RedisOutage
from streaming.config import RedisSettings, Settings
from streaming.health import Heartbeat
from streaming.learner.prometheus import LearnerMetrics

__all__ = ["Outages"]

log = logging.getLogger(__name__)


class Outages:
    """Waits for Redis or Kafka on behalf of one learner; returns early when the learner is stopped.

    It is the :class:`~snapshotter.connection.AttemptObserver` of the learner's Redis client.
    """

    def __init__(
        self,
        redis: RedisSettings | Settings,
        telemetry: LearnerMetrics,
        stop: threading.Event,
        heartbeat: Heartbeat,
        probe_redis: Callable[[], None],
    ) -> None:
        self.telemetry, self._stop, self.heartbeat = telemetry, stop, heartbeat
        self._probe_redis = probe_redis  # a small write: refused while Redis is out of memory, read-only...
        self.redis = RedisOutage(
            RedisSettings.of(redis).url,
            log=log,
            doing="the learner stops consuming (the newest snapshot is safe) and waits for it with backoff",
            back="resumed from the newest snapshot",
            on_down=self._redis_down,
            on_up=lambda: self.telemetry.redis_up.set(1),
        )
        self._kafka_failures = 0
        self._kafka_backoff = ExponentialBackoff(cap=10.0, base=0.2)

    def _redis_down(self, code: str, detail: str) -> None:
        self.telemetry.redis_down(code)
        self.heartbeat.beat("waiting", ready=False, detail=f"Redis unavailable ({code})")

    # -- the client's retries report here (AttemptObserver) ---------------------------------------
    def unanswered(self, exc: Exception, since: float) -> None:
        self.redis.unanswered(exc, since)

    def answered(self, since: float) -> None:
        self.redis.answered(since)

    def gave_up(self, exc: Exception) -> None:
        self.redis.gave_up(exc)

    # -- the learner -------------------------------------------------------------------------------
    @property
    def redis_down(self) -> bool:
        """A Redis outage is open: from its first failed call until :meth:`redis_confirmed`."""
        return self.redis.down

    def wait_for_redis(self, code: str, exc: BaseException) -> None:
        """Back off until Redis accepts a write again (or the learner stops); the outage stays open until the
        learner's own work succeeds (:meth:`redis_confirmed`). A failure waiting cannot cure is raised."""
        self.redis.failed(code, exc)
        self.heartbeat.beat("waiting", ready=False, detail=f"Redis unavailable ({code})")
        while not self._stop.wait(self.redis.pause()):
            self.heartbeat.beat("waiting", ready=False, detail=f"Redis unavailable ({self.redis.code})")
            try:
                self._probe_redis()
            except redis.RedisError as again:
                now = redis_failure(again)
                if now in FATAL_FAILURES:
                    raise
                self.redis.still_failing(now or code, again)
                continue
            self.redis.resumed()
            return
        log.warning(
            "stopping while Redis is unavailable: no final snapshot; the next learner replays from the newest one"
        )

    def redis_confirmed(self) -> None:
        """The learner's own work succeeded (a version written, or with nothing to write its status, or a
        standby's check-in): an open outage is over. Cheap when there is none."""
        self.redis.confirmed()

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
