"""The monitors' shared position in the metric history stream, with the judge state that goes with it.

Every monitor of a model reads the history from the same cursor; after judging a batch it moves the
cursor (and the judge state) with a compare-and-set, so each sample is judged once by whichever monitor
gets there first, and a restarted monitor carries on where the last one stopped. The notices the batch
caused (feature drift, suppressed breaches) are audited by the same compare-and-set, so each is recorded
once, by the monitor whose move won.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import redis

from snapshotter.connection import as_text
from snapshotter.keys import Keys
from snapshotter.scripts import COMMIT_CURSOR, bind

__all__ = ["CursorState", "GuardCursor", "Notice"]

START = "0-0"  # before the first entry of a stream


@dataclasses.dataclass(frozen=True)
class CursorState:
    """Where the monitors stand: the last judged history entry, its lineage epoch and ``scored`` count, and
    the judge's memory (a plain document: consecutive breaches, healthy spell while frozen...)."""

    cursor: str = START
    epoch: int = -1
    scored: int = -1
    judge: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Notice:
    """An audit entry a judged sample caused that changes no state (``feature_drift``, ``breach_suppressed``)."""

    action: str
    reason: str
    metrics: dict[str, Any]


class GuardCursor:
    """Read and move the shared cursor of one model's monitors."""

    def __init__(self, client: redis.Redis, keys: Keys, audit_retention: int) -> None:
        self.client, self.keys, self.audit_retention = client, keys, audit_retention
        self._commit = bind(client, COMMIT_CURSOR)

    def load(self) -> CursorState:
        raw = {as_text(k): as_text(v) for k, v in self.client.hgetall(self.keys.guard).items()}
        judge = json.loads(raw["judge"]) if raw.get("judge") else {}
        return CursorState(raw.get("cursor", START), int(raw.get("epoch", -1)), int(raw.get("scored", -1)), judge)

    def entries(self, after: str, *, count: int, block_ms: int | None) -> list[tuple[str, dict[Any, Any]]]:
        """Up to ``count`` history entries after ``after``, waiting up to ``block_ms`` for the first one."""
        reply: list[Any] = self.client.xread(  # type: ignore[assignment]
            {self.keys.history: after}, count=count, block=block_ms or None
        )
        return [(as_text(entry_id), fields) for entry_id, fields in reply[0][1]] if reply else []

    def commit(self, read_from: str, state: CursorState, *, actor: str, notices: Sequence[Notice] = ()) -> int | None:
        """Move to ``state``, audit ``notices`` and promote the candidates up to ``state.confirmed`` if the cursor
        is still at ``read_from``: the number of versions promoted; ``None`` (nothing done) if another monitor
        moved it."""
        moved = self._commit(
            self.keys,
            maxlen=self.audit_retention,
            read_from=read_from,
            cursor=state.cursor,
            epoch=state.epoch,
            scored=state.scored,
            judge=json.dumps(state.judge),
            actor=actor,
            notices=[x for notice in notices for x in (notice.action, notice.reason, json.dumps(notice.metrics))],
        )
        return bool(moved)
