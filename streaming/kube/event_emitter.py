"""Kubernetes Events (``events.k8s.io/v1``) for what operators look for in ``kubectl get events``.

An :class:`EventSpec` says what happened (reason, action, type, a note of at most 1 KB); :class:`Emitter`
creates it regarding this workload's Deployment (or the pod), with ``reportingController``
``livelearn.io/<component>`` and ``reportingInstance`` the pod name. Names are deterministic where the same
happening may be reported twice (two monitors following one audit stream): the second create answers 409
Conflict, which is not an error.

>>> spec = EventSpec(name="livelearn-shop-1700000000000.0", reason="Rollback", action="Rollback",
...                  type="Warning", note="versions 12→9", time=1_700_000_000.0)
>>> event_time(spec.time).isoformat()  # a whole second is sent 1 µs later (see event_time)
'2023-11-14T22:13:20.000001+00:00'
>>> event_name("Shop_EU", "1700000000000-0")
'livelearn-shop-eu-1700000000000.0'
>>> len(clip_note("x" * 5000).encode())
1024
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
from typing import Any

from streaming.kube.client import KubeApi
from streaming.kube.prometheus import KubeMetrics

__all__ = ["NOTE_BYTES", "Emitter", "EventSpec", "clip_note", "event_name", "event_time"]

log = logging.getLogger(__name__)

#: The API server refuses an Event whose note is longer.
NOTE_BYTES = 1024
_NAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")


@dataclasses.dataclass(frozen=True)
class EventSpec:
    """One Event to create: ``reason`` CamelCase, ``type`` Normal or Warning, ``time`` unix seconds."""

    name: str
    reason: str
    action: str
    type: str
    note: str
    time: float


def event_name(model: str, suffix: str) -> str:
    """``livelearn-<model>-<suffix>`` as a valid object name (lower case, ``-`` and ``.``; 253 characters)."""
    text = _NAME_UNSAFE.sub("-", f"livelearn-{model}-{suffix.replace('-', '.')}".lower())
    return text[:253].strip("-.")


def event_time(seconds: float) -> datetime.datetime:
    """``eventTime`` (a MicroTime: the API server parses exactly six fraction digits). The client sends
    ``isoformat()``, which leaves out a zero fraction, so a whole second is moved by one microsecond."""
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return when if when.microsecond else when.replace(microsecond=1)


def clip_note(note: str) -> str:
    """``note`` cut to :data:`NOTE_BYTES` bytes of UTF-8 (without splitting a character)."""
    data = note.encode()
    return note if len(data) <= NOTE_BYTES else data[:NOTE_BYTES].decode(errors="ignore")


class Emitter:
    """Creates Events for one process (``component``: learner or monitor) regarding ``deployment`` or the pod."""

    def __init__(self, api: KubeApi, metrics: KubeMetrics, *, component: str, deployment: str | None) -> None:
        self.api = api
        self.metrics = metrics
        self.component = component
        self.deployment = deployment
        self._deployment_uid: str | None = None

    def regarding(self) -> dict[str, Any]:
        """The object the Events are about; a Deployment's uid is read once (``kubectl describe`` matches it)."""
        pod = self.api.pod
        if self.deployment is None:
            ref = {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace}
            return {**ref, "uid": pod.uid} if pod.uid else ref
        if self._deployment_uid is None:
            try:
                found = self.api.apps.read_namespaced_deployment(
                    self.deployment, pod.namespace, _request_timeout=self.api.request_timeout
                )
                self._deployment_uid = found.metadata.uid or None
            except Exception:  # the Event still goes out, without the uid; read again next time
                self.metrics.error("read_deployment")
                log.debug("cannot read Deployment %s; Event sent without its uid", self.deployment, exc_info=True)
        ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.deployment, "namespace": pod.namespace}
        return {**ref, "uid": self._deployment_uid} if self._deployment_uid else ref

    def body(self, spec: EventSpec) -> dict[str, Any]:
        pod = self.api.pod
        return {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": spec.name, "namespace": pod.namespace},
            "eventTime": event_time(spec.time),
            "reason": spec.reason,
            "action": spec.action,
            "type": spec.type,
            "note": clip_note(spec.note),
            "regarding": self.regarding(),
            "reportingController": f"livelearn.io/{self.component}",
            "reportingInstance": pod.name[:128],
        }

    def emit(self, spec: EventSpec) -> bool:
        """Create the Event; False when it exists already (another process reported the same happening).
        Other API errors raise (the worker counts them)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.events.create_namespaced_event(
                self.api.pod.namespace, self.body(spec), _request_timeout=self.api.request_timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                log.debug("Event %s exists already (reported by another process)", spec.name)
                return False
            raise
        self.metrics.emitted(spec.reason)
        log.info("Kubernetes Event %s: %s", spec.reason, spec.note)
        return True
