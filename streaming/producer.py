"""Replay events into Kafka, optionally at a fixed rate (the demo and benchmark producer).

Records are keyed by ``user_id`` (or ``event_id``), so one visitor's events stay in order on one
partition. With ``rate`` set, sends are paced against a monotonic clock, not by sleeping a fixed
time per event, so the average rate holds even when individual sends are slow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import KafkaProducer

from streaming.events import Event, encode_event

__all__ = ["replay"]


def replay(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[Event],
    *,
    rate: float | None = None,
    fmt: str = "msgpack",
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send ``events`` to ``topic``; return how many were sent (and flushed)."""
    sent = 0
    start = time.monotonic()
    for event in events:
        if should_stop():
            break
        key = (event.user_id or event.event_id).encode()
        producer.send(topic, key=key, value=encode_event(event, fmt))  # type: ignore[arg-type]
        sent += 1
        if rate:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if on_progress and sent % 1000 == 0:
            on_progress(sent)
    producer.flush()
    return sent
