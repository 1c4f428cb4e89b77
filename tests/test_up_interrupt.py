"""Ctrl+C in a real terminal stops ``livelearn up`` in order: the learner's final snapshot is written before the
embedded servers go (they run in sessions of their own, so the terminal's SIGINT does not reach them)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time

import pytest

from snapshotter.store import open_store
from streaming.config import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.first_lane]


@pytest.fixture(autouse=True)
def _in_a_directory_of_its_own(tmp_path, monkeypatch):
    """up's stack file (``.livelearn/up.toml``) lands there, never where other tests' commands would read it."""
    monkeypatch.chdir(tmp_path)


class Terminal:
    """``livelearn up`` on the slave side of a pseudo-terminal, as its controlling terminal."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            os.execve(sys.executable, [sys.executable, "-m", "streaming", "up", *args], env)
        self.output = b""

    def read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the slave side is closed
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            if not self.read(0.2):
                break
        raise AssertionError(f"no {pattern!r} in the terminal:\n{self.text()[-3000:]}")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def finish(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read(0.2):
            pass
        for _ in range(int(timeout * 10)):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"livelearn up did not exit:\n{self.text()[-3000:]}")

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.output.decode(errors="replace"))


@pytest.mark.parametrize("stop", ["ctrl-c", "ctrl-c-twice", "sigterm", "sighup"])
def test_ctrl_c_in_a_terminal_writes_the_final_snapshot_before_the_servers_stop(stop: str) -> None:
    """Ctrl+C (once, or again while stopping), a ``kill`` and a closed terminal's SIGHUP each stop ``up`` in order."""
    terminal = Terminal("--rate", "1500", "--clean")
    try:
        url = terminal.wait_for(r"Redis (redis://127\.0\.0\.1:\d+/0)", 120).group(1)
        store = open_store(load_settings(redis_url=url))
        deadline = time.monotonic() + 120
        seen = 0
        while time.monotonic() < deadline:  # mid-stream: the learner has written versions and goes on
            terminal.read(0.2)
            status = store.status()
            seen = status["counters"]["events_seen"] if status else 0
            if seen >= 1500 and store.head() is not None:
                break
        assert seen >= 1500, terminal.text()[-3000:]
        head_before = store.head()
        assert head_before is not None
        if stop == "sigterm":
            os.kill(terminal.pid, signal.SIGTERM)
        elif stop == "sighup":
            os.kill(terminal.pid, signal.SIGHUP)
        else:
            terminal.type(b"\x03")  # the terminal sends SIGINT to its foreground process group
        if stop == "ctrl-c-twice":
            terminal.wait_for(r"stopping: replay", 30)
            terminal.type(b"\x03")
        code = terminal.finish(120)
    finally:
        if terminal.pid:
            try:
                os.kill(terminal.pid, 0)
            except ProcessLookupError:
                pass
            else:
                os.kill(terminal.pid, signal.SIGKILL)
                os.waitpid(terminal.pid, 0)
        os.close(terminal.fd)
    text = terminal.text()
    assert code == 0, text[-3000:]
    assert "cannot be reached" not in text, text[-3000:]
    final = re.search(r"final snapshot: version (\d+) at ([\d,]+) events seen", text)
    assert final, text[-3000:]
    assert int(final.group(1)) > head_before
    assert int(final.group(2).replace(",", "")) >= seen
    assert "learner stopped cleanly with a final snapshot; embedded servers stopped" in text
