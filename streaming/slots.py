"""Slots: where each vocabulary entry's weight is among the stored weights (a state document's
``vocabulary.positions``, the name it is stored under).

A snapshot stores the weights as their names in creation order plus one byte string of doubles
(:mod:`streaming.weights`), and the vocabulary as the values of each string feature and the numeric features
(:mod:`streaming.vocabulary`). An engine that keeps its weights in an array (:mod:`streaming.compiled`) restores
them into columns 0..n-1 in stored order, and needs each vocabulary entry's column: without an index, that is
one ``f"{feature}_{value}"`` string and one lookup among 100k names per category (~30–50 ms at 100k weights).
The positions are that index, stored: for each entry, the position of its weight (river's input name: the
feature for a number, ``feature_value`` for a category) among the names, or :data:`NO_WEIGHT`; per string
feature and for the numeric features, little-endian int32, aligned with the vocabulary's lists::

    "positions": {"categories": {feature: <int32le per value>}, "numeric": <int32le per numeric feature>}

They are derived from the names, so any engine writes them (:func:`slots_of`, or :class:`SlotFinder`
from an engine's own maps) and both engines write the same bytes. A reader trusts them only as far as it can
check cheaply (:func:`stored_columns`: lengths, ranges) and otherwise looks the names up, as for the versions
written before positions were stored (the field is optional within snapshot format 2).

>>> doc = slots_of({"month": ["Feb", "Mar"]}, ["pages"], ["pages", "month_Feb"])
>>> doc["categories"]["month"].hex(), doc["numeric"].hex()
('01000000ffffffff', '00000000')
>>> stored_columns(doc["categories"]["month"], 2, n=2)
([1, -1], False)
>>> stored_columns(doc["categories"]["month"], 3, n=2) is None  # one position per value, or not trusted
True
>>> names_agree(["pages", "month_Feb"], "month_", {"Feb": None, "Mar": None}, [1, -1])
True
>>> names_agree(["pages", "month_Feb"], "month_", {"Feb": None, "Mar": None}, [0, -1])  # shifted: not trusted
False
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["NO_WEIGHT", "NUMERIC", "SlotFinder", "names_agree", "pack_slots", "slots_of", "stored_columns"]

#: The position of a vocabulary entry that has no weight yet.
NO_WEIGHT = -1
#: :class:`SlotFinder`'s key for the numeric features (a string feature's key is its name).
NUMERIC = ("numeric",)
_NONE_YET: npt.NDArray[np.int64] = np.zeros(0, np.int64)


def pack_slots(positions: Iterable[int], n: int) -> bytes:
    """``n`` positions as the state document stores them: little-endian signed 32-bit integers."""
    return struct.pack(f"<{n}i", *positions)


def slots_of(categories: dict[str, list[str]], numeric: list[str], names: list[str]) -> dict[str, Any]:
    """The ``positions`` of a vocabulary (``categories``, ``numeric``) over the weights ``names`` (creation order)."""
    index = dict(zip(names, range(len(names)), strict=True))
    return {
        "categories": {
            feature: pack_slots(map(index.get, map(f"{feature}_".__add__, values), repeat(NO_WEIGHT)), len(values))
            for feature, values in categories.items()
        },
        "numeric": pack_slots(map(index.get, numeric, repeat(NO_WEIGHT)), len(numeric)),
    }


class SlotFinder:
    """The positions from an engine's own ``entry → column`` maps, kept between snapshots.

    An entry's position never changes once it has a weight (columns and their creation order only grow), so
    each list's leading run of entries with weights is kept and only the entries after it are looked up: a
    snapshot of a 100k-weight model looks up its new entries only.

    >>> finder = SlotFinder()
    >>> where = finder.where(order=np.array([1, 0]), n=3)  # column 1 was created first
    >>> finder.find("month", ["Feb", "Mar", "Apr"], {"Feb": 0, "Mar": 1, "Apr": 2}.get, where).hex()
    '0100000000000000ffffffff'
    >>> finder.known["month"].tolist()  # "Apr" (column 2, created after the capture) is looked up again next time
    [1, 0]
    """

    def __init__(self) -> None:
        self.known: dict[Any, npt.NDArray[np.int64]] = {}

    @staticmethod
    def where(order: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
        """Column → position among weights created in ``order`` (of the first ``n`` columns); ``[n]``: none."""
        where = np.full(n + 1, NO_WEIGHT, np.int64)
        where[order] = np.arange(len(order))
        return where

    def find(
        self, key: Any, entries: list[str], column_of: Callable[[str, int], int], where: npt.NDArray[np.int64]
    ) -> bytes:
        """The packed positions of ``entries`` (a list that only grows at the end, under ``key``); ``column_of(entry,
        n)`` is the entry's column or ``n`` for none (``dict.get``); a column beyond ``where`` counts as none."""
        n = len(where) - 1
        done = self.known.get(key, _NONE_YET)
        start = len(done)
        if start >= len(entries):
            return done[: len(entries)].astype("<i4").tobytes()
        columns = np.fromiter(map(column_of, entries[start:], repeat(n)), np.int64, len(entries) - start)
        tail = where[np.minimum(columns, n)]
        positions = np.concatenate([done, tail]) if start else tail
        missing = np.flatnonzero(positions < 0)
        self.known[key] = positions[: missing[0]] if len(missing) else positions
        return positions.astype("<i4").tobytes()


def stored_columns(raw: Any, count: int, n: int) -> tuple[list[int], bool] | None:
    """``count`` stored positions as columns (weights loaded in stored order into columns 0..n-1) and whether every
    entry has one, or ``None`` where they are absent or fail the checks (one per entry, each below ``n`` and at
    least :data:`NO_WEIGHT`): the caller looks the names up instead."""
    if type(raw) is not bytes or len(raw) != 4 * count:
        return None
    columns = np.frombuffer(raw, "<i4")
    lowest = int(columns.min()) if count else 0
    if lowest < NO_WEIGHT or (count and int(columns.max()) >= n):
        return None
    return columns.tolist(), lowest >= 0


def names_agree(names: list[str], prefix: str, entries: dict[str, Any], columns: list[int]) -> bool:
    """A spot check of stored positions against the weights' ``names``: the first and the last of ``entries`` (an
    insertion-ordered map: a feature's values, with ``prefix`` ``"feature_"``, or the numeric features with ``""``)
    name the weights their ``columns`` say, where they have one. An index shifted or misaligned fails it; O(1)."""
    if not columns:
        return True
    first, last = columns[0], columns[-1]
    return (first == NO_WEIGHT or names[first] == prefix + next(iter(entries))) and (
        last == NO_WEIGHT or names[last] == prefix + next(reversed(entries))
    )
