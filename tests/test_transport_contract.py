"""Both Kafka adapters keep the learner's semantics against a real broker (Tansu): manual assignment, seeks to
snapshot offsets (also after fetching started), positions, high-water marks, commits, deliveries, unknown topics."""

from __future__ import annotations

import time

import pytest

from streaming.errors import ConnectionFailedError
from streaming.transport import TopicPartition, lag, make_consumer, make_producer, probe, topic_partitions

CLIENTS = ["confluent", "kafka-python"]


def read(consumer, count: int, timeout: float = 60) -> dict:
    """``count`` records polled (by partition), failing after ``timeout`` seconds."""
    got: dict = {}
    deadline = time.monotonic() + timeout
    while sum(map(len, got.values())) < count:
        assert time.monotonic() < deadline, {tp: len(records) for tp, records in got.items()}
        for tp, records in consumer.poll(timeout_ms=200, max_records=50).items():
            got.setdefault(tp, []).extend(records)
    return got


@pytest.mark.parametrize("client", CLIENTS)
def test_assign_seek_poll_commit_and_deliveries_mean_the_same_with_either_client(make_settings, client):
    settings = make_settings(partitions=2, kafka_client=client)
    producer = make_producer(settings, linger_ms=5)
    deliveries = [
        producer.send(settings.events_topic, b"v%d" % i, key=b"k%d" % (i % 5), headers=[("n", str(i).encode())])
        for i in range(200)
    ]
    assert producer.flush(timeout=30)
    assert all(d.is_done and not d.failed() and d.exception is None for d in deliveries)
    producer.close()

    consumer = make_consumer(settings)
    try:
        partitions = topic_partitions(consumer, settings.events_topic)
        assert partitions == [TopicPartition(settings.events_topic, 0), TopicPartition(settings.events_topic, 1)]
        first, second = partitions
        consumer.assign(partitions)
        consumer.seek(first, 3)  # a snapshot's offsets, before any fetch
        consumer.seek_to_beginning(second)
        assert (consumer.position(first), consumer.position(second)) == (3, 0)
        got = read(consumer, 197)
        ends = {tp: consumer.position(tp) for tp in partitions}
        assert sum(ends.values()) == 200
        assert [r.offset for r in got[first]] == list(range(3, ends[first]))
        assert [r.offset for r in got[second]] == list(range(ends[second]))
        # the fetch high-water mark (ListOffsets "latest" may lag on Tansu): exact once fetched
        assert {tp: consumer.highwater(tp) for tp in partitions} == ends
        record = got[second][0]
        assert record.topic == settings.events_topic and record.partition == 1
        assert record.value.startswith(b"v") and record.key.startswith(b"k") and record.timestamp > 0
        assert dict(record.headers)["n"] == record.value[1:]
        # ListOffsets "earliest" and "latest": nothing deleted yet, so every log starts at 0 (the end may lag on Tansu)
        assert consumer.beginning_offsets(partitions, timeout_ms=10_000) == dict.fromkeys(partitions, 0)
        assert all(0 <= end <= ends[tp] for tp, end in consumer.end_offsets(partitions, timeout_ms=10_000).items())
        assert lag(consumer, {tp: consumer.position(tp) for tp in partitions}) == 0
        assert lag(consumer, dict.fromkeys(partitions, 0)) == 200

        consumer.seek(first, 1)  # a rollback while fetching: nothing from before the seek comes back
        again = read(consumer, 3)
        assert [r.offset for r in again[first]][:3] == [1, 2, 3]

        assert probe(consumer, partitions, timeout_ms=5000)
        consumer.commit({first: 7, second: 9}, "livelearn v3", wait=True)
        assert consumer.committed(first, timeout_ms=10_000).offset == 7
        assert consumer.committed(second, timeout_ms=10_000).offset == 9
        consumer.commit({first: 8}, "livelearn v4", wait=False)  # monitoring only: never waited for
        with pytest.raises(ConnectionFailedError, match="does not exist"):
            topic_partitions(consumer, f"{settings.events_topic}-never-created")
    finally:
        consumer.close()
