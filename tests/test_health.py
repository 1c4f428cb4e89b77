"""The probes on a learner's or monitor's metrics port: /healthz (progress), /readyz (doing its job), /metrics."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from streaming.errors import ConfigError
from streaming.health import Heartbeat
from streaming.local.embedded import free_port
from streaming.observability import counter, serve_metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probe():
    clock = Clock()
    heartbeat = Heartbeat(stale_after=30, clock=clock)
    registry = CollectorRegistry()
    counter("livelearn_probe_demo_total", "A demo.", registry, "shop").inc(3)
    port = free_port()
    server = serve_metrics(port, registry, heartbeat=heartbeat)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield clock, heartbeat, client
    server.shutdown()
    server.server_close()


def test_starting_process_is_alive_but_not_ready(probe) -> None:
    _clock, _heartbeat, client = probe
    live, ready = client.get("/healthz"), client.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["role"] == "starting"


def test_beats_make_it_ready_and_an_outage_makes_it_unready_but_alive(probe) -> None:
    clock, heartbeat, client = probe
    heartbeat.beat("standby")
    assert client.get("/readyz").status_code == 200
    clock.now += 5
    heartbeat.beat("active", ready=False, detail="waiting for Kafka")
    doc = client.get("/readyz")
    assert doc.status_code == 503
    assert doc.json() == {"role": "active", "ready": False, "detail": "waiting for Kafka", "since_beat_seconds": 0.0}
    assert client.get("/healthz").status_code == 200


def test_a_stale_loop_fails_liveness_and_readiness(probe) -> None:
    clock, heartbeat, client = probe
    heartbeat.beat("active")
    clock.now += 30
    assert client.get("/healthz").status_code == 200  # exactly at the limit: still alive
    clock.now += 1
    live = client.get("/healthz")
    assert live.status_code == 503
    assert "no progress for 31 s" in live.json()["detail"]
    assert client.get("/readyz").status_code == 503


def test_metrics_are_still_exposed_next_to_the_probes(probe) -> None:
    _clock, _heartbeat, client = probe
    body = client.get("/metrics").text
    assert 'livelearn_probe_demo_total{model="shop"} 3.0' in body


def test_a_port_in_use_is_a_config_error_naming_the_setting(probe) -> None:
    port = int(str(probe[2].base_url).rsplit(":", 1)[1].rstrip("/"))
    with pytest.raises(ConfigError, match="LIVELEARN_METRICS_PORT"):
        serve_metrics(port, CollectorRegistry())


def _probe(port: int, path: str = "/readyz") -> tuple[int, str]:
    """The probe's status code and the role it names; ``(0, "")`` while the process is not listening yet."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError:
        return 0, ""
    return answer.status_code, answer.json()["role"]


@pytest.mark.integration
def test_probes_tell_the_active_learner_the_standby_and_the_monitor(make_settings, learners) -> None:
    from conftest import produce, wait_for

    from streaming.local.dataset import read_events

    settings = make_settings(lease_ttl_seconds=3.0, status_interval_seconds=0.1)
    ports = [free_port() for _ in range(3)]
    active = learners(settings, "--metrics-port", str(ports[0]))
    wait_for(lambda: _probe(ports[0]) == (200, "active"), 90, "the first learner to be ready as the active one")
    standby = learners(settings, "--metrics-port", str(ports[1]))
    monitor = learners(settings, "--metrics-port", str(ports[2]), command="monitor")
    wait_for(lambda: _probe(ports[1]) == (200, "standby"), 90, "the standby to be ready as a standby")
    assert _probe(ports[1], "/healthz") == (200, "standby")
    produce(settings, read_events(limit=300))
    wait_for(lambda: _probe(ports[2]) == (200, "monitor"), 90, "the monitor to be ready")
    assert _probe(ports[0], "/healthz") == (200, "active")
    active.kill()
    wait_for(lambda: _probe(ports[1]) == (200, "active"), 60, "the standby to take over and be ready")
    standby.terminate()
    monitor.terminate()
