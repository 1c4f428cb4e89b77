"""Settings loading: the config file is passed per call, never through the process environment."""

from __future__ import annotations

import os

import pytest

from snapshotter.connection import redact_url
from streaming.config import Settings, load_settings
from streaming.errors import ConfigError


@pytest.fixture
def no_config_env(monkeypatch):
    """No LIVELEARN_CONFIG_FILE, restored afterwards even if the code under test sets it."""
    monkeypatch.setenv("LIVELEARN_CONFIG_FILE", "placeholder")
    monkeypatch.delenv("LIVELEARN_CONFIG_FILE")


def test_load_settings_leaves_the_environment_alone(tmp_path, no_config_env):
    path = tmp_path / "livelearn.toml"
    path.write_text('model_name = "from-file"\nlearning_rate = 0.5\n')
    settings = load_settings(path, learning_rate=0.2)
    assert (settings.model_name, settings.learning_rate) == ("from-file", 0.2)
    assert "LIVELEARN_CONFIG_FILE" not in os.environ
    assert Settings().model_name == "default"  # the file applied to that one call only


def test_config_file_from_the_environment_still_applies(tmp_path, monkeypatch):
    path = tmp_path / "livelearn.toml"
    path.write_text('model_name = "from-env-file"\n')
    monkeypatch.setenv("LIVELEARN_CONFIG_FILE", str(path))
    assert load_settings().model_name == "from-env-file"
    assert Settings().model_name == "from-env-file"


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('model_name = "unterminated\n', ("is not valid TOML", "line 1")),
        ("nonsense_key = 3\n", ("nonsense_key", "is not a livelearn setting")),
    ],
)
def test_config_file_mistakes_are_config_errors(tmp_path, no_config_env, content, needles):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert all(n in str(caught.value) for n in needles)
    assert "LIVELEARN_NONSENSE_KEY" not in str(caught.value)  # not an env var: it came from the file


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://livelearn:s3cret@redis:6379/0", "redis://livelearn:***@redis:6379/0"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            "rediss://:p%40ss:w0rd@redis:6380/0?ssl_ca_certs=/etc/ca.pem",
            "rediss://:***@redis:6380/0?ssl_ca_certs=/etc/ca.pem",
        ),
        ("redis://redis:6379/0?password=s3cret&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("unix://:s3cret@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("unix:///run/redis.sock?db=0&Password=s3cret", "unix:///run/redis.sock?db=0&Password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_url_hides_every_password(url, shown):
    assert redact_url(url) == shown


def test_the_configuration_reference_lists_every_setting_with_its_default_and_meaning():
    from pathlib import Path

    from streaming.cli.operate import settings_markdown

    reference = (Path(__file__).parent.parent / "docs" / "reference" / "configuration.md").read_text()
    assert settings_markdown() in reference, (
        "regenerate the table in docs/reference/configuration.md with: livelearn config --markdown"
    )
