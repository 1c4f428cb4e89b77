"""``livelearn up``: the whole pipeline on one machine, with a live view.

Starts (unless pointed at existing ones) a Tansu broker and a redis-server on free loopback ports,
creates the topics, starts a learner as a child process, replays the dataset into the events topic
from a thread, and draws the live view. Ctrl+C stops the replay, sends SIGTERM to the learner (which
writes its final snapshot), then stops the servers: no process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from streaming.config import Settings
from streaming.dataset import DATASET_PATH, read_events
from streaming.embedded import EmbeddedServer, _die_with_parent, start_redis, start_tansu
from streaming.kafka import ensure_topics, make_producer
from streaming.live_view import read_status, render
from streaming.producer import replay
from snapshotter.store import open_store

__all__ = ["run_up"]


def _start_learner(settings: Settings, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "LIVELEARN_REDIS_URL": settings.redis_url, "LIVELEARN_EVENTS_TOPIC": settings.events_topic}
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen([sys.executable, "-m", "streaming", "learn"], env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)


def run_up(*, rate: float, partitions: int, bootstrap: str | None, redis_url: str | None,
           csv_path: Path | None, exit_when_done: bool) -> None:
    console = Console()
    servers: list[EmbeddedServer] = []
    learner: subprocess.Popen | None = None
    stop_replay = threading.Event()
    workdir = Path(tempfile.mkdtemp(prefix="livelearn-up-"))
    try:
        if bootstrap is None:
            servers.append(start_tansu())
            bootstrap = servers[-1].address
        if redis_url is None:
            servers.append(start_redis())
            redis_url = f"redis://{servers[-1].address}/0"
        settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url)
        console.print(f"Kafka {bootstrap} · Redis {redis_url} · learner log {workdir / 'learner.log'}")
        ensure_topics(settings, {settings.events_topic: partitions, settings.dead_letter_topic_name: 1})
        learner = _start_learner(settings, workdir / "learner.log")
        store = open_store(settings)
        progress = {"sent": 0, "done": False}

        def produce() -> None:
            producer = make_producer(settings, linger_ms=10)
            try:
                progress["sent"] = replay(
                    producer, settings.events_topic, read_events(csv_path or DATASET_PATH),
                    rate=rate or None, should_stop=stop_replay.is_set,
                    on_progress=lambda n: progress.__setitem__("sent", n))
            finally:
                producer.close(timeout=5)
                progress["done"] = True

        threading.Thread(target=produce, name="replay", daemon=True).start()
        history: list[float] = []
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                status = read_status(store)
                if status and status["rolling"]["samples"]:
                    history.append(status["rolling"]["accuracy"])
                extra = {"replay": f"{progress['sent']:,} sent" + (" (done)" if progress["done"] else ""),
                         "stop": "Ctrl+C"}
                live.update(render(settings.model_name, status, store.head(), history, extra))
                if learner.poll() is not None:
                    raise SystemExit(f"the learner exited with code {learner.returncode}; "
                                     f"see {workdir / 'learner.log'}")
                if (exit_when_done and progress["done"] and status and status.get("lag") == 0
                        and status["counters"]["events_seen"] + status["counters"]["dead_lettered"]
                        >= progress["sent"]):
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        stop_replay.set()
        if learner is not None and learner.poll() is None:
            learner.send_signal(signal.SIGTERM)
            try:
                learner.wait(30)
            except subprocess.TimeoutExpired:
                learner.kill()
                learner.wait()
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()
    if learner is not None and learner.returncode == 0 and servers:
        console.print("learner stopped cleanly with a final snapshot; embedded servers stopped (their data is gone)")
