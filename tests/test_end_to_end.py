"""The whole dataset through a real broker into a learner process, checked against plain river."""

from __future__ import annotations

import math

import pytest
from conftest import produce, status_of, store_for, wait_for
from reference import plain_river_loop, river_state

from streaming.local.dataset import read_events

N = 12_330


@pytest.mark.parametrize("engine", ["river", "compiled"])
def test_learner_matches_plain_river_loop_and_writes_numbered_versions(make_settings, learners, engine):
    settings = make_settings(
        partitions=1,
        snapshot_every_events=2000,
        snapshot_every_seconds=3600,
        status_interval_seconds=0.2,
        engine=engine,
    )  # versions by count only
    assert produce(settings, read_events()) == N
    learner = learners(settings)
    wait_for(
        lambda: (status_of(settings) or {}).get("counters", {}).get("events_seen") == N,
        120,
        "the learner to score every event",
    )
    output = learner.terminate()
    assert f"learning engine: {engine}" in output

    store = store_for(settings)
    metas = store.list()
    numbers = [m.number for m in metas]
    assert numbers == list(range(1, len(numbers) + 1))
    written = [(m.number, m.events_seen) for m in metas]
    assert len(numbers) == N // 2000 + 1, f"versions (number, events_seen): {written}; the learner said:\n{output}"
    assert store.head() == numbers[-1]
    for previous, meta in zip([None, *metas[:-1]], metas, strict=True):
        assert meta.parent == (previous.number if previous else None)
        assert meta.events_seen == min(N, meta.number * 2000)
        assert meta.offsets == {settings.events_topic: {"0": meta.events_seen}}
        assert meta.metrics["cumulative"]["samples"] == meta.events_seen
        assert meta.spec["learning_rate"] == 0.01
        assert meta.format_version == 2
        assert len(meta.sha256) == 64
    newest = metas[-1]
    assert newest.events_seen == newest.events_learned == N

    model, accuracy, learned = plain_river_loop(read_events())
    assert learned == N
    assert newest.metrics["cumulative"]["accuracy"] == accuracy.get()  # to the last digit
    _meta, snapshot = store.load(newest.number)
    reference = river_state(model)
    assert list(snapshot.model["weights"]) == list(reference["weights"])  # the same order of creation
    for name, weight in reference["weights"].items():
        assert abs(snapshot.model["weights"][name] - weight) <= 1e-12
    assert abs(snapshot.model["intercept"] - reference["intercept"]) <= 1e-12
    assert snapshot.model["scaler"]["counts"] == reference["scaler"]["counts"]
    assert all(math.isfinite(v) for v in newest.metrics["rolling"].values())


def test_the_main_job_streams_the_dataset_through_the_guard_and_stops_cleanly(make_settings, tmp_path):
    """`livelearn up` (what `scripts/up` runs) with its default drift demo, against the session's servers."""
    import subprocess
    import sys

    from conftest import settings_env

    from snapshotter.audit import read_audit
    from snapshotter.incidents import position_of

    settings = make_settings(publish_predictions=True)
    env = settings_env(settings)
    servers = ("--bootstrap", settings.kafka_bootstrap, "--redis-url", settings.redis_url)
    result = subprocess.run(
        [sys.executable, "-m", "streaming", "up", "--rate", "0", "--exit-when-done", *servers],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,  # up's stack file (.livelearn/) lands here: other tests' commands never read it
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "learner stopped cleanly" not in result.stdout  # said only when it started the servers itself
    store = store_for(settings)
    final = store.meta(store.head())  # the final snapshot: the status expires seconds after the learner stopped
    assert final.events_seen == N
    audit = read_audit(store.client, store.keys)
    (start,) = [e for e in audit if e.action == "incident_start"]
    (rollback,) = [e for e in audit if e.action == "rollback"]
    # the demo's coin-flip labels begin at event 5,000: the label-odds rule's change point is a block start at or
    # before it (at most two blocks of 100 labelled events)
    assert 4800 <= int(start.fields["change_point"]) <= 5000
    assert position_of(store.meta(rollback.to_version)) <= 5000
    assert [e for e in audit if e.action == "incident_end"]
    assert store.serving() in store.stable_numbers()
