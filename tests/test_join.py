"""The label join: every outcome of its table, both policies, the bounds, the watermark, and its state.

The join is pure, so each test drives it the way the learner does (:func:`event` and :func:`label`: ``advance``
for the record's ``ts``, then ``scored`` / ``labelled``) with an injected wall clock (:class:`Wall`: it stands still
until a test moves it, so every source read holds the watermark until :func:`go_idle`). :class:`Checked` is that
driver with every call checked against what the join must do (the pairs it returns, the counts, the bounds, its
heaps); the property tests feed it hostile mixes and check the accounting identities at the end.
"""

from __future__ import annotations

import copy
import gc
import random
import tracemalloc
from collections import Counter
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.learner.join import (
    COUNTS,
    ENTRY_OVERHEAD,
    IDLE_AFTER_MS,
    MAX_AHEAD_MS,
    Joined,
    LabelJoin,
    LearnedOrder,
    RecentDelays,
)

CLOCK = 1_700_000_000_000  # the injected wall clock (epoch ms)
WAIT = 60_000
INT64_MAX = 2**63 - 1
HOSTILE_TS = (0, INT64_MAX, CLOCK + 10**9)
EVENTS, LABELS = ("events", 0), ("labels", 0)  # sources: partitions, (topic, number) as the learner names them


class Wall:
    """The injected wall clock (epoch ms): it moves only when a test moves it."""

    def __init__(self, now: int = CLOCK) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make(**kwargs: Any) -> LabelJoin:
    kwargs.setdefault("clock_ms", Wall())
    return LabelJoin(kwargs.pop("wait_ms", WAIT), **kwargs)


def wall(join: LabelJoin) -> Wall:
    clock = join.clock_ms
    assert isinstance(clock, Wall)
    return clock


def go_idle(join: LabelJoin) -> None:
    """More than :data:`IDLE_AFTER_MS` of wall time passes: every source read so far stops holding the watermark
    (as of the next record read: the join reads the wall clock then)."""
    wall(join).now += IDLE_AFTER_MS + 1


def event(join: LabelJoin, event_id: str, ts: int, probability: float = 0.5, features: Any = None) -> list[Joined]:
    """An event without a label read at ``ts``: what the join returns to learn, in order."""
    out = join.advance(ts, EVENTS)
    return out + join.scored(event_id, ts, probability, {"id": event_id} if features is None else features)


def label(join: LabelJoin, event_id: str, ts: int, value: bool = True) -> list[Joined]:
    """A label record read at ``ts`` (on the labels topic)."""
    return join.advance(ts, LABELS) + join.labelled(event_id, ts, value)


def nonzero(join: LabelJoin) -> dict[str, int]:
    return {k: v for k, v in join.counts.items() if v}


def size(features: dict[str, Any]) -> int:
    return len(msgpack.packb(features, use_bin_type=True)) + ENTRY_OVERHEAD


def heap_bounded(join: LabelJoin) -> bool:
    """Entries that left before their time stay in a heap only until they outnumber the live ones 2x + 1024."""
    return len(join._pending_heap) <= 2 * len(join.pending) + 1025 and (
        len(join._orphan_heap) <= 2 * len(join.orphans) + 1025
    )


# -- the table: one outcome each --------------------------------------------------------------------------------
def test_a_label_for_a_waiting_event_is_learned_with_the_features_and_probability_it_was_scored_with():
    join = make()
    assert event(join, "e1", CLOCK, 0.25, {"pages": 3, "month": "Feb"}) == []
    assert join.figures()["pending"] == 1 and join.bytes == size({"pages": 3, "month": "Feb"})
    (pair,) = label(join, "e1", CLOCK + 7_000, True)
    assert pair == Joined("e1", {"pages": 3, "month": "Feb"}, True, 0.25, CLOCK, CLOCK + 7_000, "matched")
    assert pair.delay_ms == 7_000
    assert nonzero(join) == {"pending_in": 1, "matched": 1}
    assert join.pending == {} and join.bytes == 0
    assert join.take_delays() == [7_000]


def test_a_label_before_its_event_is_held_and_learned_when_the_event_comes():
    join = make()
    assert label(join, "e1", CLOCK + 2_000, False) == []
    assert nonzero(join) == {"orphaned": 1} and join.figures()["orphans"] == 1
    (pair,) = event(join, "e1", CLOCK, 0.9, {"a": 1})
    assert pair == Joined("e1", {"a": 1}, False, 0.9, CLOCK, CLOCK + 2_000, "matched")
    assert nonzero(join) == {"pending_in": 1, "matched": 1, "orphaned": 1}
    assert join.orphans == {} and join.pending == {}
    assert label(join, "e1", CLOCK + 3_000) == []  # it was learned: a third label is a duplicate
    assert join.counts["duplicates"] == 1


def test_a_label_dated_before_its_event_has_no_negative_delay():
    join = make()
    label(join, "e1", CLOCK - 500)
    (pair,) = event(join, "e1", CLOCK)
    assert pair.delay_ms == 0 and join.take_delays() == [0]


def test_a_held_label_whose_event_never_comes_expires_after_the_wait():
    join = make()
    label(join, "e1", CLOCK)
    go_idle(join)  # the labels go quiet: the events' clock alone moves the watermark
    event(join, "other", CLOCK + WAIT - 1)
    assert join.counts["orphans_expired"] == 0 and "e1" in join.orphans  # one ms before its wait ran out
    event(join, "other2", CLOCK + WAIT)
    assert join.counts["orphans_expired"] == 1 and join.orphans == {}
    assert event(join, "e1", CLOCK + WAIT + 1) == []  # the event after all: it waits, nothing held matches it
    assert "e1" in join.pending and join.counts["matched"] == 0


def test_the_orphan_bound_drops_the_oldest_held_label():
    join = make(max_orphans=2)
    for i, event_id in enumerate(("a", "b", "c")):
        label(join, event_id, CLOCK + i)
    assert list(join.orphans) == ["b", "c"]
    assert join.counts["orphaned"] == 3 and join.counts["orphans_evicted"] == 1
    assert event(join, "a", CLOCK) == []  # its label was dropped: it waits
    assert [p.event_id for p in event(join, "c", CLOCK)] == ["c"]


def test_the_orphan_bound_drops_the_oldest_held_label_by_ts_not_the_first_to_arrive():
    join = make(max_orphans=3)
    for event_id, ts in (("t5", 5), ("t1", 1), ("t3", 3), ("t3b", 3)):  # read in this order
        label(join, event_id, CLOCK + ts)
    assert sorted(join.orphans) == ["t3", "t3b", "t5"]  # t1 went first, though t5 came before it
    label(join, "t4", CLOCK + 4)
    assert sorted(join.orphans) == ["t3b", "t4", "t5"]  # of one ts, the first to arrive goes first
    label(join, "t0", CLOCK)  # older than every label held: it is the one dropped
    assert sorted(join.orphans) == ["t3b", "t4", "t5"]
    assert join.counts["orphaned"] == 6 and join.counts["orphans_evicted"] == 3
    assert event(join, "t0", CLOCK) == [] and event(join, "t1", CLOCK) == []  # dropped: they wait
    assert [p.label_ts for p in event(join, "t5", CLOCK)] == [CLOCK + 5]


def test_with_no_room_for_orphans_an_early_label_is_dropped_at_once_and_counted():
    join = make(max_orphans=0)
    assert label(join, "e1", CLOCK) == []
    assert nonzero(join) == {"orphaned": 1, "orphans_evicted": 1} and join.orphans == {}


def test_a_second_label_after_a_match_is_a_duplicate_and_never_learned_twice():
    join = make()
    event(join, "e1", CLOCK)
    assert len(label(join, "e1", CLOCK + 1, True)) == 1
    assert label(join, "e1", CLOCK + 2, False) == []
    assert nonzero(join) == {"pending_in": 1, "matched": 1, "duplicates": 1}


def test_a_second_label_for_a_held_orphan_is_a_duplicate_and_the_first_label_wins():
    join = make()
    label(join, "e1", CLOCK, True)
    label(join, "e1", CLOCK + 1, False)
    assert nonzero(join) == {"orphaned": 1, "duplicates": 1} and len(join.orphans) == 1
    (pair,) = event(join, "e1", CLOCK)
    assert pair.label is True and pair.label_ts == CLOCK


def test_a_label_after_the_wait_ran_out_is_late_and_not_learned():
    join = make()
    event(join, "e1", CLOCK)
    (expired,) = event(join, "e2", CLOCK + WAIT)
    assert expired.event_id == "e1" and expired.outcome == "expired"
    assert label(join, "e1", CLOCK + WAIT + 1) == []
    assert join.counts["late"] == 1 and join.counts["matched"] == 0


def test_a_late_label_past_the_ids_remembered_is_an_orphan_that_expires():
    join = make(remember=1)
    event(join, "e1", CLOCK)
    event(join, "e2", CLOCK + 1)
    event(join, "e3", CLOCK + WAIT + 1)  # e1 and e2 expire; only e2 is remembered
    label(join, "e2", CLOCK + WAIT + 2)
    label(join, "e1", CLOCK + WAIT + 2)
    assert join.counts["late"] == 1 and join.counts["orphaned"] == 1 and list(join.orphans) == ["e1"]


def test_an_id_resolved_again_is_a_conflict_and_the_oldest_resolution_is_forgotten_first():
    join = make(remember=2)
    join.advance(CLOCK, EVENTS)
    for event_id in ("a", "b"):
        join.inline(event_id)
    assert not join.inline("a")  # a again: a conflict, resolved once (not moved to the newest)
    join.inline("c")  # a is now the oldest resolution, forgotten first
    assert list(join.resolved) == ["b", "c"]
    label(join, "a", CLOCK)
    label(join, "b", CLOCK)
    assert join.counts["orphaned"] == 1 and join.counts["duplicates"] == 1 and join.counts["conflicts"] == 1


def test_an_id_seen_again_after_it_was_forgotten_waits_its_own_wait():
    join = make(remember=0)
    event(join, "e1", CLOCK)
    label(join, "e1", CLOCK)
    go_idle(join)  # the labels go quiet
    assert event(join, "e1", CLOCK + WAIT // 2) == []  # forgotten: a new wait, not a conflict
    assert join.advance(CLOCK + WAIT, EVENTS) == []  # the first wait's end is not this one's
    assert [p.event_ts for p in join.advance(CLOCK + WAIT // 2 + WAIT, EVENTS)] == [CLOCK + WAIT // 2]


def test_the_count_bound_ends_an_id_seen_again_by_its_new_ts():
    join = make(remember=0, max_pending=2)
    event(join, "e1", CLOCK)
    label(join, "e1", CLOCK)
    event(join, "e1", CLOCK + 20)  # forgotten: waits again, younger than e2
    event(join, "e2", CLOCK + 10)
    assert [p.event_id for p in event(join, "e3", CLOCK + 30)] == ["e2"]


def test_with_no_memory_a_second_label_is_an_orphan():
    join = make(remember=0)
    event(join, "e1", CLOCK)
    label(join, "e1", CLOCK)
    label(join, "e1", CLOCK)
    assert join.resolved == {} and join.counts["orphaned"] == 1 and join.counts["duplicates"] == 0


@pytest.mark.parametrize("resolution", ["waiting", "matched", "expired"])
def test_an_event_whose_id_waits_or_was_resolved_is_a_conflict_and_not_joined(resolution):
    join = make()
    event(join, "e1", CLOCK, 0.1, {"first": True})
    if resolution == "matched":
        label(join, "e1", CLOCK)
    elif resolution == "expired":
        event(join, "e2", CLOCK + WAIT)
    before = dict(join.pending)
    assert join.scored("e1", CLOCK + WAIT, 0.9, {"second": True}) == []
    assert join.counts["conflicts"] == 1 and join.counts["pending_in"] == 1 + (resolution == "expired")
    assert join.pending == before
    if resolution == "waiting":  # the first event still waits, with its own features
        (pair,) = label(join, "e1", CLOCK + 1)
        assert pair.features == {"first": True} and pair.probability == 0.1


def test_a_label_for_an_event_that_carried_its_label_is_a_duplicate():
    join = make()
    join.advance(CLOCK, EVENTS)
    join.inline("e1")
    assert label(join, "e1", CLOCK + 1) == []
    assert nonzero(join) == {"inline": 1, "duplicates": 1}
    assert join.scored("e1", CLOCK, 0.5, {}) == [] and join.counts["conflicts"] == 1


def test_a_label_held_for_an_event_that_comes_with_its_own_label_is_a_duplicate():
    join = make()
    label(join, "e1", CLOCK, False)
    join.advance(CLOCK + 1, EVENTS)
    join.inline("e1")  # the event's own label is learned (by the caller): the held one never is
    assert join.orphans == {} and nonzero(join) == {"orphaned": 1, "inline": 1, "duplicates": 1}
    assert join.scored("e1", CLOCK + 2, 0.5, {}) == [] and join.counts["conflicts"] == 1  # nothing left to meet
    assert label(join, "e1", CLOCK + 3) == [] and join.counts["duplicates"] == 2


# -- the policies -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "learned_as"), [("drop", None), ("negative", False)])
def test_an_expired_or_evicted_event_comes_out_with_the_policy_label(policy, learned_as):
    join = make(policy=policy, max_pending=2)
    event(join, "old", CLOCK, 0.2, {"x": 1})
    event(join, "mid", CLOCK + 10, 0.3, {"x": 2})
    (evicted,) = event(join, "new", CLOCK + 20, 0.4, {"x": 3})
    assert evicted == Joined("old", {"x": 1}, learned_as, 0.2, CLOCK, None, "evicted")
    assert evicted.delay_ms is None
    (expired,) = join.advance(CLOCK + 10 + WAIT, EVENTS)
    assert expired == Joined("mid", {"x": 2}, learned_as, 0.3, CLOCK + 10, None, "expired")
    assert nonzero(join) == {"pending_in": 3, "evicted": 1, "expired": 1}
    assert join.take_delays() == []  # no label came: no delay


# -- the bounds -------------------------------------------------------------------------------------------------
def test_the_count_bound_ends_the_oldest_by_event_time_first_not_the_first_to_arrive():
    join = make(max_pending=3)
    for event_id, ts in (("t5", 5), ("t1", 1), ("t3", 3)):
        event(join, event_id, CLOCK + ts)
    assert [p.event_id for p in event(join, "t4", CLOCK + 4)] == ["t1"]
    assert [p.event_id for p in event(join, "t6", CLOCK + 6)] == ["t3"]
    assert set(join.pending) == {"t4", "t5", "t6"} and join.counts["evicted"] == 2


def test_an_event_older_than_every_waiting_one_is_the_one_the_count_bound_ends():
    join = make(max_pending=2)
    event(join, "t5", CLOCK + 5)
    event(join, "t6", CLOCK + 6)
    assert [(p.event_id, p.outcome, p.event_ts) for p in event(join, "t1", CLOCK + 1)] == [("t1", "evicted", CLOCK + 1)]
    assert list(join.pending) == ["t5", "t6"] and join.counts["evicted"] == 1
    assert label(join, "t1", CLOCK + 7) == [] and join.counts["late"] == 1  # its wait ended: a label is late


def test_the_count_bound_ends_events_of_one_time_in_their_arrival_order():
    join = make(max_pending=2)
    for event_id in ("a", "b", "c", "d"):
        event(join, event_id, CLOCK)
    assert list(join.pending) == ["c", "d"]


def test_the_byte_bound_ends_the_oldest_until_the_new_event_fits():
    small, large = {"s": "x" * 10}, {"s": "x" * 100}
    join = make(max_bytes=3 * size(small) + 5)
    assert 2 * size(small) + size(large) > join.max_bytes >= size(small) + size(large)  # it needs two to leave
    for i in range(3):
        event(join, f"s{i}", CLOCK + i, features=small)
    assert join.bytes == 3 * size(small)
    ended = event(join, "big", CLOCK + 10, features=large)
    assert [(p.event_id, p.outcome) for p in ended] == [("s0", "evicted"), ("s1", "evicted")]
    assert list(join.pending) == ["s2", "big"] and join.bytes == size(small) + size(large)
    assert join.figures()["pending_bytes"] == join.bytes


def test_an_event_larger_than_the_byte_bound_does_not_stay_over_it():
    join = make(max_bytes=65_536)  # the least the settings accept, with events up to 1 MiB
    event(join, "small", CLOCK)
    ended = event(join, "big", CLOCK + 1, features={"s": "x" * 100_000})
    assert ended[-1].event_id == "big" and ended[-1].outcome == "evicted"  # its own wait ends at once
    assert join.bytes <= join.max_bytes and "big" not in join.pending


def test_an_event_larger_than_the_byte_bound_ends_no_other_wait():
    join = make(max_bytes=65_536)
    for i in range(3):
        event(join, f"small{i}", CLOCK + i)
    ended = event(join, "big", CLOCK + 10, features={"s": "x" * 100_000})
    assert [(p.event_id, p.outcome) for p in ended] == [("big", "evicted")]
    assert list(join.pending) == ["small0", "small1", "small2"]


def test_matched_events_leave_no_memory_behind_past_the_bounds():
    join = make(wait_ms=30 * 60_000, max_pending=10, remember=10)
    event(join, "waits", CLOCK)  # one event whose label never comes, so the heap's head is a live entry
    tracemalloc.start()
    try:
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):  # 20 s of events at 1,000/s, each labelled at once: at most 2 waiting
            event(join, f"e{i}", CLOCK + 1 + i)
            label(join, f"e{i}", CLOCK + 1 + i)
        join.figures()
        join.take_delays()  # the caller takes them (a histogram)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert len(join.pending) <= 2 and heap_bounded(join)
    assert retained < 256 * 1024, f"{retained} bytes retained for at most 2 waiting events"


def test_matched_events_dated_ahead_of_every_wait_leave_the_heap_bounded():
    join = make()
    for i in range(5_000):  # dated past any watermark: no wait of theirs ever runs out to pop them
        event(join, f"e{i}", INT64_MAX - i)
        label(join, f"e{i}", INT64_MAX - i)
        assert heap_bounded(join), f"after {i + 1} matches: {len(join._pending_heap)} heap entries"
    assert join.pending == {} and len(join._pending_heap) <= 1025


def test_held_labels_met_by_events_with_their_own_label_leave_the_heap_bounded():
    join = make()
    for i in range(5_000):  # a producer sending each label twice: on the labels topic first, then inline
        label(join, f"e{i}", INT64_MAX - i)
        join.advance(CLOCK, EVENTS)
        join.inline(f"e{i}")
    assert join.orphans == {} and join.counts["duplicates"] == 5_000
    assert heap_bounded(join), f"{len(join._orphan_heap)} orphan heap entries for no label held"


def test_a_load_beyond_smaller_bounds_is_brought_back_by_the_next_event():
    big = make()
    for i in range(5):
        event(big, f"e{i}", CLOCK + i)
    small = make(max_pending=2)
    small.load(big.dump())
    assert len(small.pending) == 5
    ended = event(small, "new", CLOCK + 10)
    assert [p.event_id for p in ended] == ["e0", "e1", "e2", "e3"] and len(small.pending) == 2


# -- the watermark ----------------------------------------------------------------------------------------------
def test_each_source_has_a_clock_that_never_goes_back_and_the_sources_read_recently_hold_the_oldest():
    join = make()
    assert join.watermark == -1
    join.advance(CLOCK + 10, EVENTS)
    join.advance(CLOCK + 20, LABELS)
    assert join.advance(CLOCK + 5, EVENTS) == [] and join.clocks == {EVENTS: CLOCK + 10, LABELS: CLOCK + 20}
    assert join.watermark == CLOCK + 10  # both read just now: the older clock holds it, neither behind
    join.advance(CLOCK + 30, EVENTS)
    assert join.clocks == {EVENTS: CLOCK + 30, LABELS: CLOCK + 20} and join.watermark == CLOCK + 20
    go_idle(join)
    join.advance(CLOCK + 31, EVENTS)
    assert join.watermark == CLOCK + 31  # the labels went idle: the events' clock alone


def test_a_source_read_recently_holds_the_watermark_until_idle_longer_than_idle_after_ms():
    join = make()
    event(join, "e1", CLOCK)
    label(join, "o1", CLOCK + 1)  # the labels: read now, nothing unread (not behind)
    assert join.behind == frozenset()
    wall(join).now += IDLE_AFTER_MS - 1
    assert event(join, "e2", CLOCK + 2 * WAIT) == []  # the labels, read 1,999 ms ago, hold: e1 still waits
    assert join.watermark == CLOCK + 1 and "o1" in join.orphans
    wall(join).now += 2  # idle for IDLE_AFTER_MS + 1: they hold no more
    assert [p.event_id for p in event(join, "e3", CLOCK + 2 * WAIT + 1)] == ["e1"]
    assert join.watermark == CLOCK + 2 * WAIT + 1 and join.counts["orphans_expired"] == 1
    assert [p.event_id for p in label(join, "e2", CLOCK + WAIT)] == ["e2"]  # read again, they hold again:
    assert join.watermark == CLOCK + WAIT
    assert event(join, "e4", CLOCK + 3 * WAIT + 2) == [] and "e3" in join.pending  # e3 waits for them


def test_sources_behind_hold_the_watermark_at_the_oldest_of_their_clocks():
    join = make()
    other = ("events", 1)
    join.advance(CLOCK + 5 * WAIT, EVENTS)
    join.advance(CLOCK + WAIT, LABELS)
    go_idle(join)  # (from the next record read on)
    join.hold_for([LABELS, other])
    assert join.watermark == -1  # a source behind and never read: nothing ends
    join.advance(CLOCK + 2 * WAIT, other)
    assert join.watermark == CLOCK + WAIT  # the older of the two behind (the events, idle, hold nothing)
    join.hold_for([other])
    assert join.watermark == CLOCK + 2 * WAIT
    join.hold_for(())
    assert join.watermark == CLOCK + 2 * WAIT  # none behind: the one read recently still holds
    go_idle(join)
    join.advance(CLOCK + 5 * WAIT, EVENTS)  # the events read again (no newer ts): the other two idle now
    assert join.watermark == CLOCK + 5 * WAIT


def test_sources_behind_and_too_far_past_the_watermark_are_the_ones_to_pause():
    join = make()
    other, unread = ("events", 1), ("labels", 1)
    join.advance(CLOCK - 30_000, EVENTS)
    join.advance(CLOCK - 25_000, LABELS)
    join.advance(CLOCK - 10_000, other)
    join.hold_for([EVENTS, LABELS, other])
    assert join.ahead(10_000) == {other}  # 20 s past the watermark (EVENTS, never paused itself)
    assert join.ahead(0) == {LABELS, other}
    assert join.ahead(30_000) == set()
    go_idle(join)
    join.advance(CLOCK - 26_000, LABELS)  # the labels read again (no newer ts): the other two idle now
    join.hold_for([LABELS])  # a source not behind is never paused, however far ahead
    assert join.watermark == CLOCK - 25_000 and join.ahead(0) == set()
    join.hold_for([LABELS, unread])  # one behind and not read yet: the watermark waits for it, the rest pause
    assert join.watermark == -1 and join.ahead(60_000) == {LABELS}


def test_a_caught_up_source_does_not_pause_the_sources_behind_for_longer_than_it_holds():
    join = make()
    join.advance(CLOCK, EVENTS)  # the events' last record: nothing more to read there
    join.advance(CLOCK + 2 * WAIT, LABELS)  # the labels, further on in event time, have more unread
    join.hold_for([LABELS])  # the labels are paused while the events, read just now, hold the watermark;
    join.ahead(WAIT // 4)
    go_idle(join)  # then nothing is read: the events go idle
    join.hold_for([LABELS])  # (before the next poll)
    assert join.ahead(WAIT // 4) == set()  # the events hold no more: the labels must be read again


def test_a_lagging_labels_source_keeps_the_events_waiting_until_it_is_read():
    t = CLOCK - 20 * WAIT  # all of it before the wall clock
    join = make()
    event(join, "e1", t)
    label(join, "e0", t)
    join.hold_for([LABELS])  # the labels partition has records not read yet (a backlog)
    go_idle(join)
    assert event(join, "e2", t + 10 * WAIT) == []  # read far ahead on the events: e1 still waits
    assert label(join, "e1", t + 1)[0].outcome == "matched"  # its label, read at last
    event(join, "e3", t + 10 * WAIT + 1)
    go_idle(join)  # the events go quiet: the labels behind alone hold the watermark
    assert [p.event_id for p in label(join, "e9", t + 11 * WAIT)] == ["e2"]  # the labels' clock ends e2's wait
    join.hold_for(())  # caught up; the labels, read just now, still hold until they go idle
    assert event(join, "e4", t + 11 * WAIT + 1) == []
    go_idle(join)
    assert [p.event_id for p in event(join, "e5", t + 11 * WAIT + 2)] == ["e3"]


def test_a_ts_far_ahead_moves_the_watermark_at_most_max_ahead_past_the_clock():
    join = make()
    event(join, "stays", CLOCK + MAX_AHEAD_MS - WAIT + 1)
    event(join, "goes", CLOCK + MAX_AHEAD_MS - WAIT)
    assert [p.event_id for p in join.advance(INT64_MAX, EVENTS)] == ["goes"]
    assert join.watermark == CLOCK + MAX_AHEAD_MS == join.clocks[EVENTS]
    wall(join).now += 1_000  # the wall clock moved: so may the watermark, as far again
    assert [p.event_id for p in join.advance(INT64_MAX, EVENTS)] == ["stays"]
    assert join.watermark == CLOCK + 1_000 + MAX_AHEAD_MS


def test_events_expire_by_their_ts_whatever_their_arrival_order():
    join = make()
    for event_id, ts in (("t50", 50_000), ("t10", 10_000), ("t30", 30_000)):
        event(join, event_id, CLOCK + ts)
    assert join.advance(CLOCK + 10_000 + WAIT - 1, EVENTS) == []
    assert [p.event_id for p in join.advance(CLOCK + 10_000 + WAIT, EVENTS)] == ["t10"]
    assert [p.event_id for p in join.advance(CLOCK + 60_000 + WAIT, EVENTS)] == ["t30", "t50"]


def test_a_held_label_expires_by_its_ts_whatever_its_arrival_order():
    join = make()
    label(join, "ahead", CLOCK + 2 * WAIT)  # read first, dated later (or a bad clock: 2^63-1 holds them all)
    label(join, "e1", CLOCK)
    event(join, "other", CLOCK + 2 * WAIT + 1)  # e1's wait ran out a wait ago
    assert join.counts["orphans_expired"] == 1 and list(join.orphans) == ["ahead"]
    assert event(join, "e1", CLOCK + 2 * WAIT + 2) == []  # its label expired: it waits


# -- figures ----------------------------------------------------------------------------------------------------
def test_the_oldest_wait_is_measured_on_the_watermark_and_skips_resolved_events():
    join = make()
    assert join.oldest_pending_ms() is None and join.figures()["oldest_pending_seconds"] is None
    event(join, "e1", CLOCK)
    event(join, "e2", CLOCK + 4_000)
    assert join.oldest_pending_ms() == 4_000
    go_idle(join)
    label(join, "e1", CLOCK + 5_000)
    assert join.oldest_pending_ms() == 1_000  # e1 left: e2's wait (watermark now at the label's ts)
    event(join, "e0", CLOCK - 2_000)  # an older event arrives: it is the oldest now,
    assert join.watermark == CLOCK + 4_000 and join.oldest_pending_ms() == 6_000  # the events, read now, hold
    label(join, "e0", CLOCK + 5_000)
    label(join, "e2", CLOCK + 5_000)
    assert join.oldest_pending_ms() is None


def test_the_oldest_wait_is_never_negative():
    join = make()
    label(join, "e0", CLOCK - 2_000)
    join.hold_for([LABELS])
    event(join, "e1", CLOCK)  # the watermark is held at the labels' clock: e1 is ahead of it
    assert join.watermark == CLOCK - 2_000 and join.oldest_pending_ms() == 0


def test_figures_are_the_counts_and_what_waits_now():
    join = make(policy="negative", max_pending=1)
    label(join, "o1", CLOCK)
    event(join, "e1", CLOCK, features={"a": 1})
    event(join, "e2", CLOCK + 2_500, features={"b": 2})  # evicts e1
    assert join.figures() == {
        **dict.fromkeys(COUNTS, 0),
        "pending_in": 2,
        "evicted": 1,
        "orphaned": 1,
        "coverage": 0.0,
        "pending": 1,
        "pending_bytes": size({"b": 2}),
        "orphans": 1,
        "oldest_pending_seconds": 0.0,
    }
    go_idle(join)  # the labels go quiet (they held the watermark at CLOCK)
    join.advance(CLOCK + 3_000, EVENTS)
    assert join.figures()["oldest_pending_seconds"] == 0.5


def test_coverage_is_the_share_of_ended_waits_that_got_their_label():
    join = make(max_pending=2)
    assert join.figures()["coverage"] is None  # no wait ended yet
    event(join, "e1", CLOCK)
    label(join, "e1", CLOCK)  # matched
    join.advance(CLOCK, EVENTS)
    join.inline("e2")  # carried its label
    event(join, "e3", CLOCK)
    event(join, "e4", CLOCK)
    event(join, "e5", CLOCK)  # evicts e3
    join.advance(CLOCK + WAIT, EVENTS)  # e4 and e5 expire
    label(join, "e4", CLOCK + WAIT)  # late: changes nothing
    assert join.figures()["coverage"] == 2 / 5


def test_delays_are_taken_once_in_the_order_of_the_matches():
    join = make()
    event(join, "e1", CLOCK)
    event(join, "e2", CLOCK + 1_000)
    label(join, "o3", CLOCK + 9_000)
    label(join, "e2", CLOCK + 4_000)
    label(join, "e1", CLOCK + 5_000)
    event(join, "o3", CLOCK + 6_000)
    assert join.take_delays() == [3_000, 5_000, 3_000]
    assert join.take_delays() == []


# -- state ------------------------------------------------------------------------------------------------------
def test_dump_is_plain_values_in_arrival_order():
    join = make()
    event(join, "e2", CLOCK + 2, 0.2, {"b": "x"})
    event(join, "e1", CLOCK + 1, 0.1, {"a": 1})
    label(join, "o1", CLOCK + 3, False)
    label(join, "e2", CLOCK + 4)
    doc = join.dump()
    assert doc == {
        "pending": [["e1", CLOCK + 1, 0.1, msgpack.packb({"a": 1}, use_bin_type=True)]],
        "orphans": [["o1", CLOCK + 3, False]],
        "resolved": [["e2", 1]],
        "clocks": [[EVENTS, CLOCK + 2], [LABELS, CLOCK + 4]],
        "counts": {**dict.fromkeys(COUNTS, 0), "pending_in": 2, "matched": 1, "orphaned": 1},
    }


def test_load_of_nothing_empties_the_join():
    join = make()
    event(join, "e1", CLOCK)
    label(join, "o1", CLOCK)
    label(join, "e1", CLOCK)
    join.load(None)
    assert join.pending == {} and join.orphans == {} and join.resolved == {} and join.bytes == 0
    assert join.watermark == -1 and join.oldest_pending_ms() is None and nonzero(join) == {}
    assert event(join, "e1", CLOCK) == [] and "e1" in join.pending  # forgotten: no conflict


def test_load_keeps_the_clocks_and_forgets_what_this_process_saw_of_the_sources_and_the_delays():
    join = make()
    event(join, "e1", CLOCK)
    event(join, "e2", CLOCK + 1_000)
    label(join, "e2", CLOCK + 5_000)  # a delay recorded, not taken yet
    join.hold_for([EVENTS])
    assert join.watermark == CLOCK + 1_000
    join.load(join.dump())
    assert join.behind == frozenset() and join.read_at == {} and join.take_delays() == []
    assert join.clocks == {EVENTS: CLOCK + 1_000, LABELS: CLOCK + 5_000}
    assert join.watermark == CLOCK + 5_000  # no source read since (none holds): the newest clock of all
    join.advance(CLOCK + 2_000, EVENTS)
    assert join.watermark == CLOCK + 2_000  # the first read holds it again


@pytest.mark.parametrize("seed", range(4))
def test_a_join_loaded_from_its_dump_through_msgpack_behaves_identically(seed):
    rng = random.Random(seed)
    ops = random_ops(rng, 2_000, holds=True)
    params = {"policy": rng.choice(["drop", "negative"])}
    bounds = {"max_pending": 60, "max_bytes": 60 * size({"id": "e0000", "pad": "x" * 20}), "max_orphans": 15}
    original = Checked(make(**params, **bounds, remember=80))
    split = rng.randrange(300, 1_700)
    for op in ops[:split]:
        original.apply(op)
    original.join.take_delays()  # delays are the caller's since its last take: not state
    doc = msgpack.unpackb(msgpack.packb(original.join.dump(), use_bin_type=True), raw=False)
    loaded = Checked(make(**params, **bounds, remember=80))
    loaded.join.load(doc)
    loaded.join.hold_for(original.join.behind)  # not state: the caller sets it before each batch,
    loaded.join.read_at.update(original.join.read_at)  # and when this process read each source (the wall clock)
    loaded.wall.now = original.wall.now
    loaded.waiting = dict(original.waiting)
    assert loaded.join.dump() == original.join.dump() and loaded.join.figures() == original.join.figures()
    for op in ops[split:]:
        assert loaded.apply(op) == original.apply(op)
        assert loaded.join.figures() == original.join.figures()
    assert loaded.join.take_delays() == original.join.take_delays()
    assert loaded.join.dump() == original.join.dump()


def test_a_capture_is_the_join_at_capture_time():
    join = make(max_pending=3)
    for i in range(3):
        event(join, f"e{i}", CLOCK + i)
    label(join, "o1", CLOCK)
    label(join, "e0", CLOCK + 5)
    expected = copy.deepcopy(join.dump())  # a copy: a dump that shares the join's objects changes with it
    document = join.capture()
    event(join, "e9", CLOCK + 9)  # adds one, and the bound ends another
    label(join, "e1", CLOCK + 10)
    label(join, "o2", CLOCK + 11)
    event(join, "o1", CLOCK + 12)
    join.advance(CLOCK + 10 * WAIT, EVENTS)
    assert join.dump() != expected
    assert document() == expected
    assert msgpack.unpackb(msgpack.packb(document(), use_bin_type=True), raw=False)["clocks"] == [
        [["events", 0], CLOCK + 2],
        [["labels", 0], CLOCK + 5],
    ]


# -- accounting under hostile mixes -----------------------------------------------------------------------------
class Checked:
    """A join driven as the learner drives it, every call checked against what the join must do.

    It knows which events wait from what the join returned (never from the join's insides): a label for one of
    them must return exactly its pair; anything the join returns must be a waiting event's (the scored event's
    own, when the bounds end it at once or it meets its held label), with the features and probability it was
    scored with. Ops carry the wall clock's moves too (``tick``), so sources go idle as they would.
    """

    def __init__(self, join: LabelJoin) -> None:
        self.join = join
        self.wall = wall(join)
        self.waiting: dict[str, tuple[int, float, dict[str, Any]]] = {}
        self.fed = Counter[str]()
        self.outcomes = Counter[str]()
        self.delays: list[int] = []

    def apply(self, op: tuple[Any, ...]) -> list[Joined]:
        """One op: ``(kind, event_id, ts, source, ...)``; ``("hold", None, None, sources)`` before a poll batch;
        ``("tick", None, ms, None)``: the wall clock moves on."""
        kind, event_id, ts, source = op[:4]
        join = self.join
        if kind == "hold":
            join.hold_for(source)
            return []
        if kind == "tick":
            self.wall.now += ts
            return []
        clocks = dict(join.clocks)
        out = join.advance(ts, source)
        self.take(out, {"expired", "evicted"})
        if clocks != join.clocks:  # a clock moved: nothing left waits past its wait
            assert all(ts_ + join.wait_ms > join.watermark for ts_, _, _ in self.waiting.values())
        before = dict(join.counts)
        if kind == "event":
            out += self.scored(event_id, ts, op[4], op[5], before)
        elif kind == "label":
            out += self.labelled(event_id, ts, op[4], before)
        else:
            conflict = event_id in self.waiting or event_id in join.resolved
            learned = join.inline(event_id)
            moved = {k: join.counts[k] - before[k] for k in COUNTS}
            assert learned is not conflict
            if conflict:  # its id waits or was resolved: scored only, nothing else moves
                self.fed["events"] += 1
                assert moved == {**dict.fromkeys(COUNTS, 0), "conflicts": 1}, moved
            else:
                self.fed["inline"] += 1
                assert moved["inline"] == 1 and set(moved.values()) <= {0, 1} and sum(moved.values()) <= 2, moved
                self.fed["met_inline"] += moved["duplicates"]  # a held label met an event that carried its own
        self.check()
        return out

    def scored(self, event_id: str, ts: int, probability: float, features: dict[str, Any], before: dict[str, int]):
        join, conflict = self.join, event_id in self.waiting
        self.fed["events"] += 1
        out = join.scored(event_id, ts, probability, features)
        if join.counts["conflicts"] > before["conflicts"]:
            assert out == [] and join.counts["pending_in"] == before["pending_in"]
            return out
        assert not conflict, f"{event_id} waits: a second event with its id must be a conflict"
        if out and out[-1].outcome == "matched":  # met its held label: learned at once
            own = out.pop()
            assert own.event_id == event_id and own.label_ts is not None
            assert (own.event_ts, own.probability, own.features) == (ts, probability, features)
            assert join.counts["matched"] == before["matched"] + 1
            self.outcomes["matched"] += 1
            self.fed["met"] += 1  # a held label met its event
            self.delays.append(own.delay_ms)
            self.take(out, {"evicted"})
            return [*out, own]
        self.waiting[event_id] = (ts, probability, features)  # it waits, unless the bounds end it now (the oldest)
        self.take(out, {"evicted"})
        return out

    def labelled(self, event_id: str, ts: int, value: bool, before: dict[str, int]) -> list[Joined]:
        join, waited = self.join, event_id in self.waiting
        self.fed["labels"] += 1
        out = join.labelled(event_id, ts, value)
        moved = {k: join.counts[k] - before[k] for k in ("matched", "late", "duplicates", "orphaned")}
        assert sorted(moved.values()) == [0, 0, 0, 1], f"a label counted once, got {moved}"
        if waited:
            (pair,) = out
            assert moved["matched"] == 1 and (pair.event_id, pair.label, pair.label_ts) == (event_id, value, ts)
            self.take(out, {"matched"})
        else:
            assert out == [] and moved["matched"] == 0
        return out

    def take(self, pairs: list[Joined], outcomes: set[str]) -> None:
        """Pairs for events that waited: each leaves, as it was scored, with a label the outcome allows."""
        expected_label = {"drop": None, "negative": False}[self.join.policy]
        for pair in pairs:
            assert pair.outcome in outcomes
            alone = pair.outcome == "evicted" and size(pair.features) > self.join.max_bytes  # past the bound alone
            if pair.outcome != "matched" and not alone:  # a wait ends oldest first (by event time), bound and expiry
                assert pair.event_ts == min(ts for ts, _, _ in self.waiting.values())
            ts, probability, features = self.waiting.pop(pair.event_id)
            assert (pair.event_ts, pair.probability, pair.features) == (ts, probability, features)
            if pair.outcome == "matched":
                self.delays.append(pair.delay_ms)
            else:
                assert pair.label is expected_label and pair.label_ts is None
            self.outcomes[pair.outcome] += 1

    def check(self) -> None:
        join = self.join
        assert set(join.pending) == set(self.waiting)
        assert join.bytes == sum(size(f) for _, _, f in self.waiting.values())
        assert len(join.pending) <= join.max_pending and join.bytes <= join.max_bytes
        assert len(join.orphans) <= max(join.max_orphans, 0) and len(join.resolved) <= max(join.remember, 0)
        assert all(v >= 0 for v in join.counts.values())
        assert heap_bounded(join), (len(join._pending_heap), len(join.pending), len(join._orphan_heap))

    def check_accounts(self) -> None:
        """Every event and every label fed is in exactly one place: the identities the counts can state."""
        c, join = self.join.counts, self.join
        assert self.fed["labels"] == (
            c["matched"] + c["late"] + c["duplicates"] + c["orphans_expired"] + c["orphans_evicted"] + len(join.orphans)
        )
        # a held label leaves by its event (a match counted as such, or a duplicate when the event carried its own
        # label), expiry or the bound: or it is still held
        assert c["orphaned"] == (
            c["orphans_expired"] + c["orphans_evicted"] + len(join.orphans) + self.fed["met"] + self.fed["met_inline"]
        )
        assert self.fed["events"] == c["pending_in"] + c["conflicts"]
        assert c["pending_in"] == c["matched"] + c["expired"] + c["evicted"] + len(join.pending)
        assert c["inline"] == self.fed["inline"]
        assert {k: self.outcomes[k] for k in ("matched", "expired", "evicted")} == {
            k: c[k] for k in ("matched", "expired", "evicted")
        }
        assert join.take_delays() == self.delays
        ended = c["matched"] + c["inline"] + c["expired"] + c["evicted"]
        assert join.figures()["coverage"] == ((c["matched"] + c["inline"]) / ended if ended else None)


SOURCES = (("events", 0), ("events", 1), ("labels", 0), ("labels", 1))


def random_ops(rng: random.Random, n_events: int, *, holds: bool) -> list[tuple[Any, ...]]:
    """A producer's mix, in read order: events about 100 ms apart on two partitions (out of order by up to 5 s),
    each label missing, on time, late (past the wait), early (read before its event), doubled, or for an unknown
    id, on two label partitions; inline events, half of them labelled on the labels topic too (before or after);
    a few hostile ts (0, 2^63-1, far ahead of the clock); with ``holds``, now and then some sources behind (as the
    consumer's high-water marks would say); the wall clock's moves (:func:`in_read_order`)."""
    timed: list[tuple[float, tuple[Any, ...]]] = []
    start = CLOCK  # read at the wall clock's time (it moves with the reads)
    for i in range(n_events):
        event_id, events, labels = f"e{i:04d}", ("events", i % 2), ("labels", rng.randrange(2))
        ts = start + 100 * i + rng.randint(-5_000, 0)
        if rng.random() < 0.005:  # (a source's clock, moved MAX_AHEAD_MS past the wall, ends every wait it holds)
            ts = rng.choice(HOSTILE_TS)
        read_at = float(start + 100 * i)
        if holds and rng.random() < 0.02:
            timed.append((read_at, ("hold", None, None, frozenset(rng.sample(SOURCES, rng.randrange(3))))))
        if rng.random() < 0.05:
            timed += inline_ops(rng, event_id, ts, read_at, (events, labels))
            continue
        features = {"id": event_id, "pad": "x" * rng.randint(0, 20)}
        timed.append((read_at, ("event", event_id, ts, events, round(rng.random(), 3), features)))
        fate = rng.random()
        if fate < 0.15:
            continue  # its label never comes
        delay = rng.randint(0, WAIT // 2) if fate < 0.6 else rng.randint(WAIT // 2, 2 * WAIT)
        label_at = read_at - rng.randint(1, 3_000) if fate > 0.9 else read_at + delay  # early: before its event
        for _ in range(2 if rng.random() < 0.05 else 1):
            timed.append((label_at, ("label", event_id, int(ts + delay), labels, rng.random() < 0.3)))
        if rng.random() < 0.03:
            timed.append((read_at, ("label", f"unknown{i}", int(read_at), labels, True)))
    return in_read_order(rng, timed, start)


def inline_ops(
    rng: random.Random, event_id: str, ts: int, read_at: float, sources: tuple[Any, Any]
) -> list[tuple[float, tuple[Any, ...]]]:
    """An event that carries its label, half the time sent on the labels topic too (a duplicate: held first when
    read before the event)."""
    events, labels = sources
    ops: list[tuple[float, tuple[Any, ...]]] = [(read_at, ("inline", event_id, ts, events))]
    if rng.random() < 0.5:
        ops.append((read_at + rng.randint(-3_000, 3_000), ("label", event_id, ts, labels, True)))
    return ops


def in_read_order(rng: random.Random, timed: list[tuple[float, tuple[Any, ...]]], start: int) -> list[tuple[Any, ...]]:
    """The ops by their read time, the wall clock moving with it (``tick``) and now and then pausing past
    :data:`IDLE_AFTER_MS` (every source idle until read again)."""
    timed.sort(key=lambda item: item[0])  # stable: an event before the labels read at the same time
    ops: list[tuple[Any, ...]] = []
    last = start
    for at, op in timed:
        pause = IDLE_AFTER_MS + 1 if rng.random() < 0.002 else 0
        if at > last or pause:
            ops.append(("tick", None, max(0, int(at - last)) + pause, None))
            last = max(last, at)
        ops.append(op)
    return ops


@pytest.mark.parametrize("holds", [False, True])
@pytest.mark.parametrize("policy", ["drop", "negative"])
def test_every_label_and_event_is_accounted_for_under_a_hostile_mix(policy, holds):
    rng = random.Random(f"{policy}-{holds}")
    checked = Checked(make(policy=policy, max_pending=200, max_orphans=40, remember=500))
    for op in random_ops(rng, 5_000, holds=holds):
        checked.apply(op)
    checked.check_accounts()
    counts = checked.join.counts
    for outcome in ("matched", "expired", "evicted", "late", "duplicates", "orphaned", "orphans_expired", "inline"):
        assert counts[outcome] > 0, f"the mix never produced {outcome}: {counts}"  # the test exercises each


_TS = st.one_of(st.integers(CLOCK - 3 * WAIT, CLOCK + 3 * WAIT), st.sampled_from(HOSTILE_TS))
_IDS, _SOURCE = st.integers(0, 12).map(str), st.sampled_from(SOURCES)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("event"), _IDS, _TS, _SOURCE, st.floats(0, 1), st.integers(0, 40)),
        st.tuples(st.just("label"), _IDS, _TS, _SOURCE, st.booleans()),
        st.tuples(st.just("inline"), _IDS, _TS, _SOURCE),
        st.tuples(st.just("hold"), st.none(), st.none(), st.frozensets(_SOURCE, max_size=2)),
        st.tuples(st.just("tick"), st.none(), st.integers(0, 2 * IDLE_AFTER_MS), st.none()),
    ),
    max_size=80,
)


_PARAMS = st.fixed_dictionaries(
    {
        "policy": st.sampled_from(["drop", "negative"]),
        "max_pending": st.integers(1, 6),
        "max_bytes": st.integers(150, 1_000),  # events here take ~165-215 bytes: some never fit
        "max_orphans": st.integers(0, 4),
        "remember": st.integers(0, 6),
    }
)


@given(ops=_OPS, params=_PARAMS)
@settings(max_examples=300, deadline=None)
def test_the_accounts_and_bounds_hold_for_any_sequence(ops, params):
    checked = Checked(make(**params))
    for op in ops:
        if op[0] == "event":
            checked.apply((*op[:5], {"pad": "x" * op[5]}))
        else:
            checked.apply(op)
    checked.check_accounts()


# -- the learned order and the recent delays --------------------------------------------------------------------
def test_the_learned_order_is_taken_per_version_and_cleared_by_a_rollback():
    order = LearnedOrder()
    for i in range(5):
        order.append(f"e{i}", i % 2 == 1)
    assert order.take() == {"ids": ["e0", "e1", "e2", "e3", "e4"], "labels": bytes([0, 1, 0, 1, 0])}
    order.append("e5", True)
    order.clear()
    order.append("e6", False)
    assert order.take() == {"ids": ["e6"], "labels": b"\x00"}


def test_recent_delays_keep_the_last_ones_and_summarise_them_in_seconds():
    delays = RecentDelays(size=10)
    assert set(delays.summary().values()) == {None}
    delays.add([999_000, *range(1_000, 11_000, 1_000)])  # the first falls out
    assert delays.summary() == {"delay_p50_seconds": 6.0, "delay_p90_seconds": 10.0, "delay_max_seconds": 10.0}
