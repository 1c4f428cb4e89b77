"""Prometheus metrics of a `livelearn serve` process, declared once per registry, and the request timer.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> metrics = ServingMetrics(registry, "shop")
>>> metrics.predictions.inc()
>>> registry.get_sample_value("livelearn_serving_predictions_total", {"model": "shop"})
1.0

Every answer is counted by route and status code in ``livelearn_serving_responses_total`` (what the alert on
serve's error ratio reads); :class:`RequestTiming` records it with the request's time. Each prediction is counted by
the arm that made it too (the champion, or the canary's arm: :mod:`~streaming.serving.split`), and the canary split
this process applies is a gauge per arm:

>>> metrics.by_arm("fast").inc()
>>> metrics.show_canary("fast", 25.0)
>>> registry.get_sample_value("livelearn_serving_predictions_by_arm_total", {"model": "shop", "arm": "fast"})
1.0
>>> metrics.show_canary(None, 0.0)  # aborted: the arm's share is 0 again
>>> registry.get_sample_value("livelearn_canary_percent", {"model": "shop", "arm": "fast"})
0.0

With several workers (``livelearn serve --workers N``) prometheus_client runs in its multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``): each worker writes its values to files there, and ``/metrics`` of any worker
shows them merged (:func:`exposition_registry`): counters and histograms summed (each worker counts the canary
aborts it applied), the loaded version once per live worker (a ``pid`` label), the canary's percent as the highest
of the live workers' (they follow the same split within a refresh).
"""

from __future__ import annotations

import os
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streaming.observability import counter, gauge

__all__ = [
    "MULTIPROC_DIR_ENV",
    "REQUEST_BUCKETS",
    "RequestTiming",
    "ServingMetrics",
    "exposition_registry",
    "forget_this_worker",
]

#: Buckets (seconds) for one HTTP prediction: 100 us .. 1 s.
REQUEST_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
#: Set (to a private directory) by `livelearn serve --workers N`; prometheus_client reads it at import.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ServingMetrics:
    """Metrics of a `livelearn serve` process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, model: str = "default") -> None:
        self.request_seconds = Histogram(
            "livelearn_serving_request_seconds",
            "Time to answer one request.",
            ["model", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.responses = Counter(
            "livelearn_serving_responses_total",
            "Answers to HTTP requests, by route template and status code.",
            ["model", "route", "code"],
            registry=registry,
        )
        self.predictions = counter("livelearn_serving_predictions_total", "Predictions returned.", registry, model)
        self.serving_version = gauge("livelearn_serving_loaded_version", "Version loaded for serving.", registry, model)
        self.swaps = counter("livelearn_serving_swaps_total", "Serving model swaps.", registry, model)
        self.predictions_by_arm = Counter(
            "livelearn_serving_predictions_by_arm_total",
            "Predictions returned, by the arm that made them (the champion, or the canary's arm).",
            ["model", "arm"],
            registry=registry,
        )
        self.canary_percent = Gauge(
            "livelearn_canary_percent",
            "Share of the requests with a user key that the canary's arm answers, in percent (0: no split).",
            ["model", "arm"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.canary_aborts = counter(
            "livelearn_canary_aborts_total",
            "Canary aborts this process applied (each worker counts each).",
            registry,
            model,
        )
        self._model = model
        self._arms: dict[str, Counter] = {}  # the labelled series of each arm, looked up once
        self._canary_arms: set[str] = set()

    def by_arm(self, arm: str) -> Counter:
        """``livelearn_serving_predictions_by_arm_total`` of ``arm`` (the series, bound once)."""
        series = self._arms.get(arm)
        if series is None:
            series = self._arms[arm] = self.predictions_by_arm.labels(self._model, arm)
        return series

    def show_canary(self, arm: str | None, percent: float) -> None:
        """The split applied now: ``percent`` to ``arm`` (``None``: no split); every arm shown before goes to 0."""
        for shown in self._canary_arms - {arm}:
            self.canary_percent.labels(self._model, shown).set(0)
        if arm is not None:
            self.canary_percent.labels(self._model, arm).set(percent)
            self._canary_arms.add(arm)


def exposition_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What ``/metrics`` shows: ``registry``, or in multiprocess mode the values of every worker merged.

    >>> registry = CollectorRegistry()
    >>> exposition_registry(registry) is registry  # PROMETHEUS_MULTIPROC_DIR unset: one process
    True
    """
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if not directory:
        return registry
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
    return merged


def forget_this_worker() -> None:
    """In multiprocess mode, drop this worker's live-only gauges (its loaded version) as it exits."""
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if directory:
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


class RequestTiming:
    """Pure ASGI middleware: the time to answer each HTTP request, labelled with its route template (``other``
    when no route matched), in ``livelearn_serving_request_seconds``, and with ``responses``
    (:attr:`ServingMetrics.responses`) the answer's status code in ``livelearn_serving_responses_total``.

    No ``BaseHTTPMiddleware``: no extra task, stream or request object per request, just two clock reads and
    one observation, and to count codes one wrapper of ``send`` (the labelled series are looked up once per
    route and code).

    Parameters
    ----------
    app
        The application it times.
    histogram
        ``livelearn_serving_request_seconds`` (labels ``model``, ``route``).
    model
        The model's name (the ``model`` label).
    responses
        ``livelearn_serving_responses_total`` (labels ``model``, ``route``, ``code``), or ``None``: codes not counted.

    Examples
    --------
    >>> import asyncio
    >>> registry = CollectorRegistry()
    >>> metrics = ServingMetrics(registry, "shop")
    >>> async def broken(scope, receive, send):
    ...     raise RuntimeError("a bug")
    >>> timing = RequestTiming(broken, metrics.request_seconds, "shop", responses=metrics.responses)
    >>> try:
    ...     asyncio.run(timing({"type": "http"}, None, None))
    ... except RuntimeError:
    ...     pass  # the server answers 500
    >>> labels = {"model": "shop", "route": "other", "code": "500"}
    >>> registry.get_sample_value("livelearn_serving_responses_total", labels)
    1.0
    """

    def __init__(self, app: ASGIApp, histogram: Histogram, model: str, responses: Counter | None = None) -> None:
        self.app = app
        self.histogram = histogram
        self.model = model
        self.responses = responses
        self._series: dict[str, Histogram] = {}
        self._answers: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, responses = time.perf_counter(), self.responses
        if responses is None:
            try:
                await self.app(scope, receive, send)
            finally:
                self._observe(scope, start)
            return
        status = 500  # the app raised before it answered: the server answers 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._count(responses, self._observe(scope, start), status)

    def _observe(self, scope: Scope, start: float) -> str:
        """Record the request's time; returns its route template."""
        path: str = getattr(scope.get("route"), "path", "other")  # the router records the matched route
        series = self._series.get(path)
        if series is None:
            series = self._series[path] = self.histogram.labels(self.model, path)
        series.observe(time.perf_counter() - start)
        return path

    def _count(self, responses: Counter, path: str, status: int) -> None:
        answers = self._answers.get((path, status))
        if answers is None:
            answers = self._answers[path, status] = responses.labels(self.model, path, str(status))
        answers.inc()
