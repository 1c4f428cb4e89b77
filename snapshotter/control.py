"""Operator and monitor actions on a model, each one atomic Lua script with its audit record.

* :meth:`ControlPlane.rollback` moves the learner lineage (head, epoch) to a version and, unless a
  version is pinned, serving with it. Given the epoch it judged, a second monitor acting on the same
  breach finds the epoch moved on and changes nothing: exactly one rollback per breach.
* :meth:`pin` / :meth:`unpin` hold serving on a version / let it follow the newest stable again.
* :meth:`freeze` / :meth:`resume` stop and restart learning (learners keep scoring).

Every change publishes on the model's control channel, so learners and servers react at once.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from snapshotter.codec import pack
from snapshotter.connection import redis_failure
from snapshotter.store import VersionStore
from streaming.errors import ControlError, SnapshotError

__all__ = ["ControlPlane"]

_COMMON = """
local function audit(action, actor, reason, from, to, metrics, epoch)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[1]), '*', 'action', action, 'actor', actor,
    'reason', reason, 'from', from or '', 'to', to or '', 'metrics', metrics, 'epoch', epoch or '')
end
"""
# KEYS: audit, epoch, head, serving, pinned, rollbacks, stable, resume.  ARGV: maxlen, expected epoch ('' = any),
# target, actor, reason, metrics json, now (s), meta key of target, channel, action name, head the resume offsets
# were read at ('' = none), resume offsets (msgpack).
_ROLLBACK = _COMMON + """
local epoch = redis.call('GET', KEYS[2]) or '0'
if ARGV[2] ~= '' and ARGV[2] ~= epoch then return redis.error_reply('STALE epoch is ' .. epoch) end
if redis.call('EXISTS', ARGV[8]) == 0 then return redis.error_reply('MISSING version ' .. ARGV[3]) end
local from = redis.call('GET', KEYS[3])
if (from or '') ~= ARGV[11] then return redis.error_reply('HEAD_MOVED head is ' .. tostring(from)) end
local new_epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], ARGV[3])
-- where the new lineage resumes: everything consumed so far is skipped, even if no learner lives to say so
redis.call('DEL', KEYS[8])
redis.call('HSET', KEYS[8], 'epoch', new_epoch, 'from', from or '', 'to', ARGV[3], 'offsets', ARGV[12])
-- every version numbered above the target was written by the lineage being abandoned: none of them may
-- be picked as "stable" again (rollback targets, unpin, retention's newest stable ones)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '(' .. ARGV[3], '+inf')
local serving_from = redis.call('GET', KEYS[4]) or ''
local serving_to = serving_from
if redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('SET', KEYS[4], ARGV[3])
  serving_to = ARGV[3]
end
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[7] .. ':' .. new_epoch)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[1]), '*', 'action', ARGV[10], 'actor', ARGV[4],
  'reason', ARGV[5], 'from', from or '', 'to', ARGV[3], 'metrics', ARGV[6], 'epoch', new_epoch,
  'serving_from', serving_from, 'serving_to', serving_to)
redis.call('PUBLISH', ARGV[9], 'rollback')
return new_epoch
"""
# KEYS: audit, pinned, serving, protected.  ARGV: maxlen, version, actor, reason, meta key, channel.
_PIN = _COMMON + """
if redis.call('EXISTS', ARGV[5]) == 0 then return redis.error_reply('MISSING version ' .. ARGV[2]) end
local old = redis.call('GET', KEYS[3])
local old_pin = redis.call('GET', KEYS[2])
if old_pin then redis.call('SREM', KEYS[4], old_pin) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
audit('pin', ARGV[3], ARGV[4], old, ARGV[2], '{}')
redis.call('PUBLISH', ARGV[6], 'serving')
return 1
"""
# KEYS: audit, pinned, serving, protected, stable.  ARGV: maxlen, actor, reason, channel.
_UNPIN = _COMMON + """
local pinned = redis.call('GET', KEYS[2])
if not pinned then return redis.error_reply('NOT_PINNED no version is pinned') end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], pinned)
local newest = redis.call('ZREVRANGE', KEYS[5], 0, 0)[1]
if newest then redis.call('SET', KEYS[3], newest) end
audit('unpin', ARGV[2], ARGV[3], pinned, newest or pinned, '{}')
redis.call('PUBLISH', ARGV[4], 'serving')
return 1
"""
# KEYS: audit, frozen, epoch.  ARGV: maxlen, actor, reason, metrics, now, channel, expected epoch.
_FREEZE = _COMMON + """
if redis.call('EXISTS', KEYS[2]) == 1 then return redis.error_reply('ALREADY learning is frozen') end
local epoch = redis.call('GET', KEYS[3]) or '0'
if ARGV[7] ~= '' and ARGV[7] ~= epoch then return redis.error_reply('STALE epoch is ' .. epoch) end
redis.call('HSET', KEYS[2], 'since', ARGV[5], 'actor', ARGV[2], 'reason', ARGV[3])
audit('freeze', ARGV[2], ARGV[3], '', '', ARGV[4], epoch)
redis.call('PUBLISH', ARGV[6], 'freeze')
return 1
"""
# KEYS: audit, frozen, resumed.  ARGV: maxlen, actor, reason, metrics, now, channel.
_RESUME = _COMMON + """
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOT_FROZEN learning is not frozen') end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[5])
audit('resume', ARGV[2], ARGV[3], '', '', ARGV[4])
redis.call('PUBLISH', ARGV[6], 'resume')
return 1
"""


class ControlPlane:
    """Atomic, audited control actions on one model's versions."""

    def __init__(self, store: VersionStore) -> None:
        self.store = store
        self.keys = store.keys
        client = store.client
        self._rollback = client.register_script(_ROLLBACK)
        self._pin = client.register_script(_PIN)
        self._unpin = client.register_script(_UNPIN)
        self._freeze = client.register_script(_FREEZE)
        self._resume = client.register_script(_RESUME)

    def _run(self, script, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=[self.store.audit_retention, *args])
        except redis.ResponseError as exc:
            if redis_failure(exc):
                raise  # Redis refused the write itself (out of memory, read-only, permission): not our refusal
            code, _, detail = str(exc).partition(" ")
            raise ControlError(f"{code.lower().replace('_', ' ')}: {detail}; nothing was changed") from None

    def _verify(self, number: int) -> None:
        """Refuse missing or corrupt versions before pointing anything at them."""
        try:
            self.store.load(number)
        except SnapshotError as exc:  # missing or corrupt
            raise ControlError(f"{exc}; nothing was changed") from None

    # -- rollback ---------------------------------------------------------------------------------
    def rollback_target(self, head: int | None, fallback: int | None = None) -> int | None:
        """The newest stable version older than ``head`` (or ``fallback`` when there is none)."""
        older = [n for n in self.store.stable_numbers() if head is None or n < head]
        return older[-1] if older else fallback

    def rollback(self, *, to: int | None = None, actor: str, reason: str, metrics: dict | None = None,
                 expected_epoch: int | None = None, automatic: bool = False, fallback: int | None = None,
                 consumed: dict[str, dict[str, int]] | None = None) -> int:
        """Move lineage (and unpinned serving) to ``to`` or the rollback target; returns the target."""
        k = self.keys
        for _attempt in range(10):
            head = self.store.head()
            target = to if to is not None else self.rollback_target(head, fallback)
            if target is None:
                raise ControlError("no stable version older than the head to roll back to; pass --to N")
            self._verify(target)
            try:
                self._run(self._rollback,
                          [k.audit, k.epoch, k.head, k.serving, k.pinned, k.rollbacks, k.stable, k.resume],
                          ["" if expected_epoch is None else str(expected_epoch), target, actor, reason,
                           json.dumps(metrics or {}), time.time(), k.meta(target), k.channel,
                           "rollback" if automatic else "manual_rollback", "" if head is None else str(head),
                           pack(self.consumed_offsets(head, consumed))])
            except ControlError as exc:
                if "head moved" in str(exc):  # a snapshot landed meanwhile: read its offsets and try again
                    continue
                raise
            return target
        raise ControlError("the head kept moving while rolling back; try again")

    def consumed_offsets(self, head: int | None, known: dict[str, dict[str, int]] | None = None
                         ) -> dict[str, dict[str, int]]:
        """How far the lineage has consumed: the head's offsets, raised to the active learner's last
        published positions and to ``known`` ones (the monitor's judged sample). A rollback skips all of it,
        so a successor of a learner that dies before applying the rollback does not learn them again."""
        offsets: dict[str, dict[str, int]] = {}
        sources = [known or {}]
        if head is not None:
            try:
                sources.append(self.store.meta(head).offsets)
            except SnapshotError:
                pass  # unreadable head: the live positions below still count
        status = self.store.status()
        if status:
            sources.append(status.get("offsets") or {})
        for source in sources:
            for topic, partitions in source.items():
                mine = offsets.setdefault(topic, {})
                for partition, position in partitions.items():
                    mine[partition] = max(mine.get(partition, 0), int(position))
        return offsets

    # -- pinning ----------------------------------------------------------------------------------
    def pin(self, number: int, *, actor: str, reason: str) -> None:
        self._verify(number)
        k = self.keys
        self._run(self._pin, [k.audit, k.pinned, k.serving, k.protected], [number, actor, reason, k.meta(number),
                                                                           k.channel])

    def unpin(self, *, actor: str, reason: str) -> None:
        k = self.keys
        self._run(self._unpin, [k.audit, k.pinned, k.serving, k.protected, k.stable], [actor, reason, k.channel])

    # -- freezing ---------------------------------------------------------------------------------
    def freeze(self, *, actor: str, reason: str, metrics: dict | None = None,
               expected_epoch: int | None = None) -> None:
        k = self.keys
        self._run(self._freeze, [k.audit, k.frozen, k.epoch],
                  [actor, reason, json.dumps(metrics or {}), time.time(), k.channel,
                   "" if expected_epoch is None else str(expected_epoch)])

    def resume(self, *, actor: str, reason: str, metrics: dict | None = None) -> None:
        k = self.keys
        self._run(self._resume, [k.audit, k.frozen, k.resumed],
                  [actor, reason, json.dumps(metrics or {}), time.time(), k.channel])

    def frozen(self) -> dict[str, str] | None:
        raw = self.store.client.hgetall(self.keys.frozen)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def recent_rollbacks(self, window: float, now: float | None = None) -> list[float]:
        """Times of rollbacks within ``window`` seconds, since the last resume."""
        now = time.time() if now is None else now
        resumed = float(self.store.client.get(self.keys.resumed) or 0)
        start = max(now - window, resumed)
        return [float(score) for _m, score in
                self.store.client.zrangebyscore(self.keys.rollbacks, f"({start}", now, withscores=True)]
