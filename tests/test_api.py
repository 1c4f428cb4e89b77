"""The prediction API as a real `livelearn serve` process, and the Prometheus names the README lists.

One server (model, learner run and `serve` child) is shared by every test that only reads from it or
probes it with hostile input; tests that start more processes or stop Redis get their own.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import LearnerProcess, produce, store_for, wait_for
from reference import contract_features
from snapshotter.restore import restore_state
from streaming.config import Settings
from streaming.dataset import read_events
from streaming.embedded import free_port
from streaming.kafka import ensure_topics
from streaming.model import ModelSpec

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
EVENTS = list(read_events(limit=3000))
_names = itertools.count()


def new_settings(stack, tag: str, **overrides) -> Settings:
    """Settings for a fresh model and topics of this module on the session's broker and redis-server."""
    broker, redis_server = stack
    n = next(_names)
    values = {"model_name": f"api{n}-{tag}", "kafka_bootstrap": broker.address,
              "redis_url": f"redis://{redis_server.address}/0", "events_topic": f"api-events-{n}-{tag}",
              "snapshot_every_events": 500, "api_token": TOKEN, **overrides}
    settings = Settings(**values)
    ensure_topics(settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1})
    return settings


@contextlib.contextmanager
def serving(settings: Settings, **env: str) -> Iterator[httpx.Client]:
    """Learn ``EVENTS`` into versions (one learner run), then start `livelearn serve` (with extra ``env``)
    and yield a client once it is ready; every child is stopped afterwards."""
    produce(settings, EVENTS)
    LearnerProcess(settings, "--until-caught-up").wait()
    server = LearnerProcess(settings, command="serve", **env)
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        wait_for(lambda: _ok(f"{base}/v2/health/ready") or server.proc.poll() is not None, 60, "the API to be ready")
        assert server.proc.poll() is None, server.proc.communicate()[0].decode()
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.communicate()


@pytest.fixture(scope="module")
def served(stack) -> Iterator[tuple[Settings, httpx.Client]]:
    """The shared server: versions of ``EVENTS`` every 500 events, served with the admin token."""
    settings = new_settings(stack, "shared", api_port=free_port())
    with serving(settings) as client:
        yield settings, client


@pytest.fixture
def served_alone(stack) -> Iterator[tuple[Settings, httpx.Client]]:
    """A server of its own, for a test that starts more processes on its model."""
    settings = new_settings(stack, "alone", api_port=free_port(), metrics_port=free_port())
    with serving(settings) as client:
        yield settings, client


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def in_process(settings, version: int, features: dict) -> float:
    _meta, state = store_for(settings).load(version)
    model, _ = restore_state(state, ModelSpec.from_dict(state.spec), window=10)
    return model.predict_proba_one(features)


def test_predictions_match_the_in_process_model_of_the_same_version(served):
    settings, client = served
    store = store_for(settings)
    serving = store.serving()
    assert serving is not None and store.meta(serving).stable
    for event in EVENTS[:20]:
        x = contract_features(event)
        body = client.post("/predict", json={"features": event.features, "event_id": event.event_id}).json()
        assert body["version"] == serving and body["event_id"] == event.event_id
        assert body["probability"] == in_process(settings, serving, x)
        assert body["label"] == (body["probability"] > 0.5)
        older = client.post("/predict", json={"features": event.features, "version": 2}).json()
        assert older["version"] == 2 and older["probability"] == in_process(settings, 2, x)
    batch = client.post("/predict/batch", json={"instances": [{"features": e.features} for e in EVENTS[:5]]})
    assert [p["version"] for p in batch.json()["predictions"]] == [serving] * 5
    assert client.post("/predict", json={"features": {"a": 1}, "version": 999}).status_code == 404


def test_kserve_v2_infer_round_trip(served):
    settings, client = served
    name = settings.model_name
    rows = [e.features for e in EVENTS[:3]]
    inputs = []
    for feature in rows[0]:
        column = [row[feature] for row in rows]
        kind = ("BOOL" if isinstance(column[0], bool) else "BYTES" if isinstance(column[0], str)
                else "FP64" if isinstance(column[0], float) else "INT64")
        inputs.append({"name": feature, "shape": [3], "datatype": kind, "data": column})
    response = client.post(f"/v2/models/{name}/infer", json={"id": "r1", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name and body["id"] == "r1"
    version = int(body["model_version"])
    probabilities = body["outputs"][0]["data"]
    assert probabilities == [in_process(settings, version, contract_features(e)) for e in EVENTS[:3]]
    pinned = client.post(f"/v2/models/{name}/versions/3/infer", json={"inputs": inputs}).json()
    assert pinned["model_version"] == "3"
    assert client.get("/v2/health/live").json() == {"live": True}
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["name"] == name and "3" in meta["versions"]
    assert client.get("/v2/models/other").status_code == 404
    bad = client.post(f"/v2/models/{name}/infer", json={"inputs": [{**inputs[0], "shape": [2]}]})
    assert bad.status_code == 422 and "inputs[0]" in bad.text
    bad_bool = client.post(f"/v2/models/{name}/infer",
                           json={"inputs": [{"name": "Weekend", "shape": [1], "datatype": "BOOL", "data": ["false"]}]})
    assert bad_bool.status_code == 422 and "BOOL" in bad_bool.text


def test_admin_routes_need_the_token_and_a_pin_is_served_within_a_second(served):
    settings, client = served
    assert client.post("/admin/pin", json={"version": 2, "reason": "x"}).status_code == 401
    wrong = client.post("/admin/pin", json={"version": 2, "reason": "x"}, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/admin/pin", json={"version": 99, "reason": "x"}, headers=auth).status_code == 409
    features = EVENTS[0].features
    start = time.monotonic()
    assert client.post("/admin/pin", json={"version": 2, "reason": "canary"}, headers=auth).status_code == 200
    wait_for(lambda: client.post("/predict", json={"features": features}).json()["version"] == 2, 1.0,
             "the pinned version to be served", interval=0.02)
    assert time.monotonic() - start < 1.0
    unpinned = client.post("/admin/unpin", json={"reason": "done"}, headers=auth).json()
    assert unpinned["pinned"] is None and unpinned["serving"] == store_for(settings).stable_numbers()[-1]
    assert client.post("/admin/learning/resume", json={"reason": "x"}, headers=auth).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "features"),
        ({"features": {"a": [1, 2]}}, "features"),
        ({"features": {"a": "x" * 300}}, "features"),
        ({"features": {"a": 1}, "version": 0}, "version"),
        ({"features": "nope"}, "features"),
        ({"features": {"a": 10**400}}, "features"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(served, body, field):
    _settings, client = served
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


def test_every_metric_in_the_readme_is_exposed(served_alone, learners):
    settings, client = served_alone
    monitor_port = free_port()
    learners(settings, "--metrics-port", str(monitor_port), command="monitor")
    learner_port = settings.metrics_port
    produce(settings, read_events(limit=10))
    learners(settings)  # a long-running learner with its metrics port
    client.post("/predict", json={"features": {"a": 1}})
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    documented = set(re.findall(r"`(livelearn_[a-z_]+)", readme))
    assert len(documented) >= 20

    def exposed() -> set[str]:
        names = set()
        for url in (f"http://127.0.0.1:{learner_port}/metrics", f"http://127.0.0.1:{monitor_port}/metrics",
                    str(client.base_url) + "/metrics/"):
            try:
                text = httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                names.update(sample.name for sample in family.samples)
                names.add(family.name + ("_total" if family.type == "counter" else ""))
        return names

    deadline = time.monotonic() + 30
    while not documented <= (names := exposed()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert documented - names == set()
