"""The idempotence window: the last K event ids of each partition, so a producer's retries are not learned twice.

A producer that retries a send (a timeout, a lost acknowledgement) can write the same event twice;
Kafka keeps both. The learner remembers a 64-bit hash of the last ``size`` event ids of every
partition and skips an event whose id it has seen there. The window is stored in every snapshot, so a
restarted learner recognises the same duplicates as the one before it.

>>> window = RecentIds(size=2)
>>> [window.seen_before(0, i) for i in ("a", "b", "a", "c", "a")]
[False, False, True, False, False]
>>> restored = RecentIds(size=2)
>>> restored.load(window.dump())
>>> restored.seen_before(0, "c"), restored.seen_before(1, "c")
(True, False)
"""

from __future__ import annotations

import collections
import hashlib
from typing import Any

__all__ = ["RecentIds"]


_BLAKE2B_8 = hashlib.blake2b(digest_size=8)  # an empty state: copying it is cheaper than a new one with options
_COPY, _FROM_BYTES = _BLAKE2B_8.copy, int.from_bytes


def _digest(event_id: str) -> int:
    """The 64-bit BLAKE2b of the id (``hashlib.blake2b(id, digest_size=8)``: the same values in every version).

    >>> _digest("e1") == int.from_bytes(hashlib.blake2b(b"e1", digest_size=8).digest(), "big")
    True
    """
    h = _COPY()
    h.update(event_id.encode())
    return _FROM_BYTES(h.digest(), "big")


class RecentIds:
    """The last ``size`` event ids per partition (``size`` 0 turns the check off)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: dict[int, collections.deque[int]] = {}
        self._members: dict[int, set[int]] = {}

    def seen_before(self, partition: int, event_id: str) -> bool:
        """Whether ``event_id`` is in the window of ``partition``; if not, it is added."""
        if self.size <= 0:
            return False
        h = _COPY()  # _digest, inlined (once per event)
        h.update(event_id.encode())
        digest = _FROM_BYTES(h.digest(), "big")
        members = self._members.get(partition)
        if members is None:
            members = self._members[partition] = set()
            self._order[partition] = collections.deque()
        if digest in members:
            return True
        order = self._order[partition]
        order.append(digest)
        members.add(digest)
        if len(order) > self.size:
            members.discard(order.popleft())
        return False

    def dump(self) -> dict[str, Any]:
        """Plain msgpack-able state: ``{"size": K, "ids": {partition: [hash, ...]}}`` oldest first."""
        return {"size": self.size, "ids": {str(p): list(order) for p, order in self._order.items()}}

    def load(self, doc: dict[str, Any] | None) -> None:
        """Restore :meth:`dump` output (a smaller configured size keeps the newest ids)."""
        self._order, self._members = {}, {}
        for partition, ids in ((doc or {}).get("ids") or {}).items():
            kept = collections.deque(int(i) for i in ids[-self.size :]) if self.size > 0 else collections.deque()
            self._order[int(partition)] = kept
            self._members[int(partition)] = set(kept)
