"""One process's Redis outage, from its first failed or unanswered call to the first success of its own work.

The learner and the monitor wait Redis out alike, with a :class:`RedisOutage`:

* **Down at once.** The client's retry policy reports a call that got no answer within the socket timeout (or
  failed twice) while that call is still retrying (:class:`~snapshotter.connection.AttemptObserver`), so the log
  line and ``livelearn_redis_up`` 0 come within about one timeout, not after every retry. A call that gives up,
  or a refused write (``OOM``, ``MISCONF``, ``READONLY``...), opens the outage the same way. One outage is
  logged once and counted once, whatever the number of calls that fail during it.
* **A backoff that keeps growing.** Between attempts the process waits :meth:`RedisOutage.pause`: redis-py's
  ``EqualJitterBackoff``, from 0.1 s to 5 s, over every attempt of the outage — also those that got further
  (a probe write went through, then the process's own work was refused again) — and an outage that starts again
  within 30 s of the last one's end goes on from that one's backoff.
* **Back means working.** A probe write that succeeds only lets the process try again (:meth:`RedisOutage.resumed`);
  the outage ends when the work that failed succeeds (:meth:`RedisOutage.confirmed`: for the learner its next
  version or, with nothing to write, its status; for the monitor its next check), and is reported with its true
  length: from the first failed or hung call to the write that let the process try again.

>>> import logging
>>> now = [100.0]
>>> seen = []
>>> outage = RedisOutage(
...     "redis://r:6379/0", log=logging.getLogger("doctest"), doing="waiting", back="resumed",
...     on_down=lambda code, detail: seen.append(("down", code)), on_up=lambda: seen.append(("up",)),
...     clock=lambda: now[0],
... )
>>> outage.failed("OOM", Exception("OOM command not allowed"))
>>> outage.resumed(); outage.failed("OOM", Exception("OOM again"))  # a probe went through, the work did not
>>> now[0] = 116.0
>>> outage.resumed(); outage.confirmed()
>>> seen, outage.down, round(outage.last_length or 0.0, 1)
([('down', 'OOM'), ('up',)], False, 16.0)
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

from redis.backoff import AbstractBackoff, EqualJitterBackoff

from snapshotter.connection import FATAL_FAILURES, describe_failure, redis_failure

__all__ = ["RedisOutage"]

#: an outage beginning this soon after the last one ended goes on from its backoff
SETTLE_SECONDS = 30.0
#: how often a long outage is logged again
REMIND_SECONDS = 30.0


class _State(enum.Enum):
    UP = "up"
    SUSPECT = "suspect"  # a call is still retrying after it got no answer
    WAITING = "waiting"  # the process waits with backoff
    RESUMING = "resuming"  # a probe write succeeded: the process tries its work again


class RedisOutage:
    """The Redis outage of one process (thread-safe: the client's retries report from any thread).

    ``on_down(code, detail)`` runs when an outage opens (gauges, readiness), ``on_up()`` when it ends; ``doing`` says
    in the first log line what the process does meanwhile, ``back`` in the last one what it did on its return.
    """

    def __init__(
        self,
        url: str,
        *,
        log: logging.Logger,
        doing: str,
        back: str,
        on_down: Callable[[str, str], None],
        on_up: Callable[[], None],
        backoff: AbstractBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url, self._log, self._doing, self._back = url, log, doing, back
        self._on_down, self._on_up = on_down, on_up
        self._backoff = backoff or EqualJitterBackoff(cap=5.0, base=0.1)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _State.UP
        self.code: str | None = None
        self._since = 0.0
        self._answered_at: float | None = None
        self._attempts = 0
        self._ended_at: float | None = None
        self._next_reminder = 0.0
        #: how long the last outage lasted (seconds), once one has ended
        self.last_length: float | None = None

    @property
    def down(self) -> bool:
        """An outage is open (from its first failed call until :meth:`confirmed`)."""
        return self._state is not _State.UP

    # -- told by the client's retries (AttemptObserver) -------------------------------------------
    def unanswered(self, exc: Exception, since: float) -> None:
        """A call got no answer and is still retrying: the outage begins where that call's first attempt did."""
        code = redis_failure(exc)
        if code is None or code in FATAL_FAILURES:
            return  # not an outage: the caller raises it
        with self._lock:
            if self._state is _State.UP:
                self._open(code, exc, since, _State.SUSPECT)

    def answered(self, since: float) -> None:
        """The call that got no answer got one after all: a short outage ends, if no call gave up meanwhile."""
        with self._lock:
            if self._state is _State.SUSPECT:
                self._end(self._clock())

    def gave_up(self, exc: Exception) -> None:
        """A call gave up: from now on only the process's own work ends the outage (:meth:`confirmed`), not
        another call that gets an answer (e.g. its clean-up on the way to :meth:`failed`)."""
        with self._lock:
            if self._state is _State.SUSPECT:
                self._state = _State.WAITING

    # -- told by the process -----------------------------------------------------------------------
    def failed(self, code: str, exc: BaseException) -> None:
        """A call gave up or a write was refused: open the outage, or go on with the open one (no new count)."""
        with self._lock:
            if self._state is _State.UP:
                self._open(code, exc, self._clock(), _State.WAITING)
                return
            self._state, self._answered_at = _State.WAITING, None
            self._note(code, exc)

    def pause(self) -> float:
        """Seconds to wait before the next attempt: longer each time, over the whole outage."""
        with self._lock:
            self._attempts += 1
            return float(self._backoff.compute(self._attempts - 1))

    def still_failing(self, code: str, exc: BaseException) -> None:
        """A probe failed: log a change of reason at once, the outage itself every half minute."""
        with self._lock:
            self._note(code, exc)
            now = self._clock()
            if now >= self._next_reminder:
                self._next_reminder = now + REMIND_SECONDS
                self._log.error(
                    "still waiting for Redis after %.0fs (%d attempts): %s",
                    now - self._since,
                    self._attempts,
                    describe_failure(code, self._url, exc),
                )

    def resumed(self) -> None:
        """A probe write succeeded: the process tries its work again; the outage is over once that succeeds."""
        with self._lock:
            if self._state is _State.WAITING:
                self._state, self._answered_at = _State.RESUMING, self._clock()
                self._log.info(
                    "Redis took a write after %.1fs (attempt %d); trying again",
                    self._answered_at - self._since,
                    self._attempts,
                )

    def confirmed(self) -> None:
        """The work that failed succeeded: the outage is over (cheap when there is none)."""
        if not self.down:
            return
        with self._lock:
            if self.down:  # (another thread may have ended it meanwhile)
                self._end(self._answered_at if self._answered_at is not None else self._clock())

    # -- under the lock ----------------------------------------------------------------------------
    def _open(self, code: str, exc: BaseException, since: float, state: _State) -> None:
        now = self._clock()
        again = self._ended_at is not None and now - self._ended_at < SETTLE_SECONDS
        if not again:
            self._attempts = 0
        self._state, self.code, self._since, self._answered_at = state, code, since, None
        self._next_reminder = now + REMIND_SECONDS
        detail = describe_failure(code, self._url, exc)
        self._on_down(code, detail)
        if again:
            assert self._ended_at is not None
            self._log.error("%s, again %.0fs after it came back; %s", detail, now - self._ended_at, self._doing)
        else:
            self._log.error("%s; %s", detail, self._doing)

    def _note(self, code: str, exc: BaseException) -> None:
        if code != self.code:
            self.code = code
            self._log.error("%s; still waiting", describe_failure(code, self._url, exc))

    def _end(self, at: float) -> None:
        now = self._clock()
        self.last_length = max(0.0, at - self._since)
        since = time.strftime("%H:%M:%S", time.localtime(time.time() - (now - self._since)))
        self._log.warning(
            "Redis is back after %.1fs (unavailable since %s, %d attempts); %s",
            self.last_length,
            since,
            self._attempts,
            self._back,
        )
        self._state, self._ended_at, self._answered_at = _State.UP, now, None
        self._on_up()
