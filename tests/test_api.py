"""The prediction API as a real `livelearn serve` process, and the Prometheus names the metrics page lists.

One server (model, learner run and `serve` child) is shared by every test that only reads from it or
probes it with hostile input; tests that start more processes or stop Redis get their own.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LearnerProcess, produce, store_for, wait_for
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from reference import contract_features

from streaming.config import Settings
from streaming.engines import restore_model
from streaming.local.dataset import read_events
from streaming.local.embedded import EmbeddedServer, free_port, start_redis
from streaming.model import ModelSpec
from streaming.transport import ensure_topics

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENTS = list(read_events(limit=3000))
_names = itertools.count()


def new_settings(stack, tag: str, **overrides) -> Settings:
    """Settings for a fresh model and topics of this module on the session's broker and redis-server."""
    broker, redis_server = stack
    n = next(_names)
    values = {
        "model_name": f"api{n}-{tag}",
        "kafka_bootstrap": broker.address,
        "redis_url": f"redis://{redis_server.address}/0",
        "events_topic": f"api-events-{n}-{tag}",
        "snapshot_every_events": 500,
        "api_token": TOKEN,
        "promotion": "immediate",  # no monitor here: versions that meet the threshold are served at once
        **overrides,
    }
    settings = Settings(**values)
    ensure_topics(settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1})
    return settings


@contextlib.contextmanager
def serving(settings: Settings, **env: str) -> Iterator[tuple[httpx.Client, LearnerProcess]]:
    """Learn ``EVENTS`` into versions (one learner run), then start `livelearn serve` (with extra ``env``)
    and yield a client and the process once it is ready; every child is stopped afterwards."""
    produce(settings, EVENTS)
    LearnerProcess(settings, "--until-caught-up").wait()
    server = LearnerProcess(settings, command="serve", **env)
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        wait_for(lambda: _ok(f"{base}/v2/health/ready") or server.proc.poll() is not None, 60, "the API to be ready")
        assert server.proc.poll() is None, server.proc.communicate()[0].decode()
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client, server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.communicate()


STALE_AFTER = 2.0  # LIVELEARN_SERVING_STALE_AFTER_SECONDS of the outage server
# Request limits of the shared server, set in its environment only: the API must take them from Settings.
MAX_BATCH, MAX_FEATURES, MAX_STRING, MAX_ABS, MAX_BODY = 50, 50, 100, 1e6, 65_536
SHARED_LIMITS = {
    "LIVELEARN_API_MAX_BATCH": str(MAX_BATCH),
    "LIVELEARN_MAX_FEATURES": str(MAX_FEATURES),
    "LIVELEARN_MAX_STRING_LENGTH": str(MAX_STRING),
    "LIVELEARN_MAX_ABS_VALUE": str(MAX_ABS),
    "LIVELEARN_API_MAX_BODY_BYTES": str(MAX_BODY),
}


@pytest.fixture(scope="module")
def shared(stack) -> Iterator[tuple[Settings, httpx.Client, LearnerProcess]]:
    """The shared server: versions of ``EVENTS`` every 500 events, served with the admin token and
    ``SHARED_LIMITS``."""
    settings = new_settings(stack, "shared", api_port=free_port())
    with serving(settings, **SHARED_LIMITS) as (client, server):
        yield settings, client, server


@pytest.fixture(scope="module")
def served(shared) -> tuple[Settings, httpx.Client]:
    return shared[0], shared[1]


@pytest.fixture
def outage(stack) -> Iterator[tuple[Settings, httpx.Client, EmbeddedServer]]:
    """A server on a private redis-server that the test may stop (SIGSTOP) or kill; never the session's."""
    redis_server = start_redis()
    try:
        settings = new_settings(stack, "outage", api_port=free_port(), redis_url=f"redis://{redis_server.address}/0")
        with serving(settings, LIVELEARN_SERVING_STALE_AFTER_SECONDS=str(STALE_AFTER)) as (client, _server):
            yield settings, client, redis_server
    finally:
        if redis_server.process.poll() is None:  # stopped, not killed: let it run so it can terminate
            os.kill(redis_server.process.pid, signal.SIGCONT)
        redis_server.stop()
        shutil.rmtree(redis_server.workdir or "", ignore_errors=True)


@pytest.fixture
def served_alone(stack) -> Iterator[tuple[Settings, httpx.Client]]:
    """A server of its own, for a test that starts more processes on its model."""
    settings = new_settings(stack, "alone", api_port=free_port(), metrics_port=free_port())
    with serving(settings) as (client, _server):
        yield settings, client


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def in_process(settings, version: int, features: dict) -> float:
    """River's own probability for the version (the server scores on the process's engine: compiled by default,
    which must give the same number, bit for bit)."""
    _meta, state = store_for(settings).load(version)
    return restore_model(ModelSpec.from_dict(state.spec), state.model, "river").predict_proba_one(features)


def test_predictions_match_the_in_process_model_of_the_same_version(served):
    settings, client = served
    store = store_for(settings)
    serving = store.serving()
    assert serving is not None
    assert store.meta(serving).stable
    for event in EVENTS[:20]:
        x = contract_features(event)
        body = client.post("/predict", json={"features": event.features, "event_id": event.event_id}).json()
        assert body["version"] == serving
        assert body["event_id"] == event.event_id
        assert body["probability"] == in_process(settings, serving, x)
        assert body["label"] == (body["probability"] > 0.5)
        older = client.post("/predict", json={"features": event.features, "version": 2}).json()
        assert older["version"] == 2
        assert older["probability"] == in_process(settings, 2, x)
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
        kind = (
            "BOOL"
            if isinstance(column[0], bool)
            else "BYTES"
            if isinstance(column[0], str)
            else "FP64"
            if isinstance(column[0], float)
            else "INT64"
        )
        inputs.append({"name": feature, "shape": [3], "datatype": kind, "data": column})
    response = client.post(f"/v2/models/{name}/infer", json={"id": "r1", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name
    assert body["id"] == "r1"
    version = int(body["model_version"])
    probabilities = body["outputs"][0]["data"]
    assert probabilities == [in_process(settings, version, contract_features(e)) for e in EVENTS[:3]]
    pinned = client.post(f"/v2/models/{name}/versions/3/infer", json={"inputs": inputs}).json()
    assert pinned["model_version"] == "3"
    assert client.get("/v2/health/live").json() == {"live": True}
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["name"] == name
    assert "3" in meta["versions"]
    assert client.get("/v2/models/other").status_code == 404
    bad = client.post(f"/v2/models/{name}/infer", json={"inputs": [{**inputs[0], "shape": [2]}]})
    assert bad.status_code == 422
    assert ["body", "inputs", 0] in [error["loc"] for error in bad.json()["detail"]]
    bad_bool = client.post(
        f"/v2/models/{name}/infer",
        json={"inputs": [{"name": "Weekend", "shape": [1], "datatype": "BOOL", "data": ["false"]}]},
    )
    assert bad_bool.status_code == 422
    assert "BOOL" in bad_bool.text


def test_admin_routes_need_the_token_and_a_pin_is_served_within_a_second(served):
    settings, client = served
    assert client.post("/admin/pin", json={"version": 2, "reason": "x"}).status_code == 401
    wrong = client.post("/admin/pin", json={"version": 2, "reason": "x"}, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    features = EVENTS[0].features
    assert client.post("/admin/pin", json={"version": 2, "reason": "canary"}, headers=auth).status_code == 200
    wait_for(  # the API follows the pointer it moved at once (how soon: bench/rollback_serving.py)
        lambda: client.post("/predict", json={"features": features}).json()["version"] == 2,
        10.0,
        "the pinned version to be served",
        interval=0.02,
    )
    unpinned = client.post("/admin/unpin", json={"reason": "done"}, headers=auth).json()
    assert unpinned["pinned"] is None
    assert unpinned["serving"] == store_for(settings).stable_numbers()[-1]
    assert client.post("/admin/learning/resume", json={"reason": "x"}, headers=auth).status_code == 409


def test_a_missing_version_is_404_everywhere_and_409_is_kept_for_conflicts(served):
    settings, client = served
    store = store_for(settings)
    before = (store.pinned(), store.serving(), store.epoch())
    missing = [
        ("GET", "/versions/99", None),
        ("GET", f"/v2/models/{settings.model_name}/versions/99", None),
        ("POST", "/predict", {"features": {"a": 1}, "version": 99}),
        ("POST", "/predict/batch", {"instances": [{"features": {"a": 1}}], "version": 99}),
        ("POST", f"/v2/models/{settings.model_name}/versions/99/infer", {"inputs": [v2_input()]}),
        ("POST", "/admin/pin", {"version": 99, "reason": "x"}),
        ("POST", "/admin/rollback", {"to": 99, "reason": "x"}),
    ]
    for method, path, body in missing:
        response = client.request(method, path, json=body, headers=AUTH)
        assert response.status_code == 404 and "does not exist" in clean_json(response)["detail"], (path, response.text)
    assert (store.pinned(), store.serving(), store.epoch()) == before
    for path in ("/admin/unpin", "/admin/learning/resume"):  # nothing pinned, learning not frozen
        response = client.post(path, json={"reason": "x"}, headers=AUTH)
        assert response.status_code == 409 and "nothing was changed" in clean_json(response)["detail"], response.text


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


def post_text(client: httpx.Client, path: str, text: str, **headers: str) -> httpx.Response:
    """POST ``text`` verbatim as a JSON body (so it can hold NaN or a lone surrogate escape)."""
    return client.post(path, content=text.encode(), headers={"content-type": "application/json", **headers})


def clean_json(response: httpx.Response) -> dict:
    """The body as JSON, asserting it is UTF-8 JSON with no NaN/Infinity and, for 422, only loc/msg/type."""
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = json.loads(response.content.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in body"))
    if response.status_code == 422:
        assert body["detail"] and all(set(e) == {"loc", "msg", "type"} for e in body["detail"]), body
    return body


V2_ONE = '{"name":"x","shape":[1],"datatype":"FP64","data":[1.5]}'
HOSTILE_JSON = [
    ("/predict", '{"features":{"x":NaN}}', "features"),
    ("/predict", '{"features":{"x":-Infinity}}', "features"),
    ("/predict", '{"features":{"x":1e400}}', "features"),
    ("/predict", '{"features":{"x":1},"version":NaN}', "version"),
    ("/predict/batch", '{"instances":[{"features":{"x":1}},{"features":{"x":Infinity}}]}', "instances"),
    ("/predict", '{"features":{"x":1},"event_id":"\\udfff"}', "event_id"),
    ("/predict", '{"features":{"\\ud800":1}}', "features"),
    ("/predict", '{"features":{"x":"a\\udfffb"}}', "features"),
    ("/predict/batch", '{"instances":[{"features":{"x":1},"event_id":"\\ud83d"}]}', "instances"),
    ("/admin/pin", '{"version":NaN,"reason":"x"}', "version"),
    ("/admin/pin", '{"version":2,"reason":"\\udfff"}', "reason"),
    ("/admin/unpin", '{"reason":"x","actor":"\\udc00"}', "actor"),
    ("/v2/models/{name}/infer", '{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[NaN]}]}', "inputs"),
    ("/v2/models/{name}/infer", '{"id":"\\udfff","inputs":[' + V2_ONE + "]}", "id"),
    (
        "/v2/models/{name}/infer",
        '{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["\\udfff"]}]}',
        "inputs",
    ),
]


@pytest.mark.parametrize(("path", "text", "field"), HOSTILE_JSON)
def test_nan_infinity_and_lone_surrogates_get_a_clean_422_naming_the_field(served, path, text, field):
    settings, client = served
    before = store_for(settings).pinned()
    response = post_text(client, path.format(name=settings.model_name), text, **AUTH)
    assert response.status_code == 422, response.text
    assert field in {str(part) for error in clean_json(response)["detail"] for part in error["loc"]}
    assert store_for(settings).pinned() == before  # nothing was changed


def test_validation_errors_never_echo_the_input(served):
    _settings, client = served
    marker = "ECHO" * MAX_STRING  # too long for a string feature, so each instance is invalid
    response = client.post("/predict/batch", json={"instances": [{"features": {"a": marker}}] * MAX_BATCH})
    assert response.status_code == 422
    body = clean_json(response)
    assert "ECHO" not in response.text and len(response.content) < 8_000, len(response.content)
    assert body["detail"][-1]["type"] == "too_many_errors"  # the first errors, then how many more


def test_invalid_json_and_non_utf8_bodies_get_422(served):
    _settings, client = served
    for raw in (
        b'{"features": {"x": 1}',
        b'{"features": {"x": "\xff\xfe"}}',
        b"\xef\xbb\xbf{}",
        b"[" * 10_000 + b"]" * 10_000,
    ):
        response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, (raw[:40], response.status_code, response.text[:200])
        clean_json(response)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/predict", {"features": {"a": 1}, "version": True}, "version"),
        ("/predict", {"features": {"a": 1}, "version": 1.0}, "version"),
        ("/predict", {"features": {"a": 1}, "version": "1"}, "version"),
        ("/predict/batch", {"instances": [{"features": {"a": 1}}], "version": True}, "version"),
        ("/admin/pin", {"version": True, "reason": "x"}, "version"),
        ("/admin/pin", {"version": "1", "reason": "x"}, "version"),
        ("/admin/rollback", {"to": True, "reason": "x"}, "to"),
        ("/admin/rollback", {"to": 1.0, "reason": "x"}, "to"),
    ],
)
def test_version_numbers_are_strict_integers_so_true_is_not_version_1(served, path, body, field):
    settings, client = served
    store = store_for(settings)
    before = (store.pinned(), store.serving(), store.epoch())
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert field in {str(part) for error in clean_json(response)["detail"] for part in error["loc"]}
    assert (store.pinned(), store.serving(), store.epoch()) == before


def peak_rss_bytes(pid: int) -> int:
    """The peak resident memory of process ``pid`` (``VmHWM``)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def v2_input(name: str = "x", shape: list | None = None, data: list | None = None, datatype: str = "FP64") -> dict:
    data = [1.5] if data is None else data
    return {"name": name, "shape": [len(data)] if shape is None else shape, "datatype": datatype, "data": data}


def test_v2_infer_checks_the_declared_shape_before_allocating_anything(shared):
    settings, client, server = shared
    url = f"/v2/models/{settings.model_name}/infer"
    before = peak_rss_bytes(server.proc.pid)
    for shape in ([20_000_000], [10**15], [2**63], [MAX_BATCH + 1]):  # the report's first: +1.3 GB, then 422
        response = client.post(url, json={"inputs": [v2_input(shape=shape, data=[])]})
        assert peak_rss_bytes(server.proc.pid) - before < 50 * 2**20, shape
        assert response.status_code == 422, response.text
        assert "inputs" in {str(part) for error in clean_json(response)["detail"] for part in error["loc"]}


@pytest.mark.parametrize(
    "inputs",
    [
        [v2_input(shape=[0], data=[])],
        [v2_input(shape=[-1], data=[1.5])],
        [v2_input(shape=[1, 2], data=[1.5])],
        [v2_input(shape=[2], data=[1.5])],
        [v2_input(shape=[1], data=[1.5, 2.5])],
        [v2_input(shape=[1, 1, 1], data=[1.5])],
        [v2_input("x", data=[1.5, 2.5]), v2_input("y", data=[1.5])],  # batches differ
        [v2_input("x"), v2_input("x")],  # one input per feature
        [v2_input(f"f{i}") for i in range(MAX_FEATURES + 1)],
        [v2_input(data=[1.5] * (MAX_BATCH + 1))],
        [v2_input(data=[2 * MAX_ABS])],
        [v2_input(data=["x" * (MAX_STRING + 1)], datatype="BYTES")],
        [v2_input(data=[7], datatype="BYTES")],
        [v2_input(data=[1.5], datatype="INT64")],
        [v2_input(data=[-1], datatype="UINT8")],
        [v2_input(data=["true"], datatype="BOOL")],
        [v2_input(name="n" * (MAX_STRING + 1))],
    ],
)
def test_v2_infer_rejects_inconsistent_or_oversized_tensors_with_422(served, inputs):
    settings, client = served
    response = client.post(f"/v2/models/{settings.model_name}/infer", json={"inputs": inputs})
    assert response.status_code == 422, response.text
    assert "inputs" in {str(part) for error in clean_json(response)["detail"] for part in error["loc"]}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/predict/batch", {"instances": [{"features": {"a": 1}}] * (MAX_BATCH + 1)}, "instances"),
        ("/predict", {"features": {f"f{i}": 1 for i in range(MAX_FEATURES + 1)}}, "features"),
        ("/predict", {"features": {"a": "x" * (MAX_STRING + 1)}}, "features"),
        ("/predict", {"features": {"n" * (MAX_STRING + 1): 1}}, "features"),
        ("/predict", {"features": {"a": 2 * MAX_ABS}}, "features"),
        ("/predict", {"features": {"a": 1}, "event_id": "e" * (MAX_STRING + 1)}, "event_id"),
        ("/predict", {"features": {"a": 1}, "event_id": ""}, "event_id"),
        ("/v2/models/{name}/infer", {"id": "i" * (MAX_STRING + 1), "inputs": [v2_input()]}, "id"),
        ("/admin/unpin", {"reason": "x", "actor": "a" * 201}, "actor"),
        ("/admin/unpin", {"reason": "r" * 1001}, "reason"),
    ],
)
def test_request_limits_come_from_settings(served, path, body, field):
    settings, client = served
    response = client.post(path.format(name=settings.model_name), json=body, headers=AUTH)
    assert response.status_code == 422, response.text[:300]
    assert field in {str(part) for error in clean_json(response)["detail"] for part in error["loc"]}


def test_limits_admit_what_they_bound(served):
    settings, client = served
    features = {f"f{i}": "x" * MAX_STRING for i in range(MAX_FEATURES)}
    single = client.post("/predict", json={"features": features, "event_id": "e" * MAX_STRING})
    assert single.status_code == 200, single.text[:300]
    batch = client.post("/predict/batch", json={"instances": [{"features": {"a": MAX_ABS}}] * MAX_BATCH})
    assert batch.status_code == 200
    assert len(batch.json()["predictions"]) == MAX_BATCH
    tensor = client.post(
        f"/v2/models/{settings.model_name}/infer",
        json={"inputs": [v2_input(data=[1.5] * MAX_BATCH), v2_input("y", shape=[MAX_BATCH, 1], data=[1] * MAX_BATCH)]},
    )
    assert tensor.status_code == 200
    assert tensor.json()["outputs"][0]["shape"] == [MAX_BATCH]


def raw_exchange(port: int, head: str, *parts: bytes) -> tuple[int, dict]:
    """Send a request head and body ``parts`` on a plain socket, then read the response until the server
    closes; returns the status and the JSON body (a server that waits for more body times out here)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        for part in parts:
            sock.sendall(part)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in headers.lower(), headers
    return int(status_line.split()[1]), json.loads(body.decode("utf-8"))


def test_a_declared_body_over_the_limit_is_413_without_reading_it(served):
    settings, _client = served
    head = "POST /predict HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    status, body = raw_exchange(settings.api_port, head, b'{"features": {"a": 1}, "event_id": "' + b"e" * 1000)
    assert status == 413 and "LIVELEARN_API_MAX_BODY_BYTES" in body["detail"], body


def test_a_chunked_body_is_counted_and_cut_off_at_the_limit(served):
    settings, _client = served
    head = "POST /predict HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"  # 8 KiB of JSON whitespace, never the terminating chunk
    status, body = raw_exchange(settings.api_port, head, *[chunk] * (MAX_BODY // 0x2000 + 1))
    assert status == 413 and "LIVELEARN_API_MAX_BODY_BYTES" in body["detail"], body


def test_a_large_valid_body_is_413_not_echoed(served):
    _settings, client = served
    response = client.post("/predict", json={"features": {"a": 1}, "event_id": "e" * MAX_BODY})
    assert response.status_code == 413 and len(response.content) < 1000, response.text[:300]
    assert "LIVELEARN_API_MAX_BODY_BYTES" in clean_json(response)["detail"]
    assert client.get("/v2/health/live").json() == {"live": True}


BODY, ADMIN = {413, 422}, {401, 403, 409, 413, 422, 503}
DECLARED = {  # status codes each route can return, besides 200
    ("post", "/predict"): {404, 409, 503} | BODY,  # 409: a named version that cannot be read
    ("post", "/predict/batch"): {404, 409, 503} | BODY,
    ("get", "/versions"): {413, 503},
    ("get", "/versions/{number}"): {404, 413, 422, 503},
    ("get", "/v2/health/live"): {413},
    ("get", "/v2/health/ready"): {413, 503},
    ("get", "/v2/models/{model_name}"): {404, 413, 422, 503},  # FastAPI declares 422 for any path parameter
    ("get", "/v2/models/{model_name}/versions/{version}"): {404, 409, 413, 422, 503},
    ("post", "/v2/models/{model_name}/infer"): {404, 503} | BODY,
    ("post", "/v2/models/{model_name}/versions/{version}/infer"): {404, 409, 503} | BODY,
    ("post", "/admin/pin"): {404} | ADMIN,
    ("post", "/admin/unpin"): ADMIN,
    ("get", "/canary"): {413, 503},
    ("post", "/admin/canary"): ADMIN,
    ("post", "/admin/canary/next"): ADMIN,
    ("post", "/admin/canary/abort"): ADMIN,
    ("get", "/challengers"): {413, 503},
    ("post", "/admin/challengers"): ADMIN,
    ("post", "/admin/challengers/remove"): ADMIN,
    ("post", "/admin/challengers/reset"): ADMIN,
    ("post", "/admin/challengers/promote"): ADMIN,
    ("post", "/admin/rollback"): {404} | ADMIN,
    ("post", "/admin/learning/resume"): ADMIN,
}


def declared_codes(client: httpx.Client) -> dict[tuple[str, str], set[int]]:
    document = client.get("/openapi.json").json()
    return {
        (method, path): {int(code) for code in operation["responses"]}
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


@pytest.fixture(scope="module")
def openapi_codes(served) -> dict[tuple[str, str], set[int]]:
    return declared_codes(served[1])


def test_openapi_declares_every_status_code_each_route_returns(served):
    _settings, client = served
    assert declared_codes(client) == {route: {200} | codes for route, codes in DECLARED.items()}
    document = client.get("/openapi.json").json()
    problem = document["components"]["schemas"]["ValidationProblem"]
    assert set(problem["properties"]) == {"loc", "msg", "type"}  # what a 422 lists: never the input
    pin = document["paths"]["/admin/pin"]["post"]["responses"]
    assert "LIVELEARN_API_TOKEN" in pin["403"]["description"]
    assert "$ref" in str(pin["409"]["content"])


hostile_text = st.text(
    st.sampled_from(["a", "é", "\udfff", "\ud800", "\x00", "\U0001f600", '"', "\\", "1"]), max_size=8
) | st.text(max_size=300)
hostile_scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | hostile_text
)
hostile_value = st.recursive(
    hostile_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
feature_maps = st.dictionaries(hostile_text, hostile_value, max_size=6) | hostile_value


@st.composite
def hostile_requests(draw) -> tuple[str, dict]:
    """A route and a body close enough to valid that it reaches validation, with hostile values."""

    def maybe(strategy):
        return draw(st.none() | strategy)

    route = draw(
        st.sampled_from(["/predict", "/predict/batch", "/v2/models/{name}/infer", "/admin/pin", "/admin/rollback"])
    )
    if route == "/predict":
        body = {"features": draw(feature_maps), "event_id": maybe(hostile_value), "version": maybe(hostile_value)}
    elif route == "/predict/batch":
        body = {
            "instances": draw(st.lists(st.fixed_dictionaries({"features": feature_maps}), max_size=3) | hostile_value),
            "version": maybe(hostile_value),
        }
    elif route.startswith("/v2"):
        column = st.fixed_dictionaries(
            {
                "name": hostile_value,
                "shape": st.lists(hostile_value, max_size=3),
                "datatype": st.sampled_from(["FP64", "INT64", "BOOL", "BYTES", "X"]),
                "data": st.lists(hostile_value, max_size=4),
            }
        )
        body = {"id": maybe(hostile_value), "inputs": draw(st.lists(column, max_size=3) | hostile_value)}
    else:  # version 0 or a hostile one: never a real pin or rollback of the shared model
        target = draw(st.just(0) | st.floats() | hostile_text | st.booleans())
        body = {"version": target, "to": target, "reason": draw(hostile_value), "actor": maybe(hostile_value)}
    return route, {k: v for k, v in body.items() if v is not None}


@given(hostile_requests())
@hypothesis_settings(max_examples=150, deadline=None, derandomize=True)
def test_hostile_bodies_never_get_a_5xx_or_invalid_json(served, openapi_codes, request_):
    settings, client = served
    route, body = request_
    text = json.dumps(body, allow_nan=True)  # NaN, Infinity and \\udXXX escapes as an attacker sends them
    response = post_text(client, route.format(name=settings.model_name), text, **AUTH)
    assert response.status_code < 500, (route, text[:300], response.text[:300])
    clean_json(response)
    declared = openapi_codes[("post", route.replace("{name}", "{model_name}"))]
    assert response.status_code in declared, (route, response.status_code, "is not in the OpenAPI document")


def needs_redis(name: str) -> list[tuple[str, str, dict | None]]:
    """Requests that must read or write Redis: version 1 was never loaded by the outage server."""
    x = {"features": EVENTS[0].features}
    return [
        ("GET", "/versions", None),
        ("GET", "/versions/1", None),
        ("POST", "/predict", {**x, "version": 1}),
        ("POST", "/predict/batch", {"instances": [x], "version": 1}),
        ("GET", f"/v2/models/{name}", None),
        ("POST", f"/v2/models/{name}/versions/1/infer", {"inputs": [v2_input("Administrative", data=[1])]}),
        ("POST", "/admin/pin", {"version": 1, "reason": "outage test"}),
        ("POST", "/admin/unpin", {"reason": "outage test"}),
    ]


def assert_503_within(client: httpx.Client, requests: list[tuple[str, str, dict | None]], bound: float) -> None:
    """Each request (sent concurrently) is a 503 with a JSON body naming Redis, answered within ``bound`` s."""

    def timed(request: tuple[str, str, dict | None]) -> tuple[httpx.Response, float]:
        method, path, body = request
        start = time.monotonic()
        response = client.request(method, path, json=body, headers=AUTH)
        return response, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        for (method, path, _), (response, elapsed) in zip(requests, pool.map(timed, requests), strict=True):
            assert response.status_code == 503, (method, path, response.status_code, response.text[:300])
            assert "Redis" in clean_json(response)["detail"] and elapsed < bound, (method, path, elapsed)


def assert_serving_version_answers(client: httpx.Client, version: int) -> None:
    start = time.monotonic()
    response = client.post("/predict", json={"features": EVENTS[0].features})
    assert response.status_code == 200 and response.json()["version"] == version, response.text
    assert time.monotonic() - start < 15.0  # from the loaded model, not waiting on Redis until a timeout
    assert client.get("/v2/health/live").json() == {"live": True}


def test_a_hung_redis_is_503_within_bounds_while_the_serving_version_answers(outage):
    settings, client, redis_server = outage
    serving_version = client.get("/versions").json()["serving"]
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        assert_503_within(client, needs_redis(settings.model_name), bound=15.0)  # timeout 1 s, one retry: never a hang
        assert_serving_version_answers(client, serving_version)
        wait_for(
            lambda: client.get("/v2/health/ready").status_code == 503,
            10 + STALE_AFTER,
            "readiness to report that serving cannot follow versions",
        )
        assert "cannot follow" in clean_json(client.get("/v2/health/ready"))["detail"]
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    wait_for(lambda: client.get("/v2/health/ready").status_code == 200, 30, "readiness once Redis answers again")
    assert client.get("/versions").json()["serving"] == serving_version


def test_a_killed_redis_is_503_at_once_and_readiness_reports_it(outage):
    settings, client, redis_server = outage
    serving_version = client.get("/versions").json()["serving"]
    redis_server.process.kill()
    redis_server.process.wait()
    assert_503_within(client, needs_redis(settings.model_name), bound=15.0)
    assert_serving_version_answers(client, serving_version)
    wait_for(
        lambda: client.get("/v2/health/ready").status_code == 503,
        10 + STALE_AFTER,
        "readiness to report that serving cannot follow versions",
    )
    assert "cannot follow" in clean_json(client.get("/v2/health/ready"))["detail"]


def test_every_documented_metric_is_exposed(served_alone, learners):
    settings, client = served_alone
    monitor_port = free_port()
    learners(settings, "--metrics-port", str(monitor_port), command="monitor")
    learner_port = settings.metrics_port
    produce(settings, read_events(limit=10))
    learners(settings)  # a long-running learner with its metrics port
    client.post("/predict", json={"features": {"a": 1}})
    page = (Path(__file__).parent.parent / "docs" / "operations" / "metrics.md").read_text()
    documented = set(re.findall(r"`(livelearn_[a-z_]+)", page))
    assert len(documented) >= 20

    def exposed() -> set[str]:
        names = set()
        for url in (
            f"http://127.0.0.1:{learner_port}/metrics",
            f"http://127.0.0.1:{monitor_port}/metrics",
            str(client.base_url) + "/metrics/",
        ):
            try:
                text = httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                names.update(sample.name for sample in family.samples)
                names.add(family.name + ("_total" if family.type == "counter" else ""))
        return names

    seen: set[str] = set()

    def all_exposed() -> bool:
        seen.update(exposed())
        return documented <= seen

    with contextlib.suppress(AssertionError):
        wait_for(all_exposed, 30, "every documented metric to be exposed", interval=0.5)
    assert documented - seen == set()
