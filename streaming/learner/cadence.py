"""When an active learner snapshots, renews its lease and publishes its status (pure timing, no I/O).

A snapshot is due every ``snapshot_every_events`` records, and every ``snapshot_every_seconds`` while records
flow. With promotion ``guard`` a version only becomes stable (and served) once the data up to it is found calm,
so the timed snapshot is taken where that was just judged — at the first metric sample after the interval, or
between samples once the block so far is calm (``promotion_partial_blocks``: the runner asks with
``at_sample=True``) — and is stable at once; it only falls back to any moment after twice the interval.

>>> from streaming.config import Settings
>>> cadence = Cadence(Settings(snapshot_every_events=2, snapshot_every_seconds=30), now=0.0, seen=0)
>>> cadence.consumed(), cadence.consumed()
(False, True)
>>> cadence.snapshotted(now=1.0)
>>> cadence.consumed()
False
>>> cadence.snapshot_due(now=20.0, at_sample=True), cadence.snapshot_due(now=32.0, at_sample=True)
(False, True)
>>> cadence.snapshot_due(now=32.0), cadence.snapshot_due(now=62.0)  # not at a sample: after twice the interval
(False, True)
"""

from __future__ import annotations

from streaming.config import Settings

__all__ = ["Cadence"]


class Cadence:
    """Snapshots every N records or T seconds (when records flowed), lease renewals every TTL/3, status
    every status interval, and the event rate between two statuses."""

    def __init__(self, settings: Settings, *, now: float, seen: int) -> None:
        self.settings = settings
        self.align = settings.promotion == "guard"  # timed snapshots at metric samples (see the module docstring)
        self.since_snapshot = 0
        self.last_snapshot_at = now
        self.next_renew = now + settings.lease_ttl_seconds / 3
        self.next_status = now
        self._rate_mark = (now, seen)

    def consumed(self, records: int = 1) -> bool:
        """Count ``records`` records; ``True`` when they complete a snapshot's worth of records."""
        self.since_snapshot += records
        return self.since_snapshot >= self.settings.snapshot_every_events

    def until_due(self) -> int:
        """Records until the one that completes a snapshot's worth (at least 1)."""
        return max(1, self.settings.snapshot_every_events - self.since_snapshot)

    def snapshot_due(self, now: float, *, at_sample: bool = False) -> bool:
        """Records arrived since the last snapshot, and it is older than the snapshot interval — or, with promotion
        ``guard`` and not ``at_sample`` (the event that recorded a metric sample), twice as old."""
        if not self.since_snapshot:
            return False
        interval = self.settings.snapshot_every_seconds
        return now - self.last_snapshot_at >= (interval if at_sample or not self.align else 2 * interval)

    def snapshotted(self, now: float) -> None:
        self.since_snapshot, self.last_snapshot_at = 0, now

    def renew_due(self, now: float) -> bool:
        """Time to renew the lease (and the next renewal is scheduled)."""
        if now < self.next_renew:
            return False
        self.next_renew = now + self.settings.lease_ttl_seconds / 3
        return True

    def status_due(self, now: float) -> bool:
        """Time to publish the status (and the next one is scheduled)."""
        if now < self.next_status:
            return False
        self.next_status = now + self.settings.status_interval_seconds
        return True

    def rate(self, now: float, seen: int) -> float:
        """Events per second since the previous call."""
        since, before = self._rate_mark
        self._rate_mark = (now, seen)
        return (seen - before) / max(now - since, 1e-9)
