"""The storage layer: numbered, immutable model versions and the control state of a model, in Redis.

It stores plain documents (msgpack) and knows nothing of river or of the monitor: the snapshot format
(``codec``, with ``packing``: msgpack that keeps the packed long lists of names between snapshots), the
version store (``store``), the writer lease (``lease``), operator and monitor actions (``control``), the
audit log and the version log (``audit``), the learner's status and metric history (``status``), the
monitors' shared cursor (``cursor``), data-quality incidents (``incidents``), what each version is now
(``states``), the key layout (``keys``) and the Lua scripts behind every state change (``scripts``,
``lua/``). Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real types for type checkers; at run time each name is imported on first use (__getattr__)
    from snapshotter.codec import FORMAT_VERSION, SnapshotState, VersionMeta, decode_snapshot, encode_snapshot
    from snapshotter.connection import connect_redis
    from snapshotter.control import ControlPlane
    from snapshotter.keys import Keys
    from snapshotter.lease import Lease
    from snapshotter.states import version_states
    from snapshotter.store import VersionStore, open_store

__all__ = [
    "FORMAT_VERSION",
    "ControlPlane",
    "Keys",
    "Lease",
    "SnapshotState",
    "VersionMeta",
    "VersionStore",
    "connect_redis",
    "decode_snapshot",
    "encode_snapshot",
    "open_store",
    "version_states",
]

_WHERE = {
    "FORMAT_VERSION": "snapshotter.codec",
    "ControlPlane": "snapshotter.control",
    "Keys": "snapshotter.keys",
    "Lease": "snapshotter.lease",
    "SnapshotState": "snapshotter.codec",
    "VersionMeta": "snapshotter.codec",
    "VersionStore": "snapshotter.store",
    "connect_redis": "snapshotter.connection",
    "decode_snapshot": "snapshotter.codec",
    "encode_snapshot": "snapshotter.codec",
    "open_store": "snapshotter.store",
    "version_states": "snapshotter.states",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'snapshotter' has no attribute {name!r}")
