"""The challengers' control state in Redis: the ``champion`` alias and the challengers declared at run time.

Both are changed by one Lua script each, audited and announced on the model's channel (``champion``, ``arms``):

* :meth:`ArmControl.promote` points the ``champion`` alias at an arm (``promote_arm.lua``): serving answers with
  that arm of the version it serves at once, the active learner makes it the champion at its next batch
  (:mod:`streaming.learner.arms`), and a canary in progress ends. Pointing it back at the former champion (still
  learning in shadow for its cool-down) is backing out.
* :meth:`ArmControl.declare` adds or removes a challenger, or gives the declarations back to the settings
  (``arms.lua``). Until the first change the learner uses ``LIVELEARN_CHALLENGERS``; the first change starts from
  the declarations in use, and from then on the hash is what the learner uses (``reset``: the settings' again).

>>> import fakeredis
>>> from snapshotter.store import VersionStore
>>> control = ArmControl(VersionStore(fakeredis.FakeRedis(), "shop"))
>>> control.champion(), control.declared()
('base', None)
>>> control.declare("add", "fast", "fast:lr=0.05", seed={"twin": "twin"}, actor="alice", reason="try a faster rate")
>>> control.declared()
{'fast': 'fast:lr=0.05', 'twin': 'twin'}
>>> control.promote("fast", actor="alice", reason="better by 3 %", current="base")
>>> control.champion()
'fast'
>>> control.promote("fast", actor="bob", reason="again")
Traceback (most recent call last):
...
streaming.errors.ChallengerError: is champion: fast is the champion already; nothing was changed
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from snapshotter.connection import as_text
from snapshotter.control import run_script
from snapshotter.scripts import ARMS, PROMOTE_ARM, BoundScript, bind
from snapshotter.store import VersionStore
from streaming.config import BASE
from streaming.errors import ChallengerError

__all__ = ["MANAGED", "ArmControl"]

#: The field that marks the declarations as managed at run time (never a challenger's name: names are lowercase
#: letters, digits, ``-`` and ``_``).
MANAGED = "~managed"


class ArmControl:
    """The champion alias and the run-time declarations of one model's challengers.

    Parameters
    ----------
    store
        The model's version store (its client, keys and audit retention).
    """

    def __init__(self, store: VersionStore) -> None:
        self.store, self.keys = store, store.keys
        self._promote, self._arms = bind(store.client, PROMOTE_ARM), bind(store.client, ARMS)

    def _run(self, script: BoundScript, **args: Any) -> None:
        run_script(script, self.keys, maxlen=self.store.audit_retention, channel=self.keys.channel, **args)

    def champion(self) -> str:
        """The arm the ``champion`` alias points at (``base``: the settings' model, never promoted)."""
        raw = self.store.client.get(self.keys.champion)
        return BASE if raw is None else as_text(raw)

    def declared(self) -> dict[str, str] | None:
        """The challengers declared at run time (name -> declaration), or ``None`` while the settings' are used."""
        raw = self.store.client.hgetall(self.keys.arms)
        if not raw:
            return None
        return dict(sorted((as_text(k), as_text(v)) for k, v in raw.items() if as_text(k) != MANAGED))

    def arms_now(self) -> dict[str, Any]:
        """Every arm learning beside the champion now, as the active learner's status says (while fresh), else the
        head version's metadata (``extra.arms``: each one's declaration, where it started, its comparison)."""
        status = self.store.status()
        if status is not None:
            return dict(status.get("arms") or {})
        head = self.store.head()
        return {} if head is None else dict(self.store.meta(head).extra.get("arms") or {})

    def in_use(self) -> dict[str, str]:
        """The declarations the learner uses now (its challengers; a former champion cooling down is not one): the
        starting point of the first change at run time."""
        return {name: arm["declared"] for name, arm in self.arms_now().items() if arm.get("retire_after") is None}

    def promote_checked(self, arm: str, *, actor: str, reason: str, force: bool = False) -> str:
        """:meth:`promote` an arm the learner has (a challenger, or a former champion cooling down, which is backing
        out) whose verdict is ``promote`` — any verdict with ``force``, audited as forced; the champion before it is
        returned. A missing arm or another verdict is :class:`~streaming.errors.ChallengerError`, nothing changed."""
        arms, champion = self.arms_now(), self.champion()
        if arm not in arms:
            known = ", ".join(sorted(arms)) or "none"
            raise ChallengerError(
                f"no arm {arm!r} learns beside the champion {champion} (arms: {known}); nothing was changed"
            )
        comparison = arms[arm].get("comparison") or {}
        verdict = comparison.get("decision", "undecided")
        backing_out = bool((arms[arm].get("started") or {}).get("demoted"))
        if verdict != "promote" and not force and not backing_out:
            raise ChallengerError(
                f"{arm}'s verdict is {verdict} ({comparison.get('reason', 'no comparison yet')}); "
                'promote it anyway with force (--force; the API\'s "force": true), or wait; nothing was changed'
            )
        note = "" if verdict == "promote" or backing_out else f" (forced: verdict {verdict})"
        self.promote(arm, actor=actor, reason=reason + note, current=champion, metrics=comparison)
        return champion

    def promote(
        self, arm: str, *, actor: str, reason: str, current: str | None = None, metrics: Mapping[str, Any] | None = None
    ) -> None:
        """Point the ``champion`` alias at ``arm`` (audited ``promote_arm``); with ``current``, only if the champion is
        that arm now (:class:`~streaming.errors.ChallengerError` otherwise: someone moved it first)."""
        self._run(
            self._promote,
            arm=arm,
            actor=actor,
            reason=reason,
            metrics=json.dumps(dict(metrics or {})),
            current=current or "",
        )

    def declare(
        self,
        op: Literal["add", "remove", "reset"],
        name: str = "",
        declaration: str = "",
        *,
        seed: Mapping[str, str],
        actor: str,
        reason: str,
    ) -> None:
        """Add challenger ``name`` (its ``declaration``: ``fast:lr=0.05``), remove it, or ``reset`` to the settings
        declarations (audited ``challenger_add`` / ``challenger_remove`` / ``challengers_reset``). ``seed``: the
        declarations in use now, the starting point of the first change."""
        self._run(
            self._arms,
            op=op,
            name=name,
            declaration=declaration,
            seed=json.dumps(dict(seed)),
            actor=actor,
            reason=reason,
        )
