"""The whole pipeline on one machine as one object: what ``livelearn up`` runs.

A :class:`LocalStack` starts, in this order: a Tansu broker and a redis-server on free loopback ports (unless
given the addresses of running ones), the topics, the version store, a learner, the monitor and the prediction
API as child processes (``python -m streaming learn|monitor|serve``, logs in a new directory), and the replay of
the events into the events topic on a thread (labels sent on their own into the labels topic, if one is set). It
stops in the reverse order: the replay, then serve and the monitor, then the learner (whose final snapshot it
reads), then the servers, so nothing is left behind however far the start got. It is a context manager: started
on entering, stopped on leaving. Every child and server runs in a session of its own and dies with its parent, so a
terminal's Ctrl+C reaches only the process that owns the stack, which stops it in order.

>>> stack = LocalStack(bootstrap="127.0.0.1:9092", redis_url="redis://127.0.0.1:6379/0", environ={})
>>> stack.embedded, stack.learner_code, stack.final
(False, None, None)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol

from snapshotter.codec import VersionMeta
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings, load_settings
from streaming.events import Event, Label
from streaming.local.embedded import die_with_parent, free_port, start_redis, start_tansu
from streaming.local.replay import Replayed, replay
from streaming.transport import Producer, ensure_topics, livelearn_topics, make_producer

__all__ = ["CHILDREN", "Child", "Launcher", "LocalStack", "Server", "start_child"]

#: The child processes, in start order; they stop in reverse: serve and the monitor together, then the learner.
CHILDREN = ("learn", "monitor", "serve")


class Child(Protocol):
    """A started child process: :class:`subprocess.Popen`, or a test's stand-in."""

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class Server(Protocol):
    """A started server: :class:`~streaming.local.embedded.EmbeddedServer`, or a test's stand-in."""

    @property
    def address(self) -> str: ...

    def stop(self) -> None: ...


def start_child(command: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``livelearn <command>`` in a session of its own, dying with its parent, its output appended to ``log_path``."""
    with open(log_path, "ab") as log:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "streaming", command],
            env=dict(env),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets PR_SET_PDEATHSIG, no lock is taken
        )


def create_topics(settings: Settings, partitions: int) -> None:
    """The events topic with ``partitions`` partitions, its dead letters and predictions, and the labels topic when
    set (kept if they exist)."""
    ensure_topics(settings, livelearn_topics(settings, partitions, labels_topic=settings.labels.topic))


def replay_producer(settings: Settings) -> Producer:
    """The replay's producer: a little lingering batches the sends."""
    return make_producer(settings, linger_ms=10)


@dataclasses.dataclass(frozen=True)
class Launcher:
    """How a :class:`LocalStack` starts each part (a test hands in stand-ins)."""

    broker: Callable[[], Server] = start_tansu
    redis: Callable[[], Server] = start_redis
    topics: Callable[[Settings, int], None] = create_topics
    store: Callable[[Settings], VersionStore] = open_store
    child: Callable[[str, Mapping[str, str], Path], Child] = start_child
    producer: Callable[[Settings], Producer] = replay_producer


class _Replay:
    """The events sent to the events topic (labels on their own to the labels topic, if set) on a daemon thread, with
    its progress."""

    def __init__(
        self, producer: Producer, settings: Settings, events: Iterable[Event | Label], rate: float | None
    ) -> None:
        self.sent, self.done = Replayed(0, 0), False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(producer, settings, events, rate), name="replay")
        self._thread.daemon = True  # never holds the process: the stack stops it, and a stop has a time limit

    def _run(self, producer: Producer, settings: Settings, events: Iterable[Event | Label], rate: float | None) -> None:
        try:
            self.sent = replay(
                producer,
                settings.events_topic,
                events,
                labels_topic=settings.labels.topic,
                rate=rate,
                should_stop=self._stop.is_set,
                on_progress=self._progressed,
            )
        finally:
            producer.close(timeout=5)
            self.done = True

    def _progressed(self, sent: Replayed) -> None:
        self.sent = sent

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop sending, and wait (up to ``timeout``) for what was sent to be flushed."""
        self._stop.set()
        self._thread.join(timeout)


class LocalStack:
    """The broker, Redis, the learner, the monitor, the API and the replay, started and stopped in order.

    Building one starts nothing; :meth:`start` (or entering it as a context manager) starts every part in order,
    :meth:`stop` (or leaving it) stops what started, in reverse. There is no example here because starting it
    starts servers and child processes; the module's example builds one without starting it, and
    ``tests/test_local_stack.py`` drives one with stand-ins (:class:`Launcher`).

    Parameters
    ----------
    bootstrap, redis_url
        Addresses of a running broker and Redis (default ``None``: start an embedded one, whose data goes when it
        stops).
    partitions
        Partitions of the events topic (default ``1``).
    api_port
        Port of the prediction API (default: a free one).
    environ
        The children's environment (default: this process's); the stack adds the addresses, the API port and
        the admin token (``LIVELEARN_API_TOKEN`` if set, else a new one).
    events, rate
        What the replay sends, and how fast (events/s; ``None``: as fast as it can). No events (the default): no
        replay. A :class:`~streaming.events.Label` among them goes to the labels topic (the events topic when none
        is set), keyed like its event (:func:`~streaming.local.replay.replay`).
    overrides
        Settings by name, written as in their ``LIVELEARN_*`` variables, that the stack and its children take over
        the environment's and the config file's (default: none): ``livelearn up --label-delay`` sets
        ``label_wait`` and ``labels_topic`` there, so the topic is created and the learner joins the labels.
    workdir
        Where the children's logs go (default: a new temporary directory).
    on_stop
        Called first when the stop begins (before anything stops), with the exception that caused it, if any:
        ``livelearn up`` holds its signals there, so a second Ctrl+C cannot cut the learner's final snapshot short.
    launcher
        How each part is started (default: ``Launcher()``, the real servers, topics, store and child processes).
    stop_timeout
        Seconds a child has to exit after SIGTERM before it is killed (default ``60``).
    """

    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        redis_url: str | None = None,
        partitions: int = 1,
        api_port: int | None = None,
        environ: Mapping[str, str] | None = None,
        events: Iterable[Event | Label] | None = None,
        rate: float | None = None,
        overrides: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        on_stop: Callable[[BaseException | None], None] = lambda _cause: None,
        launcher: Launcher | None = None,
        stop_timeout: float = 60.0,
    ) -> None:
        self._given = bootstrap, redis_url
        #: the broker's and Redis's addresses, as given or started (once started)
        self.bootstrap, self.redis_url = "", ""
        self.partitions = partitions
        self.api_port = api_port or 0
        self.environ = dict(os.environ if environ is None else environ)
        self.token = self.environ.get("LIVELEARN_API_TOKEN") or secrets.token_urlsafe(16)
        self.events, self.rate, self.on_stop = events, rate, on_stop
        self.overrides = dict(overrides or {})
        self.launcher = launcher or Launcher()
        self.stop_timeout = stop_timeout
        #: the servers this stack started (none when given both addresses)
        self.servers: list[Server] = []
        self.children: dict[str, Child] = {}
        self._workdir = workdir
        self.workdir = Path()  #: where the children's logs are (once started)
        #: the learner's final snapshot, read once it stopped cleanly
        self.final: VersionMeta | None = None
        self._settings: Settings | None = None
        self._store: VersionStore | None = None
        self._replay: _Replay | None = None
        self._exits = contextlib.ExitStack()  # each part's stop, pushed as it starts: closed in reverse order
        self._stopping = False

    # -- state -------------------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        """The settings with the stack's addresses (once started)."""
        if self._settings is None:
            raise RuntimeError("the local stack is not started")
        return self._settings

    @property
    def store(self) -> VersionStore:
        """The version store (once started)."""
        if self._store is None:
            raise RuntimeError("the local stack is not started")
        return self._store

    @property
    def embedded(self) -> bool:
        """Whether the stack started a server of its own (its data is gone once the stack stops)."""
        return bool(self.servers)

    @property
    def sent(self) -> int:
        """Events the replay has sent so far."""
        return self._replay.sent.events if self._replay else 0

    @property
    def labels_sent(self) -> int:
        """Labels the replay has sent on their own so far."""
        return self._replay.sent.labels if self._replay else 0

    @property
    def replayed(self) -> bool:
        """Whether the replay has sent (and flushed) every event."""
        return self._replay is not None and self._replay.done

    @property
    def learner_code(self) -> int | None:
        """The learner's exit code; ``None`` while it runs, or if it never started."""
        learner = self.children.get("learn")
        return learner.returncode if learner is not None else None

    def exited(self) -> tuple[str, int] | None:
        """The first child that exited on its own, with its code; ``None`` while every one runs."""
        for name, child in self.children.items():
            code = child.poll()
            if code is not None:
                return name, code
        return None

    def learned_replay(self) -> bool:
        """Whether the replay is done and the learner has learned every event of it (no lag)."""
        status = self.store.status()
        if not self.replayed or not status:
            return False
        return status.get("lag") == 0 and status["stream_position"] >= self.sent

    # -- start and stop ----------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        """Start every part in order; a failure (or Ctrl+C) on the way stops what had started, then propagates."""
        try:
            self._start()
        except BaseException as exc:
            self.stop(exc)
            raise
        return self

    def _start(self) -> None:
        launch, exits = self.launcher, self._exits
        bootstrap, redis_url = self._given
        self.bootstrap = bootstrap if bootstrap is not None else self._start_server(launch.broker).address
        self.redis_url = redis_url if redis_url is not None else f"redis://{self._start_server(launch.redis).address}/0"
        self.api_port = self.api_port or free_port()
        settings = self._settings = load_settings(
            kafka_bootstrap=self.bootstrap, redis_url=self.redis_url, **self.overrides
        )
        launch.topics(settings, self.partitions)
        self._store = launch.store(settings)
        exits.callback(self._read_final)  # once the learner stopped, before the servers
        self.workdir = self._workdir or Path(tempfile.mkdtemp(prefix="livelearn-up-"))
        env = {
            **self.environ,
            "LIVELEARN_KAFKA_BOOTSTRAP": self.bootstrap,
            "LIVELEARN_REDIS_URL": self.redis_url,
            "LIVELEARN_API_TOKEN": self.token,
            "LIVELEARN_API_PORT": str(self.api_port),
            **{f"LIVELEARN_{name.upper()}": value for name, value in self.overrides.items()},
        }
        exits.callback(self._stop_children, ("learn",))  # pushed before they start: stopping none is a no-op
        exits.callback(self._stop_children, ("serve", "monitor"))
        for command in CHILDREN:
            self.children[command] = launch.child(command, env, self.workdir / f"{command}.log")
        if self.events is not None:
            self._replay = _Replay(launch.producer(settings), settings, self.events, self.rate)
            exits.callback(self._replay.stop, 10.0)
            self._replay.start()

    def _start_server(self, start: Callable[[], Server]) -> Server:
        server = start()
        self.servers.append(server)
        self._exits.callback(_stop_server, server)
        return server

    def stop(self, cause: BaseException | None = None) -> None:
        """Stop every part that started, in reverse order (once; later calls do nothing)."""
        if self._stopping:
            return
        self._stopping = True
        self.on_stop(cause)
        self._exits.close()

    def _stop_children(self, names: Iterable[str]) -> None:
        """SIGTERM to each of ``names`` still running, then wait for all of them (killed after ``stop_timeout``)."""
        children = [self.children[name] for name in names if name in self.children]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _read_final(self) -> None:
        if self.learner_code == 0:
            with contextlib.suppress(Exception):  # the store may be gone: the stop goes on
                head = self.store.head()
                self.final = self.store.meta(head) if head is not None else None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(exc)


def _stop_server(server: Server) -> None:
    with contextlib.suppress(Exception):  # a server that will not stop must not keep the others running
        server.stop()
