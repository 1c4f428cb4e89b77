"""``livelearn up``: the whole pipeline on one machine, with a live view.

Starts a :class:`~streaming.local.stack.LocalStack` (a Tansu broker and a redis-server on free loopback ports unless
pointed at existing ones, the topics, a learner, the monitor and the prediction API as child processes, and the
replay of the dataset, optionally with a burst of flipped labels, to watch a rollback happen, and with its labels
sent on their own later, to watch the label join: :func:`label_settings`) and draws the live view. Ctrl+C (or
SIGTERM, or SIGHUP) stops the stack in order: the replay, then serve and the monitor, then the learner (which writes
its final snapshot), then the servers; no process is left behind. Every child and server runs in a session of its
own, so a terminal's Ctrl+C reaches only ``up``, and a second Ctrl+C while stopping does not cut the learner's final
snapshot short.

While the stack runs, ``up`` says where it is in the stack file (:data:`~streaming.cli.options.UP_FILE`,
``.livelearn/up.toml`` in the directory it runs in, mode 0600) and prints the command for a second terminal: the
livelearn commands run in that directory then reach this stack with no flag. The file goes when the stack begins
to stop (Ctrl+C, SIGTERM, SIGHUP, a child that exits); one left by a killed ``up`` names a process that is gone,
and the commands ignore it (the next ``up`` replaces it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from snapshotter.connection import redact_url
from streaming.cli.live_view import ViewState
from streaming.cli.options import UP_FILE, UpFile, process_status, read_up_file, up_file_text
from streaming.config import Settings, load_settings
from streaming.events import Event, Label
from streaming.local.dataset import DATASET_PATH, read_events
from streaming.local.replay import LabelDelay, flip_labels
from streaming.local.stack import LocalStack

__all__ = ["label_settings", "run_up"]

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


def _events(
    csv_path: Path | None, flip_after: int | None, flip_count: int | None, labels: LabelDelay | None = None
) -> Iterator[Event | Label]:
    """The events to replay: the CSV (default: the bundled dataset), with the drift demo's flipped labels, and each
    label on its own later (``labels``)."""
    events = read_events(csv_path or DATASET_PATH)
    if flip_after is not None:
        events = flip_labels(events, flip_after, flip_count)
    return events if labels is None else labels.apply(events)


def label_settings(settings: Settings, labels: LabelDelay | None) -> tuple[dict[str, str], str | None]:
    """What the stack's settings need for its learner to join the labels that ``labels`` sends later, with a warning
    when the wait set is too short.

    Unless ``settings`` (the user's) set them: ``label_wait`` twice the longest delay (at least a minute), so a
    label is never late, and ``labels_topic`` the events topic's name with ``.labels``.

    Examples
    --------
    >>> label_settings(Settings(events_topic="shop"), LabelDelay.parse("30s..10m"))
    ({'label_wait': '1200', 'labels_topic': 'shop.labels'}, None)
    >>> label_settings(Settings(label_wait=300, labels_topic="orders"), LabelDelay.parse("30s..10m"))[1]
    'LIVELEARN_LABEL_WAIT is 300s: labels later than that are late, never learned (the longest delay is 600s)'
    >>> label_settings(Settings(), None)
    ({}, None)
    """
    if labels is None:
        return {}, None
    overrides, warning = {}, None
    wait = settings.labels.wait_seconds
    if wait == 0:
        overrides["label_wait"] = f"{max(2 * labels.max_seconds, 60.0):g}"
    elif wait <= labels.max_seconds:
        warning = (
            f"LIVELEARN_LABEL_WAIT is {wait:g}s: labels later than that are late, never learned "
            f"(the longest delay is {labels.max_seconds:g}s)"
        )
    if settings.labels.topic is None:
        overrides["labels_topic"] = f"{settings.events_topic}.labels"
    return overrides, warning


def _watch(console: Console, stack: LocalStack, *, exit_when_done: bool, drift: str) -> None:
    """The live view, until Ctrl+C (or, with ``exit_when_done``, until the replay is learned); a child that exits on
    its own ends ``up``."""
    view = ViewState(stack.store, stack.settings)
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            done = " (done)" if stack.replayed else ""
            labels = f" + {stack.labels_sent:,} labels" if stack.labels_sent else ""
            live.update(view.frame({"replay": f"{stack.sent:,} sent{labels}{done}{drift}", "stop": "Ctrl+C"}))
            exited = stack.exited()
            if exited is not None:
                command, code = exited
                raise SystemExit(f"{command} exited with code {code}; see {stack.workdir}/{command}.log")
            if exit_when_done and stack.learned_replay():
                return
            time.sleep(0.5)


def _up_file_of(stack: LocalStack) -> UpFile:
    """What the stack file says about ``stack`` (and this process)."""
    settings = {
        "model_name": stack.settings.model_name,
        "kafka_bootstrap": stack.bootstrap,
        "redis_url": stack.redis_url,
    }
    status = process_status(os.getpid())
    started = status[1] if status is not None else None
    return UpFile(settings, os.getpid(), started, f"http://127.0.0.1:{stack.api_port}", str(stack.workdir))


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` (mode 0600, in a directory of mode 0700 that git ignores) in one step: a reader sees the old
    file or the new one, never a part."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by livelearn up: nothing here belongs in git\n*\n")
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(descriptor, 0o600)  # even if an earlier partial file had another mode
            file.write(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _other_up(path: Path) -> UpFile | None:
    """The running ``up`` (not this one) whose stack file is at ``path``, if any."""
    try:
        other = read_up_file(path)
    except ValueError:
        return None  # not a stack file any more: replaced
    return other if other is not None and other.running and other.pid != os.getpid() else None


def _second_terminal() -> str:
    """The exact command for a second terminal: this directory, then this installation's ``livelearn``."""
    here = Path.cwd()
    command = Path(sys.executable).with_name("livelearn")
    if not command.exists():  # not an installed script (a checkout run with python -m): the same interpreter
        return f"cd {shlex.quote(str(here))} && {shlex.quote(sys.executable)} -m streaming versions list"
    shown = command.relative_to(here) if command.is_relative_to(here) else command
    return f"cd {shlex.quote(str(here))} && {shlex.quote(str(shown))} versions list"


def _remove_own(path: Path) -> None:
    """Remove the stack file at ``path`` if this process wrote it, and its directory if nothing else is left."""
    with contextlib.suppress(ValueError, OSError):
        up = read_up_file(path)
        if up is not None and up.pid == os.getpid():
            path.unlink(missing_ok=True)
        if [entry.name for entry in path.parent.iterdir()] == [".gitignore"]:  # only what _write_private added
            (path.parent / ".gitignore").unlink()
            path.parent.rmdir()


def _publish(console: Console, stack: LocalStack, path: Path) -> None:
    """Write the stack file, unless another running ``up`` wrote it first, and say how to use it."""
    other = _other_up(path)
    if other is not None:
        message = (
            f"{UP_FILE} belongs to livelearn up pid {other.pid}: the commands run here reach that stack; "
            f"pass --redis-url {redact_url(stack.redis_url)} to reach this one"
        )
        console.print(Text(message), soft_wrap=True)
        return
    try:
        _write_private(path, up_file_text(_up_file_of(stack)))
    except OSError as exc:
        console.print(Text(f"cannot write {path} ({exc.strerror or exc}); pass --redis-url to the commands"))
        return
    # soft wrap: a narrow terminal folds the line, the command copied from it is still one line
    console.print(Text(f"second terminal: {_second_terminal()}", style="bold"), soft_wrap=True)
    console.print(Text(f"(livelearn commands run there find this stack in {UP_FILE} until up stops)"))


@contextlib.contextmanager
def _published(console: Console, stack: LocalStack) -> Iterator[None]:
    """While the body runs, the stack file says where ``stack`` is; it is removed when the body ends, however it
    ends (even a Ctrl+C in the middle of writing it)."""
    path = Path.cwd() / UP_FILE
    try:
        _publish(console, stack, path)
        yield
    finally:
        _remove_own(path)


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
    labels: LabelDelay | None = None,
    challengers: list[str] | None = None,
) -> None:
    # a bad setting fails before any server starts
    settings = load_settings(kafka_bootstrap=bootstrap, redis_url=redis_url)
    console = Console()
    overrides, warning = label_settings(settings, labels)
    shadow = {}  # the children's environment: challengers learned in shadow, compared by visitor type too
    if challengers:
        shadow["LIVELEARN_CHALLENGERS"] = json.dumps(challengers)
        if not settings.arms.segments:
            shadow["LIVELEARN_COMPARE_SEGMENTS"] = json.dumps(["VisitorType"])
    if warning is not None:
        console.print(Text(f"warning: {warning}"), soft_wrap=True)
    # a `kill` or a closed terminal stops in order, as Ctrl+C does — Ctrl+C too when `up` was started with SIGINT
    # ignored (a background job of a shell without job control: Python then leaves it ignored)
    _on_signals(_interrupt, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    stack = LocalStack(
        bootstrap=bootstrap,
        redis_url=redis_url,
        partitions=partitions,
        api_port=api_port,
        # the children take up's model name, whatever a stack file in this directory says
        environ={**_DEMO_DEFAULTS, **os.environ, "LIVELEARN_MODEL_NAME": settings.model_name, **shadow},
        events=_events(csv_path, flip_labels_after, flip_count, labels),
        rate=rate or None,
        overrides=overrides,
        on_stop=_stopping(console),
    )
    with contextlib.suppress(KeyboardInterrupt), stack:  # Ctrl+C: the stack stops in order, then `up` reports
        port = stack.api_port
        console.print(f"Kafka {stack.bootstrap} · Redis {redact_url(stack.redis_url)} · logs in {stack.workdir}")
        console.print(
            f"API http://127.0.0.1:{port}/docs · metrics http://127.0.0.1:{port}/metrics · admin token {stack.token}"
        )
        drift = "" if flip_labels_after is None else f" · labels flipped from event {flip_labels_after:,}"
        if labels is not None:
            drift += f" · labels {labels} later to {stack.settings.labels.topic}"
        with _published(console, stack):
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
