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

__all__ = ["connect_redis", "redact_url"]

_SECRET_PARAMETER = re.compile(r"pass|secret|token", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``, as redis-py would read the URL.

    Covers ``user:password@``, a password alone (``:password@``) and query parameters whose name
    mentions a password, secret or token; anything else is left exactly as written.

    >>> redact_url("redis://livelearn:s3cret@redis:6379/0")
    'redis://livelearn:***@redis:6379/0'
    >>> redact_url("rediss://:s3cret@redis:6380/0?ssl_ca_certs=/etc/ca.pem")
    'rediss://:***@redis:6380/0?ssl_ca_certs=/etc/ca.pem'
    >>> redact_url("unix:///run/redis.sock?db=0&password=s3cret")
    'unix:///run/redis.sock?db=0&password=***'
    >>> redact_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}:***@{hostport}" if at and ":" in userinfo else parts.netloc
    query = "&".join(_redact_parameter(p) for p in parts.query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def _redact_parameter(parameter: str) -> str:
    name, equals, _value = parameter.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(name) else parameter


def connect_redis(url: str, password: str | None = None, *, check: bool = True, retries: int = 5) -> redis.Redis:
    """A client for ``url`` that retries transient failures with exponential backoff.

    With ``check`` it pings once and raises :class:`ConnectionFailedError` naming the URL.
    """
    client = redis.Redis.from_url(
        url,
        password=password,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
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
