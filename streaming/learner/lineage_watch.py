"""The learner's view of the control plane: lineage epoch (rollbacks), the frozen flag, an open incident, the
champion alias and the challengers declared at run time (:mod:`snapshotter.challengers`).

Changes are announced on the model's pub/sub channel, so a learner usually reacts within one loop
iteration (a ``serving`` message alone — the serving pointer moved, as the learner's own versions move it — is no
change of the lineage; what moves the lineage sends its own: rollback, freeze, resume, champion, arms, restore); a plain
read every ``poll_interval`` seconds is the fallback when a message is lost (pub/sub
is fire-and-forget, e.g. across a Redis reconnect).
"""

from __future__ import annotations

import dataclasses
import time

import redis

from snapshotter.challengers import MANAGED
from snapshotter.connection import as_text
from snapshotter.keys import Keys

__all__ = ["LineageState", "LineageWatch"]


@dataclasses.dataclass(frozen=True)
class LineageState:
    """The lineage epoch (it moves on every rollback), whether learning is frozen and an incident is open, the arm
    the ``champion`` alias points at (``None``: never moved) and the challengers declared at run time (``None``: the
    settings')."""

    epoch: int
    frozen: bool
    incident: bool
    champion: str | None = None
    arms: tuple[str, ...] | None = None


class LineageWatch:
    """Tells the learner when the lineage epoch or the frozen flag may have changed."""

    def __init__(self, client: redis.Redis, keys: Keys, poll_interval: float = 0.5) -> None:
        self._client = client
        self._keys = keys
        self._poll_interval = poll_interval
        self._next_poll = 0.0
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(keys.channel)

    @staticmethod
    def read_state(client: redis.Redis, keys: Keys) -> LineageState:
        pipe = client.pipeline()
        pipe.get(keys.epoch)
        pipe.exists(keys.frozen)
        pipe.exists(keys.incident)
        pipe.get(keys.champion)
        pipe.hgetall(keys.arms)
        epoch, frozen, incident, champion, arms = pipe.execute()
        declared = None if not arms else tuple(as_text(v) for k, v in sorted(arms.items()) if as_text(k) != MANAGED)
        alias = None if champion is None else as_text(champion)
        return LineageState(int(epoch or 0), bool(frozen), bool(incident), alias, declared)

    def read(self) -> LineageState:
        return self.read_state(self._client, self._keys)

    def check(self, *, force: bool = False) -> LineageState | None:
        """The current state if a change was announced, the poll interval passed or ``force``, else ``None``."""
        announced = force
        while (message := self._pubsub.get_message(timeout=0)) is not None:
            # (the serving pointer moved: nothing of the lineage; every version the learner writes announces one)
            announced = announced or as_text(message.get("data", b"")) != "serving"
        now = time.monotonic()
        if not announced and now < self._next_poll:
            return None
        self._next_poll = now + self._poll_interval
        return self.read()

    def close(self) -> None:
        self._pubsub.close()
