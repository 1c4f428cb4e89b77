"""Whether the broker is answering, as a learner sees it (see :class:`BrokerWatch`)."""

from __future__ import annotations

import logging
import time

from streaming.config import KafkaSettings
from streaming.transport.clients import probe
from streaming.transport.records import Consumer, TopicPartition

__all__ = ["BrokerWatch"]

log = logging.getLogger(__name__)


class BrokerWatch:
    """Whether the broker is answering, as a learner sees it.

    Records from a poll count as an answer. When polls come back empty (an idle topic looks the same as a
    stalled broker), a small request asks at most every ``interval`` seconds. After ``unreachable_after``
    seconds without an answer the broker counts as unreachable: logged once, and lag is unknown (the
    high-water marks are stale), never 0.
    """

    def __init__(self, consumer: Consumer, kafka: KafkaSettings, interval: float) -> None:
        self.consumer, self.kafka, self.interval = consumer, kafka, interval
        self.last_answer = self.next_probe = time.monotonic()
        self.up = True

    def observe(self, answered: bool, partitions: list[TopicPartition]) -> bool:
        """Update with one loop iteration (``answered``: the poll returned records); returns ``up``."""
        now = time.monotonic()
        if answered:
            self.last_answer = now
        elif now >= self.next_probe:
            timeout_ms = int(min(2.0, self.kafka.unreachable_seconds / 2) * 1000)
            if probe(self.consumer, partitions, timeout_ms):
                self.last_answer = time.monotonic()
            self.next_probe = time.monotonic() + self.interval
        silent = time.monotonic() - self.last_answer
        if self.up and silent > self.kafka.unreachable_seconds:
            self.up = False
            log.error(
                "Kafka at %s has not answered for %.0fs; waiting for it (lag unknown)",
                self.kafka.bootstrap,
                silent,
            )
        elif not self.up and silent <= self.kafka.unreachable_seconds:
            self.up = True
            log.warning("Kafka at %s answers again", self.kafka.bootstrap)
        return self.up
