"""What the learner sees of a Kafka client, whichever library is underneath (no I/O here).

Two adapters implement these protocols: :mod:`~streaming.transport.kafka_python` and
:mod:`~streaming.transport.confluent`. Learner code names only these types, never a client library.

Partitions are plain tuples, so they compare and hash like any ``(topic, partition)`` pair:

>>> tp = TopicPartition("shop", 2)
>>> tp == ("shop", 2), {tp: 7}[("shop", 2)]
(True, 7)
>>> r = Record("shop", 2, 41, b"u1", b"{}", [("content-type", b"application/json")], 1_700_000_000_000)
>>> r.offset + 1, dict(r.headers)["content-type"]
(42, b'application/json')

A :class:`Tally` counts the outcomes of a run of sends (one callback shared by all of them):

>>> tally = Tally()
>>> tally.sent = 2
>>> tally.report(None, None); tally.complete
False
>>> tally.report("broker said no", None); tally.complete, tally.failed, tally.error
(True, 1, 'broker said no')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

__all__ = ["Committed", "Consumer", "Delivery", "Producer", "Record", "Tally", "TopicPartition", "stored_offsets"]


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


def stored_offsets(positions: Mapping[TopicPartition, int]) -> dict[str, dict[str, int]]:
    """``positions`` as versions, statuses and scripts store offsets: per topic, per partition as text.

    >>> stored_offsets({TopicPartition("shop", 0): 7, TopicPartition("shop", 1): 9})
    {'shop': {'0': 7, '1': 9}}
    """
    offsets: dict[str, dict[str, int]] = {}
    for tp, position in positions.items():
        offsets.setdefault(tp.topic, {})[str(tp.partition)] = position
    return offsets


class Record(NamedTuple):
    """One consumed record: where it was, its key, value, headers and timestamp (epoch ms, -1 if unknown)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int


class Committed(NamedTuple):
    """An offset committed to the consumer group, with its metadata (``""`` when the broker keeps none)."""

    offset: int
    metadata: str


class Delivery(Protocol):
    """The outcome of one send, checked without blocking (a kafka-python future is one as it is)."""

    @property
    def is_done(self) -> bool:
        """Acknowledged or failed."""

    def failed(self) -> bool:
        """Done, and not delivered."""

    @property
    def exception(self) -> BaseException | None:
        """Why it failed (``None`` while pending or when delivered)."""


class Tally:
    """The outcomes of a run of sends, counted: cheaper than one :class:`Delivery` per send when only "are all of
    these delivered?" matters. The producer adds to ``sent`` at each send and calls :meth:`report` once per
    record when it is acknowledged or failed (``error``: the first failure, as the client gave it)."""

    __slots__ = ("done", "error", "failed", "sent")

    def __init__(self) -> None:
        self.sent = self.done = self.failed = 0
        self.error: object | None = None

    def report(self, err: object | None, _message: object = None) -> None:
        """One record done: ``err`` is ``None`` when it was delivered."""
        self.done += 1
        if err is not None:
            self.failed += 1
            if self.error is None:
                self.error = err

    @property
    def complete(self) -> bool:
        """Every record sent so far is done (delivered or failed)."""
        return self.done >= self.sent


class Consumer(Protocol):
    """A consumer with manual assignment: no auto-commit, no group membership, offsets chosen by the caller.

    Errors are :class:`~streaming.errors.ConnectionFailedError` (a topic that does not exist) or its
    :class:`~streaming.errors.BrokerUnavailableError` (the broker does not answer or failed).
    """

    def partitions_for(self, topic: str) -> set[int] | None:
        """The topic's partition ids; ``None`` when the topic does not exist."""

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Consume exactly these partitions (replacing any earlier assignment)."""

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next; records fetched before the seek are not returned."""

    def seek_to_beginning(self, tp: TopicPartition) -> None: ...

    def seek_to_end(self, tp: TopicPartition) -> None: ...

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record :meth:`poll` returns for ``tp``."""

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        """Up to ``max_records`` records, in offset order per partition; returns as soon as any are there."""

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Stop fetching these partitions until :meth:`resume` d (records fetched already may still come)."""

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch these paused partitions again, from their positions."""

    def highwater(self, tp: TopicPartition) -> int | None:
        """The high-water mark of the last fetch from ``tp`` (``None`` before one): exact on brokers whose
        ListOffsets answers lag behind."""

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        """Ask the broker for the partitions' end offsets (ListOffsets "latest")."""

    def beginning_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        """Ask the broker for the partitions' log start offsets (ListOffsets "earliest"): the oldest offset it still
        holds, past which retention has deleted the records."""

    def committed(self, tp: TopicPartition, timeout_ms: int) -> Committed | None:
        """The group's committed offset of ``tp``; ``None`` when there is none."""

    def commit(self, offsets: dict[TopicPartition, int], metadata: str, *, wait: bool) -> None:
        """Commit ``offsets`` to the group (monitoring only); without ``wait`` failures are logged, not raised."""

    def close(self) -> None: ...


class Producer(Protocol):
    """A producer whose sends are checked without blocking and flushed before a snapshot moves past them."""

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Delivery:
        """Queue one record; a failure shows in the returned :class:`Delivery`, never as an exception here."""

    def send_counted(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None, tally: Tally
    ) -> None:
        """Queue one record counted in ``tally`` (its ``sent`` now, :meth:`Tally.report` once it is done); a
        failure shows in the tally, never as an exception here."""

    def send_counted_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes | None]],
        headers: list[tuple[str, bytes]] | None,
        tally: Tally,
    ) -> None:
        """:meth:`send_counted` for each ``(value, key)`` in order, all with ``headers``."""

    def serve(self) -> None:
        """Run the delivery reports that have arrived (never blocks)."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record sent so far is done (delivered or failed); ``False`` when time ran out."""

    def close(self, timeout: float = 5.0) -> None:
        """Flush what it can within ``timeout``, then release the client."""
