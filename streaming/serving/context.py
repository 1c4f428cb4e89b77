"""What the routes of one app share: its model's name and serving settings, the version store, the loaded models
(each request's arm: :mod:`~streaming.serving.split`), control actions."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from fastapi import HTTPException

from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore
from streaming.config import ServingSettings
from streaming.errors import SnapshotError, VersionNotFoundError
from streaming.model import ModelSpec
from streaming.serving.models import ServingModels
from streaming.serving.schemas import ErrorBody, Prediction, RequestModels, ValidationErrorBody
from streaming.serving.split import Route, ServedArm
from streaming.serving.telemetry import ServingMetrics

__all__ = ["ServingContext", "responses"]

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
    return {
        code: {"model": ValidationErrorBody if code == 422 else ErrorBody, "description": _ERRORS[code]}
        for code in codes
    }


@dataclasses.dataclass(frozen=True)
class ServingContext:
    """One model's serving state, handed to the route factories."""

    model_name: str
    serving: ServingSettings
    store: VersionStore
    models: ServingModels
    control: ControlPlane
    metrics: ServingMetrics
    bodies: RequestModels
    spec: ModelSpec  #: the model the settings describe: a challenger's ``start=version:N`` is checked against it
    #: one prediction at a time: the event loop's hot path and the routes run in threads share the loaded models,
    #: and scoring keeps per-call scratch state in the model (both engines): uncontended it costs ~0.1 µs
    scoring: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.model_name

    def route_for(self, version: int | None) -> Route:
        """The serving version's route (or ``version``'s, its own model): 404 when it does not exist, 503 before any
        is loaded. May read Redis: from a thread (:meth:`ServingModels.in_memory` first on the event loop)."""
        try:
            loaded = self.models.get(version)
        except VersionNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except SnapshotError as exc:  # a version that cannot be read (corrupt): refused as a pin of it is
            raise HTTPException(409, f"{exc}; name another version") from None
        if loaded is None:
            raise HTTPException(503, "no serving version yet: the learner has not written a stable version")
        return loaded

    def check_name(self, model_name: str) -> None:
        if model_name != self.name:
            raise HTTPException(404, f"unknown model {model_name[:100]!r}; this server serves {self.name!r}")

    def score(self, served: ServedArm, features: dict[str, Any], event_id: str | None = None) -> Prediction:
        """``features`` scored by ``served`` (a route's pick), counted by arm, answered with its arm and version."""
        version, arm, model = served
        with self.scoring:
            p = model.predict_proba_one(features)
        self.metrics.predictions.inc()
        self.metrics.by_arm(arm).inc()
        return Prediction(probability=p, label=p > 0.5, version=version, arm=arm, model=self.name, event_id=event_id)
