"""Rebuild branches: versions a rebuild writes beside the learner lineage, and their promotion to it.

A rebuild (``livelearn rebuild``) learns a bounded range of history again from a stored version (or from nothing)
and writes its versions as a **branch**: numbered by the model's one counter, with a parent chain from the base
version, provenance in ``extra.rebuild``, kept from retention, never serving. A branch is a JSON document in
``livelearn:{m}:branches`` (name -> doc: base, ranges, exclusions, mode, provenance, status ``running`` / ``done`` /
``failed`` / ``promoted``, head, heartbeat) and its versions in ``livelearn:{m}:branch:<name>``. Each change is
one script: start (refused when a running rebuild's ranges overlap), write a version, report (heartbeat, end), and
promote (the lineage moves to the branch head; :meth:`Branches.promote`).

Examples
--------
>>> import fakeredis
>>> from snapshotter.codec import SnapshotState
>>> from snapshotter.store import VersionStore, version_meta
>>> store = VersionStore(fakeredis.FakeRedis(), "shop")
>>> branches = Branches(store)
>>> doc = branches.start("repair-1", base=None, ranges={"events": {"0": [0, 500]}}, provenance={}, actor="op")
>>> state = SnapshotState(spec={}, model={"w": 1}, metrics={}, counters={"events_seen": 500})
>>> branches.write("repair-1", state, offsets={"events": {"0": 500}}, metrics={}, parent=None, epoch=0).number
1
>>> branches.finish("repair-1", "done")["head"], store.head()
(1, None)
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from snapshotter.codec import EncodedSnapshot, SnapshotState, VersionMeta, pack
from snapshotter.connection import as_int, as_text
from snapshotter.scripts import (
    DROP_BRANCH,
    PROMOTE_BRANCH,
    START_BRANCH,
    UPDATE_BRANCH,
    WRITE_BRANCH,
    bind,
    refusal_error,
)
from snapshotter.store import VersionStore, version_meta
from streaming.errors import RebuildError, ScriptRefusal

__all__ = ["STALE_MS", "Branches"]

#: A running rebuild that has not reported for this long is taken as dead: its range no longer blocks another.
STALE_MS = 60_000


class Branches:
    """The rebuild branches of one model's store."""

    def __init__(self, store: VersionStore) -> None:
        self.store = store
        client = store.client
        self._start, self._write = bind(client, START_BRANCH), bind(client, WRITE_BRANCH)
        self._update, self._promote = bind(client, UPDATE_BRANCH), bind(client, PROMOTE_BRANCH)
        self._drop = bind(client, DROP_BRANCH)
        self._runs: dict[str, str] = {}  # the run token of each branch this instance started

    def get(self, name: str) -> dict[str, Any] | None:
        raw = self.store.client.hget(self.store.keys.branches, name)
        return None if raw is None else _doc(raw)

    def all(self) -> dict[str, dict[str, Any]]:
        raw = self.store.client.hgetall(self.store.keys.branches)
        return {as_text(k): _doc(v) for k, v in sorted(raw.items())}

    def versions(self, name: str) -> list[int]:
        return [as_int(v) for v in self.store.client.zrange(self.store.keys.branch(name), 0, -1)]

    def start(
        self,
        name: str,
        *,
        base: int | None,
        ranges: dict[str, dict[str, list[int]]],
        provenance: dict[str, Any],
        actor: str,
    ) -> dict[str, Any]:
        """Register branch ``name`` as running over ``ranges`` ({topic: {partition: [from, to)}}), on the lineage's
        epoch now (a promotion is refused once the lineage moved). Raises :class:`RebuildError` when the name is
        taken or a running rebuild's ranges overlap."""
        now = time.time()
        run = secrets.token_hex(8)  # this run's: only it writes, reports on and ends the branch
        doc = {
            "name": name,
            "run": run,
            "status": "running",
            "lineage_epoch": self.store.epoch(),
            "base": base,
            "ranges": ranges,
            "provenance": provenance,
            "actor": actor,
            "started_at": now,
            "heartbeat_ms": int(now * 1000),
            "head": None,
            "versions": 0,
        }
        try:
            self._start(self.store.keys, name=name, doc=json.dumps(doc), now_ms=int(now * 1000), stale_ms=STALE_MS)
        except ScriptRefusal as refusal:
            raise refusal_error(refusal, f"rebuild {name!r} not started: {refusal.detail}") from None
        self._runs[name] = run
        return doc

    def write(
        self,
        name: str,
        state: SnapshotState | EncodedSnapshot,
        *,
        offsets: dict[str, dict[str, int]],
        metrics: dict[str, dict[str, float]],
        parent: int | None,
        epoch: int,
        extra: dict[str, Any] | None = None,
        model_events_learned: int | None = None,
        writer: str = "rebuild",
    ) -> VersionMeta:
        """Store ``state`` as the next version of branch ``name`` (its heartbeat renewed)."""
        doc = self.get(name)
        if doc is not None:
            self._check_run(name, doc)
        if doc is None or doc["status"] != "running":
            raise RebuildError(f"branch {name!r} is not running: its versions cannot be written")
        encoded = state if isinstance(state, EncodedSnapshot) else EncodedSnapshot.of(state)
        blob = encoded.blob
        now = time.time()
        meta = version_meta(
            encoded,
            created_at=now,
            writer=writer,
            lease_token=0,
            offsets=offsets,
            metrics=metrics,
            parent=parent,
            stable=False,
            epoch=epoch,
            extra={**(extra or {}), "branch": name, "run": self._runs.get(name, "")},
            model_events_learned=model_events_learned,
        )
        doc["heartbeat_ms"] = int(now * 1000)
        k = self.store.keys
        try:
            number = self._write(
                k,
                version_prefix=k.version_prefix,
                blob=blob,
                meta=pack(meta),
                created_at=repr(now),
                branch_key=k.branch(name),
                name=name,
                doc=json.dumps(doc),
                version_log_maxlen=self.store.version_log_retention,
                actor=writer,
                run=self._runs.get(name, ""),
            )
        except ScriptRefusal as refusal:
            raise refusal_error(refusal, f"rebuild {name!r}: {refusal.detail}") from None
        return VersionMeta.from_dict({"number": int(number), **meta})

    def report(self, name: str, **changes: Any) -> dict[str, Any]:
        """Renew the heartbeat of running branch ``name`` (and set ``changes`` in its document)."""
        doc = self.get(name)
        if doc is None:
            raise RebuildError(f"no branch named {name!r}")
        self._check_run(name, doc)
        doc.update(changes, heartbeat_ms=int(time.time() * 1000))
        try:
            self._update(self.store.keys, name=name, doc=json.dumps(doc), run=self._runs.get(name, ""))
        except ScriptRefusal as refusal:
            raise refusal_error(refusal, f"branch {name!r}: {refusal.detail}") from None
        return self.get(name) or doc

    def _check_run(self, name: str, doc: dict[str, Any]) -> None:
        if doc.get("run") != self._runs.get(name):
            raise RebuildError(
                f"branch {name!r} is another rebuild run's now (it was dropped and started again while this run was "
                "stopped): this run writes nothing more to it"
            )

    def finish(self, name: str, status: Literal["done", "failed"], **changes: Any) -> dict[str, Any]:
        """End branch ``name``: ``done`` (promotable) or ``failed`` (its versions stay, for inspection)."""
        return self.report(name, status=status, finished_at=time.time(), **changes)

    def promote(self, name: str, *, expected_epoch: int, actor: str, reason: str, force: bool = False) -> int:
        """Move the learner lineage to branch ``name``'s head (one fenced script, audited ``promote_branch`` with the
        provenance); returns the new epoch. Raises :class:`RebuildError` when the branch is not done, or
        :class:`~streaming.errors.StaleEpochError` when a rollback moved the lineage since ``expected_epoch``."""
        doc = self.get(name)
        k = self.store.keys
        try:
            return int(
                self._promote(
                    k,
                    maxlen=self.store.audit_retention,
                    name=name,
                    branch_key=k.branch(name),
                    expected_epoch=str(expected_epoch),
                    actor=actor,
                    reason=reason,
                    channel=k.channel,
                    provenance=json.dumps((doc or {}).get("provenance", {}), sort_keys=True),
                    now=repr(time.time()),
                    force="1" if force else "0",
                )
            )
        except ScriptRefusal as refusal:
            raise refusal_error(refusal, f"branch {name!r} not promoted: {refusal.detail}") from None

    def drop(self, name: str, *, actor: str, reason: str, force: bool = False) -> None:
        """Drop branch ``name``: its versions are no longer kept from retention (one script, audited
        ``drop_branch``). Refused for a running rebuild that reported lately, unless ``force``."""
        k = self.store.keys
        try:
            self._drop(
                k,
                maxlen=self.store.audit_retention,
                name=name,
                branch_key=k.branch(name),
                now_ms=int(time.time() * 1000),
                stale_ms=STALE_MS,
                force="1" if force else "0",
                actor=actor,
                reason=reason,
            )
        except ScriptRefusal as refusal:
            raise refusal_error(refusal, f"branch {name!r} not dropped: {refusal.detail}") from None


def _doc(raw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw)
    for key in ("ranges", "provenance"):  # Lua's JSON writes an empty table as an object
        if doc.get(key) == []:
            doc[key] = {}
    return doc
