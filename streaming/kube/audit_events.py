"""Events from the audit stream: the monitor follows it from "now" and reports each rollback, freeze, resume,
pin, unpin, data-quality incident, challenger promotion (or backing out), run-time challenger declaration and canary
step or abort as one Kubernetes Event, so the control plane needs no Kubernetes code.

The Event's name comes from the audit entry's id, so two monitors following the same stream create it once
(the second create is a 409 Conflict, ignored).

>>> from snapshotter.audit import AuditEntry
>>> entry = AuditEntry.from_stream("1700000000000-0", {"action": "rollback", "actor": "monitor@m-1",
...     "reason": "rolling accuracy 0.61 vs threshold 0.80", "from": "12", "to": "9",
...     "metrics": '{"accuracy": 0.6123}'})
>>> spec = event_from_audit(entry, "shop", metric="accuracy", threshold="0.8")
>>> spec.name, spec.reason, spec.type
('livelearn-shop-1700000000000.0', 'Rollback', 'Warning')
>>> spec.note
'rollback: versions 12→9; accuracy 0.6123 (threshold 0.8); actor monitor@m-1; rolling accuracy 0.61 vs threshold 0.80'

The challengers' and the canary's actions say what they changed: arms (their ``from`` and ``to`` are arm names, not
versions), a share of the requests:

>>> abort = AuditEntry.from_stream("1700000000500-0", {"action": "canary_abort", "actor": "ops@host",
...     "reason": "errors up", "to": "12", "arm": "fast", "percent": "0", "was": "25", "metrics": "{}"})
>>> spec = event_from_audit(abort, "shop", metric="accuracy", threshold="0.8")
>>> spec.reason, spec.type
('CanaryAborted', 'Warning')
>>> spec.note
'canary_abort: fast 25 %→0 %, everyone on the champion (version 12); actor ops@host; errors up'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from snapshotter.audit import AuditEntry
from snapshotter.connection import as_text
from snapshotter.keys import Keys
from streaming.kube.event_emitter import EventSpec, event_name

__all__ = ["AUDITED", "AuditTail", "event_from_audit"]

log = logging.getLogger(__name__)

#: Audit actions reported as Events: (reason, action, type).
AUDITED: dict[str, tuple[str, str, str]] = {
    "rollback": ("Rollback", "Rollback", "Warning"),
    "manual_rollback": ("Rollback", "Rollback", "Warning"),
    "rollback_failed": ("RollbackFailed", "Rollback", "Warning"),
    "freeze": ("LearningFrozen", "Freeze", "Warning"),
    "freeze_failed": ("FreezeFailed", "Freeze", "Warning"),
    "resume": ("LearningResumed", "Resume", "Normal"),
    "resume_failed": ("ResumeFailed", "Resume", "Warning"),
    "pin": ("Pinned", "Pin", "Normal"),
    "unpin": ("Unpinned", "Unpin", "Normal"),
    "incident_start": ("DataIncident", "OpenIncident", "Warning"),
    "incident_end": ("DataIncidentClosed", "CloseIncident", "Normal"),
    "store_lost": ("StoreLost", "StartOver", "Warning"),  # a learner started over after Redis lost its data
    # the challengers (issue 20): one reason for promoting and backing out, as the script cannot tell them apart
    "promote_arm": ("ChallengerPromoted", "Promote", "Normal"),
    "challenger_add": ("ChallengerAdded", "AddChallenger", "Normal"),
    "challenger_remove": ("ChallengerRemoved", "RemoveChallenger", "Normal"),
    "challengers_reset": ("ChallengersReset", "ResetChallengers", "Normal"),
    "canary": ("CanarySet", "Canary", "Normal"),
    "canary_abort": ("CanaryAborted", "AbortCanary", "Warning"),  # something looked wrong: everyone back
}


def _versions(entry: AuditEntry) -> str:
    if entry.from_version is not None and entry.to_version is not None:
        return f"versions {entry.from_version}→{entry.to_version}"
    if entry.to_version is not None:
        return f"version {entry.to_version}"
    return ""


def _percent(value: object) -> str:
    """A fraction as a signed percent with one decimal (``+3.1 %``)."""
    return f"{100 * value:+.1f} %" if isinstance(value, int | float) else "?"


def _arm_moved(entry: AuditEntry) -> str:
    """``promote_arm``: where the champion alias moved, the comparison it was promoted on (an operator's command
    records it; backing out or the auto policy may not), and the canary it ended."""
    f, m = entry.fields, entry.metrics
    parts = [f"champion {f.get('from') or '?'}→{f.get('to') or '?'}"]
    if isinstance(m.get("relative_gain"), int | float):
        interval = f"[{_percent(m.get('gain_lower'))}, {_percent(m.get('gain_upper'))}]"
        labels = m.get("labels")
        counted = f"{labels:,}" if isinstance(labels, int) else "?"
        parts.append(f"gain {_percent(m['relative_gain'])} {interval} over {counted} labels")
    if f.get("canary_ended"):
        parts.append(f"the canary on {f['canary_ended']} ended")
    return "; ".join(parts)


def _canary(entry: AuditEntry) -> str:
    """``canary``: the arm's share now, before, and the steps; of which serving version."""
    f = entry.fields
    return (
        f"{f.get('arm', '?')} at {f.get('percent', '?')} % (was {f.get('was') or '0'} %; steps {f.get('steps', '?')})"
        f" of version {f.get('to') or '?'}"
    )


def _canary_abort(entry: AuditEntry) -> str:
    """``canary_abort``: the arm's share before the abort (0 now), of which serving version."""
    f = entry.fields
    return f"{f.get('arm', '?')} {f.get('was') or '0'} %→0 %, everyone on the champion (version {f.get('to') or '?'})"


#: What each challenger action changed, for the note (the other actions name versions: :func:`_versions`).
_DESCRIBED: dict[str, Callable[[AuditEntry], str]] = {
    "promote_arm": _arm_moved,
    "challenger_add": lambda e: f"{e.fields.get('to', '?')} ({e.fields.get('declared', '?')})",
    "challenger_remove": lambda e: f"{e.fields.get('from', '?')} (was {e.fields.get('declared', '?')})",
    "challengers_reset": lambda _e: "the settings' declarations (LIVELEARN_CHALLENGERS) again",
    "canary": _canary,
    "canary_abort": _canary_abort,
}


def event_from_audit(entry: AuditEntry, model: str, *, metric: str, threshold: str) -> EventSpec | None:
    """The Event reporting ``entry``, or None for an action not in :data:`AUDITED`."""
    if entry.action not in AUDITED:
        return None
    reason, action, kind = AUDITED[entry.action]
    value = entry.metrics.get(metric)
    what = _DESCRIBED.get(entry.action, _versions)(entry)
    parts = [
        f"{entry.action}: {what}".rstrip(": "),
        f"{metric} {value:.4f} (threshold {threshold})" if isinstance(value, int | float) else "",
        f"actor {entry.actor}" if entry.actor else "",
        entry.reason,
    ]
    if entry.fields.get("forced"):
        parts.append("forced onto a quarantined version")
    note = "; ".join(part for part in parts if part)
    return EventSpec(event_name(model, entry.id), reason, action, kind, note, entry.time)


class AuditTail:
    """Follows one model's audit stream from where it is when first read, handing each reportable entry's
    Event to ``report`` (which queues it: reading never waits for the API)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        report: Callable[[EventSpec], object],
        *,
        metric: str,
        threshold: str,
        batch: int = 100,
    ) -> None:
        self.client, self.keys, self.report = client, keys, report
        self.metric, self.threshold, self.batch = metric, threshold, batch
        self.cursor: str | None = None  # None: not read yet (the first read only finds where "now" is)

    def poll(self) -> int:
        """Report the entries appended since the last poll; returns how many Events were handed on."""
        if self.cursor is None:
            last: list[tuple[Any, Any]] = list(self.client.xrevrange(self.keys.audit, count=1))  # type: ignore[arg-type]
            self.cursor = as_text(last[0][0]) if last else "0-0"
            return 0
        reported = 0
        while True:
            raw: list[tuple[Any, dict[Any, Any]]] = list(
                self.client.xrange(self.keys.audit, min=f"({self.cursor}", count=self.batch)  # type: ignore[arg-type]
            )
            for entry_id, fields in raw:
                self.cursor = as_text(entry_id)
                spec = event_from_audit(
                    AuditEntry.from_stream(entry_id, fields),
                    self.keys.model_name,
                    metric=self.metric,
                    threshold=self.threshold,
                )
                if spec is not None:
                    self.report(spec)
                    reported += 1
            if len(raw) < self.batch:
                return reported
