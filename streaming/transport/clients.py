"""Kafka clients for livelearn, built from :class:`~streaming.config.KafkaSettings`, whichever library is chosen.

``LIVELEARN_KAFKA_CLIENT`` picks the adapter (:func:`~streaming.transport.options.choose_client`); each is
imported only when used. Consumers never auto-commit: a learner's position lives in its snapshots, and the
offsets it commits after each snapshot are for lag dashboards only. Lag uses the fetch high-water mark
(``consumer.highwater``), which is exact on brokers whose ListOffsets answers lag behind.
"""

from __future__ import annotations

from typing import Any

from streaming.config import KafkaSettings, Settings
from streaming.errors import ConnectionFailedError
from streaming.transport.options import choose_client
from streaming.transport.records import Consumer, Producer, TopicPartition

__all__ = [
    "ensure_topics",
    "lag",
    "livelearn_topics",
    "make_consumer",
    "make_producer",
    "probe",
    "topic_partitions",
]


def make_consumer(settings: KafkaSettings | Settings) -> Consumer:
    """A consumer with manual assignment in mind: no auto-commit, group only for committed offsets."""
    kafka = KafkaSettings.of(settings)
    if choose_client(kafka) == "confluent":
        from streaming.transport.confluent import ConfluentConsumer

        return ConfluentConsumer(kafka)
    from streaming.transport.kafka_python import KafkaPythonConsumer

    return KafkaPythonConsumer(kafka)


def make_producer(
    settings: KafkaSettings | Settings,
    *,
    linger_ms: int = 5,
    batch_size: int | None = None,
    max_request_size: int | None = None,
) -> Producer:
    """A producer; ``linger_ms``, ``batch_size`` and ``max_request_size`` (bytes) mean what they mean in Kafka."""
    kafka = KafkaSettings.of(settings)
    options: dict[str, Any] = {"linger_ms": linger_ms}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if max_request_size is not None:
        options["max_request_size"] = max_request_size
    if choose_client(kafka) == "confluent":
        from streaming.transport.confluent_producer import ConfluentProducer

        return ConfluentProducer(kafka, **options)
    from streaming.transport.kafka_python import KafkaPythonProducer

    return KafkaPythonProducer(kafka, **options)


def ensure_topics(settings: KafkaSettings | Settings, topics: dict[str, int]) -> None:
    """Create each topic with the given partition count unless it exists already."""
    kafka = KafkaSettings.of(settings)
    if choose_client(kafka) == "confluent":
        from streaming.transport.confluent_producer import create_topics
    else:
        from streaming.transport.kafka_python import create_topics
    create_topics(kafka, topics)


def livelearn_topics(
    settings: KafkaSettings | Settings, partitions: int = 1, *, labels_topic: str | None = None
) -> dict[str, int]:
    """Every topic a learner uses, with its partition count: events, dead letters and predictions (and labels, when
    they have a topic: partitioned like the events).

    >>> sorted(livelearn_topics(Settings(events_topic="shop"), 3).items())
    [('shop', 3), ('shop.dlq', 1), ('shop.predictions', 3)]
    >>> sorted(livelearn_topics(Settings(events_topic="shop"), 2, labels_topic="shop.labels"))
    ['shop', 'shop.dlq', 'shop.labels', 'shop.predictions']
    """
    kafka = KafkaSettings.of(settings)
    topics = {
        kafka.events_topic: partitions,
        kafka.dead_letter_topic: 1,
        kafka.predictions_topic: partitions,
    }
    if labels_topic:
        topics[labels_topic] = partitions
    return topics


def topic_partitions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic``; raises :class:`ConnectionFailedError` when the topic is unknown."""
    partitions = consumer.partitions_for(topic)
    if not partitions:
        raise ConnectionFailedError(
            f"topic {topic!r} does not exist on the broker; create it with `livelearn topics` (with the dead-letter "
            "and predictions topics) or fix LIVELEARN_EVENTS_TOPIC"
        )
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def probe(consumer: Consumer, partitions: list[TopicPartition], timeout_ms: int) -> bool:
    """Whether the broker answers a small request (the partitions' end offsets) within ``timeout_ms``.

    Only the answer matters: some brokers under-report "latest" offsets, so lag uses high-water marks.
    """
    try:
        consumer.end_offsets(partitions, timeout_ms=timeout_ms)
    except ConnectionFailedError:
        return False
    return True


def lag(consumer: Consumer, positions: dict[TopicPartition, int]) -> int | None:
    """Events between ``positions`` and the high-water marks; ``None`` until every mark is known."""
    total = 0
    for tp, position in positions.items():
        high = consumer.highwater(tp)
        if high is None:
            return None
        total += max(0, high - position)
    return total
