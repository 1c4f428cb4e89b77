"""A burst that ends between two metric samples: its newest version is confirmed once the learner is caught up.

Promotion ``guard`` (the default): a version is served once the data up to it is seen calm. With versions by
count only, the burst's last version falls between samples; no sample comes until new data does. The learner,
caught up, judges the block so far by the partial-block rule, so the version is served without waiting for
an event that may never come (it stayed a candidate before). The final version of a catch-up run, written
between two samples as it stops, is judged the same way.
"""

from __future__ import annotations

from conftest import produce, status_of, store_for, wait_for

from streaming.local.dataset import read_events

N = 1250  # versions at 250, 500, ..., 1250; metric samples every 100 labelled events: 1250 lies between two


def test_the_last_version_of_a_burst_between_samples_is_served_once_caught_up(make_settings, learners):
    settings = make_settings(snapshot_every_events=250, snapshot_every_seconds=3600, status_interval_seconds=0.2)
    assert settings.promotion == "guard" and settings.promotion_partial_blocks
    assert settings.history_every_events == 100
    assert produce(settings, read_events(limit=N)) == N
    learner = learners(settings)
    store = store_for(settings)
    wait_for(lambda: (status_of(settings) or {}).get("lag") == 0, 120, "the learner to catch up")
    newest = wait_for(
        lambda: next((m for m in store.list() if m.events_seen == N), None), 60, "the version at the burst's end"
    )
    assert newest.number == N // 250
    wait_for(lambda: store.serving() == newest.number, 30, f"version {newest.number} to be served")
    assert store.candidates() == {}
    assert "confirmed stable: the data up to stream position 1250 was calm" in learner.terminate()


def test_the_final_version_of_a_catch_up_run_is_served_when_the_data_is_calm(make_settings, learners):
    """`learn --until-caught-up` stops between two samples: its final version is judged on the block so far."""
    settings = make_settings(snapshot_every_events=250, snapshot_every_seconds=3600)
    n = 1230  # versions at 250 ... 1000 by count, the final one at 1230; samples at 1100 and 1200
    assert produce(settings, read_events(limit=n)) == n
    output = learners(settings, "--until-caught-up").wait()
    store = store_for(settings)
    head = store.head()
    assert head is not None and store.meta(head).events_seen == n, output
    assert store.serving() == head, output
    assert store.candidates() == {}
