"""``livelearn compare --png``: one challenger against the champion over the stream, in one picture (matplotlib, PNG).

Two panels share the stream position (records consumed). Everything comes from the metric history, where every
sample carries each challenger's figures as they stood at that event (``arm:<name>:labels``, ``…:log_loss``,
``…:gain``, ``…:gain_lower``, ``…:gain_upper``, :meth:`streaming.learner.arms.Challengers.sample_fields`):

* **top** — the champion's rolling log loss and the challenger's (each over its own rolling window);
* **bottom** — the challenger's relative log-loss gain over the champion with its anytime-valid confidence band
  (:mod:`monitor.compare`; no band while it is infinite, before 2 labels), the ``compare_min_gain`` line and 0, and
  the first sample where the rule would have said "promote" (``labels >= compare_min_labels`` and the lower bound
  above ``compare_min_gain``) marked. The segments are not in the samples: a segment that blocks a promotion is not
  seen here (``livelearn compare`` shows them).

Both panels shade the blocks a data-quality incident held (the samples' ``incident``) and draw the rollbacks of the
audit log: a rollback makes every arm the target version's, so the comparison goes on from the target's figures.
(:mod:`monitor.report` draws them more fully from the audit log; the two modules are independent layers, so this
one keeps its own two small readers.)

The same conventions as ``livelearn report``: 14 × 8 inches at 110 dpi, Agg, legends right of the panels; what is
drawn is computed first by pure functions of the samples and audit entries (:func:`build_compare_report`).

>>> samples = [("1-0", {"stream_position": 100.0 * i, "log_loss": 0.4, "arm:fast:labels": 100.0 * i,
...             "arm:fast:gain": 0.05, "arm:fast:gain_lower": -0.1 + 0.04 * i}) for i in range(1, 6)]
>>> report = build_compare_report("shop", "fast", samples, [], min_gain=0.0, min_labels=200)
>>> report.promote_at  # the first sample with 200 labels or more and a lower bound above 0
300.0
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from snapshotter.audit import AuditEntry, read_audit
from snapshotter.status import MetricSample, read_samples
from snapshotter.store import VersionStore
from streaming.config import ChallengerSettings

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CompareReport",
    "build_compare_report",
    "compare_figure",
    "first_promotable",
    "held_spans",
    "read_compare_report",
    "write_compare_report",
]

ROLLBACKS = ("rollback", "manual_rollback")
#: The champion alias and the canary split moving (drawn as the moments of the A/B story).
ARM_ACTIONS = ("promote_arm", "canary", "canary_abort")
Series: TypeAlias = tuple[list[float], list[float]]  # (stream positions, values)
Entries: TypeAlias = Sequence[tuple[str, MetricSample]]  # the history's (entry id, sample), oldest first


@dataclasses.dataclass(frozen=True)
class Rollback:
    """A rollback at its stream position; ``to``: the version the lineage went back to."""

    action: str
    position: float
    to: int | None


@dataclasses.dataclass(frozen=True)
class CompareReport:
    """Everything the comparison's picture draws.

    ``lower`` and ``upper`` are aligned with ``gain``'s positions (NaN where the interval was still infinite);
    ``promote_at``: the stream position of the first sample that met the rule (``None``: none did).
    """

    model: str
    arm: str
    min_gain: float
    min_labels: int
    champion_loss: Series
    challenger_loss: Series
    gain: Series
    lower: list[float]
    upper: list[float]
    labels: list[float]
    promote_at: float | None
    held: list[tuple[float, float]]
    rollbacks: list[Rollback]
    moves: list[tuple[str, float, str]] = dataclasses.field(default_factory=list)  # (action, position, text)


def _position(sample: MetricSample) -> float:
    return sample.get("stream_position", sample.get("events_seen", 0.0))


def first_promotable(
    positions: Sequence[float],
    labels: Sequence[float],
    lower: Sequence[float],
    *,
    min_labels: int,
    min_gain: float,
) -> float | None:
    """The first position where ``labels >= min_labels`` and the lower bound is above ``min_gain`` (the rule of
    :class:`monitor.compare.Comparison` without its segments); ``None`` if there is none. NaN never qualifies.

    >>> first_promotable([100, 200, 300], [100, 200, 300], [0.2, 0.0, 0.01], min_labels=150, min_gain=0.0)
    300
    """
    for x, n, low in zip(positions, labels, lower, strict=True):
        if n >= min_labels and low > min_gain:  # (a NaN compares False)
            return x
    return None


def held_spans(entries: Entries) -> list[tuple[float, float]]:
    """The stream ranges whose samples an incident held (``incident`` 1): from the first such sample to the sample
    after the run (the last one, at the end of the history).

    >>> held_spans([("1-0", {"stream_position": p, "incident": float(p in (200, 300))}) for p in (100, 200, 300, 400)])
    [(200.0, 400.0)]
    """
    spans: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for _, sample in entries:
        x = float(_position(sample))
        if sample.get("incident") and start is None:
            start = x
        elif not sample.get("incident") and start is not None:
            spans.append((start, x))
            start = None
        last = x
    if start is not None:
        spans.append((start, last))
    return spans


def _placed(audit: Sequence[AuditEntry], entries: Entries, actions: Sequence[str]) -> list[tuple[AuditEntry, float]]:
    """The audit entries of ``actions``, each at the stream position recorded with it, else at the first sample at or
    after its time."""
    times = [sample.get("time", int(entry_id.split("-")[0]) / 1000) for entry_id, sample in entries]
    positions = [_position(sample) for _, sample in entries]
    found = []
    for entry in (e for e in audit if e.action in actions):
        recorded = entry.metrics.get("stream_position")
        if isinstance(recorded, int | float):
            found.append((entry, float(recorded)))
        elif positions:
            found.append((entry, positions[min(bisect.bisect_left(times, entry.time), len(positions) - 1)]))
    return found


def rollback_marks(audit: Sequence[AuditEntry], entries: Entries) -> list[Rollback]:
    """The rollbacks, each at the stream position recorded with it, else at the first sample at or after its time."""
    return [Rollback(entry.action, at, entry.to_version) for entry, at in _placed(audit, entries, ROLLBACKS)]


def arm_moves(audit: Sequence[AuditEntry], entries: Entries) -> list[tuple[str, float, str]]:
    """Promotions (``→fast``), canary steps (``fast 25 %``) and aborts, placed like the rollbacks."""
    moves = []
    for entry, at in _placed(audit, entries, ARM_ACTIONS):
        f = entry.fields
        if entry.action == "promote_arm":
            text = f"→{f.get('to', '?')}"
        elif entry.action == "canary":
            text = f"{f.get('arm', '?')} {f.get('percent', '?')} %"
        else:
            text = f"{f.get('arm', '?')} aborted"
        moves.append((entry.action, at, text))
    return moves


def build_compare_report(
    model: str,
    arm: str,
    entries: Entries,
    audit: Sequence[AuditEntry],
    *,
    min_gain: float,
    min_labels: int,
) -> CompareReport:
    """What the picture draws, from the history entries (oldest first) and the audit log, for challenger ``arm``."""
    prefix = f"arm:{arm}:"
    champion = [(_position(s), s["log_loss"]) for _, s in entries if "log_loss" in s and s.get("samples", 1) > 0]
    challenger = [(_position(s), s[f"{prefix}log_loss"]) for _, s in entries if f"{prefix}log_loss" in s]
    compared = [s for _, s in entries if f"{prefix}gain" in s]
    positions = [_position(s) for s in compared]
    lower = [s.get(f"{prefix}gain_lower", math.nan) for s in compared]
    labels = [s.get(f"{prefix}labels", 0.0) for s in compared]
    return CompareReport(
        model=model,
        arm=arm,
        min_gain=min_gain,
        min_labels=min_labels,
        champion_loss=([x for x, _ in champion], [v for _, v in champion]),
        challenger_loss=([x for x, _ in challenger], [v for _, v in challenger]),
        gain=(positions, [s[f"{prefix}gain"] for s in compared]),
        lower=lower,
        upper=[s.get(f"{prefix}gain_upper", math.nan) for s in compared],
        labels=labels,
        promote_at=first_promotable(positions, labels, lower, min_labels=min_labels, min_gain=min_gain),
        held=held_spans(entries),
        rollbacks=rollback_marks(audit, entries),
        moves=arm_moves(audit, entries),
    )


def read_compare_report(store: VersionStore, rule: ChallengerSettings, arm: str) -> CompareReport:
    """What the picture draws for challenger ``arm``, read from Redis (``compare_min_gain`` and
    ``compare_min_labels`` from ``rule``: ``settings.arms``)."""
    entries = read_samples(store.client, store.keys)
    audit = read_audit(store.client, store.keys, actions={*ROLLBACKS, *ARM_ACTIONS})
    return build_compare_report(
        store.keys.model_name, arm, entries, audit, min_gain=rule.min_gain, min_labels=rule.min_labels
    )


def write_compare_report(store: VersionStore, rule: ChallengerSettings, arm: str, out: Path) -> None:
    """Draw challenger ``arm``'s comparison of the store's model into ``out`` (PNG)."""
    compare_figure(read_compare_report(store, rule, arm)).savefig(out, format="png")


# -- drawing: x is the stream position --------------------------------------------------------------------------
def compare_figure(report: CompareReport) -> Figure:
    """The two panels, each with its legend (an Agg figure: :meth:`~matplotlib.figure.Figure.savefig` writes it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.4])
    for ax in (top, bottom):
        _held_and_rollbacks(ax, report)
    _losses(top, report)
    _gain(bottom, report)
    top.set_title(f"livelearn model {report.model!r}: challenger {report.arm!r} against the champion")
    bottom.set_xlabel("stream position (records consumed)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        unique = {label: handle for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
        if unique:
            ax.legend(list(unique.values()), list(unique), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    return fig


def _held_and_rollbacks(ax: Axes, report: CompareReport) -> None:
    """The blocks an incident held, shaded; each rollback a red line (an operator's dashed), named at the top."""
    for start, end in report.held:
        ax.axvspan(start, end, color="tab:red", alpha=0.1, linewidth=0, label="learning held (incident)")
    for mark in report.rollbacks:
        style = "-" if mark.action == "rollback" else "--"
        ax.axvline(mark.position, color="tab:red", linestyle=style, linewidth=1.2, label=mark.action.replace("_", " "))
        text = f"→v{mark.to or '?'}"
        ax.annotate(text, (mark.position, 0.98), xycoords=("data", "axes fraction"), fontsize=7, color="tab:red")
    colours = {"promote_arm": ("tab:green", "-"), "canary": ("tab:purple", ":"), "canary_abort": ("tab:orange", "--")}
    for action, position, text in report.moves:
        colour, style = colours[action]
        ax.axvline(position, color=colour, linestyle=style, linewidth=1.2, label=action.replace("_", " "))
        ax.annotate(text, (position, 0.90), xycoords=("data", "axes fraction"), fontsize=7, color=colour)


def _losses(ax: Axes, report: CompareReport) -> None:
    """Both arms' rolling log loss per sample."""
    ax.plot(*report.champion_loss, ".-", color="tab:blue", linewidth=1, markersize=2, label="champion (rolling)")
    label = f"{report.arm} (rolling)"
    ax.plot(*report.challenger_loss, ".-", color="tab:orange", linewidth=1, markersize=2, label=label)
    ax.set_ylabel("rolling log loss")


def _gain_limits(report: CompareReport) -> tuple[float, float]:
    """The gain panel's range: the gains, 0, ``min_gain`` and the band from the first sample with ``min_labels``
    labels on (else the last sample's), with a margin; the band's first samples, tens of times wider, are cut."""
    start = next((i for i, n in enumerate(report.labels) if n >= report.min_labels), len(report.labels) - 1)
    band = [v for v in (*report.lower[max(start, 0) :], *report.upper[max(start, 0) :]) if math.isfinite(v)]
    values = [*report.gain[1], 0.0, report.min_gain, *band]
    low, high = min(values), max(values)
    margin = max((high - low) * 0.1, 0.005)
    return low - margin, high + margin


def _gain(ax: Axes, report: CompareReport) -> None:
    """The relative gain, its confidence band, ``min_gain`` and 0, and the first sample that met the rule."""
    from matplotlib.ticker import PercentFormatter

    positions, gain = report.gain
    ax.fill_between(positions, report.lower, report.upper, color="tab:orange", alpha=0.2, linewidth=0,
                    label="confidence interval (anytime-valid)")  # fmt: skip
    ax.plot(positions, gain, ".-", color="tab:orange", linewidth=1, markersize=2, label="relative log-loss gain")
    ax.axhline(0.0, color="black", linewidth=0.8, label="0: as good as the champion")
    ax.axhline(report.min_gain, color="tab:green", linestyle="--", linewidth=1, label="compare_min_gain")
    if report.promote_at is not None:
        label = f"first promote ({report.min_labels:,}+ labels, lower bound > min_gain)"
        ax.axvline(report.promote_at, color="tab:green", linewidth=1.5, label=label)
        ax.annotate(" promote", (report.promote_at, 0.02), xycoords=("data", "axes fraction"), fontsize=8,
                    color="tab:green")  # fmt: skip
    ax.set_ylim(*_gain_limits(report))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("relative gain over the champion")
