"""``livelearn calibrate``: choose the guard's threshold from clean labelled data.

Clean events (a CSV in the bundled dataset's format, or an offset range of one partition of the events topic) go
through the learner's per-event step offline (:func:`~streaming.learner.offline.replay_samples`) with the current
settings; :mod:`monitor.calibration` says what the guard would have done with the metric samples (the rules are
stated there), and this module prints it, as a table or as one JSON document.

>>> threshold_grid(0.829, 0.8, span=0.02)
[0.8, 0.81, 0.82, 0.83, 0.84, 0.85]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from streaming.cli.options import BootstrapOpt, ConfigOpt, JsonOpt, settings_from
from streaming.errors import InputError

if TYPE_CHECKING:
    from streaming.config import Settings
    from streaming.events import Event

__all__ = ["calibrate", "calibration_report", "register", "threshold_grid"]


def threshold_grid(worst: float, *also: float, span: float = 0.05, step: float = 0.01) -> list[float]:
    """Every ``step`` from ``worst - span`` to ``worst + span`` (rounded to ``step``) and ``also``, sorted."""
    centre, count = round(worst / step), round(span / step)
    return sorted({round((centre + k) * step, 10) for k in range(-count, count + 1)} | set(also))


def _counted(events: Iterator[Event], into: list[int], kept: list[Event] | None = None) -> Iterator[Event]:
    for event in events:
        into[0] += 1
        if kept is not None:
            kept.append(event)
        yield event


_GUARD = ("monitor_metric", "monitor_threshold_mode", "monitor_threshold", "monitor_relative_drop",
          "monitor_min_samples", "monitor_patience", "rolling_window", "history_every_events", "learning_rate",
          "incident_label_rate_bound", "incident_prediction_rate_bound", "incident_label_run_probability",
          "incident_patience", "incident_odds_ratio", "incident_odds_threshold", "guard_segments",
          "monitor_also")  # fmt: skip


def calibration_report(samples: list[dict[str, float]], settings: Settings, source: dict[str, Any]) -> dict[str, Any]:
    """Everything ``calibrate`` prints, as one JSON-able document."""
    from monitor.calibration import (
        MARGIN,
        count_breaches,
        distribution,
        relative_view,
        rule_view,
        signal_view,
        suggest_threshold,
    )
    from monitor.prequential import LOWER_IS_BETTER

    metric = settings.monitor_metric
    dist = distribution(samples, settings)
    if dist is None:
        raise InputError(
            f"none of the {len(samples)} metric samples had {settings.monitor_min_samples} events in its rolling "
            "window; calibrate on more labelled events (or lower LIVELEARN_MONITOR_MIN_SAMPLES)"
        )
    suggested = suggest_threshold(dist.worst, metric)
    lower = metric in LOWER_IS_BETTER
    rule = f"{'max' if lower else 'min'} rolling {metric} {'+' if lower else '-'} {MARGIN}, "
    rule += f"{'ceiled' if lower else 'floored'} to 0.01: no judged sample of this data breaches it"
    configured = [settings.monitor_threshold] if settings.monitor_threshold_mode == "absolute" else []
    signals = signal_view(samples, settings)
    doc = {
        "source": source,
        "samples": len(samples),
        "settings": {name: getattr(settings, name) for name in _GUARD},
        "distribution": dataclasses.asdict(dist),
        "suggested_threshold": suggested,
        "rule": rule,
        "current": dataclasses.asdict(count_breaches(samples, settings)),
        "thresholds": [
            dataclasses.asdict(count_breaches(samples, settings, t))
            for t in threshold_grid(dist.worst, suggested, *configured)
        ],
        "relative": dataclasses.asdict(relative_view(samples, settings)),
        "also": [dataclasses.asdict(view) for view in rule_view(samples, settings)],
        "signals": [dataclasses.asdict(s) for s in signals],
        "incidents": sum(s.incidents for s in signals),
    }
    return dict(json.loads(json.dumps(doc), parse_constant=lambda _nan: None))  # JSON-safe: NaN becomes null


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="right")
    return table


def _print(doc: dict[str, Any]) -> None:
    out, s, d, cur, rel = Console(), doc["settings"], doc["distribution"], doc["current"], doc["relative"]
    src, offsets, pct = doc["source"], doc["source"].get("offsets") or {}, d["percentiles"]
    where = src["from"] + (f" (offsets {offsets['first']}..{offsets['last']})" if offsets else "")
    out.print(f"replayed {src['events']:,} events from {where}")
    out.print(
        f"  through the configured model (learning rate {s['learning_rate']:g}, rolling window {s['rolling_window']}):"
        f" {doc['samples']} metric samples, {d['count']} judged (window ≥ {s['monitor_min_samples']} events)\n"
    )
    out.print(f"[bold]rolling {d['metric']}[/bold] over the judged samples")
    out.print("  " + "  ".join(f"{name} {value:.4f}" for name, value in {**pct, "mean": d["mean"]}.items()))
    out.print(f"  worst {d['worst']:.4f} at stream position {d['worst_position']:,}\n")
    out.print(f"[bold]suggested monitor_threshold: {doc['suggested_threshold']:.2f}[/bold]\n  rule: {doc['rule']}\n")
    mode, first = s["monitor_threshold_mode"], cur["first_position"]
    rule = f"threshold {s['monitor_threshold']:g}" if mode == "absolute" else f"drop {s['monitor_relative_drop']:g}"
    out.print(
        f"[bold]current settings[/bold] ({mode}, {rule}, patience {s['monitor_patience']}): {cur['breaching']} "
        f"breaching samples, {cur['confirmed']} rollbacks on this data"
        + (f" (the first at stream position {first:,})" if first is not None else "")
    )
    table = _table("\nrollbacks per threshold on this data", "threshold", "breaching", "rollbacks", "first at", "")
    marks = (("configured", cur["threshold"]), ("suggested", doc["suggested_threshold"]))
    for row in doc["thresholds"]:
        at = "-" if row["first_position"] is None else f"{row['first_position']:,}"
        note = ", ".join(m for m, t in marks if t == row["threshold"])
        table.add_row(f"{row['threshold']:.2f}", str(row["breaching"]), str(row["confirmed"]), at, note)
    out.print(table)
    out.print(
        "[bold]relative mode[/bold]: the healthy level was never learned on this data (too few judged samples)\n"
        if rel["largest_drop"] is None
        else f"[bold]relative mode[/bold]: healthy level {rel['reference']:.4f}, largest drop below it "
        f"{rel['largest_drop']:.4f} (stream position {rel['drop_position']:,}); monitor_relative_drop "
        f"{rel['configured_drop']:g} would roll back {rel['confirmed']} times.\n  [bold]suggested "
        f"monitor_relative_drop: {rel['suggested_drop']:.2f}[/bold] (largest drop + 0.02, ceiled to 0.01; "
        "checked: no rollback)\n"
    )
    if doc["also"]:
        table = _table(
            "further guarded metrics (monitor_also; a breach of any is a breach)",
            *("rule", "healthy level", "worst", "at", "largest drop", "breaching", "suggested drop"),
        )
        table.columns[0].no_wrap = True  # a rule is read whole: recall:drop=0.5
        for view in doc["also"]:
            level, worst, drop, suggested = (
                "-" if v is None else f"{v:.4f}" if i < 3 else f"{v:.2f}"
                for i, v in enumerate((view["level"], view["worst"], view["largest_drop"], view["suggested"]))
            )
            at = "-" if view["worst_position"] is None else f"{view['worst_position']:,}"
            table.add_row(view["rule"], level, worst, at, drop, str(view["breaching"]), suggested)
        out.print(table)
        out.print(
            "largest drop: the furthest a relative rule's metric fell below its healthy level, as a share of it; "
            "suggested drop: that + 0.02, ceiled to 0.01 (the rollbacks above count every rule)\n"
        )
    table = _table(
        f"data signals per block of {s['history_every_events']} labelled events",
        *("signal", "min", "max", "largest deviation", "at", "bound", "incidents"),
    )
    for sig in doc["signals"]:
        low, high, dev = (
            f"{v:.3f}" if v is not None else "-" for v in (sig["minimum"], sig["maximum"], sig["largest_deviation"])
        )
        at = "-" if sig["position"] is None else f"{sig['position']:,}"
        bound = "off" if sig["bound"] is None else f"{sig['bound']:g}"
        table.add_row(sig["signal"], low, high, dev, at, bound, str(sig["incidents"]))
    out.print(table)
    out.print(
        "label_run: the longest run of one label value per block; its deviation and bound are -log10 of the run's "
        "probability at the reference label rate (bound: incident_label_run_probability); label_odds: the highest "
        "label-odds CUSUM after each block, over the stream and every guard segment, either way (bound: "
        "incident_odds_threshold; clean data should stay well below it)"
    )
    if "detection" in doc:
        _print_detection(out, doc["detection"])
    out.print(
        f"[red]{doc['incidents']} data-quality incidents on this data[/red]: if it is clean, the bounds are too tight; "
        "raise incident_label_rate_bound / incident_prediction_rate_bound above the largest deviation, lower "
        "incident_label_run_probability, or raise incident_odds_threshold above the label_odds maximum"
        if doc["incidents"]
        else "no data-quality incident on this data: the incident bounds leave it alone"
    )


def _print_detection(out: Console, found: list[dict[str, Any]]) -> None:
    table = _table(
        "\ntime to detect: label damage from a quarter, half and three quarters into the data (events until an "
        "incident opened or a breach was confirmed)",
        *("damage", "from", "detected after", "by", "change point"),
    )
    for column in (0, 3):
        table.columns[column].no_wrap = True
    for row in found:
        delay = "-" if row["delay"] is None else f"{row['delay']:,}"
        where = "-" if row["change_point"] is None else f"{row['change_point'] - row['start']:+,}"
        table.add_row(row["shift"], f"{row['start']:,}", delay, row["rule"] or "-", where)
    out.print(table)
    out.print(
        "-: not detected within 5,000 events; change point: where the guard placed the damage's start, relative to "
        "it (negative: before it; a rollback goes to the newest stable version at or before it)\n"
    )


def calibrate(
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="CSV or Parquet file of clean labelled sessions (Revenue column).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most this many events.")] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Instead of --csv: read this events topic.")] = None,
    partition: Annotated[int, typer.Option(min=0, help="--topic: the partition to read.")] = 0,
    from_offset: Annotated[int, typer.Option(min=0, help="--topic: first offset.")] = 0,
    to_offset: Annotated[
        int | None, typer.Option(min=1, help="--topic: end offset, exclusive (default: the end).")
    ] = None,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect",
            help="Also measure how soon the guard catches label damage of several kinds and sizes started a "
            "quarter, half and three quarters into the data (replays the data 24 times more).",
        ),
    ] = False,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay clean labelled data offline with the current settings: the guarded metric's range, a threshold it
    never breaches, and the rollbacks the configured and nearby thresholds would have ordered."""
    from streaming.local.dataset import check_columns, read_events

    if (csv_path is None) == (topic is None):
        raise InputError("pass either --csv FILE or --topic NAME (with --from-offset/--to-offset) to calibrate on")
    settings, source = settings_from(config, bootstrap=bootstrap), dict[str, Any]()
    if csv_path is not None:
        check_columns(csv_path)
        events, source["from"] = read_events(csv_path, limit=limit), str(csv_path)
    elif topic is not None:
        if to_offset is not None and to_offset <= from_offset:
            raise InputError(f"--to-offset {to_offset} is not after --from-offset {from_offset}; pass a later one")
        from streaming.events import EventLimits
        from streaming.topic_range import TopicRange, read_topic_range

        read: dict[str, int] = {}
        events = read_topic_range(
            settings.kafka,
            EventLimits.from_settings(settings.limits),
            TopicRange(topic, partition, from_offset, to_offset),
            limit,
            read,
        )
        source.update({"from": f"{topic} partition {partition}", "offsets": read})
    from streaming.learner.offline import replay_samples  # the model and its metrics: only once the input is fine

    count: list[int] = [0]
    kept: list[Event] = []
    samples = list(replay_samples(_counted(events, count, kept if detect else None), settings))
    doc = calibration_report(samples, settings, {**source, "events": count[0]})
    if detect:
        from streaming.learner.detect import time_to_detect

        doc["detection"] = [dataclasses.asdict(found) for found in time_to_detect(kept, settings)]
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print(doc)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
