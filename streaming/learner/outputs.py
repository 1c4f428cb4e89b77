"""What a learner writes to Kafka besides its offsets: dead letters and predictions.

Both go through one producer. A snapshot's offsets never move past an event whose dead letter or
prediction is not durable in Kafka: a crash can repeat a prediction (the events after the last snapshot
are scored again) but never lose one. The learner does not wait for that: it takes a :meth:`Outputs.mark`
when it encodes a snapshot, keeps learning, and writes the snapshot once :meth:`Outputs.delivered` says
every record sent before the mark was acknowledged (checked without blocking). :meth:`Outputs.flush`
waits for everything (the final snapshot, a rollback's, or deliveries that take too long).

Every record carries a ``content-type`` header, so consumers in any language know how to read it:
predictions are ``application/msgpack`` or ``application/json`` (``LIVELEARN_PREDICTIONS_FORMAT``);
a dead letter is the original value, labelled with the format it was read as.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NoReturn, TypedDict

import msgspec
import orjson

from streaming.config import BASE, Settings
from streaming.errors import EventError, OutputDeliveryError
from streaming.events import Event, sniff_format
from streaming.learner.numbering import VERSION_HEADER
from streaming.learner.prometheus import LearnerMetrics
from streaming.transport import Producer, Record, Tally

__all__ = ["CONTENT_TYPES", "Outputs", "PredictionRecord"]

log = logging.getLogger(__name__)


class PredictionRecord(TypedDict):
    """One record of the predictions topic (msgpack or JSON, keyed by user id or event id)."""

    event_id: str
    user_id: str | None
    ts: int  # the event's epoch milliseconds
    probability: float  # of the positive class, scored before learning from the event
    label: bool  # probability > 0.5
    version: int | None  # the version the live model descends from; None before the first snapshot
    model: str
    arm: str  # the champion's arm name: base (the settings' model) until a challenger is promoted


CONTENT_TYPES = {"msgpack": b"application/msgpack", "json": b"application/json"}


def _header(text: str) -> bytes:
    return text.encode("utf-8", "backslashreplace")  # any text, even a lone surrogate, becomes a valid header


class Outputs:
    """Dead-letter and prediction records of one learner."""

    def __init__(self, producer: Producer, settings: Settings, telemetry: LearnerMetrics) -> None:
        self.producer = producer
        self.settings = settings
        self.telemetry = telemetry
        # Sends are counted in runs, one Tally per run between two marks (one shared delivery callback, no handle
        # per record): a mark closes the open run, so "everything before a mark" is whole runs.
        self.pending: list[Tally] = []  # closed runs not yet known delivered, oldest first
        self.open = Tally()  # the run since the last mark
        self.sent = 0  # records sent by this producer so far (marks count them)
        self.delivered_count = 0  # of those, the oldest ones known delivered
        #: how long a snapshot waits for deliveries before it flushes (and fails if they do not come)
        self.timeout = max(1.0, settings.lease_ttl_seconds / 2)
        # What every prediction shares is made once: topic, headers, model name and the encoder (msgspec's msgpack
        # encoder, the same bytes as snapshotter.codec.pack; or orjson, compact like json.dumps).
        fmt = settings.predictions_format
        self._predictions_topic = settings.predictions_topic_name
        self._prediction_headers = [("content-type", CONTENT_TYPES[fmt])]
        self._encode: Callable[[object], bytes] = orjson.dumps if fmt == "json" else msgspec.msgpack.Encoder().encode

    def dead_letter(self, record: Record, exc: EventError, version: int | None = None) -> None:
        """Copy a rejected record unchanged to the dead-letter topic, with the reason in headers (and ``version``,
        the version the live model descends from, as ``livelearn.version``: what Kafka remembers of the version
        numbers if Redis loses them, :mod:`~streaming.learner.numbering`)."""
        headers = [
            ("livelearn.reason", _header(exc.reason)),
            ("livelearn.detail", _header(exc.detail[:1000])),
            ("livelearn.topic", _header(record.topic)),
            ("livelearn.partition", str(record.partition).encode()),
            ("livelearn.offset", str(record.offset).encode()),
        ]
        if version is not None:
            headers.append((VERSION_HEADER, str(version).encode()))
        value = record.value or b""
        if value:
            fmt = self.settings.event_format
            headers.append(("content-type", CONTENT_TYPES[sniff_format(value) if fmt == "auto" else fmt]))
        if len(value) > self.settings.max_event_bytes:  # the original stays in its topic, at the offset named
            headers.append(("livelearn.truncated_from_bytes", str(len(value)).encode()))
            value = value[: self.settings.max_event_bytes]
        self.producer.send_counted(self.settings.dead_letter_topic_name, value, record.key, headers, self.open)
        self.sent += 1
        self.telemetry.dead_lettered(exc.reason)
        log.debug("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)

    def prediction(self, event: Event, probability: float, version: int | None, arm: str = BASE) -> None:
        """Publish the score given *before* learning from ``event``, tagged with its version and the champion's arm."""
        ((value, key),) = self._prediction_records((event,), (probability,), version, arm)
        self.producer.send_counted(self._predictions_topic, value, key, self._prediction_headers, self.open)
        self.sent += 1

    def predictions(
        self, events: Sequence[Event], scores: Sequence[float], version: int | None, arm: str = BASE
    ) -> None:
        """:meth:`prediction` for each event and its score, in order (a run's: one send call)."""
        records = self._prediction_records(events, scores, version, arm)
        self.producer.send_counted_many(self._predictions_topic, records, self._prediction_headers, self.open)
        self.sent += len(records)

    def _prediction_records(
        self, events: Sequence[Event], scores: Sequence[float], version: int | None, arm: str
    ) -> list[tuple[bytes, bytes]]:
        """Each prediction's value and key (the user id, else the event id), in order (one loop, on locals)."""
        encode, model = self._encode, self.settings.model_name
        records = []
        for k in range(len(events)):
            event, probability = events[k], scores[k]
            doc: PredictionRecord = {
                "event_id": event.event_id,
                "user_id": event.user_id,
                "ts": event.ts,
                "probability": probability,
                "label": probability > 0.5,
                "version": version,
                "model": model,
                "arm": arm,
            }
            records.append((encode(doc), (event.user_id or event.event_id).encode()))
        return records

    def mark(self) -> int:
        """A mark after every record sent so far (for :meth:`delivered`); it closes the open run of sends."""
        if self.open.sent:
            self.pending.append(self.open)
            self.open = Tally()
        return self.sent

    def delivered(self, mark: int) -> bool:
        """Whether every record sent before ``mark`` is acknowledged; never blocks.

        Raises :class:`OutputDeliveryError` when one of them failed, like :meth:`flush`.
        """
        if self.delivered_count >= mark:
            return True
        self.producer.serve()
        pending = self.pending
        while pending and self.delivered_count < mark:
            run = pending[0]
            if run.failed:
                self._failed(run.failed, run.error)
            if not run.complete:
                break
            del pending[0]
            self.delivered_count += run.sent
        return self.delivered_count >= mark

    def flush(self) -> None:
        """Wait until every record sent since the last flush is acknowledged, or raise.

        Raises :class:`OutputDeliveryError` when a record could not be delivered: the caller must not
        move offsets past it (the learner then exits, and its successor replays from the last snapshot).
        """
        if self.delivered_count == self.sent:
            return
        timeout = self.timeout
        if not self.producer.flush(timeout=timeout):
            raise OutputDeliveryError(
                f"could not flush {self.sent - self.delivered_count} dead letters/predictions within "
                f"{timeout:.0f}s; no snapshot written past them"
            )
        runs = [*self.pending, self.open]
        failed = sum(run.failed for run in runs)
        error = next((run.error for run in runs if run.error is not None), None)
        self.delivered_count = self.sent
        self.pending, self.open = [], Tally()
        if failed:
            self._failed(failed, error)

    def _failed(self, failed: int, error: object) -> NoReturn:
        raise OutputDeliveryError(
            f"{failed} dead letters/predictions were not delivered ({error}); no snapshot "
            f"written past them. Check that {self.settings.dead_letter_topic_name} and "
            f"{self.settings.predictions_topic_name} exist and accept the records"
        )
