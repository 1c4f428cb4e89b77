"""Versions carried out of Redis and back in: exports, backups and imports through object storage.

A location (:mod:`snapshotter.objects`: a directory or a bucket) holds, per model::

    <model>/versions/<number>.meta                   the version's metadata as Redis holds it (msgpack)
    <model>/versions/<number>.blob                   its snapshot as Redis holds it (msgpack)
    <model>/join/<number>.msgpack                    the label join's state stored with that version, when exported
    <model>/manifests/<UTC time>-<kind>-<id>.json    one per export or backup: what it covers, with checksums

(``<number>`` has ten digits, so listings sort by number.) An export writes its objects first and its manifest
last, so a manifest names only objects that are whole; an export that dies half way leaves objects no manifest
names, which the next one checks and names. Objects are written once: a different object at a version's path is a
conflict (:class:`~streaming.errors.ArchiveConflictError`), never overwritten. Each manifest records each version's
blob and metadata SHA-256 and the source store's version counter, so an import verifies every byte and a restore
numbers new versions above every number ever exported. Nothing is pickled: msgpack and JSON only.

Examples
--------
>>> import fakeredis, tempfile
>>> from snapshotter.codec import SnapshotState
>>> from snapshotter.objects import open_objects
>>> from snapshotter.store import VersionStore
>>> staging = VersionStore(fakeredis.FakeRedis(), "shop", promotion="immediate")
>>> for position in (100, 200):
...     _ = staging.write(SnapshotState(spec={}, model={"w": position}, metrics={}, counters={}), writer="a",
...                       lease_value=None, offsets={"events": {"0": position}}, metrics={}, parent=staging.head(),
...                       stable=True)
>>> objects = open_objects(tempfile.mkdtemp())
>>> export_versions(staging, objects, actor="op").written
(1, 2)
>>> production = VersionStore(fakeredis.FakeRedis(), "shop")
>>> archive = read_archive(objects, "shop")
>>> import_versions(production, objects, archive, actor="op").imported
(1, 2)
>>> production.raw(2) == staging.raw(2), production.head(), production.counter()
(True, None, 2)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from snapshotter.codec import unpack
from snapshotter.connection import as_bytes, as_text
from snapshotter.keys import MAX_VERSION
from snapshotter.objects import Objects
from snapshotter.store import VersionStore
from streaming.errors import (
    ArchiveConflictError,
    ArchiveCorruptError,
    ArchiveError,
    InputError,
    SnapshotCorruptError,
    VersionNotFoundError,
)

__all__ = [
    "ARCHIVE_FORMAT",
    "Archive",
    "ArchivedVersion",
    "ExportReport",
    "ImportReport",
    "export_versions",
    "held_as_archived",
    "import_versions",
    "read_archive",
    "version_number",
]

#: The archive layout's version; a reader refuses manifests of a newer one.
ARCHIVE_FORMAT = 1
#: Objects read or written at once (each a thread: object storage and Redis calls release the GIL).
_PARALLEL = 8


def _path(model: str, number: int, part: Literal["meta", "blob"]) -> str:
    return f"{model}/versions/{number:010d}.{part}"


def _join_path(model: str, number: int) -> str:
    return f"{model}/join/{number:010d}.msgpack"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[0-9a-f]{16}")  # a store's identity (:meth:`VersionStore.identity`)
_DIGITS = re.compile(r"0|[1-9][0-9]*")


def version_number(value: Any, what: str = "version") -> int:
    """A version number read from an archive: an integer (or its plain digits: a JSON key) from 1 to
    :data:`~snapshotter.keys.MAX_VERSION`, else ``ValueError``.

    >>> version_number("42"), version_number(7)
    (42, 7)
    >>> version_number(2**64)
    Traceback (most recent call last):
    ...
    ValueError: version must be a number from 1 to 9007199254740991, got 18446744073709551616
    """
    if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 16:
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_VERSION:
        raise ValueError(f"{what} must be a number from 1 to {MAX_VERSION}, got {value!r:.40}")
    return value


def _count(value: Any, what: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= MAX_VERSION:
        raise ValueError(f"{what} must be a whole number from {low} to {MAX_VERSION}, got {value!r:.40}")
    return value


def _finite(value: Any, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r:.40}")
    return float(value)


def _flag(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise ValueError(f"{what} must be true or false, got {value!r:.40}")
    return value


def _checksum(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"{what} must be a SHA-256 in 64 lowercase hex digits, got {value!r:.40}")
    return value


def _offsets(value: Any) -> dict[str, dict[str, int]]:
    """``{topic: {partition: offset}}`` as a version's metadata holds them (partitions as digits)."""
    if not isinstance(value, dict) or not all(
        isinstance(topic, str) and topic and isinstance(parts, dict) for topic, parts in value.items()
    ):
        raise ValueError(f"offsets must be a map of topic -> partition -> offset, got {value!r:.60}")
    for parts in value.values():
        for partition, offset in parts.items():
            if not isinstance(partition, str) or not _DIGITS.fullmatch(partition):
                raise ValueError(f"offsets: partition {partition!r:.20} is not a partition number")
            _count(offset, "an offset")
    return value


@dataclasses.dataclass(frozen=True)
class ArchivedVersion:
    """One version as a manifest names it."""

    number: int
    sha256: str  #: the blob's (the metadata's ``sha256`` says the same)
    meta_sha256: str  #: the packed metadata's
    size_bytes: int
    parent: int | None
    stable: bool  #: stable in the source store when exported (a rollback, unpin or retention may pick it)
    quarantined: int | None  #: the incident that quarantined it there, if one did
    created_at: float
    epoch: int
    events_seen: int
    offsets: dict[str, dict[str, int]]

    @classmethod
    def from_dict(cls, number: int, doc: Any) -> ArchivedVersion:
        """The entry a manifest holds for version ``number``, every field checked (a ``ValueError`` names the first
        that is not what livelearn writes: nothing of a bad entry reaches Redis)."""
        if not isinstance(doc, dict):
            raise ValueError(f"version {number}: its entry is not a map")
        try:
            return cls(
                number=number,
                sha256=_checksum(doc["sha256"], "sha256"),
                meta_sha256=_checksum(doc["meta_sha256"], "meta_sha256"),
                size_bytes=_count(doc["size_bytes"], "size_bytes"),
                parent=None if doc.get("parent") is None else version_number(doc["parent"], "parent"),
                stable=_flag(doc["stable"], "stable"),
                quarantined=None if doc.get("quarantined") is None else _count(doc["quarantined"], "quarantined", 1),
                created_at=_finite(doc["created_at"], "created_at"),
                epoch=_count(doc["epoch"], "epoch"),
                events_seen=_count(doc["events_seen"], "events_seen"),
                offsets=_offsets(doc["offsets"]),
            )
        except KeyError as exc:
            raise ValueError(f"version {number}: no {exc.args[0]}") from None
        except ValueError as exc:
            raise ValueError(f"version {number}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        del doc["number"]
        return doc


@dataclasses.dataclass(frozen=True)
class Archive:
    """What the manifests of one model at a location say, together (:func:`read_archive`)."""

    model: str
    where: str
    versions: dict[int, ArchivedVersion]
    manifests: tuple[str, ...]
    #: the highest version number any source store had handed out when it exported here (and every number here)
    counter: int
    #: version -> SHA-256 of the label join's state exported with it
    joins: dict[int, str]
    #: the newest manifest's view of its store: ``stable`` numbers, ``quarantined`` {number: incident}, ``stored``
    #: numbers (a backup with nothing new and the same view writes no manifest)
    marks: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: each manifest's (name, kind, the identity of the store that wrote it: ``None`` in a manifest written before
    #: stores had one), oldest first
    sources: tuple[tuple[str, str, str | None], ...] = ()
    #: the identity of the store whose manifest named each version first (``None``: not recorded)
    origins: dict[int, str | None] = dataclasses.field(default_factory=dict)

    def newest_stable(self, store: str | None = None) -> int | None:
        """The newest version that was stable (and not quarantined) where it came from; with ``store``, of the
        versions that store wrote (and those whose store was not recorded)."""
        stable = [
            n
            for n, v in self.versions.items()
            if v.stable and v.quarantined is None and (store is None or self.origins.get(n) in (store, None))
        ]
        return max(stable) if stable else None

    def stores(self, kind: str | None = None) -> list[str]:
        """The identities of the stores whose manifests (of ``kind``, else any) are here, oldest first."""
        found: list[str] = []
        for _name, what, store in self.sources:
            if store is not None and store not in found and kind in (None, what):
                found.append(store)
        return found


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What an export or backup did: the versions it wrote, those the location held already, its manifest."""

    written: tuple[int, ...]
    present: tuple[int, ...]
    missing: tuple[int, ...]  #: selected but dropped by retention before they were read
    manifest: str
    bytes_written: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What an import did: the versions it wrote, and those the store held already (the same, checked)."""

    imported: tuple[int, ...]
    present: tuple[int, ...]
    bytes_read: int
    seconds: float


def read_archive(objects: Objects, model: str) -> Archive:
    """Every manifest of ``model`` at ``objects``, together. Raises :class:`ArchiveCorruptError` when a manifest
    cannot be read (every field is checked) or two name different versions under one number.

    Whether a version is stable is what the newest manifest **of the store that wrote it** that saw it there says:
    each manifest records its store's identity and marks (``stable``, ``quarantined``, and the ``stored`` numbers
    they apply to). So a version a rollback abandoned after it was backed up stays so here after retention drops it
    from the store (the later manifests no longer see it: the last one that did still says), and another store that
    imported it says nothing of it. A quarantine, once recorded, stays (the first incident's id): an import back
    into the store does not bring the mark back there, nor does a manifest named earlier than it was written."""
    prefix = f"{model}/manifests/"
    names = sorted(name for name in objects.list(prefix) if name.endswith(".json"))  # by time: the stamp leads
    versions: dict[int, ArchivedVersion] = {}
    joins: dict[int, str] = {}
    counter = 0
    read: list[tuple[str, str, str | None, dict[str, Any]]] = []  # (name, kind, store, marks) of each manifest
    origins: dict[int, str | None] = {}
    for name in names:
        raw = objects.get(name)
        try:
            doc = json.loads(raw or b"")
            if not isinstance(doc, dict) or doc.get("model") != model:
                raise ValueError("not a livelearn manifest of this model")
            if _count(doc.get("archive_format", 0), "archive_format") > ARCHIVE_FORMAT:
                raise ArchiveError(
                    f"{name} at {objects.where} is archive format {doc['archive_format']}, newer than this "
                    f"livelearn reads ({ARCHIVE_FORMAT}): upgrade livelearn"
                )
            source = doc.get("source") or {}
            store = source.get("store_id")
            if store is not None and not (isinstance(store, str) and _TOKEN.fullmatch(store)):
                raise ValueError(f"source.store_id must be a store's identity, got {store!r:.40}")
            entries = doc["versions"]
            if not isinstance(entries, dict):
                raise ValueError("versions must be a map")
            listed = {(number := version_number(n)): ArchivedVersion.from_dict(number, v) for n, v in entries.items()}
            counter = max(counter, _count(source.get("counter") or 0, "source.counter"))
            join = doc.get("join")
            if isinstance(join, dict) and "version" in join and "sha256" in join:
                joins[version_number(join["version"], "join.version")] = _checksum(join["sha256"], "join.sha256")
            read.append((name, str(doc.get("kind", "")), store, _marks(doc.get("marks"))))
        except ArchiveError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            raise ArchiveCorruptError(f"manifest {name} at {objects.where} is unreadable: {exc}") from None
        for number, version in listed.items():
            known = versions.get(number)
            if known is not None and (known.sha256, known.meta_sha256) != (version.sha256, version.meta_sha256):
                raise ArchiveCorruptError(
                    f"manifests at {objects.where} name two different versions {number} ({known.sha256[:12]} and "
                    f"{version.sha256[:12]} in {name}"
                    + (", the same blob with other metadata" if known.sha256 == version.sha256 else "")
                    + ")"
                )
            versions[number] = version
            origins.setdefault(number, store)
    # objects an export wrote before it died, no manifest naming them: their numbers were handed out all the same
    written = [_number_of(path) for path in objects.list(f"{model}/versions/")]
    counter = max([counter, *versions, *(n for n in written if n is not None)])
    stable: dict[int, bool] = {}  # the newest view of its own store (or of a manifest with no store recorded)
    quarantined: dict[int, int] = {n: v.quarantined for n, v in versions.items() if v.quarantined is not None}
    for _name, _kind, store, marks in read:
        for number in marks.get("stored", ()):
            if number in versions and (store is None or origins[number] in (None, store)):
                stable[number] = number in marks["stable"]
                if number in marks["quarantined"]:
                    quarantined.setdefault(number, marks["quarantined"][number])  # the first one stays
    for number, version in versions.items():
        incident = quarantined.get(number)
        versions[number] = dataclasses.replace(
            version, stable=stable.get(number, version.stable) and incident is None, quarantined=incident
        )
    newest: dict[str, Any] = next((marks for *_, marks in reversed(read) if marks), {})
    return Archive(
        model,
        objects.where,
        dict(sorted(versions.items())),
        tuple(names),
        counter,
        joins,
        newest,
        tuple((name, kind, store) for name, kind, store, _ in read),
        origins,
    )


def _marks(found: Any) -> dict[str, Any]:
    """A manifest's ``marks`` (its store's stable, quarantined and stored versions), checked; ``{}`` when it has
    none (written before manifests recorded them)."""
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ValueError("marks must be a map")
    lists = {key: found.get(key, []) for key in ("stable", "stored")}
    incidents = found.get("quarantined") or {}
    if not all(isinstance(v, list) for v in lists.values()) or not isinstance(incidents, dict):
        raise ValueError("marks: stable and stored must be lists, quarantined a map")
    return {
        "stable": {version_number(n, "marks.stable") for n in lists["stable"]},
        "quarantined": {
            version_number(n, "marks.quarantined"): _count(i, "an incident", 1) for n, i in incidents.items()
        },
        "stored": {version_number(n, "marks.stored") for n in lists["stored"]},
    }


def held_as_archived(store: VersionStore, archive: Archive, numbers: Iterable[int]) -> set[int]:
    """Those of ``numbers`` that ``store`` holds byte for byte as ``archive`` does (one MGET of their metadata; the
    metadata names its blob's checksum, so the same metadata is the same version)."""
    wanted = [n for n in numbers if n in archive.versions]
    metas = store.client.mget([store.keys.meta(n) for n in wanted]) if wanted else []
    return {
        number
        for number, meta in zip(wanted, metas, strict=True)
        if meta is not None and _sha256(as_bytes(meta)) == archive.versions[number].meta_sha256
    }


def _number_of(path: str) -> int | None:
    """The version number of a ``versions/<number>.meta|blob`` path (``None``: another object — also one whose
    digits are beyond :data:`~snapshotter.keys.MAX_VERSION`, which no store ever hands out)."""
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
    if not stem.isascii() or not stem.isdigit() or len(stem) > 16 or int(stem) > MAX_VERSION:
        return None
    return int(stem)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parallel(work: Callable[[int], Any], numbers: Sequence[int]) -> Iterator[tuple[int, Any]]:
    """``work(n)`` for each of ``numbers``, a few at a time, in order (a chunk in memory at once)."""
    with ThreadPoolExecutor(_PARALLEL) as pool:
        for chunk in _chunks(numbers, _PARALLEL * 2):
            yield from zip(chunk, pool.map(work, chunk), strict=True)


def export_versions(
    store: VersionStore,
    objects: Objects,
    numbers: Iterable[int] | None = None,
    *,
    actor: str,
    kind: Literal["export", "backup"] = "export",
    source: str = "",
    missing_ok: bool = False,
    archive: Archive | None = None,
) -> ExportReport:
    """Write versions ``numbers`` of ``store`` (default: every stored one) and a manifest naming them to
    ``objects``; versions the location holds already (the same bytes) are named, not written again.

    Every blob is checked against its checksum before it leaves Redis (a corrupt one raises
    :class:`~streaming.errors.SnapshotCorruptError`, nothing of it is written). A version asked for by number that is
    not stored raises :class:`~streaming.errors.VersionNotFoundError`; one dropped by retention between the listing
    and the read is reported as ``missing`` (with ``missing_ok``, also one asked for: a backup racing retention).
    ``source`` describes the store (shown by ``versions import``). A backup with nothing new and a counter the
    location knows already writes no manifest (its ``manifest`` is then ``""``). ``archive``: the location as the
    caller read it already (:func:`read_archive`; read here when not given)."""
    started = time.monotonic()
    model = store.keys.model_name
    asked = numbers is not None
    stored = set(store.numbers())
    selected = sorted(set(numbers)) if numbers is not None else sorted(stored)
    absent = [n for n in selected if n not in stored]
    if asked and absent and not missing_ok:
        raise VersionNotFoundError(f"model {model!r} has no version {', '.join(map(str, absent))} to export")
    archive = archive if archive is not None else read_archive(objects, model)
    identity = store.identity()
    # a backup location is one store's: its marks say which of its versions a restore may start from
    others = [s for s in archive.stores("backup" if kind == "export" else None) if s != identity]
    if others:
        raise ArchiveConflictError(
            f"{objects.where} holds {'backups' if kind == 'export' else 'manifests'} of model {model!r} written by "
            f"another store ({others[0]}; this store is {identity}): {kind} to a location of this store's own"
        )
    stable, quarantined = set(store.stable_numbers()), store.quarantined()
    counter, head, serving, epoch = store.counter(), store.head(), store.serving(), store.epoch()
    entries: dict[int, ArchivedVersion] = {}
    sizes: dict[int, int] = {}

    def put(number: int) -> tuple[ArchivedVersion, bool, int] | None:
        raw = store.raw(number)
        if raw is None:
            return None
        meta_bytes, blob = raw
        try:
            meta = unpack(meta_bytes)
            said = meta["sha256"]
        except (ValueError, TypeError, KeyError) as exc:
            raise SnapshotCorruptError(
                f"metadata of version {number} of model {model!r} is unreadable: {exc}"
            ) from None
        if _sha256(blob) != said:
            raise SnapshotCorruptError(f"version {number} of model {model!r} fails its checksum in Redis: not exported")
        entry = ArchivedVersion(
            number=number,
            sha256=meta["sha256"],
            meta_sha256=_sha256(meta_bytes),
            size_bytes=len(blob),
            parent=meta.get("parent"),
            stable=number in stable and number not in quarantined,
            quarantined=quarantined.get(number),
            created_at=float(meta.get("created_at") or 0.0),
            epoch=int(meta.get("epoch") or 0),
            events_seen=int(meta.get("events_seen") or 0),
            offsets=meta.get("offsets") or {},
        )
        held = archive.versions.get(number)
        if held is not None and (held.sha256, held.meta_sha256) != (entry.sha256, entry.meta_sha256):
            raise ArchiveConflictError(
                f"{objects.where} holds another version {number} of model {model!r} (checksum {held.sha256[:12]}, "
                f"this store's {entry.sha256[:12]}"
                + (", the same blob with other metadata" if held.sha256 == entry.sha256 else "")
                + "): export to another location or model"
            )
        wrote_meta = objects.put_new(_path(model, number, "meta"), meta_bytes)
        wrote_blob = objects.put_new(_path(model, number, "blob"), blob)
        # new to the archive: written now, or by an export that died before its manifest named it
        return entry, wrote_meta or wrote_blob or held is None, len(blob) + len(meta_bytes)

    written: list[int] = []
    present: list[int] = []
    missing: list[int] = []
    for number, done in _parallel(put, selected):
        if done is None:
            missing.append(number)
            continue
        entry, wrote, size = done
        entries[number] = entry
        (written if wrote else present).append(number)
        sizes[number] = size if wrote else 0
    join = _export_join(store, objects, set(entries))
    marks = {
        "stable": sorted(stable),
        "quarantined": {str(n): i for n, i in sorted(quarantined.items())},
        "stored": sorted(stored),
    }
    same_marks = archive.marks == {"stable": set(stable), "quarantined": dict(quarantined), "stored": stored}
    if kind == "backup" and not written and join is None and counter <= archive.counter and same_marks:
        return ExportReport((), tuple(present), tuple(missing), "", 0, time.monotonic() - started)
    stamp = dt.datetime.now(dt.UTC)
    manifest = f"{model}/manifests/{stamp:%Y%m%dT%H%M%S%f}Z-{kind}-{secrets.token_hex(3)}.json"
    doc = {
        "archive_format": ARCHIVE_FORMAT,
        "kind": kind,
        "model": model,
        "created_at": stamp.timestamp(),
        "actor": actor,
        "livelearn": _livelearn_version(),
        "source": {
            "store": source,
            "store_id": identity,
            "counter": counter,
            "head": head,
            "serving": serving,
            "epoch": epoch,
        },
        "versions": {str(n): e.to_dict() for n, e in sorted(entries.items())},
        "join": join,
        "marks": marks,
    }
    objects.put_new(manifest, json.dumps(doc, indent=1, sort_keys=True).encode())
    return ExportReport(
        tuple(written), tuple(present), tuple(missing), manifest, sum(sizes.values()), time.monotonic() - started
    )


def _export_join(store: VersionStore, objects: Objects, exported: set[int]) -> dict[str, Any] | None:
    """The label join's state, when the version stored with it is among ``exported`` (only the newest version's is
    kept in Redis): written beside it, so a restore of that version goes on with its waiting events."""
    fields = {as_text(k): as_bytes(v) for k, v in store.client.hgetall(store.keys.join).items()}
    if "state" not in fields or not fields.get("version", b"").isdigit():
        return None
    number = int(fields["version"])
    if number not in exported or _sha256(fields["state"]) != as_text(fields.get("sha256", b"")):
        return None
    objects.put_new(_join_path(store.keys.model_name, number), fields["state"])
    return {"version": number, "sha256": _sha256(fields["state"])}


def _livelearn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("livelearn")
    except PackageNotFoundError:
        return "unknown"


def fetch_version(objects: Objects, archive: Archive, number: int) -> tuple[bytes, bytes]:
    """Version ``number``'s packed metadata and blob from the archive, each verified against the manifest's
    checksums. Raises :class:`ArchiveCorruptError` (naming the object) when one does not match or is missing."""
    entry = archive.versions.get(number)
    if entry is None:
        raise VersionNotFoundError(f"{archive.where} holds no version {number} of model {archive.model!r}")
    meta_path, blob_path = _path(archive.model, number, "meta"), _path(archive.model, number, "blob")
    meta, blob = objects.get(meta_path), objects.get(blob_path)
    for path, data, want in ((meta_path, meta, entry.meta_sha256), (blob_path, blob, entry.sha256)):
        if data is None:
            raise ArchiveCorruptError(f"{path} is missing at {archive.where} (a manifest names it)")
        if _sha256(data) != want:
            raise ArchiveCorruptError(f"{path} at {archive.where} fails its checksum: not imported")
    assert meta is not None
    assert blob is not None
    try:
        said = unpack(meta).get("sha256")
    except (ValueError, TypeError) as exc:
        raise ArchiveCorruptError(f"{meta_path} at {archive.where} is unreadable: {exc}") from None
    if said != entry.sha256:
        raise ArchiveCorruptError(f"{meta_path} at {archive.where} names another blob than its manifest")
    return meta, blob


def fetch_join(objects: Objects, archive: Archive, number: int) -> bytes | None:
    """The label join's state exported with version ``number`` (verified), ``None`` when none was."""
    want = archive.joins.get(number)
    if want is None:
        return None
    data = objects.get(_join_path(archive.model, number))
    if data is None or _sha256(data) != want:
        raise ArchiveCorruptError(f"the label join of version {number} at {archive.where} is missing or corrupt")
    return data


def import_versions(
    store: VersionStore,
    objects: Objects,
    archive: Archive,
    numbers: Iterable[int] | None = None,
    *,
    actor: str,
    as_stable: Callable[[ArchivedVersion], bool] | None = None,
    below_counter: bool = False,
    protect: bool = False,
) -> ImportReport:
    """Write versions ``numbers`` of ``archive`` (default: all) into ``store`` under their own numbers, oldest first,
    each checked against the manifest before it is written; one the store holds already (the same bytes) is left.

    Raises :class:`ArchiveCorruptError` at the first version that fails its checksum (those before it are imported:
    running the import again goes on) and :class:`ArchiveConflictError` when the store holds a different version under
    a number, or when it numbered a version with that number already and no longer holds it (unless
    ``below_counter``: the archive holds this store's own versions). ``as_stable`` decides which become stable here
    (default: none — a version from elsewhere is no rollback target of this store's lineage until pinned);
    ``protect`` keeps each from retention (a version imported to be pinned must outlive the learner's next versions)."""
    started = time.monotonic()
    selected = sorted(set(numbers)) if numbers is not None else list(archive.versions)
    unknown = [n for n in selected if n not in archive.versions]
    if unknown:
        raise InputError(
            f"{archive.where} holds no version {', '.join(map(str, unknown))} of model {archive.model!r} "
            f"(it holds {_ranges(list(archive.versions)) or 'none'})"
        )
    stable = as_stable or (lambda _version: False)
    source = f"{archive.where} ({archive.model})"
    imported: list[int] = []
    present: list[int] = []
    size = 0
    for number, (meta, blob) in _parallel(lambda n: fetch_version(objects, archive, n), selected):
        entry = archive.versions[number]
        fresh = store.import_version(
            number,
            meta=meta,
            blob=blob,
            stable=stable(entry),
            quarantined=entry.quarantined,
            created_at=entry.created_at,
            actor=actor,
            source=source,
            below_counter=below_counter,
            protect=protect,
        )
        (imported if fresh else present).append(number)
        size += len(meta) + len(blob)
    return ImportReport(tuple(imported), tuple(present), size, time.monotonic() - started)


def _ranges(numbers: list[int]) -> str:
    """``1-4, 7, 9-10`` for sorted ``numbers``.

    >>> _ranges([1, 2, 3, 4, 7, 9, 10])
    '1-4, 7, 9-10'
    """
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
