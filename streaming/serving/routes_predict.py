"""Prediction routes: ``/predict``, ``/predict/batch`` and the Open Inference Protocol (KServe v2).

Each answer says the arm and the version that made it: the champion, or with a canary split the canary's arm for
the requests whose user key (``user_id``; KServe v2: ``parameters.user_id``, for every row) falls in its buckets
(:mod:`~streaming.serving.split`). A request that names a version gets that version's own model (no alias, no split).
KServe v2 answers carry the arm and the version in ``parameters`` (the version as ``model_version`` too).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from streaming.serving.context import ServingContext, responses
from streaming.serving.hardening import StrictJSONRoute
from streaming.serving.schemas import (
    BatchRequest,
    BatchResponse,
    InferRequest,
    Prediction,
    PredictRequest,
    VersionInPath,
    infer_user_key,
    to_rows,
)

__all__ = ["WORKER_HEADER", "prediction_routes"]

#: Response header of the health routes: the process id of the worker that answered.
WORKER_HEADER = "X-Livelearn-Worker"


def prediction_routes(ctx: ServingContext) -> APIRouter:
    """Every route that scores features, and the v2 health and metadata routes."""
    router = APIRouter(route_class=StrictJSONRoute)

    @router.post("/predict", response_model=Prediction, tags=["predict"], responses=responses(404, 409, 422, 503))
    async def predict(body: PredictRequest) -> Prediction:
        """Score one feature map with the serving version (or ``version``)."""
        # One row is a few tens of microseconds of CPU: scored on the event loop, no thread-pool hop. A version
        # that is not in memory must be read from Redis, which may hang: that load goes to a thread.
        route = ctx.models.in_memory(body.version)
        if route is None:
            route = await run_in_threadpool(ctx.route_for, body.version)
        return ctx.score(route.pick(body.user_id), body.features, body.event_id)

    @router.post(
        "/predict/batch", response_model=BatchResponse, tags=["predict"], responses=responses(404, 409, 422, 503)
    )
    def predict_batch(body: BatchRequest) -> BatchResponse:
        """Score each instance with the serving version (or ``version``), each on the arm of its ``user_id``."""
        route = ctx.route_for(body.version)  # one route for the batch: one version, whatever swaps meanwhile
        return BatchResponse(
            predictions=[ctx.score(route.pick(i.user_id), i.features, i.event_id) for i in body.instances],
            version=route.version,
        )

    worker = str(os.getpid())  # named on the health routes, so a client can tell the workers apart

    @router.get("/v2/health/live", tags=["v2"])
    async def live(response: Response) -> dict[str, bool]:  # async: answered even if every thread waits on Redis
        """Live while the process answers; header ``X-Livelearn-Worker`` names the worker process that did."""
        response.headers[WORKER_HEADER] = worker
        return {"live": True}

    @router.get("/v2/health/ready", tags=["v2"], responses=responses(503))
    async def ready(response: Response) -> dict[str, bool]:
        """Ready while a version is loaded and serving follows the serving pointer; 503 saying why otherwise."""
        reason = ctx.models.unready_reason(ctx.serving.stale_after_seconds)
        if reason is not None:
            raise HTTPException(503, reason, headers={WORKER_HEADER: worker})
        response.headers[WORKER_HEADER] = worker
        return {"ready": True}

    def metadata(version: int | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": ctx.name,
            "platform": "river",
            "versions": [str(n) for n in ctx.store.numbers()],
            "inputs": [{"name": "<feature>", "datatype": "FP64 | INT64 | BOOL | BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "probability", "datatype": "FP64", "shape": [-1]},
                {"name": "label", "datatype": "BOOL", "shape": [-1]},
            ],
        }
        if version is not None:
            ctx.route_for(version)
            doc["version"] = str(version)
        return doc

    @router.get("/v2/models/{model_name}", tags=["v2"], responses=responses(404, 422, 503))
    def model_metadata(model_name: str) -> dict[str, Any]:
        ctx.check_name(model_name)
        return metadata(None)

    @router.get("/v2/models/{model_name}/versions/{version}", tags=["v2"], responses=responses(404, 409, 422, 503))
    def version_metadata(model_name: str, version: VersionInPath) -> dict[str, Any]:
        ctx.check_name(model_name)
        return metadata(version)

    def infer(model_name: str, version: int | None, body: InferRequest) -> dict[str, Any]:
        ctx.check_name(model_name)
        rows = to_rows(body)
        served = ctx.route_for(version).pick(infer_user_key(body))
        predictions = [ctx.score(served, row) for row in rows]
        return {
            "model_name": ctx.name,
            "model_version": str(served.version),
            "id": body.id,
            "parameters": {"arm": served.arm, "version": served.version},
            "outputs": [
                {
                    "name": "probability",
                    "datatype": "FP64",
                    "shape": [len(rows)],
                    "data": [p.probability for p in predictions],
                },
                {"name": "label", "datatype": "BOOL", "shape": [len(rows)], "data": [p.label for p in predictions]},
            ],
        }

    @router.post("/v2/models/{model_name}/infer", tags=["v2"], responses=responses(404, 422, 503))
    def infer_serving(model_name: str, body: InferRequest) -> dict[str, Any]:
        return infer(model_name, None, body)

    @router.post(
        "/v2/models/{model_name}/versions/{version}/infer", tags=["v2"], responses=responses(404, 409, 422, 503)
    )
    def infer_version(model_name: str, version: VersionInPath, body: InferRequest) -> dict[str, Any]:
        return infer(model_name, version, body)

    return router
