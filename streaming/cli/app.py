"""The ``livelearn`` command line (Typer): one app, its sub-apps, and one-line errors.

Commands live in :mod:`~streaming.cli.run` (learn, monitor, serve, up), :mod:`~streaming.cli.data`
(produce, topics), :mod:`~streaming.cli.versions` (list, show, pin, unpin, rollback),
:mod:`~streaming.cli.operate` (learning resume, audit, report, config) and :mod:`~streaming.cli.challengers`
(challengers list, compare: registered here, in a help panel of their own after the others). Each imports what it
needs inside the command, so ``livelearn --help`` loads no client library and no model.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from streaming.cli import canary, challengers
from streaming.errors import ConfigError, LivelearnError

__all__ = ["LOG_FORMAT", "LogLevelOpt", "app", "fail", "main", "setup_logging"]

app = typer.Typer(
    help="livelearn: online learning from Kafka with numbered Redis snapshots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
challengers.register(app)
canary.register(app)
console = Console(stderr=True)

LogLevelOpt = Annotated[str, typer.Option("--log-level", envvar="LIVELEARN_LOG_LEVEL", help="Logging level.")]
#: The format of every livelearn log line.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # also what uvicorn accepts, in lower case


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"livelearn {version('livelearn')}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print livelearn's version and exit."),
    ] = False,
) -> None:
    """livelearn: online learning from Kafka with numbered Redis snapshots."""


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; an unknown level is a :class:`ConfigError`, not a traceback."""
    if level.upper() not in _LOG_LEVELS:
        raise ConfigError(
            f"unknown log level {level!r}; use one of {', '.join(_LOG_LEVELS)} (--log-level / LIVELEARN_LOG_LEVEL)"
        )
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def fail(message: str) -> NoReturn:
    """Print ``message`` as one ``error:`` line on stderr (never wrapped, never read as markup; line breaks and
    control characters it carries from outside — a reason, a record — made spaces and escapes) and exit 2."""
    from streaming.cli.tables import visible

    console.print(f"[red]error:[/red] {escape(' '.join(visible(message).split()))}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _client_failure(exc: Exception) -> str | None:
    """One line for a Redis or Kafka client error; the libraries are only consulted if a command loaded them."""
    redis = sys.modules.get("redis")
    if redis is not None and isinstance(exc, redis.RedisError):
        from snapshotter.connection import describe_failure, redis_failure

        code = redis_failure(exc)
        url = os.environ.get("LIVELEARN_REDIS_URL", "the configured URL")
        return describe_failure(code, url, exc) if code else f"Redis failed: {exc}; check LIVELEARN_REDIS_URL"
    kafka_errors = sys.modules.get("kafka.errors")
    if kafka_errors is not None and isinstance(exc, kafka_errors.KafkaError):
        return f"Kafka failed: {exc}; check LIVELEARN_KAFKA_BOOTSTRAP"
    confluent = sys.modules.get("confluent_kafka")
    if confluent is not None and isinstance(exc, confluent.KafkaException):
        return f"Kafka failed: {exc}; check LIVELEARN_KAFKA_BOOTSTRAP"
    return None


def _parser_errors() -> Any:
    """The command-line parser's exceptions: Typer's own copy of click's where it vendors one, else click's."""
    try:
        from typer._click import exceptions
    except ImportError:  # a Typer that uses click itself
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def main() -> None:
    """Console entry point: one clear line and exit code 2 for expected failures (a wrong option or value
    included: ``error: Invalid value for '--epochs': -1 is not in the range x>=1.``)."""
    errors = _parser_errors()
    no_args_help = getattr(errors, "NoArgsIsHelpError", ())  # (click 8.2 on; an older one prints help itself)
    try:
        code = app(standalone_mode=False)
    except no_args_help as exc:  # a command group without its command: its help, as Typer prints it
        console.print(exc.format_message(), highlight=False, markup=False)
        sys.exit(2)
    except errors.UsageError as exc:  # a wrong option or value: one line, as every other refusal
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        fail(f"{exc.format_message()}{where}")
    except typer.Abort:
        console.print("aborted", highlight=False)
        sys.exit(1)
    except LivelearnError as exc:
        fail(str(exc))
    except Exception as exc:
        message = _client_failure(exc)
        if message is None:
            raise
        fail(message)
    sys.exit(code if isinstance(code, int) else 0)  # as Typer's standalone mode ends every command
