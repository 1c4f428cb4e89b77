"""Starts the Kubernetes integration of a `livelearn learn` or `livelearn monitor` process: one
:class:`~streaming.kube.worker.KubeWorker` thread with its tasks, or nothing when the integration is off.

* learner: the pod's role label (:class:`~streaming.kube.labels.RoleLabeler`) and the ``LearnerTakeover`` Event;
* monitor: an Event per reportable audit entry (:mod:`streaming.kube.audit_events`) and, when
  ``LIVELEARN_KUBERNETES_PIN_CONFIGMAP`` names one, the declarative pin (:mod:`streaming.kube.pin_watch`).

The metrics are declared in every process, on or off. A client that cannot be configured is logged and
counted (operation ``configure``); the process runs on without the integration.

>>> from prometheus_client import CollectorRegistry
>>> start_for_learner(Settings(kubernetes="off"), Heartbeat(60), registry=CollectorRegistry()) is None
True
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore
from streaming.config import GuardSettings, KubernetesSettings, Settings
from streaming.errors import ConfigError
from streaming.health import Heartbeat
from streaming.kube.audit_events import AuditTail
from streaming.kube.client import KubeApi, connect, wanted
from streaming.kube.event_emitter import Emitter, EventSpec
from streaming.kube.labels import RoleLabeler, TakeoverReporter
from streaming.kube.pin_watch import PinWatch
from streaming.kube.prometheus import KubeMetrics
from streaming.kube.worker import KubeWorker

__all__ = ["start_for_learner", "start_for_monitor"]

log = logging.getLogger(__name__)

#: How often the learner's role and the audit stream are looked at.
FOLLOW_SECONDS = 1.0


def _connect(
    kube: KubernetesSettings,
    component: str,
    registry: CollectorRegistry,
    kubeconfig: str | None,
    environ: Mapping[str, str] | None,
) -> tuple[KubeApi, Emitter, KubeWorker] | None:
    """The API, an Event emitter for ``component`` and a worker not yet started; None when off."""
    metrics = KubeMetrics(registry, kube.model_name)
    if not wanted(kube.mode):
        return None
    try:
        api = connect(kube, kubeconfig=kubeconfig, environ=environ)
    except (ConfigError, ImportError) as exc:
        metrics.error("configure")
        log.error("Kubernetes integration off: %s", exc)
        return None
    emitter = Emitter(api, metrics, component=component, deployment=kube.deployment)
    return api, emitter, KubeWorker(metrics)


def _report(worker: KubeWorker, emitter: Emitter) -> Callable[[EventSpec], object]:
    """Queue the Event for the worker: the caller never waits for the API."""
    return lambda spec: worker.submit("create_event", lambda: emitter.emit(spec))


def start_for_learner(
    settings: KubernetesSettings | Settings,
    heartbeat: Heartbeat,
    *,
    registry: CollectorRegistry = REGISTRY,
    kubeconfig: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> KubeWorker | None:
    """The learner's integration, started; None when off."""
    kube = KubernetesSettings.of(settings)
    connected = _connect(kube, "learner", registry, kubeconfig, environ)
    if connected is None:
        return None
    api, emitter, worker = connected
    worker.every(FOLLOW_SECONDS, "label_pod", RoleLabeler(api, heartbeat).poll)
    worker.every(FOLLOW_SECONDS, "create_event", TakeoverReporter(heartbeat, emitter, kube.model_name).poll)
    log.info("Kubernetes integration on: pod %s/%s gets the role label", api.pod.namespace, api.pod.name)
    return worker.start()


def start_for_monitor(
    settings: Settings,
    store: VersionStore,
    *,
    registry: CollectorRegistry = REGISTRY,
    kubeconfig: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> KubeWorker | None:
    """The monitor's integration, started; None when off (``settings``: its Kubernetes and guard groups)."""
    kube, guard = settings.kube, settings.guard
    connected = _connect(kube, "monitor", registry, kubeconfig, environ)
    if connected is None:
        return None
    api, emitter, worker = connected
    report = _report(worker, emitter)
    tail = AuditTail(store.client, store.keys, report, metric=guard.metric, threshold=_threshold_text(guard))
    with contextlib.suppress(redis.RedisError):  # "now" is when the monitor starts (Redis down: its first read)
        tail.poll()
    worker.every(FOLLOW_SECONDS, "read_audit", tail.poll)
    if kube.pin_configmap:
        watch = PinWatch(api, ControlPlane(store), kube.pin_configmap, report)
        worker.every(kube.poll_seconds, "pin_configmap", watch.poll)
    log.info(
        "Kubernetes integration on: Events in namespace %s%s",
        api.pod.namespace,
        f", pin from ConfigMap {kube.pin_configmap}" if kube.pin_configmap else "",
    )
    return worker.start()


def _threshold_text(guard: GuardSettings) -> str:
    """The guarded threshold in words, for Events.

    >>> _threshold_text(Settings(monitor_threshold=0.75).guard)
    '0.75'
    >>> _threshold_text(Settings(monitor_threshold_mode="relative").guard)
    'relative, 0.12 below its healthy level'
    """
    if guard.threshold_mode == "absolute":
        return f"{guard.threshold:g}"
    return f"relative, {guard.relative_drop:g} below its healthy level"
