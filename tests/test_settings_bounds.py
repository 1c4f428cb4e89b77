"""Settings that used to pass and fail later are refused up front (issue 16, item 6): a Redis URL redis-py cannot
use (or livelearn must not), a monitor threshold outside its metric's range, NaN or infinite numbers. Each is one
``error:`` line naming the env var and exit code 2, from any command, before anything connects anywhere.
"""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
import sys

import pytest
import redis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from settings_cases import ACCEPTED_REDIS_URLS, ACCEPTED_THRESHOLDS, REFUSED_REDIS_URLS, REFUSED_THRESHOLDS

from snapshotter.connection import connect_redis
from streaming.cli import main
from streaming.config import Settings, load_settings
from streaming.errors import ConfigError

#: Every float setting, the class this is about: NaN and infinities are never a meaningful value of one.
FLOAT_SETTINGS = sorted(name for name, field in Settings.model_fields.items() if field.annotation is float)


def livelearn(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with only ``env`` of the LIVELEARN_* variables set (and no config file)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 2 and exactly one ``error:`` line on stderr (no traceback) containing every needle."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def no_livelearn_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("LIVELEARN_"):
            monkeypatch.delenv(name)


# -- the Redis URL -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "needle"), REFUSED_REDIS_URLS)
def test_a_hostile_redis_url_is_one_line_and_exit_2(url, needle, no_livelearn_env, monkeypatch, capsys):
    """The console entry point in this process (a subprocess each would take a minute): exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["livelearn", "versions", "list"])
    monkeypatch.setenv("LIVELEARN_REDIS_URL", url)
    with pytest.raises(SystemExit) as exited:
        main()
    result = subprocess.CompletedProcess(sys.argv, exited.value.code, "", capsys.readouterr().err)
    assert_one_line_error(result, "LIVELEARN_REDIS_URL", needle)
    assert "pa#ss" not in result.stderr and "s3cret" not in result.stderr


@pytest.mark.parametrize("command", [("config",), ("versions", "list"), ("learning", "resume", "--reason", "x")])
@pytest.mark.parametrize("url", ["redis://redis:abc/0", "redis://redis:99999/0", "redis://redis/0?socket_timeout=abc"])
def test_every_command_refuses_a_bad_redis_url_the_same_way(command, url):
    by_env = livelearn(*command, LIVELEARN_REDIS_URL=url)
    assert_one_line_error(by_env, "LIVELEARN_REDIS_URL")
    if command != ("config",):
        by_option = livelearn(*command, "--redis-url", url)
        assert_one_line_error(by_option, "LIVELEARN_REDIS_URL")


@pytest.mark.parametrize("url", ACCEPTED_REDIS_URLS)
def test_usable_redis_urls_pass_and_redis_py_builds_a_connection_from_each(url):
    assert Settings(redis_url=url).redis_url == url
    client = connect_redis(url, check=False)  # as livelearn's processes make their clients
    connection = client.connection_pool.make_connection()  # every URL option applied; nothing is dialled
    assert isinstance(connection, redis.connection.AbstractConnection)


@pytest.mark.parametrize(("url", "needle"), REFUSED_REDIS_URLS)
def test_the_error_names_the_setting_and_the_problem_but_not_the_url(url, needle, no_livelearn_env):
    with pytest.raises(ConfigError) as caught:
        load_settings(redis_url=url)
    message = str(caught.value)
    assert "\n" not in message and "redis_url (LIVELEARN_REDIS_URL)" in message and needle in message, message


def test_the_url_check_knows_every_query_option_redis_py_types():
    """Each option redis-py parses into a type is either taken (and checked as that type) or refused by name:
    none passes unchecked into redis-py, where a bad value would be a traceback."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    for name in URL_QUERY_ARGUMENT_PARSERS:
        with pytest.raises(ValueError, match=name):
            Settings(redis_url=f"rediss://redis:6380/0?{name}=not-a-valid-value")


# -- the monitor threshold --------------------------------------------------------------------------
@pytest.mark.parametrize(("metric", "threshold"), REFUSED_THRESHOLDS)
def test_a_threshold_the_monitor_cannot_judge_by_is_refused(metric, threshold):
    result = livelearn("config", LIVELEARN_MONITOR_METRIC=metric, LIVELEARN_MONITOR_THRESHOLD=threshold)
    assert_one_line_error(result, "LIVELEARN_MONITOR_THRESHOLD")


@pytest.mark.parametrize(("metric", "threshold"), ACCEPTED_THRESHOLDS)
def test_thresholds_within_the_metrics_range_pass(metric, threshold, no_livelearn_env):
    settings = load_settings(monitor_metric=metric, monitor_threshold=threshold)
    assert settings.monitor_threshold == float(threshold)


def test_a_bounded_metric_names_its_range():
    with pytest.raises(ValueError, match=r"accuracy is between 0 and 1"):
        Settings(monitor_threshold=1.5)


@pytest.mark.parametrize("command", [("versions", "list"), ("monitor",), ("serve",)])
def test_a_nan_threshold_stops_every_command_before_it_connects(command):
    result = livelearn(*command, LIVELEARN_MONITOR_THRESHOLD="nan", LIVELEARN_REDIS_URL="redis://127.0.0.1:1/0")
    assert_one_line_error(result, "LIVELEARN_MONITOR_THRESHOLD")


# -- every float setting ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_no_float_setting_takes_nan_or_infinity(name, value, no_livelearn_env, monkeypatch):
    monkeypatch.setenv(f"LIVELEARN_{name.upper()}", value)
    with pytest.raises(ConfigError, match=f"LIVELEARN_{name.upper()}"):
        load_settings()


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
def test_every_float_setting_is_bounded_both_ways(name):
    """A lower and an upper bound on each (the threshold's upper bound depends on the metric: tested above)."""
    schema = Settings.model_json_schema()["properties"][name]
    assert "minimum" in schema or "exclusiveMinimum" in schema, schema
    if name != "monitor_threshold":
        top = schema.get("maximum", schema.get("exclusiveMaximum"))
        assert top is not None and math.isfinite(top), schema


def test_a_nan_float_setting_is_one_line_and_exit_2():
    result = livelearn("versions", "list", LIVELEARN_SNAPSHOT_EVERY_SECONDS="inf")
    assert_one_line_error(result, "LIVELEARN_SNAPSHOT_EVERY_SECONDS")


# -- the chart's pattern is the check -------------------------------------------------------------------
@functools.cache
def schema_pattern() -> re.Pattern[str]:
    """The pattern the settings' JSON schema gives the Redis URL: the chart's values schema carries it."""
    return re.compile(Settings.model_json_schema()["properties"]["redis_url"]["pattern"])


def accepted(url: str) -> bool:
    try:
        Settings(redis_url=url)
    except ValueError:
        return False
    return True


def test_the_settings_schema_pattern_refuses_what_the_settings_refuse():
    """The pattern the chart's values schema carries agrees with the check on every case (but an option given
    twice, which a regular expression cannot see)."""
    pattern = schema_pattern()
    for url in ACCEPTED_REDIS_URLS:
        assert pattern.fullmatch(url), url
    for url, needle in REFUSED_REDIS_URLS:
        assert bool(pattern.fullmatch(url)) == ("given twice" in needle), url


_PIECES = {
    "scheme": ["redis", "rediss", "unix", "REDIS", "http", "redis:"],
    "auth": ["", "user@", ":pw@", "user:p@ss@", ":p[w@", "@"],
    "host": ["redis", "", "10.0.0.1", "[::1]", "[::1", "re dis", "redis_1.x", "::1"],
    "port": ["", ":6379", ":0", ":65535", ":65536", ":abc", ":", ":-1", ":06379"],
    "path": ["", "/", "/0", "/15", "/abc", "/-1", "/1/2", "/run/redis.sock", "/00"],
    "option": [
        "db=1",
        "db=",
        "db",
        "db=01",
        "socket_timeout=0.5",
        "socket_timeout=60",
        "socket_timeout=60.5",
        "socket_timeout=.5",
        "socket_timeout=0",
        "socket_timeout=0.0",
        "socket_timeout=1e3",
        "socket_timeout=nan",
        "socket_keepalive=yes",
        "socket_keepalive=maybe",
        "ssl_cert_reqs=none",
        "ssl_min_version=772",
        "ssl_include_verify_flags=[VERIFY_X509_STRICT]",
        "password=a=b",
        "password=%23",
        "foo=bar",
        "timeout=1",
        "protocol=3",
        "max_connections=0",
        "",
    ],
}


@st.composite
def urls(draw: st.DrawFn) -> str:
    """A URL put together from pieces, each either fine or broken in one of the ways people break them."""
    scheme, auth, host, port, path = (
        draw(st.sampled_from(_PIECES[k])) for k in ("scheme", "auth", "host", "port", "path")
    )
    named_once = st.lists(st.sampled_from(_PIECES["option"]), max_size=3, unique_by=lambda o: o.partition("=")[0])
    options = draw(named_once)  # given twice: refused by the check only (no regular expression can tell)
    query = "?" + "&".join(options) if options or draw(st.booleans()) else ""
    return f"{scheme}://{auth}{host}{port}{path}{query}"


@hypothesis_settings(max_examples=400, deadline=None)
@given(url=urls())
def test_the_check_and_the_pattern_agree_on_any_url(url):
    assert accepted(url) == bool(schema_pattern().fullmatch(url)), url
