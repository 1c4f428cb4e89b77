"""An in-process Kubernetes API for tests: PyPI ``kmock``'s emulator (objects kept in memory: create, read,
patch; 409 on a second create of one name) served on a free port from its own thread, so the real
``kubernetes`` client talks HTTP to it; and a kubeconfig pointing at it.

kmock's own pytest fixture needs pytest-asyncio (its plugin is disabled in pyproject.toml); this runs its
server in a private event loop instead.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import kmock
from kubernetes import client

NAMESPACE = "shop"


class KubeEmulator:
    """kmock's Kubernetes emulator on 127.0.0.1:<free port>, running until :meth:`close`."""

    def __init__(self) -> None:
        self._ready: Future[None] = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self._thread.start()
        self._ready.result(timeout=30)
        configuration = client.Configuration()
        configuration.host = self.url
        api = client.ApiClient(configuration)
        self.core, self.apps, self.events = client.CoreV1Api(api), client.AppsV1Api(api), client.EventsV1Api(api)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
                self.handler, self.url = handler, str(server.url).rstrip("/")
                for resource in ("events.k8s.io/v1/events", "v1/pods", "v1/configmaps", "apps/v1/deployments"):
                    handler.resources[resource] = {}  # listed (empty) before any object exists
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def call(self, fn: Callable[[Any], object]) -> None:
        """Run ``fn(handler)`` in the emulator's loop (kmock's reactions are not thread-safe)."""

        async def run() -> None:
            fn(self.handler)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def kubeconfig(self, directory: Path) -> str:
        """A kubeconfig file for this API (namespace ``shop``); its path."""
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "t0ken"}}],
                    "contexts": [
                        {"name": "kmock", "context": {"cluster": "kmock", "user": "test", "namespace": NAMESPACE}}
                    ],
                    "current-context": "kmock",
                }
            )
        )
        return str(path)

    # -- objects, as the real client reads them (plain JSON) ---------------------------------------
    def events_list(self) -> list[dict[str, Any]]:
        response = self.events.list_namespaced_event(NAMESPACE, _preload_content=False)
        return list(json.loads(response.data)["items"])

    def pod_labels(self, name: str) -> dict[str, str]:
        response = self.core.read_namespaced_pod(name, NAMESPACE, _preload_content=False)
        return dict(json.loads(response.data)["metadata"].get("labels") or {})

    def create_pod(self, name: str, uid: str) -> None:
        self.core.create_namespaced_pod(
            NAMESPACE,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid, "labels": {"app": "livelearn"}},
                "spec": {"containers": [{"name": "learner", "image": "livelearn"}]},
            },
        )

    def create_deployment(self, name: str, uid: str) -> None:
        self.apps.create_namespaced_deployment(
            NAMESPACE,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid},
                "spec": {
                    "selector": {"matchLabels": {"app": "livelearn"}},
                    "template": {
                        "metadata": {"labels": {"app": "livelearn"}},
                        "spec": {"containers": [{"name": "c", "image": "livelearn"}]},
                    },
                },
            },
        )

    def set_pin(self, name: str, value: str, *, create: bool = False) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"pinned": value},
        }
        if create:
            self.core.create_namespaced_config_map(NAMESPACE, body)
        else:
            self.core.patch_namespaced_config_map(name, NAMESPACE, {"data": {"pinned": value}})

    def requests_to(self, method: str, path_part: str) -> int:
        """How many requests of ``method`` whose URL contains ``path_part`` the API answered so far."""
        found: list[int] = []
        self.call(lambda h: found.append(sum(1 for r in h if r.method == method and path_part in str(r.url))))
        return found[0]


def emulator() -> Iterator[KubeEmulator]:
    api = KubeEmulator()
    try:
        yield api
    finally:
        api.close()
