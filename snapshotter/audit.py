"""The audit trail: a Redis Stream of every snapshot, promotion, rollback, pin, unpin, freeze and resume.

Entries are appended inside the same Lua scripts that make the change, so the log and the state never
disagree. The stream is trimmed approximately (``MAXLEN ~``), which never keeps fewer entries than the
configured retention.
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

__all__ = ["AuditEntry", "append_audit", "default_actor", "read_audit"]


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


def read_audit(
    client: redis.Redis, keys: Keys, *, count: int | None = None, actions: set[str] | None = None
) -> list[AuditEntry]:
    """Audit entries oldest first (the newest ``count`` if given), optionally of some actions only."""
    raw: list[tuple[Any, dict[Any, Any]]] = list(
        client.xrevrange(keys.audit, count=count) if count else client.xrange(keys.audit)  # type: ignore[arg-type]
    )
    entries = [AuditEntry.from_stream(i, f) for i, f in (reversed(raw) if count else raw)]
    return [e for e in entries if actions is None or e.action in actions]


def append_audit(client: redis.Redis, keys: Keys, maxlen: int, **fields: Any) -> None:
    """Append an entry for an event no script records (e.g. a rollback that found no target)."""
    values: dict[Any, Any] = {
        k: json.dumps(v) if isinstance(v, dict) else ("" if v is None else str(v)) for k, v in fields.items()
    }
    client.xadd(keys.audit, values, maxlen=maxlen, approximate=True)
