"""More than one guarded metric (``LIVELEARN_MONITOR_ALSO``) and rollbacks to before the change (issue 21, items 3-4).

At a 15 % base rate accuracy barely moves when half the purchases go unlabelled; precision and recall fall by half.
The defaults guard ``recall:drop=0.5`` and ``precision:drop=0.4`` beside accuracy (each relative to its own healthy
level). A confirmed breach of any rule rolls back to the newest stable version written at or before the breach's
change point: the start of the rolling window at the last sample where each breaching metric was within half the
margin its bound allows of its healthy level (the earliest of them).

Bounds stated here (the defaults; measured on the scenarios below, offline and with real processes): a loss of half
the positives, or of half of them among sessions with a page value, or one visitor type's labeller stuck at 0, is
rolled back within ``WITHIN`` = 3,000 events of its start (measured 1,000-2,500), the change point at most
``SLACK`` = 1,500 events before the start (measured 220-1,000) and never after it. Clean data — dataset order,
5 shuffles, cycled 3 times — orders no rollback (``tests/test_quiet_corruption.py`` replays them).
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from conftest import store_for
from test_control import IMMEDIATE, write
from test_incidents import EVENTS, position, run

from monitor.calibration import judge_samples
from monitor.judge import Action, Judge
from monitor.prequential import Threshold
from snapshotter.control import ControlPlane
from streaming.config import Settings, parse_metric_rule
from streaming.errors import ConfigError
from streaming.events import Event
from streaming.learner.offline import replay_samples

WITHIN, SLACK = 3000, 1500


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("recall", "write METRIC:drop=F"),
        ("recall:drop", "write METRIC:drop=F"),
        ("recal:drop=0.5", "unknown metric 'recal'"),
        ("recall:fall=0.5", "unknown rule 'fall'"),
        ("recall:drop=1", "drop must be a number above 0 and below 1"),
        ("recall:drop=0", "drop must be a number above 0"),
        ("recall:drop=nan", "drop must be a number"),
        ("recall:drop=-0.1", "drop must be a number"),
        ("log_loss:drop=11", "below 10"),
        ("recall:max=0.9", "recall is better higher"),
        ("log_loss:min=0.3", "log_loss is better lower"),
        ("precision:min=1.5", "min must be a number from 0 to 1"),
        ("log_loss:max=-1", "max must be a number from 0"),
        ("precision:min=inf", "min must be a number from 0 to 1"),
    ],
)
def test_a_wrong_rule_is_a_one_line_error_naming_it(text, needle):
    with pytest.raises(ValueError, match="monitor_also") as raised:
        parse_metric_rule(text)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_the_settings_refuse_a_repeated_metric_and_the_primary_one():
    for also, needle in (
        (["recall:drop=0.5", "recall:min=0.1"], "one rule per metric"),
        (["accuracy:drop=0.1"], "accuracy is monitor_metric"),
    ):
        with pytest.raises((ValueError, ConfigError), match=needle):
            Settings(monitor_also=also)
    assert Settings(monitor_metric="recall", monitor_threshold=0.2, monitor_also=["accuracy:min=0.7"]).guard.rules
    # guarding recall itself, the default rules are no error: the default recall rule is left out
    rules = Settings(monitor_metric="recall", monitor_threshold=0.2).guard.rules
    assert [rule.describe() for rule in rules] == ["precision:drop=0.4"]


def test_further_rules_learn_their_healthy_level_and_are_kept_with_the_version():
    settings = Settings(monitor_also=["recall:drop=0.5", "precision:min=0.3"], reference_min_events=300)
    rule = Threshold(settings)
    good = {"accuracy": 0.9, "recall": 0.4, "precision": 0.7, "samples": 1000}
    rule.observe(good)
    assert rule.limits() == {"precision": 0.3}  # the relative one waits for reference_min_events
    for _ in range(2):
        rule.observe(good)
    assert rule.limits() == {"recall": 0.2, "precision": 0.3}
    bad = {**good, "recall": 0.1, "precision": 0.2}
    assert set(rule.breaches(bad)) == {"recall", "precision"} and not rule.meets(bad)
    assert rule.breaches({**bad, "samples": 10}) == {}  # a short window is not judged
    rule.observe(bad)  # a breaching value does not drag its own level down
    assert rule.levels["recall"][0] == pytest.approx(0.4)
    copy = Threshold(settings)
    copy.load(rule.dump())
    assert copy.limits() == rule.limits() and copy.levels == rule.levels
    # a rule configured since starts afresh; one removed since is dropped; no rules: the document it always was
    changed = Threshold(Settings(monitor_also=["f1:drop=0.3"]))
    changed.load(rule.dump())
    assert changed.levels == {"f1": [None, 0]}
    assert Threshold(Settings(monitor_also=[])).dump() == {"reference": None, "events": 0}


def test_a_breach_of_any_rule_is_a_breach_and_a_frozen_model_resumes_only_when_all_are_healthy():
    settings = Settings(monitor_patience=2, monitor_min_samples=100, monitor_resume_after_events=200)
    judge = Judge(settings)
    fine = {"accuracy": 0.9, "samples": 500}
    low = {"recall": "recall 0.1000 below 0.2000 (recall:drop=0.5, healthy level 0.4000)"}
    assert judge.decide(fine, position=100, now=0, rollbacks=[], frozen=False, also=low).action is Action.WAIT
    decision = judge.decide(fine, position=200, now=0, rollbacks=[], frozen=False, also=low)
    assert decision.action is Action.ROLLBACK and "recall 0.1000 below 0.2000" in decision.reason
    frozen = {"rollbacks": [], "frozen": True, "now": 0}
    assert judge.decide(fine, position=300, also=low, **frozen).action is Action.NONE
    assert judge.decide(fine, position=400, **frozen).action is Action.NONE
    assert judge.decide(fine, position=500, also=low, **frozen).action is Action.NONE  # the healthy run restarts
    assert judge.decide(fine, position=600, **frozen).action is Action.NONE
    assert judge.decide(fine, position=800, **frozen).action is Action.RESUME


def test_the_change_point_is_the_window_start_at_the_breaching_metrics_last_sample_near_its_level():
    judge = Judge(Settings(monitor_patience=2, monitor_min_samples=100))
    sample = {"accuracy": 0.9, "samples": 1000}
    shortfalls = [0.0, -0.01, 0.02, -0.05, 0.01, 0.03, 0.04]  # the last without a shortfall: at 4,000
    for i, shortfall in enumerate(shortfalls):
        d = judge.decide(sample, position=1000 * (i + 1), now=0, rollbacks=[], frozen=False,
                         shortfalls={"recall": shortfall, "accuracy": -0.1})  # fmt: skip
        assert d.action is Action.NONE
    low = {"recall": "recall low"}
    judge.decide(sample, position=8000, now=0, rollbacks=[], frozen=False, also=low, shortfalls={"recall": 0.1})
    decision = judge.decide(sample, position=9000, now=0, rollbacks=[], frozen=False, also=low)
    assert decision.action is Action.ROLLBACK
    assert decision.change_point == 4000 - 1000  # not accuracy's (it never left its level): recall's window start
    assert "degradation after stream position 3000" in decision.reason
    # a restored judge (the monitors share it through Redis) remembers the same
    assert type(judge.state).from_dict(judge.state.to_dict()) == judge.state


def test_a_breaching_metric_never_near_its_level_since_the_reset_dates_the_change_to_the_first_window():
    judge = Judge(Settings(monitor_patience=1, monitor_min_samples=100))
    for i in range(1, 5):  # precision short of its level throughout; accuracy near it
        sample = {"accuracy": 0.9, "samples": 500, "scored": 1000 * i}
        judge.decide(sample, position=2000 * i, now=0, rollbacks=[], frozen=False,
                     shortfalls={"accuracy": -0.1, "precision": 0.05})  # fmt: skip
    sample = {"accuracy": 0.9, "samples": 500, "scored": 5000}
    low, short = {"precision": "precision low"}, {"accuracy": -0.1, "precision": 0.2}
    decision = judge.decide(sample, position=10_000, now=0, rollbacks=[], frozen=False, also=low, shortfalls=short)
    # positions run at two per scored event here: accuracy's last window began at scored 4,500, position 8,000 (the
    # sample that scored 4,000); precision was never near its level: the first judged window's start, scored 500 —
    # before any sample seen, so position 2,000 - 500 at the latest
    assert decision.action is Action.ROLLBACK and decision.change_point == 1500


def test_a_rollback_with_a_change_point_goes_to_the_newest_stable_version_at_or_before_it(make_settings):
    store = store_for(make_settings(**IMMEDIATE))
    control = ControlPlane(store)
    for at in (1000, 2000, 3000, 4000):
        write(store, True, position=at)  # versions 1..4, all stable
    write(store, False, position=5000)  # 5, the head
    assert control.rollback_target(store.head()) == 4
    assert control.rollback_target(store.head(), change_point=2500) == 2
    assert control.rollback_target(store.head(), change_point=3000) == 3
    assert control.rollback_target(store.head(), change_point=500) == 4  # none before it: the newest older one
    assert control.rollback_target(store.head(), 1, change_point=500) == 1  # ...or the fallback, if configured
    assert control.rollback(actor="monitor", reason="recall", change_point=2999, automatic=True) == 2
    assert store.stable_numbers() == [1, 2]  # the versions after it leave the stable set with their lineage


def _with_labels(events: list[Event], at: int, relabel) -> list[Event]:
    rng = random.Random(7)
    return [dataclasses.replace(e, label=relabel(e, rng)) if i >= at else e for i, e in enumerate(events)]


QUIET = {
    "half of the positives lost": lambda e, rng: bool(e.label) and rng.random() < 0.5,
    "half the positives with a page value lost": (
        lambda e, rng: False if e.features["PageValues"] > 0 and rng.random() < 0.5 else e.label
    ),
    "every new visitor's label 0": lambda e, _rng: False if e.features["VisitorType"] == "New_Visitor" else e.label,
}


def _monitor_decisions(events: list[Event], settings: Settings) -> list[tuple[int, Action, int | None, str]]:
    """The learner's samples (its own step, offline) judged as the monitor judges them; no incident acts here."""
    judged = judge_samples(replay_samples(events, settings), judge=Judge(settings), rule=Threshold(settings))
    return [(int(s["stream_position"]), d.action, d.change_point, d.reason) for s, d in judged]


CASES = [(name, at) for name in QUIET for at in (3000, 5050, 8020)]
# every new visitor labelled 0 from 8,020 moves neither metric enough (measured: recall at most 46 % below its level,
# precision 29 %; the rules allow 50 and 40): the label-odds rule watching VisitorType opens an incident at 8,400
# (replayed offline; tests/test_quiet_corruption.py runs that rule with real processes)
CASES.remove(("every new visitor's label 0", 8020))


@pytest.mark.parametrize(("name", "at"), CASES)
def test_quiet_damage_to_precision_or_recall_is_a_breach_whose_change_point_comes_before_it(name, at):
    settings = Settings(engine="compiled", incident_odds_threshold=0)  # the metric rules alone
    decided = _monitor_decisions(_with_labels(EVENTS, at, QUIET[name]), settings)
    assert not any(a is Action.ROLLBACK for p, a, _, _ in decided if p <= at)
    first = next((d for d in decided if d[1] is Action.ROLLBACK), None)
    assert first is not None, name
    where, _, change_point, reason = first
    assert at < where <= at + WITHIN, (where, at)
    assert change_point is not None and at - SLACK <= change_point <= at, (change_point, at)
    assert "recall" in reason or "precision" in reason


def _slow_drift(events: list[Event], at: int, span: int) -> list[Event]:
    """Labels flipped with a probability rising from 0 at ``at`` to 0.5 ``span`` events later."""
    rng = random.Random(1)
    flip = [rng.random() < min(0.5, 0.5 * (i - at) / span) if i >= at else False for i in range(len(events))]
    return [dataclasses.replace(e, label=not e.label) if f else e for e, f in zip(events, flip, strict=True)]


METRIC_RULES_ONLY = {
    "incident_label_rate_bound": 1.0,
    "incident_prediction_rate_bound": 1.0,
    "incident_label_run_probability": 0,
    "incident_odds_threshold": 0,
}
REAL = {
    # name: (events, where the damage starts, the most the change point may come after it: a ramp from 0 is
    # measurable only some way in — measured 100-600 events offline)
    "half of the positives lost": (lambda: _with_labels(EVENTS, 5050, QUIET["half of the positives lost"]), 5050, 0),
    "a slow drift": (lambda: _slow_drift(EVENTS, 4321, 6000), 4321, 1000),
}


@pytest.mark.first_lane  # the guard's rules: the other client and engine give the same samples (tested elsewhere)
@pytest.mark.parametrize("name", list(REAL))
def test_a_metric_breach_is_rolled_back_to_before_its_change_point_with_real_processes(make_settings, learners, name):
    events, at, late = REAL[name]
    # the metric rule alone: with the learner's incident rules on, one opened on a backlog before the monitor judged
    # the breach would move the epoch under it (the monitor then skips that lineage's samples)
    outcome = run(make_settings, learners, events(), **METRIC_RULES_ONLY)
    rollbacks = [e for e in outcome.actions("rollback") if e.actor == "monitor"]
    assert rollbacks, [
        (e.action, e.actor, position(e)) for e in outcome.audit if e.action in ("rollback", "incident_start")
    ]
    first = rollbacks[0]
    assert at < position(first) <= at + WITHIN
    change_point = int(first.metrics["change_point"])
    assert at - SLACK <= change_point <= at + late
    target = outcome.store.meta(first.to_version)
    # the newest stable version from before the change point (versions every 250 events, confirmed when the data
    # after them was calm: the ones up to the change point were, long before the breach)
    assert change_point - 500 < target.position <= change_point, (target.position, change_point)
    assert first.to_version in outcome.store.stable_numbers()
    assert f"degradation after stream position {change_point}" in first.reason
