"""Promotion of a challenger with real processes: an operator's command and the ``auto`` policy, across a SIGKILL.

Stated equality: whatever the promotions and restarts, the head's champion is a plain river loop at the promoted
arm's rate over every event, and each challenger (and the former champion, in its cool-down) a plain loop at its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import produce, settings_env, status_of, store_for, wait_for
from reference import contract_features, plain_river_pipeline, river_state

from snapshotter.audit import read_audit
from snapshotter.challengers import ArmControl
from streaming.local.dataset import read_events

pytestmark = pytest.mark.integration


def plain(events, lr: float) -> dict:
    model = plain_river_pipeline(lr)
    for event in events:
        model.learn_one(contract_features(event), event.label)
    return river_state(model)


def learned(doc: dict) -> dict:
    """A stored model's weights, intercept and scaler, as :func:`river_state` has them."""
    return {"weights": doc["weights"], "intercept": doc["intercept"], "scaler": doc["scaler"]}


def at_end(settings, count: int) -> dict:
    return wait_for(
        lambda: s if (s := status_of(settings) or {}).get("stream_position") == count else None,
        180,
        "the learner to read every event",
    )


def test_an_operators_promotion_survives_a_sigkill_and_the_champion_is_the_promoted_arms_loop(make_settings, learners):
    settings = make_settings(
        challengers=["fast:lr=0.05", "twin"], snapshot_every_events=500, status_interval_seconds=0.1
    )
    events = list(read_events(limit=6000))
    produce(settings, events[:3000])
    first = learners(settings)
    at_end(settings, 3000)
    store = store_for(settings)
    ArmControl(store).promote("fast", actor="alice", reason="try the faster rate", current="base")
    promoted = wait_for(
        lambda: next((m for m in store.list() if m.extra.get("promotion")), None), 60, "the promotion's version"
    )
    assert promoted.extra["arm"] == "fast" and promoted.extra["promotion"]["from"] == "base"
    assert promoted.spec["learning_rate"] == 0.05 and set(promoted.extra["arms"]) == {"twin", "base"}
    first.kill()  # the next learner restores the promoted champion with its own spec, not the settings' lr 0.01
    produce(settings, events[3000:])
    last = learners(settings)
    at_end(settings, len(events))
    last.terminate()
    head = store.meta(store.head())
    assert head.extra["arm"] == "fast" and head.spec["learning_rate"] == 0.05
    _meta, state = store.load(head.number)
    assert learned(state.model) == plain(events, 0.05)  # every event once, at lr 0.05 from the first
    assert learned(state.arms["twin"]["model"]) == plain(events, 0.01)
    assert learned(state.arms["base"]["model"]) == plain(events, 0.01)  # the former champion, cooling down
    assert state.arms["base"]["retire_after"] == settings.challenger_cooldown_labels
    entries = [e for e in read_audit(store.client, store.keys) if e.action == "promote_arm"]
    assert [(e.actor, e.fields["from"], e.fields["to"]) for e in entries] == [("alice", "base", "fast")]


def test_the_auto_policy_promotes_a_better_rate_whose_verdict_lasts_and_never_a_worse_one_or_a_twin(
    make_settings, learners
):
    settings = make_settings(
        challengers=["lr02:lr=0.02", "slow:lr=0.003", "twin"],
        challenger_policy="auto",
        compare_min_labels=1000,
        compare_confirm_labels=2000,
        status_interval_seconds=0.1,
    )
    events = list(read_events())
    produce(settings, events)
    learner = learners(settings)
    at_end(settings, len(events))
    learner.terminate()
    store = store_for(settings)
    entries = [e for e in read_audit(store.client, store.keys) if e.action == "promote_arm"]
    # first the better rate; never the worse one. (The twin is the champion's twin only until then: once lr 0.02
    # serves, "twin" is the settings' lr 0.01 model, and when lr 0.02's lead fades it may win its way back.)
    assert entries and (entries[0].actor, entries[0].fields["to"]) == ("learner (auto)", "lr02")
    assert "slow" not in {e.fields["to"] for e in entries}
    promoted = next(m for m in store.list() if m.extra.get("promotion"))
    labels = promoted.events_learned
    # the verdict said promote from about 1,000 labels and had to hold 2,000 more; within the power curve's 80 % for
    # a 5 % gain (5,488 labels, bench/compare.py) plus the confirmation
    assert 3000 <= labels <= 5488 + 2000, labels
    head = store.meta(store.head())
    _meta, state = store.load(head.number)
    assert head.extra["arm"] == entries[-1].fields["to"]
    # every arm learned every event from the first, whichever served when: the champion is its arm's plain loop
    rates = {"lr02": 0.02, "slow": 0.003, "twin": 0.01, "base": 0.01}
    assert learned(state.model) == plain(events, rates[head.extra["arm"]])
    for name, arm in state.arms.items():
        assert learned(arm["model"]) == plain(events, rates[name]), name


def livelearn(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_challengers_declared_at_run_time_and_an_operators_promotion_checks_the_verdict(make_settings, learners):
    settings = make_settings(status_interval_seconds=0.1, compare_min_labels=100_000)
    events = list(read_events(limit=3000))
    produce(settings, events[:1500])
    learner = learners(settings)
    at_end(settings, 1500)
    added = livelearn(settings, "challengers", "add", "fast:lr=0.05", "--reason", "try a faster rate")
    assert added.returncode == 0, added.stderr
    wait_for(lambda: "fast" in ((status_of(settings) or {}).get("arms") or {}), 30, "the learner to start fast")
    store = store_for(settings)
    base = store.meta(store.head())  # a version (a rebuild's branch head, say) a challenger starts from
    branch = f"branch:start=version:{base.number}"
    added = livelearn(settings, "challengers", "add", branch, "--reason", "the branch head, live in shadow")
    assert added.returncode == 0, added.stderr
    wait_for(lambda: "branch" in ((status_of(settings) or {}).get("arms") or {}), 30, "the learner to start branch")
    produce(settings, events[1500:])
    status = at_end(settings, len(events))
    learned_by_fast = status["arms"]["fast"]["learned"]
    assert 0 < learned_by_fast <= 1500
    # still undecided (min labels 100,000): promoting it needs --force, and the refusal is one line
    refused = livelearn(settings, "challengers", "promote", "fast", "--reason", "impatient")
    assert refused.returncode != 0 and "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    for args, says in (
        (("add", "bad:lr=x", "--reason", "typo"), "lr must be a number"),
        (("remove", "nosuch", "--reason", "typo"), "no challenger nosuch"),
        (("promote", "nosuch", "--reason", "typo"), "no arm 'nosuch'"),
        (("add", "x:start=version:9999", "--reason", "typo"), "version 9999 is not stored"),
        (("add", f"x:exclude=Month,start=version:{base.number}", "--reason", "typo"), "as the version's"),
    ):
        wrong = livelearn(settings, "challengers", *args)
        assert wrong.returncode != 0 and says in wrong.stderr, (args, wrong.stderr)
    wait_for(lambda: store.meta(store.head()).extra.get("arms", {}).get("branch"), 30, "a version holding branch")
    learner.terminate()
    _meta, state = store.load(store.head())
    # it learned the events after it started, each before learning it, as a plain loop over them would
    assert learned(state.arms["fast"]["model"]) == plain(events[len(events) - state.arms["fast"]["learned"] :], 0.05)
    # the branch head's challenger: the version's events, then the ones it learned itself, as one plain loop
    assert 0 < state.arms["branch"]["learned"] <= 1500 and 0 < base.model_events_learned <= 1500
    after = events[len(events) - state.arms["branch"]["learned"] :]
    assert state.arms["branch"]["started"] == {"from": "version", "version": base.number}
    assert learned(state.arms["branch"]["model"]) == plain(events[: base.model_events_learned] + after, 0.01)
    removed = livelearn(settings, "challengers", "remove", "fast", "--reason", "seen enough")
    assert removed.returncode == 0, removed.stderr
    reset = livelearn(settings, "challengers", "reset", "--reason", "back to the settings")
    assert reset.returncode == 0, reset.stderr
    actions = [e.action for e in read_audit(store.client, store.keys)]
    assert [a for a in actions if a.startswith("challenger")] == [
        "challenger_add",
        "challenger_add",
        "challenger_remove",
        "challengers_reset",
    ]


def serving_holds(settings, arm: str) -> bool:
    store = store_for(settings)
    serving = store.serving()
    return serving is not None and arm in (store.meta(serving).extra.get("arms") or {})


@pytest.mark.parametrize(
    ("challenger", "outcome"),
    [("lr02:lr=0.02", "promoted"), ("slow:lr=0.003", "aborted")],
)
def test_the_auto_policy_walks_a_canary_through_its_steps_or_aborts_it(make_settings, learners, challenger, outcome):
    """A canary an operator starts at 5 %: the auto policy takes each next step once the verdict held promote for
    compare_confirm_labels labels since the step began, and promotes at the last; a worse challenger's canary is
    aborted at once. Never a promotion past a running canary."""
    from snapshotter.control import ControlPlane

    name = challenger.split(":")[0]
    settings = make_settings(
        challengers=[challenger],
        challenger_policy="auto",
        compare_min_labels=500,
        compare_confirm_labels=300,
        status_interval_seconds=0.1,
    )
    events = list(read_events())
    produce(settings, events[:800])
    learner = learners(settings)
    wait_for(lambda: serving_holds(settings, name), 60, f"a serving version holding {name}")
    store = store_for(settings)
    ControlPlane(store).set_canary(name, 5, actor="alice", reason="5 % of the visitors first")
    produce(settings, events[800:], rate=2500)  # a live pace: the policy acts between batches, twice a second
    at_end(settings, len(events))
    learner.terminate()
    moves = [
        (e.action, e.actor, e.fields.get("percent") or e.fields.get("to"))
        for e in read_audit(store.client, store.keys)
        if e.action in ("canary", "canary_abort", "promote_arm")
    ]
    assert moves[0] == ("canary", "alice", "5")
    if outcome == "promoted":
        assert moves[1:5] == [
            ("canary", "learner (auto)", "25"),
            ("canary", "learner (auto)", "50"),
            ("canary", "learner (auto)", "100"),
            ("promote_arm", "learner (auto)", name),
        ], moves
        # later, lr 0.02's early lead fades and the former champion (learning on in shadow) may win back: a
        # promotion by the same rule, no canary any more
        assert all(action == "promote_arm" for action, _actor, _to in moves[5:]), moves
    else:
        assert moves[1:] == [("canary_abort", "learner (auto)", "0")], moves
        assert store.meta(store.head()).extra.get("arm", "base") == "base"
