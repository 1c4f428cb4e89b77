"""The Lua scripts behind every state change (``snapshotter/lua/*.lua``), and the one typed way to call them.

Each state change of a model (a version written, a rollback, a pin, the lease, the learner's status, the
monitors' cursor) is one script, so it happens whole or not at all, with its audit entry inside. A script
may start with ``-- include: NAME`` lines to pull in shared functions (``audit.lua``). Sources are read
once per process; redis-py sends ``EVALSHA`` and loads a script the server does not know yet.

Each script is declared once, as a :class:`ScriptSpec`: the names of its ``KEYS`` and ``ARGV`` in order, as the
``-- KEYS:`` and ``-- ARGV:`` lines of its file name them (``tests/test_scripts.py`` keeps the two equal).
:func:`bind` gives a :class:`BoundScript`: called with the model's :class:`~snapshotter.keys.Keys` (its key
names are attributes of ``Keys``) and the arguments by name, it packs both in the declared order, refusing a
missing or unknown name. A script refuses a change in one form, ``refuse(CODE, detail)`` (``refuse.lua``); the
call decodes it here, once, into a :class:`~streaming.errors.ScriptRefusal` whose ``code`` callers match on, and
:data:`REFUSAL_ERRORS` says which error each code raises to the store's callers.

>>> import fakeredis
>>> from snapshotter.keys import Keys
>>> r, k = fakeredis.FakeRedis(), Keys("shop")
>>> bind(r, LEASE_ACQUIRE)(k, holder="learner-a", ttl_ms=5000)
b'1:learner-a'
>>> bind(r, LEASE_ACQUIRE)(k, holder="learner-b", ttl=5)
Traceback (most recent call last):
...
TypeError: script lease_acquire: missing ARGV ttl_ms; unknown ARGV ttl
>>> try:
...     bind(r, UNPIN)(k, maxlen=100, actor="op", reason="check", channel=k.channel, metrics="{}")
... except ScriptRefusal as refusal:
...     print(refusal.code, "|", refusal.detail)
NOT_PINNED | no version is pinned
>>> "redis.call('INCR', KEYS[2])" in source("write_version")
True
>>> source("rollback").startswith("-- Shared by the control scripts")
True
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
from collections.abc import Mapping, Sequence
from importlib import resources
from types import MappingProxyType
from typing import Any

import redis

from snapshotter.keys import Keys
from streaming.errors import (
    AlreadyFrozenError,
    ArchiveConflictError,
    ChallengerError,
    ControlError,
    HeadMovedError,
    IncidentOpenError,
    LeaseLostError,
    LivelearnError,
    NoIncidentError,
    NotFrozenError,
    NotPinnedError,
    QuarantinedError,
    RebuildError,
    RefusalCode,
    ScriptRefusal,
    SnapshotError,
    SnapshotFencedError,
    StaleEpochError,
    StaleLineageError,
    VersionNotFoundError,
)

__all__ = [
    "ARMS",
    "CLOSE_INCIDENT",
    "COMMIT_CURSOR",
    "DROP_BRANCH",
    "FREEZE",
    "IMPORT_VERSION",
    "LEASE_ACQUIRE",
    "LEASE_RELEASE",
    "LEASE_RENEW",
    "OPEN_INCIDENT",
    "PIN",
    "PROMOTE",
    "PROMOTE_ARM",
    "PROMOTE_BRANCH",
    "PUBLISH_STATUS",
    "RECORD_BACKUP",
    "REFUSAL_ERRORS",
    "RELEASE",
    "RESTORE",
    "RESUME",
    "ROLLBACK",
    "SPECS",
    "START_BRANCH",
    "START_OVER",
    "STORE_IDENTITY",
    "UNPIN",
    "UNPROTECT",
    "UPDATE_BRANCH",
    "WIDEN_INCIDENT",
    "WRITE_BRANCH",
    "WRITE_VERSION",
    "BoundScript",
    "ScriptSpec",
    "bind",
    "refusal_error",
    "source",
]

_INCLUDE = "-- include: "


@functools.cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua`` with its includes expanded."""
    text = resources.files("snapshotter").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    includes = [line[len(_INCLUDE) :].strip() for line in lines if line.startswith(_INCLUDE)]
    body = "".join(line for line in lines if not line.startswith(_INCLUDE))
    return "".join(source(included) for included in includes) + body


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """Script ``lua/<name>.lua``: the names of its ``KEYS`` and of its ``ARGV``, in order.

    Parameters
    ----------
    name
        The file's name without ``.lua``.
    keys
        The ``KEYS`` in order; each names an attribute of :class:`~snapshotter.keys.Keys`.
    args
        The ``ARGV`` in order. ``None`` is passed as ``''``, the scripts' "none".
    rest
        The name of a trailing run of further ``ARGV`` (a sequence: the versions to quarantine, the notices...).
    raises
        The error a refusal code raises from this script where it is not the one :data:`REFUSAL_ERRORS` says.

    Examples
    --------
    >>> spec = ScriptSpec("lease_renew", keys=("lease",), args=("lease_value", "ttl_ms"))
    >>> spec.pack_args({"ttl_ms": 5000, "lease_value": "1:a"})
    ['1:a', 5000]
    >>> spec.pack_keys(Keys("shop"))
    ['livelearn:{shop}:lease']
    """

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    rest: str | None = None
    raises: Mapping[RefusalCode, type[LivelearnError]] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = [*self.args, *([self.rest] if self.rest else [])]
        for kind, declared in (("KEYS", list(self.keys)), ("ARGV", names)):
            bad = [n for n in declared if not n.isidentifier() or keyword.iskeyword(n) or declared.count(n) > 1]
            if bad:  # an argument is passed as a keyword: each must be one, and once
                raise ValueError(f"script {self.name}: {kind} names {bad} are not distinct identifiers")

    def pack_keys(self, keys: Keys | Mapping[str, str]) -> list[str]:
        """The ``KEYS`` in order: the model's ``keys`` read by name, or a mapping with exactly the declared names."""
        if isinstance(keys, Keys):
            keys = {name: getattr(keys, name) for name in self.keys if isinstance(getattr(keys, name, None), str)}
        self._check("KEYS", keys, self.keys)
        return [keys[name] for name in self.keys]

    def pack_args(self, args: Mapping[str, Any]) -> list[Any]:
        """The ``ARGV`` in order from ``args``, which holds exactly the declared names (``rest``: a sequence)."""
        self._check("ARGV", args, (*self.args, *([self.rest] if self.rest else [])))
        packed = ["" if args[name] is None else args[name] for name in self.args]
        if self.rest:
            more = args[self.rest]
            if isinstance(more, str | bytes) or not isinstance(more, Sequence):
                raise TypeError(f"script {self.name}: ARGV {self.rest} takes a sequence, not {type(more).__name__}")
            packed += more
        return packed

    def _check(self, kind: str, given: Mapping[str, Any], declared: Sequence[str]) -> None:
        missing = [name for name in declared if name not in given]
        unknown = [name for name in given if name not in declared]
        if missing or unknown:
            said = [f"missing {kind} {', '.join(missing)}"] if missing else []
            said += [f"unknown {kind} {', '.join(unknown)}"] if unknown else []
            raise TypeError(f"script {self.name}: {'; '.join(said)}")


class BoundScript:
    """Script ``spec`` on ``client``: call it with the model's keys and the arguments by name.

    A refusal (``refuse.lua``) raises :class:`~streaming.errors.ScriptRefusal`; any other error as redis-py
    raised it (an outage, Redis refusing writes: for the caller to wait out or report).
    """

    def __init__(self, client: redis.Redis, spec: ScriptSpec) -> None:
        self.spec = spec
        self._script = client.register_script(source(spec.name))

    def __call__(self, keys: Keys | Mapping[str, str], /, **args: Any) -> Any:
        packed_keys, packed_args = self.spec.pack_keys(keys), self.spec.pack_args(args)
        try:
            return self._script(keys=packed_keys, args=packed_args)
        except redis.ResponseError as exc:
            refusal = _refusal(exc, self.spec.name)
            if refusal is None:
                raise
            raise refusal from None


def bind(client: redis.Redis, spec: ScriptSpec) -> BoundScript:
    """Script ``spec`` bound to ``client``."""
    return BoundScript(client, spec)


def _refusal(exc: redis.ResponseError, script: str) -> ScriptRefusal | None:
    """The refusal ``exc`` carries, or ``None`` for any other error: the one place a refusal is decoded.

    ``refuse.lua`` answers ``"<CODE> <detail>"``; an error of Redis itself never starts with a refusal code.

    >>> _refusal(redis.ResponseError("STALE epoch is 3"), "freeze").code
    <RefusalCode.STALE: 'STALE'>
    >>> _refusal(redis.ResponseError("OOM command not allowed"), "freeze") is None
    True
    """
    code, _, detail = str(exc).partition(" ")
    if code not in RefusalCode.__members__:
        return None
    return ScriptRefusal(RefusalCode(code), detail, script=script)


#: The error each refusal raises to the store's callers (a script's spec may say otherwise for a code: the
#: snapshot writer's scripts raise :class:`SnapshotFencedError`, a snapshot error as every failed write is).
REFUSAL_ERRORS: Mapping[RefusalCode, type[LivelearnError]] = MappingProxyType(
    {
        RefusalCode.FENCED: LeaseLostError,
        RefusalCode.STALE_LINEAGE: StaleLineageError,
        RefusalCode.INCIDENT: SnapshotError,  # the store writes the version again as not stable: never raised
        RefusalCode.STALE: StaleEpochError,
        RefusalCode.HEAD_MOVED: HeadMovedError,
        RefusalCode.MISSING: VersionNotFoundError,
        RefusalCode.ALREADY: AlreadyFrozenError,
        RefusalCode.NOT_FROZEN: NotFrozenError,
        RefusalCode.NOT_PINNED: NotPinnedError,
        RefusalCode.QUARANTINED: QuarantinedError,
        RefusalCode.INCIDENT_OPEN: IncidentOpenError,
        RefusalCode.NOT_OPEN: NoIncidentError,
        RefusalCode.CHAMPION_MOVED: ChallengerError,
        RefusalCode.IS_CHAMPION: ChallengerError,
        RefusalCode.ARM_EXISTS: ChallengerError,
        RefusalCode.UNKNOWN_ARM: ChallengerError,
        RefusalCode.NOT_MANAGED: ChallengerError,
        RefusalCode.CONFLICT: ArchiveConflictError,
        RefusalCode.NOT_EMPTY: ControlError,
        RefusalCode.BRANCH_EXISTS: RebuildError,
        RefusalCode.NOT_DONE: RebuildError,
    }
)


def refusal_error(refusal: ScriptRefusal, message: str) -> LivelearnError:
    """The error ``refusal`` raises to the store's callers (:data:`REFUSAL_ERRORS`), saying ``message``.

    >>> refusal_error(ScriptRefusal(RefusalCode.FENCED, "lease is held by 2:b", script="release"), "lost")
    LeaseLostError('lost')
    >>> refusal_error(ScriptRefusal(RefusalCode.FENCED, "lease is held by 2:b", script="promote"), "lost")
    SnapshotFencedError('lost')
    """
    spec = SPECS.get(refusal.script)
    own = spec.raises.get(refusal.code) if spec is not None else None
    return (own or REFUSAL_ERRORS[refusal.code])(message)


_SNAPSHOT_WRITER = MappingProxyType({RefusalCode.FENCED: SnapshotFencedError})

WRITE_VERSION = ScriptSpec(
    "write_version",
    keys=(
        "lease",
        "counter",
        "index",
        "head",
        "protected",
        "epoch",
        "stable",
        "serving",
        "pinned",
        "version_log",
        "incident",
        "quarantined",
        "candidates",
        "created",
        "join",
        "last_write",
    ),
    args=(
        "lease_value",
        "blob",
        "meta",
        "keep",
        "version_prefix",
        "epoch",
        "stable",
        "keep_stable",
        "version_log_maxlen",
        "writer",
        "metrics",
        "parent",
        "channel",
        "promotion",
        "position",
        "confirmed",
        "created_at",
        "thinning",
        "join",
        "join_sha256",
        "write_id",
    ),
    raises=_SNAPSHOT_WRITER,
)
PROMOTE = ScriptSpec(
    "promote",
    keys=("lease", "epoch", "candidates", "stable", "serving", "pinned", "quarantined", "version_log", "incident"),
    args=("lease_value", "epoch", "confirmed", "version_log_maxlen", "actor", "metrics", "channel"),
    raises=_SNAPSHOT_WRITER,
)
IMPORT_VERSION = ScriptSpec(
    "import_version",
    keys=("version_log", "index", "created", "stable", "protected", "counter", "quarantined"),
    args=(
        "version_log_maxlen",
        "version_prefix",
        "number",
        "blob",
        "meta",
        "stable",
        "quarantined",
        "created_at",
        "actor",
        "source",
        "below_counter",
        "protect",
    ),
)
UNPROTECT = ScriptSpec(
    "unprotect",
    keys=("audit", "protected", "pinned", "head", "serving", "branch_versions"),
    args=("maxlen", "actor", "reason"),
    rest="numbers",
)
_REBUILD = MappingProxyType({RefusalCode.CONFLICT: RebuildError, RefusalCode.MISSING: RebuildError})
START_BRANCH = ScriptSpec(
    "start_branch", keys=("branches",), args=("name", "doc", "now_ms", "stale_ms"), raises=_REBUILD
)
WRITE_BRANCH = ScriptSpec(
    "write_branch",
    keys=("counter", "index", "created", "protected", "branches", "version_log", "branch_versions"),
    args=(
        "version_prefix",
        "blob",
        "meta",
        "created_at",
        "branch_key",
        "name",
        "doc",
        "version_log_maxlen",
        "actor",
        "run",
    ),
    raises=_REBUILD,
)
UPDATE_BRANCH = ScriptSpec("update_branch", keys=("branches",), args=("name", "doc", "run"), raises=_REBUILD)
PROMOTE_BRANCH = ScriptSpec(
    "promote_branch",
    keys=(
        "audit",
        "head",
        "epoch",
        "resume",
        "stable",
        "candidates",
        "serving",
        "pinned",
        "lease",
        "branches",
        "protected",
        "branch_versions",
        "index",
    ),
    args=(
        "maxlen",
        "name",
        "branch_key",
        "expected_epoch",
        "actor",
        "reason",
        "channel",
        "provenance",
        "now",
        "force",
    ),
    raises=_REBUILD,
)
DROP_BRANCH = ScriptSpec(
    "drop_branch",
    keys=("audit", "branches", "protected", "head", "branch_versions"),
    args=("maxlen", "name", "branch_key", "now_ms", "stale_ms", "force", "actor", "reason"),
    raises=_REBUILD,
)
STORE_IDENTITY = ScriptSpec("store_identity", keys=("store_id",), args=("token", "adopt"))
RECORD_BACKUP = ScriptSpec(
    "record_backup",
    keys=("audit", "backup"),
    args=("maxlen", "at", "location", "manifest", "written", "newest", "actor"),
)
RESTORE = ScriptSpec(
    "restore",
    keys=("audit", "head", "serving", "counter", "epoch", "join", "store_id"),
    args=(
        "maxlen",
        "version_meta",
        "version",
        "after",
        "epoch",
        "actor",
        "reason",
        "source",
        "channel",
        "join",
        "join_sha256",
        "store_id",
    ),
)
START_OVER = ScriptSpec(
    "start_over", keys=("audit", "counter"), args=("maxlen", "after", "actor", "reason", "recorded", "may_repeat")
)
ROLLBACK = ScriptSpec(
    "rollback",
    keys=(
        "audit",
        "epoch",
        "head",
        "serving",
        "pinned",
        "rollbacks",
        "stable",
        "resume",
        "quarantined",
        "candidates",
        "branch_versions",
    ),
    args=(
        "maxlen",
        "expected_epoch",
        "target",
        "actor",
        "reason",
        "metrics",
        "now",
        "target_meta",
        "channel",
        "action",
        "head",
        "resume_offsets",
        "position",
        "resume_counters",
    ),
)
OPEN_INCIDENT = ScriptSpec(
    "open_incident",
    keys=(
        "audit",
        "epoch",
        "head",
        "serving",
        "pinned",
        "rollbacks",
        "stable",
        "resume",
        "incident",
        "incident_counter",
        "quarantined",
        "frozen",
        "candidates",
        "lease",
        "incident_ranges",
    ),
    args=(
        "maxlen",
        "expected_epoch",
        "actor",
        "reason",
        "metrics",
        "now",
        "channel",
        "signal",
        "change_point",
        "position",
        "target",
        "target_meta",
        "head",
        "resume_offsets",
        "lease_value",
        "resume_counters",
        "scope",
        "held_from",
    ),
    rest="quarantine",
)
CLOSE_INCIDENT = ScriptSpec(
    "close_incident",
    keys=("audit", "incident", "frozen", "resumed", "released", "incident_ranges", "lease"),
    args=(
        "maxlen",
        "incident_id",
        "actor",
        "reason",
        "metrics",
        "now",
        "channel",
        "position",
        "offsets",
        "lease_value",
    ),
)
RELEASE = ScriptSpec(
    "release",
    keys=("lease", "released", "incident_ranges"),
    args=("lease_value", "position", "cause", "actor", "now", "offsets"),
)
WIDEN_INCIDENT = ScriptSpec(
    "widen_incident", keys=("lease", "incident", "incident_ranges"), args=("lease_value", "incident_id", "held_from")
)
PIN = ScriptSpec(
    "pin",
    keys=("audit", "pinned", "serving", "protected", "quarantined", "branch_versions"),
    args=("maxlen", "version", "actor", "reason", "version_meta", "channel", "force", "metrics"),
)
UNPIN = ScriptSpec(
    "unpin",
    keys=("audit", "pinned", "serving", "protected", "stable", "branch_versions"),
    args=("maxlen", "actor", "reason", "channel", "metrics"),
)
FREEZE = ScriptSpec(
    "freeze",
    keys=("audit", "frozen", "epoch"),
    args=("maxlen", "actor", "reason", "metrics", "now", "channel", "expected_epoch"),
)
RESUME = ScriptSpec(
    "resume",
    keys=("audit", "frozen", "resumed", "incident", "incident_ranges"),
    args=("maxlen", "actor", "reason", "metrics", "now", "channel"),
)
COMMIT_CURSOR = ScriptSpec(
    "commit_cursor",
    keys=("audit", "guard"),
    args=("maxlen", "read_from", "cursor", "epoch", "scored", "judge", "actor"),
    rest="notices",
)
PUBLISH_STATUS = ScriptSpec(
    "publish_status",
    keys=("lease", "status", "history"),
    args=("lease_value", "status", "ttl_ms", "history_maxlen", "samples"),
)
LEASE_ACQUIRE = ScriptSpec("lease_acquire", keys=("lease", "fence"), args=("holder", "ttl_ms"))
LEASE_RENEW = ScriptSpec("lease_renew", keys=("lease",), args=("lease_value", "ttl_ms"))
LEASE_RELEASE = ScriptSpec("lease_release", keys=("lease",), args=("lease_value",))
# challengers (streaming.learner.arms): the champion alias, the declarations at run time
PROMOTE_ARM = ScriptSpec(
    "promote_arm",
    keys=("audit", "champion", "canary"),
    args=("maxlen", "arm", "actor", "reason", "channel", "metrics", "current"),
)
ARMS = ScriptSpec(
    "arms", keys=("audit", "arms"), args=("maxlen", "op", "name", "declaration", "seed", "actor", "reason", "channel")
)

#: Every script, by name.
SPECS: Mapping[str, ScriptSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            WRITE_VERSION,
            PROMOTE,
            START_OVER,
            IMPORT_VERSION,
            UNPROTECT,
            RECORD_BACKUP,
            STORE_IDENTITY,
            RESTORE,
            START_BRANCH,
            WRITE_BRANCH,
            UPDATE_BRANCH,
            PROMOTE_BRANCH,
            DROP_BRANCH,
            ROLLBACK,
            OPEN_INCIDENT,
            CLOSE_INCIDENT,
            RELEASE,
            WIDEN_INCIDENT,
            PIN,
            UNPIN,
            FREEZE,
            RESUME,
            COMMIT_CURSOR,
            PUBLISH_STATUS,
            LEASE_ACQUIRE,
            LEASE_RENEW,
            LEASE_RELEASE,
            PROMOTE_ARM,
            ARMS,
        )
    }
)

# -- the canary split of serving (ControlPlane.set_canary / abort_canary), registered in one block of its own --------
CANARY = ScriptSpec(
    "canary",
    keys=("audit", "canary", "serving"),
    args=(
        "maxlen",
        "arm",
        "percent",
        "steps",
        "step",
        "actor",
        "reason",
        "now",
        "metrics",
        "channel",
        "serving",
        "held",
        "expected",
        "abort",
    ),
    # an operator's request refused (no canary to abort, an arm the serving version lacks), not a missing version
    raises=MappingProxyType({RefusalCode.MISSING: ControlError}),
)
SPECS = MappingProxyType({**SPECS, CANARY.name: CANARY})
__all__ += ["CANARY"]
