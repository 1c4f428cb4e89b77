"""Serving models: the version serving follows, loaded in the background and swapped atomically.

A watcher thread listens on the model's control channel (and polls the serving pointer every
``serving_refresh_seconds`` as a fallback). When the pointer moves it loads and verifies the new version
*off the request path*, then replaces one reference: a request sees the old model or the new one,
never a half-loaded one. Requests for a specific version use a small LRU cache of loaded versions.
Each version is served with the spec it was written with, on the process's learning engine (the compiled one
where numba imports: the same probabilities as river's, bit for bit), so its predictions are the ones its
learner would have made.

The loaded model keeps serving through a Redis outage; :meth:`ServingModels.unready_reason` says when
serving has not been able to follow the pointer for too long (what ``/v2/health/ready`` reports).

>>> import fakeredis
>>> models = ServingModels(VersionStore(fakeredis.FakeRedis(), "shop"))
>>> models.refresh(), models.unready_reason(stale_after=30)
(False, 'no serving version loaded yet: the learner has not written a stable version')
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from snapshotter.store import VersionStore
from streaming.engines import LearningModel, restore_model
from streaming.model import ModelSpec
from streaming.serving.telemetry import ServingMetrics

__all__ = ["LoadedVersion", "ServingModels"]

log = logging.getLogger(__name__)
LoadedVersion = tuple[int, LearningModel]


class ServingModels:
    """The current serving model plus an LRU cache of other versions."""

    def __init__(
        self,
        store: VersionStore,
        *,
        refresh_seconds: float = 0.25,
        cache_size: int = 8,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self.current: LoadedVersion | None = None
        self.synced_at: float | None = None  # monotonic time of the last refresh that read the pointer
        self.last_error: str | None = None  # why the last refresh failed, until one succeeds
        self._cache: collections.OrderedDict[int, LearningModel] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, number: int) -> LearningModel:
        """The model of version ``number`` (verified checksum), from the cache when possible."""
        with self._lock:
            if number in self._cache:
                self._cache.move_to_end(number)
                return self._cache[number]
        _meta, state = self.store.load(number, packed_weights=True)  # either engine reads the doubles as stored
        model = restore_model(ModelSpec.from_dict(state.spec), state.model)  # the process's engine: bit for bit river
        with self._lock:
            self._cache[number] = model
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return model

    def refresh(self) -> bool:
        """Load the version the serving pointer names, if it changed; ``True`` when swapped."""
        number = self.store.serving()
        if number is None or (self.current is not None and self.current[0] == number):
            self.synced_at = time.monotonic()
            return False
        model = self.load(number)
        self.current = (number, model)  # one reference assignment: atomic for readers
        self.synced_at = time.monotonic()
        if self.metrics:
            self.metrics.serving_version.set(number)
            self.metrics.swaps.inc()
        log.info("serving version %d", number)
        return True

    def unready_reason(self, stale_after: float, now: float | None = None) -> str | None:
        """Why serving is not ready — nothing loaded, or the pointer not followed for ``stale_after``
        seconds (e.g. Redis down) — or ``None`` when it is."""
        if self.current is None:
            if self.last_error is not None:
                return f"no serving version loaded yet: cannot read the serving pointer ({self.last_error})"
            return "no serving version loaded yet: the learner has not written a stable version"
        age = (time.monotonic() if now is None else now) - (self.synced_at or 0.0)
        if age <= stale_after:
            return None
        return (
            f"cannot follow the serving pointer for {age:.0f} s ({self.last_error or 'no answer'}); still "
            f"serving version {self.current[0]} from memory. Check Redis (LIVELEARN_REDIS_URL)"
        )

    def in_memory(self, version: int | None = None) -> LoadedVersion | None:
        """``(version, model)`` when it can be had without Redis — the serving one, or a cached version — else
        ``None``. Never blocks on I/O, so the event loop may call it (``None`` then means: ask :meth:`get` from
        a thread)."""
        if version is None:
            return self.current
        with self._lock:  # held for dictionary operations only, never across I/O
            model = self._cache.get(version)
            if model is None:
                return None
            self._cache.move_to_end(version)
        return version, model

    def get(self, version: int | None = None) -> LoadedVersion | None:
        """``(version, model)``: the serving one, or the requested version."""
        if version is None:
            return self.current
        return version, self.load(version)

    # -- background watcher -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="serving-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
        try:
            while not self._stop.is_set():
                try:
                    if not pubsub.subscribed:
                        pubsub.subscribe(self.store.keys.channel)
                    self.refresh()
                    self._recovered()
                    pubsub.get_message(timeout=self.refresh_seconds)  # wakes early on an announcement
                    while pubsub.get_message(timeout=0) is not None:
                        pass
                except Exception as exc:  # noqa: BLE001 - keep serving the loaded model through any Redis trouble
                    self._failed(exc)
                    self._stop.wait(self.refresh_seconds)
        finally:
            pubsub.close()

    def _failed(self, exc: Exception) -> None:
        """Log the first failure of an outage (not every retry) and keep its reason for readiness."""
        if self.last_error is None:
            log.error(
                "serving cannot follow the serving pointer: %s: %s; still serving the loaded version",
                type(exc).__name__,
                exc,
            )
        self.last_error = type(exc).__name__  # the readiness body names the kind, the log has the details

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.info("serving follows the serving pointer again (after: %s)", self.last_error)
            self.last_error = None
