"""Fixtures: one real Tansu broker and one real redis-server per test session, on free ports.

Each test gets its own model name and topics, so tests never see each other's data.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from snapshotter.presence import alive
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings
from streaming.events import Event, encode_event
from streaming.local.embedded import EmbeddedServer, embedded_stack, start_redis
from streaming.transport import choose_client, ensure_topics, livelearn_topics, make_producer

_counter = itertools.count()

#: Fixtures that start or use real servers: a test that asks for one belongs to the integration lane.
_INTEGRATION_FIXTURES = frozenset(
    {"stack", "make_settings", "learners", "private", "served", "private_redis", "s3_server", "s3"}
)


@pytest.fixture(autouse=True, scope="session")
def _packed_as_msgpack_packs() -> Iterator[None]:
    """Everything this test process packs for Redis (:func:`snapshotter.packing.packb`, msgspec's encoder) is
    checked against ``msgpack.packb``: the same bytes, or msgpack's error where msgspec would write what msgpack
    refuses (a set, a datetime, a dataclass... landing in a document is a bug to surface, not to store)."""
    import msgpack

    from snapshotter import packing

    encode = packing._ENCODE

    def checked(value: object) -> bytes:
        packed = encode(value)  # (what msgspec refuses raises here: packb packs it by msgpack)
        try:  # (pytest.fail: a BaseException, which packb's fallback does not catch)
            expected = msgpack.packb(value, use_bin_type=True)
        except Exception as exc:
            pytest.fail(f"msgspec packs what msgpack refuses ({exc}): {value!r:.200}")
        if packed != expected:
            pytest.fail(f"msgspec and msgpack pack differently: {value!r:.200}")
        return packed

    packing._ENCODE = checked
    yield
    packing._ENCODE = encode


def pytest_report_header() -> str:
    """Which Kafka client and learning engine this session's learners, fixtures and children use."""
    settings = Settings()
    return (
        f"livelearn Kafka client: {choose_client(settings)} (LIVELEARN_KAFKA_CLIENT to change), "
        f"engine: {settings.engine} (LIVELEARN_ENGINE)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that talk to a real broker or redis-server (``-m "not integration"`` runs the rest)."""
    for item in items:
        if _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    with embedded_stack() as servers:
        yield servers


@pytest.fixture
def private_redis() -> Iterator[tuple[EmbeddedServer, redis.Redis]]:
    """A redis-server of this test alone (FLUSHALL, ACLs and CONFIG SET touch no other test's model), with an
    admin (default user) client."""
    server = start_redis()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        yield server, admin
    finally:
        admin.close()
        server.stop()
        shutil.rmtree(server.workdir or "", ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3-protocol server (moto's server mode, in this process, on a free port): the environment a client
    needs to reach it (endpoint, credentials, region, plain http)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "livelearn-test",
        "AWS_SECRET_ACCESS_KEY": "livelearn-test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, request) -> str:
    """A fresh bucket on the S3 server with this process's environment pointing at it: its ``s3://`` URL."""
    import boto3

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    bucket = f"b{next(_counter)}-{os.getpid()}"
    boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/backups"


class RetentionAt:
    """The real consumer, except that every log starts at ``start`` (Tansu's memory storage never deletes records:
    the one thing faked here is the answer to ListOffsets "earliest")."""

    def __init__(self, consumer, start: int) -> None:
        self._consumer, self._start = consumer, start

    def beginning_offsets(self, partitions, timeout_ms):
        return dict.fromkeys(partitions, self._start)

    def __getattr__(self, name):
        return getattr(self._consumer, name)


#: Commands that read Kafka besides Redis: the in-process CLI (``cli``) gives them the model's broker and topic too.
_KAFKA_COMMANDS = (("rebuild", "run"), ("rebuild", "show"), ("rebuild", "promote"), ("restore-from-backup",))


@pytest.fixture
def cli(monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """``livelearn ARGV`` in this process (``tests/clirun.py``) on ``settings``' model and Redis (and broker and events
    topic, for the commands that read Kafka): ``cli(settings, *argv) -> (exit code, stdout, stderr)``. The environment's
    LIVELEARN_* settings are cleared, except the test lane's Kafka client and engine."""
    from clirun import run_livelearn

    lane = {"LIVELEARN_KAFKA_CLIENT", "LIVELEARN_ENGINE"}
    for name in [n for n in os.environ if n.startswith("LIVELEARN_") and n not in lane]:
        monkeypatch.delenv(name)

    def run(settings: Settings, *argv: str) -> tuple[int, str, str]:
        common = ["--model", settings.model_name, "--redis-url", settings.redis_url]
        if any(tuple(argv[: len(command)]) == command for command in _KAFKA_COMMANDS):
            common += ["--bootstrap", settings.kafka_bootstrap, "--topic", settings.events_topic]
        return run_livelearn(monkeypatch, capsys, *argv, *common)

    return run


def settings_on(broker: str, redis_address: str, test_name: str, partitions: int = 1, **overrides) -> Settings:
    """Settings for a fresh model with fresh topics (events, dead letters, predictions) on the given servers."""
    n = next(_counter)
    name = f"t{n}-{test_name[:40]}".replace("[", "-").replace("]", "")
    values = {
        "model_name": "".join(c if c.isalnum() or c in "._-" else "-" for c in name),
        "kafka_bootstrap": broker,
        "redis_url": f"redis://{redis_address}/0",
        "events_topic": f"events-{n}",
        **overrides,
    }
    settings = Settings(**values)
    ensure_topics(settings, livelearn_topics(settings, partitions, labels_topic=settings.labels.topic))
    return settings


@pytest.fixture
def make_settings(stack, request) -> Callable[..., Settings]:
    """Settings for a fresh model and fresh topics on the session's servers."""
    broker, store = stack

    def factory(partitions: int = 1, **overrides) -> Settings:
        return settings_on(broker.address, store.address, request.node.name, partitions, **overrides)

    return factory


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a `livelearn` child process see ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"LIVELEARN_{name.upper()}"] = json.dumps(plain) if isinstance(plain, list) else str(plain)
    env.update(extra)
    return env


class LearnerProcess:
    """A `livelearn <command>` child process (``learn`` unless told otherwise)."""

    def __init__(self, settings: Settings, *args: str, command: str = "learn", **env: str) -> None:
        self.settings = settings
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streaming", command, *args],
            env=settings_env(settings, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def terminate(self, timeout: float = 60) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out.decode()
        return out.decode()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)

    def wait(self, timeout: float = 120) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out.decode()
        return out.decode()


@pytest.fixture
def learners() -> Iterator[Callable[..., LearnerProcess]]:
    started: list[LearnerProcess] = []

    def start(settings: Settings, *args: str, command: str = "learn", **env: str) -> LearnerProcess:
        started.append(LearnerProcess(settings, *args, command=command, **env))
        return started[-1]

    yield start
    for learner in started:
        if learner.proc.poll() is None:
            learner.proc.kill()
            learner.proc.communicate()


def store_for(settings: Settings) -> VersionStore:
    return open_store(settings)


def status_of(settings: Settings) -> dict | None:
    return store_for(settings).status()


def produce(settings: Settings, events: Iterable[Event | bytes], *, rate: float | None = None) -> int:
    """Send events (or raw values) keyed by user id; returns the count."""
    producer = make_producer(settings, linger_ms=5)
    sent, start = 0, time.monotonic()
    for item in events:
        if isinstance(item, Event):
            producer.send(settings.events_topic, encode_event(item), key=(item.user_id or item.event_id).encode())
        else:
            producer.send(settings.events_topic, item, key=b"raw")
        sent += 1
        if rate:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()
    return sent


def checked_in(settings: Settings, key: str, within: float = 10.0) -> list[str]:
    """Members of a check-in set (``learners`` or ``monitors``) seen during the last ``within`` seconds."""
    store = store_for(settings)
    return alive(store.client, getattr(store.keys, key), within=within)


def learner_id(process: LearnerProcess) -> str:
    """The id a `livelearn learn` child checks in with (its writer id: host and pid)."""
    return f"{socket.gethostname()}:{process.proc.pid}"


def wait_until_running(
    settings: Settings, *, monitors: int = 0, standbys: tuple[LearnerProcess, ...] = (), timeout: float = 90
) -> None:
    """Readiness, not a sleep: the active learner published its first status (it is assigned and polling),
    ``monitors`` monitors checked in, and each of ``standbys`` is waiting for the lease."""
    wait_for(lambda: status_of(settings) is not None, timeout, "the active learner's first status")
    wait_for(lambda: len(checked_in(settings, "monitors")) >= monitors, timeout, f"{monitors} monitors to check in")
    for standby in standbys:
        wait_for(
            lambda s=standby: learner_id(s) in checked_in(settings, "learners"),
            timeout,
            f"standby {learner_id(standby)} to check in",
        )


def guard_caught_up(settings: Settings) -> bool:
    """Whether the monitors have judged every metric sample recorded so far."""
    store = store_for(settings)
    last = store.client.xrevrange(store.keys.history, count=1)
    cursor = store.client.hget(store.keys.guard, "cursor")
    return bool(last) and cursor == last[0][0]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def metric(port: int, name: str, **labels: str) -> float | None:
    """A sample of a process's /metrics with these labels (``None`` while it does not answer, or has none)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None
