"""Dead letters and predictions: a failed delivery stops the snapshot; oversized copies are truncated.

A narrow unit test with a stand-in producer: delivery failures cannot be provoked on demand from a
real broker here.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from streaming.config import Settings
from streaming.errors import EventError, OutputDeliveryError
from streaming.events import Event
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.transport import Tally


class Producer:
    """Records each send; its delivery is reported at once (``hold``: kept until :meth:`deliver`)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.sent, self.flushes, self.serves = fail, [], 0, 0
        self.hold = False
        self.held: list[tuple[Tally, Exception | None]] = []

    def send_counted_many(self, topic, records, headers, tally):
        for value, key in records:
            self.send_counted(topic, value, key, headers, tally)

    def send_counted(self, topic, value, key, headers, tally: Tally) -> None:
        self.sent.append((topic, key, value, dict(headers or [])))
        tally.sent += 1
        outcome = RuntimeError("broker said no") if self.fail else None
        if self.hold:
            self.held.append((tally, outcome))
        else:
            tally.report(outcome)

    def deliver(self, count: int, error: Exception | None = None) -> None:
        """The oldest ``count`` held sends are acknowledged (or fail with ``error``)."""
        for tally, outcome in self.held[:count]:
            tally.report(error or outcome)
        del self.held[:count]

    def serve(self) -> None:
        self.serves += 1

    def flush(self, timeout=None):
        self.flushes += 1
        self.deliver(len(self.held))
        return True


class Record:
    topic, partition, offset, key = "events", 2, 41, b"k"

    def __init__(self, value: bytes) -> None:
        self.value = value


def outputs(producer: Producer) -> Outputs:
    return Outputs(producer, Settings(max_event_bytes=100), LearnerMetrics(CollectorRegistry(), "m"))


def test_flush_raises_when_a_record_was_not_delivered():
    out = outputs(Producer(fail=True))
    out.prediction(Event("e", 1, {}, user_id="u"), 0.7, 3)
    with pytest.raises(OutputDeliveryError, match="1 dead letters/predictions were not delivered"):
        out.flush()


def test_delivered_records_flush_once_and_predictions_carry_the_version():
    producer = Producer()
    out = outputs(producer)
    out.flush()
    assert producer.flushes == 0  # nothing pending: no round trip
    out.prediction(Event("e", 1, {}, user_id="u"), 0.7, 3)
    out.flush()
    assert producer.flushes == 1
    assert out.pending == [] and out.delivered_count == out.sent == 1
    topic, key, _value, _ = producer.sent[0]
    assert topic == "livelearn.events.predictions"
    assert key == b"u"


def test_oversized_dead_letter_copies_are_truncated_and_say_so():
    producer = Producer()
    out = outputs(producer)
    out.dead_letter(Record(b"x" * 500), EventError("oversized", "too big"))
    topic, _key, value, headers = producer.sent[0]
    assert topic == "livelearn.events.dlq"
    assert value == b"x" * 100
    assert headers["livelearn.truncated_from_bytes"] == b"500"
    assert headers["livelearn.offset"] == b"41"


def test_delivered_says_whether_everything_before_a_mark_is_acknowledged_without_blocking():
    """A snapshot waits for the outputs sent before its mark only: later ones may still be in flight."""
    producer = Producer()
    out = outputs(producer)
    assert out.delivered(out.mark())  # nothing sent: nothing to wait for
    producer.hold = True
    out.prediction(Event("a", 1, {}, user_id="u"), 0.7, 3)
    out.prediction(Event("b", 1, {}, user_id="u"), 0.7, 3)
    mark = out.mark()
    out.prediction(Event("c", 1, {}, user_id="u"), 0.7, 3)
    producer.deliver(1)  # the first arrives, the second not yet
    assert not out.delivered(mark)
    assert producer.flushes == 0 and producer.serves == 1  # served the reports, never blocked on the producer
    producer.deliver(1)  # the second arrives
    assert out.delivered(mark)
    assert out.delivered_count == 2 and out.open.sent == 1  # the third is sent after the mark: not waited for
    late = out.mark()
    producer.deliver(1, RuntimeError("broker said no"))
    with pytest.raises(OutputDeliveryError, match="1 dead letters/predictions were not delivered"):
        out.delivered(late)


def test_a_failure_before_the_mark_is_raised_even_while_others_of_its_run_are_pending():
    producer = Producer()
    out = outputs(producer)
    producer.hold = True
    out.prediction(Event("a", 1, {}, user_id="u"), 0.7, 3)
    out.prediction(Event("b", 1, {}, user_id="u"), 0.7, 3)
    mark = out.mark()
    producer.deliver(1, RuntimeError("record too large"))
    with pytest.raises(OutputDeliveryError, match=r"1 dead letters/predictions were not delivered \(record too"):
        out.delivered(mark)


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_predictions_decode_to_the_documented_record_in_either_format(fmt):
    import json

    from snapshotter.codec import unpack

    producer = Producer()
    settings = Settings(predictions_format=fmt, model_name="shop")
    out = Outputs(producer, settings, LearnerMetrics(CollectorRegistry(), "shop"))
    out.prediction(Event("e-1", 1_700_000_000_000, {}, user_id="ü-7"), 0.625, None)
    out.prediction(Event("e-2", 5, {}), 0.25, 12, "fast")  # no user: keyed by the event id; a promoted arm
    decode = json.loads if fmt == "json" else unpack
    records = [(key, decode(value), headers) for _topic, key, value, headers in producer.sent]
    assert [r[0] for r in records] == ["ü-7".encode(), b"e-2"]
    assert records[0][1] == {
        "event_id": "e-1",
        "user_id": "ü-7",
        "ts": 1_700_000_000_000,
        "probability": 0.625,
        "label": True,
        "version": None,
        "model": "shop",
        "arm": "base",
    }
    assert records[1][1]["version"] == 12 and records[1][1]["label"] is False and records[1][1]["user_id"] is None
    assert records[1][1]["arm"] == "fast"
    assert {r[2]["content-type"] for r in records} == {f"application/{fmt}".encode()}
    assert {topic for topic, *_ in producer.sent} == {settings.predictions_topic_name}
