"""Who is alive: learners (active or standby) and monitors check in to a sorted set of their model.

Readiness checks, the live view and operators read it; entries older than an hour are dropped on the
next check-in, and a process signs off when it stops.

>>> import fakeredis
>>> client = fakeredis.FakeRedis()
>>> check_in(client, "monitors", "host:1", now=100.0)
>>> alive(client, "monitors", within=10.0, now=105.0), alive(client, "monitors", within=10.0, now=200.0)
(['host:1'], [])
"""

from __future__ import annotations

import time

import redis

from snapshotter.connection import as_text

__all__ = ["alive", "check_in", "sign_off"]

_FORGET_AFTER = 3600.0


def check_in(client: redis.Redis, key: str, member: str, *, now: float | None = None) -> None:
    """Record ``member`` as alive now (one small write: it fails while Redis refuses writes)."""
    now = time.time() if now is None else now
    pipe = client.pipeline()
    pipe.zadd(key, {member: now})
    pipe.zremrangebyscore(key, "-inf", now - _FORGET_AFTER)
    pipe.execute()


def sign_off(client: redis.Redis, key: str, member: str) -> None:
    client.zrem(key, member)


def alive(client: redis.Redis, key: str, *, within: float = 10.0, now: float | None = None) -> list[str]:
    """Members that checked in during the last ``within`` seconds."""
    now = time.time() if now is None else now
    return [as_text(m) for m in client.zrangebyscore(key, now - within, "+inf")]
