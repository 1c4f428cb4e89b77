"""Kafka for livelearn: one small client interface, two adapters, topics, lag and the broker watch.

Learner code uses :mod:`~streaming.transport.records` (neutral partitions, records, deliveries) and the
functions here; the client library (``LIVELEARN_KAFKA_CLIENT``: confluent-kafka or kafka-python) is
imported only by the adapter that is chosen.
"""

from streaming.transport.clients import (
    ensure_topics,
    lag,
    livelearn_topics,
    make_consumer,
    make_producer,
    probe,
    topic_partitions,
)
from streaming.transport.options import choose_client
from streaming.transport.records import (
    Committed,
    Consumer,
    Delivery,
    Producer,
    Record,
    Tally,
    TopicPartition,
    stored_offsets,
)
from streaming.transport.watch import BrokerWatch

__all__ = [
    "BrokerWatch",
    "Committed",
    "Consumer",
    "Delivery",
    "Producer",
    "Record",
    "Tally",
    "TopicPartition",
    "choose_client",
    "ensure_topics",
    "lag",
    "livelearn_topics",
    "make_consumer",
    "make_producer",
    "probe",
    "stored_offsets",
    "topic_partitions",
]
