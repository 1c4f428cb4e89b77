"""``livelearn report``: the story of an incident in one picture (matplotlib, Agg backend, PNG).

Two panels (and one per segment an incident watched) share the stream position (records consumed); everything is
read back from Redis:

* **top** — the guarded rolling metric per metric sample and its threshold (relative mode: a step line as it evolved),
  and the further guarded metrics (``monitor_also``) as thin lines; samples judged on an incident's labels (the sample
  says so) drawn hollow and red — during a stuck-at-0 labeller the rolling accuracy *rises*, and those points are not
  to be believed; a tick per version, coloured by what it is *now* (stable, candidate, quarantined, neither; pale once
  removed), a triangle on those ever served; rollbacks as red lines annotated ``→vN``, an arrow back to the target's
  position and, for a metric breach, its change point (a dotted line: the target is the newest stable version before
  it); incidents shaded from their change point (dashed) to their end; what a rollback skipped hatched; suppressed
  breaches and feature drift as small markers; pins, unpins, freezes and resumes as lines.
* **bottom** — the data signals per block: label rate, predicted-positive rate and mean predicted probability
  (a stuck labeller shows as a label rate of 1.0); with labels that come after their events, the block's mean label
  delay (seconds, right axis).
* **segments** (only when an incident watched one segment: a label-odds incident of ``<feature>=<value>``) — that
  segment's label rate and mean predicted probability per block, from the samples' label-odds sums.

What is drawn is computed first by pure functions of the samples, audit entries (the audit stream and the version
log, merged) and versions (:func:`build_report`); partial data (no samples, a trimmed audit log or version log,
versions removed, samples without newer fields) draws what is known.
Audit entries are placed by the stream position recorded with them, else by their time on the history.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from monitor.prequential import Threshold
from monitor.signals import group_metrics
from snapshotter.audit import AuditEntry, read_audit
from snapshotter.codec import VersionMeta
from snapshotter.incidents import position_of
from snapshotter.states import version_states
from snapshotter.status import MetricSample, read_samples
from snapshotter.store import VersionStore
from streaming.config import GuardSettings, Settings

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Report", "build_report", "draw_report", "incident_segments", "incident_spans", "read_report"]
__all__ += ["served_versions"]
__all__ += ["skipped_ranges", "write_report"]

ROLLBACKS = ("rollback", "manual_rollback")
MARKED = (*ROLLBACKS, "pin", "unpin", "freeze", "resume", "breach_suppressed", "feature_drift")
Series: TypeAlias = tuple[list[float], list[float]]  # (stream positions, values)
Audit: TypeAlias = Sequence[AuditEntry]  # oldest first
Versions: TypeAlias = Sequence[VersionMeta]
States: TypeAlias = Mapping[int, list[str]]  # version → what it is now (snapshotter.states)


@dataclasses.dataclass(frozen=True)
class Timeline:
    """The metric samples as recorded, with their times and stream positions."""

    times: list[float]
    positions: list[float]
    samples: list[MetricSample]

    def place(self, entry: AuditEntry) -> float | None:
        """An audit entry's stream position: recorded with it, else that of the first sample at or after its time."""
        recorded = entry.metrics.get("stream_position")
        if isinstance(recorded, int | float):
            return float(recorded)
        if not self.times:
            return None
        return self.positions[min(bisect.bisect_left(self.times, entry.time), len(self.times) - 1)]

    def series(self, name: str, *, windowed: bool = False) -> Series:
        """The samples' values of field ``name`` (``windowed``: those over a non-empty window)."""
        rows = zip(self.positions, self.samples, strict=True)
        pairs = [(x, s[name]) for x, s in rows if name in s and not (windowed and s.get("samples", 0) == 0)]
        return [x for x, _ in pairs], [v for _, v in pairs]


@dataclasses.dataclass(frozen=True)
class Incident:
    """From the change point (else where it was confirmed) to its end, or the end of the history while open."""

    id: str
    signal: str
    start: float
    end: float
    open: bool
    scope: str = ""  # a label-odds incident's ``<group>:up|down`` (``""``: the stream)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A version at its position; ``state``: what it is now (stable, candidate, quarantined, neither, removed)."""

    number: int
    position: float
    state: str
    served: bool  # serving was moved to it at some time


@dataclasses.dataclass(frozen=True)
class Mark:
    """An audit entry on the stream; ``version``: where it moved the lineage (rollbacks) or serving (pin, unpin);
    ``target_position``: a rollback target's own position (``None``: unknown)."""

    action: str
    position: float
    version: int | None
    target_position: float | None
    change_point: float | None = None  # a metric breach's: where the degradation began


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything the report draws."""

    model: str
    metric: str
    timeline: Timeline
    threshold: float | Series  # absolute mode: the setting; relative mode: its value after each sample
    snapshots: list[Snapshot]
    incidents: list[Incident]
    skipped: list[tuple[float, float]]
    marks: list[Mark]
    also: tuple[str, ...] = ()  # the further guarded metrics (monitor_also), drawn beside the metric
    segments: tuple[str, ...] = ()  # the segments incidents watched (``<feature>=<value>``): a panel each


def timeline_of(entries: Sequence[tuple[str, MetricSample]]) -> Timeline:
    """The history entries as a timeline: a sample's own time (else its entry's), its position (else events seen)."""
    times = [s.get("time", int(i.split("-")[0]) / 1000) for i, s in entries]
    positions = [s.get("stream_position", s.get("events_seen", 0.0)) for _, s in entries]
    return Timeline(times, positions, [s for _, s in entries])


def threshold_steps(timeline: Timeline, settings: GuardSettings | Settings) -> Series:
    """The relative threshold after each sample, learned as the monitor learns it (replayed samples skipped)."""
    rule, scored, steps = Threshold(settings), -1.0, []
    for x, sample in zip(timeline.positions, timeline.samples, strict=True):
        if sample.get("scored", 0.0) > scored:
            scored = sample.get("scored", 0.0)
            rule.observe(sample)
            steps += [(x, value)] if (value := rule.value()) is not None else []
    return [x for x, _ in steps], [v for _, v in steps]


def incident_spans(audit: Audit, timeline: Timeline) -> list[Incident]:
    """The incidents whose start is still in the audit log."""
    ends = {e.fields.get("incident", ""): timeline.place(e) for e in audit if e.action == "incident_end"}
    spans = []
    for entry in (e for e in audit if e.action == "incident_start"):
        key, change = entry.fields.get("incident", ""), entry.fields.get("change_point", "")
        start = float(change) if change.isdigit() else timeline.place(entry)
        end = next((x for x in (ends.get(key), max(timeline.positions, default=None), start) if x is not None), None)
        if start is not None and end is not None:
            signal, scope = entry.fields.get("signal", ""), entry.fields.get("scope", "")
            spans.append(Incident(key, signal, start, max(end, start), key not in ends, scope))
    return spans


def incident_segments(incidents: Sequence[Incident]) -> tuple[str, ...]:
    """The segments (``<feature>=<value>``) incidents watched, in order of first appearance (``all`` is the stream).

    >>> incident_segments([Incident("1", "label_odds", 0, 1, False, "VisitorType=New_Visitor:down"),
    ...                    Incident("2", "label_odds", 2, 3, False, "all:up"), Incident("3", "label_run", 4, 5, False)])
    ('VisitorType=New_Visitor',)
    """
    groups = (incident.scope.rpartition(":")[0] for incident in incidents if incident.scope)
    return tuple(dict.fromkeys(group for group in groups if group and group != "all"))


def served_versions(audit: Audit) -> set[int]:
    """Every version serving was moved to: by a promotion, a pin or an unpin, or with a rollback."""
    served = {e.to_version for e in audit if e.action in ("promote", "pin", "unpin") and e.to_version is not None}
    return served | {int(e.fields["serving_to"]) for e in audit if e.fields.get("serving_to", "").isdigit()}


def skipped_ranges(versions: Versions) -> list[tuple[float, float]]:
    """The stream ranges rollbacks skipped (learned by the abandoned lineage, not by the model it went back to),
    from the target's position on, as recorded with the first version written after each rollback."""
    at, ranges = {m.number: position_of(m) for m in versions}, set()
    for meta in versions:
        rollback: dict[str, Any] = meta.extra.get("rollback") or {}
        bounds = [b for partitions in (rollback.get("skipped_offsets") or {}).values() for b in partitions.values()]
        if bounds:
            start = float(at.get(int(rollback.get("to_version") or 0), sum(b[0] for b in bounds)))
            ranges.add((start, start + sum(b[1] - b[0] for b in bounds)))
    return sorted(ranges)


def snapshots(audit: Audit, versions: Versions, states: States, timeline: Timeline) -> list[Snapshot]:
    """Every version known: placed by its stored offsets, else (removed) by its snapshot entry; with its state."""
    where = {e.to_version: timeline.place(e) for e in audit if e.action == "snapshot" and e.to_version is not None}
    where.update({m.number: float(position_of(m)) for m in versions})
    quarantined = {n for e in audit if e.action == "incident_start" for n in e.fields.get("quarantined", "").split(",")}
    served, known = served_versions(audit), sorted((n, x) for n, x in where.items() if x is not None)
    return [Snapshot(n, x, _state(states.get(n), str(n) in quarantined), n in served) for n, x in known]


def _state(now: list[str] | None, quarantined: bool) -> str:
    if quarantined or any(word.startswith("quarantined") for word in now or []):
        return "quarantined"
    return "removed" if now is None else next((w for w in ("stable", "candidate") if w in now), "neither")


def marks(audit: Audit, timeline: Timeline, at: Mapping[int, float]) -> list[Mark]:
    """The audit entries drawn as marks, placed on the stream; rollbacks with their target's position (``at``)."""
    found = []
    for e in (e for e in audit if e.action in MARKED):
        target = at.get(e.to_version or 0) if e.action in ROLLBACKS else None
        change = e.metrics.get("change_point") if e.action in ROLLBACKS else None
        if (x := timeline.place(e)) is not None:
            found.append(
                Mark(e.action, x, e.to_version, target, float(change) if isinstance(change, int | float) else None)
            )
    return found


def build_report(
    settings: Settings, samples: Sequence[tuple[str, MetricSample]], audit: Audit, versions: Versions, states: States
) -> Report:
    """What the report draws, from the history entries, the audit log, the stored versions and their states now."""
    timeline = timeline_of(samples)
    shots = snapshots(audit, versions, states, timeline)
    guard = settings.guard
    incidents = incident_spans(audit, timeline)
    return Report(
        model=settings.model_name,
        metric=guard.metric,
        timeline=timeline,
        threshold=threshold_steps(timeline, guard) if guard.threshold_mode == "relative" else guard.threshold,
        snapshots=shots,
        incidents=incidents,
        skipped=skipped_ranges(versions),
        marks=marks(audit, timeline, {s.number: s.position for s in shots}),
        also=tuple(rule.metric for rule in guard.rules),
        segments=incident_segments(incidents),
    )


def read_report(store: VersionStore, settings: Settings) -> Report:
    """What the report draws, read from Redis."""
    versions = store.list()
    samples, audit = read_samples(store.client, store.keys), read_audit(store.client, store.keys, routine=True)
    return build_report(settings, samples, audit, versions, version_states(store, [m.number for m in versions]))


def write_report(store: VersionStore, settings: Settings, out: Path) -> None:
    """Draw the report of the store's model into ``out`` (PNG)."""
    draw_report(read_report(store, settings), out)


# -- drawing: x is the stream position; marks sit at a height given as a fraction of the panel ------------------
_STATES = {"stable": "tab:green", "candidate": "goldenrod", "quarantined": "tab:red", "neither": "tab:gray"}
_STATES["removed"] = "gainsboro"
_LINES = {"rollback": ("tab:red", "-"), "manual_rollback": ("tab:red", "--"), "pin": ("tab:purple", "-")}
_LINES |= {"unpin": ("tab:purple", ":"), "freeze": ("black", "-"), "resume": ("black", ":")}
_DOTS = {"breach_suppressed": ("tab:orange", "x"), "feature_drift": ("tab:brown", "d")}
_RATES = {"label_rate": ("tab:green", "label rate"), "pred_rate": ("tab:purple", "predicted-positive rate")}
_RATES["mean_p"] = ("tab:orange", "mean predicted probability")
_ALSO = ("tab:cyan", "tab:olive", "tab:pink", "tab:brown", "tab:gray", "darkblue")


def draw_report(report: Report, out: Path) -> None:
    """The two panels into ``out`` (PNG), each with its legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 + len(report.segments)
    fig = Figure(figsize=(14, 8 + 2 * len(report.segments)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom, *segments = fig.subplots(panels, 1, sharex=True, height_ratios=[3, 1.2, *[1.2] * (panels - 2)])
    for draw in (_incidents, _metric, _snapshots, _rollbacks, _marks):
        draw(top, report)
    _incidents(bottom, report)
    _rates(bottom, report)
    for ax, group in zip(segments, report.segments, strict=True):
        _incidents(ax, report)
        _segment(ax, report, group)
    top.set_title(f"livelearn model {report.model!r}: rolling {report.metric}, versions, rollbacks and incidents")
    (segments or [bottom])[-1].set_xlabel("stream position (records consumed)")
    for ax in (top, bottom, *segments):
        ax.grid(alpha=0.3)
        unique = {label: handle for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
        if unique:
            ax.legend(list(unique.values()), list(unique), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    fig.savefig(out, format="png")


def _text(ax: Axes, x: float, height: float, text: str, colour: str, **style: Any) -> None:
    ax.annotate(text, (x, height), xycoords=("data", "axes fraction"), fontsize=7, color=colour, **style)


def _dots(ax: Axes, xs: list[float], height: float, marker: str, colour: str, **style: Any) -> None:
    ax.plot(xs, [height] * len(xs), marker, color=colour, transform=ax.get_xaxis_transform(), **style)


def _incidents(ax: Axes, report: Report) -> None:
    """Incidents shaded from the change point (dashed) to their end; the ranges rollbacks skipped hatched."""
    for incident in report.incidents:
        label = "incident (still open)" if incident.open else "incident"
        ax.axvspan(incident.start, incident.end, color="tab:red", alpha=0.1, linewidth=0, label=label)
        ax.axvline(incident.start, color="tab:red", linestyle="--", linewidth=1, label="change point")
    for start, end in report.skipped:
        ax.axvspan(start, end, facecolor="none", edgecolor="silver", hatch="//", lw=0, label="skipped (rollback)")


def _metric(ax: Axes, report: Report) -> None:
    """The rolling metric per sample and the threshold; each incident's signal named at its start."""
    xs, ys = report.timeline.series(report.metric, windowed=True)
    ax.plot(xs, ys, ".-", color="tab:blue", linewidth=1, markersize=2, label=f"rolling {report.metric}")
    for metric, colour in zip(report.also, _ALSO, strict=False):
        if (series := report.timeline.series(metric, windowed=True))[0]:
            ax.plot(*series, color=colour, linewidth=0.8, alpha=0.8, label=f"rolling {metric} (also guarded)")
    held = [
        (x, y) for x, y, s in zip(xs, ys, _windowed(report.timeline, report.metric), strict=True) if s.get("incident")
    ]
    if held:
        ax.plot(*zip(*held, strict=True), "o", mfc="none", color="tab:red", markersize=4,
                label="judged on an incident's labels (not trusted)")  # fmt: skip
    if isinstance(report.threshold, float):
        ax.axhline(report.threshold, color="tab:orange", linestyle="--", label="threshold")
    else:
        ax.step(*report.threshold, where="post", color="tab:orange", linestyle="--", label="threshold (relative)")
    for incident in report.incidents:
        _text(ax, incident.start, 0.99, f" incident {incident.id}: {incident.signal}", "tab:red", va="top")
    ax.set_ylabel("rolling metrics" if report.also else f"rolling {report.metric}")


def _windowed(timeline: Timeline, metric: str) -> list[MetricSample]:
    """The samples :meth:`Timeline.series` keeps with ``windowed`` (over a non-empty window), in order."""
    return [s for s in timeline.samples if s.get("samples", 0) != 0 and metric in s]


def _segment(ax: Axes, report: Report, group: str) -> None:
    """One segment's label rate, mean score, prediction rate, precision and recall per block (its label-odds sums)."""
    rows = [
        (x, group_metrics(s, group)) for x, s in zip(report.timeline.positions, report.timeline.samples, strict=True)
    ]
    blocks = [(x, figures) for x, figures in rows if figures is not None]
    for name, colour, style in _SEGMENT_LINES:
        points = [(x, figures[name]) for x, figures in blocks if name in figures]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=colour, linewidth=1, linestyle=style, label=f"{group}: {name.replace('_', ' ')}")
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel(f"{group}\nper block", fontsize=7)


#: a segment panel's lines: figure, colour, line style
_SEGMENT_LINES = (
    ("label_rate", "tab:green", "-"),
    ("mean_score", "tab:orange", "-"),
    ("pred_rate", "tab:purple", ":"),
    ("precision", "tab:blue", "--"),
    ("recall", "tab:brown", "--"),
)


def _snapshots(ax: Axes, report: Report) -> None:
    """A tick per version coloured by its state now; a triangle on the versions ever served."""
    for state, colour in _STATES.items():
        if xs := [s.position for s in report.snapshots if s.state == state]:
            ax.vlines(xs, 0, 0.04, transform=ax.get_xaxis_transform(), colors=colour, label=f"version {state} now")
    if served := [s.position for s in report.snapshots if s.served]:
        _dots(ax, served, 0.06, "^", "navy", markersize=4, label="version ever served")


def _marks(ax: Axes, report: Report) -> None:
    """Pins, unpins, freezes and resumes as lines named at the bottom; suppressed breaches and feature drift as
    small markers at the top."""
    for m in (m for m in report.marks if m.action not in ROLLBACKS):
        label = m.action.replace("_", " ")
        if m.action in _DOTS:
            _dots(ax, [m.position], 0.96, _DOTS[m.action][1], _DOTS[m.action][0], markersize=5, label=label)
            continue
        colour, style = _LINES[m.action]
        ax.axvline(m.position, color=colour, linestyle=style, linewidth=1.5, label=label)
        _text(ax, m.position, 0.1, f"{label} →v{m.version}" if m.version else label, colour, rotation=90, ha="right")


def _rollbacks(ax: Axes, report: Report) -> None:
    """A line where each rollback happened, annotated ``→vN``, and an arrow back to the target's own position
    (at staggered heights, so that rollbacks close together stay apart)."""
    for i, m in enumerate(m for m in report.marks if m.action in ROLLBACKS):
        colour, style = _LINES[m.action]
        ax.axvline(m.position, color=colour, linestyle=style, linewidth=1.5, label=m.action.replace("_", " "))
        height = 0.88 - 0.05 * (i % 4)
        _text(ax, m.position, height + 0.01, f"→v{m.version or '?'}", colour, va="bottom")
        if m.change_point is not None:
            ax.axvline(m.change_point, color=colour, linestyle=":", linewidth=1, label="change point (metric breach)")
        if m.target_position is not None:
            arrow = {"arrowstyle": "->", "color": colour}
            _text(ax, m.target_position, height, "", colour, xytext=(m.position, height), arrowprops=arrow)
            _dots(ax, [m.target_position], height, "o", colour, mfc="white", label="rollback target")


def _rates(ax: Axes, report: Report) -> None:
    """The data signals per block: label rate, predicted-positive rate and mean predicted probability."""
    for name, (colour, label) in _RATES.items():
        if (series := report.timeline.series(name))[0]:
            ax.plot(*series, color=colour, linewidth=1, label=f"{label} (per block)")
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("rate per block")
    if (delays := report.timeline.series("label_delay_s"))[0]:  # labels that came later (the label join)
        right = ax.twinx()
        right.plot(*delays, color="tab:gray", linewidth=1, linestyle="--", label="mean label delay (s, right)")
        right.set_ylabel("label delay (s)")
        right.legend(loc="lower left", bbox_to_anchor=(1.01, 0), fontsize=7)
