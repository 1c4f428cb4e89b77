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
from collections import deque
from typing import Any

import numpy as np

from streaming.errors import SnapshotCorruptError

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
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0
        self.added = 0  # values added since the sum was last recomputed

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: float) -> None:
        values = self.values
        if len(values) == self.size:
            self.total -= values[0]
        values.append(value)
        self.total += value
        self.added += 1
        if self.added >= self.size:  # the running sum, recomputed exactly once per window: rounding never builds up
            self.total, self.added = math.fsum(values), 0

    def mean(self) -> float:
        """The mean over the window: its sum kept as values come and go, recomputed exactly every ``size`` values so
        rounding never builds up."""
        n = len(self.values)
        return self.total / n if n else math.nan

    def dump(self) -> dict[str, Any]:
        """``size``, the values (little-endian doubles, oldest first) and the running sum with its count (so a restore
        goes on with the same rounding)."""
        values = np.array(self.values, "<f8").tobytes()
        return {"size": self.size, "values": values, "total": self.total, "added": self.added}

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
            window.values.extend(values)
            window.total, window.added = total, added
        else:
            for value in values[-size:]:
                window.add(value)
        return window
