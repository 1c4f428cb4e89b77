"""The learner's role on its own pod: label ``livelearn.io/role=active`` or ``standby``, and a ``LearnerTakeover``
Event when this learner becomes the active one.

Both follow the learner's :class:`~streaming.health.Heartbeat` (the role its loop last reported) from the
integration's thread, so the learner's code does not change. The label is patched only when the role changes
(and again after a failure, no sooner than ``retry_seconds``); "starting" and "waiting" (an outage) leave it
as it is. ``kubectl get pods -l livelearn.io/role=active`` finds the writer.

>>> role_patch("active")
{'metadata': {'labels': {'livelearn.io/role': 'active'}}}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streaming.health import Heartbeat
from streaming.kube.client import KubeApi
from streaming.kube.event_emitter import Emitter, EventSpec, event_name

__all__ = ["LABELLED_ROLES", "ROLE_LABEL", "RoleLabeler", "TakeoverReporter", "role_patch"]

ROLE_LABEL = "livelearn.io/role"
#: Heartbeat roles written to the label; any other (starting, waiting out an outage) leaves it unchanged.
LABELLED_ROLES = ("active", "standby")


def role_patch(role: str) -> dict[str, Any]:
    """The pod patch (strategic merge) setting the role label."""
    return {"metadata": {"labels": {ROLE_LABEL: role}}}


def heartbeat_role(heartbeat: Heartbeat) -> str:
    """The role the learner's loop last reported."""
    return str(heartbeat.liveness()[1]["role"])


class RoleLabeler:
    """Keeps this pod's role label equal to the learner's role (a task of the integration's worker)."""

    def __init__(
        self,
        api: KubeApi,
        heartbeat: Heartbeat,
        *,
        retry_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.heartbeat, self.retry_seconds, self.clock = api, heartbeat, retry_seconds, clock
        self.labelled: str | None = None  # the label this process last set
        self._retry_at = 0.0

    def poll(self) -> None:
        role = heartbeat_role(self.heartbeat)
        if role not in LABELLED_ROLES or role == self.labelled or self.clock() < self._retry_at:
            return
        pod = self.api.pod
        try:
            self.api.core.patch_namespaced_pod(
                pod.name, pod.namespace, role_patch(role), _request_timeout=self.api.request_timeout
            )
        except Exception:
            self._retry_at = self.clock() + self.retry_seconds
            raise
        self.labelled = role


class TakeoverReporter:
    """Reports ``LearnerTakeover`` when the learner's role turns active (a task of the integration's worker)."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        emitter: Emitter,
        model: str,
        *,
        retry_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat, self.emitter, self.model = heartbeat, emitter, model
        self.retry_seconds, self.clock = retry_seconds, clock
        self.role = "starting"
        self.pending: EventSpec | None = None
        self._retry_at = 0.0

    def poll(self) -> None:
        role = heartbeat_role(self.heartbeat)
        if role != self.role and role in (*LABELLED_ROLES, "starting"):  # an outage ("waiting") is no new role
            if role == "active":
                pod, now = self.emitter.api.pod.name, time.time()
                self.pending = EventSpec(
                    name=event_name(self.model, f"takeover-{pod}-{int(now * 1000)}"),
                    reason="LearnerTakeover",
                    action="Takeover",
                    type="Normal",
                    note=f"pod {pod} is now the active learner (was {self.role}): it holds the Redis lease, "
                    "restores the newest version and writes the next ones",
                    time=now,
                )
            self.role = role
        if self.pending is None or self.clock() < self._retry_at:
            return
        try:
            self.emitter.emit(self.pending)
        except Exception:
            self._retry_at = self.clock() + self.retry_seconds
            raise
        self.pending = None
