"""The prediction API as a real `livelearn serve` process, and the Prometheus names the README lists."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import produce, store_for, wait_for
from reference import contract_features
from snapshotter.restore import restore_state
from streaming.dataset import read_events
from streaming.embedded import free_port
from streaming.model import ModelSpec

TOKEN = "s3cret-token"
EVENTS = list(read_events(limit=3000))


@pytest.fixture
def served(make_settings, learners):
    port, learner_port = free_port(), free_port()
    settings = make_settings(snapshot_every_events=500, api_port=port, api_token=TOKEN, metrics_port=learner_port)
    produce(settings, EVENTS)
    learners(settings, "--until-caught-up").wait()
    learners(settings, command="serve")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(f"{base}/v2/health/ready"), 30, "the API to be ready")
    with httpx.Client(base_url=base, timeout=10) as client:
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


def test_every_metric_in_the_readme_is_exposed(served, learners):
    settings, client = served
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
