"""A fixed range of one partition of a topic, read as events: a known-good period to calibrate on or to gate with.

A range is written ``kafka:TOPIC:PARTITION:FROM-TO`` (offsets, ``TO`` exclusive and optional: ``FROM-`` reads
to the partition's end as it is when reading starts). Topic names cannot hold ``:``, so the form is unambiguous.
Records that do not decode are skipped, as the learner dead-letters them.

>>> parse_topic_range("kafka:shop.events:0:1000-5000")
TopicRange(topic='shop.events', partition=0, start=1000, end=5000)
>>> parse_topic_range("kafka:shop.events:2:0-").end is None
True
>>> parse_topic_range("kafka:shop.events:0:9-3")
Traceback (most recent call last):
...
streaming.errors.InputError: topic range 'kafka:shop.events:0:9-3': the end offset 3 is not after the start 9; ...
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator

from streaming.config import KafkaSettings
from streaming.errors import EventError, InputError
from streaming.events import Event, EventLimits, decode_event

__all__ = ["PREFIX", "TopicRange", "is_topic_range", "parse_topic_range", "read_topic_range"]

PREFIX = "kafka:"
_FORM = re.compile(r"kafka:(?P<topic>[A-Za-z0-9._-]+):(?P<partition>\d+):(?P<start>\d+)-(?P<end>\d*)")


@dataclasses.dataclass(frozen=True)
class TopicRange:
    """Offsets ``[start, end)`` of one partition; ``end=None``: up to the high-water mark when reading starts."""

    topic: str
    partition: int
    start: int
    end: int | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.topic}:{self.partition}:{self.start}-{'' if self.end is None else self.end}"


def is_topic_range(text: str) -> bool:
    """Whether ``text`` names a topic range rather than a file."""
    return text.startswith(PREFIX)


def parse_topic_range(text: str) -> TopicRange:
    """``kafka:TOPIC:PARTITION:FROM-TO`` as a :class:`TopicRange` (an :class:`InputError` saying the form if not)."""
    match = _FORM.fullmatch(text.strip())
    if match is None:
        raise InputError(f"topic range {text!r} is not kafka:TOPIC:PARTITION:FROM-TO (e.g. kafka:shop.events:0:0-5000)")
    start, end = int(match["start"]), int(match["end"]) if match["end"] else None
    if end is not None and end <= start:
        raise InputError(
            f"topic range {text!r}: the end offset {end} is not after the start {start}; "
            "write kafka:TOPIC:PARTITION:FROM-TO with FROM < TO"
        )
    return TopicRange(match["topic"], int(match["partition"]), start, end)


def read_topic_range(
    kafka: KafkaSettings,
    limits: EventLimits,
    rng: TopicRange,
    limit: int | None = None,
    read: dict[str, int] | None = None,
) -> Iterator[Event]:
    """The events at offsets ``[rng.start, rng.end)`` (at most ``limit`` records), each through the event contract
    with ``limits``; ``read`` gets the first and last offset read. A range past the partition's end, a missing
    partition or a silent broker is an :class:`InputError`."""
    from streaming.transport import TopicPartition, make_consumer, topic_partitions

    read = {} if read is None else read
    tp = TopicPartition(rng.topic, rng.partition)
    consumer = make_consumer(kafka)
    where = f"{rng.topic} partition {rng.partition}"
    try:
        if tp not in topic_partitions(consumer, rng.topic):
            raise InputError(f"topic {rng.topic!r} has no partition {rng.partition}; name another partition")
        consumer.assign([tp])
        consumer.seek(tp, rng.start)
        idle_since = time.monotonic()
        while True:
            high = consumer.highwater(tp)  # known after the first fetch; exact where ListOffsets answers lag
            if high is not None and (rng.start > high or (rng.end is not None and rng.end > high)):
                raise InputError(f"{where} ends at offset {high}; name a range that ends there or before")
            until = rng.end if rng.end is not None else high
            stops = [x for x in (until, None if limit is None else rng.start + limit) if x is not None]
            stop = min(stops) if stops else None
            if stop is not None and consumer.position(tp) >= stop:
                return
            records = consumer.poll(kafka.poll_timeout_ms, kafka.poll_max_records)
            for record in records.get(tp, []):
                if record.offset < rng.start:  # the broker reset an out-of-range position to the beginning
                    raise InputError(f"offset {rng.start} is out of range on {where}")
                if stop is not None and record.offset >= stop:
                    return
                read.setdefault("first", record.offset)
                read["last"] = record.offset
                try:
                    yield decode_event(record.value, kafka.event_format, limits)
                except EventError:
                    continue
            if records:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > kafka.bootstrap_timeout_seconds:
                raise InputError(
                    f"no records from {where} at offset {consumer.position(tp)} within "
                    f"{kafka.bootstrap_timeout_seconds:g}s; check the range and LIVELEARN_KAFKA_BOOTSTRAP"
                )
    finally:
        consumer.close()
