"""Stopping a learner mid-stream (SIGTERM or SIGKILL) loses nothing and counts nothing twice."""

from __future__ import annotations

import threading

import pytest
from conftest import produce, status_of, store_for, wait_for
from reference import contract_features

from streaming.local.dataset import read_events
from streaming.model import ModelSpec, OnlineModel

N = 12_330


def uninterrupted_model_state() -> dict:
    model = OnlineModel(ModelSpec())
    for event in read_events():
        x = contract_features(event)
        model.predict_proba_one(x)
        model.learn_one(x, event.label)
    return model.dump_state()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_mid_stream_applies_every_event_once(make_settings, learners, how):
    settings = make_settings(partitions=1, snapshot_every_events=500, status_interval_seconds=0.1)
    producer = threading.Thread(target=produce, args=(settings, read_events()), kwargs={"rate": 3000})
    producer.start()
    first = learners(settings)
    wait_for(
        lambda: (status_of(settings) or {}).get("counters", {}).get("events_seen", 0) >= 4000,
        60,
        "the first learner to pass 4,000 events",
    )
    if how == "sigterm":
        first.terminate()
        stopped_at = store_for(settings).meta(store_for(settings).head()).events_seen
        assert 4000 <= stopped_at < N  # the final snapshot holds exactly what was learned
    else:
        first.kill()
    producer.join()

    second = learners(settings)
    wait_for(
        lambda: (status_of(settings) or {}).get("counters", {}).get("events_seen") == N,
        120,
        "the restarted learner to reach the end of the stream",
    )
    second.terminate()

    store = store_for(settings)
    newest = store.meta(store.head())
    assert newest.events_seen == newest.events_learned == N
    assert newest.offsets[settings.events_topic] == {"0": N}
    _meta, state = store.load(newest.number)
    expected = uninterrupted_model_state()
    assert state.model["weights"] == expected["weights"]
    assert state.model["intercept"] == expected["intercept"]
    assert state.model["optimizer_iterations"] == expected["optimizer_iterations"] == N
    assert state.model["scaler"] == expected["scaler"]
