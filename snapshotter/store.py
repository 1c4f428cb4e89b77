"""Numbered, immutable model versions in Redis.

:meth:`VersionStore.write` runs one Lua script, so a version appears whole or not at all: it checks
the writer's lease (fencing), takes the next number from an atomic counter, stores blob and
metadata, indexes the version, moves the head pointer and applies retention (keep the newest K
plus every protected version). Readers verify the SHA-256 of a blob before decoding it.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from snapshotter.codec import (
    FORMAT_VERSION,
    SnapshotState,
    VersionMeta,
    decode_snapshot,
    encode_snapshot,
    pack,
    sha256_hex,
    unpack,
)
from snapshotter.keys import Keys
from streaming.errors import SnapshotCorruptError, SnapshotError, SnapshotFencedError, VersionNotFoundError

__all__ = ["VersionStore"]

# KEYS: lease, counter, index, head, protected.  ARGV: lease value ('' = unfenced), blob, meta,
# keep, version key prefix.  Returns the new version number.
_WRITE = """
if ARGV[1] ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if holder ~= ARGV[1] then
    return redis.error_reply('FENCED lease is held by ' .. tostring(holder))
  end
end
local n = redis.call('INCR', KEYS[2])
redis.call('SET', ARGV[5] .. n .. ':blob', ARGV[2])
redis.call('SET', ARGV[5] .. n .. ':meta', ARGV[3])
redis.call('ZADD', KEYS[3], n, n)
redis.call('SET', KEYS[4], n)
local keep = tonumber(ARGV[4])
local count = redis.call('ZCARD', KEYS[3])
if count > keep then
  for _, v in ipairs(redis.call('ZRANGE', KEYS[3], 0, count - keep - 1)) do
    if redis.call('SISMEMBER', KEYS[5], v) == 0 then
      redis.call('ZREM', KEYS[3], v)
      redis.call('DEL', ARGV[5] .. v .. ':blob', ARGV[5] .. v .. ':meta')
    end
  end
end
return n
"""


class VersionStore:
    """Read and write the numbered versions of one model."""

    def __init__(self, client: redis.Redis, model_name: str, keep: int = 50) -> None:
        self.client = client
        self.keys = Keys(model_name)
        self.keep = keep
        self._write = client.register_script(_WRITE)

    def write(
        self,
        state: SnapshotState,
        *,
        writer: str,
        lease_value: str | None,
        offsets: dict[str, dict[str, int]],
        metrics: dict[str, dict[str, float]],
        parent: int | None,
        extra: dict[str, Any] | None = None,
    ) -> VersionMeta:
        """Store ``state`` as the next version; raise :class:`SnapshotFencedError` without the lease."""
        blob = encode_snapshot(state)
        token = int(lease_value.split(":", 1)[0]) if lease_value else 0
        meta = {
            "created_at": time.time(),
            "writer": writer,
            "lease_token": token,
            "events_seen": int(state.counters.get("events_seen", 0)),
            "events_learned": int(state.counters.get("events_learned", 0)),
            "offsets": offsets,
            "metrics": metrics,
            "parent": parent,
            "spec": state.spec,
            "format_version": FORMAT_VERSION,
            "sha256": sha256_hex(blob),
            "size_bytes": len(blob),
            "extra": extra or {},
        }
        k = self.keys
        try:
            number = self._write(
                keys=[k.lease, k.counter, k.index, k.head, k.protected],
                args=[lease_value or "", blob, pack(meta), self.keep, k.version_prefix],
            )
        except redis.ResponseError as exc:
            if "FENCED" in str(exc):
                raise SnapshotFencedError(
                    f"snapshot rejected for model {k.model_name!r}: this writer ({writer}) no longer holds "
                    f"the lease ({str(exc).split('FENCED ', 1)[-1]}); another learner is active"
                ) from None
            raise SnapshotError(f"snapshot write failed: {exc}") from None
        return VersionMeta.from_dict({"number": int(number), **meta})

    # -- reads -------------------------------------------------------------------------------
    def head(self) -> int | None:
        """Newest version of the learner lineage, or ``None`` before the first snapshot."""
        raw = self.client.get(self.keys.head)
        return int(raw) if raw is not None else None

    def numbers(self) -> list[int]:
        """Every stored version number, oldest first."""
        return [int(n) for n in self.client.zrange(self.keys.index, 0, -1)]

    def meta(self, number: int) -> VersionMeta:
        raw = self.client.get(self.keys.meta(number))
        if raw is None:
            raise VersionNotFoundError(
                f"version {number} of model {self.keys.model_name!r} does not exist "
                f"(see `livelearn versions list`; retention keeps the newest {self.keep})"
            )
        try:
            return VersionMeta.from_dict({"number": number, **unpack(raw)})
        except (ValueError, TypeError) as exc:
            raise SnapshotCorruptError(f"metadata of version {number} is unreadable: {exc}") from None

    def list(self) -> list[VersionMeta]:
        """Metadata of every stored version, oldest first."""
        numbers = self.numbers()
        if not numbers:
            return []
        raws = self.client.mget([self.keys.meta(n) for n in numbers])
        return [VersionMeta.from_dict({"number": n, **unpack(r)}) for n, r in zip(numbers, raws) if r is not None]

    def load(self, number: int) -> tuple[VersionMeta, SnapshotState]:
        """Metadata and verified learned state of version ``number``."""
        meta = self.meta(number)
        blob = self.client.get(self.keys.blob(number))
        if blob is None:
            raise VersionNotFoundError(f"version {number} has metadata but no blob; it was removed while reading")
        return meta, decode_snapshot(blob, meta.sha256)
