"""Command-line options shared by the livelearn commands, each tied to its env var.

Options left unset fall through to the environment, the config file and the defaults, in the
order :func:`streaming.config.load_settings` applies them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from streaming.config import Settings

__all__ = [
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
    "settings_from",
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


def settings_from(
    config: Path | None = None,
    model: str | None = None,
    bootstrap: str | None = None,
    redis_url: str | None = None,
    topic: str | None = None,
    **more: Any,
) -> Settings:
    """Settings with the given CLI values on top of env vars, config file and defaults."""
    from streaming.config import load_settings

    return load_settings(
        config, model_name=model, kafka_bootstrap=bootstrap, redis_url=redis_url, events_topic=topic, **more
    )
