"""Restore a model from its backups after Redis lost its data (``livelearn restore-from-backup``).

A learner that finds no version in Redis while Kafka says the model was learned refuses to start
(:class:`~streaming.errors.StoreLostError`). The drill then is: :func:`plan_restore` picks the newest version the
backups hold that was stable (or the one asked for), reads where Kafka's logs start now (a version whose offsets
retention has deleted past would lose events: refused unless accepted) and what Kafka recorded of the version
numbers; :func:`restore_from_backup` imports that version and the stable ones before it (rollback targets) into the
empty Redis, makes it the head and serving, and numbers new versions above every number ever exported and every
number Kafka recorded, in one audited script. The learner, started again, restores the head and replays what
Kafka holds after its offsets: the events since the backup are learned again, none twice.
"""

from __future__ import annotations

import dataclasses
import logging

from snapshotter.archive import Archive, fetch_join, held_as_archived, import_versions, read_archive
from snapshotter.keys import MAX_VERSION
from snapshotter.objects import Objects
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.errors import ArchiveError, ControlError, OffsetsExpiredError, VersionNotFoundError
from streaming.learner.numbering import last_recorded
from streaming.transport import TopicPartition, make_consumer

__all__ = ["RestorePlan", "plan_restore", "restore_from_backup"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RestorePlan:
    """What a restore from backup would do (``--dry-run`` prints it)."""

    version: int  #: the version the learner goes on from
    offsets: dict[str, dict[str, int]]  #: its offsets: the learner replays from them
    #: (topic, partition, offset needed, log start) where Kafka's log starts after the version's offset
    expired: tuple[tuple[str, int, int, int], ...]
    #: (topic, partition) of the version's offsets that this Kafka does not have (another cluster, a topic deleted)
    missing: tuple[tuple[str, int], ...]
    imports: tuple[int, ...]  #: the versions imported: it and the newest stable ones before it
    archive_counter: int  #: the highest number any backup's store had handed out
    kafka_after: int | None  #: the number Kafka's records say new versions come after (None: none recorded)
    kafka_recorded: str  #: what Kafka recorded, in words
    join: bool  #: the label join's state at that version is in the backup
    store_id: str | None = None  #: the identity of the store whose backups these are (the restored store takes it)

    @property
    def numbered_after(self) -> int:
        """New versions are numbered after this: above every number exported and every number Kafka recorded."""
        return max(self.archive_counter, self.kafka_after or 0)

    def describe(self) -> str:
        where = ", ".join(f"{t}[{p}]@{o}" for t, parts in self.offsets.items() for p, o in sorted(parts.items()))
        lost = "; ".join(
            [f"{t}[{p}] needs {need}, log starts at {start}" for t, p, need, start in self.expired]
            + [f"{t}[{p}] does not exist in this Kafka" for t, p in self.missing]
        )
        return (
            f"restore version {self.version} (offsets {where or 'none'}) with {len(self.imports)} versions "
            f"({', '.join(map(str, self.imports))}); new versions numbered after {self.numbered_after} (backups "
            f"{self.archive_counter}, Kafka {self.kafka_after if self.kafka_after is not None else 'none'}: "
            f"{self.kafka_recorded})" + (f"; EVENTS LOST: {lost}" if lost else "")
        )


def plan_restore(
    settings: Settings, store: VersionStore, archive: Archive, *, version: int | None = None
) -> RestorePlan:
    """The restore of ``archive`` into ``store`` (empty): which version, what Kafka still holds, the numbering.

    Raises :class:`~streaming.errors.ControlError` when the store has a head already, and
    :class:`~streaming.errors.VersionNotFoundError` when the backups hold no such (or no stable) version."""
    head = store.head()
    if head is not None:
        raise ControlError(
            f"model {store.keys.model_name!r} has a lineage in this Redis already (head {head}): restore-from-backup "
            "only fills a Redis that lost the model's data (import single versions with `versions import`)"
        )
    stores = archive.stores("backup") or archive.stores()  # (a location of this store's exports only: the same)
    if len(stores) > 1:
        raise ControlError(
            f"{archive.where} holds backups of model {archive.model!r} from {len(stores)} stores "
            f"({', '.join(stores)}): restore from a location of one store's backups"
        )
    identity = stores[0] if stores else None  # the store whose backups these are: the restored store goes on as it
    chosen = version if version is not None else archive.newest_stable(identity)
    if chosen is None:
        raise VersionNotFoundError(f"{archive.where} holds no stable version of model {archive.model!r} to restore")
    entry = archive.versions.get(chosen)
    if entry is None:
        raise VersionNotFoundError(f"{archive.where} holds no version {chosen} of model {archive.model!r}")
    if entry.quarantined is not None:
        raise ControlError(
            f"version {chosen} was quarantined by incident {entry.quarantined} where it was backed up: restore another"
        )
    held = store.numbers()
    same = held_as_archived(store, archive, held)
    foreign = [number for number in held if number not in same]
    if foreign:
        raise ControlError(
            f"model {store.keys.model_name!r} holds versions {', '.join(map(str, foreign[:10]))} in this Redis that "
            f"{archive.where} does not hold: restore-from-backup only fills a Redis that lost the model's data"
        )
    keep = settings.store.keep_stable_versions
    before = [
        n
        for n, v in archive.versions.items()
        if n < chosen and v.stable and v.quarantined is None and archive.origins.get(n) in (identity, None)
    ]
    imports = (*(before[-keep:] if keep else ()), chosen)
    wanted = [TopicPartition(t, int(p)) for t, parts in entry.offsets.items() for p in parts]
    consumer = make_consumer(settings.kafka)
    try:
        exist = {topic: consumer.partitions_for(topic) or set() for topic in entry.offsets}
        missing = tuple((tp.topic, tp.partition) for tp in wanted if tp.partition not in exist[tp.topic])
        present = [tp for tp in wanted if tp.partition in exist[tp.topic]]
        starts = consumer.beginning_offsets(present, timeout_ms=int(settings.kafka.bootstrap_timeout_seconds * 1000))
        groups = [consumer.committed(tp, timeout_ms=10_000) for tp in present]
    finally:
        consumer.close()
    expired = tuple(
        (tp.topic, tp.partition, entry.offsets[tp.topic][str(tp.partition)], starts[tp])
        for tp in wanted
        if tp in starts and starts[tp] > entry.offsets[tp.topic][str(tp.partition)]
    )
    recorded = last_recorded(settings.kafka, [c for c in groups if c is not None])
    plan = RestorePlan(
        version=chosen,
        offsets=entry.offsets,
        expired=expired,
        missing=missing,
        imports=imports,
        archive_counter=archive.counter,
        kafka_after=recorded.numbered_after(),
        kafka_recorded=recorded.describe(),
        join=chosen in archive.joins,
        store_id=identity,
    )
    if plan.numbered_after >= MAX_VERSION:
        raise ControlError(
            f"new versions would be numbered after {plan.numbered_after} (backups {plan.archive_counter}; Kafka: "
            f"{plan.kafka_recorded}), past the last version number {MAX_VERSION}: the records are not livelearn's"
        )
    return plan


def restore_from_backup(
    store: VersionStore,
    objects: Objects,
    plan: RestorePlan,
    *,
    actor: str,
    accept_loss: bool = False,
    archive: Archive | None = None,
) -> int:
    """Carry out ``plan``: import its versions, then make its version the head and serving (one script, audited
    ``restore``). Refuses (:class:`~streaming.errors.OffsetsExpiredError`) when Kafka no longer holds events after
    the version's offsets, unless ``accept_loss``. ``archive``: the location as the plan read it (read here when not
    given). Returns the number new versions are numbered after."""
    if (plan.expired or plan.missing) and not accept_loss:
        lost = "; ".join(
            [f"{t}[{p}] needs offset {need}, its log starts at {start}" for t, p, need, start in plan.expired]
            + [f"{t}[{p}] does not exist (check LIVELEARN_KAFKA_BOOTSTRAP and the topic)" for t, p in plan.missing]
        )
        raise OffsetsExpiredError(
            f"Kafka does not hold all the events after version {plan.version}'s offsets ({lost}): the events "
            "between would never be learned. Restore a newer backup, or accept the loss with --accept-loss"
        )
    archive = archive if archive is not None else read_archive(objects, store.keys.model_name)
    if plan.version not in archive.versions:
        raise ArchiveError(f"{objects.where} no longer holds version {plan.version}")
    import_versions(  # the store's own versions, from its own backups
        store,
        objects,
        archive,
        plan.imports,
        actor=actor,
        as_stable=lambda v: v.number in plan.imports,
        below_counter=True,
    )
    join = fetch_join(objects, archive, plan.version)
    after = store.restore(
        plan.version,
        after=plan.numbered_after,
        epoch=archive.versions[plan.version].epoch,
        actor=actor,
        reason=f"Redis lost the model's data; restored from backup: {plan.describe()}"
        + ("; the events Kafka no longer holds are lost (accepted)" if plan.expired or plan.missing else ""),
        source=objects.where,
        join=join,  # the label join as it was at that version: its waiting events go on waiting
        store_id=plan.store_id,  # the same store going on: its next backups go where these came from
    )
    log.warning("restored model %r from %s: %s", store.keys.model_name, objects.where, plan.describe())
    return after
