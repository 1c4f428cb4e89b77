"""Labels that come after their events: the learner's per-event step against river, to the last digit.

No Kafka, no Redis: the records go through the learner's own :class:`~streaming.learner.step.EventStep` in the
order a consumer would hand them over. Two equalities are stated (README, "Labels that arrive later"):

1. **Prequential metrics** equal river's ``evaluate.iter_progressive_val_score`` with the same per-event delays
   when the learner reads the records in river's question/answer order (``stream.simulate_qa``: a label whose time
   has come is revealed before the next event) — labels as records on the events topic, one partition.
2. **The model** equals a plain river loop that learns the (features, label) pairs in the order the learner joined
   them (``state.learned``, what each version stores), whatever the interleaving of the two topics, with labels
   missing, duplicated, late, or ahead of their events, and both wait policies.
"""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry
from river import evaluate, metrics, stream

from streaming.config import Settings
from streaming.events import Event, Label, encode_event, encode_label
from streaming.learner.offline import Discard
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.local.dataset import read_events
from streaming.transport import Record, TopicPartition
from tests.reference import contract_features, plain_river_pipeline, river_state

ENGINES = ("river", "compiled")


def run_records(records: list[tuple[str, bytes]], settings: Settings) -> LearnerState:
    """The records (topic, value) through one learner's step, in this order (one partition per topic)."""
    settings = settings.model_copy(update={"publish_predictions": False})
    telemetry = LearnerMetrics(CollectorRegistry(), settings.model_name)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    step = EventStep(settings, telemetry)
    outputs = Outputs(Discard(), settings, telemetry)
    positions: dict[TopicPartition, int] = {}
    for topic, value in records:
        tp = TopicPartition(topic, 0)
        offset = positions.get(tp, 0)
        positions[tp] = offset + 1
        step.process(state, Record(topic, 0, offset, None, value, [], -1), outputs, positions)
        state.incident_events.clear()
    return state


def learned_pairs(state: LearnerState) -> list[tuple[str, bool]]:
    assert state.learned is not None
    return list(zip(state.learned.ids, map(bool, state.learned.labels), strict=True))


def model_state(state: LearnerState) -> dict:
    dumped = state.model.dump_state()
    weights = dumped["weights"]
    if isinstance(weights, dict) and "names" in weights:  # version 2 layout: names + little-endian doubles
        import numpy as np

        weights = dict(zip(weights["names"], np.frombuffer(weights["float64le"], "<f8").tolist(), strict=True))
    return {"weights": weights, "intercept": dumped["intercept"], "scaler": dumped["scaler"]}


def assert_model_equals_river_loop(state: LearnerState, events: dict[str, Event]) -> None:
    """The learner's model is, to the last digit, a plain river loop over its learned pairs in its order."""
    model = plain_river_pipeline()
    for event_id, label in learned_pairs(state):
        model.learn_one(contract_features(events[event_id]), label)
    assert model_state(state) == river_state(model)


@pytest.fixture(scope="module")
def shop_events() -> list[Event]:
    return list(read_events(limit=1500))


@pytest.mark.parametrize("engine", ENGINES)
def test_prequential_metrics_equal_rivers_progressive_validation_with_the_same_delays(shop_events, engine):
    rng = random.Random(19)
    delays = [rng.randint(30, 600) * 1000 for _ in shop_events]  # 30 s .. 10 min of event time (events 1 s apart)
    by_index = dict(enumerate(shop_events))
    # river's own question/answer order, for the same moments and delays
    records: list[tuple[str, bytes]] = []
    order = stream.simulate_qa(
        ((contract_features(e), e.label) for e in shop_events),
        moment=_each(e.ts for e in shop_events),
        delay=_each(iter(delays), two_args=True),
        copy=False,
    )
    answered: list[int] = []  # the delays in the order the labels come
    for i, _x, y in order:
        event = by_index[i]
        if y is None:
            records.append(("events", encode_event(Event(event.event_id, event.ts, event.features, None))))
        else:
            records.append(("events", encode_label(Label(event.event_id, event.ts + delays[i], bool(y)))))
            answered.append(delays[i])
    settings = Settings(engine=engine, label_wait="1d", rolling_window=100_000)
    state = run_records(records, settings)

    river_model, scores = plain_river_pipeline(), metrics.Accuracy() + metrics.LogLoss()
    for _ in evaluate.iter_progressive_val_score(
        ((contract_features(e), e.label) for e in shop_events),
        river_model,
        scores,
        moment=_each(e.ts for e in shop_events),
        delay=_each(iter(delays), two_args=True),
        step=len(shop_events),
    ):
        pass
    accuracy, log_loss = scores[0], scores[1]
    cumulative = state.metrics.cumulative_values()
    assert cumulative["accuracy"] == accuracy.get()
    assert cumulative["log_loss"] == log_loss.get()
    assert model_state(state) == river_state(river_model)
    assert state.join is not None and state.join.counts["matched"] == len(shop_events)
    # each metric sample holds its block's mean label delay (seconds) and what waits
    block = settings.history_every_events
    assert [s["label_delay_s"] for s in state.samples] == [
        sum(answered[k : k + block]) / block / 1000 for k in range(0, len(answered) - block + 1, block)
    ]
    assert all(s["labels_pending"] >= 0 for s in state.samples) and max(s["labels_pending"] for s in state.samples)
    assert [event_id for event_id, _ in learned_pairs(state)] != [e.event_id for e in shop_events]  # joined order


def _each(values, *, two_args: bool = False):
    """A callable river calls once per item, in order, handing out the next of ``values``."""
    it = iter(values)
    return (lambda _x, _y: next(it)) if two_args else (lambda _x: next(it))


def two_topic_records(events: list[Event], seed: int) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    """Events (no labels) and labels on two topics at seeded delays, interleaved as a consumer might (each topic in
    its own order), with labels missing, duplicated, ahead of their events, far too late, for unknown ids, and
    hostile timestamps; returns the records and how many label records of each kind were made."""
    rng = random.Random(seed)
    labels: list[tuple[int, Label]] = []
    made = {"labels": 0}
    for event in events:
        roll = rng.random()
        if roll < 0.1:
            continue  # never comes
        delay = rng.randint(1, 400) * 1000
        if roll < 0.15:
            delay = rng.randint(1000, 3000) * 1000  # after the wait
        label = Label(event.event_id, event.ts + delay, bool(event.label))
        copies = 2 if roll > 0.95 else 1
        for _ in range(copies):
            labels.append((label.ts - (rng.randint(0, 200_000) if roll > 0.9 else 0), label))  # some sent early
    for n in range(20):
        labels.append((events[0].ts + n * 50_000, Label(f"unknown-{n}", events[0].ts + n * 50_000, True)))
    labels.sort(key=lambda pair: pair[0])
    made["labels"] = len(labels)
    event_records = [("events", encode_event(Event(e.event_id, e.ts, e.features, None))) for e in events]
    far_future = ("events", encode_event(Event("far-future", 2**62, {"x": 1.0})))  # ends every wait (clamped clock)
    event_records.insert(len(event_records) * 9 // 10, far_future)
    label_records = [("labels", encode_label(label)) for _, label in labels]
    merged: list[tuple[str, bytes]] = []
    a, b = iter(event_records), iter(label_records)
    pending_a, pending_b = next(a, None), next(b, None)
    while pending_a is not None or pending_b is not None:  # random runs of each topic, as polls return them
        take_a = pending_b is None or (pending_a is not None and rng.random() < 0.5)
        for _ in range(rng.randint(1, 40)):
            if take_a and pending_a is not None:
                merged.append(pending_a)
                pending_a = next(a, None)
            elif not take_a and pending_b is not None:
                merged.append(pending_b)
                pending_b = next(b, None)
    return merged, made


@pytest.mark.parametrize(("engine", "policy", "seed"), [("compiled", "negative", 1), ("river", "drop", 2)])
def test_the_model_equals_a_plain_river_loop_over_the_pairs_in_join_order(shop_events, engine, policy, seed):
    records, made = two_topic_records(shop_events, seed)
    settings = Settings(
        engine=engine, label_wait="10m", label_policy=policy, labels_topic="labels", label_max_orphans=300
    )
    state = run_records(records, settings)
    join = state.join
    assert join is not None
    by_id = {e.event_id: e for e in shop_events}
    by_id["far-future"] = Event("far-future", 0, {"x": 1.0})
    assert_model_equals_river_loop(state, by_id)
    c = join.counts
    # every label record has exactly one outcome: learned with its event (at once, or held until its event came),
    # late, a duplicate, or held for an event that never came (dropped at its wait, by the bound, or held still)
    assert made["labels"] == (
        c["matched"] + c["late"] + c["duplicates"] + c["orphans_expired"] + c["orphans_evicted"] + len(join.orphans)
    )
    # every event has exactly one outcome too
    assert len(shop_events) + 1 == c["pending_in"] == c["matched"] + c["expired"] + c["evicted"] + len(join.pending)
    learned = learned_pairs(state)
    assert len(learned) == len({event_id for event_id, _ in learned})  # nothing learned twice
    negatives_from_waits = c["expired"] + c["evicted"] if policy == "negative" else 0
    assert len(learned) == c["matched"] + negatives_from_waits
    assert c["late"] > 0 and c["duplicates"] > 0 and c["orphaned"] > 0 and c["expired"] > 0
    assert c["orphans_expired"] + c["orphans_evicted"] >= 20  # the unknown ids


def test_a_version_stores_the_join_and_a_restored_learner_goes_on_exactly(shop_events):
    """Half the stream, a snapshot's document, a new state from it, the rest: the same model and counts as one run
    through everything (what a restart or a takeover does, minus Kafka)."""
    from snapshotter.codec import EncodedSnapshot, decode_snapshot, unpack
    from streaming.learner.restore import Restored, restore_state

    records, _ = two_topic_records(shop_events, 7)
    settings = Settings(engine="compiled", label_wait="10m", label_policy="negative", labels_topic="labels")
    whole = run_records(records, settings)
    half = len(records) // 2
    first = run_records(records[:half], settings)
    learned_first = learned_pairs(first)
    captured = first.capture()
    encoded = EncodedSnapshot.of(captured.document())
    snapshot = decode_snapshot(encoded.blob, encoded.sha256)
    join_blob = captured.join_blob()  # stored apart from the version (one copy: the newest version's)
    assert join_blob is not None and "join" not in snapshot.stream
    model, prequential = restore_state(snapshot, spec_from_settings(settings), settings.rolling_window)
    second = LearnerState.fresh(spec_from_settings(settings), settings)
    second.adopt(
        Restored(model, prequential, dict(snapshot.counters), _meta(), dict(snapshot.stream)), unpack(join_blob)
    )
    telemetry = LearnerMetrics(CollectorRegistry(), "m")
    step, outputs = EventStep(settings, telemetry), Outputs(Discard(), settings, telemetry)
    positions = {TopicPartition("events", 0): 0, TopicPartition("labels", 0): 0}  # only after the snapshot is stepped
    for index, (topic, value) in enumerate(records):
        tp = TopicPartition(topic, 0)
        offset = positions[tp]
        positions[tp] = offset + 1
        if index >= half:
            step.process(second, Record(topic, 0, offset, None, value, [], -1), outputs, positions)
    assert model_state(second) == model_state(whole)
    assert second.join is not None and whole.join is not None
    assert second.join.counts == whole.join.counts
    assert snapshot.stream["learned"]["ids"] == [i for i, _ in learned_first]  # the version's own pairs (taken)
    assert first.learned is not None and not first.learned.ids
    assert learned_first + learned_pairs(second) == learned_pairs(whole)
    assert math.isclose(second.metrics.cumulative_values()["accuracy"], whole.metrics.cumulative_values()["accuracy"])


def _meta():
    from snapshotter.codec import VersionMeta

    return VersionMeta(1, 0.0, "test", 1, 0, 0, {}, {}, None, {}, 2, "", 0)


def test_labels_inside_events_are_learned_as_ever_with_the_join_on(shop_events):
    """Today's contract with the join on: every event learned at once, in order, nothing pending."""
    records = [("events", encode_event(e)) for e in shop_events[:300]]
    plain = run_records(records, Settings(engine="compiled"))
    joined = run_records(records, Settings(engine="compiled", label_wait="30m"))
    assert model_state(joined) == model_state(plain)
    assert joined.join is not None and joined.join.counts["inline"] == 300 and not joined.join.pending
    assert [i for i, _ in learned_pairs(joined)] == [e.event_id for e in shop_events[:300]]
    assert joined.metrics.cumulative_values() == plain.metrics.cumulative_values()


def test_a_label_record_without_the_join_is_dead_lettered_and_the_labels_topic_takes_only_labels(shop_events):
    event = shop_events[0]
    label = encode_label(Label(event.event_id, event.ts + 1000, True))
    off = run_records([("events", label)], Settings(engine="river"))
    assert off.counters["dead_lettered"] == 1
    on = run_records(
        [("labels", encode_event(event)), ("labels", label)],
        Settings(engine="river", label_wait="1m", labels_topic="labels"),
    )
    assert on.counters["dead_lettered"] == 1 and on.counters["events_seen"] == 0
    assert on.join is not None and on.join.counts["orphaned"] == 1


class _Store:
    """What :meth:`Lineage._join_state` asks of the store."""

    def __init__(self, head, stored):
        self._head, self._stored = head, stored

    def head(self):
        return self._head

    def join_state(self):
        return self._stored


def test_a_learner_goes_on_with_the_newest_join_and_starts_empty_past_an_unreadable_head():
    from streaming.learner.lineage import Lineage

    doc = {"pending": [], "orphans": [], "resolved": [], "clocks": [], "counts": {}}
    lineage = Lineage.__new__(Lineage)
    lineage.store = _Store(head=7, stored=(7, doc))
    assert lineage._join_state(7) is doc  # the head's own
    lineage.store = _Store(head=3, stored=(9, doc))  # a rollback to 3 no learner applied: the newest stream state
    assert lineage._join_state(3) is doc
    lineage.store = _Store(head=7, stored=(7, doc))  # head 7 unreadable, restored 5: its join is not stored
    assert lineage._join_state(5) is None
    lineage.store = _Store(head=7, stored=None)
    assert lineage._join_state(7) is None


def test_an_event_with_its_label_inside_whose_id_already_waits_is_scored_and_never_learned_twice(shop_events):
    first, second = shop_events[0], shop_events[1]
    records = [
        ("events", encode_event(Event(first.event_id, first.ts, first.features, None))),  # waits
        ("events", encode_event(first)),  # the same id with its label inside: a conflict
        ("events", encode_label(Label(first.event_id, first.ts + 1000, bool(first.label)))),  # its label: joined
        ("events", encode_event(second)),  # labelled inline: learned at once
        ("events", encode_label(Label(second.event_id, second.ts + 1000, True))),  # a second label: a duplicate
    ]
    for engine in ENGINES:
        state = run_records(records, Settings(engine=engine, label_wait="10m", dedupe_window=0))  # (another partition)
        assert state.join is not None
        c = state.join.counts
        assert (c["conflicts"], c["matched"], c["inline"], c["duplicates"]) == (1, 1, 1, 1)
        assert [event_id for event_id, _ in learned_pairs(state)] == [first.event_id, second.event_id]
        assert_model_equals_river_loop(state, {e.event_id: e for e in (first, second)})
        assert state.counters["events_seen"] == 3 and state.metrics.samples == 2


def test_a_learner_with_the_join_off_says_what_the_last_one_left_waiting(caplog):
    from streaming.learner.lineage import Lineage

    lineage = Lineage.__new__(Lineage)
    lineage.store = _Store(head=4, stored=(4, {"pending": [["e1", 1, 0.5, b"\x80"]] * 3}))
    with caplog.at_level("WARNING", logger="streaming.learner.lineage"):
        lineage._warn_join_off()
    assert "3 events scored by version 4's learner wait for their labels" in caplog.text
    caplog.clear()
    lineage.store = _Store(head=4, stored=None)
    lineage._warn_join_off()
    assert caplog.text == ""
