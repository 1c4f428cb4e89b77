"""The Redis key layout of one model, in one place.

Every key of a model shares the hash tag ``{<model>}``, so on Redis Cluster all of them live in
one slot and the Lua scripts that touch several keys stay legal.

>>> k = Keys("shop")
>>> k.counter, k.blob(7), k.meta(7)
('livelearn:{shop}:version:counter', 'livelearn:{shop}:v:7:blob', 'livelearn:{shop}:v:7:meta')
"""

from __future__ import annotations

__all__ = ["MAX_VERSION", "Keys"]

#: The largest version number: the largest integer every JSON client reads exactly (and a float, a sorted set's score,
#: states exactly); Redis's version counter would take 70 million years at 4 versions/s to get there. Numbers read
#: from outside (archives, requests) above it are refused: a store's counter set there could never count on.
MAX_VERSION = 2**53 - 1


class Keys:
    """Names of the Redis keys of model ``model_name``; a script's spec names its ``KEYS`` by these attributes
    (:class:`~snapshotter.scripts.ScriptSpec`).

    Each attribute is one key (its comment says what it holds; ARCHITECTURE.md has the table), and :meth:`blob`
    and :meth:`meta` name a version's two keys. Every name starts with ``livelearn:{<model>}:``, so two models
    never share a key and one model's keys share a Redis Cluster slot.

    Parameters
    ----------
    model_name
        The model whose keys these are (``LIVELEARN_MODEL_NAME``: 1-64 letters, digits, ``.``, ``_`` or ``-``).

    Examples
    --------
    >>> keys = Keys("shop")
    >>> keys.head, keys.lease, keys.channel
    ('livelearn:{shop}:head', 'livelearn:{shop}:lease', 'livelearn:{shop}:control')
    >>> keys.blob(3), keys.meta(3)
    ('livelearn:{shop}:v:3:blob', 'livelearn:{shop}:v:3:meta')
    >>> all(key.startswith("livelearn:{shop}:") for name, key in vars(keys).items() if name != "model_name")
    True
    """

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.prefix = f"livelearn:{{{model_name}}}:"
        self.counter = self.prefix + "version:counter"  # INCR -> next version number
        # "<write id> <number>" of the last version write: a write the client sends again (its reply lost to a
        # timeout) returns that number instead of writing the version twice
        self.last_write = self.prefix + "version:last_write"
        self.index = self.prefix + "versions"  # ZSET of live version numbers (score = number)
        self.head = self.prefix + "head"  # newest version of the learner lineage
        self.protected = self.prefix + "protected"  # SET of versions retention must keep (pinned, stable)
        self.lease = self.prefix + "lease"  # "<token>:<holder>" with a TTL; the writer lease
        self.fence = self.prefix + "lease:fence"  # INCR -> fencing token of each lease grant
        self.status = self.prefix + "status"  # msgpack status of the active learner, short TTL
        self.epoch = self.prefix + "lineage:epoch"  # INCR on every rollback; snapshots are fenced by it
        self.resume = self.prefix + "lineage:resume"  # HASH: where the newest rollback's lineage resumes
        self.created = self.prefix + "created"  # ZSET version -> creation time (unix s): thinning by age
        self.stable = self.prefix + "stable"  # ZSET of stable versions (met the threshold; confirmed by the guard)
        self.candidates = self.prefix + "candidates"  # ZSET versions awaiting the guard (score = stream position)
        self.serving = self.prefix + "serving"  # version the API and serving follow
        self.pinned = self.prefix + "pinned"  # version pinned by an operator (serving stays there)
        self.frozen = self.prefix + "frozen"  # HASH (since, actor, reason[, incident]) while learning is frozen
        self.incident = self.prefix + "incident"  # HASH of the open data-quality incident (absent: none)
        self.incident_counter = self.prefix + "incident:counter"  # INCR -> incident ids
        # HASH: each incident's range of the events topic the lineage did not learn (msgpack offsets per topic and
        # partition): "<id>:from" (its target's offsets, else where it held from), "<id>:to" (where learning went
        # on); "pending": the incident an operator closed whose release the active learner has not recorded yet
        self.incident_ranges = self.prefix + "incident:ranges"
        self.quarantined = self.prefix + "quarantined"  # HASH version -> incident that quarantined it
        self.rollbacks = self.prefix + "rollbacks"  # ZSET "time:epoch:position" of rollbacks (score = unix seconds)
        self.resumed = self.prefix + "resumed"  # unix time of the last resume (flap counting restarts)
        # HASH: where learning was last released after a hold (position, cause, actor, at): a learner restored from
        # a version written while held replays that range held, as the uninterrupted learner did
        self.released = self.prefix + "learning:released"
        self.audit = self.prefix + "audit"  # STREAM of operator and monitor actions: rollback, pin, freeze, incident...
        self.version_log = self.prefix + "audit:versions"  # STREAM of routine per-version entries (snapshot, stable...)
        self.history = self.prefix + "history"  # STREAM of metric samples, one per N labelled events
        # HASH (version, sha256, state) of the label join as the newest version left it (written with each version)
        self.join = self.prefix + "join"
        # challengers (streaming.learner.arms): the arm serving as champion when a promotion moved it (absent: the
        # versions' own model), the challengers declared at run time, the canary split of serving
        self.champion = self.prefix + "champion"  # STRING: arm name the `champion` alias points at
        self.arms = self.prefix + "arms"  # HASH name -> declaration ("fast:lr=0.05"), once managed at run time
        self.canary = self.prefix + "canary"  # HASH: arm, percent, steps, step, actor, reason, at (absent: none)
        # HASH name -> JSON of each rebuild's branch (base, ranges, exclusions, provenance, status, head, heartbeat);
        # each branch's versions in the ZSET branch(name)
        self.branches = self.prefix + "branches"
        # SET: every version of a branch not promoted or dropped yet (a pin's end leaves their protection alone)
        self.branch_versions = self.prefix + "branches:versions"
        # HASH: the last backup that completed (at, location, manifest, written, newest): the monitor's backup age
        self.backup = self.prefix + "backup"
        # STRING: this store's identity in the manifests of its exports and backups (made at the first; a restore
        # from backup keeps its backups' one)
        self.store_id = self.prefix + "store:id"
        self.guard = self.prefix + "guard"  # HASH: the monitors' shared cursor in `history` and judge state
        self.monitors = self.prefix + "monitors"  # ZSET of monitor ids, score = unix time of their last check
        self.learners = self.prefix + "learners"  # ZSET of learner ids (active or standby), score = last check-in
        self.channel = self.prefix + "control"  # pub/sub channel: "rollback", "serving", "freeze", "resume"
        self.version_prefix = self.prefix + "v:"

    def branch(self, name: str) -> str:
        """The versions of rebuild branch ``name`` (ZSET, score = number)."""
        return f"{self.prefix}branch:{name}"

    def blob(self, number: int) -> str:
        return f"{self.version_prefix}{number}:blob"

    def meta(self, number: int) -> str:
        return f"{self.version_prefix}{number}:meta"
