"""Producer retries: an event id seen again on its partition is skipped, also across a learner restart."""

from __future__ import annotations

from conftest import produce, store_for
from reference import plain_river_loop, river_state

from streaming.local.dataset import read_events

EVENTS = list(read_events(limit=1500))


def test_retried_events_are_learned_once_even_across_a_restart(make_settings, learners):
    settings = make_settings(snapshot_every_events=300)
    stream = []
    for i, event in enumerate(EVENTS[:1000]):
        stream.append(event)
        if i % 7 == 0:
            stream.append(event)  # the producer's retry wrote it twice
    produce(settings, stream)
    learners(settings, "--until-caught-up").wait()
    produce(settings, EVENTS[990:])  # after the restart: ten retries of events the first learner learned
    learners(settings, "--until-caught-up").wait()

    store = store_for(settings)
    meta, state = store.load(store.head())
    assert meta.events_seen == meta.events_learned == len(EVENTS)
    assert state.counters["duplicates"] == len(range(0, 1000, 7)) + 10
    assert meta.offsets[settings.events_topic]["0"] == len(stream) + 510
    model, _accuracy, _learned = plain_river_loop(EVENTS)
    expected = river_state(model)
    assert state.model["weights"] == expected["weights"]
    assert state.model["intercept"] == expected["intercept"]
