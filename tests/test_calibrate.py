"""``livelearn calibrate``: the guard's threshold chosen from clean data, checked against an independent replay.

One replay of the bundled dataset in this process (the samples the live learner would record) is the oracle; the
command runs as a subprocess on the same data, with the defaults, with the threshold it suggests fed back and with
a threshold above the clean minimum.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import produce, settings_env

from monitor.calibration import (
    count_breaches,
    distribution,
    relative_view,
    rule_view,
    signal_view,
    suggest_threshold,
)
from monitor.data_guard import DataGuard
from streaming.cli.calibrate import calibration_report
from streaming.config import Settings
from streaming.learner.offline import replay_samples
from streaming.local.dataset import DATASET_PATH, EXPECTED_COLUMNS, read_events

DEFAULTS = Settings()


def calibrate_process(*args: str, **env: str) -> subprocess.Popen[str]:
    """``livelearn calibrate`` with the default settings (plus ``env``), started in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "streaming", "calibrate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=settings_env(DEFAULTS, COLUMNS="200", **env),
    )


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def report_of(process: subprocess.Popen[str]) -> dict:
    result = finish(process)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def judged_accuracy(samples: list[dict]) -> list[float]:
    return [s["accuracy"] for s in samples if s["samples"] >= DEFAULTS.monitor_min_samples]


def naive_rollbacks(values: list[float], threshold: float, patience: int) -> int:
    """Runs of ``patience`` values below ``threshold`` (a run restarts after each one), written out plainly."""
    run = rollbacks = 0
    for value in values:
        run = run + 1 if value < threshold else 0
        if run == patience:
            rollbacks, run = rollbacks + 1, 0
    return rollbacks


@pytest.fixture(scope="module")
def clean() -> dict:
    """The bundled dataset: the command's report at the defaults and at 0.85, and the samples replayed here."""
    csv = str(DATASET_PATH)
    at_defaults = calibrate_process("--csv", csv, "--json")
    at_085 = calibrate_process("--csv", csv, LIVELEARN_MONITOR_THRESHOLD="0.85")  # the table, as users read it
    samples = list(replay_samples(read_events(), DEFAULTS))
    report = report_of(at_defaults)
    fed_back = calibrate_process("--csv", csv, "--json", LIVELEARN_MONITOR_THRESHOLD=str(report["suggested_threshold"]))
    return {"samples": samples, "report": report, "text_085": finish(at_085), "fed_back": report_of(fed_back)}


def test_clean_data_breaches_nothing_at_the_default_threshold(clean):
    samples, report = clean["samples"], clean["report"]
    accuracy = judged_accuracy(samples)
    true_min = min(accuracy)
    assert report["source"]["events"] == 12_330 and report["samples"] == len(samples)
    assert report["settings"]["monitor_threshold"] == 0.8 and report["settings"]["monitor_metric"] == "accuracy"
    dist = report["distribution"]
    assert dist["count"] == len(accuracy)
    assert dist["worst"] == dist["percentiles"]["min"] == true_min
    assert dist["percentiles"]["max"] == max(accuracy)
    assert math.isclose(dist["mean"], sum(accuracy) / len(accuracy))
    at_min = [s["stream_position"] for s in samples if s["samples"] >= 200 and s["accuracy"] == true_min]
    assert dist["worst_position"] == at_min[0]
    assert report["current"] == {
        "threshold": 0.8,
        "breaching": 0,
        "confirmed": 0,
        "suppressed": 0,
        "first_position": None,
    }
    assert report["incidents"] == 0 and sum(s["incident"] for s in samples) == 0


def test_the_suggested_threshold_holds_and_one_above_the_minimum_rolls_back(clean):
    samples, report = clean["samples"], clean["report"]
    accuracy = judged_accuracy(samples)
    true_min = min(accuracy)
    suggested = report["suggested_threshold"]
    assert suggested == math.floor(round((true_min - 0.02) * 100, 6)) / 100  # the stated rule
    assert "min rolling accuracy - 0.02, floored to 0.01" in report["rule"]
    assert clean["fed_back"]["current"]["threshold"] == suggested
    assert clean["fed_back"]["current"]["confirmed"] == 0 and clean["fed_back"]["current"]["breaching"] == 0
    assert true_min < 0.85
    rows = {row["threshold"]: row for row in report["thresholds"]}
    assert {0.8, suggested, 0.85} <= set(rows)
    assert rows[0.85]["confirmed"] >= 1
    for threshold, row in rows.items():  # the judge's count equals plain runs of `patience` breaching samples
        assert row["confirmed"] == naive_rollbacks(accuracy, threshold, DEFAULTS.monitor_patience), threshold
        assert row["breaching"] == sum(a < threshold for a in accuracy)
    text = clean["text_085"]
    assert text.returncode == 0, text.stderr
    assert f"(absolute, threshold 0.85, patience 3): {rows[0.85]['breaching']} breaching samples, " in text.stdout
    assert f"{rows[0.85]['confirmed']} rollbacks on this data" in text.stdout
    assert f"suggested monitor_threshold: {suggested:.2f}" in text.stdout


def test_relative_mode_view(clean):
    samples, relative = clean["samples"], clean["report"]["relative"]
    relative_settings = DEFAULTS.model_copy(update={"monitor_threshold_mode": "relative"})
    assert relative["configured_drop"] == DEFAULTS.monitor_relative_drop
    assert relative["confirmed"] == count_breaches(samples, relative_settings).confirmed
    assert 0 < relative["largest_drop"] < relative["suggested_drop"] <= 1
    percentiles = clean["report"]["distribution"]["percentiles"]
    assert percentiles["min"] <= relative["reference"] <= percentiles["max"]  # a level the metric really had
    suggested = relative_settings.model_copy(update={"monitor_relative_drop": relative["suggested_drop"]})
    assert count_breaches(samples, suggested).confirmed == 0


def test_the_further_guarded_metrics_on_clean_data(clean):
    samples, views = clean["samples"], {v["rule"]: v for v in clean["report"]["also"]}
    assert set(views) == {"recall:drop=0.5", "precision:drop=0.4"}  # the defaults
    for text, view in views.items():
        drop = float(text.rpartition("=")[2])
        assert view["breaching"] == 0 and 0 < view["largest_drop"] < drop  # clean data leaves them alone...
        assert view["suggested"] == math.ceil(round((view["largest_drop"] + 0.02) * 100, 6)) / 100
        metric = text.partition(":")[0]
        tighter = [f"{metric}:drop={view['largest_drop'] - 0.01:.4f}"]  # ...and the largest drop is a real one
        assert rule_view(samples, DEFAULTS.model_copy(update={"monitor_also": tighter}))[0].breaching >= 1
    assert "recall:drop=0.5" in clean["text_085"].stdout and "further guarded metrics" in clean["text_085"].stdout


def test_data_signals_on_clean_data(clean):
    samples, signals = clean["samples"], {s["signal"]: s for s in clean["report"]["signals"]}
    for name, bound in (("label_rate", 0.25), ("pred_rate", 0.25)):
        rates = [s[name] for s in samples]
        assert (signals[name]["minimum"], signals[name]["maximum"]) == (min(rates), max(rates))
        assert signals[name]["bound"] == bound
        assert 0 < signals[name]["largest_deviation"] < bound
        assert signals[name]["incidents"] == 0
    # runs of one label value: the least likely one on clean data is far from the bound (-log10 of 1e-9)
    runs = signals["label_run"]
    assert (runs["minimum"], runs["maximum"]) == (
        min(s["label_run"] for s in samples),
        max(s["label_run"] for s in samples),
    )
    assert runs["bound"] == 9 and 0 < runs["largest_deviation"] < 5 and runs["incidents"] == 0
    # the label-odds CUSUM: the learner's own after each block (the samples' label_odds_up/down), far below its bound
    odds = signals["label_odds"]
    highest = max(max(s["label_odds_up"], s["label_odds_down"]) for s in samples)
    assert odds["bound"] == 9 and odds["incidents"] == 0
    assert odds["largest_deviation"] == odds["maximum"] == highest and 1 < highest < 6


def test_bounds_too_tight_for_clean_data_are_reported():
    tight = DEFAULTS.model_copy(update={"incident_label_rate_bound": 0.05})
    samples = list(replay_samples(read_events(limit=4000), tight))
    flags = [0, *(s["incident"] for s in samples)]
    opened = sum(1 for before, after in itertools.pairwise(flags) if not before and after)  # the learner's incidents
    result = finish(
        calibrate_process("--csv", str(DATASET_PATH), "--limit", "4000", LIVELEARN_INCIDENT_LABEL_RATE_BOUND="0.05")
    )
    assert result.returncode == 0, result.stderr
    assert opened >= 1
    assert f"{opened} data-quality incidents on this data" in result.stdout
    assert "the bounds are too tight" in result.stdout


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("no_revenue", ("lacks the columns Revenue",)),
        ("missing", ("cannot read", "No such file")),
        ("bad_row", ("line 3", "fix that line")),
        ("directory", ("Is a directory",)),
        ("nothing", ("pass either --csv FILE or --topic NAME",)),
        ("too_short", ("none of the 1 metric samples had 200 events", "calibrate on more labelled events")),
    ],
)
def test_a_bad_csv_is_one_line(tmp_path: Path, case: str, needles: tuple[str, ...]):
    header = ",".join(EXPECTED_COLUMNS)
    rows = DATASET_PATH.read_text(encoding="utf-8").splitlines()
    files = {
        "no_revenue": ",".join(c for c in EXPECTED_COLUMNS if c != "Revenue") + "\n",
        "bad_row": f"{header}\n{rows[1]}\n1,2,x\n",
        "too_short": "\n".join(rows[:151]) + "\n",
    }
    path = tmp_path / "events.csv"
    if case in files:
        path.write_text(files[case], encoding="utf-8")
    args = {"nothing": (), "directory": ("--csv", str(tmp_path))}.get(case, ("--csv", str(path)))
    result = finish(calibrate_process(*args))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- the pure rules, on hand-made samples --------------------------------------------------------------------------
def sample(value: float, *, n: int = 500, metric: str = "accuracy", incident: int = 0) -> dict[str, float]:
    return {metric: value, "samples": n, "incident": incident}


def test_breach_counting_respects_patience():
    rule = Settings(monitor_patience=3, monitor_threshold=0.8)
    bad, good = sample(0.7), sample(0.9)
    assert count_breaches([bad, bad, good, bad, bad], rule).confirmed == 0  # never 3 in a row
    assert count_breaches([bad, bad, bad], rule).confirmed == 1
    assert count_breaches([bad] * 6, rule).confirmed == 2  # the run restarts after each confirmed breach
    assert count_breaches([bad] * 5, rule).confirmed == 1
    assert count_breaches([bad] * 3, rule, 0.6).confirmed == 0  # a threshold to try overrides the configured one
    assert count_breaches([sample(0.8)] * 3, rule).confirmed == 0  # at the threshold is healthy


def test_breach_counting_respects_min_samples_and_incidents():
    rule = Settings(monitor_patience=2, monitor_min_samples=200)
    bad, young = sample(0.5), sample(0.5, n=199)
    assert count_breaches([young] * 5, rule).breaching == 0  # a window under min_samples is not judged
    assert count_breaches([bad, young, bad], rule).confirmed == 0  # ...and restarts the run
    assert count_breaches([bad, young, bad, bad], rule).confirmed == 1
    during = count_breaches([sample(0.5, incident=1)] * 4, rule)  # only reported, once, during an incident
    assert (during.confirmed, during.suppressed, during.breaching) == (0, 1, 4)


def test_breach_counting_and_suggestion_for_log_loss():
    rule = Settings(monitor_metric="log_loss", monitor_threshold=0.4, monitor_patience=2)
    losses = [sample(v, metric="log_loss") for v in (0.3, 0.45, 0.5, 0.2, 0.41, 0.35)]
    assert count_breaches(losses, rule).confirmed == 1  # above the threshold breaches; lower is better
    assert count_breaches(losses, rule, 0.5).confirmed == 0
    dist = distribution(losses, rule)
    assert dist is not None and (dist.worst, dist.percentiles["min"]) == (0.5, 0.2)
    assert suggest_threshold(dist.worst, "log_loss") == 0.52
    assert count_breaches(losses, rule, suggest_threshold(dist.worst, "log_loss")).breaching == 0
    assert suggest_threshold(0.829, "accuracy") == 0.8 and suggest_threshold(0.83, "accuracy") == 0.81


def test_views_without_enough_data():
    rule = Settings()
    assert distribution([sample(0.9, n=10)], rule) is None
    assert relative_view([sample(0.9)], rule).suggested_drop is None
    assert [s.largest_deviation for s in signal_view([{"label_rate": 0.1, "pred_rate": 0.1}], rule)] == [None] * 4


# -- a range of the live events topic ------------------------------------------------------------------------------
def test_calibrate_on_a_topic_range_matches_the_same_events_offline(make_settings):
    settings = make_settings()
    events = list(read_events(limit=1500))
    produce(settings, events)
    env = settings_env(settings, COLUMNS="200")

    def start(*args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "streaming", "calibrate", "--topic", settings.events_topic, *args]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    runs = {
        "whole": start("--json"),
        "part": start("--from-offset", "500", "--to-offset", "1300", "--json"),
        "limited": start("--from-offset", "100", "--limit", "700", "--json"),
        "beyond": start("--to-offset", "5000"),
        "unknown": start("--partition", "3"),
    }
    whole, part, limited = (report_of(runs[name]) for name in ("whole", "part", "limited"))
    offline = calibration_report(list(replay_samples(events, settings)), settings, {})
    assert whole["source"]["events"] == 1500 and whole["source"]["offsets"] == {"first": 0, "last": 1499}
    for key in ("samples", "distribution", "suggested_threshold", "current", "thresholds", "relative", "signals"):
        assert whole[key] == offline[key], key
    offline = calibration_report(list(replay_samples(events[500:1300], settings)), settings, {})
    assert part["source"]["offsets"] == {"first": 500, "last": 1299} and part["source"]["events"] == 800
    assert part["distribution"] == offline["distribution"] and part["thresholds"] == offline["thresholds"]
    assert limited["source"]["offsets"] == {"first": 100, "last": 799} and limited["source"]["events"] == 700
    for name, needle in (("beyond", "ends at offset 1500"), ("unknown", "has no partition 3")):
        result = finish(runs[name])
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert needle in lines[0], lines[0]


def test_feature_drift_detections_come_in_episodes_on_clean_cycled_data():
    """The bundled data cycled 3 times (its wraps put February after December): every detection is in a notice, the
    first of an episode at once, the next drift_group_events' together at its end."""
    cycled = [dataclasses.replace(e, event_id=f"{e.event_id}-{k}") for k in range(3) for e in read_events()]
    counts = {}
    for group in (0, 5000):
        settings = DEFAULTS.model_copy(update={"drift_group_events": group})
        guard, notices = DataGuard(settings), []
        for sample in replay_samples(cycled, settings):
            notices += [n for n in guard.feed(sample) or [] if n.action == "feature_drift"]
        detections = [s for n in notices for s in str(n.metrics["signal"]).split(",")]
        counts[group] = (len(notices), len(detections))
        positions = [int(n.metrics["stream_position"]) for n in notices]
        assert positions == sorted(positions)
    assert counts[0][0] == counts[0][1] == counts[5000][1]  # one notice per detection, or the same ones grouped
    assert counts[5000][0] < counts[0][0] * 2 / 3


def test_time_to_detect_finds_each_damage_by_its_rule_and_clean_labels_by_none():
    from streaming.learner.detect import SHIFTS, time_to_detect

    events = list(read_events(limit=7000))
    shifts = {
        "clean": lambda e, _rng: e.label,  # the same labels: a detection would be a false alarm
        **{name: SHIFTS[name] for name in ("labels stuck at 1", "50 % of positives lost")},
    }
    found = {d.shift: d for d in time_to_detect(events, DEFAULTS, shifts=shifts, starts=(0.5,), horizon=3500)}
    assert found["clean"].delay is None and found["clean"].rule is None
    stuck = found["labels stuck at 1"]
    assert stuck.start == 3500 and 0 < stuck.delay <= 200 and stuck.rule in ("label_run", "label_odds")
    assert stuck.change_point <= stuck.start
    lost = found["50 % of positives lost"]
    assert lost.delay is not None and lost.delay <= 3000 and {"recall", "precision"} & set(lost.rule.split("+"))
    assert lost.change_point <= lost.start


def test_calibrate_detect_prints_the_table_and_puts_it_in_the_json():
    csv = str(DATASET_PATH)
    started = [calibrate_process("--csv", csv, "--limit", "2000", "--detect", *flag) for flag in ((), ("--json",))]
    text, doc = (finish(process) for process in started)
    assert text.returncode == 0 and doc.returncode == 0, text.stderr + doc.stderr
    assert "time to detect" in text.stdout and "labels stuck at 1" in text.stdout
    rows = json.loads(doc.stdout)["detection"]
    assert len(rows) == 8 * 3 and {row["start"] for row in rows} == {500, 1000, 1500}
