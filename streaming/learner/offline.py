"""The learner's per-event work without Kafka or Redis: replay events and get the metric samples it records.

The same :class:`~streaming.learner.step.EventStep` runs on each event (encoded and decoded like a record,
scored, learned), so the samples are the ones a live learner would record for that stream: ``livelearn
calibrate`` and the guard's scenario checks use them to see what a monitor would judge.

>>> from streaming.config import Settings
>>> from streaming.local.dataset import read_events
>>> samples = list(replay_samples(read_events(limit=500), Settings()))
>>> len(samples), samples[-1]["scored"], round(samples[-1]["label_rate"], 2)
(5, 500, 0.05)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.signals import SignalEvent
from snapshotter.status import MetricSample
from streaming.config import Settings
from streaming.events import Event, encode_event
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.transport import Record, Tally, TopicPartition

__all__ = ["Discard", "replay_samples"]


class _Delivered:
    is_done, exception = True, None

    def failed(self) -> bool:
        return False


class Discard:
    """Stands in for the producer: offline, predictions and dead letters go nowhere."""

    def send(self, *_args: Any, **_kwargs: Any) -> _Delivered:
        return _Delivered()

    def send_counted_many(
        self, _topic: str, records: Sequence[tuple[bytes, bytes | None]], _headers: Any, tally: Tally
    ) -> None:
        tally.sent += len(records)
        tally.done += len(records)

    def send_counted(self, _topic: str, _value: bytes, _key: bytes | None, _headers: Any, tally: Tally) -> None:
        tally.sent += 1
        tally.report(None)

    def serve(self) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        pass


def replay_samples(
    events: Iterable[Event], settings: Settings, incidents: list[SignalEvent] | None = None
) -> Iterator[MetricSample]:
    """Score then learn ``events`` in order (one partition); yield every metric sample as it is recorded.
    ``incidents``: where to put the incidents the learner's watch opened and closed (else they are dropped)."""
    settings = settings.model_copy(update={"publish_predictions": False, "event_format": "msgpack"})
    telemetry = LearnerMetrics(CollectorRegistry(), settings.model_name)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    step = EventStep(settings, telemetry)
    outputs = Outputs(Discard(), settings, telemetry)
    tp = TopicPartition("offline", 0)
    positions = {tp: 0}
    for offset, event in enumerate(events):
        positions[tp] = offset + 1
        step.process(state, Record(tp.topic, 0, offset, None, encode_event(event), [], -1), outputs, positions)
        if incidents is not None:
            incidents += [event for event, _sample in state.incident_events]
        state.incident_events.clear()  # offline nothing is recorded; the samples say whether one is open
        if state.samples:
            yield from state.samples
            state.samples.clear()
