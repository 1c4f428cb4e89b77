"""``livelearn up``: the whole pipeline on one machine, with a live view.

Starts (unless pointed at existing ones) a Tansu broker and a redis-server on free loopback ports,
creates the topics, starts a learner, the monitor and the prediction API as child processes, replays
the dataset into the events topic from a thread (optionally with a burst of flipped labels, to watch a
rollback happen), and draws the live view. Ctrl+C (or SIGTERM, or SIGHUP) stops in order: the replay, then serve and the
monitor, then the learner (which writes its final snapshot), then the servers; no process is left behind. Every
child and server runs in a session of its own, so a terminal's Ctrl+C reaches only ``up``, and a second Ctrl+C
while stopping does not cut the learner's final snapshot short.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from snapshotter.connection import redact_url
from snapshotter.store import open_store
from streaming.cli.live_view import ViewState
from streaming.config import load_settings
from streaming.local.dataset import DATASET_PATH, read_events
from streaming.local.embedded import EmbeddedServer, _die_with_parent, free_port, start_redis, start_tansu
from streaming.local.replay import flip_labels, replay
from streaming.transport import ensure_topics, livelearn_topics, make_producer

__all__ = ["run_up"]

#: Quicker reflexes than the production defaults, so a short replay shows snapshots and a rollback
#: (any of them can be overridden by setting the env var before `livelearn up`).
_DEMO_DEFAULTS = {
    "LIVELEARN_SNAPSHOT_EVERY_EVENTS": "500",
    "LIVELEARN_STATUS_INTERVAL_SECONDS": "0.5",
    "LIVELEARN_MONITOR_CHECK_INTERVAL_SECONDS": "0.5",
    "LIVELEARN_MONITOR_PATIENCE": "2",
}


def _child(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "streaming", command],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


#: The order children are stopped in: what reads the model first, the learner (final snapshot) last.
_STOP_ORDER = (("serve", "monitor"), ("learn",))


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for group in _STOP_ORDER:
        procs = [children[name] for name in group if name in children]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _still_stopping(signum: int, _frame: object) -> None:
    sys.stderr.write("still stopping: the learner is writing its final snapshot\n")


def _hold_signals() -> None:
    """From here on, Ctrl+C and SIGTERM no longer interrupt: the orderly stop runs to its end."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _still_stopping)


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
    servers: list[EmbeddedServer] = []
    children: dict[str, subprocess.Popen[bytes]] = {}
    stop_replay = threading.Event()
    workdir = Path(tempfile.mkdtemp(prefix="livelearn-up-"))
    store = None
    final = None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # a `kill` stops in order, as Ctrl+C does
        signal.signal(signal.SIGHUP, _interrupt)  # and so does closing the terminal
    try:
        if bootstrap is None:
            servers.append(start_tansu())
            bootstrap = servers[-1].address
        if redis_url is None:
            servers.append(start_redis())
            redis_url = f"redis://{servers[-1].address}/0"
        token = os.environ.get("LIVELEARN_API_TOKEN") or secrets.token_urlsafe(16)
        port = api_port or free_port()
        env = {
            **_DEMO_DEFAULTS,
            **os.environ,
            "LIVELEARN_KAFKA_BOOTSTRAP": bootstrap,
            "LIVELEARN_REDIS_URL": redis_url,
            "LIVELEARN_API_TOKEN": token,
            "LIVELEARN_API_PORT": str(port),
        }
        settings = load_settings(kafka_bootstrap=bootstrap, redis_url=redis_url)
        ensure_topics(settings, livelearn_topics(settings, partitions))
        for command in ("learn", "monitor", "serve"):
            children[command] = _child(command, env, workdir / f"{command}.log")
        console.print(f"Kafka {bootstrap} · Redis {redact_url(redis_url)} · logs in {workdir}")
        console.print(
            f"API http://127.0.0.1:{port}/docs · metrics http://127.0.0.1:{port}/metrics · admin token {token}"
        )
        store = open_store(settings)
        progress = {"sent": 0, "done": False}

        def produce() -> None:
            events = read_events(csv_path or DATASET_PATH)
            if flip_labels_after is not None:
                events = flip_labels(events, flip_labels_after, flip_count)
            producer = make_producer(settings, linger_ms=10)
            try:
                progress["sent"] = replay(
                    producer,
                    settings.events_topic,
                    events,
                    rate=rate or None,
                    should_stop=stop_replay.is_set,
                    on_progress=lambda n: progress.__setitem__("sent", n),
                )
            finally:
                producer.close(timeout=5)
                progress["done"] = True

        threading.Thread(target=produce, name="replay", daemon=True).start()
        view = ViewState(store, settings)
        drift = "" if flip_labels_after is None else f" · labels flipped from event {flip_labels_after:,}"
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                extra = {
                    "replay": f"{progress['sent']:,} sent" + (" (done)" if progress["done"] else "") + drift,
                    "stop": "Ctrl+C",
                }
                live.update(view.frame(extra))
                for command, proc in children.items():
                    if proc.poll() is not None:
                        raise SystemExit(f"{command} exited with code {proc.returncode}; see {workdir}/{command}.log")
                status = store.status()
                if (
                    exit_when_done
                    and progress["done"]
                    and status
                    and status.get("lag") == 0
                    and status["stream_position"] >= progress["sent"]
                ):
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        _hold_signals()
        console.print("stopping: replay, serve and monitor, then the learner (final snapshot), then the servers")
    finally:
        _hold_signals()
        stop_replay.set()
        _stop_children(children)
        final = None
        if store is not None and children.get("learn") is not None and children["learn"].returncode == 0:
            with contextlib.suppress(Exception):
                head = store.head()
                final = store.meta(head) if head is not None else None
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()
    if final is not None:
        console.print(f"final snapshot: version {final.number} at {final.events_seen:,} events seen")
    if children and children["learn"].returncode == 0:
        if servers:
            console.print(
                "learner stopped cleanly with a final snapshot; embedded servers stopped (their data is gone)"
            )
    elif children:
        raise SystemExit(f"the learner exited with code {children['learn'].returncode}; see {workdir}/learn.log")
