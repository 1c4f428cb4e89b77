"""The kafka-python adapter: pure Python, no compiled dependency (``LIVELEARN_KAFKA_CLIENT=kafka-python``).

Every kafka-python error leaving a method here becomes a :class:`~streaming.errors.BrokerUnavailableError`, so
the learner handles both clients alike. A kafka-python send future already is a
:class:`~streaming.transport.records.Delivery`: it is returned as it is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from streaming.config import KafkaSettings
from streaming.errors import BrokerUnavailableError, ConnectionFailedError
from streaming.transport.options import kafka_python_config
from streaming.transport.records import Committed, Delivery, Record, Tally, TopicPartition

__all__ = ["KafkaPythonConsumer", "KafkaPythonProducer", "create_topics"]

log = logging.getLogger(__name__)


def _failure(kafka: KafkaSettings, exc: Exception) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"cannot reach Kafka at {kafka.bootstrap} ({type(exc).__name__}: {exc}); start the broker or set "
        "LIVELEARN_KAFKA_BOOTSTRAP"
    )


class KafkaPythonConsumer:
    """:class:`~streaming.transport.records.Consumer` on a ``kafka.KafkaConsumer``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        try:
            self.client = KafkaConsumer(
                **kafka_python_config(kafka),
                group_id=kafka.consumer_group,
                enable_auto_commit=False,
                auto_offset_reset=kafka.auto_offset_reset,
                max_poll_records=kafka.poll_max_records,
            )
        except KafkaError as exc:
            raise _failure(kafka, exc) from None
        self.paused: set[TopicPartition] = set()

    def partitions_for(self, topic: str) -> set[int] | None:
        try:
            return self.client.partitions_for_topic(topic) or None
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.paused.clear()
        self.client.assign([KafkaTopicPartition(*tp) for tp in partitions])

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.client.seek(KafkaTopicPartition(*tp), offset)

    def pause(self, partitions: list[TopicPartition]) -> None:
        # kafka-python 3.0's own pause() parks what it fetched and, here, never fetched the partition again after
        # resume(): paused partitions are held back in poll() instead (their records dropped and fetched again)
        self.paused.update(TopicPartition(*tp) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update(TopicPartition(*tp) for tp in partitions)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.client.seek_to_beginning(KafkaTopicPartition(*tp))

    def seek_to_end(self, tp: TopicPartition) -> None:
        self.client.seek_to_end(KafkaTopicPartition(*tp))

    def position(self, tp: TopicPartition) -> int:
        try:
            return int(self.client.position(KafkaTopicPartition(*tp)))
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        try:
            batch = self.client.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None
        out: dict[TopicPartition, list[Record]] = {}
        for tp, records in batch.items():
            if not records:
                continue
            if (tp.topic, tp.partition) in self.paused:  # held back: read again from its first record once resumed
                self.client.seek(tp, records[0].offset)
                continue
            out[TopicPartition(tp.topic, tp.partition)] = [
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp) for r in records
            ]
        return out

    def highwater(self, tp: TopicPartition) -> int | None:
        high = self.client.highwater(KafkaTopicPartition(*tp))
        return None if high is None else int(high)

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        try:
            ends = self.client.end_offsets([KafkaTopicPartition(*tp) for tp in partitions], timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None
        return {TopicPartition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def beginning_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        try:
            starts = self.client.beginning_offsets(
                [KafkaTopicPartition(*tp) for tp in partitions], timeout_ms=timeout_ms
            )
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None
        return {TopicPartition(tp.topic, tp.partition): int(start) for tp, start in starts.items()}

    def committed(self, tp: TopicPartition, timeout_ms: int) -> Committed | None:
        try:
            mark = self.client.committed(KafkaTopicPartition(*tp), metadata=True, timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None
        return None if mark is None or mark.offset < 0 else Committed(mark.offset, mark.metadata or "")

    def commit(self, offsets: dict[TopicPartition, int], metadata: str, *, wait: bool) -> None:
        marks = {KafkaTopicPartition(*tp): OffsetAndMetadata(pos, metadata, -1) for tp, pos in offsets.items()}

        def logged(_offsets: object, response: object) -> None:
            if isinstance(response, Exception):
                log.warning("offset commit (%s) failed: %s", metadata, response)

        try:
            if wait:
                self.client.commit(marks, timeout_ms=2000)
            else:
                self.client.commit_async(marks, callback=logged)
        except KafkaError as exc:
            raise _failure(self.kafka, exc) from None

    def close(self) -> None:
        self.client.close(autocommit=False, timeout_ms=5000)


class KafkaPythonProducer:
    """:class:`~streaming.transport.records.Producer` on a ``kafka.KafkaProducer``."""

    def __init__(self, kafka: KafkaSettings, **options: Any) -> None:
        self.kafka = kafka
        self._reports = threading.Lock()
        try:
            self.client = KafkaProducer(**kafka_python_config(kafka), **options)
        except KafkaError as exc:
            raise _failure(kafka, exc) from None

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Delivery:
        try:
            future: Delivery = self.client.send(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms
            return _Failed(exc)
        return future

    def send_counted_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes | None]],
        headers: list[tuple[str, bytes]] | None,
        tally: Tally,
    ) -> None:
        """:meth:`send_counted` for each ``(value, key)`` in order."""
        for value, key in records:
            self.send_counted(topic, value, key, headers, tally)

    def send_counted(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None, tally: Tally
    ) -> None:
        """:meth:`send`, its outcome counted in ``tally`` (kafka-python reports on its I/O thread: under a lock)."""
        tally.sent += 1
        future = self.send(topic, value, key, headers)
        if isinstance(future, _Failed):
            tally.report(future.exception)
            return

        def delivered(_metadata: object) -> None:
            with self._reports:
                tally.report(None)

        def failed(exc: BaseException) -> None:
            with self._reports:
                tally.report(exc)

        future.add_callback(delivered)  # type: ignore[attr-defined]
        future.add_errback(failed)  # type: ignore[attr-defined]

    def serve(self) -> None:
        """Reports run on kafka-python's own thread: nothing to serve."""

    def flush(self, timeout: float | None = None) -> bool:
        try:
            self.client.flush(timeout=timeout)
        except KafkaError:
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.client.close(timeout=timeout)


class _Failed:
    """A send that failed before it was queued."""

    is_done = True

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc

    def failed(self) -> bool:
        return True


def create_topics(kafka: KafkaSettings, topics: dict[str, int]) -> None:
    """Create each topic with the given partition count unless it exists already."""
    try:
        admin = KafkaAdminClient(**kafka_python_config(kafka))
    except KafkaError as exc:
        raise _failure(kafka, exc) from None
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    except KafkaError as exc:
        raise ConnectionFailedError(f"could not create topics {sorted(topics)} on {kafka.bootstrap}: {exc}") from None
    finally:
        admin.close()
