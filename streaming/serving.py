"""Serving models: the version serving follows, loaded in the background and swapped atomically.

A watcher thread listens on the model's control channel (and polls the serving pointer every
``serving_refresh_seconds`` as a fallback). When the pointer moves it loads and verifies the new version
*off the request path*, then replaces one reference: a request sees the old model or the new one,
never a half-loaded one. Requests for a specific version use a small LRU cache of loaded versions.
Each version is served with the spec it was written with, so its predictions are the ones its learner
would have made.
"""

from __future__ import annotations

import collections
import logging
import threading

from monitor.telemetry import ServingMetrics
from snapshotter.restore import restore_state
from snapshotter.store import VersionStore
from streaming.model import ModelSpec, OnlineModel

__all__ = ["ServingModels", "LoadedVersion"]

log = logging.getLogger(__name__)
LoadedVersion = tuple[int, OnlineModel]


class ServingModels:
    """The current serving model plus an LRU cache of other versions."""

    def __init__(self, store: VersionStore, *, refresh_seconds: float = 0.25, cache_size: int = 8,
                 metrics: ServingMetrics | None = None) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self.current: LoadedVersion | None = None
        self._cache: collections.OrderedDict[int, OnlineModel] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, number: int) -> OnlineModel:
        """The model of version ``number`` (verified checksum), from the cache when possible."""
        with self._lock:
            if number in self._cache:
                self._cache.move_to_end(number)
                return self._cache[number]
        meta, state = self.store.load(number)
        model, _metrics = restore_state(state, ModelSpec.from_dict(state.spec), window=10)
        with self._lock:
            self._cache[number] = model
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return model

    def refresh(self) -> bool:
        """Load the version the serving pointer names, if it changed; ``True`` when swapped."""
        number = self.store.serving()
        if number is None or (self.current is not None and self.current[0] == number):
            return False
        model = self.load(number)
        self.current = (number, model)  # one reference assignment: atomic for readers
        if self.metrics:
            self.metrics.serving_version.set(number)
            self.metrics.swaps.inc()
        log.info("serving version %d", number)
        return True

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
        pubsub.subscribe(self.store.keys.channel)
        try:
            while not self._stop.is_set():
                try:
                    self.refresh()
                    pubsub.get_message(timeout=self.refresh_seconds)  # wakes early on an announcement
                    while pubsub.get_message(timeout=0) is not None:
                        pass
                except Exception as exc:  # keep serving the loaded model through Redis trouble
                    log.error("serving refresh failed: %s", exc)
                    self._stop.wait(self.refresh_seconds)
        finally:
            pubsub.close()
