"""Redis connections with retries and backoff, and errors that name the URL.

>>> client = connect_redis("redis://127.0.0.1:1/0", check=False)
>>> client.connection_pool.connection_kwargs["port"]
1
"""

from __future__ import annotations

import urllib.parse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from streaming.errors import ConnectionFailedError

__all__ = ["connect_redis", "redact_url"]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return url


def connect_redis(url: str, password: str | None = None, *, check: bool = True, retries: int = 5,
                  timeout: float = 5.0) -> redis.Redis:
    """A client for ``url`` that retries transient failures with exponential backoff.

    ``timeout`` bounds each connect and each socket read or write (seconds), so one command blocks at
    most about ``(retries + 1) * timeout`` plus the backoff when Redis hangs. With ``check`` it pings
    once and raises :class:`ConnectionFailedError` naming the URL.
    """
    client = redis.Redis.from_url(
        url,
        password=password,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    if check:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConnectionFailedError(
                f"cannot reach Redis at {redact_url(url)} ({exc}); start redis-server or set LIVELEARN_REDIS_URL"
            ) from None
    return client
