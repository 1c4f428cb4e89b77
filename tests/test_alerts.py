"""The chart's alert rules and Grafana dashboard, checked by promtool (Debian package ``prometheus``;
``scripts/test`` installs it): ``promtool check rules`` on the rendered PrometheusRule, ``promtool test rules``
making each alert fire in its outage and stay quiet in a case that looks close, every dashboard query parsed by
promtool, every metric they read one the metrics page lists (``tests/test_api.py`` holds that table to what the
processes expose), the routing labels ``model`` and ``namespace`` kept by every alert, and each alert's runbook
section on the alerts page (``tests/test_alert_outages.py`` drives the outages against real processes).
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
    ROOT,
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
#: The labels an on-call rota routes by: every alert keeps them.
ROUTING = {"model": "shop", "namespace": NAMESPACE}
#: Dashboard template variables replaced by concrete values so that promtool can parse each query.
DASHBOARD_VARIABLES = {"$model": "shop", "$namespace": NAMESPACE, "$metric": "accuracy", "$__rate_interval": "2m"}
#: The page each runbook_url points into (one section per alert, its anchor the alert's name in lower case).
ALERTS_PAGE = ROOT / "docs" / "operations" / "alerts.md"
#: The chart's default runbookBaseUrl.
RUNBOOK_BASE = "https://livelearn.readthedocs.io/en/latest"


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


def test_every_metric_in_alerts_and_dashboard_is_on_the_metrics_page():
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
        "LivelearnOperatorNeeded",
        "LivelearnIncidentOpen",
        "LivelearnNoActiveLearner",
        "LivelearnKafkaDown",
        "LivelearnRedisDown",
        "LivelearnMonitorDown",
        "LivelearnServeDown",
        "LivelearnServeErrors",
        "LivelearnSnapshotStale",
        "LivelearnConsumerLagGrowing",
        "LivelearnServingNotFollowing",
        "LivelearnCanaryAborted",
        "LivelearnBackupStale",
    }


#: An aggregation and what follows it: ``by (namespace, model)`` is the only grouping an alert may use.
AGGREGATION = re.compile(
    r"\b(sum|max|min|count|avg|topk|bottomk|quantile|stddev|stdvar|group)\s*(by|without)?\s*(\([^)]*\))?"
)


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_keeps_its_routing_labels(rule):
    """An on-call rota routes by model and namespace: no aggregation may drop them (the promtool cases below also
    expect both labels on every alert they fire)."""
    expression = rule["expr"]
    for match in AGGREGATION.finditer(expression):
        if expression[match.end() :].lstrip().startswith("_"):  # e.g. max_over_time: a function, not an aggregation
            continue
        assert match.group(2) == "by", f"{match.group(0)!r} in {rule['alert']} drops model and namespace"
        assert {label.strip() for label in match.group(3).strip("()").split(",")} >= {"namespace", "model"}, (
            f"{match.group(0)!r} in {rule['alert']}"
        )


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_says_what_it_is_and_links_its_runbook(rule):
    annotations = rule["annotations"]
    assert annotations["summary"] and len(annotations["description"]) > 80
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}/operations/alerts/#{rule['alert'].lower()}"
    assert rule["labels"]["severity"] in {"warning", "critical"}


def test_the_runbook_base_is_a_chart_value():
    values = {**VALUES, "metrics": {**VALUES["metrics"]}}
    values["metrics"]["prometheusRule"] = {
        **VALUES["metrics"]["prometheusRule"],
        "runbookBaseUrl": "https://docs.example/ll/",
    }
    urls = {rule["annotations"]["runbook_url"] for group in rule_groups(values) for rule in group["rules"]}
    assert "https://docs.example/ll/operations/alerts/#livelearnkafkadown" in urls  # one slash: trimmed
    assert all(url.startswith("https://docs.example/ll/operations/alerts/#") for url in urls)


def test_the_alerts_page_has_a_runbook_section_for_every_alert():
    """Each runbook_url resolves: the page has a section whose heading is the alert's name (MkDocs makes its anchor
    the name in lower case), and it documents no alert the chart does not have."""
    headings = re.findall(r"^### (Livelearn[A-Za-z]+)\s*$", ALERTS_PAGE.read_text(), flags=re.MULTILINE)
    assert sorted(headings) == sorted(r["alert"] for r in all_rules())


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
        "livelearn_serving_predictions_by_arm_total",  # each arm's share of the requests
        "livelearn_canary_percent",
    ):
        assert metric in queries, metric
    assert "livelearn_rollbacks_total" in board["annotations"]["list"][0]["expr"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_has_a_dead_letter_panel_and_the_serve_error_share():
    """Dead letters get a panel of their own, by reason (the learner counts every reason from 0, so it shows 0s,
    not "No data"); serve's answers by status code with the share the LivelearnServeErrors alert reads."""
    panels = {panel["title"]: panel for panel in dashboard(VALUES)["panels"]}
    (dead,) = (panel for title, panel in panels.items() if title.startswith("Dead letters"))
    (target,) = dead["targets"]
    assert target["expr"].startswith("sum by (reason) (rate(livelearn_events_dead_lettered_total{")
    answers = " ".join(t["expr"] for t in panels["Serve answers by status code"]["targets"])
    assert "by (code)" in answers and 'code=~"5.."' in answers


# --- promtool -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", ["default", "production"])
def test_promtool_accepts_the_rules(value_set, tmp_path):
    values = example_values(value_set)
    values.setdefault("metrics", {})["prometheusRule"] = {
        **values.get("metrics", {}).get("prometheusRule", {}),
        "enabled": True,
    }
    path = tmp_path / "rules.yaml"
    groups = rule_groups(values)
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = run_promtool("check", "rules", path)
    count = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {count} rules found" in result.stdout + result.stderr
    assert count == {"default": 14, "production": 15}[value_set]  # the backup alert comes with the backup CronJob


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
    """``alert`` fires at ``at`` with exactly its severity, the alert labels and the routing labels."""
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": {"severity": _severity(alert), **ALERT_LABELS, **ROUTING, **labels}}],
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
        "no events, the learner caught up and Kafka up: an old snapshot is expected",
        learner_series(
            "l1",
            "1x40",
            livelearn_snapshot_age_seconds="0+60x40",
            livelearn_events_consumed_total="500x40",
            livelearn_consumer_lag_events="0x40",
            livelearn_kafka_up="1x40",
        ),
        [quiet("LivelearnSnapshotStale", "30m")],
    ),
    (
        "the stream goes idle after a burst: its last snapshot ages, quietly",
        learner_series(
            "l1",
            "1x40",
            # a snapshot a minute while events flow (10 min), the last one a minute after the last event
            livelearn_snapshot_age_seconds="30x11 0+60x29",
            livelearn_events_consumed_total="0+600x10 6000x30",
            livelearn_consumer_lag_events="0x40",
            livelearn_kafka_up="1x40",
        ),
        [quiet("LivelearnSnapshotStale", f"{m}m") for m in range(10, 40, 3)],
    ),
    (
        "Kafka down stops consuming and snapshots: stale although nothing is consumed",
        learner_series(
            "l1",
            "1x40",
            livelearn_snapshot_age_seconds="0+60x40",
            livelearn_events_consumed_total="500x40",
            livelearn_consumer_lag_events="0x3" + " NaN" * 37,  # unknown while Kafka does not answer
            livelearn_kafka_up="1x3 0x37",
        ),
        [fires("LivelearnSnapshotStale", "12m"), quiet("LivelearnSnapshotStale", "5m")],
    ),
    (
        "Redis down: the learner waits without the lease, its snapshot ages: stale",
        learner_series(
            "l1",
            "1x3 0x37",  # an outage: the learner leaves its active state and waits
            livelearn_snapshot_age_seconds="0+60x40",
            livelearn_events_consumed_total="500x40",
            livelearn_consumer_lag_events="0x40",
            livelearn_kafka_up="1x40",
        ),
        [fires("LivelearnSnapshotStale", "12m")],
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
    (
        "an open incident",
        [
            series("livelearn_incident_open", "0x5 1x20", instance="m1"),
            series("livelearn_incident_open", "0x5 1x20", instance="m2"),
        ],
        [fires("LivelearnIncidentOpen", "10m"), quiet("LivelearnIncidentOpen", "5m")],
    ),
    (
        "a freeze without an incident, and an incident closed within a minute: quiet",
        [
            series("livelearn_learning_frozen", "1x25", instance="m1"),
            series("livelearn_incident_open", "0x5 1 0x20", instance="m1"),
        ],
        [quiet("LivelearnIncidentOpen", f"{m}m") for m in range(4, 20)],
    ),
    (
        "Kafka down on the active learner, whose lease flickers as it re-activates: fires",
        learner_series("l1", "1x5 " + "0 1 " * 12, livelearn_kafka_up="1x5 0x24")
        + learner_series("l2", "0x30", livelearn_kafka_up="1x30"),  # a standby never talks to Kafka
        [fires("LivelearnKafkaDown", "12m"), fires("LivelearnKafkaDown", "28m"), quiet("LivelearnKafkaDown", "6m")],
    ),
    (
        "a Kafka blip under a minute: quiet",
        learner_series("l1", "1x20", livelearn_kafka_up="1x5 0 1x14"),
        [quiet("LivelearnKafkaDown", f"{m}m") for m in range(4, 20)],
    ),
    (
        "a learner that lost the lease long ago still says 0 (a standby never asks Kafka again): quiet",
        learner_series("l1", "0x3 1x40", livelearn_kafka_up="1x43")
        + learner_series("l2", "1x3 0x40", livelearn_kafka_up="1x3 0x40"),
        [quiet("LivelearnKafkaDown", f"{m}m") for m in range(10, 43, 4)],
    ),
    (
        "Redis down for the learner and the monitor",
        [
            *learner_series("l1", "1x5 0x10", livelearn_redis_up="1x5 0x10"),
            series("livelearn_redis_up", "1x5 0x10", instance="m1"),
        ],
        [fires("LivelearnRedisDown", "9m"), quiet("LivelearnRedisDown", "6m")],
    ),
    (
        "a Redis failover under a minute: quiet",
        [
            *learner_series("l1", "1x15", livelearn_redis_up="1x5 0 1x10"),
            series("livelearn_redis_up", "1x5 0 1x10", instance="m1"),
        ],
        [quiet("LivelearnRedisDown", f"{m}m") for m in range(5, 15)],
    ),
    (
        "every monitor gone (scrapes fail: their series end)",
        [
            series("livelearn_monitor_head_version", "5x5 stale", instance="m1"),
            series("livelearn_monitor_head_version", "5x5 stale", instance="m2"),
        ],
        [fires("LivelearnMonitorDown", "10m"), quiet("LivelearnMonitorDown", "7m")],
    ),
    (
        "one of two monitors gone, and a restart within a minute: quiet",
        [
            series("livelearn_monitor_head_version", "5x5 stale", instance="m1"),
            series("livelearn_monitor_head_version", "5x10 stale _ 5x10", instance="m2"),
        ],
        [quiet("LivelearnMonitorDown", f"{m}m") for m in range(4, 22, 2)],
    ),
    (
        "every serve pod gone",
        [
            series("livelearn_serving_predictions_total", "0+100x5 stale", instance="s1", pod="a"),
            series("livelearn_serving_predictions_total", "0+100x5 stale", instance="s2", pod="b"),
        ],
        [fires("LivelearnServeDown", "10m"), quiet("LivelearnServeDown", "6m")],
    ),
    (
        "one serve pod gone, and a rolling restart: quiet",
        [
            series("livelearn_serving_predictions_total", "0+100x5 stale", instance="s1", pod="a"),
            series("livelearn_serving_predictions_total", "0+100x10 stale", instance="s2", pod="b"),
            series("livelearn_serving_predictions_total", "_x13 0+100x8", instance="s3", pod="c"),  # 2 min later
        ],
        [quiet("LivelearnServeDown", f"{m}m") for m in range(4, 22, 2)],
    ),
    (
        "one prediction in seven answered 503",
        [
            series("livelearn_serving_responses_total", "0+600x30", route="/predict", code="200", instance="s1"),
            series("livelearn_serving_responses_total", "0+100x30", route="/predict", code="503", instance="s1"),
            series(
                "livelearn_serving_responses_total",
                "0+50x30",
                route="/v2/models/{model_name}/infer",
                code="500",
                instance="s2",
            ),
        ],
        [fires("LivelearnServeErrors", "15m"), quiet("LivelearnServeErrors", "3m")],
    ),
    (
        "refused bodies (4xx), 1% of 5xx, a 2-minute burst of 500s: quiet",
        [
            series("livelearn_serving_responses_total", "0+600x30", route="/predict", code="200", instance="s1"),
            series("livelearn_serving_responses_total", "0+6x30", route="/predict", code="503", instance="s1"),
            series("livelearn_serving_responses_total", "0+300x30", route="/predict", code="422", instance="s1"),
            series("livelearn_serving_responses_total", "0x10 0+300x2 600x18", route="/predict/batch", code="500"),
        ],
        [quiet("LivelearnServeErrors", f"{m}m") for m in range(2, 30, 2)],
    ),
    (
        "an unready pod (out of the Service): only its readiness probes get 503s, no prediction fails: quiet",
        [
            series("livelearn_serving_responses_total", "0+6x30", route="/v2/health/ready", code="503", instance="s1"),
            series("livelearn_serving_responses_total", "100x30", route="/predict", code="200", instance="s1"),
        ],
        [quiet("LivelearnServeErrors", f"{m}m") for m in range(2, 30, 2)],
    ),
    (
        "a canary aborted: fires for 10 minutes, then clears",
        [
            series("livelearn_canary_aborts_total", "0x5 1x25", instance="s1", pod="a"),
            series("livelearn_canary_aborts_total", "0x5 1x25", instance="s2", pod="b"),  # every worker counts it
        ],
        [fires("LivelearnCanaryAborted", "7m"), fires("LivelearnCanaryAborted", "14m")]
        + [quiet("LivelearnCanaryAborted", f"{m}m") for m in (4, 17, 25)],
    ),
    (
        "serve restarts (a counter back to 0, a new pod from 0) and a canary never aborted: quiet",
        [
            series("livelearn_canary_aborts_total", "2x10 stale 0x19", instance="s1", pod="a"),
            series("livelearn_canary_aborts_total", "_x12 0x18", instance="s2", pod="c"),
            series("livelearn_canary_percent", "5x10 25x20", arm="fast", instance="s3", pod="d"),
        ],
        [quiet("LivelearnCanaryAborted", f"{m}m") for m in range(2, 30, 2)],
    ),
    (
        "backups stop: the age passes an hour and fires 5 minutes later",
        [
            series("livelearn_backup_age_seconds", "0+60x90", instance="m1"),
            series("livelearn_backup_age_seconds", "0+60x90", instance="m2"),  # both monitors read one Redis
        ],
        [fires("LivelearnBackupStale", "70m"), fires("LivelearnBackupStale", "85m")]
        + [quiet("LivelearnBackupStale", f"{m}m") for m in (30, 60, 64)],
    ),
    (
        "a backup every 15 minutes, and a run that failed once: quiet",
        [series("livelearn_backup_age_seconds", sawtooth(0, 1740, 60, 120), instance="m1")],
        [quiet("LivelearnBackupStale", f"{m}m") for m in range(5, 120, 5)],
    ),
]


def check_alerts(directory: Path, inputs: list[dict[str, str]], checks: list[dict[str, Any]]) -> None:
    """``promtool test rules``: the chart's alerts (production example) over ``inputs`` (a sample a minute) pass
    ``checks`` (:func:`fires`, :func:`quiet`)."""
    # Annotations are templates promtool check rules has checked; the unit tests compare names and labels.
    groups = rule_groups(VALUES)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": checks}],
    }
    (directory / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = run_promtool("test", "rules", directory / "tests.yaml")
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize(("name", "inputs", "checks"), CASES, ids=[case[0] for case in CASES])
def test_each_alert_fires_and_stays_quiet(name, inputs, checks, tmp_path):
    check_alerts(tmp_path, inputs, checks)


def test_every_alert_has_a_firing_case():
    fired = {check["alertname"] for _, _, checks in CASES for check in checks if check["exp_alerts"]}
    assert fired == {r["alert"] for r in all_rules()}
    assert all(re.fullmatch(r"Livelearn[A-Za-z]+", name) for name in fired)
