"""Redis connections with retries and backoff, and errors that name the URL.

>>> client = connect_redis("redis://127.0.0.1:1/0", check=False)
>>> client.connection_pool.connection_kwargs["port"]
1
"""

from __future__ import annotations

import re
import urllib.parse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from streaming.errors import ConnectionFailedError

__all__ = ["FATAL_FAILURES", "connect_redis", "describe_failure", "redact_url", "redis_failure"]

_REFUSALS = {
    redis.exceptions.OutOfMemoryError: "OOM",
    redis.exceptions.NoPermissionError: "NOPERM",
    redis.exceptions.ReadOnlyError: "READONLY",
    redis.exceptions.BusyLoadingError: "LOADING",
}
_CODE = re.compile(r"(?:^|[\s-])(OOM|MISCONF|NOPERM|READONLY|LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b")
_ADVICE = {
    "unreachable": "Redis cannot be reached",
    "OOM": "Redis refuses writes: out of memory (maxmemory reached; raise it, or lower LIVELEARN_KEEP_VERSIONS)",
    "MISCONF": "Redis refuses writes: it cannot persist its data (see the Redis log; check disk space)",
    "READONLY": "Redis refuses writes: this is a read-only replica (point LIVELEARN_REDIS_URL at the primary)",
    "LOADING": "Redis is loading its data set",
    "BUSY": "Redis is busy running a script",
    "MASTERDOWN": "Redis replica has lost its primary",
    "CLUSTERDOWN": "Redis Cluster is down",
    "TRYAGAIN": "Redis Cluster is resharding",
    "NOPERM": "the Redis user lacks a permission livelearn needs (see the README's Redis ACL)",
    "NOAUTH": "Redis rejected the credentials (check the password in LIVELEARN_REDIS_URL / LIVELEARN_REDIS_PASSWORD)",
}
#: Failures that waiting does not cure: the operator must change something.
FATAL_FAILURES = frozenset({"NOPERM", "NOAUTH"})


def redis_failure(exc: BaseException) -> str | None:
    """Why a Redis call failed, when it is an outage or a refusal rather than a bug: ``"unreachable"`` or
    a Redis error code (``OOM``, ``MISCONF``, ``READONLY``, ``NOPERM``, ``LOADING``...); else ``None``.

    Errors raised inside Lua scripts arrive wrapped (``... @user_script: 1: -OOM command not allowed ...``)
    and are recognised too.

    >>> redis_failure(redis.ConnectionError("Connection refused")), redis_failure(redis.ResponseError("MISCONF x"))
    ('unreachable', 'MISCONF')
    >>> redis_failure(redis.ResponseError("Error running script: @user_script:1: -OOM command not allowed"))
    'OOM'
    >>> redis_failure(redis.ResponseError("WRONGTYPE Operation against a key")) is None
    True
    """
    for kind, code in _REFUSALS.items():
        if isinstance(exc, kind):
            return code
    if isinstance(exc, redis.AuthenticationError):
        return "NOAUTH"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError) and not isinstance(exc, redis.ResponseError):
        return "unreachable"
    if isinstance(exc, redis.ResponseError):
        match = _CODE.search(str(exc))
        return match.group(1) if match else None
    return None


def describe_failure(code: str, url: str, exc: BaseException) -> str:
    """One line for logs and errors: what Redis said, at which (redacted) URL, and what to do."""
    return f"{_ADVICE.get(code, code)} at {redact_url(url)} ({exc})"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return url


def connect_redis(url: str, password: str | None = None, *, check: bool = True, retries: int = 3,
                  timeout: float = 3.0) -> redis.Redis:
    """A client for ``url`` that retries transient failures with exponential backoff (a few times: a longer
    outage is for the caller to wait out, visibly; see :func:`redis_failure`).

    With ``check`` it pings once and raises :class:`ConnectionFailedError` naming the URL.
    """
    client = redis.Redis.from_url(
        url,
        password=password,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
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
