"""The per-event work of an active learner: decode, skip duplicates, score, publish, learn (prequential).

Each record is decoded against the event contract (a bad one is dead-lettered, never raised), checked
against the idempotence window, scored *before* the model learns from it, its prediction published, the
metrics updated with that score, and then — if it is labelled and learning is on — one SGD step taken.

With the label join on (``LIVELEARN_LABEL_WAIT``, :mod:`streaming.learner.join`) a record may also be a label, and an
event without a label waits in the join: the labelled half (:meth:`EventStep.judge_and_learn` — metrics with the
probability stored at scoring, signals, samples, the SGD step) runs when its label comes, in label time, for every
pair the record completed (:meth:`EventStep.settle`), and for the waits its time ended before it is scored.

Every ``history_every_events``-th labelled event a metric sample is recorded for the monitor and fed to the
data-quality watch (:class:`~monitor.signals.SignalWatch`) at that exact event: an incident it confirms
holds learning from this event on (the runner then records it and rolls back, see
:mod:`streaming.learner.incidents`), its end lets learning go on from the event that showed it (the rolling window
starts afresh there, and that block is marked as held for the monitor's metric rule), and calm
data confirms the versions written up to here (promotion ``guard``). Between samples, when a timed snapshot
is due, :meth:`EventStep.confirm_partial` may confirm up to the current event on the block so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from streaming.config import Settings
from streaming.engines import step_run
from streaming.errors import EventError
from streaming.events import Event, EventDecoder, EventLimits, Label
from streaming.learner.join import Joined
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
        self.labels_topic = settings.labels.topic
        # (with the label join a record without features is a label) decoded through the typed fast path
        self.decoders = {
            joined: EventDecoder(settings.event_format, self.limits, labels=joined) for joined in (False, True)
        }
        self.consumed = self.learned = self.duplicates = self.labels = 0  # not yet added to the Prometheus counters

    def flush_telemetry(self) -> None:
        """Add the counts since the last call to the Prometheus counters (once per poll batch)."""
        t = self.telemetry
        for counter, count in (
            (t.events_consumed, self.consumed),
            (t.events_learned, self.learned),
            (t.duplicates, self.duplicates),
            (t.labels_consumed, self.labels),
        ):
            if count:
                counter.inc(count)
        self.consumed = self.learned = self.duplicates = self.labels = 0

    def process(self, state: LearnerState, record: Any, outputs: Outputs, positions: dict[TopicPartition, int]) -> None:
        """One record; ``positions`` already include it. Never raises for anything the record holds."""
        self.consumed += 1
        event = self._decode(state, record, outputs)
        if event is None:
            return
        if type(event) is Label:  # (only with the join on)
            join = state.join
            assert join is not None
            if state.held_until is not None:
                state.replay_at(record.topic, record.partition, record.offset, positions)
            self.labels += 1
            self.settle(state, join.advance(event.ts, (record.topic, record.partition)), positions)
            self.settle(state, join.labelled(event.event_id, event.ts, event.label), positions)
            return
        assert isinstance(event, Event)
        if not self._duplicate(state, record, event):
            self.step_event(state, record, event, outputs, positions)

    def _decode(self, state: LearnerState, record: Any, outputs: Outputs) -> Event | Label | None:
        """The record's event or label; ``None``: dead-lettered (counted)."""
        try:
            event = self.decoders[state.join is not None](record.value)
            if record.topic == self.labels_topic and type(event) is not Label:
                raise EventError("not_a_label", "the labels topic carries {event_id, label, ts}: this has features")
        except EventError as exc:
            outputs.dead_letter(record, exc, state.parent)
            state.counters["dead_lettered"] += 1
            return None
        return event

    def _duplicate(self, state: LearnerState, record: Any, event: Event) -> bool:
        """Whether ``event`` is a producer's retry of one in the idempotence window (counted; learned already)."""
        if state.recent.seen_before(record.partition, event.event_id):
            state.counters["duplicates"] += 1
            self.duplicates += 1
            return True
        return False

    def step_event(
        self, state: LearnerState, record: Any, event: Event, outputs: Outputs, positions: dict[TopicPartition, int]
    ) -> None:
        """A decoded event not seen before: scored, published, judged and learned (see the module docstring)."""
        join = state.join
        if state.held_until is not None:
            state.replay_at(record.topic, record.partition, record.offset, positions)
        if join is not None:  # the waits this event's time ends are learned (or dropped) before it is scored
            self.settle(state, join.advance(event.ts, (record.topic, record.partition)), positions)
        labelled = event.label is not None
        if labelled and join is not None and not join.inline(event.event_id):
            labelled = False  # its id waits or was joined already (a conflict): scored only, never learned twice
        learn = labelled and state.learning
        timed = self.consumed % TIMED_EVERY == 0
        t0 = time.perf_counter() if timed else 0.0
        x = state.model.encode(event.features, learn=learn)
        p = state.model.predict_encoded(x)
        if timed:
            self.telemetry.predict_seconds.observe(time.perf_counter() - t0)
        state.counters["events_seen"] += 1
        if self.settings.publish_predictions:
            outputs.prediction(event, p, state.parent, state.arm_name)
        if event.label is None:
            if join is not None:  # it waits for its label with every arm's score (the challengers score it now too)
                others = None if state.arms is None else state.arms.score(event.features, x)
                self.settle(state, join.scored(event.event_id, event.ts, p, event.features, others), positions)
            return
        if labelled:
            self.judge_and_learn(
                state, event.event_id, event.label, p, event.features, positions=positions, learn=learn, x=x
            )

    def process_run(
        self,
        state: LearnerState,
        records: Sequence[Any],
        start: int,
        *,
        limit: int,
        outputs: Outputs,
        positions: dict[TopicPartition, int],
        tp: TopicPartition,
    ) -> tuple[int, Any, int, bool]:
        """Records of partition ``tp`` from ``records[start]`` on, as many as make one **run** — at most ``limit``
        stepped, ending right after the event that records a metric sample (or at the end of ``records``) — each
        moved past in ``positions`` (records before a partition's position are skipped). Returns the index after
        the run, its last record stepped (``None``: none), how many were stepped, and whether a sample was recorded.

        The events between samples change nothing but the model, the metrics, the signals, the counters and the
        idempotence window, and send their outputs; what they change is read only at a sample or after the run: so
        they are decoded and checked one by one (dead letters and duplicates as ever), then encoded, scored and
        learned in one call for the run
        (:func:`~streaming.engines.step_run`, in stream order: each scored by the model that learned every event
        before it), their predictions published and the metrics and signals updated in stream order — the same
        values, to the last bit, as :meth:`process` one record at a time. The event at a sample is stepped alone
        (:meth:`step_event`: its sample may hold learning from it on). With the label join or challengers on, or
        while replaying a held range, each record is a run of one (:meth:`process`).
        """
        n = len(records)
        i = start
        position = positions[tp]
        while i < n and records[i].offset < position:
            i += 1  # consumed already: a rollback in this batch moved the partition past it
        if i == n:
            return i, None, 0, False
        if limit <= 1 or state.join is not None or state.arms is not None or state.held_until is not None:
            record = records[i]
            positions[tp] = record.offset + 1
            samples = len(state.samples)
            self.process(state, record, outputs, positions)
            return i + 1, record, 1, len(state.samples) > samples
        every = self.settings.history_every_events
        until_sample = every - state.metrics.samples % every  # labelled events up to the one at the next sample
        others = sum(positions.values()) - position  # the other partitions' positions
        run: list[tuple[Event, int]] = []
        stepped, last, sampled = 0, None, False
        decode, duplicate = self._decode, self._duplicate
        while i < n and stepped < limit:
            record = records[i]
            i += 1
            if record.offset < position:
                continue
            position = positions[tp] = record.offset + 1
            stepped += 1
            last = record
            event = decode(state, record, outputs)
            if event is None or duplicate(state, record, event):  # type: ignore[arg-type] # (no Label: the join is off)
                continue
            assert type(event) is Event
            if event.label is not None:
                until_sample -= 1
                if not until_sample:  # its sample may hold learning from this event on: the run ends with it
                    self._step_run(state, run, outputs)
                    run = []
                    samples = len(state.samples)
                    self.step_event(state, record, event, outputs, positions)
                    sampled = len(state.samples) > samples
                    break
            run.append((event, others + position))
        self._step_run(state, run, outputs)
        self.consumed += stepped
        return i, last, stepped, sampled

    def _step_run(self, state: LearnerState, run: list[tuple[Event, int]], outputs: Outputs) -> None:
        """Events between two samples, in stream order (each with the stream position that includes it): scored and
        learned in one engine call, then published and judged in order (:meth:`process_run`)."""
        if not run:
            return
        learning = state.learning
        features = [event.features for event, _ in run]
        labels = [event.label for event, _ in run]
        learn = [learning and label is not None for label in labels]
        timed = len(run) >= TIMED_EVERY
        t0 = time.perf_counter() if timed else 0.0
        scores = step_run(state.model, features, labels, learn)
        if timed:  # the run's mean per event, once for every TIMED_EVERY events (as the events stepped alone)
            mean = (time.perf_counter() - t0) / len(run)
            for _ in range(len(run) // TIMED_EVERY):
                self.telemetry.predict_seconds.observe(mean)
        counters = state.counters
        counters["events_seen"] += len(run)
        if self.settings.publish_predictions:
            outputs.predictions([event for event, _ in run], scores, state.parent, state.arm_name)
        judged = [k for k in range(len(run)) if labels[k] is not None]
        ys: list[bool] = [labels[k] for k in judged]  # type: ignore[misc]
        ps = [scores[k] for k in judged]
        state.metrics.update_many(ys, ps)
        state.signals.add_many(ys, ps, [features[k] for k in judged], [run[k][1] for k in judged])
        learned = sum(learn)
        counters["events_learned"] += learned
        self.learned += learned

    def settle(self, state: LearnerState, joined: list[Joined], positions: dict[TopicPartition, int]) -> None:
        """Pairs the label join completed at this record, in order: judged with the probability stored at scoring
        and learned on the features the event was scored with (a wait that ran out under policy ``drop``: only
        counted)."""
        for pair in joined:
            if pair.label is not None:
                learn = state.learning
                probability = pair.probability
                if math.isnan(probability):  # NaN: promoted after it was scored, by an arm that had not scored it
                    probability = state.model.predict_encoded(state.model.encode(pair.features))
                self.judge_and_learn(
                    state,
                    pair.event_id,
                    pair.label,
                    probability,
                    pair.features,
                    positions=positions,
                    learn=learn,
                    others=pair.others,
                )

    def judge_and_learn(
        self,
        state: LearnerState,
        event_id: str,
        label: bool,
        p: float,
        features: dict[str, Any],
        *,
        positions: dict[TopicPartition, int],
        learn: bool,
        x: Any = None,
        others: dict[str, float] | None = None,
    ) -> None:
        """The labelled half of prequential learning, at label time: the metrics and the data signals take
        ``(label, p)``, a metric sample is recorded every ``history_every_events`` labels, then — if ``learn`` (decided
        before the sample) and the sample did not hold learning — one SGD step (``x``: the event encoded with
        ``learn=True`` already, else encoded now), and every challenger's (``others``: their scores from when the
        event waited, :mod:`streaming.learner.arms`)."""
        state.metrics.update(label, p)
        # the label-odds rule judges a label by the model's score when the label came: with the join, the score the
        # event got may be from a model that had learned far fewer labels then (its topic read ahead of the labels')
        now = (
            None
            if x is not None or not state.signals.odds
            else state.model.predict_encoded(state.model.encode(features))
        )
        state.signals.add(label, p, features, positions, now)
        if state.metrics.samples % self.settings.history_every_events == 0:
            self.record_sample(state, positions)
            if learn and not state.learning:  # an incident confirmed by this very block: not learned
                learn = False
                if x is not None and state.arms is not None and not state.model.encoded_fast:
                    state.arms.unshare()  # the champion's vocabulary may have grown on it alone
        if not learn:
            return
        timed = x is not None and self.consumed % TIMED_EVERY == 0
        if x is None:
            x = state.model.encode(features, learn=True)
        if state.arms is not None:  # (arms that encode like the champion take its encoding when it changed nothing)
            state.arms.judge_and_learn(label, p, features, others, x if state.model.encoded_fast else None)
        t1 = time.perf_counter() if timed else 0.0
        state.model.learn_encoded(x, label)
        if timed:
            self.telemetry.learn_seconds.observe(time.perf_counter() - t1)
        state.counters["events_learned"] += 1
        self.learned += 1
        if state.learned is not None:
            state.learned.append(event_id, label)

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
        if not (state.watch.calm_with(partial, odds=state.odds_judged) and state.threshold.meets(rolling)):
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
        threshold, meets = state.threshold.value(), state.threshold.meets(rolling)  # judged before this sample
        position = sum(positions.values())
        sample = {
            "time": time.time(),
            "epoch": state.epoch,
            "version": state.parent or 0,
            "scored": state.metrics.samples,
            "events_seen": state.counters["events_seen"],
            "stream_position": position,
            **{_offset_key(tp, self.settings.kafka.events_topic): at for tp, at in positions.items()},
            **rolling,
            **state.signals.flush(),
        }
        if state.join is not None:  # labels that came later: how late, on average, and how many events wait
            delay = state.join.take_block_delay()
            if delay is not None:
                sample["label_delay_s"] = delay
            sample["labels_pending"] = len(state.join.pending)
        if state.arms is not None:  # each challenger's comparison at this event (``livelearn compare`` draws them)
            sample.update(state.arms.sample_fields())
        events = state.watch.observe(sample, threshold=threshold, odds=state.odds_judged)
        sample.update(state.watch.odds_fields())
        state.signals.odds_factors = state.watch.odds_factors()  # each segment group's calibration, for the next block
        state.incident_events += [(event, sample) for event in events]
        ended = any(event.kind == "incident_end" for event in events)
        if ended:
            # learning goes on from here: the rolling window judges only what comes after the incident (it held the
            # incident's own labels, which would read as a breach of the model learned without them)
            state.metrics.restart_window()
        # the monitor's judge reads it: a block an incident held, including the one that ended it (its rolling metrics
        # still hold the incident's labels), is not judged by the metric rule
        sample["incident"] = 0 if state.watch.incident is None and not ended else 1
        # the guarded metrics' levels learn from this sample as the monitor's do (not from an incident's labels)
        state.threshold.observe({**rolling, "incident": sample["incident"]})
        state.samples.append(sample)
        if state.watch.calm and state.learning and meets:
            state.confirmed = position - self.settings.promotion_delay_events
            state.confirmed_metrics = rolling


def _offset_key(tp: TopicPartition, events_topic: str) -> str:
    """A sample's field for a partition's position: ``offset:<partition>`` for the events topic (as ever),
    ``offset:<topic>:<partition>`` for another (the labels topic)."""
    return f"offset:{tp.partition}" if tp.topic == events_topic else f"offset:{tp.topic}:{tp.partition}"
