"""The label join: scored events wait for labels that come later, bounded whatever producers send.

With ``LIVELEARN_LABEL_WAIT`` set, an event without a label is scored when it arrives (its prediction published
at once) and *pending* here, with the probability it was scored with and its features (packed), until its label
comes — a :class:`~streaming.events.Label` on the labels topic or on the events topic — or its wait runs out in
event time. Every outcome is counted; each (features, label) pair the learner must learn comes out of
:meth:`LabelJoin.scored`, :meth:`LabelJoin.labelled` or :meth:`LabelJoin.advance` as a :class:`Joined`, in the
order it is to be learned:

======================  ==================================================================================
a label for              outcome
======================  ==================================================================================
a pending event          ``matched``: learned now (label time), judged with the probability stored at scoring
an event not seen yet    held as an *orphan* (``orphaned``) until its event comes (``matched`` then), or its
                         wait runs out (``orphans_expired``), or the orphan bound drops the oldest
                         (``orphans_evicted``)
an event whose label     ``duplicates`` (also a second orphan for the same id): never learned twice
was learned
an event whose wait      ``late``: not learned (the policy decided already)
ran out
======================  ==================================================================================

An event whose wait runs out is ``expired``: with policy ``negative`` it is learned as a 0 then (no purchase by the
end of the wait), with ``drop`` never. The bounds on waiting events (count and packed bytes) expire the oldest early
(``evicted``, the policy applies the same way). An event whose id is already waiting or was resolved recently (also
one that carries its label inside) is scored but not joined (``conflicts``). Ids are remembered for ``remember``
resolutions, so a late or second label is told from one for an unknown event; past that memory it is an orphan that
expires.

**Event time.** The join's clock (its *watermark*) follows the ``ts`` of what it read, per source (a partition of
the events or the labels topic): while some sources have records not read yet (:meth:`LabelJoin.hold_for`, from the
consumer's high-water marks) or were read within :data:`IDLE_AFTER_MS` of wall time, the oldest of their clocks — so
an events partition read far ahead of a lagging labels partition (a backlog after a restart) does not end the waits
whose labels are still unread —, else the newest clock of all (an idle source does not hold it). A ``ts`` more than
:data:`MAX_AHEAD_MS` ahead of the wall clock moves a source's clock only that far (a producer's bad clock cannot end
every wait at once). An event waits while ``ts + wait > watermark``.

**State.** :meth:`dump` / :meth:`load`: plain msgpack values (the pending events' features stay the bytes packed
when they arrived); it is written with each version (one copy, the newest version's: ``livelearn:{m}:join``), whose
offsets cover both topics, so a restart or takeover resumes the join exactly where the version was written.

Examples
--------
>>> join = LabelJoin(wait_ms=60_000, policy="negative")
>>> join.scored("e1", 1_000, 0.3, {"pages": 3})  # waits for its label
[]
>>> join.labelled("e2", 2_000, True)  # a label before its event: an orphan
[]
>>> [(j.event_id, j.label, j.probability) for j in join.scored("e2", 1_500, 0.7, {"pages": 9})]
[('e2', True, 0.7)]
>>> join.labelled("e2", 2_500, True)  # its second label
[]
>>> [(j.event_id, j.label, j.outcome) for j in join.advance(70_000, "events")]  # e1's wait ran out
[('e1', False, 'expired')]
>>> {k: v for k, v in join.counts.items() if v}
{'pending_in': 2, 'matched': 1, 'expired': 1, 'duplicates': 1, 'orphaned': 1}
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Literal

import msgpack

from snapshotter.packing import packb

__all__ = ["COUNTS", "IDLE_AFTER_MS", "MAX_AHEAD_MS", "Joined", "LabelJoin", "LearnedOrder", "RecentDelays"]

#: A ``ts`` further than this ahead of the wall clock moves the watermark only that far (milliseconds).
MAX_AHEAD_MS = 5 * 60_000
#: A source read within this much wall time (ms) holds the watermark at its clock even when it looks caught up (a
#: cached high-water mark lags; a replay runs event time far faster than the wall clock); idle longer, it does not.
IDLE_AFTER_MS = 2_000

#: What :attr:`LabelJoin.counts` counts (each only grows).
COUNTS = (
    "pending_in",  # events without a label that entered the join (waited, or met their label held already)
    "matched",  # labels learned with their event (also an orphan's, when its event came)
    "expired",  # waits that ran out (policy applied)
    "evicted",  # waits ended early by the bounds (policy applied)
    "late",  # labels for events whose wait had run out
    "duplicates",  # second labels (learned or held already)
    "orphaned",  # labels held before their event
    "orphans_expired",  # held labels whose event never came
    "orphans_evicted",  # held labels dropped by the orphan bound
    "conflicts",  # events whose id was waiting or resolved already: scored, not joined
    "inline",  # events that carried their label (learned at once)
)

Outcome = Literal["matched", "expired", "evicted", "inline"]
#: Per waiting event in memory: Python's objects around the packed features (its entry, id, heap item, dict slot;
#: measured by ``bench/labels.py``: ~360 B on CPython 3.11), so ``max_bytes`` bounds what waiting events hold.
ENTRY_OVERHEAD = 360
#: Per challenger's score kept with a waiting event (its entry in a small dict; measured like the above).
SCORE_OVERHEAD = 80
_RESOLVED_MATCHED, _RESOLVED_EXPIRED = 1, 2


@dataclasses.dataclass(frozen=True, slots=True)
class Joined:
    """One pair to learn (and judge): the event's features, its label, and what scored it.

    ``label`` is ``None`` for an expired event under policy ``drop`` (judged by nothing, learned never: returned
    only so the caller can count it); ``label_ts`` is ``None`` when the wait ran out. ``others``: the challengers'
    probabilities, scored with the champion's (:mod:`streaming.learner.arms`; ``None``: none scored it).
    """

    event_id: str
    features: dict[str, Any]
    label: bool | None
    probability: float
    event_ts: int
    label_ts: int | None
    outcome: Outcome
    others: dict[str, float] | None = None

    @property
    def delay_ms(self) -> int | None:
        """Label time minus event time (``None`` when no label came)."""
        return None if self.label_ts is None else max(0, self.label_ts - self.event_ts)


@dataclasses.dataclass(slots=True)
class _Pending:
    ts: int
    probability: float
    packed: bytes  # the features, msgpack
    seq: int  # arrival number: its entry in the heap
    others: dict[str, float] | None = None  # the challengers' probabilities, by arm

    @property
    def size(self) -> int:
        """What it holds in memory, as :attr:`LabelJoin.bytes` counts it."""
        return len(self.packed) + ENTRY_OVERHEAD + (0 if self.others is None else SCORE_OVERHEAD * len(self.others))


@dataclasses.dataclass(slots=True)
class _Orphan:
    ts: int
    label: bool
    seq: int


class LabelJoin:
    """Pending events and early labels, joined by ``event_id`` (see the module docstring).

    Parameters
    ----------
    wait_ms
        How long an event waits for its label, in event time (milliseconds).
    policy
        ``drop`` or ``negative``: what an event whose wait ran out becomes.
    max_pending
        Most events waiting; past it the one with the oldest ``ts`` expires early.
    max_bytes
        Most bytes of waiting events (packed features + :data:`ENTRY_OVERHEAD` each).
    max_orphans
        Most labels held for events not seen yet; past it the oldest held is dropped.
    remember
        Ids remembered once resolved (learned or expired), to tell late and second labels.
    clock_ms
        The wall clock, epoch milliseconds (bounds how far a ``ts`` can move the watermark).
    """

    def __init__(
        self,
        wait_ms: int,
        policy: Literal["drop", "negative"] = "drop",
        *,
        max_pending: int = 100_000,
        max_bytes: int = 32 * 1024 * 1024,
        max_orphans: int = 10_000,
        remember: int = 100_000,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.wait_ms, self.policy = int(wait_ms), policy
        self.max_pending, self.max_bytes = max_pending, max_bytes
        self.max_orphans, self.remember = max_orphans, remember
        self.clock_ms = clock_ms
        self.pending: dict[str, _Pending] = {}  # arrival order
        self._pending_heap: list[tuple[int, int, str]] = []  # (ts, seq, id), oldest first; stale ones skipped
        self.orphans: dict[str, _Orphan] = {}
        self._orphan_heap: list[tuple[int, int, str]] = []
        self._next_seq = 0
        self.bytes = 0
        self.resolved: OrderedDict[str, int] = OrderedDict()
        self.clocks: dict[Hashable, int] = {}  # newest ts read per source (clamped)
        self.read_at: dict[Hashable, int] = {}  # wall clock (ms) of each source's last record
        self.behind: frozenset[Hashable] = frozenset()  # sources with records not read yet: the clock waits for them
        self.counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self.delays_ms: list[int] = []  # label delays since the caller last took them (for a histogram)
        self.block_delay = [0, 0]  # sum (ms) and count of the label delays since the last metric sample

    # -- the clock ------------------------------------------------------------------------------------
    @property
    def watermark(self) -> int:
        """Event time the join has reached (``-1``: nothing read): the oldest clock of the sources that hold it —
        those with records unread (:meth:`hold_for`) or read within :data:`IDLE_AFTER_MS` of wall time —, else
        (every source idle) the newest clock of all."""
        recent = self.clock_ms() - IDLE_AFTER_MS  # now: a source idle since its last record stops holding
        holding = [self.clocks.get(s, -1) for s in self.behind]
        holding += [self.clocks[s] for s, at in self.read_at.items() if at > recent and s not in self.behind]
        if holding:
            return min(holding)
        return max(self.clocks.values(), default=-1)

    def hold_for(self, behind: Iterable[Hashable]) -> None:
        """The sources that have records not read yet (set before each poll batch): until they are read, the
        watermark waits for them."""
        self.behind = frozenset(behind)

    def ahead(self, slack_ms: int) -> set[Hashable]:
        """The sources behind (:meth:`hold_for`) whose clock is more than ``slack_ms`` past the watermark: reading
        them further only widens the gap (their events wait longer, their labels are held as orphans); paused
        until the others catch up, the reading follows event time across topics and partitions. The source at the
        watermark is never among them, and a caught-up source stops holding it within :data:`IDLE_AFTER_MS`, so
        the reading always goes on."""
        limit = self.watermark + slack_ms
        return {source for source in self.behind if self.clocks.get(source, -1) > limit}

    def advance(self, ts: int, source: Hashable) -> list[Joined]:
        """A record of ``source`` at ``ts`` was read: the waits that ran out by the new watermark end (each returned:
        learned as a 0 under the policy ``negative``, only counted under ``drop``)."""
        now = self.clock_ms()
        self.read_at[source] = now
        ts = min(ts, now + MAX_AHEAD_MS)
        if ts <= self.clocks.get(source, -1):
            return []
        self.clocks[source] = ts
        return self._expire(self.watermark)

    def _expire(self, watermark: int) -> list[Joined]:
        out: list[Joined] = []
        deadline = watermark - self.wait_ms  # an entry at or before this has waited its full wait
        pending, heap = self.pending, self._pending_heap
        while heap and heap[0][0] <= deadline:
            _ts, seq, event_id = heapq.heappop(heap)
            entry = pending.get(event_id)
            if entry is not None and entry.seq == seq:
                out.append(self._end_wait(event_id, "expired"))
        orphans, heap = self.orphans, self._orphan_heap
        while heap and heap[0][0] <= deadline:
            _ts, seq, event_id = heapq.heappop(heap)
            orphan = orphans.get(event_id)
            if orphan is not None and orphan.seq == seq:
                del orphans[event_id]
                self.counts["orphans_expired"] += 1
        return out

    def _end_wait(self, event_id: str, outcome: Literal["expired", "evicted"]) -> Joined:
        entry = self.pending.pop(event_id)
        self.bytes -= entry.size
        self.counts[outcome] += 1
        self._resolve(event_id, _RESOLVED_EXPIRED)
        label = False if self.policy == "negative" else None
        return Joined(event_id, _unpack(entry.packed), label, entry.probability, entry.ts, None, outcome, entry.others)

    def _resolve(self, event_id: str, how: int) -> None:
        if self.remember <= 0:
            return
        self.resolved[event_id] = how
        self.resolved.move_to_end(event_id)
        while len(self.resolved) > self.remember:
            self.resolved.popitem(last=False)

    def _seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    @staticmethod
    def _compact(heap: list[tuple[int, int, str]], table: dict[str, Any]) -> None:
        """Entries that left the table before their time stay in its heap: rebuilt once they outnumber it."""
        if len(heap) > 2 * len(table) + 1024:
            heap[:] = [(entry.ts, entry.seq, key) for key, entry in table.items()]
            heapq.heapify(heap)

    # -- the two inputs -------------------------------------------------------------------------------
    def scored(
        self,
        event_id: str,
        ts: int,
        probability: float,
        features: dict[str, Any],
        others: dict[str, float] | None = None,
    ) -> list[Joined]:
        """An event without a label was scored with ``probability`` (and by the challengers with ``others``): it
        waits for its label (or meets the orphan label that came first). Returns what to learn now, in order (waits
        the bounds ended — its own, when it is the oldest —, or its own pair)."""
        if event_id in self.pending or event_id in self.resolved:
            self.counts["conflicts"] += 1
            return []
        self.counts["pending_in"] += 1
        orphan = self.orphans.pop(event_id, None)
        if orphan is not None:
            self._compact(self._orphan_heap, self.orphans)
            self.counts["matched"] += 1
            self._resolve(event_id, _RESOLVED_MATCHED)
            self._delayed(max(0, orphan.ts - ts))
            return [Joined(event_id, features, orphan.label, probability, ts, orphan.ts, "matched", others)]
        entry = _Pending(ts, probability, packb(features), 0, others)
        if entry.size > self.max_bytes:  # past the byte bound alone: its wait ends at once
            self.counts["evicted"] += 1
            self._resolve(event_id, _RESOLVED_EXPIRED)
            return [Joined(event_id, features, False if self.policy == "negative" else None, probability, ts, None,
                           "evicted", others)]  # fmt: skip
        entry.seq = self._seq()
        self._insert(event_id, entry)
        out: list[Joined] = []
        heap = self._pending_heap
        while len(self.pending) > self.max_pending or self.bytes > self.max_bytes:  # the oldest by ts ends first
            _ts, seq, oldest = heapq.heappop(heap)
            waiting = self.pending.get(oldest)
            if waiting is not None and waiting.seq == seq:
                out.append(self._end_wait(oldest, "evicted"))
        return out

    def _insert(self, event_id: str, entry: _Pending) -> None:
        self.pending[event_id] = entry
        heapq.heappush(self._pending_heap, (entry.ts, entry.seq, event_id))
        self.bytes += entry.size

    def swap_scores(self, promoted: str, former: str) -> None:
        """A challenger was promoted: in each waiting event, the score of arm ``promoted`` becomes the champion's and
        the former champion's is kept as arm ``former``'s. An event the promoted arm had not scored (it started while
        the event waited) gets NaN: the champion scores it when its label comes."""
        for entry in self.pending.values():
            others = dict(entry.others or {})
            probability = others.pop(promoted, math.nan)
            others[former] = entry.probability
            entry.probability, entry.others = probability, others
        self.bytes = sum(entry.size for entry in self.pending.values())

    def inline(self, event_id: str) -> bool:
        """An event carried its label: ``True`` if it is learned at once (a later label for it is then a duplicate,
        and one held for it already was); ``False`` when its id waits or was resolved already (``conflicts``: scored,
        not learned — a pair is never learned twice)."""
        if event_id in self.pending or event_id in self.resolved:
            self.counts["conflicts"] += 1
            return False
        self.counts["inline"] += 1
        if self.orphans.pop(event_id, None) is not None:
            self._compact(self._orphan_heap, self.orphans)
            self.counts["duplicates"] += 1
        self._resolve(event_id, _RESOLVED_MATCHED)
        return True

    def labelled(self, event_id: str, ts: int, label: bool) -> list[Joined]:
        """A label arrived (after :meth:`advance` for its ``ts``): its event's pair to learn, if it waits."""
        entry = self.pending.pop(event_id, None)
        if entry is not None:
            self._compact(self._pending_heap, self.pending)
            self.bytes -= entry.size
            self.counts["matched"] += 1
            self._resolve(event_id, _RESOLVED_MATCHED)
            self._delayed(max(0, ts - entry.ts))
            return [
                Joined(event_id, _unpack(entry.packed), label, entry.probability, entry.ts, ts, "matched", entry.others)
            ]
        how = self.resolved.get(event_id)
        if how == _RESOLVED_MATCHED or event_id in self.orphans:
            self.counts["duplicates"] += 1
            return []
        if how == _RESOLVED_EXPIRED:
            self.counts["late"] += 1
            return []
        self.counts["orphaned"] += 1
        self._hold(event_id, _Orphan(ts, label, self._seq()))
        return []

    def _hold(self, event_id: str, orphan: _Orphan) -> None:
        self.orphans[event_id] = orphan
        heap = self._orphan_heap
        heapq.heappush(heap, (orphan.ts, orphan.seq, event_id))
        while len(self.orphans) > self.max_orphans:  # the oldest by ts goes first
            _ts, seq, oldest = heapq.heappop(heap)
            held = self.orphans.get(oldest)
            if held is not None and held.seq == seq:
                del self.orphans[oldest]
                self.counts["orphans_evicted"] += 1

    # -- figures --------------------------------------------------------------------------------------
    def oldest_pending_ms(self) -> int | None:
        """How long, in event time, the oldest waiting event has waited (``None``: none waits)."""
        heap, pending = self._pending_heap, self.pending
        while heap and (heap[0][2] not in pending or pending[heap[0][2]].seq != heap[0][1]):
            heapq.heappop(heap)  # entries that left before their time first
        if not heap:
            return None
        return max(0, self.watermark - heap[0][0])

    def figures(self) -> dict[str, int | float | None]:
        """The counts, what waits now, the oldest wait and the label coverage — the share of the events whose wait
        ended that got their label (``None`` before any) — for the status, a version's metadata, the metrics."""
        c = self.counts
        labelled = c["matched"] + c["inline"]
        ended = labelled + c["expired"] + c["evicted"]
        return {
            **c,
            "coverage": labelled / ended if ended else None,
            "pending": len(self.pending),
            "pending_bytes": self.bytes,
            "orphans": len(self.orphans),
            "oldest_pending_seconds": None if (age := self.oldest_pending_ms()) is None else age / 1000,
        }

    def _delayed(self, delay_ms: int) -> None:
        self.delays_ms.append(delay_ms)
        self.block_delay[0] += delay_ms
        self.block_delay[1] += 1

    def take_block_delay(self) -> float | None:
        """The mean label delay (seconds) of the labels joined since the last call (a metric sample's block;
        ``None``: none)."""
        total, count = self.block_delay
        self.block_delay = [0, 0]
        return None if not count else total / count / 1000

    def take_delays(self) -> list[int]:
        """The label delays (ms) recorded since the last call."""
        delays, self.delays_ms = self.delays_ms, []
        return delays

    # -- state ----------------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """The join as plain msgpack values (waiting events in their arrival order, with their packed features)."""
        return self.capture()()

    def capture(self) -> Callable[[], dict[str, Any]]:
        """The join as it stands, copied by reference (O(entries), no packing: a waiting entry never changes); the
        returned function builds :meth:`dump`'s document later (in the snapshot writer thread)."""
        pending, orphans, resolved = list(self.pending.items()), list(self.orphans.items()), list(self.resolved.items())
        clocks, counts = [[source, ts] for source, ts in self.clocks.items()], dict(self.counts)

        def document() -> dict[str, Any]:
            return {
                # arrival order (dict order); the challengers' scores as a fifth item when there are any
                "pending": [
                    [i, e.ts, e.probability, e.packed, *(() if e.others is None else (e.others,))] for i, e in pending
                ],
                "orphans": [[i, o.ts, o.label] for i, o in orphans],  # arrival order
                "resolved": [[i, how] for i, how in resolved],
                "clocks": clocks,
                "counts": counts,
            }

        return document

    def load(self, state: dict[str, Any] | None) -> None:
        """Take a :meth:`dump` (``None``: nothing waits, as a version written before the join)."""
        self.pending.clear()
        self._pending_heap.clear()
        self.orphans.clear()
        self._orphan_heap.clear()
        self._next_seq = 0
        self.bytes = 0
        self.resolved.clear()
        self.counts = dict.fromkeys(COUNTS, 0)
        self.clocks.clear()
        self.read_at.clear()
        self.behind = frozenset()
        self.delays_ms = []
        self.block_delay = [0, 0]
        if not state:
            return
        for event_id, ts, probability, packed, *rest in state["pending"]:  # beyond smaller bounds: the next evicts
            others = {str(arm): float(p) for arm, p in rest[0].items()} if rest else None
            self._insert(str(event_id), _Pending(int(ts), float(probability), bytes(packed), self._seq(), others))
        for event_id, ts, label in state["orphans"]:  # (beyond a smaller bound: the next held label evicts)
            orphan = self.orphans[str(event_id)] = _Orphan(int(ts), bool(label), self._seq())
            heapq.heappush(self._orphan_heap, (orphan.ts, orphan.seq, str(event_id)))
        for event_id, how in state["resolved"]:
            self.resolved[str(event_id)] = int(how)
        for source, ts in state["clocks"]:  # (a partition's (topic, number) comes back from msgpack as a list)
            self.clocks[tuple(source) if isinstance(source, list) else source] = int(ts)
        self.counts.update({k: int(v) for k, v in state["counts"].items() if k in self.counts})


def _unpack(packed: bytes) -> dict[str, Any]:
    features: dict[str, Any] = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    return features


class LearnedOrder:
    """The (event id, label) pairs learned since the last version, in learning order: each version stores its own
    (``stream.learned``), so the parent chain of a version says exactly which pairs its model learned, in which
    order (``livelearn versions learned``) — what a plain river loop must learn to equal it.

    >>> order = LearnedOrder()
    >>> order.append("e1", True); order.append("e7", False)
    >>> order.take()
    {'ids': ['e1', 'e7'], 'labels': b'\\x01\\x00'}
    >>> order.take()
    {'ids': [], 'labels': b''}
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.labels = bytearray()

    def append(self, event_id: str, label: bool) -> None:
        self.ids.append(event_id)
        self.labels.append(1 if label else 0)

    def take(self) -> dict[str, Any]:
        """The pairs since the last call (the next version's), and start again."""
        taken = {"ids": self.ids, "labels": bytes(self.labels)}
        self.ids, self.labels = [], bytearray()
        return taken

    def clear(self) -> None:
        """The model moved to another version (a rollback): what was learned since is not in it."""
        self.ids, self.labels = [], bytearray()


class RecentDelays:
    """The label delays of the last ``size`` labels joined, summarised for the status and the live view.

    >>> delays = RecentDelays(size=4)
    >>> delays.add([1000, 2000, 3000, 60_000, 4000])  # the oldest falls out
    >>> delays.summary()
    {'delay_p50_seconds': 4.0, 'delay_p90_seconds': 60.0, 'delay_max_seconds': 60.0}
    """

    def __init__(self, size: int = 10_000) -> None:
        self.recent: deque[int] = deque(maxlen=size)

    def add(self, delays_ms: list[int]) -> None:
        self.recent.extend(delays_ms)

    def summary(self) -> dict[str, float | None]:
        """Median, 90th percentile and largest delay (seconds; ``None`` before any label)."""
        if not self.recent:
            return {"delay_p50_seconds": None, "delay_p90_seconds": None, "delay_max_seconds": None}
        ordered = sorted(self.recent)

        def at(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

        return {"delay_p50_seconds": at(0.5), "delay_p90_seconds": at(0.9), "delay_max_seconds": ordered[-1] / 1000}
