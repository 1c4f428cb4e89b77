"""The confluent-kafka adapter: librdkafka underneath, 15-60× faster than kafka-python on the same broker.

librdkafka never raises for a broker it cannot reach: it retries in its own threads and reports through
callbacks. Here its logs go to the ``streaming.transport.librdkafka`` logger (never stderr), its errors to
this module's logger once per kind, a fatal one is raised at the next poll, and a request that gets no
answer in time becomes a :class:`~streaming.errors.BrokerUnavailableError`, as with kafka-python.

librdkafka only takes a start offset with the assignment, so :meth:`ConfluentConsumer.assign` waits for the
seeks that follow it and assigns with their offsets at the first poll; later seeks go to the live assignment.
The producer is in :mod:`~streaming.transport.confluent_producer`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as ConfluentTopicPartition

from streaming.config import KafkaSettings
from streaming.errors import BrokerUnavailableError
from streaming.transport.options import confluent_config
from streaming.transport.records import Committed, Record, TopicPartition

__all__ = ["ConfluentConsumer", "ErrorLog", "base_config", "check_reachable", "failure"]

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger("streaming.transport.librdkafka")


def failure(kafka: KafkaSettings, exc: object) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"cannot reach Kafka at {kafka.bootstrap} ({exc}); start the broker or set LIVELEARN_KAFKA_BOOTSTRAP"
    )


class ErrorLog:
    """librdkafka's error callback: each kind logged once until another kind comes; a fatal one kept."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka, self.last = kafka, -1
        self.fatal: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("Kafka client failed for good: %s", err.str())
        elif err.code() != self.last:
            level = logging.WARNING if err.code() == KafkaError._ALL_BROKERS_DOWN else logging.INFO
            log.log(level, "Kafka at %s: %s (the client retries)", self.kafka.bootstrap, err.str())
        self.last = err.code()

    def check(self) -> None:
        if self.fatal is not None:
            raise failure(self.kafka, self.fatal.str())


def base_config(kafka: KafkaSettings, errors: ErrorLog) -> dict[str, Any]:
    return {**confluent_config(kafka), "logger": librdkafka_log, "error_cb": errors}


def check_reachable(client: Any, kafka: KafkaSettings) -> None:
    """Ask for the cluster's metadata once, as kafka-python does on creation: an unreachable broker says so now."""
    try:
        client.list_topics(timeout=kafka.bootstrap_timeout_seconds)
    except KafkaException as exc:
        raise failure(kafka, exc.args[0].str() if exc.args else exc) from None


class ConfluentConsumer:
    """:class:`~streaming.transport.records.Consumer` on a ``confluent_kafka.Consumer``."""

    COMMIT_WAIT = 2.0  # seconds a waited-for offset commit may take (kafka-python's adapter waits as long)
    CLOSE_WAIT = 5.0  # seconds close may take (as kafka-python's close timeout)

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.errors = ErrorLog(kafka)

        def committed(err: KafkaError | None, _partitions: object) -> None:
            if err is not None:
                log.warning("offset commit failed: %s", err.str())

        self.client = Consumer(
            {
                **base_config(kafka, self.errors),
                "group.id": kafka.consumer_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": kafka.auto_offset_reset,
                "enable.partition.eof": False,
                "on_commit": committed,
            }
        )
        check_reachable(self.client, kafka)
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []
        self.started = False  # the assignment is handed to librdkafka at the first poll, with the seeks' offsets

    def partitions_for(self, topic: str) -> set[int] | None:
        try:
            metadata = self.client.list_topics(topic, timeout=self.kafka.bootstrap_timeout_seconds)
        except KafkaException as exc:
            raise failure(self.kafka, exc) from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned, self.positions, self.started = list(partitions), {}, False
        self.client.unassign()

    def _start(self) -> None:
        self.started = True
        self.client.assign(
            [
                ConfluentTopicPartition(t, p, self.positions.get(TopicPartition(t, p), OFFSET_STORED))
                for t, p in self.assigned
            ]
        )

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[TopicPartition(*tp)] = offset
        if not self.started:
            return
        try:
            self.client.seek(ConfluentTopicPartition(tp[0], tp[1], offset))
        except KafkaException:  # not fetching yet: assign again, every partition from its position
            self._start()

    def pause(self, partitions: list[TopicPartition]) -> None:
        if not self.started:
            self._start()
        self.client.pause([ConfluentTopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: list[TopicPartition]) -> None:
        if self.started:
            self.client.resume([ConfluentTopicPartition(t, p) for t, p in partitions])

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        return self._marks([tp], round(self.kafka.bootstrap_timeout_seconds * 1000), "ListOffsets")[TopicPartition(*tp)]

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seek(tp, self._watermarks(tp)[0])

    def seek_to_end(self, tp: TopicPartition) -> None:
        self.seek(tp, self._watermarks(tp)[1])

    def position(self, tp: TopicPartition) -> int:
        known = self.positions.get(TopicPartition(*tp))
        if known is not None:
            return known
        if self.started:
            (part,) = self.client.position([ConfluentTopicPartition(tp[0], tp[1])])
            if part.offset >= 0:
                return int(part.offset)
        committed = self.committed(tp, int(self.kafka.bootstrap_timeout_seconds * 1000))
        if committed is not None:
            return committed.offset
        low, high = self._watermarks(tp)
        return low if self.kafka.auto_offset_reset == "earliest" else high

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        self.errors.check()
        if not self.started:
            self._start()
        client = self.client
        messages = client.consume(max_records, 0)  # what is fetched already: a batch call waits for a full batch
        if not messages:
            messages = client.consume(1, timeout_ms / 1000)
            if messages and max_records > 1:
                messages.extend(client.consume(max_records - 1, 0))
        return self._records(messages)

    def _records(self, messages: list[Any]) -> dict[TopicPartition, list[Record]]:
        batch: dict[TopicPartition, list[Record]] = {}
        records: list[Record] = []
        last: tuple[str, int] = ("", -1)
        new = tuple.__new__  # Record(...) without its Python-level __new__: half the cost, once per record
        for m in messages:
            if m.error() is not None:
                self._consume_error(m.error())
                continue
            topic, partition = m.topic(), m.partition()
            if (topic, partition) != last:
                last = (topic, partition)
                records = batch.setdefault(TopicPartition(topic, partition), [])
            headers = m.headers() or []
            records.append(new(Record, (topic, partition, m.offset(), m.key(), m.value(), headers, m.timestamp()[1])))
        for tp, got in batch.items():
            self.positions[tp] = got[-1].offset + 1
        return batch

    def _consume_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise failure(self.kafka, err.str())
        log.warning("Kafka consumer: %s", err.str())

    def highwater(self, tp: TopicPartition) -> int | None:
        marks = self.client.get_watermark_offsets(ConfluentTopicPartition(tp[0], tp[1]), cached=True)
        return None if marks is None or marks[1] < 0 else int(marks[1])

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        return {tp: high for tp, (_low, high) in self._marks(partitions, timeout_ms, "end").items()}

    def beginning_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        return {tp: low for tp, (low, _high) in self._marks(partitions, timeout_ms, "log start").items()}

    def _marks(
        self, partitions: list[TopicPartition], timeout_ms: int, what: str
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Each partition's (log start, end) offsets from the broker (ListOffsets), within one time budget."""
        marks = {}
        deadline = time.monotonic() + timeout_ms / 1000  # one budget for all: a silent broker costs it once
        for tp in partitions:
            try:
                answer = self.client.get_watermark_offsets(
                    ConfluentTopicPartition(tp[0], tp[1]), timeout=max(0.001, deadline - time.monotonic())
                )
            except KafkaException as exc:
                raise failure(self.kafka, exc) from None
            if answer is None:
                raise failure(self.kafka, f"no {what} offset within {timeout_ms} ms")
            marks[TopicPartition(*tp)] = (int(answer[0]), int(answer[1]))
        return marks

    def committed(self, tp: TopicPartition, timeout_ms: int) -> Committed | None:
        try:
            (mark,) = self.client.committed([ConfluentTopicPartition(tp[0], tp[1])], timeout=timeout_ms / 1000)
        except KafkaException as exc:
            raise failure(self.kafka, exc) from None
        if mark.error is not None:
            raise failure(self.kafka, mark.error)
        return None if mark.offset < 0 else Committed(int(mark.offset), mark.metadata or "")

    def commit(self, offsets: dict[TopicPartition, int], metadata: str, *, wait: bool) -> None:
        """Without ``wait`` failures are logged by the commit callback; with it, the answer is awaited at most
        ``COMMIT_WAIT`` seconds (librdkafka's blocking commit has no timeout: a silent broker must not hold the
        learner past its lease)."""
        parts = [ConfluentTopicPartition(t, p, pos, metadata=metadata) for (t, p), pos in offsets.items()]
        if not wait:
            try:
                self.client.commit(offsets=parts, asynchronous=True)
            except KafkaException as exc:
                raise failure(self.kafka, exc) from None
            return
        outcome: list[Any] = []

        def commit() -> None:
            try:
                outcome.append(self.client.commit(offsets=parts, asynchronous=False))
            except (KafkaException, RuntimeError) as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=commit, name="livelearn-offset-commit", daemon=True)
        waiter.start()
        waiter.join(self.COMMIT_WAIT)
        if not outcome:
            raise failure(self.kafka, f"the offset commit was not answered within {self.COMMIT_WAIT:g}s")
        if isinstance(outcome[0], Exception):
            raise failure(self.kafka, outcome[0])
        failed = [part for part in outcome[0] or [] if part.error is not None]
        if failed:
            raise failure(self.kafka, failed[0].error)

    def close(self) -> None:
        """Close within ``CLOSE_WAIT`` seconds: librdkafka's close waits for requests in flight (an offset commit
        to a stalled broker), which must not hold the learner from its outage handling; it finishes on its own."""
        closer = threading.Thread(target=self.client.close, name="livelearn-consumer-close", daemon=True)
        closer.start()
        closer.join(self.CLOSE_WAIT)
        if closer.is_alive():
            log.warning("the Kafka consumer did not close within %gs; left to finish on its own", self.CLOSE_WAIT)
