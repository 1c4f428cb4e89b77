"""The monitors' shared position in the metric history stream, with the judge state that goes with it.

Every monitor of a model reads the history from the same cursor; after judging a batch it moves the
cursor (and the judge state) with a compare-and-set, so each sample is judged once by whichever monitor
gets there first, and a restarted monitor carries on where the last one stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import redis

from snapshotter.connection import as_text
from snapshotter.keys import Keys
from snapshotter.scripts import register

__all__ = ["CursorState", "GuardCursor"]

START = "0-0"  # before the first entry of a stream


@dataclasses.dataclass(frozen=True)
class CursorState:
    """Where the monitors stand: the last judged history entry, its lineage epoch and ``scored`` count, and
    the judge's memory (consecutive breaches, start of the healthy spell while frozen)."""

    cursor: str = START
    epoch: int = -1
    scored: int = -1
    breaches: int = 0
    healthy_since: float | None = None


class GuardCursor:
    """Read and move the shared cursor of one model's monitors."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys
        self._commit = register(client, "commit_cursor")

    def load(self) -> CursorState:
        raw = {as_text(k): as_text(v) for k, v in self.client.hgetall(self.keys.guard).items()}
        healthy = raw.get("healthy_since", "")
        return CursorState(
            raw.get("cursor", START),
            int(raw.get("epoch", -1)),
            int(raw.get("scored", -1)),
            int(raw.get("breaches", 0)),
            float(healthy) if healthy else None,
        )

    def entries(self, after: str, *, count: int, block_ms: int | None) -> list[tuple[str, dict[Any, Any]]]:
        """Up to ``count`` history entries after ``after``, waiting up to ``block_ms`` for the first one."""
        reply: list[Any] = self.client.xread(  # type: ignore[assignment]
            {self.keys.history: after}, count=count, block=block_ms or None
        )
        return [(as_text(entry_id), fields) for entry_id, fields in reply[0][1]] if reply else []

    def commit(self, read_from: str, state: CursorState) -> bool:
        """Move to ``state`` if the cursor is still at ``read_from``; ``False`` if another monitor moved it."""
        healthy = "" if state.healthy_since is None else repr(state.healthy_since)
        return bool(
            self._commit(
                keys=[self.keys.guard],
                args=[read_from, state.cursor, state.epoch, state.scored, state.breaches, healthy],
            )
        )
