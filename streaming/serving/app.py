"""``livelearn serve``: the prediction API (FastAPI), with KServe v2 routes, admin routes and /metrics.

Every prediction names the version that made it. Admin routes (pin, unpin, rollback, resume) need
``Authorization: Bearer <LIVELEARN_API_TOKEN>``: 401 without a token, 403 with a wrong one (or when no
token is configured, which turns the admin API off).

Request limits come from Settings (see :mod:`streaming.serving.schemas`); bodies are parsed as strict JSON and
validation errors never echo the input (see :mod:`streaming.serving.hardening`).
"""

# No `from __future__ import annotations`: the request models are built per app from its Settings, and
# FastAPI must see the classes themselves in the route signatures.

import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app

from monitor.telemetry import ServingMetrics
from snapshotter.connection import connect_redis
from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore
from streaming.serving.hardening import BodyLimit, StrictJSONRoute, install_error_handlers
from streaming.serving.schemas import (
    AdminRequest,
    ApiLimits,
    BatchResponse,
    ErrorBody,
    PinRequest,
    Prediction,
    RollbackRequest,
    ValidationErrorBody,
    request_models,
    to_rows,
)
from streaming.config import Settings
from streaming.errors import ControlError, SnapshotError, VersionNotFoundError
from streaming.serving.models import LoadedVersion, ServingModels

__all__ = ["create_app", "request_store"]

_bearer = HTTPBearer(auto_error=False)

_ERRORS: dict[int, str] = {
    401: "Missing bearer token.",
    403: "Wrong bearer token, or the admin API is off (LIVELEARN_API_TOKEN unset on the server).",
    404: "The version (or model name) does not exist.",
    409: "The action was refused (nothing pinned, not frozen, nothing to roll back to, corrupt version); no change.",
    413: "Request body over LIVELEARN_API_MAX_BODY_BYTES; refused before it was read.",
    422: "Invalid request: each problem's loc, msg and type (never the input).",
    503: "No serving version loaded yet, or the version store (Redis) is unavailable; retry later.",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can answer ``codes`` (besides 200 and the app-wide 413)."""
    return {code: {"model": ValidationErrorBody if code == 422 else ErrorBody, "description": _ERRORS[code]}
            for code in codes}


_ADMIN = (401, 403, 409, 422, 503)


def request_store(settings: Settings) -> VersionStore:
    """The store on a client for the request path: short timeouts and one retry, so a hung or lost
    Redis is a 503 within about twice ``LIVELEARN_API_REDIS_TIMEOUT_SECONDS``, not a hang."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    client = connect_redis(settings.redis_url, password, retries=1, timeout=settings.api_redis_timeout_seconds)
    return VersionStore.for_settings(client, settings)


def create_app(settings: Settings, *, store: VersionStore | None = None,
               registry: CollectorRegistry = REGISTRY) -> FastAPI:
    """The ASGI app for one model."""
    store = store or request_store(settings)
    metrics = ServingMetrics(registry, settings.model_name)
    models = ServingModels(store, refresh_seconds=settings.serving_refresh_seconds, metrics=metrics)
    control = ControlPlane(store)
    name = settings.model_name
    bodies = request_models(ApiLimits.from_settings(settings))
    PredictRequest, BatchRequest, InferRequest = bodies.predict, bodies.batch, bodies.infer

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        with contextlib.suppress(SnapshotError, redis.RedisError):  # the watcher retries; ready says why
            models.refresh()
        models.start()
        yield
        models.stop()

    app = FastAPI(title=f"livelearn · {name}", version="1", lifespan=lifespan, responses=responses(413),
                  description="Live predictions of an online-learning model; each tagged with its version.")
    app.router.route_class = StrictJSONRoute  # before the first route: every body is parsed strictly
    install_error_handlers(app)
    app.mount("/metrics", make_asgi_app(registry))
    app.state.models = models

    @app.middleware("http")
    async def timing(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.request_seconds.labels(name, getattr(route, "path", "other")).observe(time.perf_counter() - t0)
        return response

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)  # outermost: before any parsing

    def model_for(version: int | None) -> LoadedVersion:
        try:
            loaded = models.get(version)
        except VersionNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except SnapshotError as exc:
            raise HTTPException(500, str(exc)) from None
        if loaded is None:
            raise HTTPException(503, "no serving version yet: the learner has not written a stable version")
        return loaded

    def check_name(model_name: str) -> None:
        if model_name != name:
            raise HTTPException(404, f"unknown model {model_name[:100]!r}; this server serves {name!r}")

    def score(loaded: LoadedVersion, features: dict, event_id: str | None = None) -> Prediction:
        version, model = loaded
        p = model.predict_proba_one(features)
        metrics.predictions.inc()
        return Prediction(probability=p, label=p > 0.5, version=version, model=name, event_id=event_id)

    def admin(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        if creds is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        token = settings.api_token.get_secret_value() if settings.api_token else None
        if token is None:
            raise HTTPException(403, "the admin API is off: set LIVELEARN_API_TOKEN on the server")
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token")
        return f"api:{request.client.host if request.client else 'unknown'}"

    # -- predictions -----------------------------------------------------------------------------
    @app.post("/predict", response_model=Prediction, tags=["predict"], responses=responses(404, 422, 503))
    def predict(body: PredictRequest) -> Prediction:  # type: ignore[valid-type]
        """Score one feature map with the serving version (or ``version``)."""
        return score(model_for(body.version), body.features, body.event_id)

    @app.post("/predict/batch", response_model=BatchResponse, tags=["predict"], responses=responses(404, 422, 503))
    def predict_batch(body: BatchRequest) -> BatchResponse:  # type: ignore[valid-type]
        loaded = model_for(body.version)
        return BatchResponse(predictions=[score(loaded, i.features, i.event_id) for i in body.instances],
                             version=loaded[0])

    @app.get("/versions", tags=["versions"], responses=responses(503))
    def list_versions() -> dict:
        return {"model": name, "head": store.head(), "serving": store.serving(), "pinned": store.pinned(),
                "versions": [m.to_dict() for m in store.list()]}

    @app.get("/versions/{number}", tags=["versions"], responses=responses(404, 422, 503))
    def show_version(number: int) -> dict:
        try:
            return store.meta(number).to_dict()
        except VersionNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None

    # -- Open Inference Protocol (KServe v2) -----------------------------------------------------
    @app.get("/v2/health/live", tags=["v2"])
    async def live() -> dict:  # async: answered on the event loop even if every worker thread waits on Redis
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"], responses=responses(503))
    async def ready() -> dict:
        """Ready while a version is loaded and serving follows the serving pointer; 503 saying why otherwise."""
        reason = models.unready_reason(settings.serving_stale_after_seconds)
        if reason is not None:
            raise HTTPException(503, reason)
        return {"ready": True}

    def metadata(version: int | None) -> dict:
        doc = {"name": name, "platform": "river", "versions": [str(n) for n in store.numbers()],
               "inputs": [{"name": "<feature>", "datatype": "FP64 | INT64 | BOOL | BYTES", "shape": [-1]}],
               "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]},
                           {"name": "label", "datatype": "BOOL", "shape": [-1]}]}
        if version is not None:
            model_for(version)
            doc["version"] = str(version)
        return doc

    @app.get("/v2/models/{model_name}", tags=["v2"], responses=responses(404, 422, 503))
    def model_metadata(model_name: str) -> dict:
        check_name(model_name)
        return metadata(None)

    @app.get("/v2/models/{model_name}/versions/{version}", tags=["v2"], responses=responses(404, 422, 503))
    def version_metadata(model_name: str, version: int) -> dict:
        check_name(model_name)
        return metadata(version)

    def infer(model_name: str, version: int | None, body: Any) -> dict:
        check_name(model_name)
        rows = to_rows(body)
        loaded = model_for(version)
        predictions = [score(loaded, row) for row in rows]
        return {"model_name": name, "model_version": str(loaded[0]), "id": body.id,
                "outputs": [{"name": "probability", "datatype": "FP64", "shape": [len(rows)],
                             "data": [p.probability for p in predictions]},
                            {"name": "label", "datatype": "BOOL", "shape": [len(rows)],
                             "data": [p.label for p in predictions]}]}

    @app.post("/v2/models/{model_name}/infer", tags=["v2"], responses=responses(404, 422, 503))
    def infer_serving(model_name: str, body: InferRequest) -> dict:  # type: ignore[valid-type]
        return infer(model_name, None, body)

    @app.post("/v2/models/{model_name}/versions/{version}/infer", tags=["v2"],
               responses=responses(404, 422, 503))
    def infer_version(model_name: str, version: int, body: InferRequest) -> dict:  # type: ignore[valid-type]
        return infer(model_name, version, body)

    # -- admin -------------------------------------------------------------------------------------
    def on_behalf(body: AdminRequest, caller: str) -> str:
        """A declared actor is recorded with the caller, so nobody can write in another's name."""
        return f"{body.actor} via {caller}" if body.actor else caller

    def require(number: int) -> None:
        """404 when version ``number`` does not exist: naming a missing version is not a conflict."""
        try:
            store.meta(number)
        except VersionNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except SnapshotError:
            pass  # unreadable metadata: the control plane refuses it as a conflict (409)

    def act(fn: Callable[[], object], target: int | None = None) -> dict:
        """Run one control action: 404 for a missing target, 409 when refused (not pinned, not frozen...)."""
        if target is not None:
            require(target)
        try:
            fn()
        except ControlError as exc:
            if target is not None:
                require(target)  # removed by retention meanwhile: still a 404
            raise HTTPException(409, str(exc)) from None
        return {"head": store.head(), "serving": store.serving(), "pinned": store.pinned(),
                "frozen": control.frozen() is not None}

    @app.post("/admin/pin", tags=["admin"], responses=responses(404, *_ADMIN))
    def pin(body: PinRequest, actor: str = Depends(admin)) -> dict:
        return act(lambda: control.pin(body.version, actor=on_behalf(body, actor), reason=body.reason), body.version)

    @app.post("/admin/unpin", tags=["admin"], responses=responses(*_ADMIN))
    def unpin(body: AdminRequest, actor: str = Depends(admin)) -> dict:
        return act(lambda: control.unpin(actor=on_behalf(body, actor), reason=body.reason))

    @app.post("/admin/rollback", tags=["admin"], responses=responses(404, *_ADMIN))
    def rollback(body: RollbackRequest, actor: str = Depends(admin)) -> dict:
        return act(lambda: control.rollback(to=body.to, actor=on_behalf(body, actor), reason=body.reason), body.to)

    @app.post("/admin/learning/resume", tags=["admin"], responses=responses(*_ADMIN))
    def resume(body: AdminRequest, actor: str = Depends(admin)) -> dict:
        return act(lambda: control.resume(actor=on_behalf(body, actor), reason=body.reason))

    return app
