"""The recovery drill: Redis is wiped while the learner runs; its stable versions were backed up to a real
S3-protocol server. ``restore-from-backup`` puts the newest one back, the learner resumes from its offsets, no
version number is handed out twice, and the final model equals a plain loop over the events after the restored
version's offsets, appended to its state. Real broker, real redis-server, moto's S3 server."""

from __future__ import annotations

import pytest
from clirun import one_line_error
from conftest import RetentionAt, produce, status_of, store_for, wait_for
from reference import contract_features

from snapshotter.audit import read_audit
from streaming.local.dataset import read_events
from streaming.model import ModelSpec, OnlineModel

EVENTS = list(read_events(limit=5000))


def seen(settings) -> int:
    return (status_of(settings) or {}).get("counters", {}).get("events_seen", 0)


def test_redis_wiped_while_learning_is_restored_from_backup_and_the_learner_goes_on_exactly(
    private_redis, make_settings, learners, s3, cli
):
    server, admin = private_redis
    settings = make_settings(
        redis_url=f"redis://{server.address}/0",
        snapshot_every_events=500,
        status_interval_seconds=0.1,
        promotion="immediate",
    )
    produce(settings, EVENTS[:2000])
    learner = learners(settings)
    wait_for(lambda: seen(settings) == 2000, 90, "the learner to learn the first 2,000 events")

    code, _out, err = cli(settings, "backup", "--to", s3)
    assert code == 0, err
    code, _out, err = cli(settings, "backup", "--to", s3)  # nothing new: nothing written
    assert code == 0 and "backed up 0 versions" in _out, err
    store = store_for(settings)
    last = store.last_backup()
    assert last is not None and last["written"] == "0" and int(last["newest"]) == store.stable_numbers()[-1]
    assert store.backup_age() < 60  # the monitor's livelearn_backup_age_seconds
    (entry,) = read_audit(store.client, store.keys, actions={"backup"})  # only the run that wrote versions
    assert int(entry.fields["written"]) == len(store.stable_numbers())

    produce(settings, EVENTS[2000:3500])
    wait_for(lambda: seen(settings) == 3500, 90, "the learner to learn 3,500 events")
    handed_out = store_for(settings).counter()
    admin.flushall()  # Redis loses everything while the learner runs

    out = learner.proc.communicate(timeout=120)[0].decode()
    assert learner.proc.returncode == 2 and "Redis lost its data" in out, out  # it refuses to start over
    produce(settings, EVENTS[3500:])

    restore = ["restore-from-backup", "--from", s3, "--bootstrap", settings.kafka_bootstrap]
    code, out, err = cli(settings, *restore, "--topic", settings.events_topic, "--dry-run")
    assert code == 0 and out.startswith("would restore version"), err
    assert store_for(settings).head() is None  # a dry run changes nothing
    code, out, err = cli(settings, *restore, "--topic", settings.events_topic)
    assert code == 0, err
    store = store_for(settings)
    restored = store.head()
    assert restored is not None and store.serving() == restored
    (entry,) = read_audit(store.client, store.keys, actions={"restore"})
    assert int(entry.fields["numbered_after"]) >= handed_out, entry.reason
    meta, state = store.load(restored)
    offset = meta.offsets[settings.events_topic]["0"]
    assert offset <= 2000  # the newest backed-up stable version

    learners(settings, "--until-caught-up").wait()

    store = store_for(settings)
    head = store.meta(store.head())
    new = [n for n in store.numbers() if n > restored]
    assert new and min(new) > handed_out  # no number of the lost store handed out again
    assert head.offsets[settings.events_topic] == {"0": len(EVENTS)}
    assert head.events_learned == meta.events_learned + len(EVENTS) - offset  # nothing twice, nothing lost
    model = OnlineModel.restore(ModelSpec(), state.model)
    for event in EVENTS[offset:]:
        x = contract_features(event)
        model.predict_proba_one(x)
        model.learn_one(x, event.label)
    expected = model.dump_state()
    _meta, final = store.load(head.number)
    assert final.model["weights"] == expected["weights"]
    assert final.model["intercept"] == expected["intercept"]
    assert final.model["scaler"] == expected["scaler"]


def test_a_restore_into_a_store_with_a_lineage_or_past_kafka_retention_is_refused_and_the_loss_can_be_accepted(
    private_redis, make_settings, learners, s3, cli
):
    from streaming.learner import recovery

    server, admin = private_redis
    settings = make_settings(redis_url=f"redis://{server.address}/0", snapshot_every_events=500, promotion="immediate")
    produce(settings, EVENTS[:1500])
    learners(settings, "--until-caught-up").wait()
    assert cli(settings, "backup", "--to", s3)[0] == 0
    restore = ["restore-from-backup", "--from", s3, "--bootstrap", settings.kafka_bootstrap]
    one_line_error(cli(settings, *restore), "has a lineage in this Redis already")

    admin.flushall()
    real = recovery.make_consumer
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recovery, "make_consumer", lambda kafka: RetentionAt(real(kafka), 1800))
        one_line_error(
            cli(settings, *restore),
            f"{settings.events_topic}[0] needs offset 1500, its log starts at 1800",
            "--accept-loss",
        )
        assert store_for(settings).numbers() == []  # nothing imported

        code, _out, err = cli(settings, *restore, "--accept-loss")
        assert code == 0, err
    store = store_for(settings)
    assert store.head() == max(store.numbers())
    (entry,) = read_audit(store.client, store.keys, actions={"restore"})
    assert "needs 1500, log starts at 1800" in entry.reason and "lost (accepted)" in entry.reason
