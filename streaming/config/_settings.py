"""The flat settings: every value livelearn reads, under the names users write (see the package docstring)."""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from streaming.config._challengers import parse_challengers
from streaming.config._grouped_names import FlatteningSource, GroupedEnvSource
from streaming.config._groups import (
    GROUPS,
    ChallengerSettings,
    EventLimitSettings,
    GuardSettings,
    KafkaSettings,
    KubernetesSettings,
    LabelSettings,
    LearnerSettings,
    ModelSettings,
    ProbeSettings,
    RedisSettings,
    ServingSettings,
    SettingsGroup,
    StoreSettings,
)
from streaming.config._metric_rules import parse_metric_rules
from streaming.config._redis_url import REDIS_URL_PATTERN, redis_url_problem
from streaming.config._segments import parse_segments
from streaming.errors import ConfigError

#: The further guarded metrics by default: at a 15 % base rate accuracy barely moves when half the purchases go
#: unlabelled, recall and precision fall by half.
DEFAULT_MONITOR_ALSO = ("recall:drop=0.5", "precision:drop=0.4")

__all__ = [
    "ENV_PREFIX",
    "REDIS_URL_PATTERN",
    "Settings",
    "load_settings",
    "settings_document",
    "settings_from_document",
]

ENV_PREFIX = "LIVELEARN_"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BROKER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)(:(?P<port>\d{1,5}))?$")  # host[:port], [IPv6][:port]
#: Metrics whose value lies in [0, 1], so a threshold above 1 could never be met (every one but log_loss).
_UNBOUNDED_METRICS = ("log_loss",)
#: The TOML file of the Settings being built by :func:`load_settings` (unset: ``LIVELEARN_CONFIG_FILE``).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("livelearn_config_file", default=None)
_G = TypeVar("_G", bound=SettingsGroup)
_DURATION = re.compile(r"^\s*(?P<number>\d+(\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, None: 1.0}


def _duration_seconds(value: Any) -> Any:
    """A duration in seconds from a number or a string such as ``90``, ``90s``, ``30m``, ``2h`` (else as given:
    the field's own check refuses it).

    >>> [_duration_seconds(v) for v in ("30m", "90s", "1.5h", "250ms", 12, "12")]
    [1800.0, 90.0, 5400.0, 0.25, 12, 12.0]
    """
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"use seconds or a duration such as 90s, 30m, 2h (got {value[:40]!r})")
        return float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    return value


class Settings(BaseSettings):
    """Every setting of livelearn; see ``livelearn config`` for the table with env vars.

    One frozen object per process. Values come from, highest priority first: the keyword arguments, the
    ``LIVELEARN_*`` environment variables, the TOML file named by ``LIVELEARN_CONFIG_FILE``, then the defaults
    (:func:`load_settings` turns a mistake in any of them into one readable :class:`ConfigError`). Components
    receive its groups, each a small frozen view under short names (:data:`~streaming.config.GROUPS`):
    ``kafka``, ``redis``, ``store``, ``model``, ``learner``, ``guard``, ``serving``, ``limits``, ``probes``,
    ``kube``.

    Parameters
    ----------
    **values
        Any setting by its name: every field is a setting, listed by ``livelearn config`` with its env var
        (``LIVELEARN_<NAME>``), TOML key, default and meaning (``livelearn config --markdown``: the README's table).
        A group's short name is accepted too, as a mapping (``serving={"port": 8080}``), as in a TOML table
        (``[serving]`` ``port = 8080``) or a ``LIVELEARN_SERVING__PORT`` variable. A value out of bounds is a
        :class:`pydantic.ValidationError`.

    Examples
    --------
    >>> settings = Settings(model_name="shop", api_port=8080)
    >>> settings.serving.port, settings.store.model_name, settings.kafka.consumer_group
    (8080, 'shop', 'livelearn-shop')
    >>> Settings(serving={"port": 9000}).api_port  # the grouped spelling of the same setting
    9000
    >>> settings.model_copy(update={"api_port": 9000}).serving.port  # frozen: a change is a copy, groups afresh
    9000
    >>> load_settings(learning_rate=0)
    Traceback (most recent call last):
    ...
    streaming.errors.ConfigError: invalid configuration: learning_rate (LIVELEARN_LEARNING_RATE): Input should be ...
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,  # NaN and infinities are never a meaningful setting (a NaN threshold: never healthy)
        json_schema_extra={  # a threshold above 1 is refused for the metrics in [0, 1] (see _check_threshold)
            "if": {"properties": {"monitor_metric": {"not": {"enum": list(_UNBOUNDED_METRICS)}}}},
            "then": {"properties": {"monitor_threshold": {"maximum": 1}}},
        },
    )

    # --- identity -------------------------------------------------------------------------
    model_name: str = Field(
        "default",
        description="Namespace of one independent model in Kafka and Redis.",
        json_schema_extra={"pattern": _MODEL_NAME.pattern},  # (checked by _check_model_name, stated for the chart)
    )

    # --- Kafka ----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    kafka_client: Literal["auto", "confluent", "kafka-python"] = Field(
        "auto",
        description="Kafka client library: confluent (librdkafka, the fast one), kafka-python (pure Python), or "
        "auto (confluent when importable).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="SASL mechanism, e.g. PLAIN or SCRAM-SHA-512.")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    kafka_ssl_cafile: str | None = Field(None, description="CA certificate (PEM) that verifies the brokers (SSL).")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(None, description="Private key (PEM) of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of the private key (secret).")
    kafka_bootstrap_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="How long a client waits for the first broker before giving up."
    )
    kafka_unreachable_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Report Kafka as unreachable (log, livelearn_kafka_up 0, lag unknown) after this long without "
        "an answer.",
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
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL for versions, lease and status.",
        json_schema_extra={"pattern": REDIS_URL_PATTERN},
    )
    redis_password: SecretStr | None = Field(None, description="Redis password (secret), if not in the URL.")
    redis_timeout_seconds: float = Field(
        3.0,
        gt=0,
        le=60,
        description="Socket timeout of one Redis call (a few retries follow, then the outage is waited out visibly).",
    )

    # --- model ----------------------------------------------------------------------------
    learning_rate: float = Field(0.01, gt=0, le=10, description="SGD learning rate of the logistic regression.")
    l2: float = Field(0.0, ge=0, le=10, description="L2 regularisation strength.")
    features_include: list[str] = Field(default_factory=list, description="Only these features (empty: all).")
    features_exclude: list[str] = Field(default_factory=list, description="Features to ignore.")
    rolling_window: int = Field(1000, ge=10, le=1_000_000, description="Events in the rolling metric window.")
    max_categories_per_feature: int = Field(
        1000, ge=1, description="Values a string feature learns; later new ones share one '__other__' weight."
    )
    max_inputs: int = Field(
        100_000, ge=1, description="Inputs (numeric features + categories) the model learns in all; then no new ones."
    )
    max_vocabulary_bytes: int = Field(
        4_194_304,
        ge=1,
        description="UTF-8 bytes of the learned inputs' names in all (a category's: feature_value); an input that "
        "does not fit is not learned. A snapshot's model takes at most 5x this + 64 x max_inputs bytes.",
    )
    engine: Literal["auto", "river", "compiled"] = Field(
        "auto",
        description="Model engine of learn and serve: compiled (numba kernel, river's arithmetic bit for bit), "
        "river, or auto (compiled when numba imports).",
    )
    cache_dir: str | None = Field(
        None,
        description="Where the compiled engine keeps its compiled code (default $XDG_CACHE_HOME/livelearn, "
        "then the temp dir; none writable: compiled in memory at each start).",
    )
    dedupe_window: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Event ids remembered per partition; a repeated id (producer retry) is skipped (0: off).",
    )

    # --- labels that arrive after their events (streaming.learner.join) -------------------
    label_wait: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        0.0,
        ge=0,
        le=30 * 86_400,
        description="How long a scored event waits for its label, in event time (seconds, or 90s, 30m, 2h): "
        "labels may then come after their events (label records on the events topic or the labels topic). "
        "0: off, labels ride inside their events.",
    )
    label_policy: Literal["drop", "negative"] = Field(
        "drop",
        description="What an event whose label did not come within the wait becomes: drop (never learned) or "
        "negative (no purchase by then: learned as a 0).",
    )
    label_max_pending: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Most scored events waiting for their labels; past it the oldest "
        "is expired early (the policy applies, counted as evicted).",
    )
    label_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=65_536,
        le=256 * 1024 * 1024,
        description="Most bytes the waiting events hold in memory (packed features + ~360 B each; their packed "
        "form is written to Redis with every version); past it the oldest is expired early.",
    )
    label_max_orphans: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Most labels held for an event not seen yet (a label before its event); past it the oldest "
        "is dropped (counted).",
    )
    label_remember: int = Field(
        100_000,
        ge=0,
        le=10_000_000,
        description="Event ids remembered after their label was learned or their wait expired, so a second or a "
        "late label is told from a label for an unknown event.",
    )
    labels_topic: str | None = Field(
        None,
        description="Topic of label records {event_id, label, ts}, keyed like the events (needs label_wait; "
        "unset: labels come inside the events or as records on the events topic).",
    )

    # --- challengers: other models learning in shadow (streaming.learner.arms, monitor.compare) ---------
    challengers: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Models that learn in shadow beside the serving one from the same labelled events and are "
        "compared with it: NAME:KEY=VALUE,... with lr, l2, include, exclude (features, |-separated), "
        "start=cold|champion (e.g. fast:lr=0.05).",
    )
    compare_alpha: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="Error rate of the comparison's anytime-valid confidence sequence: checked after every "
        "labelled event, a challenger no better than the champion is called better with at most this probability.",
    )
    compare_min_gain: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="A challenger is better when the lower bound of its relative log-loss gain is above this "
        "(0.01: at least 1 % lower log loss).",
    )
    compare_min_labels: int = Field(
        1000, ge=1, le=100_000_000, description="Labelled events both arms scored before a comparison may decide."
    )
    compare_segments: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Categorical features whose values are compared apart (e.g. VisitorType): a challenger worse "
        "in one of them by more than compare_segment_margin is not better.",
    )
    challenger_policy: Literal["manual", "auto"] = Field(
        "manual",
        description="manual: a challenger is promoted by an operator (livelearn challengers promote); auto: the "
        "learner promotes one whose verdict has been promote for compare_confirm_labels labels.",
    )
    compare_confirm_labels: int = Field(
        2000,
        ge=0,
        le=100_000_000,
        description="auto policy: labels a promote verdict must hold before the challenger is promoted (an early "
        "lead that fades is not promoted).",
    )
    challenger_cooldown_labels: int = Field(
        10_000,
        ge=0,
        le=100_000_000,
        description="After a promotion the former champion learns on in shadow for this many labelled events, so that "
        "backing out (promote it again) lands on a fresh model; 0: it leaves at once.",
    )
    compare_segment_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="How much worse (relative log loss) a challenger may be in one segment and still be better.",
    )

    # --- snapshots ------------------------------------------------------------------------
    snapshot_every_events: int = Field(1000, ge=1, description="Write a version every N consumed events.")
    snapshot_every_seconds: float = Field(
        0.25,
        gt=0,
        le=86_400,
        description="...and every T seconds when events flow (promotion guard: at a metric sample, or between "
        "samples once the block so far is calm (promotion_partial_blocks), so a version is stable and served at "
        "once when the data is calm; at the latest after 2T).",
    )
    keep_versions: int = Field(50, ge=1, description="Retention: newest K versions kept (plus pinned and stable).")
    lease_ttl_seconds: float = Field(10.0, ge=1, le=600, description="Writer lease TTL; a standby takes over after it.")

    keep_stable_versions: int = Field(10, ge=1, description="Retention also keeps the newest K stable versions.")
    promotion: Literal["guard", "immediate"] = Field(
        "guard",
        description="guard: a version that met the threshold is a candidate until the learner has seen the data "
        "up to it calm (no incident, no suspect block); immediate: stable (and served) as soon as it is written.",
    )
    promotion_partial_blocks: bool = Field(
        True,
        description="guard promotion: a timed snapshot between metric samples is confirmed when the labelled "
        "events since the last sample are calm by the full blocks' rule (a partial block never opens an incident); "
        "false: only full blocks of history_every_events confirm (2 s at 50 labelled events/s).",
    )
    promotion_delay_events: int = Field(
        0, ge=0, description="guard promotion: calm labelled events also needed past a candidate (extra margin)."
    )
    audit_retention: int = Field(
        100_000,
        ge=100,
        description="Audit entries kept at least: operator and monitor actions, rollbacks, freezes, incidents "
        "(older ones are trimmed); also the metric history's length.",
    )
    version_log_retention: int = Field(
        100_000,
        ge=100,
        description="Routine per-version entries (snapshot, stable, promote) kept at least, in a stream of their "
        "own: at 4 versions/s about 2-3 hours.",
    )
    backup_url: str | None = Field(
        None,
        description="Where `livelearn backup` (and the chart's backup CronJob) writes the model's stable versions, "
        "and `restore-from-backup` reads them: s3://BUCKET/PREFIX (also gs://, az://) or a directory. A bucket's "
        "endpoint and credentials come from the cloud's own variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).",
    )

    # --- quality monitor and rollback -----------------------------------------------------
    monitor_metric: Literal["accuracy", "precision", "recall", "f1", "balanced_accuracy", "roc_auc", "log_loss"] = (
        Field("accuracy", description="Rolling metric the monitor guards.")
    )
    monitor_threshold: float = Field(0.8, ge=0, description="Breach when the metric is below (log_loss: above) this.")
    monitor_threshold_mode: Literal["absolute", "relative"] = Field(
        "absolute",
        description="absolute: the threshold above; relative: a drop of monitor_relative_drop below the "
        "metric's own healthy level.",
    )
    monitor_relative_drop: float = Field(
        0.12,
        gt=0,
        le=1,
        description="In relative mode: how far below its healthy level the metric may fall (livelearn calibrate "
        "checks one on clean data).",
    )
    monitor_also: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MONITOR_ALSO),
        max_length=6,
        description="Further guarded metrics, a breach of any is a breach: METRIC:drop=F (below 1-F times its own "
        "healthy level; log_loss: above 1+F times it), METRIC:min=X or log_loss:max=X; [] for none. The "
        "defaults suit a 15 % base rate, where accuracy barely moves when half the purchases go unlabelled.",
    )
    monitor_min_samples: int = Field(200, ge=1, description="No judgement before the window holds this many.")
    monitor_patience: int = Field(3, ge=1, description="Consecutive breaching metric samples that confirm a breach.")
    monitor_check_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="Longest wait for new metric samples (the monitor wakes at once on one)."
    )
    monitor_cooldown_events: int = Field(
        2000, ge=0, description="Events after a rollback before another one; doubles for each further rollback."
    )
    monitor_cooldown_seconds: float = Field(
        0.0, ge=0, le=86_400, description="Also a cooldown in seconds, doubling the same way (0: off; events only)."
    )
    monitor_max_rollbacks: int = Field(3, ge=1, description="Rollbacks within the flap window before learning freezes.")
    monitor_rollback_window_events: int = Field(
        20_000, ge=1, description="Flap window: rollbacks within this many events count towards a freeze."
    )
    monitor_rollback_window_seconds: float = Field(
        0.0, ge=0, le=604_800, description="Also bound the flap window in seconds (0: off; events only)."
    )
    monitor_resume_after_events: int = Field(
        5000, ge=0, description="Frozen learning resumes after the metric has been healthy for this many events."
    )
    monitor_resume_after_seconds: float = Field(
        0.0, ge=0, le=604_800, description="...and, additionally, for at least this many seconds (0: off)."
    )
    incident_label_rate_bound: float = Field(
        0.25, gt=0, le=1, description="A block label rate this far from its reference is a data-quality incident."
    )
    incident_prediction_rate_bound: float = Field(
        0.25, gt=0, le=1, description="A block prediction rate this far from its reference is an incident too."
    )
    incident_label_run_probability: float = Field(
        1e-9,
        ge=0,
        lt=1,
        description="A run of one label value less likely than this at the reference label rate opens an incident "
        "at once (a labeller stuck at 0 or 1; 0: off).",
    )
    incident_odds_ratio: float = Field(
        2.0,
        gt=1,
        le=100,
        description="The label-odds rule watches for labels whose odds of being positive, given the model's own "
        "score, moved by this factor up or down (a risk-adjusted Bernoulli CUSUM per segment and overall).",
    )
    incident_odds_threshold: float = Field(
        9.0,
        ge=0,
        le=1000,
        description="The label-odds CUSUM (a log-likelihood ratio) above this opens an incident (0: off); clean "
        "bundled data stays below 7 (dataset order, 10 shuffles, cycled; livelearn calibrate prints it). A guard "
        "segment group's bound is this plus ln of the number of segment groups.",
    )
    guard_segments: list[str] = Field(
        default_factory=list,
        max_length=4,
        description="Segments whose groups the label-odds rule also watches apart, each judged against its own "
        "calibration: a categorical feature (VisitorType: one group per value) or a numeric cut (Amount>100: "
        "two groups; not on the model's strongest input, docs/guard.md). A labeller broken for one segment moves "
        "that segment's labels, not the stream's.",
    )
    guard_segment_values: int = Field(
        8, ge=1, le=64, description="Values watched per guard segment (first seen); later values count as 'other'."
    )
    incident_patience: int = Field(
        2, ge=1, le=100, description="Blocks in a row off the reference that open an incident."
    )
    incident_resume_after_events: int = Field(
        1000, ge=1, description="Events with every rate back within its bound that close an incident."
    )
    reference_half_life_events: int = Field(
        2000, ge=1, description="Half-life of the reference rates (learned while healthy and no incident is open)."
    )
    reference_min_events: int = Field(
        500, ge=0, description="Healthy events the reference rates need before incidents can be detected."
    )
    drift_detector: Literal["page_hinkley", "adwin", "kswin"] = Field(
        "page_hinkley", description="river drift detector watching each tracked numeric feature's block means."
    )
    drift_group_events: int = Field(
        5000,
        ge=0,
        description="A feature-drift notice opens an episode this many events long: the detections inside it are "
        "audited (and counted) together when it ends (0: one notice per detection).",
    )
    monitor_fallback_version: int | None = Field(None, ge=1, description="Rollback target when no stable one exists.")
    reference_set: str | None = Field(
        None,
        description="Known-good labelled events every candidate version is scored on before it may be stable: a "
        "CSV or Parquet file (the dataset's columns) or a topic range kafka:TOPIC:PARTITION:FROM-TO (unset: no gate).",
    )
    reference_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="A candidate more than this worse on the set than the best of the serving version and the "
        "newest reference_best_of stable versions fails.",
    )
    reference_best_of: int = Field(
        10,
        ge=0,
        le=1000,
        description="Newest stable versions a candidate is compared with on the reference set besides the serving "
        "one (the best of them): a slow decline cannot ratchet down version by version (0: the serving one only).",
    )

    # --- serving --------------------------------------------------------------------------
    predictions_topic: str | None = Field(
        None, description="Topic for per-event predictions (default: <events_topic>.predictions)."
    )
    publish_predictions: bool = Field(True, description="Learners publish a prediction for every event.")
    predictions_format: Literal["msgpack", "json"] = Field(
        "msgpack", description="Encoding of records on the predictions topic (header content-type says which)."
    )
    api_host: str = Field("127.0.0.1", description="Address `livelearn serve` binds.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of `livelearn serve`.")
    api_token: SecretStr | None = Field(
        None, description="Bearer token for the admin routes (secret; unset: admin off)."
    )
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
        30.0,
        gt=0,
        le=86_400,
        description="/v2/health/ready is 503 when serving could not follow the pointer this long.",
    )
    api_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes of `livelearn serve` (one per core; metrics are summed across them).",
    )
    api_access_log: bool = Field(False, description="`livelearn serve` logs one line per request (costs throughput).")
    api_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`livelearn serve` answers /metrics on this port (on api_host), apart from the predictions, and "
        "no longer on the API port (unset: /metrics on the API port).",
    )

    # --- validation of events -------------------------------------------------------------
    max_event_bytes: int = Field(1_048_576, ge=64, description="Larger events are dead-lettered.")
    max_features: int = Field(1000, ge=1, description="Events with more features are dead-lettered.")
    max_string_length: int = Field(256, ge=1, description="Longer string values are dead-lettered.")
    max_abs_value: float = Field(1e15, gt=0, le=1e100, description="Numbers beyond +/- this are dead-lettered.")

    # --- observability --------------------------------------------------------------------
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Prometheus port of this process (unset: off); `learn` and `monitor` also answer the probes "
        "/healthz and /readyz there.",
    )
    health_stale_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="/healthz of `learn` and `monitor` fails when their loop made no progress for this long.",
    )
    allow_empty_store: bool = Field(
        False,
        description="Let a learner start from nothing although Kafka says the model was learned before "
        "(Redis lost its data); new version numbers go on above what Kafka recorded, audited (`store_lost`). "
        "Off: it refuses and says why.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the Prometheus port of `learn` and `monitor` binds (0.0.0.0: every interface).",
    )
    status_interval_seconds: float = Field(1.0, gt=0, le=60, description="How often learners publish status to Redis.")
    drift_max_features: int = Field(
        20, ge=0, le=1000, description="Numeric features whose block means are recorded and watched for drift."
    )
    history_every_events: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="Learners record their rolling metrics every N labelled events; the monitor judges each record.",
    )

    # --- Kubernetes (streaming.kube) ---------------------------------------------------------
    kubernetes: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Kubernetes integration of `learn` and `monitor` (Events, the pod role label, the pin "
        "ConfigMap): auto: on in a pod with a service-account token; on: also outside one (KUBECONFIG); off.",
    )
    kubernetes_deployment: str | None = Field(
        None, description="Deployment the Kubernetes Events regard (the chart sets it; unset: the pod itself)."
    )
    kubernetes_pin_configmap: str | None = Field(
        None,
        description="ConfigMap the monitor polls for a declarative pin, key `pinned` (a version or empty; the "
        "chart sets it; unset: none).",
    )
    kubernetes_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="Timeout of one Kubernetes API call (errors are logged and counted)."
    )
    kubernetes_poll_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often the monitor reads the pin ConfigMap."
    )

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        if not _MODEL_NAME.match(value):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_kafka_bootstrap(cls, value: str) -> str:
        servers = [server.strip() for server in value.split(",") if server.strip()]
        if not servers or not all(map(_is_broker, servers)):
            raise ValueError("use host:port, comma-separated (e.g. kafka-1:9092,kafka-2:9092)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        """A URL redis-py can use as livelearn uses it: refused here, in one line, rather than as a traceback at
        the first connection (see :func:`_redis_url_problem`)."""
        problem = redis_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("labels_topic")
    @classmethod
    def _check_labels_topic(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A labels topic needs the join (a wait) and is not the events topic."""
        if value is None:
            return value
        if not value.strip():
            raise ValueError("name a topic, or leave it unset")
        if info.data.get("label_wait") == 0:
            raise ValueError("labels on their own topic need a wait: set label_wait (e.g. 30m)")
        if value == info.data.get("events_topic"):
            raise ValueError("labels on the events topic need no labels topic: leave it unset and set label_wait")
        return value

    @field_validator("challengers")
    @classmethod
    def _check_challengers(cls, value: list[str]) -> list[str]:
        """Each challenger written as livelearn reads it (:mod:`streaming.config._challengers`), names unique."""
        parse_challengers(value)
        return value

    @field_validator("guard_segments")
    @classmethod
    def _check_guard_segments(cls, value: list[str]) -> list[str]:
        """Each segment written as livelearn reads it (:mod:`streaming.config._segments`), named once; kept
        normalised (``PageValues > 0`` is ``PageValues>0``)."""
        return [segment.name for segment in parse_segments(value)]

    @field_validator("compare_segments")
    @classmethod
    def _check_segments(cls, value: list[str]) -> list[str]:
        """Each feature named once (twice would count its events twice)."""
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"each segment feature is named once; repeated: {', '.join(repeated)}")
        return value

    @field_validator("monitor_also")
    @classmethod
    def _check_also(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Each further rule written as livelearn reads it (:mod:`streaming.config._metric_rules`); the default rules
        leave out ``monitor_metric`` itself (guarding recall, the default recall rule is not an error)."""
        parse_metric_rules(value, None if value == list(DEFAULT_MONITOR_ALSO) else info.data.get("monitor_metric"))
        return value

    @field_validator("monitor_threshold")
    @classmethod
    def _check_threshold(cls, value: float, info: ValidationInfo) -> float:
        """A threshold the guarded metric can cross: at most 1 for the metrics in [0, 1] (from 0 for all)."""
        metric = info.data.get("monitor_metric")  # validated before this field; absent if it was invalid
        if metric is not None and metric not in _UNBOUNDED_METRICS and value > 1:
            raise ValueError(f"{metric} is between 0 and 1: use a threshold from 0 to 1 (log_loss: any from 0)")
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
        # each source's group tables ([kafka] bootstrap = ...) and LIVELEARN_<GROUP>__<NAME> variables become the
        # settings they name before the sources are merged, so the order above decides between sources as ever
        sources: list[PydanticBaseSettingsSource] = [
            FlatteningSource(settings_cls, init_settings, "the arguments"),
            GroupedEnvSource(settings_cls, ENV_PREFIX),
            env_settings,
        ]
        path = _CONFIG_FILE.get() or os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
        if path:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=Path(path))
            sources.append(FlatteningSource(settings_cls, toml, f"config file {path}"))
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

    # --- the groups each component receives (streaming.config._groups) ----------------------
    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (``update``: with those settings changed) whose groups are built afresh from its own values."""
        copied = super().model_copy(update=update, deep=deep)
        for attribute in GROUPS:
            copied.__dict__.pop(attribute, None)  # a group cached by the original may hold a value updated here
        return copied

    def _group(self, group: type[_G]) -> _G:
        values = {
            **self.__dict__,
            "dead_letter_topic": self.dead_letter_topic_name,
            "predictions_topic": self.predictions_topic_name,
            "consumer_group": self.consumer_group_name,
        }
        return group.model_validate(values)

    @functools.cached_property
    def kafka(self) -> KafkaSettings:
        """Brokers, client, security, topics and consumer group (derived names resolved)."""
        return self._group(KafkaSettings)

    @functools.cached_property
    def redis(self) -> RedisSettings:
        """The Redis URL, password and call timeout."""
        return self._group(RedisSettings)

    @functools.cached_property
    def store(self) -> StoreSettings:
        """The model's name in Redis, what the version store keeps, and how versions become stable."""
        return self._group(StoreSettings)

    @functools.cached_property
    def model(self) -> ModelSettings:
        """The model's hyperparameters, features, caps and engine."""
        return self._group(ModelSettings)

    @functools.cached_property
    def learner(self) -> LearnerSettings:
        """How the learner runs: window, dedupe, snapshot cadence, lease, status."""
        return self._group(LearnerSettings)

    @functools.cached_property
    def labels(self) -> LabelSettings:
        """Labels that arrive after their events: the join's topic, wait, policy and bounds."""
        return self._group(LabelSettings)

    @functools.cached_property
    def arms(self) -> ChallengerSettings:
        """Challengers learning in shadow beside the champion, and the comparison's rule."""
        return self._group(ChallengerSettings)

    @functools.cached_property
    def guard(self) -> GuardSettings:
        """The quality guard: the metric rule, incidents, drift and the reference set."""
        return self._group(GuardSettings)

    @functools.cached_property
    def serving(self) -> ServingSettings:
        """``livelearn serve``'s address, token, bounds and workers."""
        return self._group(ServingSettings)

    @functools.cached_property
    def limits(self) -> EventLimitSettings:
        """The event contract's bounds."""
        return self._group(EventLimitSettings)

    @functools.cached_property
    def probes(self) -> ProbeSettings:
        """The Prometheus and probe port of ``learn`` and ``monitor``."""
        return self._group(ProbeSettings)

    @functools.cached_property
    def kube(self) -> KubernetesSettings:
        """The Kubernetes integration."""
        return self._group(KubernetesSettings)


def _is_broker(server: str) -> bool:
    """Whether ``server`` is ``host[:port]`` (IPv6 in brackets), as kafka-python parses bootstrap servers."""
    match = _BROKER.match(server)
    return match is not None and int(match["port"] or 1) <= 65535


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings`, turning every configuration mistake into one readable :class:`ConfigError`.

    ``config_file`` (default: ``LIVELEARN_CONFIG_FILE``) is handed to the settings sources for this
    call only; the environment is not changed. ``overrides`` whose value is ``None`` are ignored, so CLI
    options left unset fall through to env vars, the config file and defaults.
    """
    if config_file is None:
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE") or None
    path = _checked_config_file(Path(config_file)) if config_file is not None else None
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + "; ".join(_problem(err, path) for err in exc.errors())) from None
    except SettingsError as exc:
        raise ConfigError(_unparsable_env_message(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML ({exc}); fix it or pass another file to --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {path} ({exc}); pass a readable UTF-8 TOML file to --config"
        ) from None
    finally:
        _CONFIG_FILE.reset(token)


def settings_document(settings: Settings) -> dict[str, Any]:
    """Every value of ``settings`` as plain JSON types, secrets revealed: for a process that must rebuild the
    exact same Settings (the workers of ``livelearn serve``). Keep it private: it holds the secrets.

    >>> doc = settings_document(Settings(model_name="shop", api_token="t0ken"))
    >>> doc["model_name"], doc["api_token"], doc["features_exclude"]
    ('shop', 't0ken', [])
    >>> settings_from_document(doc) == Settings(model_name="shop", api_token="t0ken")
    True
    """
    return {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in settings.model_dump().items()
    }


def settings_from_document(document: dict[str, Any]) -> Settings:
    """The Settings a :func:`settings_document` describes. Every field is given, so neither the environment nor
    a config file can change a value; a document that is not valid is a :class:`ConfigError`."""
    try:
        return Settings(**document)
    except ValidationError as exc:
        raise ConfigError(
            "invalid settings document: " + "; ".join(_problem(err, None) for err in exc.errors())
        ) from None


def _checked_config_file(path: Path) -> Path:
    """``path`` if it names a file, else :class:`ConfigError` saying what is wrong with it."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a TOML file to --config (or LIVELEARN_CONFIG_FILE)")
    if not path.is_file():
        raise ConfigError(
            f"config file {path} does not exist; pass an existing TOML file to --config (or LIVELEARN_CONFIG_FILE)"
        )
    return path


def _problem(err: Any, path: Path | None) -> str:
    """One validation error as ``name (ENV_VAR): what is wrong``."""
    name = ".".join(str(p) for p in err["loc"]) or "?"
    if err["type"] == "extra_forbidden":
        where = f" in config file {path}" if path else ""
        return (
            f"{name}{where} is not a livelearn setting (keys are the setting names in lower case without "
            f"{ENV_PREFIX}; `livelearn config` lists them)"
        )
    message = str(err["msg"]).removeprefix("Value error, ")  # pydantic's prefix for a validator's own words
    return f"{name} ({ENV_PREFIX}{name.upper()}): {message}"


def _unparsable_env_message(exc: SettingsError) -> str:
    """A list setting whose env var is not JSON (pydantic-settings raises ``SettingsError`` for it)."""
    match = re.search(r'field "([^"]+)"', str(exc))
    if match is None:
        return f"invalid configuration: {exc}"
    env = f"{ENV_PREFIX}{match.group(1).upper()}"
    items = [item.strip() for item in os.environ.get(env, "").split(",") if item.strip()] or ["a", "b"]
    return (
        f"invalid configuration: {env} is not valid JSON; lists are JSON in env vars, e.g. {env}='{json.dumps(items)}'"
    )
