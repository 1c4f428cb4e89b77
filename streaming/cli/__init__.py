"""The ``livelearn`` command line (Typer): learn, produce, versions, topics, config, up."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated

import redis
import typer
from kafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streaming.config import ENV_PREFIX, Settings
from streaming.errors import ConfigError, LivelearnError
from streaming.cli.options import (
    BootstrapOpt,
    ConfigOpt,
    MetricsHostOpt,
    MetricsPortOpt,
    ModelOpt,
    RedisOpt,
    TopicOpt,
    settings_from,
)
from streaming.cli.operate import register as register_control_commands
from streaming.cli.versions import versions_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="livelearn: online learning from Kafka with numbered Redis snapshots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(versions_app, name="versions")
register_control_commands(app, versions_app)
console = Console(stderr=True)
log = logging.getLogger("livelearn")

LogLevelOpt = Annotated[str, typer.Option("--log-level", envvar="LIVELEARN_LOG_LEVEL", help="Logging level.")]


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # also what uvicorn accepts, in lower case


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; an unknown level is a :class:`ConfigError`, not a traceback."""
    if level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"unknown log level {level!r}; use one of {', '.join(_LOG_LEVELS)} "
                          "(--log-level / LIVELEARN_LOG_LEVEL)")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


@app.command()
def learn(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    bootstrap: BootstrapOpt = None,
    redis_url: RedisOpt = None,
    topic: TopicOpt = None,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    until_caught_up: Annotated[bool, typer.Option(help="Exit (with a final snapshot) once no lag is left.")] = False,
    allow_empty_store: Annotated[bool, typer.Option(
        "--allow-empty-store", help="Start from nothing even though Kafka says the model was learned before "
        "(Redis lost its data). Without it the learner refuses.")] = False,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Consume events, score then learn each one, and snapshot versions to Redis.

    A second `learn` for the same model waits as a hot standby. SIGTERM or Ctrl+C finishes the
    batch, writes a final snapshot, commits offsets and exits.
    """
    from monitor.telemetry import serve_metrics
    from streaming.learner.runner import Learner

    setup_logging(log_level)
    settings = settings_from(config, model, bootstrap, redis_url, topic, metrics_port=metrics_port,
                             metrics_host=metrics_host, allow_empty_store=allow_empty_store or None)
    if settings.metrics_port is not None:  # a port in use fails before anything connects
        serve_metrics(settings.metrics_port, host=settings.metrics_host)
    learner = Learner(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: learner.stop())
    # Move the ~130k long-lived objects of the imports out of the collector's reach: full GC passes
    # then take milliseconds, not ~75 ms stalls in the event loop (see bench/learner.py).
    gc.collect()
    gc.freeze()
    learner.run(until_caught_up=until_caught_up)
    log.info("stopped: %s", learner.counters)


@app.command()
def produce(
    csv_path: Annotated[Path, typer.Option("--csv", exists=True, dir_okay=False,
                                           help="CSV with the dataset's columns (Revenue -> label).")],
    rate: Annotated[float | None, typer.Option(help="Events per second, above 0 (default: as fast as "
                                               "possible).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many events.")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Replay the file this many times.")] = 1,
    event_format: Annotated[str, typer.Option("--format", help="msgpack or json.")] = "msgpack",
    flip_labels_after: Annotated[int | None, typer.Option(min=0, help="Invert labels from the N-th event on "
                                                          "(drift demo).")] = None,
    flip_count: Annotated[int | None, typer.Option(min=1, help="...for this many events (default: all the "
                                                   "rest).")] = None,
    flip_probability: Annotated[float, typer.Option(min=0, max=1, help="Chance each label in the burst is "
                                                    "inverted (0.5: coin-flip labels, 1: all inverted).")] = 0.5,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Replay a CSV of sessions as events into the events topic (the file is checked before anything is sent)."""
    from streaming.local.dataset import check_columns, read_events
    from streaming.transport import make_producer
    from streaming.local.replay import flip_labels, replay

    if event_format not in ("msgpack", "json"):
        raise typer.BadParameter("use msgpack or json", param_hint="--format")
    if rate is not None and rate <= 0:
        raise typer.BadParameter("must be above 0 events per second; leave --rate out to send as fast as possible",
                                 param_hint="--rate")
    check_columns(csv_path)
    settings = settings_from(config, bootstrap=bootstrap, topic=topic)
    producer = make_producer(settings, linger_ms=10)
    try:
        events = read_events(csv_path, limit=limit, repeat=repeat)
        if flip_labels_after is not None:
            events = flip_labels(events, flip_labels_after, flip_count, probability=flip_probability)
        sent = replay(producer, settings.events_topic, events, rate=rate, fmt=event_format)
    finally:
        producer.close(timeout=10)
    console.print(f"sent {sent:,} events to {settings.events_topic}")


@app.command("topics")
def topics(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the events and predictions topics.")] = 1,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Create the events, dead-letter and predictions topics if they do not exist."""
    from streaming.transport import ensure_topics, livelearn_topics

    settings = settings_from(config, bootstrap=bootstrap, topic=topic)
    topics = livelearn_topics(settings, partitions)
    ensure_topics(settings, topics)
    console.print("topics ready: " + ", ".join(f"{name} ({count} partitions)" for name, count in topics.items()))


@app.command("config")
def show_config(config: ConfigOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every setting with its env var, current value and meaning (secrets hidden)."""
    from snapshotter.connection import redact_url

    settings = settings_from(config)
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "redis_url":  # may carry a password; SecretStr settings print as ********** already
            value = redact_url(value)
        rows.append((name, f"{ENV_PREFIX}{name.upper()}", value, field.description or ""))
    if as_json:
        typer.echo(json.dumps({name: str(value) if value is not None else None for name, _, value, _ in rows},
                              indent=2))
        return
    table = Table(title="livelearn settings")
    for column in ("env var", "value", "meaning"):
        table.add_column(column)
    for _name, env, value, description in rows:
        table.add_row(env, str(value), description)
    Console().print(table)


@app.command()
def monitor(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Show a live view instead of log lines.")] = False,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Guard the live model: roll back on confirmed breaches, freeze learning when it flaps."""
    from monitor.telemetry import serve_metrics
    from monitor.guard import Monitor

    setup_logging(log_level if not watch else "ERROR")
    settings = settings_from(config, model, redis_url=redis_url, metrics_port=metrics_port, metrics_host=metrics_host)
    if settings.metrics_port is not None:  # a port in use fails before anything connects
        serve_metrics(settings.metrics_port, host=settings.metrics_host)
    guard = Monitor(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: guard.stop())
    if not watch:
        guard.run()
        return
    import threading

    from streaming.cli.live_view import watch as live_watch

    threading.Thread(target=guard.run, daemon=True).start()
    live_watch(settings, guard.store, should_stop=lambda: guard.stopping)


@app.command()
def serve(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    host: Annotated[str | None, typer.Option(envvar="LIVELEARN_API_HOST", help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(envvar="LIVELEARN_API_PORT", help="Port.")] = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Serve live predictions over HTTP (plus KServe v2 routes, admin routes and /metrics)."""
    import uvicorn

    from streaming.serving.app import create_app

    setup_logging(log_level)
    settings = settings_from(config, model, redis_url=redis_url, api_host=host, api_port=port)
    _check_bindable(settings.api_host, settings.api_port)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_level=log_level.lower(), timeout_graceful_shutdown=5)


def _check_bindable(host: str, port: int) -> None:
    """One line naming the settings when ``host:port`` cannot be bound (uvicorn would log it and exit 3)."""
    try:
        family, kind, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot serve the API on {host}:{port} ({exc.strerror or exc}); choose a free port with "
                          "--port (LIVELEARN_API_PORT) or another address with --host (LIVELEARN_API_HOST)") from None


@app.command()
def up(
    rate: Annotated[float, typer.Option(min=0, help="Replay rate in events/s (0: as fast as possible).")] = 400.0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the events topic.")] = 1,
    bootstrap: BootstrapOpt = None,
    redis_url: RedisOpt = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", exists=True, dir_okay=False,
                                                  help="Dataset to replay (default: bundled).")] = None,
    exit_when_done: Annotated[bool, typer.Option(help="Stop everything once the replay is learned.")] = False,
    flip_labels_after: Annotated[int | None, typer.Option(min=0, help="Drift demo: invert labels from "
                                                          "event N.")] = None,
    flip_count: Annotated[int | None, typer.Option(min=1, help="...for this many events (default 1500).")] = None,
    api_port: Annotated[int | None, typer.Option(min=1, max=65535,
                                                 help="Port of the prediction API (default: a free one).")] = None,
) -> None:
    """Start a broker, a redis-server, a learner, the monitor, the API and the replay, with a live view."""
    from streaming.local.dataset import check_columns
    from streaming.cli.up import run_up

    if csv_path is not None:
        check_columns(csv_path)
    if flip_labels_after is not None and flip_count is None:
        flip_count = 1500
    run_up(rate=rate, partitions=partitions, bootstrap=bootstrap, redis_url=redis_url, csv_path=csv_path,
           exit_when_done=exit_when_done, flip_labels_after=flip_labels_after, flip_count=flip_count,
           api_port=api_port)


def fail(message: str) -> None:
    """Print ``message`` as one ``error:`` line on stderr (never wrapped, never read as markup) and exit 2."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


def main() -> None:
    """Console entry point: one clear line and exit code 2 for expected failures."""
    try:
        app()
    except LivelearnError as exc:
        fail(str(exc))
    except redis.RedisError as exc:
        from snapshotter.connection import describe_failure, redis_failure

        code = redis_failure(exc)
        fail(describe_failure(code, os.environ.get("LIVELEARN_REDIS_URL", "the configured URL"), exc) if code
             else f"Redis failed: {exc}; check LIVELEARN_REDIS_URL")
    except KafkaError as exc:
        fail(f"Kafka failed: {exc}; check LIVELEARN_KAFKA_BOOTSTRAP")
