"""The livelearn exception tree.

Every error livelearn raises on purpose derives from :class:`LivelearnError`, so callers can catch one
type; callers that must tell cases apart catch a subclass, never match message text. Messages say what
went wrong *and* what to do about it; the CLI prints them as one line and exits with code 2::

    LivelearnError
    ├── ConfigError               invalid settings; names the setting and its env var
    ├── InputError                an unusable file or value given on the command line
    ├── ConnectionFailedError     Kafka or Redis cannot be reached; names the address
    │   └── BrokerUnavailableError    no Kafka broker answered within the bootstrap timeout
    ├── EventError                an event broke the contract; ``reason`` goes to the dead-letter headers
    ├── SnapshotError             a snapshot cannot be written, read or restored
    │   ├── SnapshotCorruptError      checksum mismatch or undecodable
    │   ├── SnapshotFormatError       written in a newer snapshot format: upgrade this livelearn
    │   ├── SnapshotFencedError       the writer lost its lease
    │   ├── StaleLineageError         a rollback moved the lineage on; reload the head
    │   ├── VersionNotFoundError      no such version (never written, or removed by retention)
    │   └── ModelSpecMismatchError    written for another model structure
    ├── ScriptRefusal             a storage script refused a change (``code``: RefusalCode); the store raises the
    │                             error its callers expect in its place (``snapshotter.scripts.REFUSAL_ERRORS``)
    ├── ControlError              an operator or monitor action was refused; nothing was changed
    │   ├── StaleEpochError           another actor moved the lineage first (e.g. a second monitor)
    │   ├── HeadMovedError            a snapshot landed while a rollback was prepared
    │   ├── AlreadyFrozenError        learning is frozen already
    │   ├── NotFrozenError            learning is not frozen
    │   ├── NotPinnedError            no version is pinned
    │   ├── NoRollbackTargetError     no stable version older than the head
    │   ├── QuarantinedError          the version was quarantined by an incident (pin it with force)
    │   ├── IncidentOpenError         an incident is open already
    │   ├── NoIncidentError           no such incident is open
    │   └── ChallengerError           a change to the challengers or the champion alias was refused
    ├── OutputDeliveryError       dead letters or predictions were not delivered; no snapshot moved past them
    ├── StoreLostError            Redis lost the versions of a model Kafka says was learned
    ├── OffsetsExpiredError       Kafka no longer holds the records a restore or rebuild needs (log start offset)
    ├── RebuildError              a rebuild cannot start (its range, its base) or its branch cannot be promoted
    │   └── IncidentRangeError        an incident's range is not known (no such incident, open, not recorded)
    ├── ArchiveError              an export, backup or import could not read or write its object storage
    │   ├── ArchiveCorruptError       an archived object does not match its checksum or cannot be read
    │   └── ArchiveConflictError      a different version already holds that number (in the archive or in Redis)
    ├── LeaseLostError            this learner lost its writer lease
    └── EmbeddedServerError       an embedded broker or redis-server could not start

>>> issubclass(StaleEpochError, ControlError), issubclass(SnapshotFencedError, LivelearnError)
(True, True)
"""

from __future__ import annotations

import enum

__all__ = [
    "AlreadyFrozenError",
    "ArchiveConflictError",
    "ArchiveCorruptError",
    "ArchiveError",
    "BrokerUnavailableError",
    "ChallengerError",
    "ConfigError",
    "ConnectionFailedError",
    "ControlError",
    "EmbeddedServerError",
    "EventError",
    "HeadMovedError",
    "IncidentOpenError",
    "IncidentRangeError",
    "InputError",
    "LeaseLostError",
    "LivelearnError",
    "ModelSpecMismatchError",
    "NoIncidentError",
    "NoRollbackTargetError",
    "NotFrozenError",
    "NotPinnedError",
    "OffsetsExpiredError",
    "OutputDeliveryError",
    "QuarantinedError",
    "RebuildError",
    "RefusalCode",
    "ScriptRefusal",
    "SnapshotCorruptError",
    "SnapshotError",
    "SnapshotFencedError",
    "SnapshotFormatError",
    "StaleEpochError",
    "StaleLineageError",
    "StoreLostError",
    "VersionNotFoundError",
]


class LivelearnError(Exception):
    """Root of every error livelearn raises on purpose."""


class ConfigError(LivelearnError):
    """The configuration is invalid; the message names the setting and its env var."""


class InputError(LivelearnError):
    """A file or value given on the command line cannot be used (a CSV without the dataset's columns,
    an output path in a missing directory...); the message names it."""


class ConnectionFailedError(LivelearnError):
    """Kafka or Redis could not be reached; the message names the address that was tried."""


class BrokerUnavailableError(ConnectionFailedError):
    """No Kafka broker answered within the bootstrap timeout."""


class EventError(LivelearnError):
    """An event could not be decoded or failed validation.

    ``reason`` is a short machine-readable code (e.g. ``non_finite``) that ends up in the
    dead-letter headers and the ``livelearn_events_dead_lettered_total`` metric label.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SnapshotError(LivelearnError):
    """A snapshot could not be written, read or restored."""


class SnapshotCorruptError(SnapshotError):
    """A stored snapshot does not match its checksum or cannot be decoded."""


class SnapshotFormatError(SnapshotError):
    """A stored snapshot is in a format this livelearn cannot read: a newer livelearn wrote it. Not corrupt, so
    a learner never falls back past it to an older version; upgrade this livelearn (readers before writers)."""


class SnapshotFencedError(SnapshotError):
    """A snapshot write was rejected because the writer no longer holds the model's lease."""


class StaleLineageError(SnapshotError):
    """A snapshot write was rejected because a rollback moved the lineage on; reload the head."""


class VersionNotFoundError(SnapshotError):
    """The requested version number does not exist (never written, or removed by retention)."""


class ModelSpecMismatchError(SnapshotError):
    """A snapshot was written for a model with another structure than the configured one."""


class RefusalCode(enum.StrEnum):
    """Why a storage script (``snapshotter/lua``) refused a change: every code a script answers with."""

    FENCED = "FENCED"  # the caller no longer holds the writer lease
    STALE_LINEAGE = "STALE_LINEAGE"  # a snapshot or promotion of an epoch a rollback moved on from
    INCIDENT = "INCIDENT"  # a stable version while a data-quality incident is open
    STALE = "STALE"  # the lineage epoch moved on since the actor judged it
    HEAD_MOVED = "HEAD_MOVED"  # a snapshot landed while a rollback or an incident was prepared
    MISSING = "MISSING"  # no such version
    ALREADY = "ALREADY"  # learning is frozen already
    NOT_FROZEN = "NOT_FROZEN"  # learning is not frozen
    NOT_PINNED = "NOT_PINNED"  # no version is pinned
    QUARANTINED = "QUARANTINED"  # the version was quarantined by an incident
    INCIDENT_OPEN = "INCIDENT_OPEN"  # an incident is open already
    NOT_OPEN = "NOT_OPEN"  # no such incident is open
    CHAMPION_MOVED = "CHAMPION_MOVED"  # the champion alias moved since the actor looked
    IS_CHAMPION = "IS_CHAMPION"  # that arm is the champion already
    ARM_EXISTS = "ARM_EXISTS"  # a challenger of that name is declared already
    UNKNOWN_ARM = "UNKNOWN_ARM"  # no challenger of that name is declared
    NOT_MANAGED = "NOT_MANAGED"  # the challengers are the settings' already (nothing to reset)
    CONFLICT = "CONFLICT"  # a different version holds that number already
    NOT_EMPTY = "NOT_EMPTY"  # a restore into a store that has a lineage already
    BRANCH_EXISTS = "BRANCH_EXISTS"  # a rebuild branch of that name exists already
    NOT_DONE = "NOT_DONE"  # the rebuild branch is not finished (running, failed or promoted)


class ScriptRefusal(LivelearnError):
    """A storage script refused a change, so nothing was changed: ``code`` says why, ``detail`` the specifics
    (``"lease is held by 3:learner-b"``); ``script`` names it. Callers match on ``code``, never on the text.

    >>> refusal = ScriptRefusal(RefusalCode.HEAD_MOVED, "head is 7", script="rollback")
    >>> refusal.code is RefusalCode.HEAD_MOVED, str(refusal)
    (True, 'head moved: head is 7')
    """

    def __init__(self, code: RefusalCode, detail: str, *, script: str = "") -> None:
        super().__init__(f"{code.value.lower().replace('_', ' ')}: {detail}")
        self.code = code
        self.detail = detail
        self.script = script


class ControlError(LivelearnError):
    """An operator or monitor action (pin, rollback, resume...) was refused; nothing was changed."""


class StaleEpochError(ControlError):
    """The lineage moved on since the actor judged it (e.g. a second monitor acting on the same breach)."""


class HeadMovedError(ControlError):
    """A snapshot landed between reading the head and rolling back; read again and retry."""


class AlreadyFrozenError(ControlError):
    """Learning is frozen already."""


class NotFrozenError(ControlError):
    """Learning is not frozen, so there is nothing to resume."""


class NotPinnedError(ControlError):
    """No version is pinned, so there is nothing to unpin."""


class NoRollbackTargetError(ControlError):
    """No stable version older than the head exists to roll back to."""


class QuarantinedError(ControlError):
    """The version was quarantined by a data-quality incident: nothing automatic goes to it; pin it with force."""


class IncidentOpenError(ControlError):
    """A data-quality incident is open already."""


class NoIncidentError(ControlError):
    """No such data-quality incident is open."""


class ChallengerError(ControlError):
    """A change to the challengers or the champion alias was refused (the champion moved meanwhile, it is that arm
    already, no such challenger, one of that name exists); nothing was changed."""


class OutputDeliveryError(LivelearnError):
    """Dead letters or predictions could not be delivered to Kafka; no snapshot moved past them."""


class StoreLostError(LivelearnError):
    """Redis holds no version of a model that Kafka says was learned before: Redis lost its data."""


class OffsetsExpiredError(LivelearnError):
    """Kafka no longer holds records a restore or a rebuild needs: its log starts after them (retention); the
    message names each partition's log start offset and the offset needed."""


class RebuildError(LivelearnError):
    """A rebuild cannot start (its range overlaps a running one, its base version is missing or quarantined) or its
    branch cannot be promoted (not finished, the lineage moved since); the message says which."""


class IncidentRangeError(RebuildError):
    """The range of the events topic an incident kept the lineage from learning is not known: no such incident, it
    is still open, or its start or end was not recorded; the message says which."""


class ArchiveError(LivelearnError):
    """An export, backup or import could not read or write its object storage (a directory or a bucket); the
    message names the location."""


class ArchiveCorruptError(ArchiveError):
    """An archived version, its metadata or a manifest does not match its checksum or cannot be decoded."""


class ArchiveConflictError(ArchiveError):
    """A different version already holds that number, in the archive or in the Redis imported into: versions are
    never overwritten."""


class LeaseLostError(LivelearnError):
    """This learner lost its writer lease (expired or taken over) and must stop learning."""


class EmbeddedServerError(LivelearnError):
    """An embedded broker or redis-server could not be found or started."""
