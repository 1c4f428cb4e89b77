"""msgpack a snapshot document again and again, re-using the bytes of its long lists of strings (pure, no I/O).

A learner snapshots every 0.25 s; a 100k-weight model's document holds ~200k strings (the weight names and the
vocabulary), almost all of them the same as in the previous snapshot: those lists only grow at the end. A
:class:`Packer` keeps the packed bytes of every list of at least :data:`LONG` strings it packed, by its path in
the document, and packs only the new tail when the list still starts with the one it packed (checked, not
assumed: anything else packs afresh). The bytes are exactly ``msgpack.packb(doc, use_bin_type=True)``'s, so
readers see no difference: the maps on the way to those lists are written key by key with the same headers.

>>> import msgpack
>>> packer = Packer()
>>> doc = {"spec": {"kind": "lr"}, "model": {"names": [f"f_{i}" for i in range(600)], "w": b"\\x00" * 8}}
>>> packer.pack(doc) == msgpack.packb(doc, use_bin_type=True)
True
>>> doc["model"]["names"].append("f_new")  # grown at the end: only the tail is packed
>>> packer.pack(doc) == msgpack.packb(doc, use_bin_type=True), packer.reused
(True, 600)
>>> doc["model"]["names"][0] = "changed"  # anything else: packed afresh
>>> packer.pack(doc) == msgpack.packb(doc, use_bin_type=True), packer.reused
(True, 0)
>>> early = {"spec": Packed(msgpack.packb({"kind": "lr"})), "model": doc["model"]}  # packed before: as it is
>>> packer.pack(early) == msgpack.packb(doc, use_bin_type=True)
True
>>> only = Packer(walk=frozenset({"model"}))  # walk the model's maps only; the rest is packed whole
>>> only.pack(doc) == only.pack(doc) == msgpack.packb(doc, use_bin_type=True), only.reused
(True, 601)
"""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec

__all__ = ["LONG", "Packed", "Packer", "packb"]

#: Lists of strings at least this long are kept packed between calls (shorter ones cost less to pack than to check).
LONG = 512
_MAX_MAP = 512  # maps walked key by key to reach long lists; larger maps are packed whole
#: a long list packed afresh is packed this many items per C call: one call holds the GIL, and a learner thread
#: waits for it (100k names in one call: ~10 ms on a busy machine; 4096: well under 1 ms)
_CHUNK = 4096


class Packed(bytes):
    """A value already packed (``msgpack.packb(value, use_bin_type=True)``): a :class:`Packer` writes these bytes
    where the value would be, so a part of a document can be packed early (a copy the live state cannot change)."""


_ENCODE = msgspec.msgpack.Encoder().encode


def packb(value: Any) -> bytes:
    """``msgpack.packb(value, use_bin_type=True)``'s bytes, written by msgspec's encoder (about 4x faster).

    For the documents livelearn packs — maps, lists, tuples, strings, bytes, integers, floats, booleans and
    ``None`` — the two write the same bytes, each value in its shortest form (``tests/test_packing.py`` compares them
    on generated documents and at every size boundary, and the test suite checks every document it packs against
    ``msgpack.packb``). What msgspec's encoder refuses (a subclass of ``str``, ``int`` or ``float``, such as
    :class:`Packed` or NumPy's ``float64``; an integer out of range; too deep a document) is packed by msgpack, so
    the bytes, or the error, are msgpack's. Outside that domain the two differ: msgspec writes sets, dates, UUIDs,
    decimals, enums and dataclasses that msgpack refuses, and a ``msgpack.ExtType`` as an array; no document
    livelearn packs holds one.

    >>> doc = {"n": 3, "p": [0.25, -1, "x", b"ab", None, True], "big": 2**64 - 1}
    >>> packb(doc) == msgpack.packb(doc, use_bin_type=True)
    True
    """
    try:
        return _ENCODE(value)
    except Exception:  # noqa: BLE001 — whatever it refuses, msgpack packs (or refuses) as it always did
        packed: bytes = msgpack.packb(value, use_bin_type=True)
        return packed


def _packb(value: Any) -> bytes:
    if type(value) is Packed:
        return value
    return packb(value)


def _header(n: int, fix: int, small: int, large: int) -> bytes:
    """The msgpack header of an array or map of ``n`` items, in its shortest form (as ``packb`` writes it)."""
    if n < 16:
        return bytes([fix | n])
    if n < 1 << 16:
        return bytes([small]) + n.to_bytes(2, "big")
    return bytes([large]) + n.to_bytes(4, "big")


def _skip(n: int) -> int:
    """Bytes of the header of an ``n``-item array."""
    return 1 if n < 16 else 3 if n < 1 << 16 else 5


class Packer:
    """``msgpack.packb(doc, use_bin_type=True)``, re-using the packed long lists of strings of the previous calls.

    ``reused``: how many list items the last :meth:`pack` did not pack again (for tests and benchmarks).
    """

    def __init__(self, walk: frozenset[str] | None = None) -> None:
        self.walk = walk  # top-level keys whose maps are walked to their long lists (None: all)
        self._lists: dict[tuple[Any, ...], tuple[list[str], bytes]] = {}
        self.reused = 0

    def pack(self, doc: Any) -> bytes:
        self.reused = 0
        if self.walk is None or type(doc) is not dict or len(doc) > _MAX_MAP:
            return self._pack(doc, ())
        parts = [_header(len(doc), 0x80, 0xDE, 0xDF)]
        for key, item in doc.items():  # the other values are packed whole: walking small maps costs more
            parts += (_packb(key), self._pack(item, (key,)) if key in self.walk else _packb(item))
        return b"".join(parts)

    def _pack(self, value: Any, path: tuple[Any, ...]) -> bytes:
        if type(value) is dict and len(value) <= _MAX_MAP:
            parts = [_header(len(value), 0x80, 0xDE, 0xDF)]
            for key, item in value.items():
                parts += (_packb(key), self._pack(item, (*path, key)))
            return b"".join(parts)
        if type(value) is list and len(value) >= LONG:
            return _header(len(value), 0x90, 0xDC, 0xDD) + self._items(value, path)
        return _packb(value)

    def _items(self, items: list[Any], path: tuple[Any, ...]) -> bytes:
        """The packed items of a long list (no header): the kept bytes of its unchanged start plus its new tail."""
        kept = self._lists.get(path)
        if kept is not None and len(kept[0]) <= len(items) and items[: len(kept[0])] == kept[0]:
            tail = items[len(kept[0]) :]
            if all(type(x) is str for x in tail):
                self.reused = self.reused + len(kept[0])
                packed = kept[1] + b"".join(_packb(x) for x in tail) if tail else kept[1]
                self._lists[path] = (list(items), packed) if tail else kept
                return packed
        chunks = (items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK))
        packed = b"".join(_packb(chunk)[_skip(len(chunk)) :] for chunk in chunks)  # the same bytes as one call's
        if all(type(x) is str for x in items):
            self._lists[path] = (list(items), packed)
        else:
            self._lists.pop(path, None)
        return packed
