"""``livelearn up``: the whole pipeline on one machine, with a live view.

Starts (unless pointed at existing ones) a Tansu broker and a redis-server on free loopback ports,
creates the topics, starts a learner, the monitor and the prediction API as child processes, replays
the dataset into the events topic from a thread (optionally with a burst of flipped labels, to watch a
rollback happen), and draws the live view. Ctrl+C stops the replay, sends SIGTERM to the children (the
learner writes its final snapshot), then stops the servers: no process is left behind.
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


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in children.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        console.print("stopping...")
    finally:
        stop_replay.set()
        _stop_children(children)
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()
    if children and children["learn"].returncode == 0 and servers:
        console.print("learner stopped cleanly with a final snapshot; embedded servers stopped (their data is gone)")
