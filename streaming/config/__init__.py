"""One frozen, typed configuration for every livelearn process, and the groups each component receives.

Values come from, highest priority first: explicit keyword arguments (the CLI's options), environment
variables prefixed ``LIVELEARN_``, a TOML file named by ``LIVELEARN_CONFIG_FILE`` (or ``--config``),
then the defaults. Secrets are :class:`pydantic.SecretStr` and never printed.

:class:`Settings` holds every value under the name users write (env var ``LIVELEARN_KAFKA_BOOTSTRAP``, TOML key
``kafka_bootstrap``, Helm value ``config.kafka_bootstrap``). Components receive groups of it
(``settings.kafka``, ``settings.serving``, ...: :data:`GROUPS`), each a small frozen model with short names.
Those names may also be written grouped: a TOML table per group (``[kafka]`` ``bootstrap = ...``) or
``LIVELEARN_KAFKA__BOOTSTRAP`` (see :mod:`streaming.config._grouped_names`).

>>> s = Settings(model_name="shop", learning_rate=0.05)
>>> s.model_name, s.learning_rate, s.dead_letter_topic_name
('shop', 0.05, 'livelearn.events.dlq')
>>> s.consumer_group_name
'livelearn-shop'
>>> s.model.learning_rate, s.kafka.dead_letter_topic, s.guard.metric
(0.05, 'livelearn.events.dlq', 'accuracy')
"""

from streaming.config._challengers import BASE, CHAMPION, ChallengerConfig, parse_challenger, parse_challengers
from streaming.config._grouped_names import grouped_name
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
from streaming.config._metric_rules import MetricRule, parse_metric_rule, parse_metric_rules
from streaming.config._redis_url import REDIS_URL_PATTERN
from streaming.config._segments import Segment, parse_segment, parse_segments
from streaming.config._settings import (
    ENV_PREFIX,
    Settings,
    load_settings,
    settings_document,
    settings_from_document,
)

__all__ = [
    "BASE",
    "CHAMPION",
    "ENV_PREFIX",
    "GROUPS",
    "REDIS_URL_PATTERN",
    "ChallengerConfig",
    "ChallengerSettings",
    "EventLimitSettings",
    "GuardSettings",
    "KafkaSettings",
    "KubernetesSettings",
    "LabelSettings",
    "LearnerSettings",
    "MetricRule",
    "ModelSettings",
    "ProbeSettings",
    "RedisSettings",
    "Segment",
    "ServingSettings",
    "Settings",
    "SettingsGroup",
    "StoreSettings",
    "grouped_name",
    "load_settings",
    "parse_challenger",
    "parse_challengers",
    "parse_metric_rule",
    "parse_metric_rules",
    "parse_segment",
    "parse_segments",
    "settings_document",
    "settings_from_document",
]
