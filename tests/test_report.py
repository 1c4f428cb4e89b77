"""``livelearn report`` and ``livelearn audit``: the incident story they tell.

The report is checked on the data it draws (:func:`monitor.report.build_report` and its parts) against the
audit log and the versions, and the picture only for being a real PNG of the expected size. One scenario runs
real processes (a stuck labeller through a learner and a monitor on a real broker and redis-server); the rest
builds reports from hand-made partial inputs, with no servers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import fakeredis
import numpy as np
from conftest import guard_caught_up, produce, settings_env, status_of, store_for, wait_for
from matplotlib.image import imread

import monitor.report as report_module
from monitor.report import build_report, draw_report, incident_spans, read_report, served_versions, write_report
from snapshotter.audit import ROUTINE_ACTIONS, AuditEntry, read_audit
from snapshotter.codec import VersionMeta
from snapshotter.incidents import position_of
from snapshotter.states import version_states
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.local.dataset import read_events

STUCK_AT, STUCK_FOR = 4000, 2000  # labels all True for events 4,000-5,999
PATIENCE_EVENTS = (
    200  # incident_patience (2) blocks of history_every_events (100): where learning is held at the latest
)
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}\b")


def livelearn(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "streaming", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def assert_png(path: Path, width: int = 1540, height: int = 880) -> None:
    """A PNG of the report's size (14 x 8 inches at 110 dpi) with something drawn on it."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 50  # lines, text, shading: not a blank page


def test_a_stuck_labeller_reads_as_one_incident_rolled_back_to_before_it(make_settings, learners, tmp_path):
    events = [
        dataclasses.replace(e, label=True) if STUCK_AT <= i < STUCK_AT + STUCK_FOR else e
        for i, e in enumerate(read_events(limit=8_000))
    ]
    settings = make_settings(
        snapshot_every_events=250,
        snapshot_every_seconds=3600,
        keep_versions=500,  # every version stays: the positions checked below are exact
        status_interval_seconds=0.2,
        monitor_check_interval_seconds=0.2,
        publish_predictions=False,
    )
    produce(settings, events)
    learner = learners(settings)
    monitor = learners(settings, command="monitor")
    wait_for(lambda: (status_of(settings) or {}).get("stream_position") == len(events), 180, "the end of the stream")
    wait_for(lambda: guard_caught_up(settings), 60, "the monitor to judge every metric sample")
    monitor.terminate()
    learner.terminate()  # the audit log is final from here on
    store = store_for(settings)
    audit = read_audit(store.client, store.keys, routine=True)  # what the report reads: both streams, merged
    (start,) = [e for e in audit if e.action == "incident_start"]
    (end,) = [e for e in audit if e.action == "incident_end"]
    (rollback,) = [e for e in audit if e.action == "rollback"]
    quarantined = {int(n) for n in start.fields["quarantined"].split(",") if n}  # may be none
    report = read_report(store, settings)

    # the incident: from the change point to where the learner resumed, well after the labels came right
    (incident,) = report.incidents
    assert (incident.start, incident.signal, incident.open) == (STUCK_AT, "label_run", False)
    assert incident.end == end.metrics["stream_position"] > STUCK_AT + STUCK_FOR
    assert incident_spans(audit, report.timeline) == report.incidents

    # the rollback: drawn where learning was held, back to a version written before the change point
    (mark,) = [m for m in report.marks if m.action == "rollback"]
    assert mark.position == start.metrics["stream_position"]
    assert STUCK_AT < mark.position <= STUCK_AT + PATIENCE_EVENTS
    assert mark.version == rollback.to_version == int(rollback.fields["serving_to"])
    assert mark.target_position == position_of(store.meta(rollback.to_version)) <= STUCK_AT
    # what it skipped: learned by the abandoned lineage, from the target on to where the lineage resumed
    (skipped,) = report.skipped
    assert skipped[0] == mark.target_position
    assert STUCK_AT < skipped[1] <= mark.position

    # the versions: each at its offsets, in its state now; none of the quarantined ones was ever served
    states = version_states(store)
    assert [(s.number, s.position) for s in report.snapshots] == [(m.number, position_of(m)) for m in store.list()]
    assert {s.number for s in report.snapshots if s.state == "quarantined"} == quarantined == set(store.quarantined())
    assert all(s.position > STUCK_AT for s in report.snapshots if s.state == "quarantined")
    assert {s.number for s in report.snapshots if s.state == "stable"} == set(store.stable_numbers())
    assert "removed" not in {s.state for s in report.snapshots}
    assert {s.number for s in report.snapshots if s.served} == served_versions(audit)
    assert served_versions(audit) and not served_versions(audit) & quarantined
    assert store.serving() in served_versions(audit) and "serving" in states[store.serving()]

    # the samples: one per 100 labelled events; the stuck labeller is a label rate of 1.0 inside the incident
    xs, values = report.timeline.series("accuracy", windowed=True)
    assert len(xs) >= len(events) // 100 - 1 and xs == sorted(xs) and all(0 <= v <= 1 for v in values)
    positions, label_rate = report.timeline.series("label_rate")
    inside = [r for x, r in zip(positions, label_rate, strict=True) if STUCK_AT + 100 < x <= STUCK_AT + STUCK_FOR]
    before = [r for x, r in zip(positions, label_rate, strict=True) if x <= STUCK_AT]
    assert inside and set(inside) == {1.0}
    assert before and max(before) < 0.5
    assert report.threshold == settings.monitor_threshold

    # the picture, from the library and from the command line
    write_report(store, settings, tmp_path / "lib.png")
    assert_png(tmp_path / "lib.png")
    env = settings_env(settings, COLUMNS="250")
    out = tmp_path / "cli.png"
    assert str(out) in livelearn("report", "--out", str(out), env=env).stdout.replace("\n", "")
    assert_png(out)

    # the audit table: full dates, positions, and how serving moved with the rollback; the routine entries only
    # with --routine (the audit stream itself holds the incident, the rollback and the monitor's notices)
    operations = [e for e in audit if e.action not in ROUTINE_ACTIONS]
    assert [e.id for e in read_audit(store.client, store.keys)] == [e.id for e in operations]
    assert {"snapshot", "promote"} <= {e.action for e in audit} and len(operations) < len(audit)
    table = livelearn("audit", "--limit", "1000", "--routine", env=env).stdout
    rows = [line for line in table.splitlines() if DATE.search(line)]
    assert len(rows) == len(audit)  # every entry's date and time, on one line each
    short = livelearn("audit", "--limit", "1000", env=env).stdout
    assert len([line for line in short.splitlines() if DATE.search(line)]) == len(operations)
    today = dt.datetime.fromtimestamp(rollback.time, dt.UTC).strftime("%Y-%m-%d")
    (rollback_row,) = [row for row in rows if "│ rollback " in row]
    assert today in rollback_row
    assert f"{rollback.fields['serving_from']}→{rollback.fields['serving_to']}" in rollback_row
    assert f" {mark.position:.0f} " in rollback_row
    (end_row,) = [row for row in rows if "│ incident_end " in row]
    assert f" {incident.end:.0f} " in end_row
    as_json = json.loads(livelearn("audit", "--json", "--limit", "1000", "--routine", env=env).stdout)
    assert [e["id"] for e in as_json] == [e.id for e in audit]


# -- partial inputs, no servers ----------------------------------------------------------------------------------
T0 = 1_700_000_000.0  # seconds


def sample(position: float, **fields: float) -> tuple[str, dict[str, float]]:
    """A history entry recorded at T0 + position / 1000 s."""
    at = T0 + position / 1000
    return f"{int(at * 1000)}-0", {"time": at, "stream_position": position, "scored": position, **fields}


def entry(
    at: float, action: str, frm: object = "", to: object = "", metrics: dict | None = None, **fields: str
) -> AuditEntry:
    raw = {
        "action": action,
        "actor": "test",
        "from": str(frm),
        "to": str(to),
        "metrics": json.dumps(metrics or {}),
        **fields,
    }
    return AuditEntry.from_stream(f"{int((T0 + at / 1000) * 1000)}-0", raw)


def version(number: int, position: int, **extra: object) -> VersionMeta:
    return VersionMeta(
        number=number,
        created_at=T0,
        writer="test",
        lease_token=0,
        events_seen=position,
        events_learned=position,
        offsets={"events": {"0": position}},
        metrics={},
        parent=None,
        spec={},
        format_version=1,
        sha256="",
        size_bytes=0,
        extra=dict(extra),
    )


def test_an_empty_model_draws_an_empty_report(tmp_path):
    settings = Settings(model_name="nothing-yet")
    store = VersionStore.for_settings(fakeredis.FakeRedis(), settings)
    report = read_report(store, settings)
    assert (report.timeline.positions, report.snapshots, report.incidents, report.marks) == ([], [], [], [])
    write_report(store, settings, tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")


def test_partial_data_draws_what_is_known(tmp_path):
    settings = Settings(model_name="partial")
    samples = [
        ("1-0", {"events_seen": 100.0, "accuracy": 0.7, "samples": 100.0}),  # before stream positions were recorded
        *(sample(p, accuracy=0.85, samples=500.0) for p in range(200, 1000, 100)),  # before the data signals
        *(sample(p, accuracy=0.8, samples=500.0, label_rate=1.0, pred_rate=0.2) for p in range(1000, 1600, 100)),
    ]
    audit = [
        entry(300, "snapshot", to=1),  # removed by retention: placed by its time
        entry(400, "snapshot", to=2),
        entry(450, "promote", 1, 2),
        entry(800, "snapshot", to=3),
        entry(
            1100,
            "incident_start",
            3,
            2,
            {"stream_position": 1200},
            incident="1",
            change_point="1000",
            signal="label_rate",
            quarantined="3",
        ),
        entry(1100, "rollback", 3, 2, {"stream_position": 1200}, serving_from="2", serving_to="2", incident="1"),
        entry(1250, "manual_rollback", 4, 1, serving_from="2", serving_to="1"),  # an operator's: no position
        entry(1320, "pin", 1, 3),  # forced, at a time between two samples: placed on the next one
        entry(1400, "feature_drift", metrics={"stream_position": 1400, "signal": "feature:PageValues"}),
        entry(99_999, "resume"),  # after the last sample: placed on it
    ]
    versions = [
        version(2, 400),
        version(3, 800),
        version(4, 1300, rollback={"to_version": 2, "skipped_offsets": {"events": {"0": [400, 1200]}}}),
    ]
    states = {2: ["stable", "serving"], 3: ["quarantined:1", "pinned"], 4: ["head"]}
    report = build_report(settings, samples, audit, versions, states)

    assert report.timeline.series("accuracy", windowed=True)[0][:2] == [100.0, 200.0]
    assert report.timeline.series("label_rate") == ([1000.0, 1100.0, 1200.0, 1300.0, 1400.0, 1500.0], [1.0] * 6)
    (incident,) = report.incidents
    assert (incident.start, incident.end, incident.open) == (1000.0, 1500.0, True)  # still open: to the end
    assert [(s.number, s.position, s.state, s.served) for s in report.snapshots] == [
        (1, 300.0, "removed", True),
        (2, 400.0, "stable", True),
        (3, 800.0, "quarantined", True),
        (4, 1300.0, "neither", False),
    ]
    assert [(m.action, m.position, m.version, m.target_position) for m in report.marks] == [
        ("rollback", 1200.0, 2, 400.0),
        ("manual_rollback", 1300.0, 1, 300.0),
        ("pin", 1400.0, 3, None),
        ("feature_drift", 1400.0, None, None),
        ("resume", 1500.0, None, None),
    ]
    assert report.skipped == [(400.0, 1200.0)]
    draw_report(report, tmp_path / "partial.png")
    assert_png(tmp_path / "partial.png")


def test_the_relative_threshold_is_drawn_as_it_evolved(tmp_path):
    settings = Settings(
        model_name="relative",
        monitor_threshold_mode="relative",
        monitor_relative_drop=0.05,
        reference_min_events=200,
        monitor_min_samples=10,
    )
    samples = [sample(p, accuracy=0.9, samples=500.0) for p in (100, 200, 300)]
    samples.insert(2, sample(200, accuracy=0.95, samples=500.0))  # a replay of a block already seen: not learned
    report = build_report(settings, samples, [], [], {})
    positions, values = report.threshold  # known once the reference has seen 200 events
    assert positions == [200.0, 300.0]
    assert [round(v, 6) for v in values] == [0.85, 0.85]
    draw_report(report, tmp_path / "relative.png")
    assert_png(tmp_path / "relative.png")


def test_served_versions_come_from_promotions_pins_unpins_and_rollbacks_serving_moves():
    audit = [
        entry(1, "promote", "", 2),
        entry(2, "pin", 2, 5),
        entry(3, "rollback", 9, 4, serving_from="5", serving_to="5"),  # pinned: serving stayed
        entry(4, "unpin", 5, 7),
        entry(5, "manual_rollback", 9, 3, serving_from="7", serving_to="3"),
        entry(6, "incident_start", 9, 6),  # the lineage's target, not serving
        entry(7, "snapshot", to=8),
    ]
    assert served_versions(audit) == {2, 3, 5, 7}


def test_the_label_delay_is_drawn_on_its_own_axis_when_labels_come_later(tmp_path):
    settings = Settings(model_name="delayed", label_wait="10m")
    samples = [sample(p, accuracy=0.85, samples=500.0, label_rate=0.15, label_delay_s=p / 10) for p in (100, 200, 300)]
    samples.append(sample(400, accuracy=0.85, samples=500.0, label_rate=0.15))  # a block without a joined label
    report = build_report(settings, samples, [], [], {})
    assert report.timeline.series("label_delay_s") == ([100.0, 200.0, 300.0], [10.0, 20.0, 30.0])
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    report_module._rates(ax, report)
    (right,) = [other for other in fig.axes if other is not ax]
    assert right.get_ylabel() == "label delay (s)"
    assert list(right.lines[0].get_ydata()) == [10.0, 20.0, 30.0]
    draw_report(report, tmp_path / "delayed.png")
    assert_png(tmp_path / "delayed.png")


def test_the_report_does_not_mislead_incident_labels_change_points_and_the_segment_involved(tmp_path):
    """Samples judged on an incident's labels are told apart (a stuck-at-0 labeller makes the accuracy *rise*), the
    further guarded metrics are drawn, a metric breach's rollback carries its change point, and a segment incident
    gets its own panel from the samples' label-odds sums."""
    settings = Settings(model_name="honest", monitor_also=["recall:drop=0.5", "precision:drop=0.4"])
    group = "VisitorType=New_Visitor"
    odds = {f"odds:{group}:n": 20.0, f"odds:{group}:pos": 1.0, f"odds:{group}:p": 6.0}
    samples = [
        *(sample(p, accuracy=0.88, recall=0.4, precision=0.75, samples=500.0, **odds) for p in range(100, 1000, 100)),
        *(sample(p, accuracy=0.93, recall=0.1, samples=500.0, incident=1, **odds) for p in range(1000, 1500, 100)),
        *(sample(p, accuracy=0.85, recall=0.15, precision=0.4, samples=500.0) for p in range(1500, 2500, 100)),
    ]
    audit = [
        entry(
            900,
            "incident_start",
            3,
            2,
            {"stream_position": 1000},
            incident="1",
            change_point="900",
            signal="label_odds",
            scope=f"{group}:down",
            quarantined="3",
        ),
        entry(1400, "incident_end", metrics={"stream_position": 1400}, incident="1"),
        entry(2300, "rollback", 6, 4, {"stream_position": 2300, "change_point": 1600}, serving_to="4"),
    ]
    versions = [version(n, 400 * n) for n in range(1, 7)]
    report = build_report(settings, samples, audit, versions, {4: ["stable"]})
    assert report.also == ("recall", "precision")
    assert report.segments == (group,)
    assert report.incidents[0].scope == f"{group}:down"
    (rollback,) = [m for m in report.marks if m.action == "rollback"]
    assert (rollback.position, rollback.version, rollback.target_position, rollback.change_point) == (
        2300.0,
        4,
        1600.0,
        1600.0,
    )
    held = [s["stream_position"] for s in report_module._windowed(report.timeline, "accuracy") if s.get("incident")]
    assert held == [1000.0, 1100.0, 1200.0, 1300.0, 1400.0]
    draw_report(report, tmp_path / "honest.png")
    assert_png(tmp_path / "honest.png", height=880 + 220)  # one more panel: the segment's
