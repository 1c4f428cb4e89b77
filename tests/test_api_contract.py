"""The serving API refuses what its OpenAPI document says it refuses, and the document says it (issue 16, item 7):
feature names are not empty, a KServe v2 shape is ``[batch]`` or ``[batch, 1]`` with ``batch`` the number of
values, versions are integers from 1 written one way only (``/versions/5%20``, ``05`` or ``5.0`` are not version
5), and ``force`` is a JSON boolean. In process, on fakeredis: no server, no broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.model import ModelSpec, OnlineModel
from streaming.serving.app import create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BATCH, MAX_STRING = 7, 40
MAX_VERSION = 2**53 - 1  # the largest integer every JSON client reads exactly
SETTINGS = Settings(
    model_name="contract",
    api_token=TOKEN,
    engine="river",
    promotion="immediate",
    api_max_batch=MAX_BATCH,
    max_string_length=MAX_STRING,
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The app over a store holding version 1 (served)."""
    store = VersionStore.for_settings(fakeredis.FakeRedis(), SETTINGS)
    model, metrics = OnlineModel(ModelSpec()), PrequentialMetrics(window=10)
    for i in range(20):
        x, y = {"pages": float(i % 5), "month": f"m{i % 3}"}, i % 2 == 0
        metrics.update(y, model.predict_proba_one(x))
        model.learn_one(x, y)
    state = SnapshotState(ModelSpec().to_dict(), model.dump_state(), metrics.dump_state(), {})
    written = store.write(state, writer="t", lease_value=None, offsets={}, metrics={}, parent=None, stable=True)
    assert (written.number, store.serving()) == (1, 1)
    with TestClient(create_app(SETTINGS, store=store, registry=CollectorRegistry())) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    document = client.get("/openapi.json")
    assert document.status_code == 200
    return dict(document.json())


def problems(response: Any) -> list[list[str | int]]:
    """The ``loc`` of each problem of a 422."""
    assert response.status_code == 422, response.text
    return [problem["loc"] for problem in response.json()["detail"]]


def schema_of(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(openapi["components"]["schemas"][name])


def one_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field's schema (or the schema itself)."""
    branches = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    assert len(branches) == 1, schema
    return dict(branches[0])


def v2(shape: list[Any], data: list[Any], name: str = "pages") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": "FP64", "data": data}]}


# -- feature names -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", {"features": {"": 1.0}}),
        ("/predict", {"features": {"pages": 1.0, "": "x"}}),
        ("/predict", {"features": {"n" * (MAX_STRING + 1): 1.0}}),
        ("/predict/batch", {"instances": [{"features": {"pages": 1.0}}, {"features": {"": 1.0}}]}),
        ("/v2/models/contract/infer", v2([1], [1.0], name="")),
    ],
)
def test_an_empty_or_overlong_feature_name_is_refused(client, path, body):
    assert any("features" in loc or "name" in loc for loc in problems(client.post(path, json=body)))


def test_the_document_states_the_feature_name_limits(openapi):
    for model in ("PredictRequest", "PredictInstance"):
        names = schema_of(openapi, model)["properties"]["features"]["propertyNames"]
        assert names == {"minLength": 1, "maxLength": MAX_STRING}, (model, names)
    name = schema_of(openapi, "InferInput")["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, MAX_STRING)


# -- KServe v2 shapes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "data"),
    [
        ([0], []),
        ([0, 1], []),
        ([-1], [1.0]),
        ([], [1.0]),
        ([1, 2], [1.0, 2.0]),
        ([1, 0], [1.0]),
        ([1, 1, 1], [1.0]),
        ([2], [1.0]),
        ([1], [1.0, 2.0]),
        ([MAX_BATCH + 1], [1.0] * (MAX_BATCH + 1)),
        ([True], [1.0]),
        ([1.0], [1.0]),
        (["1"], [1.0]),
    ],
)
def test_a_shape_that_is_not_the_datas_is_refused(client, shape, data):
    response = client.post("/v2/models/contract/infer", json=v2(shape, data))
    assert all(loc[:3] == ["body", "inputs", 0] for loc in problems(response))


@pytest.mark.parametrize(("shape", "data"), [([1], [1.0]), ([3, 1], [1.0, 2.0, 3.0]), ([MAX_BATCH], [1.0] * MAX_BATCH)])
def test_a_shape_that_is_the_datas_is_taken(client, shape, data):
    response = client.post("/v2/models/contract/infer", json=v2(shape, data))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [shape[0]]


def test_the_document_states_the_shape_limits(openapi):
    shape = schema_of(openapi, "InferInput")["properties"]["shape"]
    assert (shape["type"], shape["minItems"], shape["maxItems"]) == ("array", 1, 2)
    batch, column = shape["prefixItems"]
    assert batch == {"type": "integer", "minimum": 1, "maximum": MAX_BATCH}
    assert column == {"const": 1}
    assert shape["items"] is False  # nothing past [batch, 1]
    assert "data" in shape["description"]  # the batch is the number of values: said in words (not a schema rule)
    assert schema_of(openapi, "InferInput")["properties"]["data"]["maxItems"] == MAX_BATCH


# -- version numbers ---------------------------------------------------------------------------------
NOT_VERSION_1 = ["1%20", "%201", "1.0", "+1", "01", "0x1", "1_0", "1e0", "%D9%A1", "true", "-1", "0", "1%0A"]
VERSION_PATHS = ["/versions/{}", "/v2/models/contract/versions/{}"]


@pytest.mark.parametrize("path", VERSION_PATHS)
def test_version_1_is_spelt_one_way_in_a_path(client, path):
    assert client.get(path.format(1)).status_code == 200
    for spelling in NOT_VERSION_1:
        response = client.get(path.format(spelling))
        assert response.status_code == 422, (spelling, response.status_code, response.text)
        assert problems(response)[0][0] == "path", response.text


@pytest.mark.parametrize("path", VERSION_PATHS)
@pytest.mark.parametrize("number", [str(MAX_VERSION + 1), str(2**63), "9" * 40])
def test_a_version_past_the_largest_is_refused_not_looked_up(client, path, number):
    assert problems(client.get(path.format(number)))[0][0] == "path"


def test_an_infer_path_version_is_spelt_one_way_too(client):
    assert client.post("/v2/models/contract/versions/1/infer", json=v2([1], [1.0])).status_code == 200
    for spelling in ("01", "1.0", "+1", "1%20"):
        response = client.post(f"/v2/models/contract/versions/{spelling}/infer", json=v2([1], [1.0]))
        assert problems(response)[0][:2] == ["path", "version"], spelling


def test_the_document_states_the_path_version_limits(openapi):
    for path, name in [
        ("/versions/{number}", "number"),
        ("/v2/models/{model_name}/versions/{version}", "version"),
    ]:
        (parameter,) = (p for p in openapi["paths"][path]["get"]["parameters"] if p["name"] == name)
        assert parameter["in"] == "path"
        schema = parameter["schema"]
        assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, MAX_VERSION), schema
        assert "digits" in parameter["description"]
    infer = openapi["paths"]["/v2/models/{model_name}/versions/{version}/infer"]["post"]["parameters"]
    (parameter,) = (p for p in infer if p["name"] == "version")
    assert (parameter["schema"]["minimum"], parameter["schema"]["maximum"]) == (1, MAX_VERSION)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/predict", {"features": {"pages": 1.0}, "version": MAX_VERSION + 1}, "version"),
        ("/predict/batch", {"instances": [{"features": {"pages": 1.0}}], "version": 0}, "version"),
        ("/admin/pin", {"version": MAX_VERSION + 1, "reason": "x"}, "version"),
        ("/admin/pin", {"version": 1.0, "reason": "x"}, "version"),
        ("/admin/rollback", {"to": "1", "reason": "x"}, "to"),
    ],
)
def test_a_body_version_is_an_integer_from_1_to_the_largest(client, path, body, field):
    assert any(field in loc for loc in problems(client.post(path, json=body, headers=AUTH)))


def test_the_document_states_the_body_version_limits(openapi):
    for model, field in [("PinRequest", "version"), ("RollbackRequest", "to"), ("PredictRequest", "version")]:
        schema = one_of(schema_of(openapi, model)["properties"][field])
        assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, MAX_VERSION), (model, schema)


# -- force -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", ["true", "false", 1, 0, "yes", None, [], {}])
def test_force_is_a_json_boolean_and_nothing_else(client, force):
    response = client.post("/admin/pin", json={"version": 1, "reason": "x", "force": force}, headers=AUTH)
    assert ["body", "force"] in problems(response)
    assert client.get("/versions").json()["pinned"] is None  # nothing was pinned


def test_force_true_or_false_still_pins(client):
    for force in (False, True):
        response = client.post("/admin/pin", json={"version": 1, "reason": "x", "force": force}, headers=AUTH)
        assert response.status_code == 200 and response.json()["pinned"] == 1, response.text
        assert client.post("/admin/unpin", json={"reason": "x"}, headers=AUTH).status_code == 200


def test_the_document_states_that_force_is_a_boolean(openapi):
    force = schema_of(openapi, "PinRequest")["properties"]["force"]
    assert (force["type"], force["default"]) == ("boolean", False)
    assert "true or false" in force["description"]
