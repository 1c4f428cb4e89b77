"""``livelearn report``: the picture an operator wants after an incident (matplotlib, PNG).

The guarded rolling metric over the stream position (records consumed), the threshold, and vertical
markers at snapshots, rollbacks, pins/unpins and freezes/resumes, all read back from Redis: the
learner's metric history stream and the audit log. Snapshots are placed by their stored offsets, other
audit entries by their time on the history.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from snapshotter.audit import read_audit
from snapshotter.status import read_samples
from snapshotter.store import VersionStore
from streaming.config import Settings

__all__ = ["read_history", "write_report"]

_STYLE = {
    "rollback": ("tab:red", "-", "rollback"),
    "manual_rollback": ("tab:red", "--", "manual rollback"),
    "pin": ("tab:purple", "-", "pin"),
    "unpin": ("tab:purple", ":", "unpin"),
    "freeze": ("black", "-", "freeze"),
    "resume": ("black", ":", "resume"),
}


def read_history(store: VersionStore, metric: str) -> tuple[list[float], list[float], list[float]]:
    """(times, stream positions, metric values) of the learner's metric samples."""
    times, positions, values = [], [], []
    for entry_id, sample in read_samples(store.client, store.keys):
        if metric not in sample or sample.get("samples", 0) == 0:
            continue
        times.append(int(entry_id.split("-")[0]) / 1000)
        positions.append(sample.get("stream_position", sample.get("events_seen", 0.0)))
        values.append(sample[metric])
    return times, positions, values


def write_report(store: VersionStore, settings: Settings, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = settings.monitor_metric
    times, positions, values = read_history(store, metric)
    fig, ax = plt.subplots(figsize=(12, 5), dpi=110)
    ax.plot(positions, values, color="tab:blue", linewidth=1.2, label=f"rolling {metric}")
    ax.axhline(settings.monitor_threshold, color="tab:orange", linestyle="--", label="threshold")

    def x_at(t: float) -> float | None:
        if not times:
            return None
        i = min(bisect.bisect_left(times, t), len(times) - 1)
        return positions[i]

    # snapshots are placed exactly, by the offsets stored with them (while retention keeps them)
    snapshot_at = {m.number: float(sum(sum(p.values()) for p in m.offsets.values())) for m in store.list()}
    labelled: set[str] = set()
    for entry in read_audit(store.client, store.keys):
        x = snapshot_at.get(entry.to_version) if entry.action == "snapshot" and entry.to_version else None
        x = x if x is not None else x_at(entry.time)
        if x is None:
            continue
        if entry.action == "snapshot":
            ax.axvline(
                x, color="tab:green", alpha=0.25, linewidth=0.8, label=None if "snapshot" in labelled else "snapshot"
            )
            labelled.add("snapshot")
        elif entry.action in _STYLE:
            color, style, label = _STYLE[entry.action]
            ax.axvline(x, color=color, linestyle=style, linewidth=1.6, label=None if label in labelled else label)
            labelled.add(label)
            ax.annotate(
                f"{label} →v{entry.to_version}" if entry.to_version else label,
                (x, ax.get_ylim()[0]),
                rotation=90,
                fontsize=7,
                va="bottom",
                ha="right",
                color=color,
            )
    ax.set_xlabel("stream position (records consumed)")
    ax.set_ylabel(metric)
    ax.set_title(f"livelearn model {settings.model_name!r}: rolling {metric}, snapshots, rollbacks, pins")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
