"""Serving and what the store holds: a version number the store holds anew after it lost its data, a version that
cannot be read. Found by a review of serving (each test failed before its fix).

The app runs in this process over a redis-server of the test's own (``create_app`` over the store, its lifespan and
watcher run by a ``TestClient``, as in ``tests/test_canary.py``); waits are readiness loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_for
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from reference import contract_features
from test_arms import Run
from test_canary import write_version

from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings
from streaming.engines import restore_model
from streaming.local.dataset import read_events
from streaming.model import ModelSpec
from streaming.serving.app import create_app

pytestmark = pytest.mark.first_lane

EVENTS = list(read_events(limit=700))
FEATURES = EVENTS[0].features


@pytest.fixture
def served(private_redis) -> Iterator[tuple[Settings, VersionStore, Run, TestClient, Any]]:
    server, admin = private_redis
    settings = Settings(
        model_name="shop", redis_url=f"redis://{server.address}/0", challengers=["fast:lr=0.05"], promotion="immediate"
    )
    store, run = open_store(settings), Run(settings)
    assert write_version(store, run, EVENTS[:300]) == 1
    app = create_app(settings, store=store, registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/v2/health/ready").status_code == 200, 10, "serve to load version 1")
        yield settings, store, run, client, admin


def _version(client: TestClient) -> int | None:
    answer = client.post("/predict", json={"features": FEATURES})
    return int(answer.json()["version"]) if answer.status_code == 200 else None


def _stored(store: VersionStore, number: int) -> float:
    _, state = store.load(number)
    return restore_model(ModelSpec.from_dict(state.spec), state.model).predict_proba_one(contract_features(EVENTS[0]))


def test_a_number_the_store_holds_anew_after_it_lost_its_data_is_served_with_its_new_model(served):
    """Redis lost its data and a learner started over: numbers may repeat the lost store's. Serve answered with the
    lost version 1 it still held, under the new version 1's number. It now forgets what the store no longer holds as
    it was loaded; until a version serves again the model in memory answers (as during an outage)."""
    settings, store, run, client, admin = served
    assert write_version(store, run, EVENTS[300:600]) == 2
    wait_for(lambda: _version(client) == 2, 10, "serving to move to version 2")
    client.post("/predict", json={"features": FEATURES, "version": 1})  # version 1 in the cache too
    admin.flushall()
    assert _version(client) == 2 and client.get("/v2/health/ready").status_code == 200
    assert write_version(store, Run(settings), EVENTS[600:650]) == 1 and store.serving() == 1
    wait_for(lambda: _version(client) == 1, 10, "serving to move to the new version 1")
    for body in ({"features": FEATURES}, {"features": FEATURES, "version": 1}):
        assert client.post("/predict", json=body).json()["probability"] == _stored(store, 1)


def test_a_prediction_naming_a_version_that_cannot_be_read_is_a_declared_409(served):
    _settings, store, run, client, _admin = served
    ControlPlane(store).pin(1, actor="op", reason="hold serving on 1")
    assert write_version(store, run, EVENTS[300:400]) == 2 and store.serving() == 1
    blob = store.client.get(store.keys.blob(2))
    store.client.set(store.keys.blob(2), blob[:-4] + b"oops")
    declared = client.get("/openapi.json").json()["paths"]
    infer = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    for path, body in (
        ("/predict", {"features": FEATURES, "version": 2}),
        ("/predict/batch", {"instances": [{"features": FEATURES}], "version": 2}),
        ("/v2/models/shop/versions/2/infer", infer),
    ):
        answer = client.post(path, json=body)
        assert answer.status_code == 409 and "checksum" in answer.json()["detail"], (path, answer.text)
        route = path.replace("shop", "{model_name}").replace("/2/", "/{version}/")
        assert "409" in declared[route]["post"]["responses"]


@pytest.mark.parametrize(
    ("datatype", "inside", "outside"),
    [
        ("INT8", [127, -128], 128),
        ("UINT8", [255, 0], 256),
        ("INT16", [32767], -32769),
        ("INT32", [2**31 - 1], 2**31),
        ("UINT32", [2**32 - 1], 2**32),
        ("FP16", [65504.0], 1e10),
    ],
)
def test_a_v2_value_outside_its_datatype_is_refused(served, datatype, inside, outside):
    """Found by a review: a v2 input holds exactly values of its datatype (docs/serving.md); 300 is no INT8."""
    *_, client, _admin = served

    def infer(value: Any) -> Any:
        body = {"inputs": [{"name": "Administrative", "shape": [1], "datatype": datatype, "data": [value]}]}
        return client.post("/v2/models/shop/infer", json=body)

    assert all(infer(value).status_code == 200 for value in inside)
    refused = infer(outside)
    assert refused.status_code == 422 and f"outside {datatype}'s range" in refused.text


def test_an_admin_rollback_onto_a_branch_version_not_promoted_is_a_409(private_redis):
    """Found by a review: the refusal (a RebuildError) answered 500."""
    from snapshotter.branches import Branches
    from snapshotter.codec import SnapshotState

    server, _admin = private_redis
    settings = Settings(model_name="shop", redis_url=f"redis://{server.address}/0", api_token="tok")
    store = open_store(settings)
    state = SnapshotState(spec={}, model={}, metrics={}, counters={})
    base = store.write(state, writer="w", lease_value=None, offsets={"t": {"0": 1}}, metrics={}, parent=None).number
    branches = Branches(store)
    branches.start("b", base=base, ranges={"t": {"0": [1, 2]}}, provenance={}, actor="op")
    head = branches.write("b", state, offsets={"t": {"0": 2}}, metrics={}, parent=base, epoch=0).number
    app = create_app(settings, store=store, registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post(
            "/admin/rollback",
            json={"to": head, "reason": "try the branch"},
            headers={"Authorization": "Bearer tok"},
        )
    assert answer.status_code == 409 and "rebuild promote" in answer.json()["detail"], answer.text
