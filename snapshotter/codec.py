"""The snapshot format: an explicit, versioned msgpack document, checked by SHA-256.

A snapshot *blob* holds what is needed to predict and keep learning identically::

    {"format": "livelearn.snapshot", "format_version": 2,
     "spec": {...model spec...}, "model": {...scaler, weights, intercept, optimizer...},
     "metrics": {...cumulative and rolling metric state...},
     "counters": {"events_seen": int, "events_learned": int, "dead_lettered": int, "duplicates": int},
     "stream": {"dedupe": {...the idempotence window...}}}

Fields added within a format version are optional for readers (``stream``, ``arms``: the challengers learning in
shadow, each with its spec, model, metrics and comparison — :mod:`streaming.learner.arms` —, ``model.vocabulary``,
``model.vocabulary.positions``: where each category's weight is among the weights, little-endian int32 per value,
-1 for none — derived from the names, it only spares the compiled engine a lookup per category on restore).
Format version 2 differs from 1 in one field: ``model.weights`` (a map of input name to weight in
version 1) is ``{"names": [...], "float64le": <bytes>}`` — the names in the weights' insertion order and
the weights as little-endian IEEE 754 doubles, bit for bit. Unpacking a 100k-entry msgpack map costs
~10x more than a list of names and one byte string (msgpack interns every map key), so restoring a big
model is that much cheaper. Decoding expands it back to the version-1 map, so readers see one shape;
every version this livelearn ever wrote (1 and 2) stays readable.

Its metadata (number, offsets, metrics, checksum, parent...) is stored next to it as
:class:`VersionMeta`. Decoding verifies the checksum first and refuses unknown formats.

>>> blob = encode_snapshot(SnapshotState(spec={"kind": "k"}, model={}, metrics={}, counters={}))
>>> decode_snapshot(blob, sha256_hex(blob)).spec
{'kind': 'k'}
>>> state = SnapshotState(spec={}, model={"weights": {"a": 0.1, "b": -2.5}}, metrics={}, counters={})
>>> decode_snapshot(encode_snapshot(state), sha256_hex(encode_snapshot(state))).model
{'weights': {'a': 0.1, 'b': -2.5}}
>>> decode_snapshot(blob + b"x", sha256_hex(blob))
Traceback (most recent call last):
...
streaming.errors.SnapshotCorruptError: snapshot checksum mismatch: stored blob hashes to ..., metadata says ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import msgpack

from snapshotter.packing import Packed, Packer, packb
from streaming.errors import SnapshotCorruptError, SnapshotFormatError
from streaming.weights import PackedWeights

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_FORMAT_VERSIONS",
    "EncodedSnapshot",
    "Packed",
    "SnapshotState",
    "VersionMeta",
    "decode_snapshot",
    "encode_snapshot",
    "gc_paused",
    "pack",
    "sha256_hex",
    "unpack",
]

FORMAT = "livelearn.snapshot"
FORMAT_VERSION = 2
#: format versions this livelearn decodes (it writes :data:`FORMAT_VERSION`)
READABLE_FORMAT_VERSIONS = (1, 2)


#: one per process (a learner encodes one model's snapshots); the long lists of names are in the model's maps
_PACKER, _PACKER_LOCK = Packer(walk=frozenset({"model"})), threading.Lock()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (back on after, if it was on): encoding and decoding a large snapshot
    allocates hundreds of thousands of objects, none of them garbage, and full collections over them would
    cost more than the work itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def pack(doc: Any) -> bytes:
    """msgpack with bin types; the only serialiser used for Redis values."""
    return packb(doc)


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


@dataclasses.dataclass(frozen=True)
class SnapshotState:
    """The learned state inside one snapshot blob."""

    spec: dict[str, Any]
    model: dict[str, Any]
    metrics: dict[str, Any]
    counters: dict[str, int]
    stream: dict[str, Any] = dataclasses.field(default_factory=dict)  # position-bound state, e.g. dedupe
    arms: dict[str, Any] = dataclasses.field(default_factory=dict)  # the challengers, by name (none: not written)


@dataclasses.dataclass(frozen=True)
class EncodedSnapshot:
    """A :class:`SnapshotState` already encoded: immutable bytes, whatever the live state does next.

    A learner encodes its state at a stream position and writes the version once everything it produced up
    to there is delivered; meanwhile it keeps learning.
    """

    blob: bytes
    sha256: str
    spec: dict[str, Any]
    counters: dict[str, int]

    @classmethod
    def of(cls, state: SnapshotState) -> EncodedSnapshot:
        blob = encode_snapshot(state)
        return cls(blob, sha256_hex(blob), dict(state.spec), dict(state.counters))


@dataclasses.dataclass(frozen=True)
class VersionMeta:
    """Metadata of one numbered version; immutable once written."""

    number: int
    created_at: float
    writer: str
    lease_token: int
    events_seen: int
    events_learned: int  # events_seen / events_learned: every event scored / learned, across rollbacks
    offsets: dict[str, dict[str, int]]
    metrics: dict[str, dict[str, float]]
    parent: int | None
    spec: dict[str, Any]
    format_version: int
    sha256: str
    size_bytes: int
    stable: bool = False
    epoch: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: SGD steps in this version's weights: rewinds on a rollback (the model is the target's), unlike the
    #: stream counters above; ``None`` for versions written before 2026-11
    model_events_learned: int | None = None

    @property
    def position(self) -> int:
        """Its stream position: the sum of its offsets (what metric samples call ``stream_position``)."""
        return sum(sum(partitions.values()) for partitions in self.offsets.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> VersionMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def _stored_weights(weights: Any) -> Any:
    """``model.weights`` as format version 2 stores it: a map of weights packed, or already packed (an engine
    with its weights in an array packs them itself: :meth:`PackedWeights.document`)."""
    if isinstance(weights, PackedWeights):
        return weights.document()
    if isinstance(weights, dict):
        return PackedWeights.of_dict(weights).document()
    return weights


def _stored_model(model: dict[str, Any]) -> dict[str, Any]:
    return {**model, "weights": _stored_weights(model["weights"])} if "weights" in model else model


def _read_model(model: Any, version: int, packed_weights: bool) -> Any:
    """A ``model`` as decoded: version 2's packed weights expanded to a map, or kept packed (see below)."""
    if version == 2 and isinstance(model, dict) and "weights" in model:
        packed = PackedWeights.from_document(model["weights"])
        with gc_paused():
            model["weights"] = packed if packed_weights else packed.to_dict()
    return model


def encode_snapshot(state: SnapshotState) -> bytes:
    """Serialise learned state into a snapshot blob (format version :data:`FORMAT_VERSION`)."""
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION}
    doc.update({f.name: getattr(state, f.name) for f in dataclasses.fields(state)})  # shallow: no deep copy
    if not state.arms:
        del doc["arms"]  # optional within format version 2: a learner without challengers writes what it always did
    with gc_paused():
        if "weights" in state.model:
            doc["model"] = _stored_model(state.model)
        if state.arms:  # each challenger's model stored as the champion's is
            doc["arms"] = {
                name: {**arm, "model": _stored_model(arm["model"])} if "model" in arm else arm
                for name, arm in state.arms.items()
            }
        with _PACKER_LOCK:  # the same bytes as pack(doc); the long lists of names packed once (snapshotter.packing)
            return _PACKER.pack(doc)


def decode_snapshot(blob: bytes, expected_sha256: str, *, packed_weights: bool = False) -> SnapshotState:
    """Verify and decode a snapshot blob of any readable format version, or raise :class:`SnapshotCorruptError`.

    ``model.weights`` is a ``{name: weight}`` map, or with ``packed_weights`` a :class:`PackedWeights` (either
    engine's ``load_state`` reads both; the compiled engine restores a packed one straight into its array).
    """
    actual = sha256_hex(blob)
    if actual != expected_sha256:
        raise SnapshotCorruptError(
            f"snapshot checksum mismatch: stored blob hashes to {actual[:12]}, metadata says {expected_sha256[:12]}"
        )
    try:
        with gc_paused():
            doc = unpack(blob)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise SnapshotCorruptError(f"snapshot blob is not valid msgpack: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotCorruptError("blob is not a livelearn snapshot")
    version = doc.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        readable = ", ".join(map(str, READABLE_FORMAT_VERSIONS))
        if isinstance(version, int) and version > max(READABLE_FORMAT_VERSIONS):
            raise SnapshotFormatError(
                f"snapshot format_version {version} was written by a newer livelearn; this one reads {readable}. "
                "Upgrade livelearn here: serving and every other reader first, then the learners"
            )
        raise SnapshotCorruptError(f"snapshot format_version {version!r} is not one livelearn reads ({readable})")
    try:
        model = _read_model(doc["model"], version, packed_weights)
        arms = doc.get("arms") or {}
        for arm in arms.values():
            if isinstance(arm, dict) and "model" in arm:
                arm["model"] = _read_model(arm["model"], version, packed_weights)
        return SnapshotState(doc["spec"], model, doc["metrics"], doc["counters"], doc.get("stream") or {}, arms)
    except KeyError as exc:
        raise SnapshotCorruptError(f"snapshot lacks field {exc}") from None
