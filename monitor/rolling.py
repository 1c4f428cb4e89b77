"""A rolling mean over the last ``size`` values, kept exactly (a running sum over a ring of doubles).

A challenger keeps its rolling log loss with it (:mod:`streaming.learner.arms`): a full metric set per arm would
cost it a fifth of its time per event. Its state is plain values (the window as little-endian doubles, oldest first):
restored, it goes on bit for bit.

>>> window = RollingMean(3)
>>> for value in [1.0, 2.0, 3.0, 4.0]:
...     window.add(value)
>>> window.mean(), len(window)
(3.0, 3)
>>> RollingMean.load(window.dump(), 3).mean() == window.mean()
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streaming.errors import SnapshotCorruptError
from streaming.kernel import R_ADDED, R_COUNT, R_HEAD, R_TOTAL, ROLLING_SIZE

__all__ = ["RollingMean"]


class RollingMean:
    """The mean of the last ``size`` values added (``nan`` before any).

    Parameters
    ----------
    size
        How many values the window holds (at least 1).

    Examples
    --------
    >>> window = RollingMean(2)
    >>> window.mean()
    nan
    >>> window.add(0.5); window.add(1.5); window.add(2.5)
    >>> window.mean()
    2.0
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a rolling window holds at least 1 value, not {size}")
        self.size = size
        # a ring of doubles and its running figures (streaming.kernel's R_* indices): a compiled challenger's kernel
        # adds to them in place by the same operations as add does here
        self.ring = np.zeros(size)
        self.state = np.zeros(ROLLING_SIZE)

    def __len__(self) -> int:
        return int(self.state[R_COUNT])

    @property
    def values(self) -> list[float]:
        """The window's values, oldest first."""
        count, head = int(self.state[R_COUNT]), int(self.state[R_HEAD])
        ring = self.ring.tolist()
        return ring[:count] if count < self.size else ring[head:] + ring[:head]

    def add(self, value: float) -> None:
        total, added, head, count = self.state.tolist()
        slot = int(head)
        if count == self.size:
            total -= float(self.ring[slot])  # the oldest value, overwritten now
        else:
            count += 1.0
        self.ring[slot] = value
        self.state[:] = (total + value, added + 1.0, (slot + 1) % self.size, count)
        if added + 1.0 >= self.size:
            self.resum()

    def resum(self) -> None:
        """Recount the running sum exactly (once per window of values added: rounding never builds up)."""
        self.state[R_TOTAL], self.state[R_ADDED] = math.fsum(self.values), 0.0

    def mean(self) -> float:
        """The mean over the window: its sum kept as values come and go, recomputed exactly every ``size`` values so
        rounding never builds up."""
        n = self.state[R_COUNT]
        return float(self.state[R_TOTAL] / n) if n else math.nan

    def dump(self) -> dict[str, Any]:
        """``size``, the values (little-endian doubles, oldest first) and the running sum with its count (so a restore
        goes on with the same rounding)."""
        values = np.array(self.values, "<f8").tobytes()
        total, added = float(self.state[R_TOTAL]), int(self.state[R_ADDED])
        return {"size": self.size, "values": values, "total": total, "added": added}

    @classmethod
    def load(cls, doc: dict[str, Any] | None, size: int) -> RollingMean:
        """From :meth:`dump` (``None``: empty); another ``size`` keeps the newest values that fit."""
        window = cls(size)
        if doc is None:
            return window
        try:
            values = np.frombuffer(doc["values"], "<f8").tolist()
            total, added = float(doc["total"]), int(doc["added"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"a rolling window's state is malformed ({exc!r})") from None
        if int(doc.get("size", size)) == size:
            if len(values) > size:
                raise SnapshotCorruptError(f"a rolling window of {size} holds {len(values)} values")
            window.ring[: len(values)] = values
            window.state[:] = (total, added, len(values) % size, len(values))
        else:
            for value in values[-size:]:
                window.add(value)
        return window
