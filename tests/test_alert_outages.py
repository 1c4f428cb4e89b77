"""The outages the alerts page for, driven against real processes, and the metrics the alerts read.

Unit lane: the monitor's ``livelearn_alert`` is 1 while its checks fail and clears at the next check that works
(a failed control action keeps it until an action succeeds); every dead-letter reason is counted from 0; serve's
answers are counted by route and status code.

Integration lane: Redis hung, the broker hung, serve answering 5xx, serve and the monitor killed — with real
redis-server, Tansu, ``livelearn learn``, ``monitor`` and ``serve`` processes. A :class:`Scraper` scrapes their
``/metrics`` as Prometheus would (a failed scrape ends the target's series), and the scrapes are replayed through
the chart's alert rules with promtool, one scrape a minute (time-valued gauges scaled alike), so each alert is
shown firing in its outage and quiet before and after it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import httpx
import pytest
from conftest import LearnerProcess, metric, produce, settings_on, status_of, wait_for
from helm_chart import NAMESPACE
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_alerts import check_alerts, fires, quiet

from monitor.guard import Monitor
from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.learner.prometheus import DEAD_LETTER_REASONS, LearnerMetrics
from streaming.local.dataset import read_events
from streaming.local.embedded import EmbeddedServer, free_port, start_redis, start_tansu
from streaming.model import ModelSpec
from streaming.serving.telemetry import RequestTiming, ServingMetrics

ROOT = Path(__file__).resolve().parent.parent


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"model": "shop"})


# -- the monitor's operator flag -----------------------------------------------------------------------------------
@contextlib.contextmanager
def running(monitor: Monitor) -> Iterator[None]:
    thread = threading.Thread(target=monitor.run, name="monitor", daemon=True)
    thread.start()
    try:
        yield
    finally:
        monitor.stop()
        thread.join(30)
    assert not thread.is_alive()


def redis_outage(server: fakeredis.FakeServer, monitor: Monitor, registry: CollectorRegistry) -> list[float | None]:
    """Cut the monitor's Redis until it reports the outage, then restore it until a check worked again; returns
    ``livelearn_alert`` during the outage and after it."""
    server.connected = False
    wait_for(lambda: gauge(registry, "livelearn_redis_up") == 0, 30, "the monitor to report Redis down")
    wait_for(lambda: not monitor.heartbeat.readiness()[0], 30, "the monitor's check to fail")
    during = gauge(registry, "livelearn_alert")
    server.connected = True
    wait_for(lambda: gauge(registry, "livelearn_redis_up") == 1, 30, "the monitor to report Redis back")
    wait_for(lambda: monitor.heartbeat.readiness()[0], 30, "a check that works")  # beats after the flag is set
    return [during, gauge(registry, "livelearn_alert")]


def test_the_operator_flag_is_up_while_the_monitor_cannot_check_and_clears_at_the_next_check_that_works():
    """The false critical page of issue 18: after a Redis outage ``livelearn_alert`` stayed 1 (only a later
    successful rollback, freeze or resume cleared it), so LivelearnOperatorNeeded paged until someone acted."""
    server = fakeredis.FakeServer()
    store, registry = VersionStore(fakeredis.FakeRedis(server=server), "shop"), CollectorRegistry()
    monitor = Monitor(Settings(model_name="shop"), store=store, registry=registry)
    with running(monitor):
        wait_for(lambda: monitor.heartbeat.readiness()[0], 30, "the monitor's first check")
        assert gauge(registry, "livelearn_alert") == 0
        assert redis_outage(server, monitor, registry) == [1, 0]
        assert redis_outage(server, monitor, registry) == [1, 0]  # and again: nothing left over


def history_sample(store: VersionStore, scored: int, accuracy: float) -> None:
    fields = {"time": 1000.0 + scored / 100, "epoch": 0, "version": 1, "scored": scored, "events_seen": scored}
    store.client.xadd(store.keys.history, {**fields, "stream_position": scored, "accuracy": accuracy, "samples": 1000})


def test_a_failed_rollback_keeps_the_operator_flag_up_through_checks_that_work_and_a_redis_outage():
    """The check's flag and the action's are apart: a check that works does not clear a rollback that failed (no
    stable version to go back to); only a control action that succeeds does."""
    server = fakeredis.FakeServer()
    store, registry = VersionStore(fakeredis.FakeRedis(server=server), "shop"), CollectorRegistry()
    settings = Settings(model_name="shop", monitor_patience=3, monitor_min_samples=100, monitor_cooldown_seconds=3600)
    state = SnapshotState(spec=ModelSpec().to_dict(), model={}, metrics={}, counters={"events_seen": 1})
    for _ in range(2):  # versions, none stable: nothing to roll back to
        store.write(state, writer="w", lease_value=None, offsets={}, metrics={}, parent=store.head(), stable=False)
    monitor = Monitor(settings, store=store, registry=registry)
    for scored, accuracy in ((100, 0.9), (200, 0.9), (300, 0.9), (400, 0.5), (500, 0.5), (600, 0.5)):
        history_sample(store, scored, accuracy)
    assert "rollback" in [d.action for d in monitor.check_once()]
    assert [e.action for e in read_audit(store.client, store.keys, actions={"rollback_failed"})] == ["rollback_failed"]
    assert gauge(registry, "livelearn_alert") == 1
    assert monitor.check_once() == [] and gauge(registry, "livelearn_alert") == 1  # a check that works
    with running(monitor):
        wait_for(lambda: monitor.heartbeat.readiness()[0], 30, "the monitor's first check")
        assert redis_outage(server, monitor, registry) == [1, 1]


# -- the series the dashboard and the alerts read ------------------------------------------------------------------
def reasons_raised() -> set[str]:
    """Every ``EventError("<reason>", ...)`` the package raises (the reasons events are dead-lettered for)."""
    found: set[str] = set()
    for path in (ROOT / "streaming").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "EventError" and node.args:
                reason = node.args[0]
                assert isinstance(reason, ast.Constant) and isinstance(reason.value, str), f"{path}: {ast.dump(node)}"
                found.add(reason.value)
    return found


def test_every_dead_letter_reason_is_counted_from_zero_at_start():
    """The dashboard's dead-letter panel shows 0 per reason, not "No data", until the first dead letter."""
    assert set(DEAD_LETTER_REASONS) == reasons_raised()
    registry = CollectorRegistry()
    LearnerMetrics(registry, "shop")
    for reason in DEAD_LETTER_REASONS:
        labels = {"model": "shop", "reason": reason}
        assert registry.get_sample_value("livelearn_events_dead_lettered_total", labels) == 0


def answers(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """``livelearn_serving_responses_total`` by (route, code)."""
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "livelearn_serving_responses_total":
                found[sample.labels["route"], sample.labels["code"]] = sample.value
    return found


def test_serve_counts_its_answers_by_route_and_status_code():
    async def unavailable(_request: object) -> JSONResponse:
        return JSONResponse({"detail": "no version loaded"}, status_code=503)

    async def broken(_request: object) -> JSONResponse:
        raise RuntimeError("a bug")

    registry = CollectorRegistry()
    metrics = ServingMetrics(registry, "shop")
    app = Starlette(routes=[Route("/predict", unavailable, methods=["POST"]), Route("/boom", broken)])
    app.add_middleware(RequestTiming, histogram=metrics.request_seconds, model="shop", responses=metrics.responses)

    async def requests() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            for _ in range(3):
                assert (await client.post("/predict", json={})).status_code == 503
            assert (await client.get("/boom")).status_code == 500  # answered by the server's error handler
            assert (await client.get("/nowhere")).status_code == 404

    asyncio.run(requests())
    assert answers(registry) == {("/predict", "503"): 3, ("/boom", "500"): 1, ("other", "404"): 1}
    timed = registry.get_sample_value("livelearn_serving_request_seconds_count", {"model": "shop", "route": "/predict"})
    assert timed == 3  # the time as before, without the code


def test_serve_app_counts_a_prediction_it_cannot_answer():
    """The app `livelearn serve` runs wires the count in: /predict before any version is a 503, counted."""
    from fastapi.testclient import TestClient

    from streaming.serving.app import create_app

    registry = CollectorRegistry()
    store = VersionStore(fakeredis.FakeRedis(), "shop")
    with TestClient(create_app(Settings(model_name="shop"), store=store, registry=registry)) as client:
        assert client.post("/predict", json={"features": {"a": 1}}).status_code == 503
    assert answers(registry) == {("/predict", "503"): 1}


# -- real processes, their scrapes replayed through the alert rules ------------------------------------------------
#: Seconds between two scrapes; each is one minute when replayed.
EVERY = 0.5
#: Gauges in seconds, scaled to the replay's time (a real second is 60 / EVERY replayed seconds).
TIME_GAUGES = {"livelearn_snapshot_age_seconds"}
Series = tuple[str, tuple[tuple[str, str], ...]]


class Scraper:
    """Scrapes the ``/metrics`` of ``targets`` (instance name → URL) every :data:`EVERY` seconds on a thread, as
    Prometheus would: ``livelearn_`` series only, with ``instance`` and ``namespace`` added and the model named
    ``shop`` (the chart's example); a target that does not answer has no series in that scrape."""

    def __init__(self, targets: dict[str, str]) -> None:
        self.targets = targets
        self.scrapes: list[dict[Series, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            scrape: dict[Series, float] = {}
            for instance, url in self.targets.items():
                scrape.update(self._scrape(instance, url))
            with self._lock:
                self.scrapes.append(scrape)
            self._stop.wait(EVERY)

    def _scrape(self, instance: str, url: str) -> dict[Series, float]:
        try:
            text = httpx.get(url, timeout=EVERY).text
        except httpx.HTTPError:
            return {}  # a failed scrape: Prometheus ends the target's series
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("livelearn_") or sample.name.endswith(("_bucket", "_created")):
                    continue
                labels = {**sample.labels, "instance": instance, "namespace": NAMESPACE, "model": "shop"}
                scale = 60 / EVERY if sample.name in TIME_GAUGES else 1
                found[sample.name, tuple(sorted(labels.items()))] = sample.value * scale
        return found

    def mark(self) -> int:
        """The replayed minute of the next scrape."""
        with self._lock:
            return len(self.scrapes)

    def values(self, name: str, instance: str, since: int = 0) -> list[float | None]:
        """One series' value in each scrape from ``since`` (``None``: not in that scrape)."""
        with self._lock:
            scrapes = self.scrapes[since:]
        return [
            next((v for (n, ls), v in s.items() if n == name and ("instance", instance) in ls), None) for s in scrapes
        ]

    def wait(self, name: str, instance: str, value: float | None, scrapes: int, since: int) -> int:
        """Wait until ``scrapes`` scrapes from ``since`` saw the series at ``value``; returns the next mark."""
        wait_for(
            lambda: self.values(name, instance, since).count(value) >= scrapes,
            90,
            f"{scrapes} scrapes of {name} at {value} on {instance}",
            interval=EVERY / 2,
        )
        return self.mark()

    def input_series(self) -> list[dict[str, str]]:
        """What was scraped, as promtool input series (one scrape a minute; a series that ends is stale)."""
        with self._lock:
            scrapes = list(self.scrapes)
        out = []
        for name, labels in sorted({key for scrape in scrapes for key in scrape}):
            values: list[str] = []
            for scrape in scrapes:
                value = scrape.get((name, labels))
                if value is not None:
                    values.append(_number(value))
                else:
                    values.append("stale" if values and values[-1] not in ("stale", "_") else "_")
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            out.append({"series": f"{name}{{{label_text}}}", "values": " ".join(values)})
        return out


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Servers:
    """A broker and a redis-server of one test's own; either may be hung (SIGSTOP) and resumed."""

    def __init__(self) -> None:
        self.broker: EmbeddedServer = start_tansu()
        self.redis: EmbeddedServer = start_redis()

    def stop(self) -> None:
        for server in (self.broker, self.redis):
            if server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)
            server.stop()


@contextlib.contextmanager
def hung(server: EmbeddedServer) -> Iterator[None]:
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.fixture
def servers() -> Iterator[Servers]:
    own = Servers()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def start() -> Iterator[Callable[..., LearnerProcess]]:
    """Start `livelearn` children of the test, killed if still running at its end."""
    started: list[LearnerProcess] = []

    def starting(settings: Settings, *args: str, command: str = "learn") -> LearnerProcess:
        started.append(LearnerProcess(settings, *args, command=command))
        return started[-1]

    yield starting
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.communicate()


def settings_for(servers: Servers, request: pytest.FixtureRequest, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "promotion": "immediate",
        "snapshot_every_events": 500,
        "status_interval_seconds": 0.2,
        "lease_ttl_seconds": 3,
        "kafka_unreachable_seconds": 2,
        "kafka_bootstrap_timeout_seconds": 3,
        "redis_timeout_seconds": 1.0,
        **overrides,
    }
    return settings_on(servers.broker.address, servers.redis.address, request.node.name, **values)


def learning(settings: Settings, start: Callable[..., LearnerProcess], *, monitor: bool = False) -> dict[str, str]:
    """A learner (and a monitor) that learned 2,000 events and is idle; their metrics URLs by instance."""
    learner_port, monitor_port = free_port(), free_port()
    start(settings, "--metrics-port", str(learner_port))
    targets = {"learner": f"http://127.0.0.1:{learner_port}/metrics"}
    if monitor:
        start(settings, "--metrics-port", str(monitor_port), command="monitor")
        targets["monitor"] = f"http://127.0.0.1:{monitor_port}/metrics"
    produce(settings, read_events(limit=2000))
    wait_for(
        lambda: (status_of(settings) or {}).get("lag") == 0 and metric(learner_port, "livelearn_snapshot_age_seconds"),
        90,
        "the learner to be idle with a snapshot written",
    )
    return targets


def first(values: list[float | None], value: float, since: int = 0) -> int:
    """The replayed minute of the first scrape from ``since`` that saw the series at ``value``."""
    return next(i for i in range(since, len(values)) if values[i] == value)


@pytest.mark.integration
def test_a_hung_redis_pages_while_it_lasts_and_nothing_after(servers, request, start, tmp_path):
    settings = settings_for(servers, request)
    with Scraper(learning(settings, start, monitor=True)) as scraper:
        before = scraper.wait("livelearn_redis_up", "monitor", 1, 6, 0)  # an idle stream, all well
        with hung(servers.redis):
            down = scraper.wait("livelearn_redis_up", "learner", 0, 1, before)
            scraper.wait("livelearn_alert", "monitor", 1, 8, down)
            scraper.wait("livelearn_lease_held", "learner", 0, 8, down)
        back = scraper.wait("livelearn_redis_up", "monitor", 1, 1, down)
        back = scraper.wait("livelearn_redis_up", "learner", 1, 1, back)
        end = scraper.wait("livelearn_alert", "monitor", 0, 6, back)  # cleared by the monitor's next check
    up = {instance: scraper.values("livelearn_redis_up", instance) for instance in ("learner", "monitor")}
    outage = [m for m in range(before, end) if 0 in (up["learner"][m], up["monitor"][m])]
    flagged = first(scraper.values("livelearn_alert", "monitor"), 1, before)
    waiting = first(scraper.values("livelearn_lease_held", "learner"), 0, before)  # the learner left its lease
    checks = [quiet(alert, f"{before - 1}m") for alert in ("LivelearnSnapshotStale", "LivelearnRedisDown")]
    checks += [fires("LivelearnRedisDown", f"{outage[0] + 1}m"), fires("LivelearnRedisDown", f"{outage[-1]}m")]
    checks += [fires("LivelearnOperatorNeeded", f"{flagged + 2}m")]
    checks += [fires(alert, f"{waiting + 3}m") for alert in ("LivelearnSnapshotStale", "LivelearnNoActiveLearner")]
    checks += [quiet(alert, f"{end - 1}m") for alert in ("LivelearnRedisDown", "LivelearnOperatorNeeded")]
    check_alerts(tmp_path, scraper.input_series(), checks)


@pytest.mark.integration
def test_a_hung_broker_pages_kafka_down_and_a_stale_snapshot(servers, request, start, tmp_path):
    settings = settings_for(servers, request)
    with Scraper(learning(settings, start)) as scraper:
        before = scraper.wait("livelearn_kafka_up", "learner", 1, 6, 0)
        with hung(servers.broker):
            down = scraper.wait("livelearn_kafka_up", "learner", 0, 1, before)
            scraper.wait("livelearn_kafka_up", "learner", 0, 8, down)
        back = scraper.wait("livelearn_kafka_up", "learner", 1, 1, down)
        end = scraper.wait("livelearn_kafka_up", "learner", 1, 4, back)
    unreachable = first(scraper.values("livelearn_kafka_up", "learner"), 0, before)
    checks = [quiet(alert, f"{before - 1}m") for alert in ("LivelearnSnapshotStale", "LivelearnKafkaDown")]
    checks += [fires(alert, f"{unreachable + 3}m") for alert in ("LivelearnKafkaDown", "LivelearnSnapshotStale")]
    checks += [quiet("LivelearnKafkaDown", f"{end - 1}m")]
    check_alerts(tmp_path, scraper.input_series(), checks)


@pytest.mark.integration
def test_serve_answering_503_pages_serve_errors(servers, request, start, tmp_path):
    """No version to serve yet: every prediction is a 503 (readiness, 503 too, is not counted as one)."""
    settings = settings_for(servers, request, api_port=free_port())
    start(settings, command="serve")
    base = f"http://127.0.0.1:{settings.api_port}"
    wait_for(lambda: metric_page(base), 60, "serve to answer")
    with Scraper({"serve": f"{base}/metrics/"}) as scraper, httpx.Client(base_url=base) as client:
        for _ in range(12):
            mark = scraper.mark()
            assert client.post("/predict", json={"features": {"a": 1}}).status_code == 503
            assert client.get("/v2/health/ready").status_code == 503
            wait_for(lambda m=mark: scraper.mark() > m, 10, "a scrape")
    checks = [fires("LivelearnServeErrors", f"{scraper.mark() - 1}m"), quiet("LivelearnServeDown", "3m")]
    check_alerts(tmp_path, scraper.input_series(), checks)


def metric_page(base: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{base}/metrics/", timeout=2).status_code == 200
    return False


@pytest.mark.integration
def test_killed_serve_and_monitor_page_their_absence(servers, request, start, tmp_path):
    settings = settings_for(servers, request, api_port=free_port())
    monitor_port = free_port()
    serve = start(settings, command="serve")
    monitor = start(settings, "--metrics-port", str(monitor_port), command="monitor")
    base = f"http://127.0.0.1:{settings.api_port}"
    targets = {"serve": f"{base}/metrics/", "monitor": f"http://127.0.0.1:{monitor_port}/metrics"}
    wait_for(lambda: metric_page(base) and metric(monitor_port, "livelearn_alert") is not None, 60, "both to answer")
    with Scraper(targets) as scraper:
        before = scraper.wait("livelearn_serving_predictions_total", "serve", 0, 6, 0)
        serve.kill()
        gone = scraper.wait("livelearn_serving_predictions_total", "serve", None, 6, before)
        monitor.kill()
        end = scraper.wait("livelearn_monitor_head_version", "monitor", None, 6, gone)
    checks = [quiet(alert, f"{before - 1}m") for alert in ("LivelearnServeDown", "LivelearnMonitorDown")]
    checks += [fires("LivelearnServeDown", f"{gone + 2}m"), quiet("LivelearnMonitorDown", f"{gone + 1}m")]
    checks += [fires("LivelearnMonitorDown", f"{end - 1}m")]
    check_alerts(tmp_path, scraper.input_series(), checks)
