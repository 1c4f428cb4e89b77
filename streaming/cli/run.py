"""The process commands: ``learn``, ``monitor``, ``serve`` and ``up`` (the whole stack on one machine)."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streaming.cli.app import LOG_FORMAT, LogLevelOpt, setup_logging
from streaming.cli.data import LabelDelayOpt, LabelSeedOpt, MissingLabelsOpt, SendLabelsOpt, label_delay_from
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
from streaming.errors import ConfigError

if TYPE_CHECKING:
    from streaming.config import ServingSettings

__all__ = ["learn", "monitor", "register", "serve", "up"]

log = logging.getLogger("livelearn")


def learn(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    bootstrap: BootstrapOpt = None,
    redis_url: RedisOpt = None,
    topic: TopicOpt = None,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    until_caught_up: Annotated[bool, typer.Option(help="Exit (with a final snapshot) once no lag is left.")] = False,
    allow_empty_store: Annotated[
        bool,
        typer.Option(
            "--allow-empty-store",
            help="Start from nothing even though Kafka says the model was learned before "
            "(Redis lost its data). Without it the learner refuses.",
        ),
    ] = False,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Consume events, score then learn each one, and snapshot versions to Redis.

    A second `learn` for the same model waits as a hot standby. SIGTERM or Ctrl+C finishes the
    batch, writes a final snapshot, commits offsets and exits.
    """
    from streaming.health import Heartbeat
    from streaming.kube import start_for_learner
    from streaming.learner.runner import Learner
    from streaming.observability import serve_metrics
    from streaming.runtime import freeze_after_startup

    setup_logging(log_level)
    settings = settings_from(
        config,
        model,
        bootstrap,
        redis_url,
        topic,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        allow_empty_store=allow_empty_store or None,
    )
    heartbeat = Heartbeat(settings.health_stale_seconds)
    if settings.metrics_port is not None:  # a port in use fails before anything connects
        serve_metrics(settings.metrics_port, host=settings.metrics_host, heartbeat=heartbeat)
    learner = Learner(settings, heartbeat=heartbeat)
    # Kubernetes (in a pod, or LIVELEARN_KUBERNETES=on): the pod's role label and the takeover Event, from a thread
    kubernetes = start_for_learner(settings, heartbeat)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: learner.stop())
    # Move the ~130k long-lived objects of the imports out of the collector's reach: full GC passes
    # then take milliseconds, not ~75 ms stalls in the event loop (see bench/learner.py).
    freeze_after_startup()
    learner.run(until_caught_up=until_caught_up)
    if kubernetes is not None:
        kubernetes.stop()
    log.info("stopped: %s", learner.counters)


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
    from monitor.guard import Monitor
    from streaming.health import Heartbeat
    from streaming.kube import start_for_monitor
    from streaming.observability import serve_metrics

    setup_logging(log_level if not watch else "ERROR")
    settings = settings_from(config, model, redis_url=redis_url, metrics_port=metrics_port, metrics_host=metrics_host)
    heartbeat = Heartbeat(settings.health_stale_seconds)
    if settings.metrics_port is not None:  # a port in use fails before anything connects
        serve_metrics(settings.metrics_port, host=settings.metrics_host, heartbeat=heartbeat)
    guard = Monitor(settings, heartbeat=heartbeat)
    # Kubernetes (in a pod, or LIVELEARN_KUBERNETES=on): an Event per audited action, the pin ConfigMap
    kubernetes = start_for_monitor(settings, guard.store)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: guard.stop())
    if not watch:
        guard.run()
        if kubernetes is not None:
            kubernetes.stop()
        return
    import threading

    from streaming.cli.live_view import watch as live_watch

    threading.Thread(target=guard.run, daemon=True).start()
    live_watch(settings, guard.store, should_stop=lambda: guard.stopping)


def serve(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    host: Annotated[str | None, typer.Option(envvar="LIVELEARN_API_HOST", help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(envvar="LIVELEARN_API_PORT", help="Port.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, envvar="LIVELEARN_API_WORKERS", help="Worker processes (one per core); metrics summed across them."
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log", envvar="LIVELEARN_API_ACCESS_LOG", help="Log one line per request."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            envvar="LIVELEARN_API_METRICS_PORT",
            help="Answer /metrics on this port (same --host) instead of the API port, to firewall it apart.",
        ),
    ] = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Serve live predictions over HTTP (plus KServe v2 routes, admin routes and /metrics)."""
    import uvicorn

    from streaming.serving.app import serve_api_metrics

    setup_logging(log_level)
    settings = settings_from(
        config,
        model,
        redis_url=redis_url,
        api_host=host,
        api_port=port,
        api_workers=workers,
        api_access_log=access_log,
        api_metrics_port=metrics_port,
    )
    _check_ports(settings.serving)
    options = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": log_level.lower(),
        "log_config": _uvicorn_logging(log_level),
        "access_log": settings.api_access_log,
        "timeout_graceful_shutdown": 5,
    }
    if settings.api_workers == 1:  # one process: the app object itself, metrics in this process's registry
        from streaming.serving.app import create_app

        serve_api_metrics(settings.serving)
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    from streaming.serving.workers import FACTORY, worker_environment

    with worker_environment(settings):  # each worker builds the app from these Settings
        serve_api_metrics(settings.serving)  # here: it reads the workers' metrics directory
        uvicorn.run(FACTORY, factory=True, workers=settings.api_workers, **options)  # type: ignore[arg-type]


def _uvicorn_logging(level: str) -> dict[str, object]:
    """uvicorn's logging configuration plus livelearn's own lines (as :func:`setup_logging` formats them), so
    that workers, which start as fresh processes and configure logging from this, log like one process."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["livelearn"] = {"format": LOG_FORMAT}
    config["handlers"]["livelearn"] = {
        "formatter": "livelearn",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["streaming"] = {"handlers": ["livelearn"], "level": level.upper(), "propagate": False}
    config["loggers"]["snapshotter"] = {"handlers": ["livelearn"], "level": level.upper(), "propagate": False}
    return config


def _check_ports(serving: ServingSettings) -> None:
    """One line naming the settings when the API port (or the metrics port) cannot be bound: uvicorn would log it
    and exit 3, the metrics port's own message would name the other processes' setting."""
    _check_bindable(serving.host, serving.port, "the API", "--port (LIVELEARN_API_PORT)")
    if serving.metrics_port is None:
        return
    if serving.metrics_port == serving.port:
        raise ConfigError(
            f"the metrics port {serving.metrics_port} is the API port: choose another with --metrics-port "
            "(LIVELEARN_API_METRICS_PORT), or leave it unset to answer /metrics on the API port"
        )
    _check_bindable(serving.host, serving.metrics_port, "metrics", "--metrics-port (LIVELEARN_API_METRICS_PORT)")


def _check_bindable(host: str, port: int, what: str, option: str) -> None:
    """One line naming ``option`` and the host setting when ``host:port`` cannot be bound."""
    try:
        family, kind, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve {what} on {host}:{port} ({exc.strerror or exc}); choose a free port with "
            f"{option} or another address with --host (LIVELEARN_API_HOST)"
        ) from None


def up(
    rate: Annotated[float, typer.Option(min=0, help="Replay rate in events/s (0: as fast as possible).")] = 400.0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the events topic.")] = 1,
    bootstrap: BootstrapOpt = None,
    redis_url: RedisOpt = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", exists=True, dir_okay=False, help="Dataset to replay (default: bundled).")
    ] = None,
    exit_when_done: Annotated[bool, typer.Option(help="Stop everything once the replay is learned.")] = False,
    flip_labels_after: Annotated[
        int, typer.Option(min=0, help="Drift demo: coin-flip labels from event N (the guard rolls back).")
    ] = 5000,
    flip_count: Annotated[int, typer.Option(min=1, help="...for this many events.")] = 1500,
    clean: Annotated[bool, typer.Option("--clean", help="Replay the dataset as it is, without the drift.")] = False,
    api_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port of the prediction API (default: a free one).")
    ] = None,
    label_delay: LabelDelayOpt = None,
    send_labels: SendLabelsOpt = "all",
    missing_labels: MissingLabelsOpt = 0.0,
    label_seed: LabelSeedOpt = 0,
    challenger: Annotated[
        list[str] | None,
        typer.Option(
            help="A challenger learning in shadow, compared with the serving model: [NAME:]lr=0.05,l2=..,"
            "exclude=A|B,start=cold|champion (repeatable; see LIVELEARN_CHALLENGERS)."
        ),
    ] = None,
) -> None:
    """Start a broker, a redis-server, a learner, the monitor, the API and the replay, with a live view (with
    --label-delay, labels come later on <events>.labels and the learner joins them; with --challenger, another model
    learns in shadow and is compared with the serving one)."""
    from streaming.cli.up import run_up
    from streaming.config import parse_challengers
    from streaming.local.dataset import check_columns

    labels = label_delay_from(label_delay, send_labels, missing_labels, label_seed)
    try:
        parse_challengers(challenger or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--challenger") from None
    if csv_path is not None:
        check_columns(csv_path)
    run_up(
        rate=rate,
        partitions=partitions,
        bootstrap=bootstrap,
        redis_url=redis_url,
        csv_path=csv_path,
        exit_when_done=exit_when_done,
        flip_labels_after=None if clean else flip_labels_after,
        flip_count=flip_count,
        api_port=api_port,
        labels=labels,
        challengers=challenger or [],
    )


def register(app: typer.Typer) -> None:
    for command in (learn, monitor, serve, up):
        app.command()(command)
