"""The live terminal view of one model (rich): throughput, guarded metric against the threshold,
the data's label and prediction rates and any open data-quality incident, each challenger's comparison with the
serving model, head and serving versions, pin and freeze state, the last rollback.

It reads only what learners and the control plane keep in Redis, so it works the same against an
embedded stack and a production cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from monitor.prequential import is_healthy
from snapshotter.audit import read_audit
from snapshotter.status import LearnerStatus, parse_sample
from snapshotter.store import VersionStore
from streaming.config import Settings

__all__ = ["ViewState", "describe_arm", "describe_gain", "describe_labels", "render", "sparkline", "watch"]

_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    """Unicode sparkline of ``values`` scaled to [lo, hi].

    >>> sparkline([0.0, 0.5, 1.0])
    '▁▅█'
    """
    span = (hi - lo) or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, max(0, round((v - lo) / span * (len(_SPARK) - 1))))] for v in values)


class ViewState:
    """What the view remembers between frames: the metric history for the sparkline."""

    def __init__(self, store: VersionStore, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.history: list[float] = []

    def frame(self, extra: dict[str, str] | None = None) -> Panel:
        s, store = self.settings, self.store
        status = store.status()
        metric = s.monitor_metric
        if status and status["rolling"].get("samples"):
            self.history = ([*self.history, status["rolling"][metric]])[-60:]
        rollbacks = read_audit(store.client, store.keys, count=200, actions={"rollback", "manual_rollback"})
        newest: list[tuple[Any, dict[Any, Any]]] = store.client.xrevrange(  # type: ignore[assignment]
            store.keys.history, count=1
        )
        control = {
            "sample": parse_sample(newest[0][1]) if newest else None,
            "incident": store.incident(),
            "quarantined": len(store.quarantined()),
            "head": store.head(),
            "serving": store.serving(),
            "pinned": store.pinned(),
            "frozen": store.client.exists(store.keys.frozen) == 1,
            "last_rollback": rollbacks[-1] if rollbacks else None,
        }
        return render(s, status, control, self.history, extra or {})


def render(
    settings: Settings,
    status: LearnerStatus | None,
    control: dict[str, Any],
    history: list[float],
    extra: dict[str, str],
) -> Panel:
    """One frame of the view."""
    metric, threshold = settings.monitor_metric, settings.monitor_threshold
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", justify="right")
    table.add_column()
    if status is None:
        table.add_row("learner", Text("waiting for an active learner...", style="yellow"))
    else:
        counters, rolling = status["counters"], status["rolling"]
        value = rolling.get(metric, 0.0)
        healthy = is_healthy(metric, value, threshold)
        table.add_row("events/s", f"{status['events_per_second']:,.0f}")
        table.add_row(
            "events",
            f"{counters['events_seen']:,} seen, {counters['events_learned']:,} learned, "
            f"{counters['dead_lettered']:,} dead-lettered · lag "
            f"{'-' if status.get('lag') is None else format(status['lag'], ',')}",
        )
        table.add_row(
            f"rolling {metric}",
            Text.assemble(
                (f"{value:.4f}", "green" if healthy else "bold red"),
                f" vs threshold {threshold} over {rolling['samples']:,} events  ",
                (sparkline(history, 0.5, 1.0), "green" if healthy else "red"),
            ),
        )
        table.add_row("rolling F1 / AUC", f"{rolling['f1']:.4f} / {rolling['roc_auc']:.4f}")
        labels = status.get("labels")
        if labels:
            table.add_row("labels", describe_labels(labels))
        for name, arm in (status.get("arms") or {}).items():
            table.add_row("challenger", describe_arm(name, arm))
        last_at = status.get("last_snapshot_at")
        age = time.time() - last_at if last_at else None
        table.add_row("last snapshot", "-" if age is None else f"v{status['head_version']}, {age:.1f}s ago")
        held = status.get("held")
        if held:
            table.add_row(
                "held back",
                Text(
                    f"{held['candidates']} version(s) from stream position {held['from_position']:,}: {held['reason']}"
                ),
            )
        table.add_row("active learner", f"{status['writer']} (lease token {status['lease_token']})")
    incident, sample = control.get("incident"), control.get("sample")
    if incident:
        table.add_row(
            "data quality",
            Text(
                f"INCIDENT {incident['id']}: {incident.get('signal')} shifted at stream position "
                f"{incident.get('change_point')}; learning held, rolled back to v{incident.get('target') or '-'}",
                style="bold red",
            ),
        )
    elif sample and "label_rate" in sample:
        table.add_row(
            "data quality",
            f"label rate {sample['label_rate']:.3f} · predicted positive {sample.get('pred_rate', 0.0):.3f} "
            f"(last block) · {control.get('quarantined', 0)} version(s) quarantined",
        )
    pinned = control.get("pinned")
    table.add_row(
        "head / serving",
        f"v{control.get('head') or '-'} / v{control.get('serving') or '-'}"
        + (f"  [pinned to v{pinned}]" if pinned else ""),
    )
    table.add_row(
        "learning",
        Text("FROZEN (scoring only)", style="bold red") if control.get("frozen") else Text("on", style="green"),
    )
    last = control.get("last_rollback")
    table.add_row(
        "last rollback",
        "-"
        if last is None
        else f"{time.strftime('%H:%M:%S', time.localtime(last.time))} v{last.from_version}→v{last.to_version} "
        f"by {last.actor}",
    )
    for key, text in extra.items():
        table.add_row(key, text)
    return Panel(table, title=f"livelearn · model {settings.model_name!r}", border_style="green")


def describe_labels(labels: dict[str, Any]) -> str:
    """The label join in one line: what waits, how late labels come, what became of them.

    >>> figures = {"pending": 120, "oldest_pending_seconds": 95.0, "delay_p50_seconds": 40.0,
    ...            "delay_p90_seconds": 300.0, "matched": 900, "expired": 30, "evicted": 0, "late": 2,
    ...            "orphans": 1, "duplicates": 3, "coverage": 0.968}
    >>> describe_labels(figures).split(" · ")  # doctest: +NORMALIZE_WHITESPACE
    ['120 waiting (oldest 95s)', 'delay p50 40s, p90 300s', '900 joined, 30 expired, 2 late, 3 duplicate, 1 held early',
     'coverage 0.968']
    """
    oldest = labels.get("oldest_pending_seconds")
    p50, p90, coverage = labels.get("delay_p50_seconds"), labels.get("delay_p90_seconds"), labels.get("coverage")
    return (
        f"{labels.get('pending', 0):,} waiting"
        + ("" if oldest is None else f" (oldest {oldest:.0f}s)")
        + (" · delay -" if p50 is None else f" · delay p50 {p50:.0f}s, p90 {p90:.0f}s")
        + f" · {labels.get('matched', 0):,} joined, {labels.get('expired', 0) + labels.get('evicted', 0):,} expired, "
        f"{labels.get('late', 0):,} late, {labels.get('duplicates', 0):,} duplicate, {labels.get('orphans', 0):,} held "
        "early" + ("" if coverage is None else f" · coverage {coverage:.3f}")
    )


def describe_gain(comparison: dict[str, Any]) -> str:
    """A challenger's relative log-loss gain and its confidence interval, in percent (``-``: not known yet).

    >>> describe_gain({"relative_gain": 0.021, "gain_lower": 0.004, "gain_upper": 0.038})
    '+2.1 % [+0.4, +3.8]'
    >>> describe_gain({"relative_gain": 0.0, "gain_lower": None, "gain_upper": None})
    '+0.0 % [-, -]'
    """

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:+.1f}"

    gain = comparison.get("relative_gain")
    if gain is None:
        return "-"
    return f"{percent(gain)} % [{percent(comparison.get('gain_lower'))}, {percent(comparison.get('gain_upper'))}]"


def describe_arm(name: str, arm: dict[str, Any]) -> str:
    """One challenger in one line: its declaration, labels compared, gain over the champion and decision.

    >>> figures = {"declared": "fast:lr=0.05", "learned": 3412, "comparison": {"labels": 3412, "relative_gain": 0.021,
    ...            "gain_lower": 0.004, "gain_upper": 0.038, "decision": "promote", "reason": "..."}}
    >>> describe_arm("fast", figures)
    'fast (lr=0.05): 3,412 labels, gain +2.1 % [+0.4, +3.8], promote'
    >>> twin = {"declared": "twin", "comparison": {"labels": 1, "relative_gain": 0.0, "gain_lower": None,
    ...         "gain_upper": None, "decision": "undecided"}}
    >>> describe_arm("twin", twin)  # the champion's settings: nothing in parentheses; no interval before 2 labels
    'twin: 1 label, gain +0.0 % [-, -], undecided'
    """
    comparison = arm.get("comparison") or {}
    _, _, settings = str(arm.get("declared", name)).partition(":")
    labels = comparison.get("labels", 0)
    return (
        f"{name}{f' ({settings})' if settings else ''}: {labels:,} label{'' if labels == 1 else 's'}, "
        f"gain {describe_gain(comparison)}, {comparison.get('decision', '-')}"
    )


def watch(
    settings: Settings,
    store: VersionStore,
    should_stop: Callable[[], bool],
    extra: Callable[[], dict[str, str]] | None = None,
    console: Console | None = None,
) -> None:
    """Redraw the view twice a second until ``should_stop()`` or Ctrl+C."""
    view = ViewState(store, settings)
    with Live(console=console or Console(), refresh_per_second=4) as live:
        try:
            while not should_stop():
                live.update(view.frame(extra() if extra else None))
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
