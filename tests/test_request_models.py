"""The request models are static classes validated with the limits of the validation (issue 17, item 4): pydantic's
validation context, else the limits in force (an app's, for each of its requests), else Settings' defaults. A breach
is reported as pydantic's own constraint reports it, and the OpenAPI document of each app states that app's limits.
In process, on fakeredis: no server, no broker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated, Any

import fakeredis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, ValidationError

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import SnapshotState
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.errors import EventError
from streaming.events import EventLimits, check_feature
from streaming.model import ModelSpec, OnlineModel
from streaming.serving.app import create_app
from streaming.serving.schemas import (
    ApiLimits,
    BatchRequest,
    InferRequest,
    PredictRequest,
    Scalar,
    using_limits,
)

SMALL = ApiLimits(max_batch=2, events=EventLimits(max_features=2, max_string_length=5, max_abs_value=100.0))


def problems(model: type[BaseModel], doc: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    """``(loc, type, msg)`` of each problem ``model`` finds in ``doc`` (empty when it is valid)."""
    try:
        model.model_validate(doc, **kwargs)
    except ValidationError as exc:
        return [(e["loc"], e["type"], e["msg"]) for e in exc.errors()]
    return []


# -- the limits of a validation ----------------------------------------------------------------------
def test_one_class_applies_the_limits_of_each_validation():
    three = {"instances": [{"features": {"a": 1}}] * 3}
    assert problems(BatchRequest, three, context=ApiLimits(max_batch=3)) == []
    assert problems(BatchRequest, three, context=SMALL) == [
        (("instances",), "too_long", "List should have at most 2 items after validation, not 3")
    ]


def test_nested_models_validate_with_their_parents_limits():
    """An instance inside a batch and a tensor inside an infer request are bounded by the same limits."""
    batch = {"instances": [{"features": {"a": 1}}, {"features": {"a": 1, "b": 2, "c": 3}}]}
    assert [p[:2] for p in problems(BatchRequest, batch, context=SMALL)] == [(("instances", 1, "features"), "too_long")]
    infer = {"inputs": [{"name": "toolong", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
    assert [p[:2] for p in problems(InferRequest, infer, context=SMALL)] == [
        (("inputs", 0, "name"), "string_too_long"),
        (("inputs", 0, "data"), "too_long"),
    ]
    assert problems(InferRequest, infer, context=ApiLimits()) == []


def test_without_a_context_the_limits_in_force_apply_in_their_own_thread_only():
    doc = {"features": {"abcdef": 1.0}}
    assert problems(PredictRequest, doc) == []  # Settings' defaults: 256 characters
    seen: list[list[tuple[Any, ...]]] = []
    with using_limits(SMALL):
        assert [p[1] for p in problems(PredictRequest, doc)] == ["string_too_long"]
        other = threading.Thread(target=lambda: seen.append(problems(PredictRequest, doc)))
        other.start()
        other.join()
        assert problems(PredictRequest, doc, context=ApiLimits()) == []  # a context wins over the limits in force
    assert seen == [[]]
    assert problems(PredictRequest, doc) == []


def test_the_json_schema_states_the_limits_in_force():
    def bounds(schema: dict[str, Any]) -> tuple[Any, ...]:
        features = schema["$defs"]["PredictInstance"]["properties"]["features"]
        return schema["properties"]["instances"]["maxItems"], features["maxProperties"], features["propertyNames"]

    assert bounds(BatchRequest.model_json_schema()) == (1000, 1000, {"minLength": 1, "maxLength": 256})
    with using_limits(SMALL):
        assert bounds(BatchRequest.model_json_schema()) == (2, 2, {"minLength": 1, "maxLength": 5})


# -- the same reports as pydantic's constraints ------------------------------------------------------
def reference(limits: ApiLimits) -> type[BaseModel]:
    """``PredictRequest`` as a model built for ``limits`` with pydantic's constraints (how it was made before)."""
    events = limits.events
    Text = Annotated[str, StringConstraints(min_length=1, max_length=events.max_string_length)]

    def check(features: dict[str, Scalar]) -> dict[str, Scalar]:
        try:
            return {name: check_feature(name, value, events) for name, value in features.items()}
        except EventError as exc:
            raise ValueError(exc.detail) from None

    class Reference(BaseModel):
        features: Annotated[dict[Text, Scalar], Field(max_length=events.max_features), AfterValidator(check)]
        event_id: Text | None = None
        version: Annotated[int, Field(strict=True, ge=1, le=2**53 - 1)] | None = None

    return Reference


@pytest.mark.parametrize(
    "doc",
    [
        {"features": {"a": 1, "b": "x"}, "event_id": "e1", "version": 1},
        {"features": {"a": 1, "b": 2, "c": 3}},
        {"features": {"": 1, "abcdef": [1], "ok": None}},
        {"features": {"a": "abcdefgh"}},
        {"features": {"a": 1e9}},
        {"features": {"a": True}, "event_id": "abcdefg"},
        {"features": {"a": 1}, "event_id": ""},
        {"features": {"a": 1}, "event_id": 5, "version": 0},
        {"features": {f"k{i}": [] for i in range(4)}},
        {"features": 3},
        {},
    ],
)
def test_a_breach_is_reported_as_pydantics_constraints_report_it(doc):
    expected = problems(reference(SMALL), doc)
    assert problems(PredictRequest, doc, context=SMALL) == expected
    with using_limits(SMALL):
        assert problems(PredictRequest, doc) == expected
    if not expected:
        taken = PredictRequest.model_validate(doc, context=SMALL)
        assert taken.model_dump() == reference(SMALL).model_validate(doc).model_dump()


# -- apps: each enforces and documents its own limits ------------------------------------------------
def app_with(**limits: Any) -> TestClient:
    settings = Settings(model_name="limits", engine="river", promotion="immediate", **limits)
    store = VersionStore.for_settings(fakeredis.FakeRedis(), settings)
    model, metrics = OnlineModel(ModelSpec()), PrequentialMetrics(window=10)
    for i in range(10):
        x, y = {"a": float(i % 5)}, i % 2 == 0
        metrics.update(y, model.predict_proba_one(x))
        model.learn_one(x, y)
    state = SnapshotState(ModelSpec().to_dict(), model.dump_state(), metrics.dump_state(), {})
    store.write(state, writer="t", lease_value=None, offsets={}, metrics={}, parent=None, stable=True)
    return TestClient(create_app(settings, store=store, registry=CollectorRegistry()))


@pytest.fixture(scope="module")
def apps() -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps in one process: one with small limits, one with Settings' defaults."""
    with app_with(api_max_batch=2, max_features=2, max_string_length=5) as small, app_with() as default:
        yield small, default


def test_each_app_applies_its_own_limits(apps):
    small, default = apps
    three = {"instances": [{"features": {"a": 1}}] * 3}
    assert small.post("/predict/batch", json=three).status_code == 422
    assert default.post("/predict/batch", json=three).status_code == 200
    wide = {"features": {"a": 1, "b": 2, "c": 3}}  # answered on the hot path when valid (version 1 is in memory)
    response = small.post("/predict", json=wide)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "features"]
    assert default.post("/predict", json=wide).status_code == 200
    tensor = {"inputs": [{"name": "a", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
    assert small.post("/v2/models/limits/infer", json=tensor).status_code == 422
    assert default.post("/v2/models/limits/infer", json=tensor).status_code == 200


def test_each_app_documents_its_own_limits_however_the_document_is_asked_for(apps):
    small, default = apps
    for client, batch, length in [(small, 2, 5), (default, 1000, 256)]:
        assert isinstance(client.app, FastAPI)
        asked_directly = client.app.openapi()
        for document in (asked_directly, client.get("/openapi.json").json()):
            schemas = document["components"]["schemas"]
            assert schemas["BatchRequest"]["properties"]["instances"]["maxItems"] == batch
            assert schemas["InferInput"]["properties"]["data"]["maxItems"] == batch
            assert schemas["InferInput"]["properties"]["shape"]["prefixItems"][0]["maximum"] == batch
            assert schemas["InferInput"]["properties"]["name"]["maxLength"] == length
