"""Numbered, immutable model versions in Redis: format, store, lease and restore."""

from snapshotter.codec import FORMAT_VERSION, SnapshotState, VersionMeta, decode_snapshot, encode_snapshot
from snapshotter.connection import connect_redis
from snapshotter.keys import Keys
from snapshotter.lease import Lease
from streaming.learner.restore import restore_head, restore_state
from snapshotter.store import VersionStore

__all__ = [
    "FORMAT_VERSION",
    "Keys",
    "Lease",
    "SnapshotState",
    "VersionMeta",
    "VersionStore",
    "connect_redis",
    "decode_snapshot",
    "encode_snapshot",
    "restore_head",
    "restore_state",
]
