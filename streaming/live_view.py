"""The live terminal view of one model (rich): throughput, rolling quality, versions.

It reads only what the learner publishes to Redis (its status key and the version store), so it
works the same against an embedded stack and a production cluster.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from snapshotter.codec import unpack
from snapshotter.store import VersionStore

__all__ = ["read_status", "render"]

_SPARK = "▁▂▃▄▅▆▇█"


def read_status(store: VersionStore) -> dict[str, Any] | None:
    """The active learner's last published status, or ``None`` when none is fresh."""
    raw = store.client.get(store.keys.status)
    return unpack(raw) if raw is not None else None


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    """Unicode sparkline of ``values`` scaled to [lo, hi].

    >>> sparkline([0.0, 0.5, 1.0])
    '▁▅█'
    """
    span = (hi - lo) or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, max(0, round((v - lo) / span * (len(_SPARK) - 1))))] for v in values)


def render(model: str, status: dict[str, Any] | None, head: int | None, history: list[float],
           extra: dict[str, str]) -> Panel:
    """One frame of the view."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", justify="right")
    table.add_column()
    if status is None:
        table.add_row("learner", Text("waiting for an active learner...", style="yellow"))
    else:
        counters, rolling = status["counters"], status["rolling"]
        age = time.time() - status["last_snapshot_at"] if status.get("last_snapshot_at") else None
        table.add_row("events/s", f"{status['events_per_second']:,.0f}")
        table.add_row("events", f"{counters['events_seen']:,} seen, {counters['events_learned']:,} learned, "
                                f"{counters['dead_lettered']:,} dead-lettered")
        table.add_row("lag", "-" if status.get("lag") is None else f"{status['lag']:,}")
        table.add_row("rolling accuracy", f"{rolling['accuracy']:.4f}  over {rolling['samples']:,} events  "
                                          f"{sparkline(history[-60:], 0.5, 1.0)}")
        table.add_row("rolling F1 / AUC", f"{rolling['f1']:.4f} / {rolling['roc_auc']:.4f}")
        table.add_row("cumulative accuracy", f"{status['cumulative']['accuracy']:.4f}")
        table.add_row("current version", str(head) if head is not None else "-")
        table.add_row("last snapshot", "-" if age is None else f"v{status['head_version']}, {age:.1f}s ago")
        table.add_row("active learner", f"{status['writer']} (lease token {status['lease_token']})")
    for key, value in extra.items():
        table.add_row(key, value)
    return Panel(Group(table), title=f"livelearn · model {model!r}", border_style="green")
