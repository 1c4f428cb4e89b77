"""Serving models: the version serving follows, loaded in the background and swapped atomically.

A watcher thread listens on the model's control channel (and polls every ``serving_refresh_seconds`` as a
fallback): the serving pointer, the ``champion`` alias and the canary split, read together. When the pointer moves
it loads and verifies the new version — its own model and every arm it holds (the challengers that learned in shadow
beside it) — *off the request path*; whatever moved, it then replaces one reference, the version's
:class:`~streaming.serving.split.Route`: a request sees the old route or the new one, never a half-loaded one, and
picks its arm without touching Redis. Requests for a specific version use a small LRU cache of loaded versions (and
get that version's own model). Each arm is served with the spec it was written with, on the process's learning
engine (the compiled one where numba imports: the same probabilities as river's, bit for bit), so its predictions
are the ones its learner would have made.

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
from typing import Any

from redis.client import PubSub

from snapshotter.codec import SnapshotState, unpack
from snapshotter.connection import as_bytes, as_text
from snapshotter.control import Canary, main_arm
from snapshotter.store import VersionStore
from streaming.engines import LearningModel, restore_model
from streaming.errors import LivelearnError
from streaming.model import ModelSpec
from streaming.serving.split import LoadedVersion, Route, resolve
from streaming.serving.telemetry import ServingMetrics

__all__ = ["ServingModels", "restore_arms"]

log = logging.getLogger(__name__)
#: Notes logged once each (an alias or canary arm a version lacks) before the set of them starts over.
_NOTES_KEPT = 64
#: The longest the watcher waits on the control channel before it looks whether it is stopped.
_STOP_CHECK_SECONDS = 0.25


def restore_arms(number: int, arm: str, state: SnapshotState) -> dict[str, LearningModel]:
    """Every arm of version ``number`` restored: its own model (as ``arm``) and each challenger in its blob. An arm
    that cannot be restored is left out, logged: the version's own model still serves."""
    models = {arm: restore_model(ModelSpec.from_dict(state.spec), state.model)}  # the process's engine: bit for bit
    for name, doc in state.arms.items():
        if name == arm:
            log.warning("version %d: a challenger is named %s like its own model: not served", number, name)
            continue
        try:
            models[name] = restore_model(ModelSpec.from_dict(doc["spec"]), doc["model"])
        except (LivelearnError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "version %d: arm %s cannot be restored (%s: %s): not served", number, name, type(exc).__name__, exc
            )
    return models


class ServingModels:
    """The serving version's route (its champion and canary arms) plus an LRU cache of loaded versions."""

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
        self.current: Route | None = None  # what requests without a version read: replaced, never changed
        self.synced_at: float | None = None  # monotonic time of the last refresh that read the pointer
        self.last_error: str | None = None  # why the last refresh failed, until one succeeds
        self._serving: LoadedVersion | None = None  # the serving version, routed again when the alias or canary move
        self._canary_at: str | None = None  # the canary as last read (its `at`), once read: aborts are counted
        self._canary_read = False
        self._noted: set[str] = set()
        self._cache: collections.OrderedDict[int, LoadedVersion] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, number: int) -> LoadedVersion:
        """Version ``number`` (verified checksum) with every arm, from the cache when possible."""
        with self._lock:
            if number in self._cache:
                self._cache.move_to_end(number)
                return self._cache[number]
        meta, state = self.store.load(number, packed_weights=True)  # either engine reads the doubles as stored
        arm = main_arm(meta.extra)
        loaded = LoadedVersion(number, arm, restore_arms(number, arm, state), meta.sha256)
        with self._lock:
            self._cache[number] = loaded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return loaded

    def refresh(self) -> bool:
        """Follow the serving pointer, the champion alias and the canary (loading a new serving version); ``True``
        when what a request gets changed (version, champion or split)."""
        number, alias, canary, held = self._pointers()
        self._count_abort(canary)
        self._forget_gone(held)
        if number is None:  # (the store lost its data: the model in memory answers, as during an outage, until a
            # version serves again; a number written anew is loaded then, whatever was loaded under it)
            self.synced_at = time.monotonic()
            return False
        serving = self._serving
        loaded = serving if serving is not None and serving.number == number else self.load(number)
        route, notes = resolve(loaded, alias, canary, self.store.keys.model_name)
        self._note(notes)
        current = self.current
        changed = current is None or route.key != current.key or loaded is not serving  # (a number loaded anew)
        if changed:
            self._serving = loaded
            self.current = route  # one reference assignment: atomic for readers
            self._report(route, swapped=current is None or current.version != number)
        self.synced_at = time.monotonic()
        return changed

    def _pointers(self) -> tuple[int | None, str | None, Canary | None, dict[int, bytes | None]]:
        """The serving pointer, the champion alias, the canary and the metadata of the versions loaded here, in one
        round trip (one consistent view)."""
        keys = self.store.keys
        with self._lock:
            loaded = sorted({*self._cache, *([self._serving.number] if self._serving is not None else [])})
        pipe = self.store.client.pipeline(transaction=True)
        pipe.get(keys.serving)
        pipe.get(keys.champion)
        pipe.hgetall(keys.canary)
        if loaded:
            pipe.mget([keys.meta(n) for n in loaded])
        raw: list[Any] = pipe.execute()
        number, alias, canary = raw[:3]
        metas = raw[3] if loaded else []
        return (
            None if number is None else int(number),
            as_text(alias) if alias else None,
            Canary.from_hash(canary or {}),
            dict(zip(loaded, metas, strict=True)),
        )

    def _forget_gone(self, held: dict[int, bytes | None]) -> None:
        """Forget the loaded versions the store no longer holds as they were loaded: retention dropped them, or the
        store lost its data and learned a version under the number anew (its other bytes are loaded when asked)."""
        gone = set()
        for number, raw in held.items():
            try:
                sha = None if raw is None else unpack(as_bytes(raw)).get("sha256")
            except (ValueError, TypeError, AttributeError):
                sha = None
            for version in (self._cache.get(number), self._serving):
                if version is not None and version.number == number and version.sha256 != sha:
                    gone.add(number)
        if not gone:
            return
        with self._lock:
            for number in gone:
                self._cache.pop(number, None)
        if self._serving is not None and self._serving.number in gone:
            self._serving = None
        log.info("versions %s are no longer stored as loaded: forgotten", ", ".join(map(str, sorted(gone))))

    def _report(self, route: Route, *, swapped: bool) -> None:
        if swapped:
            log.info("serving version %d", route.version)
        if route.threshold:
            log.info(
                "version %d: champion %s, canary %s for %g %% of the requests with a user key",
                route.version,
                route.champion.arm,
                route.canary.arm,
                route.percent,
            )
        else:
            log.info("version %d: champion %s answers every request", route.version, route.champion.arm)
        if self.metrics:
            if swapped:
                self.metrics.serving_version.set(route.version)
                self.metrics.swaps.inc()
            self.metrics.show_canary(route.canary.arm if route.threshold else None, route.percent)

    def _count_abort(self, canary: Canary | None) -> None:
        """Count an abort read since the last refresh (the first read of a process is where it starts from)."""
        at = canary.at if canary is not None else None
        if self._canary_read and canary is not None and canary.aborted and at != self._canary_at:
            log.warning("canary of arm %s aborted by %s: %s", canary.arm, canary.actor, canary.reason)
            if self.metrics:
                self.metrics.canary_aborts.inc()
        self._canary_at, self._canary_read = at, True

    def _note(self, notes: list[str]) -> None:
        """Log each note once (a version lacking the alias's arm is noted at every refresh otherwise)."""
        for note in notes:
            if note not in self._noted:
                if len(self._noted) >= _NOTES_KEPT:
                    self._noted.clear()
                self._noted.add(note)
                log.warning("%s", note)

    def unready_reason(self, stale_after: float, now: float | None = None) -> str | None:
        """Why serving is not ready — nothing loaded, or the pointer not followed for ``stale_after``
        seconds (e.g. Redis down) — or ``None`` when it is."""
        current = self.current
        if current is None:
            if self.last_error is not None:
                return f"no serving version loaded yet: cannot read the serving pointer ({self.last_error})"
            return "no serving version loaded yet: the learner has not written a stable version"
        age = (time.monotonic() if now is None else now) - (self.synced_at or 0.0)
        if age <= stale_after:
            return None
        return (
            f"cannot follow the serving pointer for {age:.0f} s ({self.last_error or 'no answer'}); still "
            f"serving version {current.version} from memory. Check Redis (LIVELEARN_REDIS_URL)"
        )

    def in_memory(self, version: int | None = None) -> Route | None:
        """The route of the serving version, or of ``version`` (its own model only), when it can be had without
        Redis — the serving one, or a cached version — else ``None``. Never blocks on I/O, so the event loop may call
        it (``None`` then means: ask :meth:`get` from a thread)."""
        if version is None:
            return self.current
        with self._lock:  # held for dictionary operations only, never across I/O
            loaded = self._cache.get(version)
            if loaded is None:
                return None
            self._cache.move_to_end(version)
        return loaded.route

    def get(self, version: int | None = None) -> Route | None:
        """The route of the serving version (``None`` before one is loaded), or of ``version`` (its own model)."""
        if version is None:
            return self.current
        return self.load(version).route

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
                    self._await_announcement(pubsub)
                    while pubsub.get_message(timeout=0) is not None:
                        pass
                except Exception as exc:  # noqa: BLE001 - keep serving the loaded model through any Redis trouble
                    self._failed(exc)
                    self._stop.wait(self.refresh_seconds)
        finally:
            pubsub.close()

    def _await_announcement(self, pubsub: PubSub) -> None:
        """Until an announcement on the control channel, the next poll (``refresh_seconds``) or :meth:`stop`, which
        so waits at most :data:`_STOP_CHECK_SECONDS` for the watcher whatever the poll interval."""
        deadline = time.monotonic() + self.refresh_seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or pubsub.get_message(timeout=min(left, _STOP_CHECK_SECONDS)) is not None:
                return

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
