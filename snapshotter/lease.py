"""The writer lease: exactly one active learner per model, with a fencing token.

The lease is one Redis key holding ``"<token>:<holder>"`` with a TTL. Each grant takes a new token
from an atomic counter, so a learner that was paused past its TTL and wakes up cannot write: the
snapshot script compares the stored value with the writer's, and the values differ.

>>> import fakeredis
>>> r = fakeredis.FakeRedis()
>>> a, b = Lease(r, "shop", "learner-a", ttl=5), Lease(r, "shop", "learner-b", ttl=5)
>>> a.acquire(), b.acquire()
(True, False)
>>> a.value, a.token
('1:learner-a', 1)
>>> a.release(); b.acquire(), b.token
(True, 2)
"""

from __future__ import annotations

import redis

from snapshotter.connection import as_text
from snapshotter.keys import Keys
from snapshotter.scripts import LEASE_ACQUIRE, LEASE_RELEASE, LEASE_RENEW, bind

__all__ = ["Lease"]


class Lease:
    """A fenced, expiring lease on model ``model_name`` for ``holder``.

    The active learner holds it and renews it every third of its TTL; a standby tries :meth:`acquire` until the
    lease is free (given up, or expired). Each grant has a new fencing token (:attr:`token`), and every write of
    the holder carries its :attr:`value`, so a holder that lost the lease cannot write any more.

    Parameters
    ----------
    client
        A Redis connection.
    model_name
        The model whose lease it is (:class:`~snapshotter.keys.Keys`).
    holder
        Who takes it (the learner's writer id, e.g. ``host:pid``); stored in the lease's value.
    ttl
        Seconds the lease lasts unless renewed (``LIVELEARN_LEASE_TTL_SECONDS``).

    Examples
    --------
    >>> import fakeredis
    >>> r = fakeredis.FakeRedis()
    >>> lease, standby = Lease(r, "shop", "learner-a", ttl=10), Lease(r, "shop", "learner-b", ttl=10)
    >>> lease.acquire(), lease.value, lease.token
    (True, '1:learner-a', 1)
    >>> lease.renew(), standby.acquire(), standby.current_holder()
    (True, False, '1:learner-a')
    >>> lease.release(); standby.acquire(), standby.token
    (True, 2)
    >>> lease.renew()  # released (or expired): the old holder must stop writing
    False

    A lease lost while its holder was not looking (here deleted; in life, expired during a long pause) is lost
    at the next renewal:

    >>> _ = r.delete(standby.keys.lease)
    >>> standby.renew(), standby.value
    (False, None)
    """

    def __init__(self, client: redis.Redis, model_name: str, holder: str, ttl: float) -> None:
        self.keys = Keys(model_name)
        self.holder = holder
        self.ttl_ms = int(ttl * 1000)
        self.value: str | None = None
        self._acquire, self._renew, self._release = (
            bind(client, spec) for spec in (LEASE_ACQUIRE, LEASE_RENEW, LEASE_RELEASE)
        )
        self._client = client

    @property
    def token(self) -> int | None:
        """The fencing token of the current grant."""
        return int(self.value.split(":", 1)[0]) if self.value else None

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; ``True`` on success."""
        value = self._acquire(self.keys, holder=self.holder, ttl_ms=self.ttl_ms)
        if value is None:
            return False
        self.value = value.decode() if isinstance(value, bytes) else str(value)
        return True

    def renew(self) -> bool:
        """Extend the TTL; ``False`` means the lease was lost and the holder must stop writing."""
        if self.value is None:
            return False
        if self._renew(self.keys, lease_value=self.value, ttl_ms=self.ttl_ms):
            return True
        self.value = None
        return False

    def release(self) -> None:
        """Give the lease up so a standby can take over at once."""
        if self.value is not None:
            self._release(self.keys, lease_value=self.value)
            self.value = None

    def current_holder(self) -> str | None:
        raw = self._client.get(self.keys.lease)
        return as_text(raw) if raw is not None else None
