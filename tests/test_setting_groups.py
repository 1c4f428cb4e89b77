"""The settings in groups: every setting is in one group, under the same type, with the same value; the names users
write (env vars, TOML keys, Helm values) are unchanged."""

from __future__ import annotations

import re
import typing

import pytest
from pydantic import SecretStr, ValidationError

from streaming.config import GROUPS, KafkaSettings, ServingSettings, Settings, SettingsGroup, load_settings

#: Settings each group resolves (``None`` -> the derived name), so their group type drops ``None``.
RESOLVED = {"dead_letter_topic", "predictions_topic", "consumer_group"}
#: Settings more than one group carries (identity).
SHARED = {"model_name"}


def _source(group: type[SettingsGroup], field: str) -> str:
    alias = group.model_fields[field].validation_alias
    choices = getattr(alias, "choices", [alias])
    assert len(choices) == 1 and isinstance(choices[0], str), f"{group.__name__}.{field}: one setting name"
    return choices[0]


def _sources() -> list[tuple[str, type[SettingsGroup], str]]:
    return [(_source(group, field), group, field) for group in GROUPS.values() for field in group.model_fields]


def test_every_setting_is_viewed_by_exactly_one_group():
    viewed: dict[str, list[str]] = {}
    for name, group, field in _sources():
        assert name in Settings.model_fields, f"{group.__name__}.{field} views {name!r}, which is not a setting"
        viewed.setdefault(name, []).append(f"{group.__name__}.{field}")
    missing = set(Settings.model_fields) - set(viewed)
    assert not missing, f"settings in no group: {sorted(missing)}"
    twice = {name: where for name, where in viewed.items() if len(where) > 1 and name not in SHARED}
    assert not twice, f"settings in several groups: {twice}"


def _without_none(annotation: object) -> object:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


@pytest.mark.parametrize(("name", "group", "field"), _sources(), ids=[name for name, _, _ in _sources()])
def test_a_group_field_has_its_settings_type(name, group, field):
    wanted = Settings.model_fields[name].annotation
    got = group.model_fields[field].annotation
    if name in RESOLVED:
        wanted = _without_none(wanted)
    if typing.get_origin(wanted) is list:  # lists are tuples in the frozen groups
        wanted = tuple[(*typing.get_args(wanted), ...)]
    assert got == wanted, f"{group.__name__}.{field} is {got}, the setting {name} is {wanted}"


def test_groups_hold_the_settings_values_with_derived_names_resolved():
    settings = Settings(
        model_name="shop",
        kafka_bootstrap="k1:9093,k2:9093",
        kafka_sasl_password="pw",
        events_topic="clicks",
        features_include=["a", "b"],
        monitor_threshold=0.7,
        api_port=0,
        api_token="t0ken",
        kubernetes="off",
        kubernetes_timeout_seconds=2.5,
    )
    assert settings.kafka.bootstrap == "k1:9093,k2:9093"
    assert settings.kafka.sasl_password == SecretStr("pw")
    assert (settings.kafka.dead_letter_topic, settings.kafka.predictions_topic, settings.kafka.consumer_group) == (
        "clicks.dlq",
        "clicks.predictions",
        "livelearn-shop",
    )
    assert settings.model.features_include == ("a", "b")
    assert settings.guard.threshold == 0.7
    assert (settings.serving.port, settings.serving.token) == (0, SecretStr("t0ken"))
    assert (settings.kube.mode, settings.kube.timeout_seconds, settings.kube.model_name) == ("off", 2.5, "shop")
    for name, group, field in _sources():
        value = getattr(getattr(settings, group.attribute), field)
        expected = getattr(settings, name)
        if name not in RESOLVED:  # (a list setting's group field is a tuple: groups are frozen)
            assert value == (tuple(expected) if isinstance(expected, list) else expected), f"{group.__name__}.{field}"


def test_each_settings_attribute_builds_its_group_once():
    settings = Settings()
    for attribute, group in GROUPS.items():
        assert group.attribute == attribute
        view = getattr(settings, attribute)
        assert isinstance(view, group)
        assert getattr(settings, attribute) is view  # built once per Settings
    assert Settings() == settings  # the cached views are not part of equality


def test_groups_are_frozen():
    serving = Settings().serving
    with pytest.raises(ValidationError):
        serving.port = 1  # type: ignore[misc]


def test_of_takes_the_group_or_the_settings_and_refuses_anything_else():
    settings = Settings(events_topic="shop")
    assert KafkaSettings.of(settings) is settings.kafka
    assert KafkaSettings.of(settings.kafka) is settings.kafka
    with pytest.raises(TypeError, match="KafkaSettings"):
        KafkaSettings.of(settings.serving)  # type: ignore[arg-type]


def test_the_names_users_write_still_set_the_grouped_values(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVELEARN_API_PORT", "8123")
    monkeypatch.setenv("LIVELEARN_KAFKA_BOOTSTRAP", "kafka:9092")
    config = tmp_path / "livelearn.toml"
    config.write_text('monitor_metric = "f1"\nserving_refresh_seconds = 0.5\n')
    settings = load_settings(config)
    assert settings.serving.port == 8123
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.guard.metric == "f1"
    assert settings.serving.refresh_seconds == 0.5


def test_a_group_is_built_from_short_or_setting_names():
    assert ServingSettings.model_validate({**Settings().model_dump(), "api_port": 9}).port == 9
    assert ServingSettings.model_validate({**Settings().serving.model_dump(), "port": 9}).port == 9


def test_a_toml_table_per_group_sets_the_settings_it_names(tmp_path):
    config = tmp_path / "livelearn.toml"
    config.write_text(
        'model_name = "shop"\n[kafka]\nbootstrap = "k:9092"\n[serving]\nport = 8081\n'
        '[model]\nfeatures_exclude = ["Month"]\n'
    )
    settings = load_settings(config)
    assert (settings.kafka_bootstrap, settings.api_port, settings.features_exclude) == ("k:9092", 8081, ["Month"])
    assert settings.model_name == "shop"


def test_grouped_env_vars_set_the_settings_they_name_and_the_usual_order_holds(monkeypatch, tmp_path):
    config = tmp_path / "livelearn.toml"
    config.write_text('api_port = 1000\n[guard]\nmetric = "f1"\n')
    monkeypatch.setenv("LIVELEARN_SERVING__PORT", "8082")  # env over the config file, whichever spelling
    monkeypatch.setenv("livelearn_model__features_include", '["a", "b"]')  # any case, lists as JSON
    settings = load_settings(config)
    assert (settings.api_port, settings.monitor_metric, settings.features_include) == (8082, "f1", ["a", "b"])
    assert load_settings(config, api_port=9).api_port == 9  # arguments over both


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"LIVELEARN_SERVING__PORT": "1", "LIVELEARN_API_PORT": "2"}, "", "sets api_port twice"),
        ({}, "api_port = 1\n[serving]\nport = 2\n", "sets api_port twice"),
        ({"LIVELEARN_SERVING__PORTT": "1"}, "", "serving.portt in the environment is not a livelearn setting"),
        ({}, "[kafka]\nbootsrap = 'k:1'\n", "kafka.bootsrap in config file"),
        ({"LIVELEARN_MODEL__FEATURES_INCLUDE": "a,b"}, "", "is not valid JSON"),
        ({}, "[serving]\nport = 'abc'\n", "api_port (LIVELEARN_API_PORT)"),
    ],
)
def test_a_grouped_mistake_is_one_line_naming_it(monkeypatch, tmp_path, env, toml, message):
    from streaming.errors import ConfigError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "livelearn.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_settings(config)
    assert "\n" not in str(caught.value)


def test_the_settings_table_names_each_grouped_spelling():
    from streaming.cli.operate import settings_markdown

    table = settings_markdown()
    for name in Settings.model_fields:
        if name != "model_name":
            assert f"| `LIVELEARN_{name.upper()}` | `[" in table, name


def test_a_copy_with_updates_builds_its_groups_from_its_own_values():
    settings = Settings()
    assert settings.guard.threshold_mode == "absolute"  # cached on the original
    copied = settings.model_copy(update={"monitor_threshold_mode": "relative", "api_port": 1})
    assert (copied.guard.threshold_mode, copied.serving.port) == ("relative", 1)
    assert settings.guard.threshold_mode == "absolute"
