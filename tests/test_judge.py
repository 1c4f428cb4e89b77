"""The monitor's decision rule, counted in events (seconds only as an optional extra bound)."""

from __future__ import annotations

from monitor.judge import Action, Judge
from streaming.config import Settings

BAD, GOOD = {"accuracy": 0.6, "samples": 500}, {"accuracy": 0.9, "samples": 500}


def judge(**overrides) -> Judge:
    defaults = {
        "monitor_patience": 3,
        "monitor_min_samples": 100,
        "monitor_cooldown_events": 1000,
        "monitor_max_rollbacks": 2,
        "monitor_resume_after_events": 500,
    }
    return Judge(Settings(**{**defaults, **overrides}))


def decide(j: Judge, sample: dict, position: int, *, rollbacks=(), frozen=False, now: float = 0.0):
    return j.decide(sample, position=position, now=now, rollbacks=list(rollbacks), frozen=frozen)


def test_patience_counts_consecutive_breaches_only():
    j = judge()
    samples = [BAD, BAD, GOOD, BAD, BAD, BAD]
    actions = [decide(j, s, 100 * (i + 1)).action for i, s in enumerate(samples)]
    assert actions == ["wait", "wait", "none", "wait", "wait", "rollback"]


def test_no_judgement_without_enough_samples():
    j = judge()
    assert decide(j, {"accuracy": 0.1, "samples": 99}, 100).action is Action.INSUFFICIENT


def test_cooldown_doubles_in_events_and_a_suppressed_breach_is_reported_once():
    j = judge(monitor_patience=1, monitor_max_rollbacks=3)
    one = [(10_000, 0.0)]
    first = decide(j, BAD, 10_400, rollbacks=one)
    assert first.action is Action.COOLDOWN and first.notify  # report the first suppressed breach...
    again = decide(j, BAD, 10_500, rollbacks=one)
    assert again.action is Action.COOLDOWN and not again.notify  # ...not every one of the same cooldown
    assert decide(j, BAD, 11_000, rollbacks=one).action is Action.ROLLBACK  # it persists past the cooldown
    two = [(10_000, 0.0), (11_000, 0.0)]
    assert decide(j, BAD, 12_999, rollbacks=two).action is Action.COOLDOWN  # 1,000 x 2 after the second
    assert decide(j, BAD, 13_000, rollbacks=two).action is Action.ROLLBACK
    three = [*two, (13_000, 0.0)]
    assert decide(j, BAD, 20_000, rollbacks=three).action is Action.FREEZE


def test_the_flap_window_counts_events_and_seconds_are_an_extra_bound():
    j = judge(monitor_patience=1, monitor_max_rollbacks=2, monitor_rollback_window_events=5000)
    old = [(1000, 0.0), (3000, 0.0)]
    assert decide(j, BAD, 7000, rollbacks=old).action is Action.ROLLBACK  # the first one left the window
    assert decide(j, BAD, 7000, rollbacks=[(3000, 0.0), (4000, 0.0)]).action is Action.FREEZE
    timed = judge(monitor_patience=1, monitor_cooldown_events=0, monitor_cooldown_seconds=10)
    assert decide(timed, BAD, 5000, rollbacks=[(4000, 100.0)], now=105.0).action is Action.COOLDOWN
    assert decide(timed, BAD, 5100, rollbacks=[(4000, 100.0)], now=111.0).action is Action.ROLLBACK


def test_frozen_model_resumes_after_being_healthy_for_enough_events():
    j = judge()
    assert decide(j, GOOD, 1000, frozen=True).action is Action.NONE
    assert decide(j, BAD, 1100, frozen=True).action is Action.NONE  # the count restarts
    assert decide(j, GOOD, 1200, frozen=True).action is Action.NONE
    assert decide(j, GOOD, 1699, frozen=True).action is Action.NONE
    assert decide(j, GOOD, 1700, frozen=True).action is Action.RESUME


def test_lower_is_better_metrics_and_an_explicit_threshold():
    j = judge(monitor_metric="log_loss", monitor_threshold=0.4, monitor_patience=1)
    assert decide(j, {"log_loss": 0.3, "samples": 500}, 100).action is Action.NONE
    assert decide(j, {"log_loss": 0.5, "samples": 500}, 200).action is Action.ROLLBACK
    relative = judge(monitor_patience=1)
    assert relative.decide(GOOD, position=100, now=0, rollbacks=[], frozen=False, threshold=0.95).action is (
        Action.ROLLBACK
    )


def test_a_declared_new_normal_gives_the_model_a_cooldown_to_learn_it_and_is_not_a_rollback():
    j = judge(monitor_patience=1, monitor_max_rollbacks=1)
    learning = j.decide(BAD, position=5500, now=0.0, rollbacks=[], frozen=False, settled=5000)
    assert learning.action is Action.COOLDOWN and learning.notify  # reported once, not acted on
    assert "new normal declared at stream position 5000" in learning.reason
    # after the cooldown a breach acts; and the declaration never counts towards a freeze
    assert j.decide(BAD, position=6000, now=0.0, rollbacks=[], frozen=False, settled=5000).action is Action.ROLLBACK
    # a rollback after the declaration is the newer anchor: its own cooldown applies, the declaration's not again
    after = j.decide(BAD, position=5400, now=0.0, rollbacks=[(5200, 0.0)], frozen=False, settled=5000)
    assert after.action is Action.COOLDOWN and "cooling down" in after.reason
