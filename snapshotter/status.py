"""The active learner's live documents in Redis: its status, and the metric history stream.

* The **status** (:class:`LearnerStatus`, msgpack, short TTL) is what the live view, ``livelearn up``, the
  control plane and operators read: throughput, lag, counters, rolling and cumulative metrics, versions,
  lineage epoch, positions.
* The **history** stream holds one :data:`MetricSample` per ``history_every_events`` labelled events: flat
  numeric fields (``time``, ``epoch``, ``version``, ``scored``, ``events_seen``, ``stream_position``,
  ``offset:<partition>``, every rolling metric with its ``samples`` count, the block's data signals and
  ``incident`` (1 while a data-quality incident holds learning)). The monitor judges every one of them in
  order; ``livelearn report`` draws them.

Both are written by one script fenced by the lease (:class:`StatusWriter`), so a learner that lost its
lease can neither mislead the monitor nor the operators.

>>> parse_sample({b"epoch": b"1", b"accuracy": b"0.82", b"offset:0": b"300"})
{'epoch': 1.0, 'accuracy': 0.82, 'offset:0': 300.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import redis

from snapshotter.codec import pack, unpack
from snapshotter.connection import as_bytes, as_text
from snapshotter.keys import Keys
from snapshotter.scripts import PUBLISH_STATUS, bind

__all__ = [
    "LearnerStatus",
    "MetricSample",
    "StatusWriter",
    "parse_sample",
    "read_samples",
    "read_status",
    "sample_metrics",
]

#: One history entry: every field is a number.
MetricSample = dict[str, float]


class LearnerStatus(TypedDict):
    """The active learner's status document."""

    writer: str
    lease_token: int | None
    updated_at: float
    events_per_second: float
    lag: int | None  # None: unknown (Kafka unreachable), never a false 0
    counters: dict[str, int]
    rolling: dict[str, float]
    cumulative: dict[str, float]
    head_version: int | None
    version: int | None  # the version the live model descends from
    last_snapshot_at: float | None
    epoch: int
    frozen: bool
    stream_position: int
    offsets: dict[str, dict[str, int]]
    last_rollback: dict[str, Any] | None
    labels: NotRequired[dict[str, Any] | None]  # the label join's figures (counts, pending, oldest wait, delays)
    arms: NotRequired[dict[str, Any] | None]  # each challenger's figures and its comparison with the champion
    held: NotRequired[dict[str, Any] | None]  # candidate versions the guard holds back: how many, from where, why


_NOT_METRICS = ("time", "epoch", "version", "scored", "incident")


def parse_sample(fields: Mapping[Any, Any]) -> MetricSample:
    """One history entry as numbers."""
    return {as_text(k): float(v) for k, v in fields.items()}


def sample_metrics(sample: MetricSample) -> dict[str, float]:
    """What an audit entry records of a sample: metrics, rates and stream position (no per-partition, per-feature,
    per-challenger or per-group label-odds fields).

    >>> sample_metrics({"time": 1.0, "accuracy": 0.9, "offset:0": 5.0, "feature:x": 2.0, "stream_position": 5.0})
    {'accuracy': 0.9, 'stream_position': 5.0}
    """
    skipped = ("offset:", "feature:", "arm:", "odds:")
    return {k: v for k, v in sample.items() if k not in _NOT_METRICS and not k.startswith(skipped)}


def read_samples(client: redis.Redis, keys: Keys) -> list[tuple[str, MetricSample]]:
    """Every metric sample still in the history stream, oldest first: ``(entry id, sample)``."""
    entries: list[tuple[Any, dict[Any, Any]]] = list(client.xrange(keys.history))  # type: ignore[arg-type]
    return [(as_text(entry_id), parse_sample(fields)) for entry_id, fields in entries]


def read_status(client: redis.Redis, keys: Keys) -> LearnerStatus | None:
    """The active learner's last published status, or ``None`` when none is fresh."""
    raw = client.get(keys.status)
    if raw is None:
        return None
    status: LearnerStatus = unpack(as_bytes(raw))
    return status


class StatusWriter:
    """Publishes a learner's status and its buffered metric samples in one fenced script call."""

    def __init__(self, client: redis.Redis, keys: Keys, *, history_maxlen: int) -> None:
        self.keys = keys
        self.history_maxlen = history_maxlen
        self._script = bind(client, PUBLISH_STATUS)

    def publish(
        self, lease_value: str | None, status: LearnerStatus, samples: Sequence[MetricSample], ttl_ms: int
    ) -> bool:
        """Write ``status`` (expiring after ``ttl_ms``) and append ``samples``; ``False`` if the lease is not ours."""
        # the samples as one argument: each costs redis-py microseconds of Python, and a status carries ~2k fields
        packed = pack([[str(x) for pair in sample.items() for x in pair] for sample in samples]) if samples else ""
        return bool(
            self._script(
                self.keys,
                lease_value=lease_value,
                status=pack(status),
                ttl_ms=ttl_ms,
                history_maxlen=self.history_maxlen,
                samples=packed,
            )
        )
