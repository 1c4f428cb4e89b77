"""A learner killed at any moment of a data-quality incident — as it opens, while learning is held, as it closes,
after — leaves the model an uninterrupted learner would have: its successor replays from the newest snapshot,
and a range learning was held over is replayed held (``learning:released``), whatever Redis says by then.

Each case streams the dataset with a labeller stuck at 1 for 2,000 events, kills the active learner (SIGKILL:
no final snapshot) at one moment, starts another and compares the final model with an uninterrupted run's, to
the last digit.
"""

from __future__ import annotations

import functools

import pytest
from conftest import produce, store_for, wait_for
from test_incidents import EVENTS, GUARD, N, stuck

from snapshotter.audit import read_audit
from snapshotter.incidents import position_of

pytestmark = pytest.mark.integration

AT, COUNT = 4000, 2000
STUCK = stuck(EVENTS, AT, COUNT)


def settings_for(make_settings, every: int):
    return make_settings(**{**GUARD, "snapshot_every_events": every, "lease_ttl_seconds": 2})


def finish(settings, learner) -> tuple[dict, dict, int]:
    """Wait for the end of the stream, stop the learner (final snapshot): its model, counters and incident end."""
    store = store_for(settings)
    wait_for(lambda: (store.status() or {}).get("stream_position") == N, 180, "the end of the stream")
    learner.terminate()
    meta, state = store.load(store.head())
    assert position_of(meta) == N
    ends = [e for e in read_audit(store.client, store.keys) if e.action == "incident_end"]
    assert len(ends) == 1, [(e.action, e.metrics) for e in ends]
    return state.model, state.counters, int(ends[0].metrics["stream_position"])


@functools.cache
def _reference_cache() -> dict:
    return {}


def uninterrupted(make_settings, learners, every: int) -> tuple[dict, dict, int]:
    cache = _reference_cache()
    if every not in cache:
        settings = settings_for(make_settings, every)
        produce(settings, STUCK)
        cache[every] = finish(settings, learners(settings))
    return cache[every]


#: (snapshot every N events, the kill's moment): each moment and each snapshot spacing at least once
CASES = [(2500, "at-close"), (250, "at-close"), (2500, "held"), (100, "held"), (250, "at-open"), (2500, "after")]


@pytest.mark.parametrize(("every", "moment"), CASES, ids=[f"{m}-every-{e}" for e, m in CASES])
def test_a_learner_killed_during_or_after_an_incident_leaves_the_uninterrupted_model(
    make_settings, learners, every: int, moment: str
):
    model, counters, closed_at = uninterrupted(make_settings, learners, every)
    settings = settings_for(make_settings, every)
    store = store_for(settings)
    # where the stream stops before the kill: just past the open (the first block off), inside the held range,
    # just past the close, and a little after it
    stop = {"at-open": AT + 2 * 100 + 1, "held": AT + COUNT, "at-close": closed_at + 1, "after": closed_at + 300}
    first = stop[moment]
    produce(settings, STUCK[:first])
    learner = learners(settings)
    wait_for(lambda: (store.status() or {}).get("stream_position") == first, 180, f"stream position {first}")
    if moment == "at-close":
        assert store.incident() is None  # closed in Redis (every 2,500: the newest snapshot was written held)
    learner.kill()
    successor = learners(settings)
    produce(settings, STUCK[first:])
    got_model, got_counters, got_closed_at = finish(settings, successor)
    assert got_closed_at == closed_at
    assert got_counters["events_learned"] == counters["events_learned"]
    assert got_model == model  # bit for bit: nothing held was learned, nothing learned was lost


def operator_resume_at(make_settings, learners, first: int, *, kill: bool, every: int = 2500) -> tuple[dict, dict]:
    """Stream up to ``first`` (the incident open), resume learning as an operator there, optionally SIGKILL the
    learner once it applied the resume, then stream the rest: the final model and counters."""
    from snapshotter.control import ControlPlane

    settings = settings_for(make_settings, every)
    store = store_for(settings)
    produce(settings, STUCK[:first])
    learner = learners(settings)
    wait_for(lambda: (store.status() or {}).get("stream_position") == first, 180, f"stream position {first}")
    assert store.incident() is not None
    ControlPlane(store).resume(actor="operator", reason="the new normal")
    released = store.keys.released
    wait_for(lambda: store.client.hget(released, "position") == str(first).encode(), 60, "the learner to apply it")
    if kill:
        learner.kill()
        learner = learners(settings)
    produce(settings, STUCK[first:])
    wait_for(lambda: (store.status() or {}).get("stream_position") == N, 180, "the end of the stream")
    learner.terminate()
    _meta, state = store.load(store.head())
    return state.model, state.counters


def test_a_learner_killed_after_an_operator_resume_learns_from_where_it_was_applied(make_settings, learners):
    """The resume took effect at stream position 5,500 (the newest snapshot, at 5,000, was written held): the
    successor replays 5,000-5,500 held and learns from 5,501 on, as the learner it replaced did."""
    model, counters = operator_resume_at(make_settings, learners, 5500, kill=False)
    got_model, got_counters = operator_resume_at(make_settings, learners, 5500, kill=True)
    assert got_counters["events_learned"] == counters["events_learned"]
    assert got_model == model
