"""Redis loses every version (FLUSHALL) and a learner starts over with ``--allow-empty-store``: new version numbers
go on above every number the lost store handed out when Kafka recorded them (the last predictions or dead letters;
this broker, Tansu, keeps no commit metadata), and when it recorded none the learner says the numbers may repeat
those of the lost store, in its log and in the audit stream. Real broker, a redis-server of each test's own."""

from __future__ import annotations

import pytest
import redis
from conftest import produce, store_for

from snapshotter.audit import read_audit
from streaming.config import Settings
from streaming.local.dataset import read_events
from streaming.local.embedded import EmbeddedServer

EVENTS = list(read_events(limit=3000))
GARBAGE = b"\xc1\xff not an event"


def lost_store_settings(make_settings, server: EmbeddedServer, **overrides) -> Settings:
    return make_settings(redis_url=f"redis://{server.address}/0", snapshot_every_events=500, **overrides)


def learn_then_lose_redis(settings: Settings, admin: redis.Redis, learners, stream: list) -> int:
    """Learn ``stream`` to its end, then lose every version (as a Redis restarted without persistence); returns the
    last version number the lost store had handed out."""
    produce(settings, stream)
    learners(settings, "--until-caught-up").wait()
    store = store_for(settings)
    handed_out = int(store.client.get(store.keys.counter))
    assert handed_out >= 6 and store.numbers()[-1] == handed_out
    admin.flushall()
    return handed_out


def store_lost_entries(settings: Settings):
    store = store_for(settings)
    return read_audit(store.client, store.keys, actions={"store_lost"})


@pytest.mark.parametrize("recorded_by", ["predictions", "dead-letters"])
def test_after_redis_lost_its_data_new_version_numbers_go_on_above_every_old_one(
    private_redis, make_settings, learners, recorded_by
):
    server, admin = private_redis
    if recorded_by == "predictions":
        settings = lost_store_settings(make_settings, server)
        stream: list = list(EVENTS)
    else:  # no predictions: the dead letters' version header is what Kafka remembers
        settings = lost_store_settings(make_settings, server, publish_predictions=False)
        stream = [item for event in EVENTS for item in (event, GARBAGE)]
    handed_out = learn_then_lose_redis(settings, admin, learners, stream)

    produce(settings, EVENTS[:500])
    out = learners(settings, "--until-caught-up", "--allow-empty-store").wait()

    store = store_for(settings)
    assert store.numbers(), "the learner wrote no version"
    assert min(store.numbers()) > handed_out  # not one number of the lost store reused
    (entry,) = store_lost_entries(settings)
    # Tansu keeps no commit metadata: the outputs' numbers plus a margin, which a long stretch without output (found
    # by a review: duplicates) could exceed — said so (may_repeat), not claimed exact
    assert entry.fields["may_repeat"] == "1" and "no commit metadata named a version" in entry.reason
    assert int(entry.fields["numbered_after"]) >= handed_out
    assert f"last {recorded_by.replace('-', ' ')}: version" in entry.fields["recorded"]
    assert "Redis lost its data" in out
    assert "numbered after" in out


def test_when_kafka_recorded_no_version_number_the_learner_warns_and_audits_that_numbers_may_repeat(
    private_redis, make_settings, learners
):
    server, admin = private_redis
    settings = lost_store_settings(make_settings, server, publish_predictions=False)  # and no dead letters
    learn_then_lose_redis(settings, admin, learners, list(EVENTS))

    out = learners(settings, "--until-caught-up", "--allow-empty-store").wait()

    (entry,) = store_lost_entries(settings)
    assert entry.fields["may_repeat"] == "1"
    assert "may repeat those of the lost store" in entry.reason
    assert entry.fields["recorded"] == "commit metadata: none; last predictions: none; last dead letters: none"
    assert "may repeat those of the lost store" in out
    assert store_for(settings).numbers()  # started anyway, as allowed
