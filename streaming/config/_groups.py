"""The settings in groups, one per concern: what each component receives instead of every setting.

:class:`~streaming.config.Settings` is the one place values come from (keyword arguments, ``LIVELEARN_*``
variables, a TOML file; its field names are the names users write, in env vars, TOML files and Helm values).
Each group here is a small frozen view of some of those fields under short names
(``Settings.kafka_bootstrap`` is ``KafkaSettings.bootstrap``), validated again when the view is built.
A component takes the groups it uses (the serving app: :class:`ServingSettings`, :class:`RedisSettings`,
:class:`ModelSettings`, :class:`EventLimitSettings`), so a setting added for one concern never reaches the others.

Each field's ``validation_alias`` is the setting it views; :data:`GROUPS` lists the groups by the
attribute of ``Settings`` that builds them.

Examples
--------
>>> from streaming.config import Settings
>>> settings = Settings(model_name="shop", kafka_bootstrap="kafka:9092", api_port=8080)
>>> settings.kafka.bootstrap, settings.kafka.consumer_group, settings.serving.port
('kafka:9092', 'livelearn-shop', 8080)
>>> ServingSettings.model_validate({"api_port": 9000, **settings.model_dump()}).port == settings.serving.port
True
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings

from streaming.config._challengers import ChallengerConfig, parse_challengers
from streaming.config._metric_rules import MetricRule, parse_metric_rules

__all__ = [
    "GROUPS",
    "ChallengerSettings",
    "EventLimitSettings",
    "GuardSettings",
    "KafkaSettings",
    "KubernetesSettings",
    "LabelSettings",
    "LearnerSettings",
    "ModelSettings",
    "ProbeSettings",
    "RedisSettings",
    "ServingSettings",
    "SettingsGroup",
    "StoreSettings",
]


def _setting(name: str) -> str:
    """Where a group's field comes from: the setting ``name`` (or, with ``populate_by_name``, its short name)."""
    return name


class SettingsGroup(BaseModel):
    """A frozen view of some settings under short names (see the module's docstring)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, allow_inf_nan=False)

    #: The attribute of ``Settings`` that builds this group (a key of :data:`GROUPS`).
    attribute: ClassVar[str] = ""

    @classmethod
    def of(cls, source: Self | BaseSettings) -> Self:
        """This group of ``source``: ``source`` itself when it is one, else the group of those
        :class:`~streaming.config.Settings` (for entry points that take either).

        >>> from streaming.config import Settings
        >>> KafkaSettings.of(Settings(events_topic="shop")).events_topic
        'shop'
        >>> kafka = Settings().kafka
        >>> KafkaSettings.of(kafka) is kafka
        True
        """
        if isinstance(source, cls):
            return source
        group = getattr(source, cls.attribute, None)
        if not isinstance(group, cls):
            raise TypeError(f"{type(source).__name__} has no {cls.__name__} (expected Settings or the group)")
        return group


class KafkaSettings(SettingsGroup):
    """The brokers, the client, its security, and the topics and group a learner reads and writes.

    The derived names are resolved: ``dead_letter_topic``, ``predictions_topic`` and ``consumer_group`` are
    never ``None`` here.
    """

    attribute: ClassVar[str] = "kafka"

    model_name: str = Field(validation_alias=_setting("model_name"))
    bootstrap: str = Field(validation_alias=_setting("kafka_bootstrap"))
    client: Literal["auto", "confluent", "kafka-python"] = Field(validation_alias=_setting("kafka_client"))
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        validation_alias=_setting("kafka_security_protocol")
    )
    sasl_mechanism: str | None = Field(validation_alias=_setting("kafka_sasl_mechanism"))
    sasl_username: str | None = Field(validation_alias=_setting("kafka_sasl_username"))
    sasl_password: SecretStr | None = Field(validation_alias=_setting("kafka_sasl_password"))
    ssl_cafile: str | None = Field(validation_alias=_setting("kafka_ssl_cafile"))
    ssl_certfile: str | None = Field(validation_alias=_setting("kafka_ssl_certfile"))
    ssl_keyfile: str | None = Field(validation_alias=_setting("kafka_ssl_keyfile"))
    ssl_key_password: SecretStr | None = Field(validation_alias=_setting("kafka_ssl_key_password"))
    bootstrap_timeout_seconds: float = Field(validation_alias=_setting("kafka_bootstrap_timeout_seconds"))
    unreachable_seconds: float = Field(validation_alias=_setting("kafka_unreachable_seconds"))
    events_topic: str = Field(validation_alias=_setting("events_topic"))
    event_format: Literal["msgpack", "json", "auto"] = Field(validation_alias=_setting("event_format"))
    dead_letter_topic: str = Field(validation_alias=_setting("dead_letter_topic"))
    consumer_group: str = Field(validation_alias=_setting("consumer_group"))
    auto_offset_reset: Literal["earliest", "latest"] = Field(validation_alias=_setting("auto_offset_reset"))
    poll_timeout_ms: int = Field(validation_alias=_setting("poll_timeout_ms"))
    poll_max_records: int = Field(validation_alias=_setting("poll_max_records"))
    predictions_topic: str = Field(validation_alias=_setting("predictions_topic"))
    publish_predictions: bool = Field(validation_alias=_setting("publish_predictions"))
    predictions_format: Literal["msgpack", "json"] = Field(validation_alias=_setting("predictions_format"))


class RedisSettings(SettingsGroup):
    """Where versions, the lease and status live, and how long one call may take."""

    attribute: ClassVar[str] = "redis"

    url: str = Field(validation_alias=_setting("redis_url"))
    password: SecretStr | None = Field(validation_alias=_setting("redis_password"))
    timeout_seconds: float = Field(validation_alias=_setting("redis_timeout_seconds"))


class StoreSettings(SettingsGroup):
    """The version store of one model: its name, how many versions, stable versions, audit and version-log entries
    it keeps, and how a version becomes stable (``promotion``)."""

    attribute: ClassVar[str] = "store"

    model_name: str = Field(validation_alias=_setting("model_name"))
    keep_versions: int = Field(validation_alias=_setting("keep_versions"))
    keep_stable_versions: int = Field(validation_alias=_setting("keep_stable_versions"))
    audit_retention: int = Field(validation_alias=_setting("audit_retention"))
    version_log_retention: int = Field(validation_alias=_setting("version_log_retention"))
    promotion: Literal["guard", "immediate"] = Field(validation_alias=_setting("promotion"))
    backup_url: str | None = Field(validation_alias=_setting("backup_url"))


class ModelSettings(SettingsGroup):
    """What the model is (hyperparameters, features, caps) and which engine computes it."""

    attribute: ClassVar[str] = "model"

    learning_rate: float = Field(validation_alias=_setting("learning_rate"))
    l2: float = Field(validation_alias=_setting("l2"))
    features_include: tuple[str, ...] = Field(validation_alias=_setting("features_include"))
    features_exclude: tuple[str, ...] = Field(validation_alias=_setting("features_exclude"))
    max_categories_per_feature: int = Field(validation_alias=_setting("max_categories_per_feature"))
    max_inputs: int = Field(validation_alias=_setting("max_inputs"))
    max_vocabulary_bytes: int = Field(validation_alias=_setting("max_vocabulary_bytes"))
    engine: Literal["auto", "river", "compiled"] = Field(validation_alias=_setting("engine"))
    cache_dir: str | None = Field(validation_alias=_setting("cache_dir"))


class LearnerSettings(SettingsGroup):
    """How the learner runs: its metric window, dedupe, snapshot cadence, lease, promotion and status."""

    attribute: ClassVar[str] = "learner"

    rolling_window: int = Field(validation_alias=_setting("rolling_window"))
    dedupe_window: int = Field(validation_alias=_setting("dedupe_window"))
    snapshot_every_events: int = Field(validation_alias=_setting("snapshot_every_events"))
    snapshot_every_seconds: float = Field(validation_alias=_setting("snapshot_every_seconds"))
    lease_ttl_seconds: float = Field(validation_alias=_setting("lease_ttl_seconds"))
    promotion_partial_blocks: bool = Field(validation_alias=_setting("promotion_partial_blocks"))
    promotion_delay_events: int = Field(validation_alias=_setting("promotion_delay_events"))
    status_interval_seconds: float = Field(validation_alias=_setting("status_interval_seconds"))
    drift_max_features: int = Field(validation_alias=_setting("drift_max_features"))
    allow_empty_store: bool = Field(validation_alias=_setting("allow_empty_store"))


class LabelSettings(SettingsGroup):
    """Labels that arrive after their events: the join's wait, its policy and its bounds
    (:mod:`streaming.learner.join`)."""

    attribute: ClassVar[str] = "labels"

    topic: str | None = Field(validation_alias=_setting("labels_topic"))
    wait_seconds: float = Field(validation_alias=_setting("label_wait"))
    policy: Literal["drop", "negative"] = Field(validation_alias=_setting("label_policy"))
    max_pending: int = Field(validation_alias=_setting("label_max_pending"))
    max_bytes: int = Field(validation_alias=_setting("label_max_bytes"))
    max_orphans: int = Field(validation_alias=_setting("label_max_orphans"))
    remember: int = Field(validation_alias=_setting("label_remember"))

    @property
    def joined(self) -> bool:
        """Whether labels may come after their events (a wait is set)."""
        return self.wait_seconds > 0


class ChallengerSettings(SettingsGroup):
    """Challengers learning in shadow and how they are compared with the champion (:mod:`streaming.learner.arms`,
    :mod:`monitor.compare`)."""

    attribute: ClassVar[str] = "arms"

    declared: tuple[str, ...] = Field(validation_alias=_setting("challengers"))
    alpha: float = Field(validation_alias=_setting("compare_alpha"))
    min_gain: float = Field(validation_alias=_setting("compare_min_gain"))
    min_labels: int = Field(validation_alias=_setting("compare_min_labels"))
    segments: tuple[str, ...] = Field(validation_alias=_setting("compare_segments"))
    segment_margin: float = Field(validation_alias=_setting("compare_segment_margin"))
    policy: Literal["manual", "auto"] = Field(validation_alias=_setting("challenger_policy"))
    confirm_labels: int = Field(validation_alias=_setting("compare_confirm_labels"))
    cooldown_labels: int = Field(validation_alias=_setting("challenger_cooldown_labels"))

    @property
    def configs(self) -> tuple[ChallengerConfig, ...]:
        """The declared challengers, parsed (validated when the settings were)."""
        return parse_challengers(self.declared)


class GuardSettings(SettingsGroup):
    """The quality guard: the rolling-metric rule and its rollbacks and freezes (``monitor_*``), the
    data-quality incidents (``incident_*``, ``reference_*``), drift, the reference-set gate, and the block they
    are judged by (``history_every_events``)."""

    attribute: ClassVar[str] = "guard"

    metric: Literal["accuracy", "precision", "recall", "f1", "balanced_accuracy", "roc_auc", "log_loss"] = Field(
        validation_alias=_setting("monitor_metric")
    )
    threshold: float = Field(validation_alias=_setting("monitor_threshold"))
    threshold_mode: Literal["absolute", "relative"] = Field(validation_alias=_setting("monitor_threshold_mode"))
    relative_drop: float = Field(validation_alias=_setting("monitor_relative_drop"))
    also: tuple[str, ...] = Field(validation_alias=_setting("monitor_also"))
    min_samples: int = Field(validation_alias=_setting("monitor_min_samples"))
    patience: int = Field(validation_alias=_setting("monitor_patience"))
    check_interval_seconds: float = Field(validation_alias=_setting("monitor_check_interval_seconds"))
    cooldown_events: int = Field(validation_alias=_setting("monitor_cooldown_events"))
    cooldown_seconds: float = Field(validation_alias=_setting("monitor_cooldown_seconds"))
    max_rollbacks: int = Field(validation_alias=_setting("monitor_max_rollbacks"))
    rollback_window_events: int = Field(validation_alias=_setting("monitor_rollback_window_events"))
    rollback_window_seconds: float = Field(validation_alias=_setting("monitor_rollback_window_seconds"))
    resume_after_events: int = Field(validation_alias=_setting("monitor_resume_after_events"))
    resume_after_seconds: float = Field(validation_alias=_setting("monitor_resume_after_seconds"))
    fallback_version: int | None = Field(validation_alias=_setting("monitor_fallback_version"))
    incident_label_rate_bound: float = Field(validation_alias=_setting("incident_label_rate_bound"))
    incident_prediction_rate_bound: float = Field(validation_alias=_setting("incident_prediction_rate_bound"))
    incident_label_run_probability: float = Field(validation_alias=_setting("incident_label_run_probability"))
    incident_odds_ratio: float = Field(validation_alias=_setting("incident_odds_ratio"))
    incident_odds_threshold: float = Field(validation_alias=_setting("incident_odds_threshold"))
    segments: tuple[str, ...] = Field(validation_alias=_setting("guard_segments"))
    segment_values: int = Field(validation_alias=_setting("guard_segment_values"))
    incident_patience: int = Field(validation_alias=_setting("incident_patience"))
    incident_resume_after_events: int = Field(validation_alias=_setting("incident_resume_after_events"))
    reference_half_life_events: int = Field(validation_alias=_setting("reference_half_life_events"))
    reference_min_events: int = Field(validation_alias=_setting("reference_min_events"))
    drift_detector: Literal["page_hinkley", "adwin", "kswin"] = Field(validation_alias=_setting("drift_detector"))
    drift_group_events: int = Field(validation_alias=_setting("drift_group_events"))
    reference_set: str | None = Field(validation_alias=_setting("reference_set"))
    reference_tolerance: float = Field(validation_alias=_setting("reference_tolerance"))
    reference_best_of: int = Field(validation_alias=_setting("reference_best_of"))
    #: the guard's block: learners record a metric sample every this many labelled events, each judged
    history_every_events: int = Field(validation_alias=_setting("history_every_events"))

    @property
    def rules(self) -> tuple[MetricRule, ...]:
        """The further guarded metrics (``monitor_also``), parsed (validated when the settings were); a default rule
        on ``monitor_metric`` itself is left out (it is guarded by ``monitor_threshold``)."""
        return tuple(rule for rule in parse_metric_rules(self.also) if rule.metric != self.metric)


class ServingSettings(SettingsGroup):
    """``livelearn serve``: its address, admin token, request bounds, workers, metrics port and how it follows
    versions."""

    attribute: ClassVar[str] = "serving"

    host: str = Field(validation_alias=_setting("api_host"))
    port: int = Field(validation_alias=_setting("api_port"))
    token: SecretStr | None = Field(validation_alias=_setting("api_token"))
    refresh_seconds: float = Field(validation_alias=_setting("serving_refresh_seconds"))
    max_batch: int = Field(validation_alias=_setting("api_max_batch"))
    max_body_bytes: int = Field(validation_alias=_setting("api_max_body_bytes"))
    redis_timeout_seconds: float = Field(validation_alias=_setting("api_redis_timeout_seconds"))
    stale_after_seconds: float = Field(validation_alias=_setting("serving_stale_after_seconds"))
    workers: int = Field(validation_alias=_setting("api_workers"))
    access_log: bool = Field(validation_alias=_setting("api_access_log"))
    metrics_port: int | None = Field(validation_alias=_setting("api_metrics_port"))


class EventLimitSettings(SettingsGroup):
    """The event contract's bounds: past them an event is dead-lettered (a request refused)."""

    attribute: ClassVar[str] = "limits"

    max_event_bytes: int = Field(validation_alias=_setting("max_event_bytes"))
    max_features: int = Field(validation_alias=_setting("max_features"))
    max_string_length: int = Field(validation_alias=_setting("max_string_length"))
    max_abs_value: float = Field(validation_alias=_setting("max_abs_value"))


class ProbeSettings(SettingsGroup):
    """The Prometheus port of ``learn`` and ``monitor``, which also answers ``/healthz`` and ``/readyz``."""

    attribute: ClassVar[str] = "probes"

    metrics_port: int | None = Field(validation_alias=_setting("metrics_port"))
    metrics_host: str = Field(validation_alias=_setting("metrics_host"))
    health_stale_seconds: float = Field(validation_alias=_setting("health_stale_seconds"))


class KubernetesSettings(SettingsGroup):
    """The Kubernetes integration: Events, the pod role label, the pin ConfigMap."""

    attribute: ClassVar[str] = "kube"

    model_name: str = Field(validation_alias=_setting("model_name"))
    mode: Literal["auto", "on", "off"] = Field(validation_alias=_setting("kubernetes"))
    deployment: str | None = Field(validation_alias=_setting("kubernetes_deployment"))
    pin_configmap: str | None = Field(validation_alias=_setting("kubernetes_pin_configmap"))
    timeout_seconds: float = Field(validation_alias=_setting("kubernetes_timeout_seconds"))
    poll_seconds: float = Field(validation_alias=_setting("kubernetes_poll_seconds"))


#: Each group by the ``Settings`` attribute that builds it.
GROUPS: dict[str, type[SettingsGroup]] = {
    "kafka": KafkaSettings,
    "redis": RedisSettings,
    "store": StoreSettings,
    "model": ModelSettings,
    "learner": LearnerSettings,
    "labels": LabelSettings,
    "arms": ChallengerSettings,
    "guard": GuardSettings,
    "serving": ServingSettings,
    "limits": EventLimitSettings,
    "probes": ProbeSettings,
    "kube": KubernetesSettings,
}
