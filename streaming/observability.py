"""The Prometheus endpoint of a learner or monitor process, and helpers to declare metrics once.

Each process declares its metrics once per registry (tests pass an isolated one), every series carrying
the ``model`` label; units are in the names (``_seconds``, ``_total``, ``_ratio``, ``_bytes``).

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> counter("livelearn_demo_total", "A demo.", registry, "shop").inc(2)
>>> registry.get_sample_value("livelearn_demo_total", {"model": "shop"})
2.0
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from socketserver import ThreadingMixIn
from typing import Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from streaming.errors import ConfigError
from streaming.health import Heartbeat, health_app

__all__ = ["GaugeMode", "counter", "gauge", "histogram", "serve_metrics"]

#: How prometheus_client's multiprocess mode merges a gauge of several processes (``live*``: live ones only).
GaugeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"
]


def counter(name: str, doc: str, registry: CollectorRegistry, model: str) -> Counter:
    """A counter of ``model`` (the series with its label already bound)."""
    return Counter(name, doc, ["model"], registry=registry).labels(model)


def gauge(
    name: str, doc: str, registry: CollectorRegistry, model: str, multiprocess_mode: GaugeMode = "liveall"
) -> Gauge:
    """A gauge of ``model`` (the series with its label already bound).

    ``multiprocess_mode`` only matters in prometheus_client's multiprocess mode (``livelearn serve --workers``):
    ``liveall``, the default, exposes one series per live worker with a ``pid`` label."""
    return Gauge(name, doc, ["model"], registry=registry, multiprocess_mode=multiprocess_mode).labels(model)


def histogram(name: str, doc: str, registry: CollectorRegistry, model: str, buckets: Sequence[float]) -> Histogram:
    """A histogram of ``model`` with explicit ``buckets`` (the series with its label already bound)."""
    return Histogram(name, doc, ["model"], registry=registry, buckets=buckets).labels(model)


def serve_metrics(
    port: int, registry: CollectorRegistry = REGISTRY, host: str = "127.0.0.1", heartbeat: Heartbeat | None = None
) -> WSGIServer:
    """Expose ``registry`` on ``http://host:port/metrics`` from a daemon thread; returns the server.

    With a ``heartbeat``, the same port also answers the probes ``/healthz`` and ``/readyz``
    (see :mod:`streaming.health`). Raises :class:`ConfigError` naming the settings when the address
    cannot be bound (port in use, unknown host), instead of an ``OSError`` traceback.
    """

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    try:
        family, *_, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        Server.address_family = family
        app = make_wsgi_app(registry)
        server = make_server(
            str(sockaddr[0]), port, app if heartbeat is None else health_app(heartbeat, app), Server, _QuietHandler
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); choose a free port with --metrics-port "
            "(LIVELEARN_METRICS_PORT) or another address with --metrics-host (LIVELEARN_METRICS_HOST)"
        ) from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape or probe."""

    def log_message(self, format: str, *args: object) -> None:
        pass
