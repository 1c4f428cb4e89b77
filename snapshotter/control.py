"""Operator and monitor actions on a model, each one atomic Lua script with its audit record.

* :meth:`ControlPlane.rollback` moves the learner lineage (head, epoch) to a version and, unless a
  version is pinned, serving with it. Given the epoch it judged, a second monitor acting on the same
  breach finds the epoch moved on and changes nothing: exactly one rollback per breach.
* :meth:`pin` / :meth:`unpin` hold serving on a version / let it follow the newest stable again. A version
  quarantined by a data-quality incident (:mod:`snapshotter.incidents`) is pinned only when forced, and
  never chosen by a rollback or an unpin.
* :meth:`freeze` / :meth:`resume` stop and restart learning (learners keep scoring).
* :meth:`set_canary` / :meth:`advance_canary` / :meth:`abort_canary` split serving: a share of the requests with a
  user key goes to another arm of the serving version (:class:`Canary`; ``streaming.serving.split`` applies it).

Every change publishes on the model's control channel, so learners and servers react at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from snapshotter.codec import pack
from snapshotter.connection import as_text, redis_failure
from snapshotter.keys import Keys
from snapshotter.scripts import CANARY, FREEZE, PIN, RESUME, ROLLBACK, UNPIN, BoundScript, bind, refusal_error
from snapshotter.store import VersionStore
from streaming.errors import (
    ControlError,
    HeadMovedError,
    NoRollbackTargetError,
    RebuildError,
    ScriptRefusal,
    SnapshotError,
    VersionNotFoundError,
)

__all__ = [
    "CANARY_STEPS",
    "MAIN_ARM",
    "Canary",
    "Consumed",
    "ControlPlane",
    "RollbackRecord",
    "arms_held",
    "main_arm",
    "run_script",
]

Offsets = dict[str, dict[str, int]]


def run_script(script: BoundScript, keys: Keys, /, **args: Any) -> Any:
    """Run a control script (``maxlen`` among ``args``: the audit stream's length); a refusal raises its error
    (:data:`~snapshotter.scripts.REFUSAL_ERRORS`: a :class:`ControlError`, :class:`VersionNotFoundError` or
    :class:`LeaseLostError`) saying nothing was changed."""
    try:
        return script(keys, **args)
    except ScriptRefusal as refusal:
        raise refusal_error(refusal, f"{refusal}; nothing was changed") from None
    except redis.ResponseError as exc:
        if redis_failure(exc):
            raise  # Redis refused the write itself (out of memory, read-only, permission): not our refusal
        raise ControlError(f"{exc}; nothing was changed") from None


@dataclasses.dataclass(frozen=True)
class RollbackRecord:
    """One rollback: when (unix seconds), the epoch it made, and where in the stream it was decided."""

    time: float
    epoch: int
    position: int | None  # None for rollbacks recorded before positions were

    @classmethod
    def from_member(cls, member: str, score: float) -> RollbackRecord:
        parts = member.split(":")
        return cls(score, int(parts[1]), int(parts[2]) if len(parts) > 2 and parts[2] else None)


@dataclasses.dataclass(frozen=True)
class Consumed:
    """How far a lineage had consumed when a rollback abandoned it, and its stream counters at exactly those offsets
    (``None`` when not known; a dict without some counter when only part is known).

    >>> Consumed({"shop": {"0": 7}}, None).packed_counters()
    ''
    """

    offsets: Offsets
    counters: dict[str, int] | None

    def packed_counters(self) -> bytes | str:
        """The counters as the rollback scripts take them (msgpack; ``''``: not known)."""
        return pack(self.counters) if self.counters else ""


#: The arm name of a version's own model when its metadata names none (``extra["arm"]``, written after a promotion).
MAIN_ARM = "base"
#: The steps of a canary unless told otherwise: percent of the requests with a user key.
CANARY_STEPS: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)


def main_arm(extra: Mapping[str, Any]) -> str:
    """The arm name of a version's own model, from its metadata's ``extra``.

    >>> main_arm({}), main_arm({"arm": "fast"})
    ('base', 'fast')
    """
    return str(extra.get("arm") or MAIN_ARM)


def arms_held(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """Every arm a version holds, its own model's first, then its challengers (``extra["arms"]``, written with the
    blob's ``arms``) by name.

    >>> arms_held({"arms": {"lean": {}, "fast": {}}}), arms_held({"arm": "fast", "arms": {"base": {}}})
    (('base', 'fast', 'lean'), ('fast', 'base'))
    """
    main = main_arm(extra)
    return (main, *sorted(set(extra.get("arms") or {}) - {main}))


def _percent_text(value: float) -> str:
    """A percent as stored and shown: ``25``, ``2.5``."""
    return f"{value:g}"


def _checked_percent(value: float, what: str = "percent") -> float:
    """``value`` as a canary percent (0 to 100, to 0.01: the bucket's grain), or :class:`ControlError`."""
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ControlError(f"the canary's {what} must be from 0 to 100, not {value!r}; nothing was changed")
    return round(value, 2)


def _checked_steps(steps: Iterable[float]) -> tuple[float, ...]:
    """The steps of a canary: 1 to 10 percents above 0, increasing, or :class:`ControlError`."""
    checked = tuple(_checked_percent(float(step), "steps") for step in steps)
    if not 1 <= len(checked) <= 10 or checked[0] <= 0 or any(b <= a for a, b in itertools.pairwise(checked)):
        shown = ",".join(map(_percent_text, checked))
        raise ControlError(
            f"the canary's steps must be 1 to 10 increasing percents above 0, e.g. 5,25,50,100, not {shown!r}; "
            "nothing was changed"
        )
    return checked


@dataclasses.dataclass(frozen=True)
class Canary:
    """The canary split of serving as stored (``Keys.canary``): ``percent`` of the requests that carry a user key
    go to ``arm`` of the serving version (which requests: ``streaming.serving.split``), on the way through
    ``steps``, of which ``step`` are reached; ``aborted``: percent 0 since an abort, the arm kept.

    Examples
    --------
    >>> canary = Canary.from_hash({b"arm": b"fast", b"percent": b"25", b"steps": b"5,25,50,100", b"step": b"2",
    ...                            b"actor": b"alice", b"reason": b"looks good", b"at": b"1700000000.5"})
    >>> canary.percent, canary.next_percent, canary.aborted
    (25.0, 50.0, False)
    >>> Canary.from_hash({}) is None
    True
    """

    arm: str
    percent: float
    steps: tuple[float, ...]
    step: int
    actor: str
    reason: str
    at: str  # unix seconds as written: the version of the split an advance is made from (compare-and-set)
    aborted: bool = False

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Canary | None:
        """The canary in a ``HGETALL`` answer, or ``None`` for none."""
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        if "arm" not in f:
            return None
        steps = tuple(float(s) for s in f.get("steps", "").split(",") if s)
        return cls(
            arm=f["arm"],
            percent=float(f.get("percent") or 0),
            steps=steps or CANARY_STEPS,
            step=int(f.get("step") or 0),
            actor=f.get("actor", ""),
            reason=f.get("reason", ""),
            at=f.get("at", ""),
            aborted=f.get("aborted") == "1",
        )

    @property
    def next_percent(self) -> float | None:
        """The first step above the percent now (``None``: at or past the last one)."""
        return next((step for step in self.steps if step > self.percent), None)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "steps": list(self.steps), "at": float(self.at) if self.at else None}


def _reaches(offsets: Offsets, furthest: Offsets) -> bool:
    """Whether ``offsets`` are at ``furthest`` on every partition (a partition it lacks counts as 0).

    >>> _reaches({"t": {"0": 5, "1": 3}}, {"t": {"0": 5, "1": 3}}), _reaches({"t": {"0": 5}}, {"t": {"0": 5, "1": 3}})
    (True, False)
    """
    return all(
        int(offsets.get(topic, {}).get(partition, 0)) >= position
        for topic, partitions in furthest.items()
        for partition, position in partitions.items()
    )


class ControlPlane:
    """Atomic, audited control actions on one model's versions.

    Each action is one Lua script: it checks what it is about to do (the version exists and is readable, the
    lineage is at the epoch the caller judged), changes the keys, appends its audit entry and publishes on the
    model's control channel, or refuses having changed nothing (an error of :func:`run_script`). Operators reach it
    through the CLI, the admin API and the pin ConfigMap; the monitor and the learner through their own rules.

    Parameters
    ----------
    store
        The version store of the model it acts on (its client, keys and audit stream's length).

    Examples
    --------
    >>> import fakeredis
    >>> from snapshotter.audit import read_audit
    >>> from snapshotter.codec import SnapshotState
    >>> store = VersionStore(fakeredis.FakeRedis(), "shop", promotion="immediate")
    >>> state = SnapshotState(spec={"inputs": ["x"]}, model={}, metrics={}, counters={"events_seen": 100})
    >>> store.write(state, writer="learner-a", lease_value=None, offsets={"events": {"0": 100}},
    ...             metrics={"rolling": {"accuracy": 0.9}}, parent=None, stable=True).number
    1
    >>> plane = ControlPlane(store)
    >>> plane.pin(1, actor="alice", reason="hold it through the sale")
    >>> store.pinned(), store.serving()
    (1, 1)
    >>> plane.unpin(actor="alice", reason="sale over")
    >>> store.pinned(), store.serving()  # serving follows the newest stable version again
    (None, 1)
    >>> [(entry.action, entry.actor, entry.reason) for entry in read_audit(store.client, store.keys)]
    [('pin', 'alice', 'hold it through the sale'), ('unpin', 'alice', 'sale over')]
    >>> plane.pin(7, actor="alice", reason="a typo")
    Traceback (most recent call last):
    ...
    streaming.errors.VersionNotFoundError: version 7 of model 'shop' does not exist (...); nothing was changed

    A canary split sends a share of the requests to another arm the serving version holds (this one holds its own
    model only):

    >>> plane.set_canary("fast", 5, actor="alice", reason="try fast")
    Traceback (most recent call last):
    ...
    streaming.errors.ControlError: missing: the serving version 1 holds no arm fast (it holds base); nothing was changed
    """

    def __init__(self, store: VersionStore) -> None:
        self.store = store
        self.keys = store.keys
        client = store.client
        self._rollback, self._pin, self._unpin, self._freeze, self._resume, self._canary = (
            bind(client, spec) for spec in (ROLLBACK, PIN, UNPIN, FREEZE, RESUME, CANARY)
        )

    def _run(self, script: BoundScript, **args: Any) -> Any:
        return run_script(script, self.keys, maxlen=self.store.audit_retention, **args)

    def live_metrics(self) -> dict[str, Any]:
        """The active learner's rolling metrics and position now (recorded with operator actions)."""
        status = self.store.status()
        if not status:
            return {}
        return {
            **status["rolling"],
            "stream_position": status["stream_position"],
            "events_seen": status["counters"].get("events_seen", 0),
        }

    def _verify(self, number: int) -> None:
        """Refuse missing (:class:`VersionNotFoundError`) or corrupt versions before pointing anything at them."""
        try:
            self.store.load(number)
        except VersionNotFoundError as exc:
            raise VersionNotFoundError(f"{exc}; nothing was changed") from None
        except SnapshotError as exc:
            raise ControlError(f"{exc}; nothing was changed") from None

    def _refuse_foreign_branch(self, number: int, head: int | None) -> None:
        """A version a rebuild branch wrote is a rollback target only once its branch was promoted: a rollback keeps
        the lineage's offsets, so moving onto a branch that was not would skip the events after its end, past every
        check of a promotion. (The script refuses a running or done branch's versions at once; this covers those
        of a dropped branch, kept until retention takes them, and says so.) Decided by the branch's document, not
        by walking the lineage (retention leaves gaps in it)."""
        extra = self.store.meta(number).extra
        branch = extra.get("branch")
        if branch is None:
            return
        raw = self.store.client.hget(self.keys.branches, str(branch))
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            doc = None
        run = extra.get("run")
        if isinstance(doc, dict) and doc.get("status") == "promoted" and run in (None, doc.get("run")):
            return
        raise RebuildError(
            f"version {number} was written by rebuild branch {branch!r}, which was not promoted (or was dropped): "
            "`livelearn rebuild promote` moves the lineage to a branch; pin the version to try it. Nothing was changed"
        )

    # -- rollback ---------------------------------------------------------------------------------
    def rollback_target(
        self, head: int | None, fallback: int | None = None, *, change_point: int | None = None
    ) -> int | None:
        """The newest stable version older than ``head`` (or ``fallback`` when there is none); with
        ``change_point`` (a stream position: where the degradation began), the newest one written at or before it
        — and when there is none, ``fallback`` if given, else the newest older than ``head``."""
        older = [n for n in self.store.stable_numbers() if head is None or n < head]
        if change_point is not None and older:
            positions = {meta.number: meta.position for meta in self.store.list()}
            before = [n for n in older if n in positions and positions[n] <= change_point]
            if before:
                return before[-1]
            if fallback is not None:
                return fallback
        return older[-1] if older else fallback

    def rollback(
        self,
        *,
        to: int | None = None,
        actor: str,
        reason: str,
        metrics: dict[str, Any] | None = None,
        expected_epoch: int | None = None,
        automatic: bool = False,
        fallback: int | None = None,
        consumed: dict[str, dict[str, int]] | None = None,
        counters: dict[str, int] | None = None,
        position: int | None = None,
        change_point: int | None = None,
    ) -> int:
        """Move lineage (and unpinned serving) to ``to`` or the rollback target; returns the target.

        ``position``: the stream position the decision was made at (the monitor's judged sample; by default
        the active learner's current one), which the judge's cooldown and flap window count events from;
        ``change_point``: where the degradation began, if known (the target is then the newest stable version
        written at or before it: :meth:`rollback_target`).
        ``consumed``: positions known consumed (the judged sample's), with the stream ``counters`` there if known
        (see :meth:`consumed`)."""
        k = self.keys
        for _attempt in range(10):
            head = self.store.head()
            target = to if to is not None else self.rollback_target(head, fallback, change_point=change_point)
            if target is None:
                raise NoRollbackTargetError("no stable version older than the head to roll back to; pass --to N")
            self._verify(target)
            if to is not None:
                self._refuse_foreign_branch(to, head)
            try:
                at = position if position is not None else int(self.live_metrics().get("stream_position", 0))
                point = self.consumed(head, consumed, counters)
                self._run(
                    self._rollback,
                    expected_epoch=expected_epoch,
                    target=target,
                    actor=actor,
                    reason=reason,
                    metrics=json.dumps(metrics or {}),
                    now=time.time(),
                    target_meta=k.meta(target),
                    channel=k.channel,
                    action="rollback" if automatic else "manual_rollback",
                    head=head,
                    resume_offsets=pack(point.offsets),
                    position=at,
                    resume_counters=point.packed_counters(),
                )
            except HeadMovedError:
                continue  # a snapshot landed meanwhile: read its offsets and try again
            return target
        raise HeadMovedError("the head kept moving while rolling back; try again")

    def consumed(
        self, head: int | None, known: Offsets | None = None, counters: dict[str, int] | None = None
    ) -> Consumed:
        """How far the lineage has consumed, and its stream counters there.

        The offsets: the head's, raised to the active learner's last published positions, to ``known`` ones (the
        monitor's judged sample, the learner's own positions) and to those of a rollback no learner applied yet
        (its skip stands). A rollback skips all of it, so a successor of a learner that dies before applying the
        rollback does not learn them again.

        The counters: those of a source that is at those offsets on every partition, so a successor counts every
        event the abandoned lineage scored, also those it scored after its last version (a status is often newer
        than the head): ``counters`` given with ``known`` (the learner's own), the status's, the pending
        rollback's, else the head version's (read from its blob) — the source with the most counters when several
        are. ``None`` when none is: sources mixed (a dead learner's status still fresh while its successor wrote
        versions ahead of it on some partitions only) or unreadable; the successor then counts from the version
        the rollback left, as it did before rollbacks recorded counters.
        """
        sources: list[tuple[Offsets, dict[str, int] | None]] = []
        if known:
            sources.append((known, counters))
        status = self.store.status()
        if status:
            sources.append((status.get("offsets") or {}, dict(status.get("counters") or {})))
        point = self.store.resume_point()
        pending = point if point is not None and point["epoch"] == self.store.epoch() else None
        if pending is not None:
            sources.append((pending["offsets"], pending["counters"]))
        head_offsets: Offsets | None = None
        if head is not None:
            with contextlib.suppress(SnapshotError):  # unreadable head: the live positions below still count
                head_offsets = self.store.meta(head).offsets
                sources.append((head_offsets, None))
        offsets: Offsets = {}
        for source, _counters in sources:
            for topic, partitions in source.items():
                mine = offsets.setdefault(topic, {})
                for partition, position in partitions.items():
                    mine[partition] = max(mine.get(partition, 0), int(position))
        known_there = [found for source, found in sources if found and _reaches(source, offsets)]
        if known_there:
            most: dict[str, int] = max(known_there, key=len)  # the status's rather than a sample's events_seen alone
            return Consumed(offsets, dict(most))
        if head is not None and head_offsets is not None and _reaches(head_offsets, offsets):
            return Consumed(offsets, self._counters_of(head))
        if pending is not None and pending["from"] is not None and _reaches(pending["offsets"], offsets):
            return Consumed(offsets, self._counters_of(pending["from"]))  # recorded before rollbacks kept counters
        return Consumed(offsets, None)

    def _counters_of(self, number: int) -> dict[str, int] | None:
        """The stream counters version ``number`` holds (``None`` when it is gone or unreadable)."""
        try:
            _meta, state = self.store.load(number)
        except SnapshotError:
            return None
        return {str(name): int(value) for name, value in state.counters.items()}

    # -- pinning ----------------------------------------------------------------------------------
    def pin(self, number: int, *, actor: str, reason: str, force: bool = False) -> None:
        """Hold serving on ``number``; a quarantined version only with ``force`` (audited as forced)."""
        self._verify(number)
        k = self.keys
        self._run(
            self._pin,
            version=number,
            actor=actor,
            reason=reason,
            version_meta=k.meta(number),
            channel=k.channel,
            force="1" if force else "",
            metrics=json.dumps(self.live_metrics()),
        )

    def unpin(self, *, actor: str, reason: str) -> None:
        self._run(
            self._unpin, actor=actor, reason=reason, channel=self.keys.channel, metrics=json.dumps(self.live_metrics())
        )

    # -- freezing ---------------------------------------------------------------------------------
    def freeze(
        self, *, actor: str, reason: str, metrics: dict[str, Any] | None = None, expected_epoch: int | None = None
    ) -> None:
        self._run(
            self._freeze,
            actor=actor,
            reason=reason,
            metrics=json.dumps(metrics or {}),
            now=time.time(),
            channel=self.keys.channel,
            expected_epoch=expected_epoch,
        )

    def resume(self, *, actor: str, reason: str, metrics: dict[str, Any] | None = None) -> None:
        self._run(
            self._resume,
            actor=actor,
            reason=reason,
            metrics=json.dumps(metrics or {}),
            now=time.time(),
            channel=self.keys.channel,
        )

    def frozen(self) -> dict[str, str] | None:
        raw = self.store.client.hgetall(self.keys.frozen)
        return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None

    def recent_rollbacks(self, window: float | None = None, now: float | None = None) -> list[RollbackRecord]:
        """Rollbacks since the last resume (and within ``window`` seconds, if given), oldest first."""
        now = time.time() if now is None else now
        resumed = float(self.store.client.get(self.keys.resumed) or 0)
        start = max(now - window, resumed) if window else resumed
        found: list[tuple[Any, float]] = self.store.client.zrangebyscore(  # type: ignore[assignment]
            self.keys.rollbacks, f"({start}", "+inf", withscores=True
        )
        return [RollbackRecord.from_member(as_text(member), float(score)) for member, score in found]

    # -- the canary split -----------------------------------------------------------------------------
    def canary(self) -> Canary | None:
        """The canary split as stored (``None``: none)."""
        return Canary.from_hash(self.store.client.hgetall(self.keys.canary))

    def champion(self) -> str | None:
        """The arm the ``champion`` alias names (``None``: each version's own model)."""
        raw = self.store.client.get(self.keys.champion)
        return as_text(raw) if raw else None

    def set_canary(
        self,
        arm: str,
        percent: float,
        *,
        steps: Iterable[float] = CANARY_STEPS,
        actor: str,
        reason: str,
        expected: str | None = None,
    ) -> Canary:
        """Send ``percent`` of the requests with a user key to ``arm`` of the serving version (0 to 100; ``arm``: one
        that version holds, else :class:`ControlError`), on the way through ``steps``; audited ``canary``.
        ``expected``: the ``at`` of the canary the caller read (another change since then is refused)."""
        percent, steps = _checked_percent(percent), _checked_steps(steps)
        serving = self.store.serving()
        held = arms_held(self.store.meta(serving).extra) if serving is not None else ()
        self._run(
            self._canary,
            arm=arm,
            percent=_percent_text(percent),
            steps=",".join(map(_percent_text, steps)),
            step=sum(s <= percent for s in steps),
            actor=actor,
            reason=reason,
            now=f"{time.time():.6f}",
            metrics=json.dumps(self.live_metrics()),
            channel=self.keys.channel,
            serving=serving,
            held=",".join(held),
            expected=expected,
            abort=None,
        )
        return self._stored_canary()

    def advance_canary(self, *, actor: str, reason: str) -> Canary:
        """Move the canary to its next step (an aborted one, or one at its last step, is refused)."""
        canary = self.canary()
        if canary is None:
            raise ControlError("no canary is set: start one with `livelearn canary set ARM PERCENT`")
        if canary.aborted:
            raise ControlError(f"the canary of arm {canary.arm} was aborted; set it again to go on")
        percent = canary.next_percent
        if percent is None:
            raise ControlError(
                f"the canary of arm {canary.arm} is at {_percent_text(canary.percent)} %, its last step "
                f"({','.join(map(_percent_text, canary.steps))}); nothing was changed"
            )
        return self.set_canary(
            canary.arm, percent, steps=canary.steps, actor=actor, reason=reason, expected=canary.at or None
        )

    def abort_canary(self, *, actor: str, reason: str) -> bool:
        """Send every request back to the champion (percent 0, the arm kept; audited ``canary_abort``); ``False``
        when the canary was aborted already (nothing changed)."""
        done = self._run(
            self._canary,
            **dict.fromkeys(("arm", "percent", "steps", "step", "serving", "held", "expected")),
            actor=actor,
            reason=reason,
            now=f"{time.time():.6f}",
            metrics=json.dumps(self.live_metrics()),
            channel=self.keys.channel,
            abort="1",
        )
        return bool(done)

    def canary_status(self) -> dict[str, Any]:
        """What ``livelearn canary status`` and ``GET /canary`` show: the canary, the champion alias, the serving
        version and the arms it holds."""
        serving = self.store.serving()
        canary = self.canary()
        arms: list[str] = []
        if serving is not None:
            with contextlib.suppress(VersionNotFoundError):  # (serving moved on and retention took it meanwhile)
                arms = list(arms_held(self.store.meta(serving).extra))
        return {
            "canary": canary.to_dict() if canary else None,
            "champion": self.champion(),
            "serving": serving,
            "arms": arms,
        }

    def _stored_canary(self) -> Canary:
        canary = self.canary()
        if canary is None:  # (a promotion of an arm ends the canary: it may have done so meanwhile)
            raise ControlError("the canary ended while it was set (an arm was promoted meanwhile); read it again")
        return canary
