"""Labels on their own topic, later than their events, while the active learner is SIGKILLed at seeded moments and
a standby takes over each time: every label is accounted for once, and the final model is a plain river loop over
the pairs in the learner's join order (``livelearn versions learned``), to the last digit."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

import pytest
from conftest import guard_caught_up, settings_env, status_of, store_for, wait_for, wait_until_running
from reference import contract_features

from monitor.compare import Comparison
from streaming.events import Event, Label, encode_event, encode_label
from streaming.local.dataset import read_events
from streaming.model import ModelSpec, OnlineModel
from streaming.transport import make_producer

N_EVENTS = 4000
TTL = 6.0


def delayed_stream(events: list[Event], seed: int) -> list[tuple[int, str, Event | Label]]:
    """(send time, topic kind, record) in send order: events without labels, their labels 5 s..8 min of event time
    later (10 % never, 3 % after the 10-minute wait, 4 % twice, 5 % before their event), and 30 labels for ids
    that never come. Each record is sent at its ``ts``: event time runs on in each partition (the join's clock
    assumes it, up to its slack)."""
    rng = random.Random(seed)
    out: list[tuple[int, int, str, Event | Label]] = []
    for n, event in enumerate(events):
        out.append((event.ts, 1, "events", Event(event.event_id, event.ts, event.features, None, event.user_id)))
        roll = rng.random()
        if roll < 0.10:
            continue
        delay = rng.randint(5, 480) * 1000 if roll >= 0.13 else rng.randint(700, 1200) * 1000
        label = Label(event.event_id, event.ts + delay, bool(event.label))
        if roll >= 0.95:  # before its event (a producer whose clock is behind): ts and send time earlier
            label = Label(event.event_id, event.ts - rng.randint(1, 30) * 1000, bool(event.label))
        sent = label.ts
        out.append((sent, 0, "labels", label))
        if roll > 0.96:
            out.append((sent + rng.randint(0, 60_000), 0, "labels", label))
        if n % 130 == 0:
            out.append((event.ts, 0, "labels", Label(f"ghost-{n}", event.ts, True)))
    out.sort(key=lambda item: (item[0], item[1]))
    return [(at, kind, record) for at, _, kind, record in out]


def send(settings, stream: list[tuple[int, str, Event | Label]], rate: float) -> None:
    producer = make_producer(settings, linger_ms=5)
    start = time.monotonic()
    for sent, (_at, _kind, record) in enumerate(stream, 1):
        if isinstance(record, Event):
            producer.send(settings.events_topic, encode_event(record), key=(record.user_id or record.event_id).encode())
        else:
            producer.send(settings.labels.topic, encode_label(record), key=record.event_id.encode())
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0.001:
            time.sleep(ahead)
    producer.flush()
    producer.close()


def learned_pairs(settings) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "streaming", "versions", "learned"],
        env=settings_env(settings),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return [json.loads(line) for line in out.stdout.decode().splitlines()]


@pytest.mark.integration
def test_every_label_once_and_the_model_is_river_over_the_join_order_across_sigkills(make_settings, learners):
    rng = random.Random(1919)
    settings = make_settings(
        partitions=2,
        label_wait="10m",
        label_policy="negative",
        labels_topic=f"labels-{rng.randrange(10**9)}",
        snapshot_every_events=300,
        status_interval_seconds=0.1,
        lease_ttl_seconds=TTL,
        keep_versions=100_000,
        challengers=["fast:lr=0.05", "twin"],  # both arms exact across the kills too, and their comparison whole
        # 10 % of the labels never come and the policy makes their events negatives: real damage to the labels, which
        # the label-odds rule may see; this test is about the join's exactness across kills
        incident_odds_threshold=0,
    )
    events = list(read_events(limit=N_EVENTS))
    stream = delayed_stream(events, seed=rng.randrange(1000))
    labels_sent = sum(1 for _, kind, _ in stream if kind == "labels")
    started = [learners(settings)]
    started.append(learners(settings))
    standby = started[-1]
    wait_until_running(settings, standbys=(standby,))
    producer = threading.Thread(target=send, args=(settings, stream, 1500.0))
    producer.start()
    kills = sorted(rng.randint(len(stream) // 10, len(stream) * 9 // 10) for _ in range(3))
    for at in kills:  # SIGKILL whoever is active once it has read this far; the standby takes over
        status = wait_for(
            lambda at=at: s if (s := status_of(settings) or {}).get("stream_position", 0) >= at else None,
            120,
            f"the active learner to read {at} records",
        )
        active = next(p for p in started if status["writer"].endswith(f":{p.proc.pid}"))
        active.kill()
        started.append(learners(settings))
        wait_for(
            lambda token=status["lease_token"]: (status_of(settings) or {}).get("lease_token", token) != token,
            TTL + 30,
            "a standby to take the lease",
        )
    producer.join()
    final = wait_for(
        lambda: s if (s := status_of(settings) or {}).get("stream_position") == len(stream) else None,
        120,
        "the learner to read every record",
    )
    active = next(p for p in started if final["writer"].endswith(f":{p.proc.pid}"))
    active.terminate()

    store = store_for(settings)
    head = store.meta(store.head())
    assert sum(sum(partitions.values()) for partitions in head.offsets.values()) == len(stream)
    c = head.extra["labels"]
    # every label once: learned with its event, late, a duplicate, or held for an event that never came
    assert labels_sent == (
        c["matched"] + c["late"] + c["duplicates"] + c["orphans_expired"] + c["orphans_evicted"] + c["orphans"]
    )
    assert N_EVENTS == c["pending_in"] == c["matched"] + c["expired"] + c["evicted"] + c["pending"]
    assert c["late"] > 0 and c["duplicates"] > 0 and c["orphans_expired"] + c["orphans_evicted"] > 0

    joined_at, join = store.join_state()  # one copy, the newest version's: not one per version
    assert joined_at == head.number and len(join["pending"]) == c["pending"]
    assert all("join" not in store.load(m.number)[1].stream for m in store.list()[-3:])
    pairs = learned_pairs(settings)
    ids = [pair["event_id"] for pair in pairs]
    assert len(ids) == len(set(ids)) == c["matched"] + c["expired"] + c["evicted"]  # never twice, never lost
    assert head.events_learned == len(pairs)
    features = {e.event_id: contract_features(e) for e in events}
    river = OnlineModel(ModelSpec())
    for pair in pairs:
        river.learn_one(features[pair["event_id"]], pair["label"])
    _meta, state = store.load(head.number)
    expected = river.dump_state()
    assert state.model["weights"] == expected["weights"]
    assert state.model["intercept"] == expected["intercept"]
    assert state.model["scaler"] == expected["scaler"]
    assert state.model["optimizer_iterations"] == len(pairs)
    # each challenger is a plain river loop over the same pairs at its own rate; the twin is the champion, and its
    # comparison saw every pair once with a difference of exactly 0 (scored when the champion scored, across kills)
    fast = OnlineModel(ModelSpec(learning_rate=0.05))
    for pair in pairs:
        fast.learn_one(features[pair["event_id"]], pair["label"])
    for name, plain in (("fast", fast.dump_state()), ("twin", expected)):
        arm = state.arms[name]
        assert {k: arm["model"][k] for k in ("weights", "intercept", "scaler")} == {
            k: plain[k] for k in ("weights", "intercept", "scaler")
        }, name
        assert arm["learned"] == len(pairs) and arm["started"] == {"from": "cold", "version": None}
    twin = Comparison.load(state.arms["twin"]["comparison"]).result()
    assert twin.labels == len(pairs) and twin.loss_difference == 0 and twin.difference_upper == 0
    assert Comparison.load(state.arms["fast"]["comparison"]).labels == len(pairs)
    assert head.extra["arms"]["fast"]["comparison"]["labels"] == len(pairs)


@pytest.mark.integration
def test_a_stuck_labeller_is_caught_in_label_time_when_labels_come_later(make_settings, learners):
    """Labels stuck at 1 for 2,000 sessions, every label 5 s..2 min after its session on the labels topic: one
    incident, in label time; the rollback lands before the first stuck label was learned; nothing written while it
    was open is served or stable; and the final model learned not one stuck label."""
    from snapshotter.audit import read_audit
    from snapshotter.incidents import position_of
    from snapshotter.status import read_samples

    settings = make_settings(
        partitions=1,
        label_wait="10m",
        labels_topic=f"labels-stuck-{random.randrange(10**9)}",
        snapshot_every_events=250,
        snapshot_every_seconds=3600,
        keep_versions=100_000,
        status_interval_seconds=0.2,
        monitor_check_interval_seconds=0.2,
        publish_predictions=False,
        challengers=["fast:lr=0.05", "twin"],  # the incident holds every arm; each comparison leaves its range out
    )
    rng = random.Random(21)
    events = list(read_events())
    at, count = 4000, 2000
    stream: list[tuple[int, int, str, Event | Label]] = []
    for i, event in enumerate(events):
        stream.append((event.ts, 1, "events", Event(event.event_id, event.ts, event.features, None, event.user_id)))
        label = True if at <= i < at + count else bool(event.label)
        ts = event.ts + rng.randint(5, 120) * 1000
        stream.append((ts, 0, "labels", Label(event.event_id, ts, label)))
    stream.sort(key=lambda item: (item[0], item[1]))
    send(settings, [(ts, kind, record) for ts, _, kind, record in stream], rate=1e9)  # a backlog
    learners(settings)
    monitor = learners(settings, command="monitor")
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == len(stream), 180, "the end of the stream")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitor to judge every metric sample")
    monitor.terminate()
    store = store_for(settings)
    audit = read_audit(store.client, store.keys, routine=True)
    (start,) = [e for e in audit if e.action == "incident_start"]
    (rollback,) = [e for e in audit if e.action == "rollback"]
    (end,) = [e for e in audit if e.action == "incident_end"]
    assert start.fields["signal"] in ("label_run", "label_rate", "label_odds")
    cp, ended = int(start.fields["change_point"]), int(end.metrics["stream_position"])
    target = store.meta(rollback.to_version)
    assert rollback.to_version in store.stable_numbers()
    assert position_of(target) <= cp
    served = {e.to_version for e in audit if e.action in ("promote", "pin", "unpin") and e.to_version}
    inside = {m.number for m in store.list() if cp < position_of(m) < ended}
    assert inside and not inside & served and not inside & set(store.stable_numbers())
    # the block that ended it is judged as held, and the guarded window starts afresh after it: the recovered model
    # is not rolled back for the incident's own labels
    assert [e.action for e in audit].count("rollback") == 1
    samples = [s for _id, s in read_samples(store.client, store.keys)]
    last_held = max(i for i, s in enumerate(samples) if s.get("incident"))
    assert samples[last_held]["stream_position"] == ended
    assert samples[last_held + 1]["samples"] == settings.history_every_events
    stuck_ids = {e.event_id for e in events[at : at + count] if not e.label}  # labelled 1 by the stuck labeller
    learned = learned_pairs(settings)
    assert {p["event_id"] for p in learned if p["label"]}.isdisjoint(stuck_ids)
    assert len(learned) > len(events) // 2  # learning went on after the incident
    # every arm learned what the champion learned, and its comparison judged exactly those pairs: the stuck labels
    # (held, then rolled back past) are in neither; the twin never differs
    head = store.meta(store.head())
    for name, arm in head.extra["arms"].items():
        assert arm["learned"] == arm["comparison"]["labels"] == head.model_events_learned == len(learned), name
    _meta, state = store.load(head.number)
    assert {k: state.arms["twin"]["model"][k] for k in ("weights", "intercept")} == {
        k: state.model[k] for k in ("weights", "intercept")
    }
    assert Comparison.load(state.arms["twin"]["comparison"]).result().loss_difference == 0
