"""The per-event work of an active learner: decode, skip duplicates, score, publish, learn (prequential).

Each record is decoded against the event contract (a bad one is dead-lettered, never raised), checked
against the idempotence window, scored *before* the model learns from it, its prediction published, the
metrics updated with that score, and then — if it is labelled and learning is on — one SGD step taken.

Every ``history_every_events``-th labelled event a metric sample is recorded for the monitor and fed to the
data-quality watch (:class:`~monitor.signals.SignalWatch`) at that exact event: an incident it confirms
holds learning from this event on (the runner then records it and rolls back, see
:mod:`streaming.learner.incidents`), its end lets learning go on from the event that showed it, and calm
data confirms the versions written up to here (promotion ``guard``). Between samples, when a timed snapshot
is due, :meth:`EventStep.confirm_partial` may confirm up to the current event on the block so far.
"""

from __future__ import annotations

import time
from typing import Any

from monitor.prequential import meets_threshold
from streaming.config import Settings
from streaming.errors import EventError
from streaming.events import EventLimits, decode_event
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState
from streaming.transport import TopicPartition

__all__ = ["TIMED_EVERY", "EventStep"]

#: The predict and learn latency histograms time one event in this many (timing each costs as much as a metric).
TIMED_EVERY = 16


class EventStep:
    """Processes one record at a time into a :class:`LearnerState`.

    Prometheus counters are added per poll batch (:meth:`flush_telemetry`), not per event; the per-event
    latency histograms time every :data:`TIMED_EVERY`-th event.
    """

    def __init__(self, settings: Settings, telemetry: LearnerMetrics) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.limits = EventLimits.from_settings(settings)
        self.consumed = self.learned = self.duplicates = 0  # not yet added to the Prometheus counters

    def flush_telemetry(self) -> None:
        """Add the counts since the last call to the Prometheus counters (once per poll batch)."""
        t = self.telemetry
        for counter, count in (
            (t.events_consumed, self.consumed),
            (t.events_learned, self.learned),
            (t.duplicates, self.duplicates),
        ):
            if count:
                counter.inc(count)
        self.consumed = self.learned = self.duplicates = 0

    def process(self, state: LearnerState, record: Any, outputs: Outputs, positions: dict[TopicPartition, int]) -> None:
        """One record; ``positions`` already include it. Never raises for anything the record holds."""
        self.consumed += 1
        counters = state.counters
        try:
            event = decode_event(record.value, self.settings.event_format, self.limits)
        except EventError as exc:
            outputs.dead_letter(record, exc, state.parent)
            counters["dead_lettered"] += 1
            return
        if state.recent.seen_before(record.partition, event.event_id):  # a producer retry: learned already
            counters["duplicates"] += 1
            self.duplicates += 1
            return
        if state.held_until is not None and sum(positions.values()) > state.held_until:
            state.end_replayed_hold()
        learn = event.label is not None and state.learning
        timed = self.consumed % TIMED_EVERY == 0
        t0 = time.perf_counter() if timed else 0.0
        x = state.model.encode(event.features, learn=learn)
        p = state.model.predict_encoded(x)
        if timed:
            self.telemetry.predict_seconds.observe(time.perf_counter() - t0)
        counters["events_seen"] += 1
        if self.settings.publish_predictions:
            outputs.prediction(event, p, state.parent)
        if event.label is None:
            return
        state.metrics.update(event.label, p)
        state.signals.add(event.label, p, event.features, positions)
        if state.metrics.samples % self.settings.history_every_events == 0:
            self.record_sample(state, positions)
            learn = learn and state.learning  # an incident confirmed by this very block: not learned
        if learn:
            t1 = time.perf_counter() if timed else 0.0
            state.model.learn_encoded(x, event.label)
            if timed:
                self.telemetry.learn_seconds.observe(time.perf_counter() - t1)
            counters["events_learned"] += 1
            self.learned += 1

    def confirm_partial(self, state: LearnerState, positions: dict[TopicPartition, int]) -> bool:
        """Between metric samples (a timed snapshot is due): confirm the data up to here if the block so far is
        calm by the rule of full blocks (:meth:`~monitor.signals.SignalWatch.calm_with`) and the rolling metric
        meets its threshold, so a snapshot taken now is stable at once. ``True`` if it did. Nothing is recorded
        and the watch is not changed: the full block judges the same events again."""
        s = self.settings
        if s.promotion != "guard" or not s.promotion_partial_blocks or not state.learning:
            return False
        rolling = state.metrics.rolling_values()
        partial = {**rolling, **state.signals.peek()}
        if not (state.watch.calm_with(partial) and meets_threshold(rolling, s, state.threshold.value())):
            return False
        state.confirmed = sum(positions.values()) - s.promotion_delay_events
        state.confirmed_metrics = {**rolling, "partial_block": state.signals.count}
        return True

    def record_sample(self, state: LearnerState, positions: dict[TopicPartition, int]) -> None:
        """Keep the rolling metrics at this exact event for the history stream (the monitor judges each one), and
        let the data-quality watch judge the block.

        Samples fall on every ``history_every_events``-th labelled event, so the monitor sees the same
        sequence whatever the event rate; a replay after a crash records the same samples again (same
        ``scored`` count), which the monitor recognises and skips.
        """
        rolling = state.metrics.rolling_values()
        threshold = state.threshold.value()
        state.threshold.observe(rolling)
        position = sum(positions.values())
        sample = {
            "time": time.time(),
            "epoch": state.epoch,
            "version": state.parent or 0,
            "scored": state.metrics.samples,
            "events_seen": state.counters["events_seen"],
            "stream_position": position,
            **{f"offset:{tp.partition}": at for tp, at in positions.items()},
            **rolling,
            **state.signals.flush(),
        }
        events = state.watch.observe(sample, threshold=threshold)
        state.incident_events += [(event, sample) for event in events]
        sample["incident"] = 0 if state.watch.incident is None else 1  # the monitor's judge reads it
        state.samples.append(sample)
        if state.watch.calm and state.learning and meets_threshold(rolling, self.settings, threshold):
            state.confirmed = position - self.settings.promotion_delay_events
            state.confirmed_metrics = rolling
