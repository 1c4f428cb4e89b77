"""The stack file: ``livelearn up`` says where its stack is, and a second terminal's commands find it.

While ``up`` runs, ``.livelearn/up.toml`` in its directory (mode 0600) names the model, the Kafka bootstrap, the
Redis URL and the API, with up's pid; it is gone once ``up`` stops (Ctrl+C, SIGTERM). The commands run in that
directory read it by default; any flag, ``LIVELEARN_*`` variable or config file wins over it, and a file whose
``up`` is gone (killed) is ignored with a one-line notice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from test_up_interrupt import Terminal

from snapshotter.store import open_store
from streaming.cli.options import UP_FILE, UpFile, process_status, up_file_text
from streaming.config import Settings, load_settings

pytestmark = pytest.mark.first_lane

STACK = {"model_name": "shop", "kafka_bootstrap": "127.0.0.1:19092", "redis_url": "redis://127.0.0.1:16379/0"}
DEFAULTS = Settings()


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any livelearn setting (a second terminal's)."""
    return {**{k: v for k, v in os.environ.items() if not k.upper().startswith("LIVELEARN_")}, **extra}


def livelearn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env() if env is None else env,
        timeout=120,
    )


def write_stack_file(directory: Path, *, pid: int | None = None, started: int | None = None, **settings: str) -> Path:
    """A stack file as ``up`` writes it, naming this (running) test process unless told another pid."""
    status = process_status(os.getpid())
    up = UpFile(
        {**STACK, **settings},
        pid=os.getpid() if pid is None else pid,
        started=started if pid is not None or status is None else status[1],
        api="http://127.0.0.1:18000",
        logs=str(directory),
    )
    path = directory / UP_FILE
    path.parent.mkdir()
    path.write_text(up_file_text(up))
    return path


def shown_settings(result: subprocess.CompletedProcess[str]) -> tuple[str, str, str]:
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    return doc["model_name"], doc["kafka_bootstrap"], doc["redis_url"]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- the commands read it --------------------------------------------------------------------------------------
def test_the_commands_read_the_stack_file_by_default(tmp_path):
    write_stack_file(tmp_path)
    result = livelearn("config", "--json", cwd=tmp_path)
    assert shown_settings(result) == tuple(STACK.values())
    assert result.stderr == ""


def test_without_a_stack_file_the_defaults_apply(tmp_path):
    result = livelearn("config", "--json", cwd=tmp_path)
    assert shown_settings(result) == (DEFAULTS.model_name, DEFAULTS.kafka_bootstrap, DEFAULTS.redis_url)


def test_an_operator_command_goes_to_the_stack_files_redis(tmp_path):
    """``versions list`` dials the file's Redis (nothing listens there: the error names it), a flag another."""
    write_stack_file(tmp_path, redis_url="redis://127.0.0.1:2/0")
    by_file = livelearn("versions", "list", cwd=tmp_path)
    assert by_file.returncode == 2 and "cannot reach Redis at redis://127.0.0.1:2/0" in by_file.stderr
    by_flag = livelearn("versions", "list", "--redis-url", "redis://127.0.0.1:1/0", cwd=tmp_path)
    assert by_flag.returncode == 2 and "cannot reach Redis at redis://127.0.0.1:1/0" in by_flag.stderr


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("env", ("shop", "127.0.0.1:19092", "redis://127.0.0.1:1/0")),
        ("grouped env", ("shop", "127.0.0.1:19092", "redis://127.0.0.1:1/0")),
        ("--config", ("mine", "kafka:9092", "redis://127.0.0.1:16379/0")),
        ("LIVELEARN_CONFIG_FILE", ("mine", "kafka:9092", "redis://127.0.0.1:16379/0")),
    ],
)
def test_explicit_settings_win_over_the_stack_file(tmp_path, how, expected):
    """Setting by setting: what is given explicitly wins, the rest still comes from the stack file."""
    write_stack_file(tmp_path)
    config = tmp_path / "mine.toml"
    config.write_text('model_name = "mine"\n[kafka]\nbootstrap = "kafka:9092"\n')
    args, env = ["config", "--json"], clean_env()
    if how == "env":
        env["LIVELEARN_REDIS_URL"] = "redis://127.0.0.1:1/0"
    elif how == "grouped env":
        env["LIVELEARN_REDIS__URL"] = "redis://127.0.0.1:1/0"
    elif how == "--config":
        args += ["--config", str(config)]
    else:
        env["LIVELEARN_CONFIG_FILE"] = str(config)
    assert shown_settings(livelearn(*args, cwd=tmp_path, env=env)) == expected


# -- a file its up no longer stands behind ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["up was killed", "its pid now names another process"])
def test_a_stale_stack_file_is_ignored_with_a_one_line_notice(tmp_path, case):
    if case == "up was killed":
        pid, started = dead_pid(), None
    else:  # this very process, but not started when the file says: the pid was reused
        status = process_status(os.getpid())
        if status is None:
            pytest.skip("no /proc: a reused pid cannot be told apart")
        pid, started = os.getpid(), status[1] + 1
    write_stack_file(tmp_path, pid=pid, started=started)
    result = livelearn("config", "--json", cwd=tmp_path)
    assert shown_settings(result) == (DEFAULTS.model_name, DEFAULTS.kafka_bootstrap, DEFAULTS.redis_url)
    (notice,) = result.stderr.splitlines()
    assert notice.startswith(f"note: ignoring {UP_FILE}: ") and f"pid {pid}" in notice and "gone" in notice


def test_a_file_that_is_not_a_stack_file_is_ignored_with_a_one_line_notice(tmp_path):
    (tmp_path / UP_FILE).parent.mkdir()
    (tmp_path / UP_FILE).write_text('redis_url = "redis://127.0.0.1:16379/0"\n')  # no [up] pid
    result = livelearn("config", "--json", cwd=tmp_path)
    assert shown_settings(result)[2] == DEFAULTS.redis_url
    (notice,) = result.stderr.splitlines()
    assert notice.startswith(f"note: ignoring {UP_FILE}: ")


def test_a_stale_file_says_nothing_when_every_setting_is_given(tmp_path):
    write_stack_file(tmp_path, pid=dead_pid())
    env = clean_env(LIVELEARN_MODEL_NAME="m", LIVELEARN_KAFKA_BOOTSTRAP="k:1", LIVELEARN_REDIS_URL="redis://r:1/0")
    result = livelearn("config", "--json", cwd=tmp_path, env=env)
    assert shown_settings(result) == ("m", "k:1", "redis://r:1/0")
    assert result.stderr == ""


# -- livelearn up writes and removes it ------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_up_writes_the_stack_file_while_it_runs_and_removes_it_when_it_stops(tmp_path, monkeypatch, stop):
    monkeypatch.chdir(tmp_path)  # the terminal's child starts here
    for name in [name for name in os.environ if name.upper().startswith("LIVELEARN_")]:
        monkeypatch.delenv(name)
    path = tmp_path / UP_FILE
    terminal = Terminal("--rate", "1500", "--clean")
    try:
        addresses = terminal.wait_for(r"Kafka (\S+) · Redis (redis://127\.0\.0\.1:\d+/0)", 120)
        port = terminal.wait_for(r"API http://127\.0\.0\.1:(\d+)/docs", 10).group(1)
        command = terminal.wait_for(r"second terminal: (cd .*? versions list)", 10).group(1)

        # the file: up's stack and pid, readable by its owner only, in a directory git ignores
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert (path.parent / ".gitignore").read_text().splitlines()[-1] == "*"
        doc = tomllib.loads(path.read_text())
        assert doc["model_name"] == "default"
        assert (doc["kafka_bootstrap"], doc["redis_url"]) == addresses.groups()
        assert doc["up"]["pid"] == terminal.pid and doc["up"]["api"] == f"http://127.0.0.1:{port}"

        # the command printed, run as printed in a second terminal (no livelearn setting), reaches this stack
        venv_livelearn = Path(sys.executable).with_name("livelearn")
        assert command == f"cd {tmp_path} && {venv_livelearn} versions list"
        store = open_store(load_settings(redis_url=addresses.group(2)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and store.head() is None:
            terminal.read(0.2)
        assert store.head() is not None, terminal.text()[-3000:]
        listed = subprocess.run(
            ["bash", "-c", f"{command} --json"], capture_output=True, text=True, env=clean_env(), timeout=120
        )
        assert listed.returncode == 0, listed.stderr
        numbers = [v["number"] for v in json.loads(listed.stdout)["versions"]]
        assert numbers and set(numbers) <= set(store.numbers()), (numbers, store.numbers())

        if stop == "sigterm":
            os.kill(terminal.pid, signal.SIGTERM)
        else:
            terminal.type(b"\x03")
        terminal.wait_for(r"stopping: replay", 30)
        assert not path.exists()  # gone as soon as the stack begins to stop
        code = terminal.finish(120)
    finally:
        try:
            os.kill(terminal.pid, 0)
        except ProcessLookupError:
            pass
        else:
            os.kill(terminal.pid, signal.SIGKILL)
            os.waitpid(terminal.pid, 0)
        os.close(terminal.fd)
    assert code == 0, terminal.text()[-3000:]
    assert not path.parent.exists()  # nothing left behind in the directory
    assert re.search(r"final snapshot: version \d+", terminal.text()), terminal.text()[-3000:]
