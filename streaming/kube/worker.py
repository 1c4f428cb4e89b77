"""The one background thread that talks to the Kubernetes API, so that nothing else ever waits for it.

Other threads hand it jobs through a bounded queue: when the queue is full the job is dropped and counted
(``livelearn_kubernetes_dropped_total``), never waited for. Periodic tasks (reading the pin ConfigMap, following
the audit stream, watching the learner's role) run in the same thread. A job or task that raises is logged and
counted (``livelearn_kubernetes_api_errors_total{operation}``) and the thread goes on: the first failure of an
operation is a warning, repeats are debug lines until it works again.

>>> from prometheus_client import CollectorRegistry
>>> worker = KubeWorker(KubeMetrics(CollectorRegistry(), "shop"), capacity=1)
>>> worker.submit("demo", lambda: None), worker.submit("demo", lambda: None)  # not started: the second is dropped
(True, False)
>>> worker.run_pending()  # what the thread does on each turn
>>> worker.metrics.dropped._value.get()
1.0
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable

from streaming.kube.prometheus import KubeMetrics

__all__ = ["KubeWorker", "describe_failure"]

log = logging.getLogger(__name__)

Job = Callable[[], object]


@dataclasses.dataclass
class _Task:
    operation: str
    run: Job
    period: float
    due: float = 0.0


def describe_failure(exc: BaseException) -> str:
    """A short description of a failed API call: the HTTP status of an ``ApiException``, else the error."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    return f"{type(exc).__name__}: {exc}"[:300]


class KubeWorker:
    """A daemon thread running submitted jobs and periodic tasks, each failure logged and counted."""

    def __init__(self, metrics: KubeMetrics, *, capacity: int = 256, name: str = "livelearn-kubernetes") -> None:
        self.metrics = metrics
        self._queue: queue.Queue[tuple[str, Job]] = queue.Queue(maxsize=capacity)
        self._tasks: list[_Task] = []
        self._stopping = threading.Event()
        self._failing: set[str] = set()
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def submit(self, operation: str, job: Job) -> bool:
        """Queue ``job`` without waiting; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((operation, job))
        except queue.Full:
            self.metrics.dropped.inc()
            level = logging.DEBUG if self._dropping else logging.WARNING  # once per run of drops
            self._dropping = True
            log.log(level, "Kubernetes integration is behind: dropped %s (queue full)", operation)
            return False
        self._dropping = False
        return True

    def every(self, seconds: float, operation: str, task: Job) -> None:
        """Run ``task`` every ``seconds`` in the worker thread, the first time at once."""
        self._tasks.append(_Task(operation, task, seconds))

    def start(self) -> KubeWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop after its current call (which is bounded by the API timeout)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_pending(self, wait: float = 0.0) -> None:
        """One turn: the next queued job (waiting up to ``wait`` seconds for one), then every task that is due."""
        try:
            operation, job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            pass
        else:
            self._guarded(operation, job)
        now = time.monotonic()
        for task in self._tasks:
            if now >= task.due:
                self._guarded(task.operation, task.run)
                task.due = time.monotonic() + task.period

    def _run(self) -> None:
        while not self._stopping.is_set():
            due = min((task.due for task in self._tasks), default=time.monotonic() + 0.5)
            self.run_pending(wait=min(max(due - time.monotonic(), 0.01), 0.5))

    def _guarded(self, operation: str, job: Job) -> None:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - never fatal: the integration must not stop the process
            self.metrics.error(operation)
            level = logging.DEBUG if operation in self._failing else logging.WARNING
            self._failing.add(operation)
            log.log(level, "Kubernetes %s failed (%s); retrying later", operation, describe_failure(exc))
        else:
            if operation in self._failing:
                self._failing.discard(operation)
                log.info("Kubernetes %s works again", operation)
