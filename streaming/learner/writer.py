"""The snapshot writer thread: encodes and writes captured snapshots in order, while the learner goes on learning.

At a snapshot the learner thread only copies its state (:meth:`LearnerState.capture`, O(copy)) and
:meth:`SnapshotWriter.submit` s it. The one writer thread then, oldest first: builds the document and encodes it
(msgpack, SHA-256) at once, waits until the learner :meth:`~SnapshotWriter.release` s it (the dead letters and
predictions sent before its offsets are delivered: the learner checks, it owns the producer), and writes it
with the version it wrote before as parent. One thread and FIFO order keep versions in stream order and the
parent chain whole; whatever mutates the learner's state (parent, offsets, candidates, the offset commit) is
left to the learner, which takes the finished jobs (``Job.done``, set in order) when it checks.

A job is dropped, not written, when the learner moved to another lineage epoch since it was captured
(:meth:`~SnapshotWriter.follow`), or after a write of the same epoch met a stale lineage. The first failure
(fenced, Redis down, anything) is kept on its job and stops the writer: later jobs would name a parent that was
never written, so they are dropped; the learner raises the failure when it takes that job (a fenced write
becomes :class:`LeaseLostError`, a Redis outage the usual outage path: re-activation from the newest version,
with a new writer). :meth:`~SnapshotWriter.close` drops what is left and joins the thread.

Why a thread and not a process: the work is ~2/3 C calls that release the GIL (SHA-256, the socket write) or
are short (one ``bytes.join`` of the kept packed names, ``tobytes`` of the doubles); no single call holds the
GIL for more than a few milliseconds, so the learner thread keeps stepping events meanwhile. Between two
batches the learner :meth:`~SnapshotWriter.hold` s the writer (it polls, runs delivery reports, talks to Redis:
calls that release the GIL, each of which a busy writer would turn into a switch interval's wait) and lets it
:meth:`~SnapshotWriter.go` when it steps events again; the writer starts no piece of work (encode, write) while
held, for at most :data:`PACE_SECONDS`, unless another capture waits behind it (falling behind would delay the
captures themselves: few may be pending). ``bench/snapshots.py``: the learner's longest gap around a 100k-weight
snapshot p50 4.5-10, p99 12-26 ms paced, against p50 11-19, p99 20-38 ms unpaced, in the same runs.

>>> from snapshotter.codec import SnapshotState
>>> written = []
>>> def write(captured, encoded, parent):  # the learner's writes to the store (Checkpoints._write)
...     written.append(VersionMeta(len(written) + 1, 0.0, "w", 0, 0, 0, {}, {}, parent, {}, 2, encoded.sha256, 1))
...     return written[-1]
>>> writer = SnapshotWriter(EncodedSnapshot.of, write, epoch=0)
>>> jobs = [writer.submit(SnapshotState({}, {}, {}, {"n": i}), epoch=0, parent=None) for i in range(2)]
>>> writer.release(jobs[1]); writer.release(jobs[0])  # released in any order: written in order
>>> writer.wait(jobs[1], timeout=60), [(job.meta.number, job.meta.parent) for job in jobs]
(True, [(1, None), (2, 1)])
>>> writer.close()
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from snapshotter.codec import EncodedSnapshot, VersionMeta
from streaming.errors import StaleLineageError

__all__ = ["Job", "SnapshotWriter"]

log = logging.getLogger(__name__)

#: the GIL switch interval while the writer works (seconds; ``None``: leave Python's 5 ms). A thread that wants the
#: GIL waits that long before the holder must drop it; 1 ms was measured against 5 ms (``bench/snapshots.py``,
#: same run) and did not shorten the learner's gaps on the shared 2-core VM, so it is left alone by default
SWITCH_INTERVAL: float | None = None
#: how long the writer waits at most, before each piece of work (encode, write), while the learner is between two
#: batches (:meth:`SnapshotWriter.hold`): there the learner's work is mostly calls that release the GIL (the poll,
#: the producer's delivery reports, Redis round trips), and each one given to a busy writer cost the learner up to
#: a GIL switch interval (5 ms) back (``bench/snapshots.py``). Bounded: the writer never starves. ``0``: no pacing
PACE_SECONDS = 0.05
#: encodes a captured snapshot (in the writer thread)
Encode = Callable[[Any], EncodedSnapshot]
#: writes one encoded snapshot as the next version: (captured, encoded, parent) -> its metadata
Write = Callable[[Any, EncodedSnapshot, "int | None"], VersionMeta]


@dataclasses.dataclass(eq=False)
class Job:
    """One captured snapshot on its way to Redis. Written by the writer thread only until ``done`` is set."""

    captured: Any  # :class:`~streaming.learner.checkpoint.Captured`: what to encode, with its version's metadata
    epoch: int  # the lineage epoch it was captured on
    parent: int | None  # the learner's parent at the capture (the writer's own last version of the epoch wins)
    released: bool = False  # its outputs are delivered: it may be written
    wake: threading.Event = dataclasses.field(default_factory=threading.Event)  # released, or the writer must look
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    meta: VersionMeta | None = None  # written; ``None`` with ``error`` None: dropped
    error: BaseException | None = None
    encode_seconds: float = 0.0
    write_seconds: float = 0.0
    dropped: str = ""  # why, when dropped


class SnapshotWriter:
    """One background thread writing captured snapshots in order (see the module docstring)."""

    def __init__(self, encode: Encode, write: Write, *, epoch: int, name: str = "livelearn-snapshot-writer") -> None:
        self._encode, self._write = encode, write
        self._lock = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()  # submitted, not yet taken by the thread
        self._epoch = epoch  # the learner's lineage: jobs of an older one are dropped
        self._last: tuple[int, int] | None = None  # (epoch, number) of the last version written
        self._failed = False
        self._closing = False
        self._go = threading.Event()  # the learner steps events, or waits for the writer: work now (see hold)
        self._go.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the learner's side --------------------------------------------------------------------------
    def submit(self, captured: Any, *, epoch: int, parent: int | None) -> Job:
        """Queue a captured snapshot (encoded at once, written once :meth:`release` d)."""
        job = Job(captured, epoch, parent)
        with self._lock:
            if self._closing:
                raise RuntimeError("the snapshot writer is closed")
            self._queue.append(job)
            self._lock.notify_all()
        return job

    def release(self, job: Job) -> None:
        """The outputs sent before ``job``'s offsets are delivered: it may be written."""
        job.released = True
        job.wake.set()

    def follow(self, epoch: int) -> None:
        """The learner moved to lineage ``epoch``: jobs captured on an older one are dropped, not written."""
        with self._lock:
            self._epoch = max(self._epoch, epoch)
            for job in self._queue:
                job.wake.set()  # the thread may wait for one: it drops it

    def hold(self) -> None:
        """The learner is between two batches (polls, deliveries, Redis): the writer does not start a piece of
        work (encode, write) for up to :data:`PACE_SECONDS`, or until :meth:`go`."""
        self._go.clear()

    def go(self) -> None:
        """The learner steps events again (it holds the GIL, handing it over every switch interval): work."""
        self._go.set()

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Wait until ``job`` (and so every job before it: they finish in order) is finished."""
        self._go.set()  # the learner waits for the writer: nothing to keep it off
        return job.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Drop what is not written yet (the learner writes its final snapshot before) and join the thread."""
        self._go.set()
        with self._lock:
            self._closing = True
            for job in self._queue:
                job.wake.set()
            self._lock.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the snapshot writer did not finish within %.0f s (Redis slow?); left behind", timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue:
                    return
                job = self._queue[0]
            previous = sys.getswitchinterval()
            if SWITCH_INTERVAL is not None:
                sys.setswitchinterval(SWITCH_INTERVAL)
            try:
                self._handle(job)
            except BaseException as exc:  # noqa: BLE001 - kept on the job: the learner raises it in its thread
                job.error = exc
                with self._lock:
                    self._failed = True
                log.debug("snapshot write failed: %r", exc)
            finally:
                sys.setswitchinterval(previous)
            with self._lock:
                self._queue.popleft()
                job.done.set()
                self._lock.notify_all()

    def _drop(self, job: Job, why: str) -> None:
        job.dropped = why
        log.info("a snapshot captured on lineage epoch %d is dropped: %s", job.epoch, why)

    def _handle(self, job: Job) -> None:
        if self._skip(job):
            return
        self._pace()
        t0 = time.perf_counter()
        encoded = self._encode(job.captured)
        job.encode_seconds = time.perf_counter() - t0
        while not job.released:  # the learner releases it once its outputs are delivered
            if self._skip(job):
                return
            job.wake.wait(0.5)
            job.wake.clear()
        if self._skip(job):
            return
        with self._lock:
            last = self._last
        parent = last[1] if last is not None and last[0] == job.epoch else job.parent
        self._pace()
        t1 = time.perf_counter()
        try:
            meta = self._write(job.captured, encoded, parent)
        except StaleLineageError as exc:
            self._drop(job, str(exc))
            with self._lock:
                self._epoch = max(self._epoch, job.epoch + 1)  # the rest of this epoch is stale too
            return
        job.write_seconds = time.perf_counter() - t1
        job.meta = meta
        with self._lock:
            self._last = (job.epoch, meta.number)

    def _pace(self) -> None:
        with self._lock:
            behind = len(self._queue) > 1  # another capture waits behind this one: catch up first
        if PACE_SECONDS and not behind:
            self._go.wait(PACE_SECONDS)

    def _skip(self, job: Job) -> bool:
        with self._lock:
            failed, epoch, closing = self._failed, self._epoch, self._closing
        if failed:
            self._drop(job, "an earlier snapshot write failed")
        elif job.epoch < epoch:
            self._drop(job, "the lineage moved on")
        elif closing and not job.released:
            self._drop(job, "the writer is closing")
        else:
            return False
        return True
