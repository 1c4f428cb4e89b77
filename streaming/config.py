"""One frozen, typed configuration object for every livelearn process.

Values come from, highest priority first: explicit keyword arguments (the CLI's options), environment
variables prefixed ``LIVELEARN_``, a TOML file named by ``LIVELEARN_CONFIG_FILE`` (or ``--config``),
then the defaults below. Secrets are :class:`pydantic.SecretStr` and never printed.

>>> s = Settings(model_name="shop", learning_rate=0.05)
>>> s.model_name, s.learning_rate, s.dead_letter_topic_name
('shop', 0.05, 'livelearn.events.dlq')
>>> s.consumer_group_name
'livelearn-shop'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streaming.errors import ConfigError

__all__ = ["Settings", "load_settings", "ENV_PREFIX"]

ENV_PREFIX = "LIVELEARN_"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Settings(BaseSettings):
    """Every setting of livelearn; see ``livelearn config`` for the table with env vars."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- identity -------------------------------------------------------------------------
    model_name: str = Field("default", description="Namespace of one independent model in Kafka and Redis.")

    # --- Kafka ----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="SASL mechanism, e.g. PLAIN or SCRAM-SHA-512.")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    kafka_bootstrap_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="How long a client waits for the first broker before giving up."
    )
    events_topic: str = Field("livelearn.events", description="Topic the learner consumes events from.")
    event_format: Literal["msgpack", "json", "auto"] = Field(
        "msgpack", description="Encoding of events on the events topic; auto tells JSON by a leading '{'."
    )
    dead_letter_topic: str | None = Field(None, description="Topic for rejected events (default: <events_topic>.dlq).")
    consumer_group: str | None = Field(None, description="Kafka group for offset commits (default: livelearn-<model>).")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where to start on a partition that no snapshot covers."
    )
    poll_timeout_ms: int = Field(200, ge=1, le=60_000, description="Longest wait of one Kafka poll.")
    poll_max_records: int = Field(1000, ge=1, le=100_000, description="Most records taken per poll.")

    # --- Redis ----------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL for versions, lease and status.")
    redis_password: SecretStr | None = Field(None, description="Redis password (secret), if not in the URL.")

    # --- model ----------------------------------------------------------------------------
    learning_rate: float = Field(0.01, gt=0, le=10, description="SGD learning rate of the logistic regression.")
    l2: float = Field(0.0, ge=0, le=10, description="L2 regularisation strength.")
    features_include: list[str] = Field(default_factory=list, description="Only these features (empty: all).")
    features_exclude: list[str] = Field(default_factory=list, description="Features to ignore.")
    rolling_window: int = Field(1000, ge=10, le=1_000_000, description="Events in the rolling metric window.")

    # --- snapshots ------------------------------------------------------------------------
    snapshot_every_events: int = Field(1000, ge=1, description="Write a version every N consumed events.")
    snapshot_every_seconds: float = Field(30.0, gt=0, description="...and at least every T seconds when events flow.")
    keep_versions: int = Field(50, ge=1, description="Retention: newest K versions kept (plus pinned and stable).")
    lease_ttl_seconds: float = Field(10.0, ge=1, le=600, description="Writer lease TTL; a standby takes over after it.")

    keep_stable_versions: int = Field(10, ge=1, description="Retention also keeps the newest K stable versions.")
    audit_retention: int = Field(100_000, ge=100, description="Audit entries kept at least (older ones are trimmed).")

    # --- quality monitor and rollback -----------------------------------------------------
    monitor_metric: Literal["accuracy", "precision", "recall", "f1", "balanced_accuracy", "roc_auc", "log_loss"] = (
        Field("accuracy", description="Rolling metric the monitor guards.")
    )
    monitor_threshold: float = Field(0.8, description="Breach when the metric is below (log_loss: above) this.")
    monitor_min_samples: int = Field(200, ge=1, description="No judgement before the window holds this many.")
    monitor_patience: int = Field(3, ge=1, description="Consecutive breaching metric samples that confirm a breach.")
    monitor_check_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="Longest wait for new metric samples (the monitor wakes at once on one)."
    )
    monitor_cooldown_seconds: float = Field(30.0, ge=0, description="Quiet time after a rollback; doubles each time.")
    monitor_max_rollbacks: int = Field(3, ge=1, description="Rollbacks within the window before learning freezes.")
    monitor_rollback_window_seconds: float = Field(600.0, gt=0, description="Window for counting rollbacks.")
    monitor_resume_after_seconds: float = Field(
        60.0, ge=0, description="Frozen learning resumes after the metric is healthy this long."
    )
    monitor_fallback_version: int | None = Field(None, ge=1, description="Rollback target when no stable one exists.")

    # --- serving --------------------------------------------------------------------------
    predictions_topic: str | None = Field(None, description="Topic for per-event predictions (default: <events_topic>.predictions).")
    publish_predictions: bool = Field(True, description="Learners publish a prediction for every event.")
    api_host: str = Field("127.0.0.1", description="Address `livelearn serve` binds.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of `livelearn serve`.")
    api_token: SecretStr | None = Field(None, description="Bearer token for the admin routes (secret; unset: admin off).")
    serving_refresh_seconds: float = Field(0.25, gt=0, le=10, description="Serving pointer poll (besides pub/sub).")
    api_max_batch: int = Field(
        1000, ge=1, le=1_000_000, description="Most instances in one /predict/batch or v2 infer request (more: 422)."
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, le=1 << 30, description="Largest request body `livelearn serve` reads (larger: 413)."
    )
    api_redis_timeout_seconds: float = Field(
        1.0, gt=0, le=30, description="`livelearn serve`'s Redis connect/read timeout (one retry; then 503)."
    )
    serving_stale_after_seconds: float = Field(
        30.0, gt=0, description="/v2/health/ready is 503 when serving could not follow the pointer this long."
    )

    # --- validation of events -------------------------------------------------------------
    max_event_bytes: int = Field(1_048_576, ge=64, description="Larger events are dead-lettered.")
    max_features: int = Field(1000, ge=1, description="Events with more features are dead-lettered.")
    max_string_length: int = Field(256, ge=1, description="Longer string values are dead-lettered.")
    max_abs_value: float = Field(1e15, gt=0, description="Numbers beyond +/- this are dead-lettered.")

    # --- observability --------------------------------------------------------------------
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus port of this process (unset: off).")
    status_interval_seconds: float = Field(1.0, gt=0, le=60, description="How often learners publish status to Redis.")
    history_every_events: int = Field(
        100, ge=1, le=1_000_000,
        description="Learners record their rolling metrics every N labelled events; the monitor judges each record.",
    )

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        if not _MODEL_NAME.match(value):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)

    # --- derived names --------------------------------------------------------------------
    @property
    def dead_letter_topic_name(self) -> str:
        return self.dead_letter_topic or f"{self.events_topic}.dlq"

    @property
    def predictions_topic_name(self) -> str:
        return self.predictions_topic or f"{self.events_topic}.predictions"

    @property
    def consumer_group_name(self) -> str:
        return self.consumer_group or f"livelearn-{self.model_name}"

    def kafka_client_options(self) -> dict[str, Any]:
        """Options shared by every kafka-python client this process creates."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()],
            "security_protocol": self.kafka_security_protocol,
            "client_id": f"livelearn-{self.model_name}",
            "bootstrap_timeout_ms": int(self.kafka_bootstrap_timeout_seconds * 1000),
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings`, turning validation errors into one readable :class:`ConfigError`.

    ``overrides`` whose value is ``None`` are ignored, so CLI options left unset fall through to
    env vars, the config file and defaults.
    """
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file to --config")
        os.environ[f"{ENV_PREFIX}CONFIG_FILE"] = str(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "?"
            problems.append(f"{name} ({ENV_PREFIX}{name.upper()}): {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
