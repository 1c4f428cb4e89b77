"""The command line: versions listing, config, one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import produce, settings_env, wait_for
from kafka import KafkaAdminClient

from streaming.cli import app
from streaming.errors import ConnectionFailedError
from streaming.local.dataset import DATASET_PATH, read_events
from streaming.local.embedded import free_port
from streaming.transport import TopicPartition, make_consumer, topic_partitions
from streaming.transport.options import kafka_python_config


def livelearn(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_versions_list_and_show(make_settings, learners):
    settings = make_settings(snapshot_every_events=400, snapshot_every_seconds=3600)  # versions by count only
    produce(settings, read_events(limit=1000))
    learners(settings, "--until-caught-up").wait()
    env = settings_env(settings)
    listing = json.loads(livelearn("versions", "list", "--json", env=env).stdout)
    assert listing["head"] == 3, [(v["number"], v["events_seen"]) for v in listing["versions"]]
    assert [v["number"] for v in listing["versions"]] == [1, 2, 3]
    assert [v["events_seen"] for v in listing["versions"]] == [400, 800, 1000]
    shown = json.loads(livelearn("versions", "show", "2", "--json", env=env).stdout)
    assert shown["parent"] == 1
    assert shown["offsets"] == {settings.events_topic: {"0": 800}}
    table = livelearn("versions", "list", env=env)
    assert table.returncode == 0
    assert "head 3" in table.stdout
    missing = livelearn("versions", "show", "99", env=env)
    assert missing.returncode == 2
    assert "version 99" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_produce_command_replays_the_csv(make_settings):
    settings = make_settings()
    result = livelearn("produce", "--csv", str(DATASET_PATH), "--limit", "250", env=settings_env(settings))
    assert result.returncode == 0, result.stderr
    assert "sent 250 events" in result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2 and exactly one ``error:`` line on stderr (no traceback, no wrapping) containing ``needles``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unreachable_redis_is_one_clear_line():
    result = livelearn("versions", "list", "--redis-url", "redis://127.0.0.1:1/0")
    assert_one_line_error(result, "cannot reach Redis at redis://127.0.0.1:1/0", "LIVELEARN_REDIS_URL")


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('model_name = "unterminated\n', ("is not valid TOML", "--config")),
        ("nonsense_key = 3\n", ("nonsense_key", "is not a livelearn setting")),
        (None, ("is a directory", "--config")),
    ],
)
def test_config_file_mistakes_are_one_line(tmp_path, content, needles):
    path = tmp_path / "livelearn.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    result = livelearn("config", "--config", str(path), env=settings_env_base())
    assert_one_line_error(result, str(path), *needles)


def test_bad_config_names_the_env_var():
    env = {**settings_env_base(), "LIVELEARN_LEARNING_RATE": "fast"}
    result = livelearn("config", env=env)
    assert result.returncode == 2
    assert "LIVELEARN_LEARNING_RATE" in result.stderr


def test_list_env_var_that_is_not_json_is_one_line():
    result = livelearn("config", env={**settings_env_base(), "LIVELEARN_FEATURES_EXCLUDE": "Month,Browser"})
    assert_one_line_error(
        result, "LIVELEARN_FEATURES_EXCLUDE is not valid JSON", """LIVELEARN_FEATURES_EXCLUDE='["Month", "Browser"]'"""
    )


def test_non_redis_url_is_one_line_without_the_password():
    env = {**settings_env_base(), "LIVELEARN_REDIS_URL": "http://ops:s3cret@127.0.0.1:6379/0"}
    result = livelearn("versions", "list", env=env)
    assert_one_line_error(result, "LIVELEARN_REDIS_URL", "redis://", "rediss://", "unix://")
    assert "s3cret" not in result.stderr


def test_config_never_prints_the_redis_password():
    env = {
        **settings_env_base(),
        "COLUMNS": "400",  # no wrapping, so a password cannot hide across two lines
        "LIVELEARN_REDIS_URL": "redis://livelearn:s3cret@127.0.0.1:6379/0",
        "LIVELEARN_API_TOKEN": "t0ken",
    }
    as_json = livelearn("config", "--json", env=env)
    table = livelearn("config", env=env)
    assert as_json.returncode == 0 and table.returncode == 0, as_json.stderr + table.stderr
    assert json.loads(as_json.stdout)["redis_url"] == "redis://livelearn:***@127.0.0.1:6379/0"
    assert "redis://livelearn:***@127.0.0.1:6379/0" in table.stdout
    for output in (as_json.stdout, table.stdout):
        assert "s3cret" not in output
        assert "t0ken" not in output


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on ``port`` (Linux: read from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                found.append(
                    socket.inet_ntop(
                        socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw[::-1] if len(raw) == 4 else raw
                    )
                )
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the socket table of Linux")
@pytest.mark.parametrize("command", ["learn", "monitor"])
def test_metrics_port_binds_loopback_by_default(make_settings, learners, command):
    settings = make_settings()
    port = free_port()
    learners(settings, "--metrics-port", str(port), command=command)

    def answers() -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
            return True
        return False

    wait_for(answers, 60, f"{command}'s metrics port to answer")
    assert listening_addresses(port) == ["127.0.0.1"]


@pytest.mark.parametrize("command", ["learn", "monitor"])
def test_metrics_port_in_use_is_one_line(make_settings, command):
    settings = make_settings()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = livelearn(command, "--metrics-port", str(port), env=settings_env(settings))
    assert_one_line_error(result, f"127.0.0.1:{port}", "LIVELEARN_METRICS_PORT")


def test_report_into_a_missing_directory_is_one_line(make_settings, tmp_path):
    out = tmp_path / "missing" / "report.png"
    result = livelearn("report", "--out", str(out), env=settings_env(make_settings()))
    assert_one_line_error(result, str(out.parent), "--out")


def events_in_topic(settings) -> int:
    """How many records the (single-partition) events topic holds."""
    consumer = make_consumer(settings)
    try:
        tp = TopicPartition(settings.events_topic, 0)
        return consumer.end_offsets([tp], timeout_ms=10_000)[tp]
    finally:
        consumer.close()


@pytest.mark.parametrize("rate", ["-5", "0"])
def test_produce_rejects_a_rate_that_is_not_positive(make_settings, rate):
    settings = make_settings()
    result = livelearn(
        "produce", "--csv", str(DATASET_PATH), "--limit", "5", "--rate", rate, env=settings_env(settings)
    )
    assert result.returncode == 2 and "--rate" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert events_in_topic(settings) == 0


def test_produce_csv_without_the_dataset_columns_sends_nothing(make_settings, tmp_path):
    settings = make_settings()
    path = tmp_path / "other.csv"
    path.write_text("Month,PageValues,Weekend,Revenue,colour\nFeb,1.5,FALSE,TRUE,red\n")
    result = livelearn("produce", "--csv", str(path), env=settings_env(settings))
    assert_one_line_error(result, str(path), "Administrative, Administrative_Duration", "VisitorType")
    assert "Month" not in result.stderr.split("missing")[-1]
    assert "Revenue" not in result.stderr
    assert events_in_topic(settings) == 0


def test_produce_csv_with_a_malformed_value_is_one_line(make_settings, tmp_path):
    settings = make_settings()
    lines = DATASET_PATH.read_text().splitlines()[:4]
    lines[3] = lines[3].replace("0,0,0,0,", "0,zero,0,0,", 1)
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n")
    result = livelearn("produce", "--csv", str(path), env=settings_env(settings))
    assert_one_line_error(result, f"{path} line 4", "Administrative_Duration", "'zero'", "not a number")


@pytest.mark.parametrize(
    "args",
    [
        ("produce", "--csv", str(DATASET_PATH), "--limit", "-5"),
        ("produce", "--csv", str(DATASET_PATH), "--limit", "5", "--flip-labels-after", "-1"),
        ("audit", "--limit", "-1"),
        ("audit", "--limit", "0"),
        ("up", "--rate", "-5", "--bootstrap", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1/0"),
        ("versions", "show", "abc"),
    ],
)
def test_malformed_numbers_are_usage_errors(make_settings, args):
    env = settings_env(make_settings(), LIVELEARN_KAFKA_BOOTSTRAP_TIMEOUT_SECONDS="1")
    result = livelearn(*args, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "Invalid value" in result.stderr


def test_topics_creates_events_dead_letter_and_predictions_topics(make_settings):
    settings = make_settings()
    events = f"{settings.events_topic}-fresh"
    result = livelearn("topics", "--topic", events, "--partitions", "2", env=settings_env(settings))
    assert result.returncode == 0, result.stderr
    admin = KafkaAdminClient(**kafka_python_config(settings))
    try:
        partitions = {
            t["name"]: len(t["partitions"])
            for t in admin.describe_topics([events, f"{events}.dlq", f"{events}.predictions"])
            if t["error_code"] == 0
        }
    finally:
        admin.close()
    assert partitions == {events: 2, f"{events}.dlq": 1, f"{events}.predictions": 2}


def test_missing_topic_hint_names_a_real_command():
    class NoSuchTopic:
        def partitions_for(self, topic):
            return None

    with pytest.raises(ConnectionFailedError) as caught:
        topic_partitions(NoSuchTopic(), "livelearn.events")
    named = re.findall(r"`livelearn ([^`]*)`", str(caught.value))
    assert named == ["topics"]
    assert "topics" in {command.name for command in app.registered_commands}


@pytest.mark.parametrize("command", ["learn", "monitor", "serve"])
def test_unknown_log_level_is_one_line(make_settings, command):
    result = livelearn(command, env=settings_env(make_settings(), LIVELEARN_LOG_LEVEL="verbose"))
    assert_one_line_error(result, "'verbose'", "LIVELEARN_LOG_LEVEL", "INFO")


@pytest.mark.parametrize("bootstrap", ["kafka-1:ninety", ",", "http://kafka-1:9092"])
def test_malformed_kafka_bootstrap_is_one_line(bootstrap):
    result = livelearn(
        "topics",
        env={
            **settings_env_base(),
            "LIVELEARN_KAFKA_BOOTSTRAP": bootstrap,
            "LIVELEARN_KAFKA_BOOTSTRAP_TIMEOUT_SECONDS": "1",
        },
    )
    assert_one_line_error(result, "LIVELEARN_KAFKA_BOOTSTRAP", "host:port")


def test_serve_port_in_use_is_one_line(make_settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = livelearn("serve", "--port", str(port), env=settings_env(make_settings()))
    assert_one_line_error(result, f"127.0.0.1:{port}", "LIVELEARN_API_PORT")


def test_up_with_a_bad_setting_is_one_line():
    env = {**settings_env_base(), "LIVELEARN_FEATURES_EXCLUDE": "Month"}
    result = livelearn("up", "--bootstrap", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1/0", env=env)
    assert_one_line_error(result, "LIVELEARN_FEATURES_EXCLUDE is not valid JSON")


def test_help_shows_env_vars():
    result = livelearn("learn", "--help", env={**settings_env_base(), "COLUMNS": "200"})
    assert "LIVELEARN_KAFKA_BOOTSTRAP" in result.stdout
    assert "LIVELEARN_REDIS_URL" in result.stdout


def settings_env_base() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}


def test_version_option_prints_the_installed_version():
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "streaming", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"livelearn {version('livelearn')}"
