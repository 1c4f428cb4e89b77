"""Bad events go to the dead-letter topic with a reason; the learner keeps going and stays finite."""

from __future__ import annotations

import json
import math

import msgpack
from conftest import produce, store_for
from kafka import KafkaConsumer

from streaming.local.dataset import read_events

BAD = {
    "undecodable": b"\xc1\xff not msgpack",
    "bad_shape": msgpack.packb([1, 2, 3]),
    "bad_field": msgpack.packb({"ts": 1, "features": {"a": 1}}),
    "non_finite": msgpack.packb({"event_id": "n", "ts": 1, "features": {"a": float("nan")}, "label": 1}),
    "oversized": msgpack.packb({"event_id": "o", "ts": 1, "features": {"a": "x" * 5000}, "label": 1}),
    "too_many_features": msgpack.packb({"event_id": "m", "ts": 1, "features": {f"f{i}": i for i in range(5000)}}),
    "bad_label": msgpack.packb({"event_id": "l", "ts": 1, "features": {"a": 1}, "label": "maybe"}),
    "bad_type": msgpack.packb({"event_id": "t", "ts": 1, "features": {"a": [1, 2]}, "label": 0}),
}


def test_bad_events_are_dead_lettered_and_learning_goes_on(make_settings, learners):
    settings = make_settings(partitions=1, snapshot_every_events=300, event_format="auto")
    good = list(read_events(limit=1000))
    stream: list = []
    for i, event in enumerate(good):
        stream.append(event)
        if i % 100 == 50:
            stream.extend(BAD.values())
    infinite = {"event_id": "inf", "ts": 1, "features": {"a": float("inf")}, "label": 1}
    stream.append(msgpack.packb(infinite))
    stream.append(json.dumps({"event_id": "j", "ts": 5, "features": {"Administrative": 1}, "label": True}).encode())
    produce(settings, stream)
    n_bad = 10 * len(BAD) + 1

    learners(settings, "--until-caught-up").wait()

    store = store_for(settings)
    newest = store.meta(store.head())
    assert newest.events_seen == len(good) + 1  # the JSON event counts; bad ones do not
    _meta, state = store.load(newest.number)
    assert state.counters["dead_lettered"] == n_bad
    assert all(math.isfinite(w) for w in state.model["weights"].values())
    assert math.isfinite(state.model["intercept"])

    consumer = KafkaConsumer(
        settings.dead_letter_topic_name,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    records = list(consumer)
    consumer.close()
    assert len(records) == n_bad
    reasons = [dict(r.headers)["livelearn.reason"].decode() for r in records]
    assert sorted(set(reasons)) == sorted(BAD)
    assert reasons.count("non_finite") == 11
    for record in records:
        headers = dict(record.headers)
        assert headers["livelearn.topic"].decode() == settings.events_topic
        assert headers["livelearn.partition"] == b"0"
        assert int(headers["livelearn.offset"]) >= 0
        assert record.value in BAD.values() or record.value == msgpack.packb(infinite)  # nothing is lost
