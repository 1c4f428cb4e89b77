"""Property test: no record a producer can write stops, corrupts or bloats a learner.

Arbitrary bytes, arbitrary msgpack documents and arbitrary JSON (lone UTF-16 surrogates, integers far
beyond 64 bits, NaN and Infinity literals, deep nesting) go through the learner's own per-event step —
decode, deduplicate, score, publish the prediction, learn — and then through the snapshot encoder and the
status encoder. Each record must end either scored (and learned, if labelled) or dead-lettered with a
reason; nothing may raise, weights stay finite, and everything written out is valid bytes.

A narrow unit test: the Kafka producer is a stand-in that checks what the real one would need (bytes
values and keys, (str, bytes) headers), and Redis is fakeredis (the learner's scripts run on it).
"""

from __future__ import annotations

import json
import math
from typing import Any

import fakeredis
import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from snapshotter.codec import decode_snapshot, encode_snapshot, pack, sha256_hex, unpack
from streaming.config import Settings
from streaming.events import encode_event
from streaming.learner.outputs import Outputs
from streaming.learner.runner import Learner
from streaming.local.dataset import read_events
from streaming.transport import TopicPartition


class Future:
    def failed(self) -> bool:
        return False


class StrictProducer:
    """Records what was sent, refusing what kafka-python itself could not send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None, headers=None) -> Future:
        assert isinstance(value, bytes)
        assert key is None or isinstance(key, bytes)
        for name, header in headers or []:
            assert isinstance(name, str)
            assert isinstance(header, bytes)
            name.encode()
        self.sent.append((topic, key, value, headers or []))
        return Future()

    def send_counted_many(self, topic, records, headers, tally):
        for value, key in records:
            self.send_counted(topic, value, key, headers, tally)

    def send_counted(self, topic, value, key, headers, tally) -> None:
        self.send(topic, key=key, value=value, headers=headers)
        tally.sent += 1
        tally.report(None)

    def serve(self) -> None:
        pass

    def flush(self, timeout=None) -> None:
        pass


class Record:
    topic, partition, key = "events", 0, b"k"

    def __init__(self, value: bytes | None, offset: int) -> None:
        self.value, self.offset = value, offset


# Text with every code point, lone UTF-16 surrogates included (JSON escapes them as \udXXX); surrogates
# are rare among all code points, so some strings get one on purpose.
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=12)
TEXT = st.one_of(
    ANY_TEXT, st.builds(lambda a, s, b: a + s + b, ANY_TEXT, st.sampled_from(["\udfff", "\ud800"]), ANY_TEXT)
)
EDGES = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 10**400])
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), EDGES, st.floats(), st.floats(min_value=-1e16, max_value=1e16)
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)
FEATURES = st.dictionaries(
    st.one_of(TEXT, st.sampled_from(["pages", "month", "value"])),
    st.one_of(SCALARS, JSON_VALUES, st.sampled_from(["Feb", "Mar", 3, 2.5, True])),
    max_size=6,
)
EVENTS = st.fixed_dictionaries(
    {"event_id": st.one_of(TEXT, st.integers(), st.none()), "ts": st.one_of(NUMBERS, TEXT, st.none())},
    optional={
        "features": st.one_of(FEATURES, JSON_VALUES),
        "label": st.one_of(SCALARS, st.sampled_from([0, 1])),
        "user_id": st.one_of(TEXT, NUMBERS, st.none()),
    },
)
WELL_FORMED = st.fixed_dictionaries(
    {
        "event_id": TEXT.filter(bool),
        "ts": st.one_of(st.integers(min_value=0, max_value=2**64), EDGES),
        "features": FEATURES,
    },
    optional={"label": st.sampled_from([True, False, 0, 1, None]), "user_id": st.one_of(TEXT, st.integers())},
)


def as_json(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # ensure_ascii: lone surrogates become \\udXXX escapes


def as_msgpack(doc: Any) -> bytes:
    try:
        return msgpack.packb(doc, use_bin_type=True)
    except (OverflowError, TypeError, ValueError, UnicodeEncodeError):
        return b"\xc1"  # not representable in msgpack: still a record someone could send


RECORDS = st.one_of(
    st.binary(max_size=64),
    st.builds(as_json, st.one_of(EVENTS, WELL_FORMED, JSON_VALUES)),
    st.builds(as_msgpack, st.one_of(EVENTS, WELL_FORMED)),
    st.builds(lambda doc: b"\xef\xbb\xbf \n" + as_json(doc), WELL_FORMED),
    st.none(),
)

LEARNER = Learner(
    Settings(event_format="auto", model_name="poison", max_inputs=500),
    redis_client=fakeredis.FakeRedis(),
    registry=CollectorRegistry(),
)
PRODUCER = StrictProducer()
OUTPUTS = Outputs(PRODUCER, LEARNER.settings, LEARNER.telemetry)
POSITIONS = {TopicPartition("events", 0): 0}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(RECORDS, min_size=1, max_size=8))
def test_no_record_stops_corrupts_or_bloats_the_learner(records):
    for value in records:
        before = dict(LEARNER.counters)
        sent_before = len(PRODUCER.sent)
        offset = POSITIONS[TopicPartition("events", 0)]
        POSITIONS[TopicPartition("events", 0)] = offset + 1
        LEARNER.step.process(LEARNER.state, Record(value, offset), OUTPUTS, POSITIONS)  # must not raise

        after = LEARNER.counters
        scored = after["events_seen"] - before["events_seen"]
        rejected = after["dead_lettered"] - before["dead_lettered"]
        repeated = after["duplicates"] - before["duplicates"]
        assert scored + rejected + repeated == 1
        new = PRODUCER.sent[sent_before:]
        if rejected:
            ((topic, _key, copy, headers),) = new
            assert topic == "livelearn.events.dlq"
            assert copy == (value or b"")
            reason = dict(headers)["livelearn.reason"].decode()
            assert reason
            assert dict(headers)["livelearn.detail"]
        elif scored:
            ((topic, _key, payload, headers),) = new
            assert topic == "livelearn.events.predictions"
            assert dict(headers)["content-type"]
            prediction = unpack(payload)
            assert 0.0 <= prediction["probability"] <= 1.0
            assert isinstance(prediction["event_id"], str)
        else:
            assert not new  # a duplicate is skipped silently (and counted)

    learned = LEARNER.state.model.dump_state()  # either engine: the same document
    assert all(math.isfinite(w) for w in learned["weights"].values())
    assert math.isfinite(learned["intercept"])
    assert LEARNER.state.model.inputs <= 500
    blob = encode_snapshot(LEARNER.state.snapshot_state())  # what the next snapshot would write
    assert decode_snapshot(blob, sha256_hex(blob)).counters == LEARNER.counters
    LEARNER.step.record_sample(LEARNER.state, POSITIONS)
    pack(LEARNER.state.samples)  # the metric samples and the status encode too
    pack(LEARNER.status_document(1.0, 0, POSITIONS))
    LEARNER.publish_status(1.0, 0, POSITIONS)


def test_prometheus_counts_added_per_batch_equal_the_learners_counters():
    registry = CollectorRegistry()
    learner = Learner(
        Settings(model_name="counts", publish_predictions=False), redis_client=fakeredis.FakeRedis(), registry=registry
    )
    outputs, positions = Outputs(StrictProducer(), learner.settings, learner.telemetry), {TopicPartition("e", 0): 0}
    events = [*read_events(limit=300), *read_events(limit=20)]  # twenty producer retries
    records = [Record(encode_event(e), offset) for offset, e in enumerate(events)] + [Record(b"\xff", 320)]
    for record in records:
        learner.step.process(learner.state, record, outputs, positions)
    assert registry.get_sample_value("livelearn_events_consumed_total", {"model": "counts"}) in (None, 0.0)
    learner.step.flush_telemetry()  # the runner does this after each poll batch
    counts = {
        name: registry.get_sample_value(f"livelearn_events_{name}_total", {"model": "counts"})
        for name in ("consumed", "learned", "duplicate")
    }
    assert counts == {"consumed": 321, "learned": learner.counters["events_learned"], "duplicate": 20}
    assert learner.counters["events_learned"] == 300
    timed = registry.get_sample_value("livelearn_predict_seconds_count", {"model": "counts"})
    assert timed == len([n for n in range(1, 301) if n % 16 == 0])  # one scored event in 16 is timed
    learner.step.flush_telemetry()
    assert registry.get_sample_value("livelearn_events_consumed_total", {"model": "counts"}) == 321
