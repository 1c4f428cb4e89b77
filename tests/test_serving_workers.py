"""`livelearn serve --workers 2` as a real process over TCP: both workers serve, /metrics sums them.

No timing is asserted (the machine may be shared): only what was answered and counted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from conftest import LearnerProcess, produce, wait_for
from prometheus_client.parser import text_string_to_metric_families

from streaming.config import Settings
from streaming.local.dataset import read_events
from streaming.local.embedded import free_port
from streaming.serving.routes_predict import WORKER_HEADER

pytestmark = pytest.mark.integration

EVENTS = list(read_events(limit=1500))
REQUESTS = 60


def samples(base: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` on ``/metrics``, by its labels."""
    text = httpx.get(f"{base}/metrics/", timeout=10).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def multiproc_dir_of(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(item for item in environ if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    return Path(value.split(b"=", 1)[1].decode())


def test_two_workers_answer_and_metrics_are_summed_across_them(make_settings):
    settings: Settings = make_settings(api_port=free_port(), snapshot_every_events=500, promotion="immediate")
    produce(settings, EVENTS)
    LearnerProcess(settings, "--until-caught-up").wait()
    server = LearnerProcess(settings, "--workers", "2", command="serve")
    base = f"http://127.0.0.1:{settings.api_port}"
    workers: set[str] = set()

    def a_worker_answers() -> bool:
        assert server.proc.poll() is None, server.proc.communicate()[0].decode()
        try:  # a fresh connection each time: the kernel hands it to either worker
            response = httpx.get(f"{base}/v2/health/ready", timeout=2)
        except httpx.TransportError:
            return False
        if response.status_code == 200:
            workers.add(response.headers[WORKER_HEADER])
        return len(workers) == 2

    try:
        wait_for(a_worker_answers, 90, "both workers to answer readiness", interval=0.02)
        assert all(parent_of(int(pid)) == server.proc.pid for pid in workers)  # uvicorn's worker processes

        features = EVENTS[0].features
        versions = set()
        for i in range(REQUESTS):  # half on fresh connections (either worker), half on one keep-alive connection
            if i % 2:
                response = httpx.post(f"{base}/predict", json={"features": features}, timeout=10)
            else:
                with httpx.Client(base_url=base, timeout=10) as client:
                    response = client.post("/predict", json={"features": features})
            assert response.status_code == 200, response.text
            versions.add(response.json()["version"])
        assert len(versions) == 1

        model = {"model": settings.model_name}
        predictions = samples(base, "livelearn_serving_predictions_total")
        assert predictions == {tuple(model.items()): REQUESTS}  # summed over the workers, whichever answered
        timed = samples(base, "livelearn_serving_request_seconds_count")
        assert timed[(("model", settings.model_name), ("route", "/predict"))] == REQUESTS
        loaded = samples(base, "livelearn_serving_loaded_version")
        assert {dict(labels)["pid"] for labels in loaded} == workers  # one series per live worker
        assert set(loaded.values()) == versions

        metrics_dir = multiproc_dir_of(int(next(iter(workers))))
        assert metrics_dir.is_dir()
    finally:
        server.proc.send_signal(signal.SIGTERM)
        out, _ = server.proc.communicate(timeout=60)
    assert server.proc.returncode == 0, out.decode()
    assert not metrics_dir.exists() and not metrics_dir.parent.exists()  # the private directory is removed
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None


def test_one_worker_keeps_a_single_process_registry(make_settings):
    settings: Settings = make_settings(api_port=free_port(), snapshot_every_events=500, promotion="immediate")
    produce(settings, EVENTS)
    LearnerProcess(settings, "--until-caught-up").wait()
    server = LearnerProcess(settings, command="serve")
    base = f"http://127.0.0.1:{settings.api_port}"

    def ready() -> bool:
        assert server.proc.poll() is None, server.proc.communicate()[0].decode()
        try:
            return httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 60, "the API to be ready")
        response = httpx.get(f"{base}/v2/health/live", timeout=5)
        assert response.headers[WORKER_HEADER] == str(server.proc.pid)  # the app runs in the serve process
        for _ in range(5):
            assert httpx.post(f"{base}/predict", json={"features": EVENTS[0].features}, timeout=10).status_code == 200
        loaded = samples(base, "livelearn_serving_loaded_version")
        assert list(loaded) == [(("model", settings.model_name),)]  # no pid label: one process
        assert samples(base, "livelearn_serving_predictions_total") == {(("model", settings.model_name),): 5}
        assert "process_cpu_seconds_total" in httpx.get(f"{base}/metrics/", timeout=10).text
    finally:
        server.proc.send_signal(signal.SIGTERM)  # uvicorn re-raises it after a graceful shutdown: exit code -15
        server.proc.communicate(timeout=60)
