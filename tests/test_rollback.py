"""The accuracy guard: a rollback on a confirmed breach, pinning, flapping and freezing — real broker, real Redis.

The data guard (label and prediction rates) would catch these label-flip bursts first (see
``test_incidents.py``); ``ACCURACY_ONLY`` turns it off where a test is about the accuracy rule itself."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading

from conftest import guard_caught_up, produce, settings_env, status_of, store_for, wait_for, wait_until_running

from snapshotter.audit import read_audit
from snapshotter.status import parse_sample
from streaming.local.dataset import read_events
from streaming.local.replay import flip_labels

GUARD_EVERY = 100  # labelled events between two metric samples
GUARD = {
    "partitions": 1,
    "rolling_window": 1000,
    "monitor_min_samples": 200,
    "monitor_patience": 2,
    "monitor_check_interval_seconds": 0.2,
    "status_interval_seconds": 0.2,
    "snapshot_every_events": 250,
    "monitor_cooldown_events": 20_000,
    "publish_predictions": False,
    "history_every_events": GUARD_EVERY,
}
# the accuracy judge alone: no data-quality incident (the rates' bounds out of reach, the label-odds rule off)
ACCURACY_ONLY = {
    **GUARD,
    "incident_label_rate_bound": 1.0,
    "incident_prediction_rate_bound": 1.0,
    "incident_odds_threshold": 0,
}
ACCURACY_ONLY["incident_label_run_probability"] = 0  # data-quality incidents off: the accuracy guard alone
N, BURST_AT, BURST = 9000, 3000, 1500


def audit(settings, *actions: str):
    store = store_for(settings)
    return read_audit(store.client, store.keys, actions=set(actions) or None)


def livelearn(settings, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "streaming", *args],
        capture_output=True,
        text=True,
        env=settings_env(settings),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def events_with_burst() -> list:
    return list(flip_labels(read_events(limit=N), BURST_AT, BURST, probability=0.5, seed=7))


def stream(settings, events, rate: float = 1500) -> threading.Thread:
    thread = threading.Thread(target=produce, args=(settings, events), kwargs={"rate": rate})
    thread.start()
    return thread


def breaching_samples(settings, threshold: float = 0.8) -> list[tuple[float, dict]]:
    """(flush time, sample) of every history sample of the first lineage that breached the threshold."""
    store = store_for(settings)
    found = []
    for entry_id, fields in store.client.xrange(store.keys.history):
        sample = parse_sample(fields)
        if sample["epoch"] == 0 and sample["samples"] >= 200 and sample["accuracy"] < threshold:
            found.append((int(entry_id.decode().split("-")[0]) / 1000, sample))
    assert found, "no breaching sample in the history"
    return found


def test_an_accuracy_breach_rolls_back_once_at_the_confirming_sample_even_with_two_monitors(make_settings, learners):
    settings = make_settings(**ACCURACY_ONLY)
    learners(settings)
    monitors = [learners(settings, command="monitor") for _ in range(2)]
    wait_until_running(settings, monitors=2)
    stream(settings, events_with_burst()).join()
    wait_for(
        lambda: (status_of(settings) or {}).get("stream_position") == N and (status_of(settings) or {}).get("lag") == 0,
        60,
        "the learner to reach the end",
    )
    wait_for(lambda: guard_caught_up(settings), 30, "the monitors to judge every metric sample")

    rollbacks = audit(settings, "rollback")
    assert len(rollbacks) == 1, [(r.actor, r.from_version, r.to_version) for r in rollbacks]
    rollback = rollbacks[0]
    assert rollback.actor == "monitor"
    assert rollback.metrics["accuracy"] < 0.8
    assert rollback.metrics["samples"] >= 200
    assert "breach" in rollback.reason
    # exactly at the configured patience: the second consecutive breaching sample (in events, at any speed)
    breaches = breaching_samples(settings)
    first_flushed, _first = breaches[0]
    _flushed, confirming = breaches[1]
    assert confirming["scored"] == breaches[0][1]["scored"] + GUARD_EVERY
    assert rollback.metrics["stream_position"] == confirming["stream_position"]
    assert rollback.time > first_flushed  # how soon is bench/rollback_serving.py's figure, not a test's
    # the skip is durable at the moment of the rollback: at least up to the judged sample
    assert store_for(settings).resume_point()["offsets"][settings.events_topic]["0"] >= confirming["offset:0"]

    store = store_for(settings)
    target = store.meta(rollback.to_version)
    assert target.stable
    assert target.metrics["rolling"]["accuracy"] >= 0.8
    assert rollback.to_version < rollback.from_version
    assert rollback.fields["serving_to"] == str(rollback.to_version)  # serving moved to a stable version
    after = [m for m in store.list() if m.epoch == 1]
    assert after
    assert after[0].parent == rollback.to_version
    # written as soon as the learner applied the rollback: at the position where its lineage resumed
    (skipped,) = after[0].extra["rollback"]["skipped_offsets"][settings.events_topic].values()
    assert after[0].created_at > rollback.time and after[0].events_seen == skipped[1]
    assert not after[0].stable  # the window restarted empty: not stable before min_samples new scores
    assert after[0].metrics["rolling"]["samples"] < 200 <= target.metrics["rolling"]["samples"]
    # honest counts: every event scored and counted across the rollback; only the model rewound
    assert after[0].events_seen > target.events_seen
    assert after[0].metrics["cumulative"]["samples"] == after[0].events_seen
    assert after[0].model_events_learned == target.model_events_learned
    assert all(n <= rollback.to_version or store.meta(n).epoch == 1 for n in store.stable_numbers())
    skipped = after[0].extra["rollback"]
    assert skipped["to_version"] == rollback.to_version
    start, end = skipped["skipped_offsets"][settings.events_topic]["0"]
    assert start == target.offsets[settings.events_topic]["0"] < end <= N
    final = status_of(settings)
    assert final["counters"]["events_seen"] == N  # nothing silently rewound
    assert final["cumulative"]["samples"] == N
    assert final["epoch"] == 1
    assert final["rolling"]["accuracy"] >= 0.8
    assert store.serving() == store.stable_numbers()[-1]  # serving follows the newest stable again
    for monitor in monitors:
        monitor.terminate()


def test_pinned_serving_is_not_moved_by_rollback_and_unpin_follows_again(make_settings, learners, tmp_path):
    settings = make_settings(**GUARD)
    learners(settings)
    learners(settings, command="monitor")
    wait_until_running(settings, monitors=1)
    events, before_burst = events_with_burst(), BURST_AT - 500
    produce(settings, events[:before_burst])
    store = store_for(settings)
    wait_for(
        lambda: (status_of(settings) or {}).get("stream_position") == before_burst,
        60,
        "the learner to learn the clean start",
    )
    assert (store.serving() or 0) >= 4
    pinned = store.serving() - 1
    livelearn(settings, "versions", "pin", str(pinned), "--reason", "release candidate")
    assert store.serving() == pinned
    assert store.pinned() == pinned
    stream(settings, events[before_burst:], rate=1200).join()
    wait_for(lambda: audit(settings, "rollback"), 30, "the rollback")
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == N, 60, "the end of the stream")
    rollback = audit(settings, "rollback")[0]
    assert store.serving() == pinned
    assert rollback.fields["serving_to"] == str(pinned)
    assert store.head() != pinned
    assert rollback.to_version != pinned
    assert not audit(settings, "promote") or all(
        p.time < audit(settings, "pin")[0].time for p in audit(settings, "promote")
    )
    report = tmp_path / "incident.png"
    livelearn(settings, "report", "--out", str(report))
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.stat().st_size > 20_000
    as_json = json.loads(livelearn(settings, "audit", "--json", "--limit", "1000", "--routine").stdout)
    assert {"snapshot", "promote", "pin", "rollback"} <= {e["action"] for e in as_json}
    as_json = json.loads(livelearn(settings, "audit", "--json", "--limit", "1000").stdout)
    assert {"pin", "rollback"} <= {e["action"] for e in as_json} and not {"snapshot", "promote"} & {
        e["action"] for e in as_json
    }
    livelearn(settings, "versions", "unpin", "--reason", "done")
    assert store.pinned() is None
    assert store.serving() == store.stable_numbers()[-1] != pinned
    actions = [e.action for e in audit(settings, "pin", "unpin")]
    assert actions == ["pin", "unpin"]


def test_flapping_freezes_learning_and_resume_restarts_it(make_settings, learners):
    settings = make_settings(
        **{
            **ACCURACY_ONLY,
            "monitor_patience": 1,
            "monitor_cooldown_events": 300,
            "monitor_max_rollbacks": 2,
            "monitor_resume_after_events": 10**9,
        }
    )
    learners(settings)
    monitor = learners(settings, command="monitor")
    wait_until_running(settings, monitors=1)
    events = flip_labels(read_events(limit=9000), 2500, None, probability=0.5, seed=3)  # bad from 2,500 on
    producer = threading.Thread(target=produce, args=(settings, events), kwargs={"rate": 1000})
    producer.start()
    wait_for(lambda: audit(settings, "freeze"), 30, "learning to freeze")
    wait_for(lambda: (status_of(settings) or {}).get("frozen"), 5, "the learner to see the freeze")
    frozen_status = status_of(settings)

    def scored_more() -> dict | None:
        status = status_of(settings)
        return status if status["counters"]["events_seen"] > frozen_status["counters"]["events_seen"] else None

    later = wait_for(
        scored_more,
        30,
        "more events to be scored",
    )
    assert later["counters"]["events_learned"] == frozen_status["counters"]["events_learned"]  # not learning
    assert later["counters"]["events_seen"] > frozen_status["counters"]["events_seen"]  # still scoring
    producer.join()
    assert len(audit(settings, "rollback")) <= 2
    freeze = audit(settings, "freeze")
    assert len(freeze) == 1
    assert "2 rollbacks" in freeze[0].reason

    monitor.terminate()  # what the monitor does after a resume is the judge's unit tests' business
    livelearn(settings, "learning", "resume", "--reason", "labels fixed upstream")
    wait_for(lambda: not (status_of(settings) or {}).get("frozen", True), 5, "the learner to resume")
    learned = status_of(settings)["counters"]["events_learned"]
    produce(settings, [dataclasses.replace(e, event_id=f"{e.event_id}-new") for e in read_events(limit=500)])
    wait_for(lambda: status_of(settings)["counters"]["events_learned"] > learned, 10, "learning to go on")
    resumed = audit(settings, "resume")
    assert len(resumed) == 1
    assert resumed[0].reason == "labels fixed upstream"
    assert "@" in resumed[0].actor


def test_a_backlog_burst_is_judged_in_events_not_on_a_clock(make_settings, learners):
    """The whole stream is waiting before the learner starts: it runs through the burst far faster than
    any status interval, and the monitor (checking only every 5 s) still judges every sample."""
    settings = make_settings(**{**ACCURACY_ONLY, "monitor_check_interval_seconds": 5.0, "status_interval_seconds": 1.0})
    produce(settings, events_with_burst())
    learners(settings)
    learners(settings, command="monitor")
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == N, 120, "the learner to reach the end")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitor to judge every metric sample")
    rollbacks = audit(settings, "rollback")
    assert len(rollbacks) == 1
    breaches = breaching_samples(settings)
    assert rollbacks[0].metrics["stream_position"] == breaches[1][1]["stream_position"]
