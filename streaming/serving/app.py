"""``livelearn serve``: the prediction API (FastAPI), with KServe v2 routes, admin routes and /metrics.

Every prediction names the arm and the version that made it: the champion, or a canary's arm for the requests its
split takes (see :mod:`~streaming.serving.routes_predict` and :mod:`~streaming.serving.split`); operators read
versions and act (pins, rollbacks, the canary) through :mod:`~streaming.serving.routes_admin`. Request limits come
from Settings (see :mod:`~streaming.serving.schemas`); bodies are parsed as strict JSON, oversized ones refused before
they are read, and validation errors never echo the input (see :mod:`~streaming.serving.hardening`). The common
``POST /predict`` is answered by a pure-ASGI hot path in front of FastAPI (:mod:`~streaming.serving.fastpath`).

``/metrics`` is on the API port unless ``LIVELEARN_API_METRICS_PORT`` names a port of its own
(:func:`serve_api_metrics`): then a firewall (a Kubernetes NetworkPolicy) can admit the scraper to the metrics and
only the clients to the predictions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from wsgiref.simple_server import WSGIServer

import redis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app

from snapshotter.connection import (
    check_reachable,
    connect_redis,
    describe_failure,
    redis_failure,
    worst_call_seconds,
)
from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore
from streaming.config import RedisSettings, ServingSettings, Settings, StoreSettings
from streaming.engines import configure
from streaming.errors import SnapshotError
from streaming.model import spec_from_settings
from streaming.observability import serve_metrics
from streaming.runtime import freeze_after_startup
from streaming.serving.context import ServingContext, responses
from streaming.serving.fastpath import PredictFastPath
from streaming.serving.hardening import BodyLimit, StrictJSONRoute, install_error_handlers
from streaming.serving.models import ServingModels
from streaming.serving.routes_admin import admin_routes
from streaming.serving.routes_predict import prediction_routes
from streaming.serving.schemas import ApiLimits, RequestModels, UseLimits, using_limits
from streaming.serving.telemetry import RequestTiming, ServingMetrics, exposition_registry, forget_this_worker

__all__ = ["REQUEST_RETRIES", "create_app", "request_bound", "request_store", "serve_api_metrics"]

log = logging.getLogger(__name__)

#: retries of one Redis call on the request path (after the first attempt)
REQUEST_RETRIES = 1


def request_bound(settings: ServingSettings | Settings) -> float:
    """The longest a request waits on one Redis call while Redis hangs (then it is a 503): two attempts of
    ``LIVELEARN_API_REDIS_TIMEOUT_SECONDS`` and the backoff between them, about 2 s at the defaults
    (:func:`~snapshotter.connection.worst_call_seconds`)."""
    return worst_call_seconds(ServingSettings.of(settings).redis_timeout_seconds, REQUEST_RETRIES)


def request_store(redis_settings: RedisSettings, store: StoreSettings, serving: ServingSettings) -> VersionStore:
    """The store on a client for the request path: ``serving``'s short timeout and one retry, so a hung or lost
    Redis is a 503 within :func:`request_bound`, not a hang.

    A Redis that is down or hung at start does not stop ``serve``: it starts unready and loads the serving
    version once Redis answers. Credentials Redis rejects (or a missing permission) fail at once."""
    url = redis_settings.url
    password = redis_settings.password.get_secret_value() if redis_settings.password else None
    client = connect_redis(url, password, check=False, retries=REQUEST_RETRIES, timeout=serving.redis_timeout_seconds)
    failure = check_reachable(client, url)
    if failure is not None:
        log.warning(
            "%s; serving starts unready and loads the serving version once Redis answers",
            describe_failure(redis_failure(failure) or "unreachable", url, failure),
        )
    return VersionStore.for_settings(client, store)


class _LimitedApp(FastAPI):
    """An app whose OpenAPI document states its request limits, however it is asked for (made once, then kept)."""

    limits = ApiLimits()

    def openapi(self) -> dict[str, Any]:
        with using_limits(self.limits):
            return super().openapi()


def create_app(
    settings: Settings, *, store: VersionStore | None = None, registry: CollectorRegistry = REGISTRY
) -> FastAPI:
    """The ASGI app for one model (of ``settings`` it uses the groups serving, model, limits, and for its own
    store redis and store). It answers ``/metrics`` itself only while ``serving.metrics_port`` is unset."""
    serving, name = settings.serving, settings.model_name
    store = store or request_store(settings.redis, settings.store, serving)
    configure(settings.model.engine, settings.model.cache_dir)  # the engine models are restored on, before ready
    metrics = ServingMetrics(registry, name)
    models = ServingModels(store, refresh_seconds=serving.refresh_seconds, metrics=metrics)
    ctx = ServingContext(
        model_name=name,
        serving=serving,
        store=store,
        models=models,
        control=ControlPlane(store),
        metrics=metrics,
        bodies=RequestModels(ApiLimits.from_settings(serving, settings.limits)),
        spec=spec_from_settings(settings.model),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(SnapshotError, redis.RedisError):  # the watcher retries; ready says why
            models.refresh()
        models.start()
        freeze_after_startup()  # imports, routes and the loaded model: out of the collector's reach
        yield
        models.stop()
        forget_this_worker()

    app = _LimitedApp(
        title=f"livelearn · {name}",
        version="1",
        lifespan=lifespan,
        responses=responses(413),
        description="Live predictions of an online-learning model; each tagged with its arm and version.",
    )
    app.limits = ctx.bodies.limits
    app.router.route_class = StrictJSONRoute  # every body is parsed strictly
    install_error_handlers(app)
    if serving.metrics_port is None:  # else serve_api_metrics answers on that port, and this one has no /metrics
        app.mount("/metrics", make_asgi_app(exposition_registry(registry)))  # every worker's values, merged
    app.state.models = models
    predictions = prediction_routes(ctx)
    app.include_router(predictions)
    app.include_router(admin_routes(ctx))

    predict_route = next(r for r in predictions.routes if isinstance(r, APIRoute) and r.path == "/predict")
    app.add_middleware(PredictFastPath, ctx=ctx, route=predict_route)  # innermost: after the limit and the timing
    app.add_middleware(UseLimits, limits=ctx.bodies.limits)  # the request models validate with these, on both paths
    # the time and the status code of every answer (the status: what the alert on serve's errors reads)
    app.add_middleware(RequestTiming, histogram=metrics.request_seconds, model=name, responses=metrics.responses)
    app.add_middleware(BodyLimit, max_bytes=serving.max_body_bytes)  # outermost: before any parsing
    return app


def serve_api_metrics(serving: ServingSettings, registry: CollectorRegistry = REGISTRY) -> WSGIServer | None:
    """Answer ``/metrics`` on ``serving.metrics_port`` (bound on ``serving.host``) from a daemon thread; returns
    the server (``shutdown()`` stops it), or ``None`` when no metrics port is set.

    Called by ``livelearn serve`` in its first process: with several workers, inside
    :func:`~streaming.serving.workers.worker_environment`, so that it shows every worker's values merged
    (:func:`~streaming.serving.telemetry.exposition_registry`), as ``/metrics`` of the API port would.

    Parameters
    ----------
    serving
        The serving settings; nothing is started while their ``metrics_port`` is unset.
    registry
        The registry shown in a single process (``REGISTRY``, where :func:`create_app` declares its metrics).

    Examples
    --------
    >>> import socket, urllib.request
    >>> from streaming.config import Settings
    >>> from streaming.serving.telemetry import ServingMetrics
    >>> serve_api_metrics(Settings().serving) is None  # unset: /metrics stays on the API port
    True
    >>> with socket.socket() as probe:
    ...     probe.bind(("127.0.0.1", 0))
    ...     port = probe.getsockname()[1]
    >>> registry = CollectorRegistry()
    >>> ServingMetrics(registry, "shop").predictions.inc()
    >>> server = serve_api_metrics(Settings(api_metrics_port=port).serving, registry)
    >>> page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    >>> 'livelearn_serving_predictions_total{model="shop"} 1.0' in page
    True
    >>> server.shutdown()
    """
    if serving.metrics_port is None:
        return None
    return serve_metrics(serving.metrics_port, exposition_registry(registry), host=serving.host)
