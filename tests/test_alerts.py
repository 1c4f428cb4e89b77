"""The chart's alert rules and Grafana dashboard, checked by promtool (Debian package ``prometheus``;
``scripts/test`` installs it): ``promtool check rules`` on the rendered PrometheusRule, ``promtool test rules``
making each alert fire and stay quiet, every dashboard query parsed by promtool, and every metric they read one
the README's metric table lists (``tests/test_api.py`` holds that table to what the processes expose).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import (
    NAMESPACE,
    dashboard,
    documented_metrics,
    example_values,
    metric_names,
    rule_groups,
)

#: The production example with its alert labels; its model is "shop" in namespace "shop".
VALUES = example_values("production")
SELECTOR = f'model="shop",namespace="{NAMESPACE}"'
ALERT_LABELS = {"team": "ml"}
#: Dashboard template variables replaced by concrete values so that promtool can parse each query.
DASHBOARD_VARIABLES = {"$model": "shop", "$namespace": NAMESPACE, "$metric": "accuracy", "$__rate_interval": "2m"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: scripts/test installs it (apt-get install prometheus) when run as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups(VALUES) for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    board = dashboard(VALUES)
    expressions = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    expressions += [a["expr"] for a in board["annotations"]["list"]]
    return expressions


def concrete(expression: str) -> str:
    for variable, value in DASHBOARD_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"a dashboard variable without a test value in {expression}"
    return expression


# --- names ------------------------------------------------------------------------------------------------------


def test_every_metric_in_alerts_and_dashboard_is_in_the_readme_table():
    documented = documented_metrics()
    assert {"livelearn_lease_held", "livelearn_serving_request_seconds_bucket"} <= documented
    used = set()
    for expression in [r["expr"] for r in all_rules()] + dashboard_expressions():
        used |= metric_names(expression)
    assert len(used) >= 20
    assert used - documented == set(), "alerts or dashboard read metrics no process exposes"


def test_the_alerts_the_issue_asks_for_exist():
    names = {r["alert"] for r in all_rules()}
    assert names >= {
        "LivelearnRollback",
        "LivelearnLearningFrozen",
        "LivelearnNoActiveLearner",
        "LivelearnSnapshotStale",
        "LivelearnConsumerLagGrowing",
        "LivelearnServingNotFollowing",
    }


def test_dashboard_shows_what_operators_need():
    board = dashboard(VALUES)
    queries = " ".join(dashboard_expressions())
    for metric in (
        "livelearn_events_consumed_total",  # events/s
        "livelearn_rolling_metric_ratio",  # the rolling metric ...
        "livelearn_threshold_ratio",  # ... against the threshold
        "livelearn_learner_head_version",
        "livelearn_serving_version",
        "livelearn_pinned",
        "livelearn_consumer_lag_events",
        "livelearn_snapshot_age_seconds",
        "livelearn_snapshot_size_bytes",
        "livelearn_serving_request_seconds_bucket",  # latency
        "livelearn_serving_predictions_total",  # rate
    ):
        assert metric in queries, metric
    assert "livelearn_rollbacks_total" in board["annotations"]["list"][0]["expr"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


# --- promtool -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", ["default", "production"])
def test_promtool_accepts_the_rules(value_set, tmp_path):
    values = example_values(value_set)
    values.setdefault("metrics", {})["prometheusRule"] = {
        **values.get("metrics", {}).get("prometheusRule", {}),
        "enabled": True,
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(values)}))
    result = run_promtool("check", "rules", path)
    assert "SUCCESS: 7 rules found" in result.stdout + result.stderr


def test_promtool_parses_every_dashboard_query(tmp_path):
    rules = [
        {"record": f"livelearn_dashboard:query_{n}", "expr": concrete(expression)}
        for n, expression in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", path)
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    label_text = ",".join([SELECTOR, *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{name}{{{label_text}}}", "values": values}


def learner_series(instance: str, lease: str, **extra: str) -> list[dict[str, str]]:
    """One learner target: its lease gauge and any other series of it (name → values)."""
    out = [series("livelearn_lease_held", lease, instance=instance)]
    out += [series(name, values, instance=instance) for name, values in extra.items()]
    return out


def fires(alert: str, at: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": {"severity": _severity(alert), **ALERT_LABELS, **labels}}],
    }


def quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _severity(alert: str) -> str:
    (rule,) = (r for r in all_rules() if r.get("alert") == alert)
    return str(rule["labels"]["severity"])


def sawtooth(low: int, high: int, step: int, count: int) -> str:
    """A gauge going up from ``low`` by ``step`` a minute and back to ``low`` above ``high`` (snapshot age)."""
    values, value = [], low
    for _ in range(count):
        values.append(str(value))
        value = low if value + step > high else value + step
    return " ".join(values)


#: (name, input series, assertions): each alert once firing and once quiet in a situation that looks close.
CASES: list[tuple[str, list[dict[str, str]], list[dict[str, Any]]]] = [
    (
        "rollback fires, then clears after the window",
        [
            series("livelearn_rollbacks_total", "0x10 1x60", instance="m1"),
            series("livelearn_rollbacks_total", "0x70", instance="m2"),
        ],
        [fires("LivelearnRollback", "15m"), quiet("LivelearnRollback", "9m"), quiet("LivelearnRollback", "60m")],
    ),
    (
        "a monitor restart (counter reset) is no rollback",
        [series("livelearn_rollbacks_total", "2x10 0x30", instance="m1")],
        [quiet("LivelearnRollback", "20m")],
    ),
    (
        "frozen for longer than 5 minutes fires; a short incident hold does not",
        [
            series("livelearn_learning_frozen", "0x5 1x20", instance="m1"),
            series("livelearn_learning_frozen", "0x25", instance="m2"),
        ],
        [fires("LivelearnLearningFrozen", "15m"), quiet("LivelearnLearningFrozen", "8m")],
    ),
    (
        "a short freeze stays quiet",
        [series("livelearn_learning_frozen", "0x5 1x3 0x20", instance="m1")],
        [quiet("LivelearnLearningFrozen", "12m")],
    ),
    (
        "operator needed",
        [series("livelearn_alert", "0x5 1x10", instance="m1")],
        [fires("LivelearnOperatorNeeded", "10m"), quiet("LivelearnOperatorNeeded", "5m")],
    ),
    (
        "no learner holds the lease",
        learner_series("l1", "1x5 0x20") + learner_series("l2", "0x25"),
        [fires("LivelearnNoActiveLearner", "15m"), quiet("LivelearnNoActiveLearner", "5m")],
    ),
    (
        "a takeover (one minute without a holder) stays quiet",
        learner_series("l1", "1x5 0x20") + learner_series("l2", "0x6 1x20"),
        [quiet("LivelearnNoActiveLearner", "7m"), quiet("LivelearnNoActiveLearner", "20m")],
    ),
    (
        "no learner scraped at all",
        [series("livelearn_rollbacks_total", "0x20", instance="m1")],
        [fires("LivelearnNoActiveLearner", "10m", model="shop", namespace=NAMESPACE)],
    ),
    (
        "the active learner's snapshot ages while events flow",
        learner_series(
            "l1",
            "1x40",
            livelearn_snapshot_age_seconds="0+60x40",
            livelearn_events_consumed_total="0+600x40",
        )
        + learner_series("l2", "0x40", livelearn_snapshot_age_seconds="0x40"),
        [fires("LivelearnSnapshotStale", "15m"), quiet("LivelearnSnapshotStale", "4m")],
    ),
    (
        "snapshots on time, an old standby age, and an idle stream stay quiet",
        learner_series(
            "l1",
            "1x40",
            livelearn_snapshot_age_seconds=sawtooth(0, 120, 60, 41),
            livelearn_events_consumed_total="0+600x40",
        )
        + learner_series("l2", "0x40", livelearn_snapshot_age_seconds="0+60x40"),
        [quiet("LivelearnSnapshotStale", "30m")],
    ),
    (
        "no events: an old snapshot is expected",
        learner_series(
            "l1", "1x40", livelearn_snapshot_age_seconds="0+60x40", livelearn_events_consumed_total="500x40"
        ),
        [quiet("LivelearnSnapshotStale", "30m")],
    ),
    (
        "lag grows on the active learner",
        learner_series("l1", "1x60", livelearn_consumer_lag_events="0+1000x60")
        + learner_series("l2", "0x60", livelearn_consumer_lag_events="0x60"),
        [fires("LivelearnConsumerLagGrowing", "40m"), quiet("LivelearnConsumerLagGrowing", "12m")],
    ),
    (
        "a large lag shrinking, a small lag growing, a standby's lag: quiet",
        learner_series("l1", "1x60", livelearn_consumer_lag_events="100000-1000x60")
        + learner_series("l2", "0x60", livelearn_consumer_lag_events="0+5000x60"),
        [quiet("LivelearnConsumerLagGrowing", "40m")],
    ),
    (
        "a small lag growing stays quiet",
        learner_series("l1", "1x60", livelearn_consumer_lag_events="0+10x60"),
        [quiet("LivelearnConsumerLagGrowing", "40m")],
    ),
    (
        "a serve worker stays on another version while unpinned",
        [
            series("livelearn_serving_version", "5x30", instance="m1"),
            series("livelearn_pinned", "0x30", instance="m1"),
            series("livelearn_serving_loaded_version", "5x30", instance="s1", pod="a"),
            series("livelearn_serving_loaded_version", "4x30", instance="s2", pod="b"),
        ],
        [fires("LivelearnServingNotFollowing", "10m"), quiet("LivelearnServingNotFollowing", "3m")],
    ),
    (
        "a pin, and serving that follows a rollback within a minute: quiet",
        [
            series("livelearn_serving_version", "5x5 3x25", instance="m1"),
            series("livelearn_pinned", "0x30", instance="m1"),
            series("livelearn_serving_loaded_version", "5x6 3x24", instance="s1", pod="a"),
        ],
        [quiet("LivelearnServingNotFollowing", "20m")],
    ),
    (
        "pinned: serving may differ from the newest stable version",
        [
            series("livelearn_serving_version", "5x30", instance="m1"),
            series("livelearn_pinned", "1x30", instance="m1"),
            series("livelearn_serving_loaded_version", "4x30", instance="s1", pod="a"),
        ],
        [quiet("LivelearnServingNotFollowing", "20m")],
    ),
]


@pytest.mark.parametrize(("name", "inputs", "checks"), CASES, ids=[case[0] for case in CASES])
def test_each_alert_fires_and_stays_quiet(name, inputs, checks, tmp_path):
    # Annotations are templates promtool check rules has checked; the unit tests compare names and labels.
    groups = rule_groups(VALUES)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": checks}],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = run_promtool("test", "rules", tmp_path / "tests.yaml")
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_case():
    fired = {check["alertname"] for _, _, checks in CASES for check in checks if check["exp_alerts"]}
    assert fired == {r["alert"] for r in all_rules()}
    assert all(re.fullmatch(r"Livelearn[A-Za-z]+", name) for name in fired)
