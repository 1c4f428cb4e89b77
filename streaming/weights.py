"""Weights as the snapshot stores them: the names in creation order and one byte string of little-endian doubles.

Snapshot format version 2 writes a model's weights as ``{"names": [...], "float64le": <bytes>}``
(:mod:`snapshotter.codec`). :class:`PackedWeights` is that form in memory, so an engine that keeps its
weights in an array (:mod:`streaming.compiled`) hands its doubles over as bytes when it is captured and reads
them back with one ``np.frombuffer`` when it is restored: no 100k-entry ``{name: float}`` dict on either way.
The river engine reads the same form as a dict (:meth:`PackedWeights.to_dict`), so either engine restores
what the other wrote, bit for bit.

>>> packed = PackedWeights.of_dict({"a": 0.1, "b": -2.5})
>>> len(packed), packed.names, packed.float64le[:8].hex()
(2, ['a', 'b'], '9a9999999999b93f')
>>> packed.to_dict()
{'a': 0.1, 'b': -2.5}
>>> PackedWeights.from_document({"names": ["a"], "float64le": b"\\x00" * 16})
Traceback (most recent call last):
...
streaming.errors.SnapshotCorruptError: snapshot model weights: names and values differ in number
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from streaming.errors import SnapshotCorruptError

__all__ = ["PackedWeights"]


@dataclasses.dataclass(frozen=True)
class PackedWeights:
    """Weight names in the order the weights were created, and the weights as little-endian IEEE 754 doubles."""

    names: list[str]
    float64le: bytes

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def of_dict(cls, weights: dict[str, float]) -> PackedWeights:
        """A ``{name: weight}`` map (river's, insertion-ordered) packed."""
        return cls(list(weights), struct.pack(f"<{len(weights)}d", *weights.values()))

    @classmethod
    def from_document(cls, doc: Any) -> PackedWeights:
        """The stored form (a msgpack map ``names`` / ``float64le``), checked."""
        if not isinstance(doc, dict) or not isinstance(doc.get("float64le"), bytes):
            raise SnapshotCorruptError("snapshot model weights are not packed as format version 2 says")
        names, raw = doc.get("names"), doc["float64le"]
        if not isinstance(names, list) or len(raw) != 8 * len(names):
            raise SnapshotCorruptError("snapshot model weights: names and values differ in number")
        return cls(names, raw)

    def document(self) -> dict[str, Any]:
        """The stored form: what snapshot format version 2 writes under ``model.weights``."""
        return {"names": self.names, "float64le": self.float64le}

    def to_dict(self) -> dict[str, float]:
        """The ``{name: weight}`` map (format version 1's shape, river's ``_weights``)."""
        return dict(zip(self.names, struct.unpack(f"<{len(self.names)}d", self.float64le), strict=True))
