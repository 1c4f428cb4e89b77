"""Command-line options shared by the livelearn commands, each tied to its env var, and the stack file.

Options left unset fall through to the environment, the config file and the defaults, in the
order :func:`streaming.config.load_settings` applies them, with one more source just above the defaults: the
**stack file** (:data:`UP_FILE`, ``.livelearn/up.toml`` in the directory ``livelearn up`` runs in), where a running
``up`` says where its stack is (model name, Kafka bootstrap, Redis URL; its pid, API address and logs), so the
operator commands of a second terminal in that directory reach that stack with no flag at all. Any flag,
``LIVELEARN_*`` variable or config file value of a setting wins over it; a file whose ``up`` is gone is ignored
with a notice.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from streaming.config import Settings

__all__ = [
    "UP_FILE",
    "ActorOpt",
    "BootstrapOpt",
    "ConfigOpt",
    "JsonOpt",
    "MetricsHostOpt",
    "MetricsPortOpt",
    "ModelOpt",
    "ReasonOpt",
    "RedisOpt",
    "TopicOpt",
    "UpFile",
    "WideOpt",
    "process_status",
    "read_up_file",
    "read_up_file_text",
    "settings_from",
    "up_file_text",
]

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", envvar="LIVELEARN_CONFIG_FILE", help="TOML file with settings.")
]
ModelOpt = Annotated[str | None, typer.Option("--model", envvar="LIVELEARN_MODEL_NAME", help="Model name (namespace).")]
BootstrapOpt = Annotated[
    str | None, typer.Option("--bootstrap", envvar="LIVELEARN_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", envvar="LIVELEARN_REDIS_URL", help="Redis URL.")]
TopicOpt = Annotated[str | None, typer.Option("--topic", envvar="LIVELEARN_EVENTS_TOPIC", help="Events topic.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Every column, even wider than the terminal (default: the columns that fit; plain text to a pipe).",
    ),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit log.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who (default: user@host).")]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option("--metrics-port", envvar="LIVELEARN_METRICS_PORT", help="Serve Prometheus metrics on this port."),
]
MetricsHostOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics-host",
        envvar="LIVELEARN_METRICS_HOST",
        help="Address the metrics port binds (default 127.0.0.1; 0.0.0.0: every interface).",
    ),
]


#: Where ``livelearn up`` writes where its stack is, relative to the directory it runs in (and the commands read).
UP_FILE = Path(".livelearn") / "up.toml"
#: The settings the stack file carries (every other one comes from the usual places).
_UP_SETTINGS = ("model_name", "kafka_bootstrap", "redis_url")


@dataclass(frozen=True)
class UpFile:
    """What a stack file says: the stack's settings, and which ``livelearn up`` wrote it.

    Parameters
    ----------
    settings
        ``model_name``, ``kafka_bootstrap`` and ``redis_url`` of the stack.
    pid, started
        The process id of ``up`` and when that process started (Linux: clock ticks after boot from ``/proc``;
        ``None`` elsewhere), so a pid reused by another process is not taken for ``up``.
    api
        The prediction API's address.
    logs
        The directory of the children's logs.

    Examples
    --------
    >>> import os
    >>> UpFile({}, pid=os.getpid(), started=None, api="", logs="").running
    True
    """

    settings: Mapping[str, str]
    pid: int
    started: int | None
    api: str
    logs: str

    @property
    def running(self) -> bool:
        """Whether the ``up`` that wrote the file still runs (a zombie does not)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: it exists
            pass
        status = process_status(self.pid)
        if status is None:  # no /proc: the signal's answer is all there is
            return True
        state, started = status
        return state != "Z" and (self.started is None or started == self.started)


def process_status(pid: int) -> tuple[str, int] | None:
    """The state letter of process ``pid`` and when it started (clock ticks after boot), from ``/proc``; ``None``
    where there is no such process or no ``/proc``.

    Examples
    --------
    >>> import os, sys
    >>> sys.platform != "linux" or process_status(os.getpid())[0] in "RS"
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces and parentheses
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def up_file_text(up: UpFile) -> str:
    """The stack file's text (TOML).

    Examples
    --------
    >>> up = UpFile({"model_name": "default", "redis_url": "redis://127.0.0.1:4002/0"}, pid=42, started=7,
    ...             api="http://127.0.0.1:4003", logs="/tmp/x")
    >>> print(up_file_text(up))
    # Where the stack of `livelearn up` (pid 42) is, for the livelearn commands run in this directory.
    # Written once the stack was up, removed when it stops. A flag, a LIVELEARN_* variable or --config wins over it.
    model_name = "default"
    redis_url = "redis://127.0.0.1:4002/0"
    <BLANKLINE>
    [up]
    pid = 42
    started = 7
    api = "http://127.0.0.1:4003"
    logs = "/tmp/x"
    <BLANKLINE>
    >>> read_up_file_text(up_file_text(up)) == up
    True
    """
    lines = [
        f"# Where the stack of `livelearn up` (pid {up.pid}) is, for the livelearn commands run in this directory.",
        "# Written once the stack was up, removed when it stops. A flag, a LIVELEARN_* variable or --config wins "
        "over it.",
        *(f"{name} = {json.dumps(value)}" for name, value in up.settings.items()),  # a JSON string is a TOML one
        "",
        "[up]",
        f"pid = {up.pid}",
        *([f"started = {up.started}"] if up.started is not None else []),
        f"api = {json.dumps(up.api)}",
        f"logs = {json.dumps(up.logs)}",
        "",
    ]
    return "\n".join(lines)


def read_up_file_text(text: str) -> UpFile:
    """The :class:`UpFile` that ``text`` describes; :class:`ValueError` if it is not a stack file."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML ({exc})") from None
    up = doc.get("up")
    settings = {name: doc[name] for name in _UP_SETTINGS if name in doc}
    if (
        not isinstance(up, dict)
        or not isinstance(up.get("pid"), int)
        or not all(isinstance(value, str) for value in settings.values())
    ):
        raise ValueError("no [up] pid, or a setting that is not a string")
    started = up.get("started")
    return UpFile(
        settings,
        pid=up["pid"],
        started=started if isinstance(started, int) else None,
        api=str(up.get("api", "")),
        logs=str(up.get("logs", "")),
    )


def read_up_file(path: Path = UP_FILE) -> UpFile | None:
    """The stack file at ``path``; ``None`` if there is none. :class:`ValueError` if it cannot be read as one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read ({exc})") from None
    return read_up_file_text(text)


def _running_stack() -> Mapping[str, str]:
    """The settings of the stack a running ``livelearn up`` wrote in this directory (none: empty), with a one-line
    notice on stderr when the file is there but its ``up`` is gone or the file makes no sense."""
    try:
        up = read_up_file()
    except ValueError as exc:
        sys.stderr.write(f"note: ignoring {UP_FILE}: {exc}\n")
        return {}
    if up is None:
        return {}
    if not up.running:
        sys.stderr.write(
            f"note: ignoring {UP_FILE}: the livelearn up that wrote it (pid {up.pid}) is gone; delete the file\n"
        )
        return {}
    return up.settings


def settings_from(
    config: Path | None = None,
    model: str | None = None,
    bootstrap: str | None = None,
    redis_url: str | None = None,
    topic: str | None = None,
    **more: Any,
) -> Settings:
    """Settings with the given CLI values on top of env vars, config file, the stack file (:data:`UP_FILE`, while
    its ``livelearn up`` runs) and defaults."""
    from streaming.config import load_settings

    given = {"model_name": model, "kafka_bootstrap": bootstrap, "redis_url": redis_url, "events_topic": topic, **more}
    settings = load_settings(config, **given)
    if all(name in settings.model_fields_set for name in _UP_SETTINGS):
        return settings  # every one given: the stack file could change nothing (and is not even read)
    # what no flag, variable or config file set (every source's values are in model_fields_set; defaults are not)
    unset = {name: value for name, value in _running_stack().items() if name not in settings.model_fields_set}
    return load_settings(config, **{**given, **unset}) if unset else settings  # given as None: not given
