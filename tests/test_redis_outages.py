"""Redis outages as the processes live them, with real processes and a redis-server of each test's own: hung
(SIGSTOP), down (killed), refusing writes (``maxmemory``, a replica, a failing RDB save, too few replicas), and
rejecting the credentials.

What is measured: how soon an outage is reported (log line, ``livelearn_redis_up`` 0, readiness), that it is
counted and logged once however many calls fail during it, that its backoff grows while writes stay refused, that
"Redis is back" comes once, when the process's own work succeeds again, with the outage's true length; that the
learner, the monitor and ``serve`` started while Redis is down or hung wait for it instead of exiting; that
rejected credentials still fail at once with one line; and how long ``serve`` takes to answer 503 while Redis
hangs, against the bound its settings give.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from conftest import LearnerProcess, metric, produce, settings_env, settings_on, status_of, store_for, wait_for

from snapshotter.connection import redis_failure, worst_call_seconds
from snapshotter.outage import RedisOutage
from streaming.config import Settings
from streaming.local.dataset import read_events
from streaming.local.embedded import EmbeddedServer, free_port, start_redis, start_tansu
from streaming.serving.app import request_bound

pytestmark = [pytest.mark.integration, pytest.mark.first_lane]

EVENTS = list(read_events(limit=8000))
BACK = re.compile(r"Redis is back after ([\d.]+)s")
#: the learner's client: three retries (connect_redis's default)
LEARNER_RETRIES = 3


class Servers:
    """A broker and a redis-server of one test's own; Redis may be paused, killed and started again."""

    def __init__(self) -> None:
        self.broker: EmbeddedServer = start_tansu()
        self.redis: EmbeddedServer = start_redis()

    def pause(self) -> float:
        os.kill(self.redis.process.pid, signal.SIGSTOP)
        return time.monotonic()

    def resume(self) -> float:
        os.kill(self.redis.process.pid, signal.SIGCONT)
        return time.monotonic()

    def kill_redis(self) -> None:
        self.redis.process.kill()
        self.redis.process.wait()

    def start_redis_again(self) -> None:
        port, workdir = self.redis.port, self.redis.workdir
        self.redis.stop()
        self.redis = start_redis(port, workdir=workdir)

    def admin(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis.port)

    def stop(self) -> None:
        for server in (self.broker, self.redis):
            if server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)
            server.stop()
        shutil.rmtree(self.redis.workdir or "", ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[Servers]:
    own = Servers()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def children() -> Iterator[list[LearnerProcess]]:
    """`livelearn` children of the test, killed if still running at its end."""
    started: list[LearnerProcess] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.communicate()


def settings_for(servers: Servers, request: pytest.FixtureRequest, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "snapshot_every_events": 500,
        "status_interval_seconds": 0.2,
        "lease_ttl_seconds": 3,
        "kafka_unreachable_seconds": 2,
        "kafka_bootstrap_timeout_seconds": 3,
        **overrides,
    }
    return settings_on(servers.broker.address, servers.redis.address, request.node.name, **values)


def start(children: list[LearnerProcess], settings: Settings, *args: str, command: str = "learn") -> LearnerProcess:
    children.append(LearnerProcess(settings, *args, command=command))
    return children[-1]


def probe(port: int, path: str) -> tuple[int, dict]:
    """Status code and body of ``/healthz`` or ``/readyz`` (``(0, {})`` while nothing listens)."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return answer.status_code, answer.json()


def seen(settings: Settings) -> int:
    return (status_of(settings) or {}).get("counters", {}).get("events_seen", 0)


def idle(settings: Settings, events: int) -> bool:
    status = status_of(settings) or {}
    return status.get("lag") == 0 and status.get("counters", {}).get("events_seen") == events


def backs(out: str) -> list[float]:
    """The lengths the process reported in its "Redis is back" lines."""
    return [float(length) for length in BACK.findall(out)]


# -- the learner ---------------------------------------------------------------------------------------------
def test_a_hung_redis_is_reported_within_the_socket_timeout_and_its_outage_measured(servers, request, children):
    """At the default socket timeout (3 s) the learner used to be silent until every retry had failed (12 s
    and more), then report "back after 0.1s". Now: down within about one timeout, back once, with the length of
    the hang."""
    settings = settings_for(servers, request)  # the default LIVELEARN_REDIS_TIMEOUT_SECONDS
    timeout = settings.redis_timeout_seconds
    port = free_port()
    produce(settings, EVENTS[:3000])
    learner = start(children, settings, "--metrics-port", str(port))
    wait_for(lambda: idle(settings, 3000), 90, "the learner to learn 3,000 events and idle")

    stopped = servers.pause()
    try:
        # a call starts within a status interval, and is reported when its first attempt times out
        wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 60, "the learner to report Redis down")
        noticed = time.monotonic() - stopped
        assert noticed <= timeout + settings.status_interval_seconds + 1.5, noticed
        assert probe(port, "/readyz")[0] == 503
        assert probe(port, "/healthz")[0] == 200
        # hung long enough that its calls give up and it waits in its backoff loop (the path that said "0.1s")
        hold = worst_call_seconds(timeout, LEARNER_RETRIES) + 2.0
        time.sleep(max(0.0, stopped + hold - time.monotonic()))  # the outage's length: the scenario, not a wait
    finally:
        resumed = servers.resume()
    wait_for(lambda: metric(port, "livelearn_redis_up") == 1, 60, "the learner to report Redis back")
    back_seen = time.monotonic() - stopped
    assert metric(port, "livelearn_redis_outages_total", code="unreachable") == 1
    wait_for(lambda: probe(port, "/readyz")[0] == 200, 30, "the learner to be ready again")
    produce(settings, EVENTS[3000:4000])
    wait_for(lambda: idle(settings, 4000), 60, "the learner to go on after the outage")
    out = learner.terminate()

    assert out.count("Redis cannot be reached") == 1, out  # logged once, however many calls hung
    (length,) = backs(out)
    assert resumed - stopped - timeout - 1.0 <= length <= back_seen + 0.5, (length, resumed - stopped, back_seen)
    assert store_for(settings).meta(store_for(settings).head()).events_seen == 4000


def most_attempts(window: float, base: float = 0.1, cap: float = 5.0) -> int:
    """The most attempts :class:`RedisOutage`'s backoff allows in ``window`` seconds (each pause at least half of
    ``min(cap, base * 2**n)``: redis-py's EqualJitterBackoff)."""
    attempts, spent = 0, 0.0
    while True:
        spent += min(cap, base * 2**attempts) / 2
        if spent > window:
            return attempts
        attempts += 1


def test_writes_refused_while_probes_get_through_are_one_outage_with_a_growing_backoff(servers, request, children):
    """Out of memory with memory hovering at the limit: a probe's small write gets through, the learner's next
    version does not. It used to log "Redis is back" and count a new outage every 0.2 s; "back" now waits for a
    version written, the backoff grows through the outage, and it is counted once."""
    settings = settings_for(servers, request, redis_timeout_seconds=0.5)
    port = free_port()
    admin = servers.admin()
    producer = threading.Thread(target=produce, args=(settings, EVENTS), kwargs={"rate": 2000}, daemon=True)
    producer.start()
    learner = start(children, settings, "--metrics-port", str(port))
    wait_for(lambda: seen(settings) >= 2000, 60, "the learner to pass 2,000 events")
    admin.config_set("maxmemory", admin.info("memory")["used_memory"])  # at the limit: writes refused, mostly
    refused = time.monotonic()
    wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 60, "the learner to report the refusal")
    reported = time.monotonic() - refused  # the learner's outage began by then (later on a loaded machine)
    window = 12.0
    time.sleep(max(0.0, refused + window - time.monotonic()))  # the refusal's length: the scenario, not a wait
    admin.config_set("maxmemory", 0)
    lifted = time.monotonic() - refused
    producer.join()
    wait_for(lambda: seen(settings) == len(EVENTS), 120, "the learner to finish once Redis accepts writes")
    assert metric(port, "livelearn_redis_outages_total", code="OOM") == 1
    assert metric(port, "livelearn_redis_up") == 1
    out = learner.terminate()

    assert "out of memory" in out
    assert "Redis cannot be reached" not in out
    (length,) = backs(out)  # once, at the end: not after each probe that got through
    assert length >= lifted - reported - 1.0, (length, lifted, reported)  # one outage, to the lift (not a probe)
    activations = len(re.findall(r"active: \S+ holds the lease", out)) - 1  # after the first one
    assert activations <= most_attempts(lifted) + 1, (activations, most_attempts(lifted))
    head = store_for(settings).meta(store_for(settings).head())
    assert head.events_seen == head.events_learned == len(EVENTS)


def refuse_writes(servers: Servers, code: str) -> None:
    """Make the redis-server refuse every write with ``code``, as a production one would."""
    admin = servers.admin()
    if code == "READONLY":  # a replica (of a primary that is not there: it keeps its data)
        admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    elif code == "NOREPLICAS":
        admin.config_set("min-replicas-to-write", 1)
    elif code == "MISCONF":  # an RDB snapshot that cannot be written, with save points configured
        gone = os.path.join(servers.redis.workdir or "/tmp", "gone")
        os.makedirs(gone)
        admin.config_set("save", "3600 1")
        admin.config_set("dir", gone)
        shutil.rmtree(gone)
        admin.bgsave()
        wait_for(lambda: admin.info("persistence")["rdb_last_bgsave_status"] == "err", 30, "the RDB save to fail")
    with pytest.raises(redis.ResponseError) as refusal:
        admin.set("livelearn:probe", 1)
    assert redis_failure(refusal.value) == code


def accept_writes(servers: Servers, code: str) -> None:
    admin = servers.admin()
    if code == "READONLY":
        admin.execute_command("REPLICAOF", "NO", "ONE")
    elif code == "NOREPLICAS":
        admin.config_set("min-replicas-to-write", 0)
    elif code == "MISCONF":
        admin.config_set("save", "")
        admin.config_set("dir", servers.redis.workdir or "/tmp")
        admin.config_set("stop-writes-on-bgsave-error", "no")
    admin.set("livelearn:probe", 1)


@pytest.mark.parametrize(
    ("code", "named"),
    [("READONLY", "read-only replica"), ("MISCONF", "cannot persist"), ("NOREPLICAS", "too few replicas")],
)
def test_every_kind_of_write_refusal_is_one_outage_named_as_what_it_is(servers, request, children, code, named):
    """The class of the OOM case: a replica, a failing RDB save, too few replicas. Each is waited out as one
    outage, counted under its code, logged as what it is, and nothing is lost (``NOREPLICAS`` used to end the
    learner: it was not recognised as a refusal)."""
    settings = settings_for(servers, request, redis_timeout_seconds=0.5)
    port = free_port()
    produce(settings, EVENTS[:3000])
    learner = start(children, settings, "--metrics-port", str(port))
    wait_for(lambda: idle(settings, 3000), 90, "the learner to learn 3,000 events and idle")
    refuse_writes(servers, code)
    wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 30, "the learner to report the refusal")
    refused = time.monotonic()
    time.sleep(max(0.0, refused + 4.0 - time.monotonic()))  # four seconds refused: the scenario
    assert learner.proc.poll() is None
    assert probe(port, "/readyz")[0] == 503
    accept_writes(servers, code)
    wait_for(lambda: metric(port, "livelearn_redis_up") == 1, 30, "the learner to report Redis back")
    produce(settings, EVENTS[3000:4000])
    wait_for(lambda: idle(settings, 4000), 60, "the learner to go on")
    assert metric(port, "livelearn_redis_outages_total", code=code) == 1
    out = learner.terminate()
    assert out.count(named) == 1, out  # logged once, as what it is
    assert len(backs(out)) == 1, out
    head = store_for(settings).meta(store_for(settings).head())
    assert head.events_seen == head.events_learned == 4000


@pytest.mark.parametrize(
    ("command", "how"),
    [("learn", "down"), ("learn", "hung"), ("monitor", "hung")],
    ids=["learner-redis-down", "learner-redis-hung", "monitor-redis-hung"],
)
def test_a_process_started_while_redis_is_down_waits_and_starts_once_it_answers(
    servers, request, children, command, how
):
    """Started while Redis was down or hung, the learner and the monitor used to exit 2 (after ~20 s when hung);
    now they wait with backoff, alive and not ready, and start once Redis answers."""
    settings = settings_for(servers, request, redis_timeout_seconds=0.5)
    port = free_port()
    produce(settings, EVENTS[:2000])
    if how == "down":
        servers.kill_redis()
    else:
        servers.pause()
    started = time.monotonic()
    process = start(children, settings, "--metrics-port", str(port), command=command)
    # no answer within two attempts of the timeout (reported while the call still retries)
    wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 30, "the process to report Redis unavailable")
    # past the point where it used to give up (the start-up check: every retry of one call, hung or refused)
    hold = worst_call_seconds(settings.redis_timeout_seconds, LEARNER_RETRIES) + 2.0
    time.sleep(max(0.0, started + hold - time.monotonic()))  # how long Redis stays away: the scenario
    assert process.proc.poll() is None, process.proc.communicate()[0].decode()
    assert probe(port, "/healthz")[0] == 200
    code, body = probe(port, "/readyz")
    assert code == 503 and "Redis" in body["detail"], body
    if how == "down":
        servers.start_redis_again()
    else:
        servers.resume()
    wait_for(lambda: probe(port, "/readyz")[0] == 200, 60, "the process to start once Redis answers")
    assert metric(port, "livelearn_redis_up") == 1
    if command == "learn":
        wait_for(lambda: seen(settings) == 2000, 60, "the learner to learn the events")
    out = process.terminate()
    assert len(backs(out)) == 1, out
    assert "Traceback" not in out


@pytest.mark.parametrize("command", ["learn", "monitor", "serve"])
def test_rejected_credentials_still_fail_at_once_with_one_line(servers, request, command):
    """Waiting cannot cure a wrong password: each process exits 2 at once, with one line naming it."""
    admin = servers.admin()
    admin.execute_command("ACL", "SETUSER", "livelearn", "on", ">right", "~livelearn:*", "allchannels", "+@all")
    good = settings_for(servers, request, redis_timeout_seconds=0.5)
    settings = good.model_copy(
        update={"redis_url": f"redis://livelearn:n0t-the-pw@{servers.redis.address}/0", "api_port": free_port()}
    )
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streaming", command],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rejected the credentials" in errors[0], result.stderr
    assert "n0t-the-pw" not in result.stderr  # the password is never printed
    assert "Traceback" not in result.stderr
    assert elapsed < 30, elapsed  # not after waiting: at once (plus the interpreter's start-up)


# -- the monitor ---------------------------------------------------------------------------------------------
def test_a_monitor_reports_a_hung_redis_and_a_write_refusal_once_each(servers, request, children):
    """The monitor used to log an error every check (every second) and had no gauge; now each outage is one
    line, ``livelearn_redis_up`` 0 within about a socket timeout, and one "Redis is back"."""
    settings = settings_for(servers, request, redis_timeout_seconds=1.0)
    port = free_port()
    monitor = start(children, settings, "--metrics-port", str(port), command="monitor")
    wait_for(lambda: probe(port, "/readyz")[0] == 200, 60, "the monitor to be ready")

    stopped = servers.pause()
    try:
        wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 30, "the monitor to report Redis down")
        assert time.monotonic() - stopped <= settings.redis_timeout_seconds + 2.5
        assert probe(port, "/readyz")[0] == 503
        time.sleep(max(0.0, stopped + 6.0 - time.monotonic()))  # six seconds hung: the scenario
    finally:
        servers.resume()
    wait_for(lambda: metric(port, "livelearn_redis_up") == 1, 30, "the monitor to report Redis back")

    admin = servers.admin()
    admin.config_set("maxmemory", 1)  # every write refused
    wait_for(lambda: metric(port, "livelearn_redis_up") == 0, 30, "the monitor to report the refusal")
    refused = time.monotonic()
    time.sleep(max(0.0, refused + 6.0 - time.monotonic()))  # six seconds refused: the scenario
    admin.config_set("maxmemory", 0)
    wait_for(lambda: metric(port, "livelearn_redis_up") == 1, 30, "the monitor to report Redis back")
    assert metric(port, "livelearn_redis_outages_total", code="unreachable") == 1
    assert metric(port, "livelearn_redis_outages_total", code="OOM") == 1
    wait_for(lambda: probe(port, "/readyz")[0] == 200, 30, "the monitor to be ready again")
    out = monitor.terminate()
    assert out.count("Redis cannot be reached") == 1, out
    assert out.count("out of memory") == 1, out
    assert "check failed" not in out
    assert len(backs(out)) == 2 and all(length >= 5.0 for length in backs(out)), out


def test_the_outage_tracker_counts_a_refusal_that_probes_get_through_once():
    """The rule the processes share, step by step: probes that get through do not end an outage, failures after
    them do not start a new one, and the pauses keep growing."""
    now = [0.0]
    events: list[str] = []
    outage = RedisOutage(
        "redis://r/0",
        log=logging.getLogger("test"),
        doing="waiting",
        back="resumed",
        on_down=lambda code, _detail: events.append(f"down {code}"),
        on_up=lambda: events.append("up"),
        clock=lambda: now[0],
    )
    pauses = []
    outage.failed("OOM", Exception("OOM"))
    for _ in range(8):
        pauses.append(outage.pause())
        now[0] += pauses[-1]
        outage.resumed()  # the probe's write went through...
        outage.failed("OOM", Exception("OOM"))  # ...the learner's version did not
    assert events == ["down OOM"]
    assert all(later >= earlier / 2 for earlier, later in itertools.pairwise(pauses))
    assert min(pauses[5:]) >= 1.6  # grown (equal jitter: at least half of 0.1 * 2**n)
    outage.resumed()
    outage.confirmed()
    assert events == ["down OOM", "up"] and outage.last_length == pytest.approx(sum(pauses))


# -- serve ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def serving(settings: Settings, children: list[LearnerProcess]) -> Iterator[str]:
    """Start `livelearn serve` for ``settings``; yields its base URL (not waiting for readiness)."""
    start(children, settings, command="serve")
    yield f"http://127.0.0.1:{settings.api_port}"


def learned_version(servers: Servers, request: pytest.FixtureRequest) -> Settings:
    """Settings of a model with a served version (one learner run, promotion immediate)."""
    settings = settings_for(servers, request, promotion="immediate", api_port=free_port(), api_token="t0ken")
    produce(settings, EVENTS[:3000])
    LearnerProcess(settings, "--until-caught-up").wait()
    assert store_for(settings).serving() is not None
    return settings


def test_versions_is_a_503_within_the_bound_its_settings_give_while_redis_hangs(servers, request, children):
    """`GET /versions` while Redis hangs: a 503 within two attempts of ``LIVELEARN_API_REDIS_TIMEOUT_SECONDS``
    (about 2 s at the defaults, as the README says) — concurrent or not; it took 4.3 s when redis-py's nested
    retries (reconnect, health-check PING) each retried on their own."""
    settings = learned_version(servers, request)
    bound = request_bound(settings) + 0.75  # plus the HTTP round trip and a thread of the pool, on a busy machine
    assert request_bound(Settings()) <= 2.6  # the defaults: about 2 s
    with serving(settings, children) as base, httpx.Client(base_url=base, timeout=30) as client:
        wait_for(lambda: _ok(client, "/v2/health/ready"), 60, "serve to be ready")
        assert client.get("/versions").status_code == 200
        servers.pause()
        try:

            def timed(_: object) -> tuple[int, float]:
                began = time.monotonic()
                answer = client.get("/versions")
                return answer.status_code, time.monotonic() - began

            # a burst: more requests than connections in the pool, so new ones are opened on the hung server (each
            # retry level of redis-py used to retry on its own there: the reconnect, then its health-check PING)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(timed, range(8)))
            answers += [timed(None) for _ in range(3)]  # then one at a time, on those connections
        finally:
            servers.resume()
    assert all(code == 503 for code, _ in answers), answers
    assert max(elapsed for _, elapsed in answers) <= bound, (answers, bound)


def test_serve_started_while_redis_hangs_is_live_and_unready_then_serves(servers, request, children):
    """`serve` used to exit 2 when Redis did not answer at start; now it starts live and unready, answers 503
    for what needs Redis, and serves the serving version once Redis answers."""
    settings = learned_version(servers, request)
    serving_version = store_for(settings).serving()
    servers.pause()
    try:
        with serving(settings, children) as base, httpx.Client(base_url=base, timeout=30) as client:
            wait_for(lambda: _ok(client, "/v2/health/live"), 60, "serve to be live")
            assert client.get("/v2/health/ready").status_code == 503
            assert client.get("/versions").status_code == 503
            servers.resume()
            wait_for(lambda: _ok(client, "/v2/health/ready"), 60, "serve to load the serving version")
            answer = client.post("/predict", json={"features": EVENTS[0].features})
            assert answer.status_code == 200 and answer.json()["version"] == serving_version, answer.text
    finally:
        servers.resume()


def _ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False
