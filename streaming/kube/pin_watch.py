"""The declarative pin (GitOps): the monitor reads a ConfigMap's key ``pinned`` (a version number, or empty) and
applies it through the audited control plane, as actor ``k8s:configmap/<name>``.

It is a poll (every ``LIVELEARN_KUBERNETES_POLL_SECONDS``; an unchanged ``resourceVersion`` costs one GET), not
a watch: it needs only ``get``, survives API restarts without a watch's reconnection logic, and the pin is
not time-critical. What wins when the CLI (or admin API) and the ConfigMap disagree: **the last change**. The
ConfigMap is applied only when its value changes (from the value it last applied, found in the audit stream
after a restart), so a CLI unpin or pin stays until someone edits the ConfigMap again; an empty ConfigMap that
never pinned anything unpins nothing. A value that is not a version number,
or a version that is missing or quarantined, changes nothing: a Warning Event says why (once per value).

>>> pin_actor("shop-livelearn-pin")
'k8s:configmap/shop-livelearn-pin'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from snapshotter.audit import read_audit
from snapshotter.control import ControlPlane
from streaming.errors import ControlError, NotPinnedError, QuarantinedError, SnapshotError
from streaming.kube.client import KubeApi
from streaming.kube.event_emitter import EventSpec, event_name

__all__ = ["PinWatch", "pin_actor"]

log = logging.getLogger(__name__)

#: Audit entries searched (newest first) for the value the ConfigMap last applied.
_BASELINE_ENTRIES = 1000


def pin_actor(configmap: str) -> str:
    return f"k8s:configmap/{configmap}"


class PinWatch:
    """Applies the ConfigMap's ``pinned`` value when it changes (a task of the monitor's integration worker)."""

    def __init__(
        self, api: KubeApi, control: ControlPlane, configmap: str, report: Callable[[EventSpec], object]
    ) -> None:
        self.api, self.control, self.configmap, self.report = api, control, configmap, report
        self.actor = pin_actor(configmap)
        self.applied: str | None = None  # the value last applied (None: not looked up yet)
        self._version: str | None = None  # resourceVersion of the ConfigMap last handled
        self._missing = False

    def baseline(self) -> str:
        """The value this ConfigMap last applied, from the audit stream ("" when it never pinned anything)."""
        store = self.control.store
        entries = read_audit(store.client, store.keys, count=_BASELINE_ENTRIES, actions={"pin", "unpin"})
        for entry in reversed(entries):
            if entry.actor == self.actor:
                return str(entry.to_version) if entry.action == "pin" else ""
        return ""

    def poll(self) -> None:
        from kubernetes.client.exceptions import ApiException

        if self.applied is None:
            self.applied = self.baseline()
        namespace = self.api.pod.namespace
        try:
            found = self.api.core.read_namespaced_config_map(
                self.configmap, namespace, _request_timeout=self.api.request_timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            if not self._missing:
                log.warning("pin ConfigMap %s/%s does not exist: nothing declared", namespace, self.configmap)
            self._missing = True
            return
        self._missing = False
        version = found.metadata.resource_version
        if version is not None and version == self._version:
            return
        value = (found.data or {}).get("pinned", "").strip()
        if value != self.applied:
            self.apply(value, version)  # raises (to be retried) when Redis fails: nothing recorded as applied
            self.applied = value
        self._version = version

    def apply(self, value: str, version: str | None) -> None:
        store, where = self.control.store, f"ConfigMap {self.api.pod.namespace}/{self.configmap}"
        if not value:
            if store.pinned() is not None:
                try:
                    self.control.unpin(actor=self.actor, reason=f"{where}: pinned emptied")
                    log.warning("unpinned: %s emptied its key pinned", where)
                except NotPinnedError:
                    pass  # another monitor applied it first
            return
        if not value.isdigit() or int(value) < 1:
            self._refuse(
                "InvalidPin",
                version,
                f"{where}: pinned is {value!r}, not a version number; nothing "
                "changed (set a version number, or empty to unpin)",
            )
            return
        number = int(value)
        if store.pinned() == number:
            return
        try:
            self.control.pin(number, actor=self.actor, reason=f"{where} sets pinned: {number}")
        except (SnapshotError, ControlError) as exc:
            hint = (
                f"; `livelearn versions pin {number} --force` pins it anyway"
                if isinstance(exc, QuarantinedError)
                else ""
            )
            self._refuse("PinRefused", version, f"{where} asks for version {number}: refused ({exc}){hint}")
            return
        log.warning("pinned version %d: %s", number, where)

    def _refuse(self, reason: str, version: str | None, note: str) -> None:
        log.warning("%s", note)
        now = time.time()
        suffix = f"{self.configmap}-{version}" if version else f"{self.configmap}-{int(now * 1000)}"
        model = self.control.store.keys.model_name
        self.report(EventSpec(event_name(model, f"{reason.lower()}-{suffix}"), reason, "Pin", "Warning", note, now))
