"""The grouped spelling of settings: a TOML table per group, ``LIVELEARN_<GROUP>__<NAME>`` env vars.

Every setting has its flat name (``kafka_bootstrap``, ``LIVELEARN_KAFKA_BOOTSTRAP``, Helm ``config.kafka_bootstrap``),
and also the group's name for it (:mod:`streaming.config._groups`)::

    [kafka]                        # the same as kafka_bootstrap = "kafka:9092"
    bootstrap = "kafka:9092"
    [serving]                      # the same as api_port = 8080
    port = 8080

or ``LIVELEARN_SERVING__PORT=8080``. Each source (keyword arguments, env vars, the TOML file) is flattened on its
own, so the usual order still decides between sources; within one source a setting given both ways is refused.

>>> flatten({"model_name": "shop", "kafka": {"bootstrap": "k:9092"}, "serving": {"port": 1}}, "the config file")
{'model_name': 'shop', 'kafka_bootstrap': 'k:9092', 'api_port': 1}
>>> grouped_name("api_port")
'serving.port'
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from streaming.config._groups import GROUPS
from streaming.errors import ConfigError

__all__ = ["FlatteningSource", "GroupedEnvSource", "flatten", "grouped_name"]

#: Settings every group may carry but that are written at the top level only (the model's identity).
_TOP_LEVEL = frozenset({"model_name"})


def _setting_of() -> dict[tuple[str, str], str]:
    names: dict[tuple[str, str], str] = {}
    for attribute, group in GROUPS.items():
        for field, info in group.model_fields.items():
            setting = info.validation_alias
            if isinstance(setting, str) and setting not in _TOP_LEVEL:
                names[attribute, field] = setting
    return names


#: ``(group, short name) -> setting``, e.g. ``("serving", "port") -> "api_port"``.
SETTING_OF = _setting_of()
_GROUPED = {setting: f"{attribute}.{field}" for (attribute, field), setting in SETTING_OF.items()}


def grouped_name(setting: str) -> str | None:
    """``group.name`` of a setting (``None``: top level only, like ``model_name``)."""
    return _GROUPED.get(setting)


def flatten(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` with each group table replaced by the settings it names (``where``: the source, for errors)."""
    flat = {key: value for key, value in values.items() if not (key in GROUPS and isinstance(value, Mapping))}
    for attribute in GROUPS:
        table = values.get(attribute)
        if not isinstance(table, Mapping):
            continue
        for short, value in table.items():
            setting = SETTING_OF.get((attribute, short))
            if setting is None:
                takes = ", ".join(field for (group, field) in SETTING_OF if group == attribute)
                raise ConfigError(
                    f"invalid configuration: {attribute}.{short} in {where} is not a livelearn setting "
                    f"([{attribute}] takes {takes}; `livelearn config` lists every setting)"
                )
            if setting in flat:
                raise ConfigError(
                    f"invalid configuration: {where} sets {setting} twice, as {setting} and as {attribute}.{short}; "
                    "keep one"
                )
            flat[setting] = value
    return flat


class FlatteningSource(PydanticBaseSettingsSource):
    """Another source's values with its group tables flattened (see :func:`flatten`)."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource, where: str) -> None:
        super().__init__(settings_cls)
        self.inner, self.where = inner, where

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return flatten(self.inner(), self.where)


class GroupedEnvSource(PydanticBaseSettingsSource):
    """``<PREFIX><GROUP>__<NAME>`` env vars (any case) as the settings they name; lists are JSON, as in the flat
    env vars."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        self.prefix = prefix.upper()
        self.environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, dict[str, Any]] = {}
        for key, raw in self.environ.items():
            name = key.upper()
            if not name.startswith(self.prefix) or "__" not in name:
                continue
            attribute, _, short = name[len(self.prefix) :].lower().partition("__")
            if attribute not in GROUPS:
                continue
            values.setdefault(attribute, {})[short] = self._decoded(attribute, short, key, raw)
        flat = flatten(values, "the environment")
        given = {key.upper() for key in self.environ}
        for setting in flat:
            if f"{self.prefix}{setting.upper()}" in given:
                raise ConfigError(
                    f"invalid configuration: the environment sets {setting} twice, as {self.prefix}{setting.upper()} "
                    f"and as {self.prefix}{_GROUPED[setting].replace('.', '__').upper()}; keep one"
                )
        return flat

    def _decoded(self, attribute: str, short: str, key: str, raw: str) -> Any:
        setting = SETTING_OF.get((attribute, short))
        info = self.settings_cls.model_fields.get(setting) if setting else None
        if info is None or typing.get_origin(info.annotation) is not list:
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigError(
                f'invalid configuration: {key} is not valid JSON; lists are JSON in env vars, e.g. {key}=\'["a", "b"]\''
            ) from None
