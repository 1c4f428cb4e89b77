"""Labels sent on their own, later than their sessions (issue 19, item 6: the producer side of the demo).

``delay_labels`` turns labelled events into the stream a shop produces (each session without its label, then its
purchase a seeded random delay of event time later); ``replay`` sends each label keyed like its event, to the
labels topic or the events topic; ``livelearn produce --label-delay`` and ``livelearn up`` use them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from conftest import settings_env, wait_for
from test_local_stack import Parts

from streaming.cli.up import label_settings
from streaming.config import Settings
from streaming.events import Event, EventLimits, Label, decode_event
from streaming.local.dataset import DATASET_PATH, read_events
from streaming.local.replay import LabelDelay, Replayed, delay_labels, parse_delay, replay
from streaming.local.stack import LocalStack
from streaming.transport import ensure_topics, make_consumer, topic_partitions
from streaming.transport.records import Record

DELAY = (30_000, 600_000)  # 30 s .. 10 min: 30 to 600 of the bundled dataset's events later
EVENTS = list(read_events(limit=3000))
LIMITS = EventLimits()


def split(stream: list[Event | Label]) -> tuple[list[Event], list[Label]]:
    return [r for r in stream if isinstance(r, Event)], [r for r in stream if isinstance(r, Label)]


# -- the generator ------------------------------------------------------------------------------------------------
def test_the_stream_is_in_event_time_order_with_every_label_once_at_its_time():
    stream = list(delay_labels(EVENTS, DELAY, seed=7))
    events, labels = split(stream)
    assert events == [dataclasses.replace(e, label=None) for e in EVENTS]  # every session, in order, unlabelled
    by_id = {e.event_id: e for e in EVENTS}
    assert Counter(label.event_id for label in labels) == Counter(list(by_id))  # each label exactly once
    delays = []
    for label in labels:
        assert label.label == by_id[label.event_id].label
        delays.append(label.ts - by_id[label.event_id].ts)
    assert all(DELAY[0] <= d <= DELAY[1] for d in delays)
    span = DELAY[1] - DELAY[0]  # drawn over the whole range, not one fixed delay
    assert min(delays) < DELAY[0] + span / 20 and max(delays) > DELAY[1] - span / 20
    # event-time order: a label comes out once the stream's time reaches it, neither earlier nor later
    times = [record.ts for record in stream]
    assert times == sorted(times)
    position = {(type(r).__name__, r.event_id): i for i, r in enumerate(stream)}
    assert all(position["Event", label.event_id] < position["Label", label.event_id] for label in labels)
    assert isinstance(stream[-1], Label) and stream[-1].ts > EVENTS[-1].ts  # the labels still due come last


def test_labels_due_at_the_same_time_come_in_their_events_order():
    events = [Event(f"s{i}", 0, {"x": i}, label=True) for i in range(5)]
    labels = [r.event_id for r in delay_labels(events, (100, 100)) if isinstance(r, Label)]
    assert labels == ["s0", "s1", "s2", "s3", "s4"]


def test_the_same_seed_gives_the_same_stream_and_another_seed_another():
    once, again = list(delay_labels(EVENTS, DELAY, seed=3)), list(delay_labels(EVENTS, DELAY, seed=3))
    assert once == again
    assert list(delay_labels(EVENTS, DELAY, seed=4)) != once


def test_purchases_only_sends_the_positive_labels():
    _, labels = split(list(delay_labels(EVENTS, DELAY, send="purchases")))
    bought = [e.event_id for e in EVENTS if e.label]
    assert 0 < len(bought) < len(EVENTS)
    assert sorted(label.event_id for label in labels) == sorted(bought)
    assert all(label.label for label in labels)


def test_missing_drops_that_share_and_the_kept_labels_keep_their_delays():
    _, every = split(list(delay_labels(EVENTS, DELAY, seed=5)))
    events, kept = split(list(delay_labels(EVENTS, DELAY, seed=5, missing=0.3)))
    assert len(events) == len(EVENTS)  # sessions are never dropped, only their labels
    assert 0.65 < len(kept) / len(every) < 0.75
    assert set(kept) <= set(every)  # same ids, same times
    assert not split(list(delay_labels(EVENTS, DELAY, missing=1.0)))[1]


def test_an_event_without_a_label_passes_as_it_is():
    event = Event("s0", 5, {"x": 1}, user_id="u1")
    assert list(delay_labels([event], DELAY)) == [event]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s..10m", (30_000, 600_000)),
        ("250ms..2s", (250, 2000)),
        ("90", (90_000, 90_000)),
        ("1.5h..2h", (5_400_000, 7_200_000)),
    ],
)
def test_parse_delay(text, expected):
    assert parse_delay(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "10m..30s", "1s..2s..3s", "-1s..2s", "30x..1m", "..1m"])
def test_parse_delay_refuses(text):
    with pytest.raises(ValueError):
        parse_delay(text)


@pytest.mark.parametrize("options", [{"missing": 1.5}, {"missing": -0.1}, {"send": "some"}])
def test_a_plan_out_of_bounds_is_refused(options):
    with pytest.raises(ValueError):
        LabelDelay.parse("1s..2s", **options)
    with pytest.raises(ValueError):
        list(delay_labels(EVENTS[:1], (0, 1), **options))


# -- the replay: where each record goes, and its key ---------------------------------------------------------------
class Recorder:
    """A producer that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.sending = threading.Event()

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value, key))
        self.sending.set()

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        pass

    def on(self, topic: str) -> list[tuple[Event | Label, bytes | None]]:
        return [(decode_event(v, "msgpack", LIMITS, labels=True), k) for t, v, k in self.sent if t == topic]


def test_each_label_goes_to_the_labels_topic_keyed_like_its_event():
    producer = Recorder()
    done = replay(producer, "shop", delay_labels(EVENTS, DELAY, missing=0.1), labels_topic="shop.labels")
    events, labels = producer.on("shop"), producer.on("shop.labels")
    assert done == Replayed(len(events), len(labels)) and len(events) == len(EVENTS) and len(labels) > 2000
    assert all(isinstance(e, Event) and e.label is None for e, _ in events)
    assert all(isinstance(label, Label) for label, _ in labels)
    key_of = {e.event_id: (e.user_id or e.event_id).encode() for e in EVENTS}
    assert all(key == key_of[e.event_id] for e, key in events)
    assert all(key == key_of[label.event_id] for label, key in labels)  # the user's key, not the event id


def test_without_a_labels_topic_labels_go_to_the_events_topic_as_label_records():
    producer = Recorder()
    replay(producer, "shop", delay_labels(EVENTS[:50], (0, 1000)))
    records = producer.on("shop")
    assert [type(r).__name__ for r, _ in records].count("Label") == 50
    assert {t for t, _, _ in producer.sent} == {"shop"}


def test_the_keys_remembered_are_bounded_and_a_forgotten_one_falls_back_to_the_event_id():
    events = [Event(f"s{i}", 1000 * i, {"x": i}, label=True, user_id=f"u{i}") for i in range(4)]
    producer = Recorder()
    replay(producer, "shop", delay_labels(events, (10_000, 10_000)), labels_topic="labels", remember=2)
    keys = {label.event_id: key for label, key in producer.on("labels")}
    assert keys == {"s0": b"s0", "s1": b"s1", "s2": b"u2", "s3": b"u3"}


class Clock:
    """``time`` for the replay: sleeping moves the clock on at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_rate_paces_the_events_not_the_labels_and_progress_counts_both(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("streaming.local.replay.time", clock)
    events = [Event(f"s{i}", i, {"x": i}, label=True) for i in range(2000)]
    seen: list[Replayed] = []
    done = replay(Recorder(), "shop", delay_labels(events, (0, 0)), rate=1000, on_progress=seen.append)
    assert done == Replayed(2000, 2000)
    assert clock.now == pytest.approx(2.0)  # 2000 events at 1000/s; the labels did not slow it down
    assert [s.events for s in seen] == [1000, 2000] and seen[0].labels == 999  # s999's label: at the next event


# -- livelearn up: its settings and its stack ----------------------------------------------------------------------
def test_up_sets_a_wait_and_a_labels_topic_unless_the_user_set_them():
    plan = LabelDelay.parse("30s..10m")
    assert label_settings(Settings(events_topic="shop"), plan) == (
        {"label_wait": "1200", "labels_topic": "shop.labels"},
        None,
    )
    assert label_settings(Settings(events_topic="shop", label_wait=3600), plan) == (
        {"labels_topic": "shop.labels"},
        None,
    )
    assert label_settings(Settings(label_wait=3600, labels_topic="orders"), plan) == ({}, None)
    overrides, warning = label_settings(Settings(events_topic="shop", label_wait=600), plan)
    assert overrides == {"labels_topic": "shop.labels"} and warning and "600s" in warning
    assert label_settings(Settings(events_topic="shop"), LabelDelay.parse("0..0"))[0]["label_wait"] == "60"


def test_the_stack_creates_the_labels_topic_tells_the_children_and_replays_labels_to_it(tmp_path):
    parts, producer = Parts(), Recorder()
    created: list[str | None] = []
    launcher = dataclasses.replace(
        parts.launcher(),
        topics=lambda settings, _partitions: created.append(settings.labels.topic),
        producer=lambda _settings: producer,
    )
    overrides = {"label_wait": "1200", "labels_topic": "shop.labels"}
    events = LabelDelay.parse("1s..5s").apply(EVENTS[:100])
    stack = LocalStack(
        environ={},
        api_port=8123,
        workdir=tmp_path,
        launcher=launcher,
        stop_timeout=0.01,
        events=events,
        overrides=overrides,
    )
    with stack:
        wait_for(lambda: stack.replayed, 30, "the replay to end")
        assert (stack.sent, stack.labels_sent) == (100, 100)
        assert stack.settings.labels.wait_seconds == 1200
        events_topic = stack.settings.events_topic
    assert created == ["shop.labels"]
    assert parts.env["LIVELEARN_LABEL_WAIT"] == "1200" and parts.env["LIVELEARN_LABELS_TOPIC"] == "shop.labels"
    assert Counter(t for t, _, _ in producer.sent) == {events_topic: 100, "shop.labels": 100}


# -- livelearn produce ----------------------------------------------------------------------------------------------
def livelearn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {}), "COLUMNS": "400"},  # a wide terminal: the error box does not wrap its line
        timeout=120,
    )


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        (["--label-delay", "10m..30s"], "--label-delay", "the minimum 10m is above the maximum 30s; write MIN..MAX"),
        (
            ["--label-delay", "soon"],
            "--label-delay",
            "use MIN..MAX with units ms, s, m or h (e.g. 30s..10m), got 'soon'",
        ),
        (["--send-labels", "purchases"], "--send-labels", "needs --label-delay"),
        (["--missing-labels", "0.2"], "--missing-labels", "needs --label-delay"),
        (["--label-delay", "1s", "--send-labels", "some"], "--send-labels", "use all or purchases, got 'some'"),
    ],
)
def test_produce_refuses_bad_label_options_in_one_line(options, option, message):
    result = livelearn("produce", "--csv", str(DATASET_PATH), *options, "--bootstrap", "127.0.0.1:1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "Invalid value" in line]
    assert len(lines) == 1 and f"Invalid value for {option}: {message}" in lines[0], result.stderr


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 60) -> list[Record]:
    """The ``count`` records of ``topic`` (every one: none after them, by the high-water marks once read)."""
    consumer = make_consumer(settings)
    try:
        partitions = topic_partitions(consumer, topic)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek_to_beginning(tp)
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(records) < count:
            assert time.monotonic() < deadline, f"read {len(records)} of {count} records of {topic}"
            for batch in consumer.poll(500, 1000).values():
                records.extend(batch)
        assert [consumer.highwater(tp) for tp in partitions] == [consumer.position(tp) for tp in partitions]
        return records
    finally:
        consumer.close()


@pytest.mark.parametrize("own_topic", [True, False], ids=["labels topic", "events topic"])
def test_produce_sends_the_sessions_unlabelled_and_their_labels_later_keyed_alike(make_settings, own_topic):
    settings = make_settings(partitions=2)
    env = settings_env(settings, LIVELEARN_LABEL_WAIT="30m")
    labels_topic = settings.events_topic
    if own_topic:
        labels_topic = env["LIVELEARN_LABELS_TOPIC"] = f"{settings.events_topic}.labels"
        ensure_topics(settings, {labels_topic: 2})
    args = ["--csv", str(DATASET_PATH), "--limit", "400", "--label-delay", "5s..2m", "--missing-labels", "0.1"]
    result = livelearn("produce", *args, "--label-seed", "11", env=env)
    assert result.returncode == 0, result.stderr
    expected = delay_labels(read_events(limit=400), (5000, 120_000), seed=11, missing=0.1)
    labels = [r for r in expected if isinstance(r, Label)]
    assert f"sent 400 events to {settings.events_topic}" in result.stderr
    assert f"sent {len(labels)} labels 5s..2m later to {labels_topic}" in result.stderr
    assert "note:" not in result.stderr  # the wait (30 min) is longer than the longest delay

    if own_topic:
        records = read_topic(settings, settings.events_topic, 400) + read_topic(settings, labels_topic, len(labels))
    else:
        records = read_topic(settings, settings.events_topic, 400 + len(labels))
    decoded = [(decode_event(r.value, "msgpack", LIMITS, labels=True), r) for r in records]
    sessions = {e.event_id: r for e, r in decoded if isinstance(e, Event)}
    assert len(sessions) == 400 and all(e.label is None for e, _ in decoded if isinstance(e, Event))
    got = [(e, r) for e, r in decoded if isinstance(e, Label)]
    assert sorted(e.event_id for e, _ in got) == sorted(label.event_id for label in labels)
    assert {e for e, _ in got} == set(labels)  # the same labels at the same times
    assert {r.topic for _, r in got} == {labels_topic}
    for label, record in got:  # on its session's partition, with its session's key (the user id)
        session = sessions[label.event_id]
        assert (record.partition, record.key) == (session.partition, session.key), label
    assert len({r.partition for r in sessions.values()}) == 2  # the keys spread: a wrong key would show
    positions = {e.event_id if isinstance(e, Event) else f"label:{e.event_id}": r.offset for e, r in decoded}
    if not own_topic:  # one topic: each label after its session, on the same partition
        assert all(positions[f"label:{label.event_id}"] > positions[label.event_id] for label, _ in got)


def test_produce_warns_when_the_wait_is_shorter_than_the_longest_delay(make_settings):
    settings = make_settings()
    args = ["--csv", str(DATASET_PATH), "--limit", "20", "--label-delay", "1s..10m", "--send-labels", "purchases"]
    result = livelearn("produce", *args, env=settings_env(settings))
    assert result.returncode == 0, result.stderr
    assert "note: a learner joins these labels only with LIVELEARN_LABEL_WAIT above 600s (these settings: 0s)" in (
        result.stderr
    )
