"""What a learner writes to Kafka besides its offsets: dead letters and predictions.

Both go through one producer. :meth:`Outputs.flush` runs before every snapshot, so by the time a
snapshot's offsets move past an event, its dead letter or prediction is durable in Kafka: a crash can
repeat a prediction (the events after the last snapshot are scored again) but never lose one.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer

from monitor.telemetry import LearnerMetrics
from snapshotter.codec import pack
from streaming.config import Settings
from streaming.errors import EventError
from streaming.events import Event

__all__ = ["Outputs"]

log = logging.getLogger(__name__)


class Outputs:
    """Dead-letter and prediction records of one learner."""

    def __init__(self, producer: KafkaProducer, settings: Settings, telemetry: LearnerMetrics) -> None:
        self.producer = producer
        self.settings = settings
        self.telemetry = telemetry
        self.pending = 0

    def dead_letter(self, record: Any, exc: EventError) -> None:
        """Copy a rejected record unchanged to the dead-letter topic, with the reason in headers."""
        headers = [
            ("livelearn.reason", exc.reason.encode()),
            ("livelearn.detail", exc.detail[:1000].encode()),
            ("livelearn.topic", record.topic.encode()),
            ("livelearn.partition", str(record.partition).encode()),
            ("livelearn.offset", str(record.offset).encode()),
        ]
        self.producer.send(self.settings.dead_letter_topic_name, key=record.key, value=record.value or b"",
                           headers=headers)
        self.pending += 1
        self.telemetry.dead_lettered(exc.reason)
        log.debug("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)

    def prediction(self, event: Event, probability: float, version: int | None) -> None:
        """Publish the score given *before* learning from ``event``, tagged with its version."""
        doc = {"event_id": event.event_id, "user_id": event.user_id, "ts": event.ts, "probability": probability,
               "label": probability > 0.5, "version": version, "model": self.settings.model_name}
        self.producer.send(self.settings.predictions_topic_name, key=(event.user_id or event.event_id).encode(),
                           value=pack(doc))
        self.pending += 1

    def flush(self) -> None:
        if self.pending:
            self.producer.flush(timeout=30)
            self.pending = 0
