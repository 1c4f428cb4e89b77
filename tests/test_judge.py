"""The monitor's decision rule against a fake clock."""

from __future__ import annotations

from monitor.judge import Judge
from streaming.config import Settings

BAD, GOOD = {"accuracy": 0.6, "samples": 500}, {"accuracy": 0.9, "samples": 500}


def judge(**overrides) -> Judge:
    defaults = {
        "monitor_patience": 3,
        "monitor_min_samples": 100,
        "monitor_cooldown_seconds": 10,
        "monitor_max_rollbacks": 2,
        "monitor_resume_after_seconds": 5,
    }
    return Judge(Settings(**{**defaults, **overrides}))


def test_patience_counts_consecutive_breaches_only():
    j = judge()
    actions = [
        j.decide(r, now=t, rollback_times=[], frozen=False).action
        for t, r in enumerate([BAD, BAD, GOOD, BAD, BAD, BAD])
    ]
    assert actions == ["wait", "wait", "none", "wait", "wait", "rollback"]


def test_no_judgement_without_enough_samples():
    j = judge()
    assert j.decide({"accuracy": 0.1, "samples": 99}, now=0, rollback_times=[], frozen=False).action == "insufficient"


def test_cooldown_doubles_with_each_recent_rollback_then_freeze():
    j = judge(monitor_patience=1, monitor_max_rollbacks=3)
    assert j.cooldown_until([100.0]) == 110.0
    assert j.cooldown_until([100.0, 105.0]) == 125.0
    assert j.decide(BAD, now=104, rollback_times=[100.0], frozen=False).action == "cooldown"
    assert j.decide(BAD, now=111, rollback_times=[100.0], frozen=False).action == "rollback"
    assert j.decide(BAD, now=124, rollback_times=[100.0, 105.0], frozen=False).action == "cooldown"
    assert j.decide(BAD, now=126, rollback_times=[100.0, 105.0], frozen=False).action == "rollback"
    assert j.decide(BAD, now=500, rollback_times=[100.0, 105.0, 130.0], frozen=False).action == "freeze"


def test_frozen_model_resumes_after_being_healthy_long_enough():
    j = judge()
    assert j.decide(GOOD, now=0, rollback_times=[], frozen=True).action == "none"
    assert j.decide(BAD, now=3, rollback_times=[], frozen=True).action == "none"  # the clock restarts
    assert j.decide(GOOD, now=4, rollback_times=[], frozen=True).action == "none"
    assert j.decide(GOOD, now=8.9, rollback_times=[], frozen=True).action == "none"
    assert j.decide(GOOD, now=9, rollback_times=[], frozen=True).action == "resume"


def test_lower_is_better_metrics():
    j = judge(monitor_metric="log_loss", monitor_threshold=0.4, monitor_patience=1)
    assert j.decide({"log_loss": 0.3, "samples": 500}, now=0, rollback_times=[], frozen=False).action == "none"
    assert j.decide({"log_loss": 0.5, "samples": 500}, now=1, rollback_times=[], frozen=False).action == "rollback"
