"""The operators' view of challengers: ``livelearn challengers list``, ``livelearn compare`` (+ ``--png``), the
per-arm Prometheus gauges and the live view's lines.

Versions are written straight into the session's real redis-server, with no broker: a learner's state stepped over
bundled events (``tests/test_arms.py``'s ``Run``, two challengers and a segment), captured every 400 events and
written as the learner writes it (blob with every arm, metadata ``extra["arms"]``), with the metric samples it
recorded in the history stream. The live status is the one a real :class:`~streaming.learner.runner.Learner`
publishes. The commands run in this process through ``livelearn``'s own entry point, errors included.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from clirun import one_line_error, run_livelearn
from matplotlib.image import imread
from prometheus_client import CollectorRegistry
from rich.console import Console

import monitor.compare
from monitor.compare import Comparison, ComparisonResult
from monitor.compare_report import build_compare_report, compare_figure, read_compare_report
from snapshotter.audit import AuditEntry
from snapshotter.codec import EncodedSnapshot
from snapshotter.store import VersionStore, open_store
from streaming.cli.live_view import ViewState
from streaming.config import Settings
from streaming.events import encode_event
from streaming.learner.prometheus import DECISIONS, LearnerMetrics
from streaming.learner.runner import Learner
from streaming.local.dataset import read_events
from tests.test_arms import Run

EVENTS, EVERY = 1600, 400  # events stepped; a version every EVERY events
RULE = {"compare_min_labels": 200, "compare_segments": ["VisitorType"]}
_names = itertools.count()


@dataclass
class Model:
    settings: Settings
    store: VersionStore
    run: Run | None


def write_model(redis_address: str, declared: list[str]) -> Model:
    """A model whose versions (one every ``EVERY`` events) and metric samples a learner with ``declared`` wrote."""
    settings = Settings(
        model_name=f"challengers-{next(_names)}",
        redis_url=f"redis://{redis_address}/0",
        engine="river",
        challengers=declared,
        **RULE,
    )
    store = open_store(settings)
    run = Run(settings)
    events = list(read_events(limit=EVENTS))
    for start in range(0, EVENTS, EVERY):
        run.feed([("events", encode_event(e)) for e in events[start : start + EVERY]])
        state = run.state
        store.write(
            EncodedSnapshot.of(state.capture().document()),
            writer="test",
            lease_value=None,
            offsets={"events": {"0": start + EVERY}},
            metrics={"rolling": state.metrics.rolling_values(), "cumulative": state.metrics.cumulative_values()},
            parent=store.head(),
            extra={"arms": state.arms.summary()} if state.arms is not None else {},
        )
    for sample in run.state.samples:
        store.client.xadd(store.keys.history, sample)  # type: ignore[arg-type]
    return Model(settings, store, run)


@pytest.fixture(scope="module")
def models(stack) -> dict[str, Model]:
    _, redis_server = stack
    return {
        "shop": write_model(redis_server.address, ["fast:lr=0.05", "twin"]),
        "solo": write_model(redis_server.address, ["fast:lr=0.05"]),
        "plain": write_model(redis_server.address, []),
    }


@pytest.fixture
def livelearn(monkeypatch, capsys, tmp_path):
    """``livelearn ARGS`` on model NAME in this process: (exit code, stdout, stderr). No LIVELEARN_* of the test's
    own, no stack file, no terminal (tables as plain tab-separated text); the comparison's rule as written."""
    for name in [k for k in os.environ if k.startswith("LIVELEARN_") or k == "COLUMNS"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LIVELEARN_COMPARE_MIN_LABELS", str(RULE["compare_min_labels"]))
    monkeypatch.chdir(tmp_path)

    def run(model: Model, *args: str) -> tuple[int, str, str]:
        settings = model.settings
        return run_livelearn(
            monkeypatch, capsys, *args, "--model", settings.model_name, "--redis-url", settings.redis_url
        )

    return run


def stored_result(model: Model, name: str, number: int | None = None) -> ComparisonResult:
    """What the version's blob says of challenger ``name``, read the documented way."""
    _, state = model.store.load(number or model.store.head() or 0)
    return Comparison.load(state.arms[name]["comparison"], min_labels=RULE["compare_min_labels"]).result()


def fields(out: str) -> dict[str, str]:
    """The ``field<TAB>value`` lines of the first plain table."""
    table = out.split("\n# ", 1)[0]
    return dict(line.split("\t", 1) for line in table.splitlines()[2:])


def percent(value: float) -> str:
    return f"{value * 100:+.2f} %"


# -- compare ----------------------------------------------------------------------------------------------------
def test_compare_prints_the_heads_comparison_as_its_blob_holds_it(models, livelearn):
    shop = models["shop"]
    code, out, err = livelearn(shop, "compare", "fast")
    assert code == 0, err
    r = stored_result(shop, "fast")
    assert r.labels == EVENTS and r.relative_gain != 0 and len(r.segments) >= 2  # a real comparison
    shown = fields(out)
    assert shown["labels"].startswith(f"{EVENTS:,} compared")
    assert shown["learned"] == f"{EVENTS:,} events, started cold"
    assert shown["log loss"] == f"champion {r.champion_log_loss:.4f} · fast {r.challenger_log_loss:.4f} (mean)"
    assert shown["accuracy"] == f"champion {r.champion_accuracy:.4f} · fast {r.challenger_accuracy:.4f}"
    assert shown["loss difference"].startswith(
        f"{r.loss_difference:+.4f} [{r.difference_lower:+.4f}, {r.difference_upper:+.4f}]"
    )
    assert shown["relative gain"].startswith(
        f"{percent(r.relative_gain)} [{percent(r.gain_lower)}, {percent(r.gain_upper)}]"
    )
    assert shown["McNemar"] == (
        f"b {r.mcnemar_b:,} (only the champion right) · c {r.mcnemar_c:,} (only fast right) · p {r.mcnemar_p:.4f}"
    )
    assert (shown["decision"], shown["reason"]) == (r.decision, r.reason)
    segments = out.split("\n# segments", 1)[1].splitlines()[2:]
    assert [line.split("\t")[:4] for line in segments] == [
        [s.name, f"{s.labels:,}", percent(s.relative_gain), f"[{percent(s.gain_lower)}, {percent(s.gain_upper)}]"]
        for s in r.segments
    ]
    # --version: that version's blob, not the head's
    code, out, _ = livelearn(shop, "compare", "fast", "--version", "2")
    older = stored_result(shop, "fast", 2)
    assert older.labels == 2 * EVERY
    assert fields(out)["relative gain"].startswith(percent(older.relative_gain))


def test_compare_json_parses_and_holds_the_whole_result(models, livelearn):
    shop = models["shop"]
    code, out, _ = livelearn(shop, "compare", "twin", "--json")
    doc = json.loads(out)
    twin = stored_result(shop, "twin")
    assert code == 0 and doc["challenger"] == "twin" and doc["version"] == shop.store.head()
    assert doc["result"] == json.loads(json.dumps(twin.to_dict()))  # every figure, exactly
    assert (doc["result"]["gain_lower"], doc["result"]["gain_upper"], doc["result"]["decision"]) == (0, 0, "undecided")
    assert (doc["declared"], doc["learned"], doc["started"]) == ("twin", EVENTS, {"from": "cold", "version": None})
    assert doc["rule"]["min_labels"] == RULE["compare_min_labels"]
    # before two labels the interval is infinite: null in the JSON, never the invalid Infinity
    fresh = Comparison()
    fresh.update(True, 0.4, 0.6)
    assert math.isinf(fresh.result().gain_lower)
    from streaming.cli.challengers import _plain

    assert json.loads(json.dumps(_plain(fresh.result().to_dict())))["gain_lower"] is None


def test_compare_takes_the_only_challenger_and_says_in_one_line_what_is_wrong(models, livelearn, tmp_path):
    code, out, _ = livelearn(models["solo"], "compare")
    assert code == 0 and "challenger fast:lr=0.05 against the champion" in out
    shop = models["shop"]
    one_line_error(livelearn(shop, "compare"), "2 challengers (fast, twin)", "name one", "livelearn compare fast")
    one_line_error(livelearn(shop, "compare", "slow"), "no challenger 'slow'", "it holds fast, twin")
    one_line_error(livelearn(shop, "compare", "fast", "--version", "99"), "version 99")
    one_line_error(
        livelearn(models["plain"], "compare"), "holds no challenger", "LIVELEARN_CHALLENGERS", "--challenger"
    )
    missing = tmp_path / "missing" / "fast.png"
    one_line_error(livelearn(shop, "compare", "fast", "--png", str(missing)), str(missing.parent), "--png")
    one_line_error(livelearn(shop, "compare", "fast", "--png", str(tmp_path)), "is a directory", "--png")


def test_compare_png_draws_both_arms_and_marks_the_first_promote(models, livelearn, tmp_path):
    shop = models["shop"]
    out_path = tmp_path / "fast.png"
    code, out, err = livelearn(shop, "compare", "fast", "--png", str(out_path))
    assert code == 0, err
    assert f"drawn to {out_path}" in out
    assert out_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(out_path)
    assert pixels.shape[:2] == (880, 1540)  # livelearn report's size: 14 x 8 inches at 110 dpi
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 50  # lines, a band, text: not blank

    samples = shop.run.state.samples if shop.run else []
    meets = [s["arm:fast:labels"] >= RULE["compare_min_labels"] and s["arm:fast:gain_lower"] > 0 for s in samples]
    expected = samples[meets.index(True)]["stream_position"]
    # min_labels holds it back: the lower bound was above 0 earlier, on fewer labels
    assert any(s["arm:fast:gain_lower"] > 0 for s in samples if s["stream_position"] < expected)
    report = read_compare_report(shop.store, shop.settings.arms, "fast")
    assert report.promote_at == expected
    assert len(report.gain[0]) == len(samples) and report.champion_loss[1] == [s["log_loss"] for s in samples]
    figure = compare_figure(report)
    gain_axes = figure.axes[1]
    (mark,) = [line for line in gain_axes.lines if line.get_label().startswith("first promote")]
    assert list(mark.get_xdata()) == [expected, expected]
    assert read_compare_report(shop.store, shop.settings.arms, "twin").promote_at is None  # [0, 0] never promotes


def test_the_compare_picture_marks_rollbacks_and_held_blocks():
    samples = [
        (
            f"{1000 + int(p)}-0",
            {
                "time": 1 + p / 1000,
                "stream_position": p,
                "log_loss": 0.4,
                "incident": float(p == 300),
                "arm:a:labels": p,
                "arm:a:gain": 0.1,
                "arm:a:gain_lower": 0.01,
            },
        )
        for p in (100.0, 200.0, 300.0, 400.0)
    ]
    audit = [
        AuditEntry.from_stream("9-0", {"action": "rollback", "to": "2", "metrics": '{"stream_position": 350}'}),
        AuditEntry.from_stream("1250-0", {"action": "manual_rollback", "to": "1", "metrics": "{}"}),  # by time
    ]
    report = build_compare_report("m", "a", samples, audit, min_gain=0.05, min_labels=100)
    assert report.held == [(300.0, 400.0)]
    assert [(m.action, m.position, m.to) for m in report.rollbacks] == [
        ("rollback", 350.0, 2),
        ("manual_rollback", 300.0, 1),
    ]
    assert report.promote_at is None  # every lower bound at or below min_gain


# -- challengers list, the live status, the gauges and the live view -------------------------------------------
def list_rows(out: str) -> dict[str, list[str]]:
    return {line.split("\t")[0]: line.split("\t") for line in out.splitlines()[2:]}


def expected_row(name: str, arm: dict) -> list[str]:
    c = arm["comparison"]
    return [
        name,
        arm["declared"],
        f"{arm['learned']:,}",
        f"{c['labels']:,}",
        percent(c["relative_gain"]),
        f"[{percent(c['gain_lower'])}, {percent(c['gain_upper'])}]",
        c["decision"],
        c["reason"],
    ]


def test_challengers_list_reads_the_live_status_else_the_head_version(models, livelearn):
    shop = models["shop"]
    code, out, _ = livelearn(shop, "challengers", "list")
    head = shop.store.meta(shop.store.head() or 0)
    assert code == 0 and out.startswith(f"# challengers of model '{shop.settings.model_name}' (version {head.number}:")
    assert list_rows(out) == {name: expected_row(name, arm) for name, arm in head.extra["arms"].items()}

    registry = CollectorRegistry()
    learner = Learner(shop.settings, redis_client=shop.store.client, writer_id="learner-1", registry=registry)
    Run(shop.settings, learner.state).feed([("events", encode_event(e)) for e in read_events(limit=300)])
    assert learner.lease.acquire()
    try:
        learner.publish_status(10.0, 0)
        status = shop.store.status()
        assert status is not None and status["arms"] is not None
        code, out, _ = livelearn(shop, "challengers", "list")
        assert out.startswith(f"# challengers of model '{shop.settings.model_name}' (live status of learner learner-1)")
        assert list_rows(out) == {name: expected_row(name, arm) for name, arm in status["arms"].items()}
        assert list_rows(out)["fast"][3] == "300"  # the live learner's, not the head version's
        listed = json.loads(livelearn(shop, "challengers", "list", "--json")[1])
        assert (listed["source"], listed["writer"], listed["arms"]) == ("status", "learner-1", status["arms"])
        # publishing the status set the gauges (the learner's own registry)
        fast = status["arms"]["fast"]["comparison"]
        gain = registry.get_sample_value
        labels = {"model": shop.settings.model_name, "arm": "fast"}
        assert gain("livelearn_challenger_relative_gain_ratio", {**labels, "bound": "lower"}) == fast["gain_lower"]
        assert gain("livelearn_challenger_labels", labels) == 300
        # the live view: one line per challenger
        text = rendered(ViewState(shop.store, shop.settings))
        rows = [line.strip(" │").split(None, 1) for line in text.splitlines()]
        assert [row[1] for row in rows if row and row[0] == "challenger"] == [
            f"fast (lr=0.05): 300 labels, gain {fast['relative_gain'] * 100:+.1f} % "
            f"[{fast['gain_lower'] * 100:+.1f}, {fast['gain_upper'] * 100:+.1f}], {fast['decision']}",
            "twin: 300 labels, gain +0.0 % [+0.0, +0.0], undecided",
        ]
    finally:
        shop.store.client.delete(shop.store.keys.status, shop.store.keys.lease)


def rendered(view: ViewState) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(view.frame())
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_no_challengers_is_one_line_saying_how_to_declare_one(models, livelearn):
    code, out, _ = livelearn(models["plain"], "challengers", "list")
    assert code == 0 and len(out.strip().splitlines()) == 1
    assert "has no challengers" in out and "LIVELEARN_CHALLENGERS" in out and "--challenger fast:lr=0.05" in out
    assert json.loads(livelearn(models["plain"], "challengers", "list", "--json")[1])["arms"] == {}


def test_the_gauges_follow_each_arm_and_drop_an_arm_no_longer_reported():
    assert set(DECISIONS) == set(get_args(monitor.compare.Decision))
    registry = CollectorRegistry()
    metrics = LearnerMetrics(registry, "shop")
    arm = {
        "declared": "fast:lr=0.05",
        "learned": 1200,
        "started": {"from": "cold", "version": None},
        "rolling": {"log_loss": 0.3125, "samples": 1000},
        "comparison": {
            "labels": 1100,
            "relative_gain": 0.02,
            "gain_lower": None,
            "gain_upper": 0.05,
            "decision": "worse",
            "reason": "...",
        },
    }
    metrics.set_challengers({"fast": arm, "slow": {**arm, "learned": 7}})
    value = registry.get_sample_value
    fast = {"model": "shop", "arm": "fast"}
    assert value("livelearn_challenger_labels", fast) == 1100
    assert value("livelearn_challenger_learned_events", fast) == 1200
    assert value("livelearn_challenger_learned_events", {**fast, "arm": "slow"}) == 7
    assert value("livelearn_challenger_log_loss", fast) == 0.3125
    assert value("livelearn_challenger_relative_gain_ratio", {**fast, "bound": "point"}) == 0.02
    assert math.isnan(value("livelearn_challenger_relative_gain_ratio", {**fast, "bound": "lower"}))  # infinite
    assert value("livelearn_challenger_relative_gain_ratio", {**fast, "bound": "upper"}) == 0.05
    assert {d: value("livelearn_challenger_decision", {**fast, "decision": d}) for d in DECISIONS} == {
        "promote": 0,
        "worse": 1,
        "undecided": 0,
    }
    metrics.set_challengers({"fast": {**arm, "learned": 800}})  # a rollback rewinds it; slow is gone
    assert value("livelearn_challenger_learned_events", fast) == 800
    assert value("livelearn_challenger_learned_events", {**fast, "arm": "slow"}) is None
    assert value("livelearn_challenger_decision", {**fast, "arm": "slow", "decision": "worse"}) is None
    metrics.set_challengers(None)
    assert value("livelearn_challenger_labels", fast) is None
    # a challenger that has scored nothing yet (just started): its summary as the learner builds it, nothing finite
    from streaming.config import Settings
    from streaming.engines import new_model
    from streaming.learner.arms import Challengers
    from streaming.vocabulary import ModelSpec

    fresh = Challengers.start(
        Settings(challengers=["fast:lr=0.05"]).arms, ModelSpec(), new_model(ModelSpec(), "river"), {}, window=10
    )
    metrics.set_challengers(fresh.summary())
    assert math.isnan(value("livelearn_challenger_log_loss", fast))
    assert value("livelearn_challenger_labels", fast) == 0


def test_the_picture_of_an_empty_history_is_still_a_picture(tmp_path):
    report = build_compare_report("m", "a", [], [], min_gain=0.0, min_labels=10)
    compare_figure(report).savefig(Path(tmp_path / "empty.png"), format="png")
    assert imread(tmp_path / "empty.png").shape[:2] == (880, 1540)


def test_the_picture_places_promotions_canary_steps_and_aborts_at_their_stream_positions():
    from monitor.compare_report import build_compare_report

    entries = [
        (f"{1000 * i}-0", {"time": float(i), "stream_position": 100.0 * i, "log_loss": 0.4}) for i in range(1, 6)
    ]
    audit = [
        AuditEntry.from_stream("1500-0", {"action": "canary", "arm": "fast", "percent": "25", "metrics": "{}"}),
        AuditEntry.from_stream("2500-0", {"action": "canary_abort", "arm": "fast", "metrics": "{}"}),
        AuditEntry.from_stream(
            "3100-0", {"action": "promote_arm", "to": "fast", "metrics": '{"stream_position": 333}'}
        ),  # recorded position wins over the time
        AuditEntry.from_stream("9-0", {"action": "pin", "to": "2", "metrics": "{}"}),  # not a move
    ]
    report = build_compare_report("m", "fast", entries, audit, min_gain=0.0, min_labels=10)
    assert report.moves == [
        ("canary", 200.0, "fast 25 %"),
        ("canary_abort", 300.0, "fast aborted"),
        ("promote_arm", 333.0, "→fast"),
    ]
