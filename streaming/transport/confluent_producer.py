"""The confluent-kafka producer and topic creation (see :mod:`~streaming.transport.confluent` for the consumer).

Delivery reports run on a producer poll: checking a pending :class:`Delivery` serves them, never blocking, and
every ``SERVE_EVERY`` sends serve them too, so the local queue never fills with reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streaming.config import KafkaSettings
from streaming.errors import ConnectionFailedError
from streaming.transport.confluent import ErrorLog, base_config, check_reachable, failure
from streaming.transport.records import Tally

__all__ = ["ConfluentProducer", "Delivery", "create_topics"]


class Delivery:
    """The outcome of one send; checking a pending one serves the producer's delivery reports (no blocking)."""

    __slots__ = ("client", "done", "error")

    def __init__(self, client: Producer) -> None:
        self.client, self.done = client, False
        self.error: KafkaError | None = None

    def report(self, err: KafkaError | None, _message: object) -> None:
        self.done, self.error = True, err

    @property
    def is_done(self) -> bool:
        if not self.done:
            self.client.poll(0)
        return self.done

    def failed(self) -> bool:
        return self.is_done and self.error is not None

    @property
    def exception(self) -> BaseException | None:
        return None if self.error is None else KafkaException(self.error)


class ConfluentProducer:
    """:class:`~streaming.transport.records.Producer` on a ``confluent_kafka.Producer``.

    Options are kafka-python's names, mapped: ``linger_ms``, ``batch_size``, ``max_request_size``.
    """

    SERVE_EVERY = 256  # sends between two non-blocking polls that run delivery reports

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        linger_ms: int = 5,
        batch_size: int | None = None,
        max_request_size: int | None = None,
    ) -> None:
        self.kafka = kafka
        self.errors = ErrorLog(kafka)
        config: dict[str, Any] = {
            **base_config(kafka, self.errors),
            "linger.ms": linger_ms,
            "enable.idempotence": True,  # as kafka-python 3 does by default
            "message.timeout.ms": 120_000,  # kafka-python's delivery_timeout_ms
        }
        if batch_size is not None:
            config["batch.size"] = batch_size
        if max_request_size is not None:
            config["message.max.bytes"] = max_request_size
        self.client = Producer(config)
        check_reachable(self.client, kafka)
        self.unserved = 0

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Delivery:
        delivery = Delivery(self.client)
        refused = self._produce(topic, value, key, headers, delivery.report)
        if refused is not None:
            delivery.report(refused, None)
        return delivery

    def send_counted(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None, tally: Tally
    ) -> None:
        """:meth:`send` without a handle: the tally's one bound method is every record's delivery callback."""
        tally.sent += 1
        refused = self._produce(topic, value, key, headers, tally.report)
        if refused is not None:
            tally.report(KafkaException(refused))

    def send_counted_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes | None]],
        headers: list[tuple[str, bytes]] | None,
        tally: Tally,
    ) -> None:
        """:meth:`send_counted` for each ``(value, key)`` in order (one loop: a run's predictions)."""
        produce, report = self.client.produce, tally.report
        for value, key in records:
            tally.sent += 1
            try:
                produce(topic, value, key, headers=headers, on_delivery=report)  # type: ignore[arg-type]
            except (BufferError, KafkaException):  # a full queue waited out, a refusal counted: as send_counted
                tally.sent -= 1
                self.send_counted(topic, value, key, headers, tally)
                continue
            self.unserved += 1
        if self.unserved >= self.SERVE_EVERY:
            self.unserved = 0
            self.client.poll(0)

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Callable[[KafkaError | None, object], None],
    ) -> KafkaError | None:
        """Queue one record (``on_delivery`` runs when it is done); the error when librdkafka refuses it at once.
        A full local queue is waited out, letting deliveries drain it; every ``SERVE_EVERY`` sends the delivery
        reports that arrived are run."""
        refused: KafkaError | None = None
        while True:
            try:
                self.client.produce(topic, value, key, headers=headers, on_delivery=on_delivery)  # type: ignore[arg-type]
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.client.poll(0.05)
            except KafkaException as exc:
                refused = exc.args[0] if exc.args else KafkaError(KafkaError._FAIL)
                break
        self.unserved += 1
        if self.unserved >= self.SERVE_EVERY:
            self.unserved = 0
            self.client.poll(0)
        return refused

    def serve(self) -> None:
        self.client.poll(0)

    def flush(self, timeout: float | None = None) -> bool:
        return int(self.client.flush(-1 if timeout is None else timeout)) == 0

    def close(self, timeout: float = 5.0) -> None:
        self.client.flush(timeout)


def create_topics(kafka: KafkaSettings, topics: dict[str, int]) -> None:
    """Create each topic with the given partition count unless it exists already."""
    errors = ErrorLog(kafka)
    admin = AdminClient(base_config(kafka, errors))
    timeout = kafka.bootstrap_timeout_seconds
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise failure(kafka, exc) from None
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items() if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise ConnectionFailedError(f"could not create topic {name!r} on {kafka.bootstrap}: {exc}") from None
