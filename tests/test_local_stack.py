"""The local stack starts its parts in order and stops them in the reverse order (issue 17, item 4): the replay, then
serve and the monitor, then the learner (whose final snapshot is read), then the servers; a failed or interrupted
start stops what had started. Stand-ins record what happens to them: no server, no broker, no child process.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import wait_for

from streaming.events import Event
from streaming.local.stack import Launcher, LocalStack


class Parts:
    """Stand-ins for every part of the stack, recording each start and stop in one log."""

    def __init__(self, *, learner_code: int = 0, ignores_sigterm: tuple[str, ...] = (), fail: str = "") -> None:
        self.log: list[tuple[str, ...]] = []
        self.learner_code, self.ignores_sigterm, self.fail = learner_code, ignores_sigterm, fail
        self.children: dict[str, FakeChild] = {}
        self.env: dict[str, str] = {}
        self.sending = threading.Event()
        self.ports = itertools.count(9001)
        self.store = FakeStore(self.log)

    def launcher(self) -> Launcher:
        return Launcher(
            broker=lambda: self.server("tansu"),
            redis=lambda: self.server("redis"),
            topics=self.topics,
            store=lambda _settings: self.store,
            child=self.child,
            producer=lambda _settings: FakeProducer(self.log, self.sending),
        )

    def server(self, name: str) -> FakeServer:
        self.log.append(("start", name))
        return FakeServer(name, f"127.0.0.1:{next(self.ports)}", self.log)

    def topics(self, _settings: Any, partitions: int) -> None:
        if self.fail == "topics":
            raise RuntimeError("no broker")
        self.log.append(("topics", str(partitions)))

    def child(self, command: str, env: Mapping[str, str], _log_path: Path) -> FakeChild:
        if self.fail == command:
            raise KeyboardInterrupt  # Ctrl+C while the children start
        self.log.append(("start", command))
        self.env = dict(env)
        code = self.learner_code if command == "learn" else 0
        self.children[command] = FakeChild(command, code, command in self.ignores_sigterm, self.log)
        return self.children[command]


class FakeServer:
    def __init__(self, name: str, address: str, log: list[tuple[str, ...]]) -> None:
        self.name, self.address, self.log = name, address, log

    def stop(self) -> None:
        self.log.append(("stop", self.name))


class FakeChild:
    """A child process: exits with ``code`` on SIGTERM (unless it ignores it: then only a kill ends it)."""

    def __init__(self, name: str, code: int, ignores_sigterm: bool, log: list[tuple[str, ...]]) -> None:
        self.name, self.code, self.ignores_sigterm, self.log = name, code, ignores_sigterm, log
        self.returncode: int | None = None
        self.signalled = False

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        assert sig == signal.SIGTERM
        self.log.append(("sigterm", self.name))
        self.signalled = True

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not self.signalled or self.ignores_sigterm:
                raise subprocess.TimeoutExpired(self.name, timeout or 0)
            self.returncode = self.code
            self.log.append(("exited", self.name))
        return self.returncode

    def kill(self) -> None:
        self.log.append(("kill", self.name))
        self.returncode = -9


class FakeStore:
    def __init__(self, log: list[tuple[str, ...]]) -> None:
        self.log = log
        self.lag: int | None = 0

    def head(self) -> int:
        self.log.append(("read final snapshot",))
        return 7

    def meta(self, number: int) -> SimpleNamespace:
        return SimpleNamespace(number=number, events_seen=1234)

    def status(self) -> dict[str, Any]:
        return {"lag": self.lag, "stream_position": 10**9}


class FakeProducer:
    def __init__(self, log: list[tuple[str, ...]], sending: threading.Event) -> None:
        self.log, self.sending = log, sending

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sending.set()

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.log.append(("replay stopped",))


def endless() -> Iterator[Event]:
    """Events for as long as the replay runs: only a stop ends it."""
    for i in itertools.count():
        yield Event(str(i), i, {"x": 1.0}, label=True)


def stack_of(parts: Parts, tmp_path: Path, **options: Any) -> LocalStack:
    options.setdefault("events", endless())
    return LocalStack(
        environ={"LIVELEARN_API_TOKEN": "t0ken"},
        api_port=8123,
        workdir=tmp_path,
        on_stop=lambda cause: parts.log.append(("on_stop", type(cause).__name__)),
        launcher=parts.launcher(),
        stop_timeout=0.01,
        **options,
    )


def test_parts_start_in_order_and_stop_in_the_reverse_order(tmp_path):
    parts = Parts()
    with stack_of(parts, tmp_path, partitions=3) as stack:
        assert parts.sending.wait(30), "the replay never sent"
        started = list(parts.log)
    assert started == [
        ("start", "tansu"),
        ("start", "redis"),
        ("topics", "3"),
        ("start", "learn"),
        ("start", "monitor"),
        ("start", "serve"),
    ]
    assert parts.log[len(started) :] == [
        ("on_stop", "NoneType"),  # first: `up` holds its signals there
        ("replay stopped",),
        ("sigterm", "serve"),  # serve and the monitor together, before the learner
        ("sigterm", "monitor"),
        ("exited", "serve"),
        ("exited", "monitor"),
        ("sigterm", "learn"),
        ("exited", "learn"),
        ("read final snapshot",),  # after the learner wrote it, before Redis goes
        ("stop", "redis"),
        ("stop", "tansu"),
    ]
    assert stack.final is not None and (stack.final.number, stack.final.events_seen) == (7, 1234)
    assert stack.learner_code == 0 and stack.embedded


def test_the_children_get_the_addresses_the_port_and_the_token(tmp_path):
    parts = Parts()
    with stack_of(parts, tmp_path, events=None) as stack:
        assert {k: v for k, v in parts.env.items() if k.startswith("LIVELEARN_")} == {
            "LIVELEARN_KAFKA_BOOTSTRAP": "127.0.0.1:9001",
            "LIVELEARN_REDIS_URL": "redis://127.0.0.1:9002/0",
            "LIVELEARN_API_TOKEN": "t0ken",
            "LIVELEARN_API_PORT": "8123",
        }
        assert (stack.bootstrap, stack.redis_url, stack.settings.redis_url) == (
            "127.0.0.1:9001",
            "redis://127.0.0.1:9002/0",
            "redis://127.0.0.1:9002/0",
        )


def test_given_servers_are_neither_started_nor_stopped(tmp_path):
    parts = Parts()
    with stack_of(parts, tmp_path, bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0", events=None) as stack:
        pass
    assert not stack.embedded
    assert not [entry for entry in parts.log if entry[-1] in ("tansu", "redis")]
    assert parts.log[-1] == ("read final snapshot",)


def test_a_failed_start_stops_what_had_started_and_propagates(tmp_path):
    parts = Parts(fail="topics")
    with pytest.raises(RuntimeError, match="no broker"), stack_of(parts, tmp_path):
        pytest.fail("the stack started")
    assert parts.log == [
        ("start", "tansu"),
        ("start", "redis"),
        ("on_stop", "RuntimeError"),
        ("stop", "redis"),
        ("stop", "tansu"),
    ]


def test_ctrl_c_while_the_children_start_stops_those_started_in_order(tmp_path):
    parts = Parts(fail="serve")
    stack = stack_of(parts, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        stack.start()
    assert parts.log[parts.log.index(("on_stop", "KeyboardInterrupt")) :] == [
        ("on_stop", "KeyboardInterrupt"),
        ("sigterm", "monitor"),
        ("exited", "monitor"),
        ("sigterm", "learn"),
        ("exited", "learn"),
        ("read final snapshot",),
        ("stop", "redis"),
        ("stop", "tansu"),
    ]
    assert stack.sent == 0 and not stack.replayed  # the replay never started


def test_a_learner_that_will_not_stop_is_killed_and_no_final_snapshot_is_read(tmp_path):
    parts = Parts(ignores_sigterm=("learn",))
    with stack_of(parts, tmp_path, events=None) as stack:
        pass
    assert ("kill", "learn") in parts.log
    assert ("read final snapshot",) not in parts.log
    assert parts.log[-2:] == [("stop", "redis"), ("stop", "tansu")]
    assert (stack.final, stack.learner_code) == (None, -9)


def test_a_learner_that_failed_has_no_final_snapshot(tmp_path):
    parts = Parts(learner_code=1)
    with stack_of(parts, tmp_path, events=None) as stack:
        pass
    assert ("read final snapshot",) not in parts.log
    assert (stack.final, stack.learner_code) == (None, 1)


def test_a_child_that_exits_on_its_own_is_named_and_the_stop_happens_once(tmp_path):
    parts = Parts()
    stack = stack_of(parts, tmp_path, events=None)
    with stack:
        assert stack.exited() is None
        parts.children["monitor"].returncode = 3
        assert stack.exited() == ("monitor", 3)
    stack.stop()
    assert parts.log.count(("on_stop", "NoneType")) == 1
    assert ("sigterm", "monitor") not in parts.log  # it had exited: no signal to a process that may be gone


def test_the_replay_is_learned_once_it_is_done_and_the_learner_has_no_lag(tmp_path):
    release = threading.Event()

    def one_event() -> Iterator[Event]:
        yield Event("a", 1, {"x": 1.0}, label=True)
        release.wait(30)  # the replay is not done until the test says so

    parts = Parts()
    with stack_of(parts, tmp_path, events=one_event()) as stack:
        assert parts.sending.wait(30)
        assert not stack.learned_replay()  # the learner has no lag, but the replay goes on
        release.set()
        wait_for(lambda: stack.replayed, 30, "the replay to end")
        assert stack.learned_replay() and stack.sent == 1
        parts.store.lag = 5
        assert not stack.learned_replay()
