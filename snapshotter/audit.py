"""The audit trail: two Redis Streams, appended inside the same Lua scripts that make each change, so the log
and the state never disagree.

* the **audit stream** (``Keys.audit``, ``LIVELEARN_AUDIT_RETENTION``): what operators and the monitor did —
  rollbacks, pins, unpins, freezes, resumes, incidents, notices (feature drift, suppressed breaches), failures,
  the canary split of serving (:data:`CANARY_ACTIONS`), the challengers' promotions and run-time declarations
  (:data:`ARM_ACTIONS`);
* the **version log** (``Keys.version_log``, ``LIVELEARN_VERSION_LOG_RETENTION``): the routine entries of every
  version — ``snapshot`` (written), ``stable`` (confirmed by the guard), ``promote`` (serving moved to the newest
  stable version), ``import`` (a version imported from an archive), ``branch`` (a rebuild branch's version).
  Several a second with timed snapshots: kept apart, so they never push a rollback or an
  operator's action out of the audit stream.

Each stream is trimmed approximately (``MAXLEN ~``), which never keeps fewer entries than its retention.
:func:`read_audit` reads the audit stream, and the version log too when asked (or when the actions asked for
are routine ones), merged in time order.

>>> sorted(ROUTINE_ACTIONS)
['branch', 'import', 'promote', 'snapshot', 'stable']
>>> _order("1700000000123-2") < _order("1700000000123-10") < _order("1700000000124-0")
True
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import socket
from typing import Any

import redis

from snapshotter.connection import as_text
from snapshotter.keys import Keys

__all__ = [
    "ARM_ACTIONS",
    "CANARY_ACTIONS",
    "ROUTINE_ACTIONS",
    "AuditEntry",
    "append_audit",
    "default_actor",
    "read_audit",
]

#: Actions recorded in the version log, not the audit stream.
ROUTINE_ACTIONS = frozenset({"snapshot", "stable", "promote", "import", "branch"})
#: The canary split's actions (``canary.lua``): set or advanced (``arm``, ``percent``, ``steps``, ``step``, ``was``:
#: the percent before), aborted (``arm``, ``was``); ``to`` is the serving version the split applied to.
CANARY_ACTIONS = frozenset({"canary", "canary_abort"})
#: Actions whose ``from`` and ``to`` are arm names, not version numbers (``promote_arm.lua``: the champion alias
#: moved; ``arms.lua``: a challenger added (``to``) or removed (``from``), the declarations reset): their
#: :attr:`AuditEntry.from_version` and ``to_version`` are ``None``, the names are in :attr:`AuditEntry.fields`.
ARM_ACTIONS = frozenset({"promote_arm", "challenger_add", "challenger_remove", "challengers_reset"})


def default_actor() -> str:
    """``user@host`` of the operator running a command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _text(value: object) -> str:
    return "" if value is None else as_text(value)


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One audit record."""

    id: str
    time: float
    action: str
    actor: str
    reason: str
    from_version: int | None
    to_version: int | None
    metrics: dict[str, Any]
    fields: dict[str, str]

    @classmethod
    def from_stream(cls, entry_id: object, fields: dict[Any, Any]) -> AuditEntry:
        f = {_text(k): _text(v) for k, v in fields.items()}
        eid = _text(entry_id)

        def version(name: str) -> int | None:
            return int(f[name]) if f.get(name, "").isdigit() else None

        return cls(
            id=eid,
            time=int(eid.split("-")[0]) / 1000,
            action=f.get("action", ""),
            actor=f.get("actor", ""),
            reason=f.get("reason", ""),
            from_version=version("from"),
            to_version=version("to"),
            metrics=json.loads(f["metrics"]) if f.get("metrics") else {},
            fields=f,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _order(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (milliseconds, sequence): both streams live on one server, one clock."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def read_audit(
    client: redis.Redis,
    keys: Keys,
    *,
    count: int | None = None,
    actions: set[str] | None = None,
    routine: bool | None = None,
) -> list[AuditEntry]:
    """Audit entries oldest first (the newest ``count`` if given), optionally of some actions only.

    ``routine``: also read the version log (snapshot, stable and promote entries), merged in time order; by
    default it is read only when ``actions`` names one of :data:`ROUTINE_ACTIONS`.
    """
    if routine is None:
        routine = actions is not None and bool(actions & ROUTINE_ACTIONS)
    entries: list[AuditEntry] = []
    for stream in (keys.audit, keys.version_log) if routine else (keys.audit,):
        raw: list[tuple[Any, dict[Any, Any]]] = list(
            client.xrevrange(stream, count=count) if count else client.xrange(stream)  # type: ignore[arg-type]
        )
        entries += (AuditEntry.from_stream(i, f) for i, f in raw)
    entries.sort(key=lambda e: _order(e.id))
    if count:
        entries = entries[-count:]
    return [e for e in entries if actions is None or e.action in actions]


def append_audit(client: redis.Redis, keys: Keys, maxlen: int, **fields: Any) -> None:
    """Append an entry to the audit stream for an event no script records (e.g. a rollback that found no target)."""
    values: dict[Any, Any] = {
        k: json.dumps(v) if isinstance(v, dict) else ("" if v is None else str(v)) for k, v in fields.items()
    }
    client.xadd(keys.audit, values, maxlen=maxlen, approximate=True)
