"""Replay events into Kafka, optionally at a fixed rate (the demo and benchmark producer).

Records are keyed by ``user_id`` (or ``event_id``), so one visitor's events stay in order on one
partition. With ``rate`` set, sends are paced against a monotonic clock, not by sleeping a fixed
time per event, so the average rate holds even when individual sends are slow.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Iterator

from streaming.events import Event, encode_event
from streaming.transport import Producer

__all__ = ["flip_labels", "replay"]


def flip_labels(
    events: Iterable[Event], after: int, count: int | None = None, *, probability: float = 0.5, seed: int = 0
) -> Iterator[Event]:
    """Corrupt labels from the ``after``-th event for ``count`` events (default: all the rest): a demo drift.

    Each label in the burst is inverted with ``probability``: 0.5 turns labels into coin flips that no
    model can learn (accuracy ~0.5, the default); 1.0 inverts them all, which an online model learns to
    follow within a few hundred events.

    >>> evs = [Event(str(i), i, {}, label=True) for i in range(4)]
    >>> [e.label for e in flip_labels(evs, after=1, count=2, probability=1.0)]
    [True, False, False, True]
    """
    rng = random.Random(seed)
    for index, event in enumerate(events):
        in_burst = index >= after and (count is None or index < after + count) and event.label is not None
        flipped = in_burst and rng.random() < probability
        yield dataclasses.replace(event, label=not event.label) if flipped else event


def replay(
    producer: Producer,
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
        producer.send(topic, encode_event(event, fmt), key=key)  # type: ignore[arg-type]
        sent += 1
        if rate:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if on_progress and sent % 1000 == 0:
            on_progress(sent)
    producer.flush()
    return sent
