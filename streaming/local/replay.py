"""Replay events into Kafka, optionally at a fixed rate and with their labels sent later (the demo and benchmark
producer).

Records are keyed by ``user_id`` (or ``event_id``), so one visitor's events stay in order on one
partition. With ``rate`` set, sends are paced against a monotonic clock, not by sleeping a fixed
time per event, so the average rate holds even when individual sends are slow.

Labels that come later (issue 19): :func:`delay_labels` turns labelled events into the stream a shop produces —
each session without its label, then its purchase (a :class:`~streaming.events.Label`) a seeded random delay of
event time later — and :func:`replay` sends each label to the labels topic (or the events topic) **keyed like its
event**: the key of the event (its ``user_id``, else its ``event_id``) is remembered until its label is sent, so a
visitor's labels land on the partition of that visitor's events.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, NamedTuple

from streaming.events import Event, Label, encode_event, encode_label
from streaming.transport import Producer

__all__ = [
    "REMEMBERED_KEYS",
    "LabelDelay",
    "LabelSend",
    "Replayed",
    "delay_labels",
    "flip_labels",
    "parse_delay",
    "replay",
]

#: Which labels :func:`delay_labels` sends: every one, or only the purchases (positive labels).
LabelSend = Literal["all", "purchases"]
_SENDS = ("all", "purchases")
_DURATION = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?\s*")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}
#: Keys of events whose label may come later that :func:`replay` remembers (the oldest is forgotten first).
REMEMBERED_KEYS = 100_000


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


def _milliseconds(text: str) -> int:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"use MIN..MAX with units ms, s, m or h (e.g. 30s..10m), got {text.strip()[:40]!r}")
    return round(float(match["number"]) * _UNIT_MS[match["unit"]])


def parse_delay(text: str) -> tuple[int, int]:
    """A delay range ``MIN..MAX`` (or one duration: always that delay) in milliseconds; a duration is a number with
    ``ms``, ``s``, ``m`` or ``h`` (none: seconds), as ``LIVELEARN_LABEL_WAIT`` takes it.

    Parameters
    ----------
    text
        Such as ``30s..10m``, ``250ms..2s`` or ``90s``.

    Examples
    --------
    >>> parse_delay("30s..10m"), parse_delay("1.5s"), parse_delay("0..250ms")
    ((30000, 600000), (1500, 1500), (0, 250))
    >>> parse_delay("10m..30s")
    Traceback (most recent call last):
    ...
    ValueError: the minimum 10m is above the maximum 30s; write MIN..MAX
    """
    parts = text.split("..")
    if len(parts) > 2:
        raise ValueError(f"use MIN..MAX with units ms, s, m or h (e.g. 30s..10m), got {text.strip()[:40]!r}")
    low, high = _milliseconds(parts[0]), _milliseconds(parts[-1])
    if low > high:
        raise ValueError(f"the minimum {parts[0].strip()} is above the maximum {parts[-1].strip()}; write MIN..MAX")
    return low, high


def _shown(ms: int) -> str:
    """``ms`` in the largest unit that writes it whole (``600000`` → ``10m``)."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms else "0s"


def _check_plan(delay: tuple[int, int], send: str, missing: float) -> None:
    if not 0 <= delay[0] <= delay[1]:
        raise ValueError(f"a delay is 0 <= MIN <= MAX milliseconds, got {delay}")
    if send not in _SENDS:
        raise ValueError(f"send all or purchases, got {send!r}")
    if not 0 <= missing <= 1:
        raise ValueError(f"the share of missing labels is from 0 to 1, got {missing}")


def delay_labels(
    events: Iterable[Event],
    delay: tuple[int, int],
    *,
    seed: int = 0,
    send: LabelSend = "all",
    missing: float = 0.0,
) -> Iterator[Event | Label]:
    """Each labelled event without its label, and its label on its own a random delay of event time later.

    The stream is in event-time order: a label (``ts`` = its event's ``ts`` + a delay drawn uniformly from
    ``delay``) comes out before the first event whose ``ts`` is at or past it, and the labels still due when the
    events end come last, by ``ts`` (two labels due at the same time: in their events' order). An event without a
    label passes as it is. Pure and seeded: the same arguments give the same stream. The delay and the missing
    draw are made for every label that may be sent, so the labels kept with ``missing`` set keep their delays.

    Parameters
    ----------
    events
        Events in event-time order (the bundled dataset's are one second apart: ``30s..10m`` is 30 to 600
        events later).
    delay
        ``(min, max)`` milliseconds of event time, bounds included (:func:`parse_delay` reads ``30s..10m``).
    seed
        Seed of the delays and the missing draws.
    send
        ``"all"`` labels, or ``"purchases"`` only (positive labels: an e-commerce feed of orders; a session that
        bought nothing is then a negative only with ``LIVELEARN_LABEL_POLICY=negative``, once its wait expires).
    missing
        Share of the labels never sent (each dropped with this probability).

    Examples
    --------
    >>> events = [Event(f"s{i}", 1000 * i, {"pages": i}, label=i == 1) for i in range(4)]
    >>> for record in delay_labels(events, (1500, 1500)):
    ...     print(record)  # doctest: +NORMALIZE_WHITESPACE
    Event(event_id='s0', ts=0, features={'pages': 0}, label=None, user_id=None)
    Event(event_id='s1', ts=1000, features={'pages': 1}, label=None, user_id=None)
    Label(event_id='s0', ts=1500, label=False)
    Event(event_id='s2', ts=2000, features={'pages': 2}, label=None, user_id=None)
    Label(event_id='s1', ts=2500, label=True)
    Event(event_id='s3', ts=3000, features={'pages': 3}, label=None, user_id=None)
    Label(event_id='s2', ts=3500, label=False)
    Label(event_id='s3', ts=4500, label=False)
    >>> [r.event_id for r in delay_labels(events, (0, 5000), send="purchases") if isinstance(r, Label)]
    ['s1']
    """
    _check_plan(delay, send, missing)
    rng = random.Random(seed)
    due: list[tuple[int, int, Label]] = []  # (ts, sequence, label): the sequence orders ties, never the label
    for sequence, event in enumerate(events):
        while due and due[0][0] <= event.ts:
            yield heapq.heappop(due)[2]
        if event.label is None:
            yield event
            continue
        yield dataclasses.replace(event, label=None)
        if send == "purchases" and not event.label:
            continue
        dropped, ts = rng.random() < missing, event.ts + rng.randint(*delay)
        if not dropped:
            heapq.heappush(due, (ts, sequence, Label(event.event_id, ts, bool(event.label))))
    while due:
        yield heapq.heappop(due)[2]


@dataclasses.dataclass(frozen=True)
class LabelDelay:
    """How a replay sends labels after their events (``livelearn produce|up --label-delay``): see
    :func:`delay_labels`.

    Parameters
    ----------
    low_ms, high_ms
        The shortest and longest delay, in milliseconds of event time.
    send
        ``"all"`` or ``"purchases"`` (default ``"all"``).
    missing
        Share of the labels never sent (default ``0``).
    seed
        Seed of the delays and missing labels (default ``0``).

    Examples
    --------
    >>> plan = LabelDelay.parse("30s..10m", send="purchases")
    >>> plan, plan.max_seconds
    (LabelDelay(low_ms=30000, high_ms=600000, send='purchases', missing=0.0, seed=0), 600.0)
    >>> str(plan)
    '30s..10m'
    """

    low_ms: int
    high_ms: int
    send: LabelSend = "all"
    missing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_plan((self.low_ms, self.high_ms), self.send, self.missing)

    @classmethod
    def parse(cls, text: str, *, send: str = "all", missing: float = 0.0, seed: int = 0) -> LabelDelay:
        """The plan for the range ``text`` (:func:`parse_delay`); a :class:`ValueError` says what is wrong."""
        if send not in _SENDS:
            raise ValueError(f"send all or purchases, got {send!r}")
        low, high = parse_delay(text)
        return cls(low, high, "purchases" if send == "purchases" else "all", missing, seed)

    @property
    def max_seconds(self) -> float:
        """The longest delay in seconds: the learner's ``LIVELEARN_LABEL_WAIT`` must be longer."""
        return self.high_ms / 1000

    def apply(self, events: Iterable[Event]) -> Iterator[Event | Label]:
        """``events`` with their labels sent later, as planned."""
        return delay_labels(events, (self.low_ms, self.high_ms), seed=self.seed, send=self.send, missing=self.missing)

    def __str__(self) -> str:
        return f"{_shown(self.low_ms)}..{_shown(self.high_ms)}"


class Replayed(NamedTuple):
    """What a replay sent (and flushed): events, and labels on their own."""

    events: int
    labels: int


class _LabelKeys:
    """The key of each sent event whose label may come later, until its label is sent (at most ``size``: the
    oldest is forgotten first, its label then keyed by its ``event_id``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    def sent(self, event: Event, key: bytes) -> None:
        if event.label is None and event.user_id:  # an event keyed by its id needs no memory: a label has the id
            self._keys[event.event_id] = key
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)

    def key_of(self, label: Label) -> bytes:
        return self._keys.pop(label.event_id, None) or label.event_id.encode()


def replay(
    producer: Producer,
    topic: str,
    events: Iterable[Event | Label],
    *,
    labels_topic: str | None = None,
    rate: float | None = None,
    fmt: str = "msgpack",
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Replayed], None] | None = None,
    remember: int = REMEMBERED_KEYS,
) -> Replayed:
    """Send ``events`` to ``topic``, and the labels among them to ``labels_topic`` (default: ``topic`` too, as label
    records); return how many of each were sent (and flushed).

    An event is keyed by its ``user_id`` (else its ``event_id``); a label like its event: the event's key is kept
    from its send until its label's (for the last ``remember`` events whose label may come later), so one user's
    labels go to the partition of that user's events. A label whose event was not sent here (or was forgotten) is
    keyed by its ``event_id``. ``rate`` paces the events (events/s); labels are sent as they come, unpaced.
    ``on_progress`` gets the counts every 1000 events.
    """
    form: Literal["msgpack", "json"] = "json" if fmt == "json" else "msgpack"
    keys, labels_to = _LabelKeys(remember), labels_topic or topic
    sent, labels = 0, 0
    start = time.monotonic()
    for record in events:
        if should_stop():
            break
        if isinstance(record, Label):
            producer.send(labels_to, encode_label(record, form), key=keys.key_of(record))
            labels += 1
            continue
        key = (record.user_id or record.event_id).encode()
        producer.send(topic, encode_event(record, form), key=key)
        keys.sent(record, key)
        sent += 1
        if rate:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if on_progress and sent % 1000 == 0:
            on_progress(Replayed(sent, labels))
    producer.flush()
    return Replayed(sent, labels)
