"""``livelearn up``: the whole pipeline on one machine, with a live view.

Starts a :class:`~streaming.local.stack.LocalStack` (a Tansu broker and a redis-server on free loopback ports unless
pointed at existing ones, the topics, a learner, the monitor and the prediction API as child processes, and the
replay of the dataset, optionally with a burst of flipped labels, to watch a rollback happen) and draws the live
view. Ctrl+C (or SIGTERM, or SIGHUP) stops the stack in order: the replay, then serve and the monitor, then the
learner (which writes its final snapshot), then the servers; no process is left behind. Every child and server runs
in a session of its own, so a terminal's Ctrl+C reaches only ``up``, and a second Ctrl+C while stopping does not cut
the learner's final snapshot short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.live import Live

from snapshotter.connection import redact_url
from streaming.cli.live_view import ViewState
from streaming.config import load_settings
from streaming.events import Event
from streaming.local.dataset import DATASET_PATH, read_events
from streaming.local.replay import flip_labels
from streaming.local.stack import LocalStack

__all__ = ["run_up"]

#: Quicker reflexes than the production defaults, so a short replay shows snapshots and a rollback
#: (any of them can be overridden by setting the env var before `livelearn up`).
_DEMO_DEFAULTS = {
    "LIVELEARN_SNAPSHOT_EVERY_EVENTS": "500",
    "LIVELEARN_STATUS_INTERVAL_SECONDS": "0.5",
    "LIVELEARN_MONITOR_CHECK_INTERVAL_SECONDS": "0.5",
    "LIVELEARN_MONITOR_PATIENCE": "2",
}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _still_stopping(signum: int, _frame: object) -> None:
    sys.stderr.write("still stopping: the learner is writing its final snapshot\n")


def _on_signals(handler: Callable[[int, object], None], *signums: signal.Signals) -> None:
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        for signum in signums:
            signal.signal(signum, handler)


def _stopping(console: Console) -> Callable[[BaseException | None], None]:
    """What ``up`` does when the stack begins to stop: from here on Ctrl+C, SIGTERM and SIGHUP no longer interrupt,
    so the orderly stop runs to its end."""

    def hold(cause: BaseException | None) -> None:
        _on_signals(_still_stopping, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        if isinstance(cause, KeyboardInterrupt):
            console.print("stopping: replay, serve and monitor, then the learner (final snapshot), then the servers")

    return hold


def _events(csv_path: Path | None, flip_after: int | None, flip_count: int | None) -> Iterator[Event]:
    """The events to replay: the CSV (default: the bundled dataset), with the drift demo's flipped labels."""
    events = read_events(csv_path or DATASET_PATH)
    return events if flip_after is None else flip_labels(events, flip_after, flip_count)


def _watch(console: Console, stack: LocalStack, *, exit_when_done: bool, drift: str) -> None:
    """The live view, until Ctrl+C (or, with ``exit_when_done``, until the replay is learned); a child that exits on
    its own ends ``up``."""
    view = ViewState(stack.store, stack.settings)
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            done = " (done)" if stack.replayed else ""
            live.update(view.frame({"replay": f"{stack.sent:,} sent{done}{drift}", "stop": "Ctrl+C"}))
            exited = stack.exited()
            if exited is not None:
                command, code = exited
                raise SystemExit(f"{command} exited with code {code}; see {stack.workdir}/{command}.log")
            if exit_when_done and stack.learned_replay():
                return
            time.sleep(0.5)


def run_up(
    *,
    rate: float,
    partitions: int,
    bootstrap: str | None,
    redis_url: str | None,
    csv_path: Path | None,
    exit_when_done: bool,
    flip_labels_after: int | None = None,
    flip_count: int | None = None,
    api_port: int | None = None,
) -> None:
    load_settings(kafka_bootstrap=bootstrap, redis_url=redis_url)  # a bad setting fails before any server starts
    console = Console()
    _on_signals(_interrupt, signal.SIGTERM, signal.SIGHUP)  # a `kill` or a closed terminal stops in order, as Ctrl+C
    stack = LocalStack(
        bootstrap=bootstrap,
        redis_url=redis_url,
        partitions=partitions,
        api_port=api_port,
        environ={**_DEMO_DEFAULTS, **os.environ},
        events=_events(csv_path, flip_labels_after, flip_count),
        rate=rate or None,
        on_stop=_stopping(console),
    )
    with contextlib.suppress(KeyboardInterrupt), stack:  # Ctrl+C: the stack stops in order, then `up` reports
        port = stack.api_port
        console.print(f"Kafka {stack.bootstrap} · Redis {redact_url(stack.redis_url)} · logs in {stack.workdir}")
        console.print(
            f"API http://127.0.0.1:{port}/docs · metrics http://127.0.0.1:{port}/metrics · admin token {stack.token}"
        )
        drift = "" if flip_labels_after is None else f" · labels flipped from event {flip_labels_after:,}"
        _watch(console, stack, exit_when_done=exit_when_done, drift=drift)
    if stack.final is not None:
        console.print(f"final snapshot: version {stack.final.number} at {stack.final.events_seen:,} events seen")
    if stack.learner_code == 0:
        if stack.embedded:
            console.print(
                "learner stopped cleanly with a final snapshot; embedded servers stopped (their data is gone)"
            )
    elif stack.learner_code is not None:
        raise SystemExit(f"the learner exited with code {stack.learner_code}; see {stack.workdir}/learn.log")
