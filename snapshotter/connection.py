"""Redis connections with retries and backoff, errors that name the URL, and what a livelearn user may do.

>>> client = connect_redis("redis://127.0.0.1:1/0", check=False)
>>> client.connection_pool.connection_kwargs["port"]
1

A least-privilege Redis user for livelearn may run :data:`REQUIRED_REDIS_COMMANDS` on keys and pub/sub
channels matching :data:`REDIS_KEY_PATTERN`; :func:`redis_acl_rules` spells that as ``ACL SETUSER`` rules.

Every client retries with :class:`BoundedRetry`: one time budget per call (:func:`worst_call_seconds`), even
where redis-py nests its retries, and an optional :class:`AttemptObserver` told at once when a call gets no
answer (:func:`observe_attempts`), so a process can say so within about one socket timeout.
"""

from __future__ import annotations

import copy
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff
from redis.retry import Retry

from streaming.errors import ConnectionFailedError

__all__ = [
    "FATAL_FAILURES",
    "REDIS_KEY_PATTERN",
    "REQUIRED_REDIS_COMMANDS",
    "AttemptObserver",
    "BoundedRetry",
    "as_bytes",
    "as_int",
    "as_text",
    "check_reachable",
    "connect_redis",
    "describe_failure",
    "observe_attempts",
    "redact_url",
    "redis_acl_rules",
    "redis_failure",
    "worst_call_seconds",
]

T = TypeVar("T")

#: Every key and pub/sub channel of every model starts with this (see :class:`snapshotter.keys.Keys`).
REDIS_KEY_PATTERN = "livelearn:*"

#: Every Redis command livelearn sends (learner, monitor, serve and the operator commands), with what it is
#: for; the commands the Lua scripts run are checked against the user's ACL too. The documentation's
#: least-privilege table is this dict; tests/test_redis_acl.py proves it is enough and that every command a
#: Lua script calls is in it. A new Redis call in livelearn needs its command here.
REQUIRED_REDIS_COMMANDS: dict[str, str] = {
    "PING": "connection check; health check of idle connections",
    "SELECT": "only when the URL names a database other than 0",
    "EVALSHA": "every state change is one Lua script (snapshot, lease, status, control actions, monitor cursor)",
    "SCRIPT|LOAD": "load a Lua script the server has not cached yet",
    "MULTI": "check-ins and the control state are read and written in transactions",
    "EXEC": "(with MULTI)",
    "GET": "pointers (head, serving, pinned, epoch), version blobs and metadata, status, lease",
    "MGET": "metadata of every version (`versions list`, `GET /versions`)",
    "SET": "versions, pointers, status, lease (in scripts)",
    "INCR": "version counter, lease fencing token, lineage epoch (in scripts)",
    "DEL": "retention, lease release, unpin, resume (in scripts)",
    "EXISTS": "frozen flag; a version exists before a rollback or pin",
    "PEXPIRE": "lease renewal (in a script)",
    "SADD": "versions protected by a pin (in a script)",
    "SREM": "unpinned versions lose protection (in scripts)",
    "SISMEMBER": "retention keeps protected versions (in a script)",
    "ZADD": "version index, stable versions, rollback times, learner and monitor check-ins",
    "ZCARD": "retention (in a script)",
    "ZRANGE": "version index and stable versions",
    "ZRANGEBYSCORE": "recent rollbacks; live learners and monitors",
    "ZREM": "retention; learners and monitors signing off",
    "ZREMRANGEBYSCORE": "a rollback abandons stable versions above its target; stale check-ins",
    "ZREVRANGE": "newest stable version on unpin (in a script)",
    "ZREVRANK": "retention keeps the newest stable versions (in a script)",
    "ZSCORE": "a rebuild branch's head is still stored; its versions (in scripts)",
    "HGET": "monitors' shared cursor, the open incident, quarantine marks (in scripts)",
    "HSET": "monitors' cursor and judge state, the freeze record, incidents, quarantine, the label join (in scripts)",
    "HGETALL": "monitors' judge state, the freeze record, the open incident, quarantined versions, the label join",
    "HDEL": "retention forgets the quarantine mark of a version it removes (in a script)",
    "HEXISTS": "a rebuild branch's name is free (in a script)",
    "XADD": "audit log and metric history",
    "XRANGE": "audit log and metric history (`audit`, `report`)",
    "XREVRANGE": "newest audit entries (`audit --limit`)",
    "XREAD": "the monitor waits for new metric samples",
    "PUBLISH": "announce rollbacks, promotions, freezes and resumes (in scripts)",
    "SUBSCRIBE": "learners and `serve` react to those announcements at once",
}

_SECRET_PARAMETER = re.compile(r"pass|secret|token", re.IGNORECASE)


_REFUSALS = {
    redis.exceptions.OutOfMemoryError: "OOM",
    redis.exceptions.NoPermissionError: "NOPERM",
    redis.exceptions.ReadOnlyError: "READONLY",
    redis.exceptions.BusyLoadingError: "LOADING",
}
_CODE = re.compile(
    r"(?:^|[\s-])(OOM|MISCONF|NOPERM|READONLY|NOREPLICAS|LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b"
)
_ADVICE = {
    "unreachable": "Redis cannot be reached",
    "OOM": "Redis refuses writes: out of memory (maxmemory reached; raise it, or lower LIVELEARN_KEEP_VERSIONS)",
    "MISCONF": "Redis refuses writes: it cannot persist its data (see the Redis log; check disk space)",
    "READONLY": "Redis refuses writes: this is a read-only replica (point LIVELEARN_REDIS_URL at the primary)",
    "NOREPLICAS": "Redis refuses writes: too few replicas are connected (min-replicas-to-write)",
    "LOADING": "Redis is loading its data set",
    "BUSY": "Redis is busy running a script",
    "MASTERDOWN": "Redis replica has lost its primary",
    "CLUSTERDOWN": "Redis Cluster is down",
    "TRYAGAIN": "Redis Cluster is resharding",
    "NOPERM": "the Redis user lacks a permission livelearn needs (see docs/operations/production.md, the Redis ACL)",
    "NOAUTH": "Redis rejected the credentials (check the password in LIVELEARN_REDIS_URL / LIVELEARN_REDIS_PASSWORD)",
    "TLS": "the Redis server's TLS certificate is not trusted (check ssl_ca_certs in LIVELEARN_REDIS_URL)",
}
#: Failures that waiting does not cure: the operator must change something. Processes fail fast on them, at
#: start or later; everything else :func:`redis_failure` names is waited out.
FATAL_FAILURES = frozenset({"NOPERM", "NOAUTH", "TLS"})


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
    if isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError):
        return "TLS"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError) and not isinstance(exc, redis.ResponseError):
        return "unreachable"
    if isinstance(exc, redis.ResponseError):
        match = _CODE.search(str(exc))
        return match.group(1) if match else None
    return None


def describe_failure(code: str, url: str, exc: BaseException) -> str:
    """One line for logs and errors: what Redis said, at which (redacted) URL, and what to do."""
    return f"{_ADVICE.get(code, code)} at {redact_url(url)} ({exc})"


def as_bytes(value: object) -> bytes:
    """A reply of a client without ``decode_responses`` (livelearn's): bytes, as the type says.

    >>> as_bytes(b"x"), as_text(b"7"), as_int(b"7")
    (b'x', '7', 7)
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")


def as_text(value: object) -> str:
    """A reply as text (keys, members, stream ids)."""
    return as_bytes(value).decode()


def as_int(value: object) -> int:
    """A reply holding an integer (counters, version numbers)."""
    return int(as_text(value)) if isinstance(value, bytes | str) else int(value)  # type: ignore[call-overload]


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
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _redact_parameter(parameter: str) -> str:
    name, equals, _value = parameter.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(name) else parameter


def redis_acl_rules(password: str) -> list[str]:
    """``ACL SETUSER <name>`` rules for a livelearn user: :data:`REQUIRED_REDIS_COMMANDS` on livelearn's keys and
    channels, nothing else (``resetchannels`` is explicit because Redis 6.2 starts users on all channels).

    >>> redis_acl_rules("s3cret")[:6]
    ['reset', 'on', '>s3cret', '~livelearn:*', 'resetchannels', '&livelearn:*']
    >>> "+script|load" in redis_acl_rules("s3cret")
    True
    """
    return [
        "reset",
        "on",
        f">{password}",
        f"~{REDIS_KEY_PATTERN}",
        "resetchannels",
        f"&{REDIS_KEY_PATTERN}",
        *(f"+{command.lower()}" for command in REQUIRED_REDIS_COMMANDS),
    ]


class AttemptObserver(Protocol):
    """Told by a client's :class:`BoundedRetry` about its calls, from whichever thread made them."""

    def unanswered(self, exc: Exception, since: float) -> None:
        """A call got no answer: an attempt timed out, or failed twice (``since``: when its first failed
        attempt began, ``time.monotonic()``). The call is still retrying; reported once per call."""

    def answered(self, since: float) -> None:
        """A call reported :meth:`unanswered` got its answer after all."""

    def gave_up(self, exc: Exception) -> None:
        """A call reported :meth:`unanswered` gave up: its caller gets ``exc``."""


class _Watch:
    """The observer of one client, shared by every copy of its retry policy (redis-py copies it per connection)."""

    __slots__ = ("observer",)

    def __init__(self) -> None:
        self.observer: AttemptObserver | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Watch:
        return self


class _Call(threading.local):
    """The call a thread is making: its deadline, when its first attempt failed, how many did, whether reported."""

    deadline: float | None = None
    first_failure: float | None = None
    failures = 0
    reported = False


_CALL = _Call()


def _curable(error: Exception) -> bool:
    """Whether retrying may help: not for rejected credentials or an untrusted certificate."""
    return redis_failure(error) not in FATAL_FAILURES


def worst_call_seconds(timeout: float, retries: int, backoff: AbstractBackoff | None = None) -> float:
    """How long one call of a :func:`connect_redis` client may take when Redis hangs: every attempt a socket
    timeout, the backoff between them, and half a timeout of grace for an attempt redis-py nests in another
    (a reconnect, a health-check PING).

    >>> worst_call_seconds(1.0, 1), worst_call_seconds(3.0, 3)
    (2.6, 14.2)
    """
    backoff = backoff or _BACKOFF
    pauses = sum(backoff.compute(n) for n in range(1, retries + 1))
    return round((retries + 1) * timeout + pauses + timeout / 2, 6)


_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)


class BoundedRetry(Retry):
    """redis-py's retry policy with one time budget per call, and an observer told at once of a call that gets
    no answer.

    redis-py nests retries: connecting retries the handshake, whose health-check PING retries, whose reconnect
    retries again. With a plain :class:`~redis.retry.Retry` each level retries on its own, so a hung Redis held a
    call twice as long as its settings said (a ``serve`` request 4.3 s at a 1 s timeout and one retry). Here the
    outermost call of a thread sets a deadline that nested calls share: an attempt is only retried while it can
    still end by :func:`worst_call_seconds`. Rejected credentials and untrusted certificates are not retried.
    """

    def __init__(self, backoff: AbstractBackoff, retries: int, *, timeout: float) -> None:
        super().__init__(backoff, retries, is_retryable=_curable)
        self.timeout = timeout
        self.watch = _Watch()

    def __deepcopy__(self, memo: dict[int, Any]) -> BoundedRetry:
        clone = copy.copy(self)  # the watch stays shared: an observer set later reaches every connection
        clone._backoff = copy.deepcopy(self._backoff, memo)
        return clone

    @property
    def budget(self) -> float:
        """The longest one call may take (:func:`worst_call_seconds`)."""
        return worst_call_seconds(self.timeout, self._retries, self._backoff)

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """As :meth:`Retry.call_with_retry` (the same failure callbacks), within the calling thread's deadline."""
        call = _CALL
        outermost = call.deadline is None
        if outermost:
            call.deadline = time.monotonic() + self.budget
            call.first_failure, call.failures, call.reported = None, 0, False
        self._backoff.reset()  # type: ignore[no-untyped-call]  # (redis-py leaves it unannotated)
        failures = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    result = do()
                except self._supported_errors as error:
                    if self._is_retryable is not None and not self._is_retryable(error):
                        _notify(fail, error, failures + 1, with_failure_count)
                        raise
                    if is_retryable is not None and not is_retryable(error):
                        raise
                    failures += 1
                    _notify(fail, error, failures, with_failure_count)
                    self._attempt_failed(error, started)
                    pause = self._backoff.compute(failures)
                    assert call.deadline is not None
                    in_time = time.monotonic() + pause + self.timeout <= call.deadline + self.timeout / 2
                    if (self._retries >= 0 and failures > self._retries) or not in_time:
                        if outermost and call.reported and self.watch.observer is not None:
                            self.watch.observer.gave_up(error)
                        raise
                    if pause > 0:
                        time.sleep(pause)
                else:
                    if outermost and call.reported and self.watch.observer is not None:
                        assert call.first_failure is not None
                        self.watch.observer.answered(call.first_failure)
                    return result
        finally:
            if outermost:
                call.deadline = None

    def _attempt_failed(self, error: Exception, started: float) -> None:
        """Count a failed attempt of the thread's call; tell the observer once the call looks unanswered (an
        attempt timed out, or a second one failed: not a stale connection re-opened at once)."""
        call = _CALL
        call.failures += 1
        if call.first_failure is None:
            call.first_failure = started
        observer = self.watch.observer
        if observer is None or call.reported:
            return
        if isinstance(error, redis.TimeoutError | socket.timeout) or call.failures >= 2:
            call.reported = True
            observer.unanswered(error, call.first_failure)


def _notify(fail: Callable[..., Any], error: Exception, failures: int, with_failure_count: bool) -> None:
    if with_failure_count:
        fail(error, failures)
    else:
        fail(error)


def observe_attempts(client: redis.Redis, observer: AttemptObserver) -> bool:
    """Tell ``observer`` about the calls of ``client`` (made by :func:`connect_redis`; ``False`` for another)."""
    retry = client.get_connection_kwargs().get("retry")
    if not isinstance(retry, BoundedRetry):
        return False
    retry.watch.observer = observer
    return True


def check_reachable(client: redis.Redis, url: str) -> redis.RedisError | None:
    """Ping once: ``None`` when Redis answers, else the failure, an outage to wait out (:func:`redis_failure`
    names it); raises :class:`ConnectionFailedError` naming the URL when waiting cannot cure it
    (:data:`FATAL_FAILURES`, or an error that is no outage)."""
    try:
        client.ping()
    except redis.RedisError as exc:
        code = redis_failure(exc)
        if code is None or code in FATAL_FAILURES:
            detail = describe_failure(code, url, exc) if code else f"Redis at {redact_url(url)} failed: {exc}"
            raise ConnectionFailedError(detail) from None
        return exc
    return None


def connect_redis(
    url: str, password: str | None = None, *, check: bool = True, retries: int = 3, timeout: float = 3.0
) -> redis.Redis:
    """A client for ``url`` that retries transient failures with exponential backoff (a few times: a longer
    outage is for the caller to wait out, visibly; see :func:`redis_failure`).

    ``timeout`` bounds each connect and each socket read or write (seconds), and :class:`BoundedRetry` one call:
    at most :func:`worst_call_seconds` when Redis hangs. With ``check`` it pings once and raises
    :class:`ConnectionFailedError` naming the URL.
    """
    client = redis.Redis.from_url(
        url,
        password=password,
        retry=BoundedRetry(copy.deepcopy(_BACKOFF), retries, timeout=timeout),
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
