"""Kafka clients for livelearn, built from :class:`~streaming.config.Settings`.

Consumers never auto-commit: a learner's position lives in its snapshots, and the offsets it
commits after each snapshot are for lag dashboards only. Lag uses the fetch high-water mark
(``consumer.highwater``), which is exact on brokers whose ListOffsets answers lag behind.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streaming.config import Settings
from streaming.errors import BrokerUnavailableError, ConnectionFailedError

__all__ = [
    "BrokerWatch",
    "ensure_topics",
    "lag",
    "livelearn_topics",
    "make_consumer",
    "make_producer",
    "probe",
    "topic_partitions",
]

log = logging.getLogger(__name__)


def _unreachable(settings: Settings, exc: Exception) -> ConnectionFailedError:
    return BrokerUnavailableError(
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); start the broker or set LIVELEARN_KAFKA_BOOTSTRAP"
    )


def make_consumer(settings: Settings) -> KafkaConsumer:
    """A consumer with manual assignment in mind: no auto-commit, group only for committed offsets."""
    try:
        return KafkaConsumer(
            **settings.kafka_client_options(),
            group_id=settings.consumer_group_name,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            max_poll_records=settings.poll_max_records,
        )
    except KafkaError as exc:
        raise _unreachable(settings, exc) from None


def make_producer(settings: Settings, **options: Any) -> KafkaProducer:
    try:
        return KafkaProducer(**settings.kafka_client_options(), **options)
    except KafkaError as exc:
        raise _unreachable(settings, exc) from None


def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create each topic with the given partition count unless it exists already."""
    try:
        admin = KafkaAdminClient(**settings.kafka_client_options())
    except KafkaError as exc:
        raise _unreachable(settings, exc) from None
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    except KafkaError as exc:
        raise ConnectionFailedError(
            f"could not create topics {sorted(topics)} on {settings.kafka_bootstrap}: {exc}"
        ) from None
    finally:
        admin.close()


def livelearn_topics(settings: Settings, partitions: int = 1) -> dict[str, int]:
    """Every topic a learner uses, with its partition count: events, dead letters and predictions.

    >>> sorted(livelearn_topics(Settings(events_topic="shop"), 3).items())
    [('shop', 3), ('shop.dlq', 1), ('shop.predictions', 3)]
    """
    return {
        settings.events_topic: partitions,
        settings.dead_letter_topic_name: 1,
        settings.predictions_topic_name: partitions,
    }


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic``; raises :class:`ConnectionFailedError` when the topic is unknown."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ConnectionFailedError(
            f"topic {topic!r} does not exist on the broker; create it with `livelearn topics` (with the dead-letter "
            "and predictions topics) or fix LIVELEARN_EVENTS_TOPIC"
        )
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def probe(consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_ms: int) -> bool:
    """Whether the broker answers a small request (the partitions' end offsets) within ``timeout_ms``.

    Only the answer matters: some brokers under-report "latest" offsets, so lag uses high-water marks.
    """
    try:
        consumer.end_offsets(partitions, timeout_ms=timeout_ms)
    except KafkaError:
        return False
    return True


def lag(consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> int | None:
    """Events between ``positions`` and the high-water marks; ``None`` until every mark is known."""
    total = 0
    for tp, position in positions.items():
        high = consumer.highwater(tp)
        if high is None:
            return None
        total += max(0, high - position)
    return total


class BrokerWatch:
    """Whether the broker is answering, as a learner sees it.

    Records from a poll count as an answer. When polls come back empty (an idle topic looks the same as a
    stalled broker), a small request asks at most every ``interval`` seconds. After ``unreachable_after``
    seconds without an answer the broker counts as unreachable: logged once, and lag is unknown (the
    high-water marks are stale), never 0.
    """

    def __init__(self, consumer: KafkaConsumer, settings: Settings, interval: float) -> None:
        self.consumer, self.settings, self.interval = consumer, settings, interval
        self.last_answer = self.next_probe = time.monotonic()
        self.up = True

    def observe(self, answered: bool, partitions: list[TopicPartition]) -> bool:
        """Update with one loop iteration (``answered``: the poll returned records); returns ``up``."""
        now = time.monotonic()
        if answered:
            self.last_answer = now
        elif now >= self.next_probe:
            timeout_ms = int(min(2.0, self.settings.kafka_unreachable_seconds / 2) * 1000)
            if probe(self.consumer, partitions, timeout_ms):
                self.last_answer = time.monotonic()
            self.next_probe = time.monotonic() + self.interval
        silent = time.monotonic() - self.last_answer
        if self.up and silent > self.settings.kafka_unreachable_seconds:
            self.up = False
            log.error(
                "Kafka at %s has not answered for %.0fs; waiting for it (lag unknown)",
                self.settings.kafka_bootstrap,
                silent,
            )
        elif not self.up and silent <= self.settings.kafka_unreachable_seconds:
            self.up = True
            log.warning("Kafka at %s answers again", self.settings.kafka_bootstrap)
        return self.up
