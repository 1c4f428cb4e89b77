"""Liveness and readiness of a learner or monitor process, for Kubernetes probes.

The process's loop calls :meth:`Heartbeat.beat` on every turn, saying which role it plays and whether
it is doing its job. The metrics port then answers, next to ``/metrics``:

* ``GET /healthz`` (liveness): 200 while the loop made progress within ``stale_after`` seconds, else 503.
  A wedged loop (a deadlock, a call that never returns) is restarted; an outage is not (the loop still
  turns while it waits for Kafka or Redis to come back, and a restart would not cure it).
* ``GET /readyz`` (readiness): 200 when alive and doing its job: the active learner learning, a hot
  standby waiting for the lease, a monitor guarding; 503 while starting, or waiting out an outage.

Both answer a small JSON document (role, ready, detail, seconds since the last beat).

>>> now = [0.0]
>>> beat = Heartbeat(stale_after=30, clock=lambda: now[0])
>>> beat.readiness()[0]  # starting: alive, not ready yet
False
>>> beat.beat("standby")
>>> beat.liveness()[0], beat.readiness()[0]
(True, True)
>>> now[0] = 100.0  # 100 s without a beat
>>> beat.liveness()[0]
False
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Heartbeat", "health_app"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Heartbeat:
    """The last sign of life of a process's loop (thread-safe: the probe server reads it from its own thread)."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()  # start-up counts as progress until ``stale_after`` has passed
        self._role = "starting"
        self._ready = False
        self._detail = "starting"

    def beat(self, role: str, *, ready: bool = True, detail: str = "") -> None:
        """The loop turned: it plays ``role`` and is (or is not) ``ready`` to do its job."""
        now = self._clock()
        with self._lock:
            self._last, self._role, self._ready, self._detail = now, role, ready, detail

    def _document(self) -> tuple[float, dict[str, Any]]:
        now = self._clock()
        with self._lock:
            age = now - self._last
            doc = {"role": self._role, "ready": self._ready, "detail": self._detail, "since_beat_seconds": age}
        return age, doc

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """``(alive, document)``: alive while the last beat is at most ``stale_after`` seconds old."""
        age, doc = self._document()
        alive = age <= self.stale_after
        if not alive:
            doc["detail"] = f"no progress for {age:.0f} s (limit {self.stale_after:.0f} s)"
        return alive, doc

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, document)``: alive, and the last beat said it was doing its job."""
        alive, doc = self.liveness()
        return alive and bool(doc["ready"]), doc


def health_app(heartbeat: Heartbeat, fallback: WSGIApp) -> WSGIApp:
    """A WSGI app answering ``/healthz`` and ``/readyz`` from ``heartbeat``, and anything else with ``fallback``
    (the Prometheus exposition)."""
    checks = {"/healthz": heartbeat.liveness, "/readyz": heartbeat.readiness}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return fallback(environ, start_response)
        ok, doc = check()
        body = json.dumps(doc).encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app
