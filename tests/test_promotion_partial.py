"""Confirming a timed snapshot between metric samples, on the block so far (promotion guard, partial blocks).

The learner's real per-event step over the bundled dataset, without Kafka or Redis (the producer is a narrow
fake that acknowledges everything): a calm block so far confirms the data up to the current event; a block
so far that a full block's rule would call suspect confirms nothing; and either way the watch, the samples
and the block go on exactly as without the check (a partial block never opens an incident).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fakes import DeliveringProducer
from prometheus_client import CollectorRegistry

from streaming.config import Settings
from streaming.events import encode_event
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.local.dataset import read_events
from streaming.transport import TopicPartition

EVENTS = list(read_events(limit=3000))
TP = TopicPartition("events", 0)


@dataclasses.dataclass
class _Record:
    value: bytes
    offset: int
    topic: str = "events"
    partition: int = 0
    key: None = None


class Learner:
    """The step and the state a live learner runs, fed events one at a time."""

    def __init__(self, **overrides: Any) -> None:
        self.settings = Settings(publish_predictions=False, event_format="msgpack", **overrides)
        telemetry = LearnerMetrics(CollectorRegistry(), self.settings.model_name)
        self.state = LearnerState.fresh(spec_from_settings(self.settings), self.settings)
        self.step = EventStep(self.settings, telemetry)
        self.outputs = Outputs(DeliveringProducer(), self.settings, telemetry)  # type: ignore[arg-type]
        self.positions = {TP: 0}

    def feed(self, events: list[Any]) -> None:
        for event in events:
            offset = self.positions[TP]
            self.positions[TP] = offset + 1
            self.step.process(self.state, _Record(encode_event(event), offset), self.outputs, self.positions)
            assert not self.state.incident_events, "these scenarios open no incident"

    def confirm(self) -> bool:
        return self.step.confirm_partial(self.state, self.positions)


def test_a_calm_block_so_far_confirms_up_to_the_current_event():
    learner = Learner()
    learner.feed(EVENTS[:2450])  # 24 full blocks (all labelled), then half a block
    at_sample = learner.state.confirmed
    assert at_sample == 2400  # the last full block confirmed its end
    watch, block, samples = learner.state.watch.dump(), learner.state.signals.dump(), len(learner.state.samples)
    assert learner.confirm()
    assert learner.state.confirmed == 2450 and learner.state.confirmed_metrics["partial_block"] == 50
    # nothing else moved: the watch, the block under way and the samples are those of a learner not asked
    assert (learner.state.watch.dump(), learner.state.signals.dump()) == (watch, block)
    assert len(learner.state.samples) == samples
    other = Learner()
    other.feed(EVENTS[:2500])
    learner.feed(EVENTS[2450:2500])
    assert learner.state.samples[-1]["label_rate"] == other.state.samples[-1]["label_rate"]
    assert learner.state.watch.dump() == other.state.watch.dump()


@pytest.mark.parametrize(("label", "start", "count"), [(True, 2400, 40), (False, 2480, 110)])
def test_a_block_so_far_a_full_block_would_call_suspect_confirms_nothing_and_opens_nothing(
    label: bool, start: int, count: int
):
    """A labeller stuck at 1 shows in 40 events (the label rate is off by far more than half a bound); one stuck at
    0 barely moves a low label rate, and shows as for full blocks by the label-odds CUSUM past half its threshold
    (~0.16 per zero at the model's scores here: 20 zeros in the last full block, under half, and 90 more in the block
    so far)."""
    learner = Learner()
    learner.feed(EVENTS[:start])
    assert learner.state.watch.reference["label_rate"] is not None  # the reference is learned: judging is on
    learner.feed([dataclasses.replace(e, label=label) for e in EVENTS[start : start + count]])
    confirmed = learner.state.confirmed
    assert confirmed is not None and confirmed <= 2500
    assert learner.state.watch.calm  # the last full block did not see it yet (or saw too little)...
    assert not learner.confirm()  # ... but the block so far is suspect: nothing more is confirmed
    assert learner.state.confirmed == confirmed
    assert learner.state.watch.incident is None  # a partial block opens nothing
    clean = Learner()
    clean.feed(EVENTS[: start + count])
    assert clean.confirm() and clean.state.confirmed == start + count  # the same events with their true labels


def test_an_incident_or_a_suspect_full_block_or_the_setting_off_confirms_nothing():
    learner = Learner(promotion_partial_blocks=False)
    learner.feed(EVENTS[:2450])
    assert not learner.confirm() and learner.state.confirmed == 2400
    immediate = Learner(promotion="immediate")
    immediate.feed(EVENTS[:2450])
    assert not immediate.confirm()
    frozen = Learner()
    frozen.feed(EVENTS[:2450])
    frozen.state.watch.suspect_since = 2300  # the newest full block was suspect: wait for the next one
    assert not frozen.confirm() and frozen.state.confirmed == 2400
