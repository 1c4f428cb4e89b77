"""What Kafka remembers of a model's version numbers, for a learner starting over after Redis lost its data.

Redis hands out version numbers (``version:counter``) and loses the counter with the rest. Three records in Kafka
survive it and name version numbers:

* the offsets a learner commits to the consumer group after each version carry ``livelearn vN`` as metadata,
  where the broker keeps commit metadata (Tansu, for one, keeps the offsets but not the metadata);
* every prediction carries ``version``: the version the live model descended from when it scored the event;
* every dead letter carries the header ``livelearn.version``, the same.

The last record of each partition of the predictions and dead-letter topics is read (partitions assigned by hand,
nothing committed, within a time budget), and the highest number of all is :attr:`Recorded.highest`.

Numbers above it may have been handed out: the newest version is never in an output (a version names the events
scored *after* it), and a learner killed between a write and its commit loses the commit. In normal operation at
most six of them: the captured snapshots not yet applied when the last output was sent (four at most,
``versions.MAX_PENDING_CAPTURES``), the final snapshot and a rollback's or an incident's — so numbering goes on after
``highest + UNRECORDED`` (ten, with room to spare: :meth:`Recorded.numbered_after`; a gap in the numbers is
harmless, a reused number is not). What stays possible: more versions than that written after the last output
and the last commit with metadata kept — a long run of duplicates only (they produce no output), or predictions
turned off (``LIVELEARN_PUBLISH_PREDICTIONS=false``) after some were written, so the newest ones are old; and when
Kafka recorded nothing at all the numbers may repeat those of the lost store (the learner says so and audits it).

>>> Recorded(commits=None, predictions=41, dead_letters=None).numbered_after()
51
>>> Recorded(commits=None, predictions=None, dead_letters=None).numbered_after() is None
True
>>> committed_number("livelearn v12"), committed_number(""), committed_number("livelearn vx")
(12, None, None)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import msgpack

from streaming.config import KafkaSettings, Settings
from streaming.errors import ConnectionFailedError
from streaming.transport import Committed, Record, TopicPartition, make_consumer

__all__ = ["UNRECORDED", "VERSION_HEADER", "Recorded", "committed_number", "last_recorded", "output_version"]

log = logging.getLogger(__name__)

#: Versions a learner may hand out after the last number it recorded in Kafka, in normal operation (see above).
UNRECORDED = 10
#: The dead-letter header naming the version the live model descended from.
VERSION_HEADER = "livelearn.version"
_COMMIT_PREFIX = "livelearn v"


def committed_number(metadata: str) -> int | None:
    """The version number a learner's offset commit names in its metadata (``livelearn vN``), if any."""
    if metadata.startswith(_COMMIT_PREFIX) and metadata[len(_COMMIT_PREFIX) :].isdigit():
        return int(metadata[len(_COMMIT_PREFIX) :])
    return None


def output_version(record: Record, *, dead_letter: bool = False) -> int | None:
    """The version a prediction (or, with ``dead_letter``, a dead letter) names; ``None``: none, or not readable.

    >>> output_version(Record("p", 0, 0, None, b'{"version": 7}', [("content-type", b"application/json")], 0))
    7
    >>> output_version(Record("d", 0, 0, None, b"junk", [("livelearn.version", b"3")], 0), dead_letter=True)
    3
    """
    if dead_letter:  # the value is the rejected event as it was: only the header is ours
        marked = dict(record.headers).get(VERSION_HEADER)
        text = bytes(marked).decode("ascii", "replace") if marked is not None else ""
        return int(text) if text.isdigit() else None
    if not record.value:
        return None
    try:
        if dict(record.headers).get("content-type") == b"application/json":
            doc: Any = json.loads(record.value)
        else:
            doc = msgpack.unpackb(record.value, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) and version > 0 else None


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The highest version number each record in Kafka names (``None``: it names none)."""

    commits: int | None  # the consumer group's commit metadata, over every partition
    predictions: int | None  # the last prediction of each partition
    dead_letters: int | None  # the last dead letter of each partition

    @property
    def highest(self) -> int | None:
        """The highest number Kafka recorded, ``None`` when it recorded none."""
        found = [n for n in (self.commits, self.predictions, self.dead_letters) if n is not None]
        return max(found) if found else None

    def numbered_after(self) -> int | None:
        """The number new versions are numbered after: :data:`UNRECORDED` above the highest one recorded."""
        return None if self.highest is None else self.highest + UNRECORDED

    def describe(self) -> str:
        """What Kafka recorded, for the log and the audit entry."""

        def said(number: int | None) -> str:
            return "none" if number is None else f"version {number}"

        return (
            f"commit metadata: {said(self.commits)}; last predictions: {said(self.predictions)}; "
            f"last dead letters: {said(self.dead_letters)}"
        )


def last_recorded(
    settings: KafkaSettings | Settings, commits: Iterable[Committed], budget_seconds: float = 10.0
) -> Recorded:
    """What Kafka recorded of the version numbers: the commit metadata of ``commits`` (the group's, every partition)
    and the last record of each partition of the predictions and dead-letter topics, read by a consumer of its own
    (partitions assigned by hand, nothing committed) within ``budget_seconds`` (what it did not read by then is
    left out, logged). A broker that fails counts as having recorded nothing there."""
    kafka = KafkaSettings.of(settings)
    numbers = [n for n in (committed_number(mark.metadata) for mark in commits) if n is not None]
    predictions, dead_letters = kafka.predictions_topic, kafka.dead_letter_topic
    found: dict[str, list[int]] = {predictions: [], dead_letters: []}
    budget = min(budget_seconds, kafka.bootstrap_timeout_seconds)
    try:
        for record in _last_records(kafka, list(found), budget):
            version = output_version(record, dead_letter=record.topic == dead_letters)
            if version is not None:
                found[record.topic].append(version)
    except ConnectionFailedError as exc:
        log.warning("could not read the last predictions and dead letters (%s): not counted", exc)
    return Recorded(
        max(numbers) if numbers else None,
        max(found[predictions]) if found[predictions] else None,
        max(found[dead_letters]) if found[dead_letters] else None,
    )


def _last_records(kafka: KafkaSettings, topics: list[str], budget: float) -> list[Record]:
    """The records from the last one of each partition of ``topics`` to the partition's end, read within ``budget``
    seconds (the end is the fetch's high-water mark: some brokers' ListOffsets answers lag behind)."""
    deadline = time.monotonic() + budget
    consumer = make_consumer(kafka)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for(topic) or ())
        ]
        if not partitions:
            return []
        ends = consumer.end_offsets(partitions, timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)))
        todo = [tp for tp in partitions if ends.get(tp, 0) > 0]
        if not todo:
            return []
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, ends[tp] - 1)
        records: list[Record] = []
        waiting = set(todo)
        while waiting and (left := deadline - time.monotonic()) > 0:
            batch = consumer.poll(timeout_ms=max(1, min(200, int(left * 1000))), max_records=500)
            for got in batch.values():
                records += got
            for tp in list(waiting):
                high = consumer.highwater(tp)
                if high is not None and consumer.position(tp) >= high:
                    waiting.discard(tp)
        if waiting:
            log.warning("the last records of %s were not read within %gs: left out", sorted(waiting), budget)
        return records
    finally:
        consumer.close()
