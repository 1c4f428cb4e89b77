"""Numbered, immutable model versions in Redis.

:meth:`VersionStore.write` runs one Lua script, so a version appears whole or not at all: it checks
the writer's lease (fencing), takes the next number from an atomic counter, stores blob and
metadata, indexes the version, moves the head pointer and applies retention (keep the newest K
plus every protected version). Readers verify the SHA-256 of a blob before decoding it.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from typing import Any, Literal, TypedDict

import redis

from snapshotter.codec import (
    FORMAT_VERSION,
    EncodedSnapshot,
    SnapshotState,
    VersionMeta,
    decode_snapshot,
    pack,
    unpack,
)
from snapshotter.connection import as_bytes, as_int, as_text, connect_redis, redis_failure
from snapshotter.keys import MAX_VERSION, Keys
from snapshotter.scripts import (
    IMPORT_VERSION,
    PROMOTE,
    RECORD_BACKUP,
    RESTORE,
    START_OVER,
    STORE_IDENTITY,
    UNPROTECT,
    WRITE_VERSION,
    bind,
    refusal_error,
)
from snapshotter.status import LearnerStatus, read_status
from streaming.config import RedisSettings, Settings, StoreSettings
from streaming.errors import (
    InputError,
    RefusalCode,
    ScriptRefusal,
    SnapshotCorruptError,
    SnapshotError,
    VersionNotFoundError,
)

__all__ = ["THINNING", "ResumePoint", "VersionStore", "connect_settings", "open_store", "version_meta"]

#: Thinning of old stable versions by age, as (bucket, horizon) in seconds: beyond the newest ``keep`` versions
#: and the newest ``keep_stable`` stable ones, retention keeps the newest stable version of each 10 s of the last
#: 10 minutes, of each minute of the last hour, of each hour of the last day and of each day of the last week,
#: once at least 10 s old (at most ~150 more, whatever the snapshot rate); pinned, serving, protected and
#: candidate versions and the open incident's target and quarantined versions are never dropped.
THINNING = ((10, 600), (60, 3600), (3600, 86_400), (86_400, 7 * 86_400))


#: Where the newest rollback's lineage resumes (written by the rollback script): its epoch, the version it
#: left (``from``) and went to (``to``), the offsets the abandoned lineage had consumed, and its stream counters
#: at exactly those offsets (``counters``: ``None`` when not known, or recorded before rollbacks kept them; some
#: may be missing when only part was known, e.g. ``events_seen`` from the monitor's judged sample).
ResumePoint = TypedDict(
    "ResumePoint",
    {
        "epoch": int,
        "from": int | None,
        "to": int,
        "offsets": dict[str, dict[str, int]],
        "counters": dict[str, int] | None,
    },
)


def version_meta(
    encoded: EncodedSnapshot,
    *,
    created_at: float,
    writer: str,
    lease_token: int,
    offsets: dict[str, dict[str, int]],
    metrics: dict[str, dict[str, float]],
    parent: int | None,
    stable: bool,
    epoch: int,
    extra: dict[str, Any],
    model_events_learned: int | None,
) -> dict[str, Any]:
    """The metadata document of a version (:class:`VersionMeta` without its number) for ``encoded``'s blob."""
    return {
        "created_at": created_at,
        "writer": writer,
        "lease_token": lease_token,
        "events_seen": int(encoded.counters.get("events_seen", 0)),
        "events_learned": int(encoded.counters.get("events_learned", 0)),
        "offsets": offsets,
        "metrics": metrics,
        "parent": parent,
        "spec": encoded.spec,
        "format_version": FORMAT_VERSION,
        "sha256": encoded.sha256,
        "size_bytes": len(encoded.blob),
        "stable": stable,
        "epoch": epoch,
        "extra": extra,
        "model_events_learned": model_events_learned,
    }


class VersionStore:
    """Read and write the numbered versions of one model.

    Parameters
    ----------
    client
        A Redis connection (livelearn's: replies as bytes, no ``decode_responses``).
    model_name
        The model whose keys (:class:`~snapshotter.keys.Keys`) the store reads and writes.
    keep
        How many of the newest versions retention always keeps.
    keep_stable
        How many of the newest stable versions retention keeps besides (older stable ones are thinned by age:
        :data:`THINNING`).
    audit_retention
        The length (approximate) the audit stream is capped at.
    version_log_retention
        The length (approximate) the version log (routine per-version entries) is capped at.
    promotion
        ``"guard"``: a version that met the threshold is a candidate until the writer saw the data up to it calm
        (:meth:`promote`); ``"immediate"``: it is stable at once, and serving unless a version is pinned.

    Examples
    --------
    >>> import fakeredis
    >>> from snapshotter.codec import SnapshotState
    >>> from snapshotter.control import ControlPlane
    >>> store = VersionStore(fakeredis.FakeRedis(), "shop", keep=10, promotion="immediate")
    >>> state = SnapshotState(spec={"inputs": ["x"]}, model={}, metrics={}, counters={"events_seen": 100})
    >>> def snapshot(position):
    ...     return store.write(state, writer="learner-a", lease_value=None, offsets={"events": {"0": position}},
    ...                        metrics={"rolling": {"accuracy": 0.9}}, parent=store.head(), stable=True)
    >>> snapshot(100).number, snapshot(200).number
    (1, 2)
    >>> [(meta.number, meta.parent, meta.offsets) for meta in store.list()]
    [(1, None, {'events': {'0': 100}}), (2, 1, {'events': {'0': 200}})]
    >>> store.head(), store.serving()
    (2, 2)

    An operator pins version 1 (atomic and audited: :class:`~snapshotter.control.ControlPlane`); serving stays
    there while newer versions are written:

    >>> ControlPlane(store).pin(1, actor="operator", reason="back to the morning's model")
    >>> snapshot(300).number, store.pinned(), store.serving()
    (3, 1, 1)
    """

    def __init__(
        self,
        client: redis.Redis,
        model_name: str,
        keep: int = 50,
        *,
        keep_stable: int = 10,
        audit_retention: int = 100_000,
        version_log_retention: int = 100_000,
        promotion: Literal["guard", "immediate"] = "guard",
    ) -> None:
        self.client = client
        self.promotion = promotion
        self.keys = Keys(model_name)
        self.keep = keep
        self.keep_stable = keep_stable
        self.audit_retention = audit_retention
        self.version_log_retention = version_log_retention
        self._write = bind(client, WRITE_VERSION)
        self._promote = bind(client, PROMOTE)
        self._start_over = bind(client, START_OVER)
        self._import = bind(client, IMPORT_VERSION)
        self._restore = bind(client, RESTORE)
        self._record_backup = bind(client, RECORD_BACKUP)
        self._store_identity = bind(client, STORE_IDENTITY)
        self._unprotect = bind(client, UNPROTECT)

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: StoreSettings | Settings) -> VersionStore:
        """The store of the model ``settings`` (or their ``store`` group) configure, on ``client``."""
        store = StoreSettings.of(settings)
        return cls(
            client,
            store.model_name,
            store.keep_versions,
            keep_stable=store.keep_stable_versions,
            audit_retention=store.audit_retention,
            version_log_retention=store.version_log_retention,
            promotion=store.promotion,
        )

    def write(
        self,
        state: SnapshotState | EncodedSnapshot,
        *,
        writer: str,
        lease_value: str | None,
        offsets: dict[str, dict[str, int]],
        metrics: dict[str, dict[str, float]],
        parent: int | None,
        extra: dict[str, Any] | None = None,
        epoch: int = 0,
        stable: bool = False,
        model_events_learned: int | None = None,
        confirmed: int | None = None,
        created_at: float | None = None,
        join: bytes | None = None,
    ) -> VersionMeta:
        """Store ``state`` as the next version of lineage ``epoch``.

        Raises :class:`SnapshotFencedError` if ``lease_value`` no longer holds the lease, and
        :class:`StaleLineageError` if a rollback moved the lineage on since the writer loaded it.
        A ``stable`` version (one that met the threshold) is promoted to serving unless a version is pinned:
        at once with promotion ``immediate``; with ``guard`` it is a candidate until the writer has seen the
        data up to it calm — ``confirmed``, a stream position, confirms the candidates at or before it (this
        version included), later ones :meth:`promote` does. ``state`` may be encoded already
        (:meth:`EncodedSnapshot.of`), e.g. at an earlier stream position. ``created_at`` (unix seconds, default
        now) is the writer's clock; retention thins old stable versions by it (:data:`THINNING`). ``join`` (packed):
        the label join's state at this version, which replaces the one stored before (:meth:`join_state`).
        """
        encoded = state if isinstance(state, EncodedSnapshot) else EncodedSnapshot.of(state)
        blob = encoded.blob
        token = int(lease_value.split(":", 1)[0]) if lease_value else 0
        meta = version_meta(
            encoded,
            created_at=time.time() if created_at is None else created_at,
            writer=writer,
            lease_token=token,
            offsets=offsets,
            metrics=metrics,
            parent=parent,
            stable=stable,
            epoch=epoch,
            extra=extra or {},
            model_events_learned=model_events_learned,
        )
        k = self.keys
        write_id = secrets.token_hex(8)  # the same on a resend: a write is never applied twice
        for _attempt in range(2):
            try:
                number = self._write(
                    k,
                    lease_value=lease_value,
                    blob=blob,
                    meta=pack(meta),
                    keep=self.keep,
                    version_prefix=k.version_prefix,
                    epoch=str(epoch),
                    stable="1" if meta["stable"] else "0",
                    keep_stable=self.keep_stable,
                    version_log_maxlen=self.version_log_retention,
                    writer=writer,
                    metrics=json.dumps(metrics.get("rolling", {})),
                    parent=parent,
                    channel=k.channel,
                    promotion=self.promotion,
                    position=sum(sum(partitions.values()) for partitions in offsets.values()),
                    confirmed=confirmed,
                    created_at=repr(meta["created_at"]),
                    thinning=json.dumps(THINNING),
                    join=join or b"",
                    join_sha256=hashlib.sha256(join).hexdigest() if join else "",
                    write_id=write_id,
                )
                break
            except ScriptRefusal as refusal:
                if refusal.code is RefusalCode.INCIDENT:  # no version is stable while an incident is open:
                    meta["stable"] = False  # write it as not stable
                    continue
                if refusal.code is RefusalCode.FENCED:
                    raise refusal_error(
                        refusal,
                        f"snapshot rejected for model {k.model_name!r}: this writer ({writer}) no longer holds "
                        f"the lease ({refusal.detail}); another learner is active",
                    ) from None
                raise refusal_error(refusal, f"snapshot rejected: {refusal.detail}") from None
            except redis.ResponseError as exc:
                if redis_failure(exc):
                    raise  # out of memory, persistence failing, read-only...: for the caller to wait out or report
                raise SnapshotError(f"snapshot write failed: {exc}") from None
        return VersionMeta.from_dict({"number": int(number), **meta})

    def promote(self, *, lease_value: str, epoch: int, confirmed: int, actor: str, metrics: dict[str, float]) -> int:
        """Confirm the candidates written at or before stream position ``confirmed`` (promotion ``guard``): they
        become stable, the newest serving unless pinned. Fenced by the lease and the lineage ``epoch``; nothing
        while an incident is open. Returns how many became stable."""
        k = self.keys
        try:
            return int(
                self._promote(
                    k,
                    lease_value=lease_value,
                    epoch=epoch,
                    confirmed=confirmed,
                    version_log_maxlen=self.version_log_retention,
                    actor=actor,
                    metrics=json.dumps(metrics),
                    channel=k.channel,
                )
            )
        except ScriptRefusal as refusal:
            lost = "; another learner is active" if refusal.code is RefusalCode.FENCED else ""
            raise refusal_error(refusal, f"promotion rejected: {refusal.detail}{lost}") from None

    # -- reads -------------------------------------------------------------------------------
    def head(self) -> int | None:
        """Newest version of the learner lineage, or ``None`` before the first snapshot."""
        raw = self.client.get(self.keys.head)
        return int(raw) if raw is not None else None

    def epoch(self) -> int:
        """The lineage epoch: how many rollbacks this model has seen."""
        return int(self.client.get(self.keys.epoch) or 0)

    def serving(self) -> int | None:
        raw = self.client.get(self.keys.serving)
        return int(raw) if raw is not None else None

    def pinned(self) -> int | None:
        raw = self.client.get(self.keys.pinned)
        return int(raw) if raw is not None else None

    def candidates(self) -> dict[int, int]:
        """Versions awaiting the guard's confirmation (promotion ``guard``): version -> stream position."""
        pairs: list[tuple[Any, float]] = self.client.zrange(  # type: ignore[assignment]
            self.keys.candidates, 0, -1, withscores=True
        )
        return {as_int(v): int(p) for v, p in pairs}

    def quarantined(self) -> dict[int, int]:
        """Versions quarantined by a data-quality incident: version -> incident id."""
        return {as_int(v): as_int(i) for v, i in self.client.hgetall(self.keys.quarantined).items()}

    def incident(self) -> dict[str, str] | None:
        """The open data-quality incident (id, signal, change_point, position, since, reason, target), or None."""
        raw = self.client.hgetall(self.keys.incident)
        return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None

    def stable_numbers(self) -> list[int]:
        """Stable versions still stored, oldest first."""
        return [as_int(n) for n in self.client.zrange(self.keys.stable, 0, -1)]

    def status(self) -> LearnerStatus | None:
        """The active learner's last published status, or ``None`` when none is fresh."""
        return read_status(self.client, self.keys)

    def resume_point(self) -> ResumePoint | None:
        """Where the newest rollback's lineage resumes: ``{"epoch", "from", "to", "offsets"}``, or ``None``.

        Written by the rollback script itself, so the skip is durable at the moment of the rollback.
        """
        raw = self.client.hgetall(self.keys.resume)
        if not raw:
            return None
        doc = {as_text(key): as_bytes(value) for key, value in raw.items()}
        point: ResumePoint = {
            "epoch": int(doc["epoch"]),
            "from": int(doc["from"]) if doc.get("from") else None,
            "to": int(doc["to"]),
            "offsets": unpack(doc["offsets"]),
            "counters": unpack(doc["counters"]) if doc.get("counters") else None,
        }
        return point

    def start_over(self, *, after: int | None, actor: str, reason: str, recorded: str, may_repeat: bool) -> int:
        """Start this model over after Redis lost its data, in one script with its ``store_lost`` audit entry: new
        versions are numbered after ``after`` (above every number Kafka recorded of the lost store, so they do
        not reuse numbers that services and predictions still name; ``None``: nothing known). ``recorded`` says
        what Kafka recorded, ``may_repeat`` that the new numbers may repeat those of the lost store. Returns the
        number the next version is numbered after."""
        return int(
            self._start_over(
                self.keys,
                maxlen=self.audit_retention,
                after=after,
                actor=actor,
                reason=reason,
                recorded=recorded,
                may_repeat="1" if may_repeat else "0",
            )
        )

    def counter(self) -> int:
        """The last version number handed out (0: none)."""
        return int(self.client.get(self.keys.counter) or 0)

    def raw(self, number: int) -> tuple[bytes, bytes] | None:
        """Version ``number`` as stored: its packed metadata and its blob (``None``: not stored), read together."""
        meta, blob = self.client.mget([self.keys.meta(number), self.keys.blob(number)])
        return None if meta is None or blob is None else (as_bytes(meta), as_bytes(blob))

    def import_version(
        self,
        number: int,
        *,
        meta: bytes,
        blob: bytes,
        stable: bool,
        quarantined: int | None,
        created_at: float,
        actor: str,
        source: str,
        below_counter: bool = False,
        protect: bool = False,
    ) -> bool:
        """Store version ``number`` as it was elsewhere (``meta`` packed, ``blob`` verified by the caller), in one
        script with its version-log entry: ``True`` imported, ``False`` this very version was here already. Raises
        :class:`~streaming.errors.ArchiveConflictError` when a different version holds the number. Never moves the
        head, serving or a pin; the counter is raised to ``number`` (never handed out again here). A number this store
        handed out already and no longer holds is refused too (it may have named another version here), unless
        ``below_counter``: the caller knows it is this store's own version (e.g. from its own backup). ``protect``
        keeps it from retention (until pinned and unpinned, or :meth:`release`d); ``quarantined`` goes to the
        version log only (another store's incident id means nothing here)."""
        k = self.keys
        if type(number) is not int or not 1 <= number <= MAX_VERSION:
            raise InputError(f"version number {number!r:.40} is out of range (1 to {MAX_VERSION}): not imported")
        if not math.isfinite(created_at):
            raise InputError(f"version {number}'s creation time {created_at!r} is not a finite number: not imported")
        try:
            return bool(
                self._import(
                    k,
                    version_log_maxlen=self.version_log_retention,
                    version_prefix=k.version_prefix,
                    number=number,
                    blob=blob,
                    meta=meta,
                    stable="1" if stable else "0",
                    quarantined=quarantined,
                    created_at=repr(created_at),
                    actor=actor,
                    source=source,
                    below_counter="1" if below_counter else "0",
                    protect="1" if protect else "0",
                )
            )
        except ScriptRefusal as refusal:
            raise refusal_error(
                refusal,
                f"version {number} not imported into model {k.model_name!r}: "
                f"{refusal.detail}; versions are never overwritten",
            ) from None

    def identity(self, *, adopt: str | None = None) -> str:
        """This store's identity, recorded in the manifests of its exports and backups: a random token made at the
        first call (one script: two first calls at once agree), kept since; a restore from backup sets its
        backups' own. ``adopt``: take that identity instead (the caller checked the store is that store)."""
        token = adopt if adopt is not None else secrets.token_hex(8)
        return as_text(self._store_identity(self.keys, token=token, adopt="1" if adopt is not None else "0"))

    def restore(
        self,
        number: int,
        *,
        after: int,
        epoch: int,
        actor: str,
        reason: str,
        source: str,
        join: bytes | None = None,
        store_id: str | None = None,
    ) -> int:
        """Make stored version ``number`` the head of a new lineage and serving, after Redis lost this model's data
        (one script with its ``restore`` audit entry); new versions are numbered after ``after`` at least, and the
        store takes ``store_id`` (its backups' identity: the same store going on). Refused
        (:class:`~streaming.errors.ControlError`) when the store has a head already. Returns the number new
        versions are numbered after."""
        k = self.keys
        if not 0 <= after < MAX_VERSION:
            raise InputError(f"new versions cannot be numbered after {after}: version numbers end at {MAX_VERSION}")
        try:
            return int(
                self._restore(
                    k,
                    maxlen=self.audit_retention,
                    version_meta=k.meta(number),
                    version=number,
                    after=after,
                    epoch=epoch,
                    actor=actor,
                    reason=reason,
                    source=source,
                    channel=k.channel,
                    join=join or b"",
                    join_sha256=hashlib.sha256(join).hexdigest() if join else "",
                    store_id=store_id or "",
                )
            )
        except ScriptRefusal as refusal:
            raise refusal_error(refusal, f"restore of model {k.model_name!r} refused: {refusal.detail}") from None

    def release(self, numbers: list[int], *, actor: str, reason: str) -> list[int]:
        """Let retention have ``numbers`` (imported versions kept from it), in one audited script; the pinned version,
        the head, serving and rebuild branches' versions keep their protection. Returns those released."""
        released = self._unprotect(
            self.keys, maxlen=self.audit_retention, actor=actor, reason=reason, numbers=[str(n) for n in numbers]
        )
        return [as_int(n) for n in released]

    def record_backup(
        self, *, at: float, location: str, manifest: str, written: int, newest: int | None, actor: str
    ) -> None:
        """Record a completed backup (and audit it when it wrote versions), in one script."""
        self._record_backup(
            self.keys,
            maxlen=self.audit_retention,
            at=repr(at),
            location=location,
            manifest=manifest,
            written=written,
            newest=newest,
            actor=actor,
        )

    def last_backup(self) -> dict[str, str] | None:
        """The last completed backup (at, location, manifest, written, newest, actor), ``None`` when none is."""
        raw = self.client.hgetall(self.keys.backup)
        return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None

    def backup_age(self, now: float | None = None) -> float:
        """Seconds since the last completed backup; with none, since the oldest version stored was written (versions
        that were never backed up); 0 with no version at all."""
        now = time.time() if now is None else now
        last = self.last_backup()
        if last is not None:
            return max(0.0, now - float(last["at"]))
        oldest: list[tuple[Any, float]] = self.client.zrange(self.keys.created, 0, 0, withscores=True)  # type: ignore[assignment]
        return max(0.0, now - oldest[0][1]) if oldest else 0.0

    def numbers(self) -> list[int]:
        """Every stored version number, oldest first."""
        return [as_int(n) for n in self.client.zrange(self.keys.index, 0, -1)]

    def meta(self, number: int) -> VersionMeta:
        raw = self.client.get(self.keys.meta(number))
        if raw is None:
            raise VersionNotFoundError(
                f"version {number} of model {self.keys.model_name!r} does not exist "
                f"(see `livelearn versions list`; retention keeps the newest {self.keep})"
            )
        try:
            return VersionMeta.from_dict({"number": number, **unpack(as_bytes(raw))})
        except (ValueError, TypeError) as exc:
            raise SnapshotCorruptError(f"metadata of version {number} is unreadable: {exc}") from None

    def list(self) -> list[VersionMeta]:
        """Metadata of every stored version, oldest first."""
        numbers = self.numbers()
        if not numbers:
            return []
        raws = self.client.mget([self.keys.meta(n) for n in numbers])
        found = zip(numbers, raws, strict=True)
        return [VersionMeta.from_dict({"number": n, **unpack(as_bytes(r))}) for n, r in found if r is not None]

    def join_state(self) -> tuple[int, dict[str, Any]] | None:
        """The label join's state as the newest version written with it left it, and that version's number
        (``None``: none stored). Raises :class:`SnapshotCorruptError` when its checksum does not match."""
        fields = {as_text(k): v for k, v in self.client.hgetall(self.keys.join).items()}
        if "state" not in fields:
            return None
        state, version = as_bytes(fields["state"]), as_text(fields.get("version", b"?"))
        if hashlib.sha256(state).hexdigest() != as_text(fields.get("sha256", b"")):
            raise SnapshotCorruptError(f"the label join stored with version {version} fails its checksum")
        return int(version), unpack(state)

    def load(self, number: int, *, packed_weights: bool = False) -> tuple[VersionMeta, SnapshotState]:
        """Metadata and verified learned state of version ``number`` (``packed_weights``: see
        :func:`~snapshotter.codec.decode_snapshot`)."""
        meta = self.meta(number)
        blob = self.client.get(self.keys.blob(number))
        if blob is None:
            raise VersionNotFoundError(f"version {number} has metadata but no blob; it was removed while reading")
        return meta, decode_snapshot(as_bytes(blob), meta.sha256, packed_weights=packed_weights)


def connect_settings(settings: RedisSettings | Settings, *, check: bool = True) -> redis.Redis:
    """A connection to the configured Redis (URL and optional secret password; ``settings`` or their ``redis``
    group), checked with ``check`` (the long-running processes wait a Redis that is down at start out instead)."""
    config = RedisSettings.of(settings)
    password = config.password.get_secret_value() if config.password else None
    return connect_redis(config.url, password, check=check, timeout=config.timeout_seconds)


def open_store(settings: Settings) -> VersionStore:
    """A store on a fresh, checked connection to the configured Redis."""
    return VersionStore.for_settings(connect_settings(settings.redis), settings.store)
