"""The livelearn exception tree.

Every error livelearn raises on purpose derives from :class:`LivelearnError`, so callers can catch
one type. Messages say what went wrong *and* what to do about it; the CLI prints them as one line.

>>> from streaming.errors import LivelearnError, SnapshotFencedError
>>> issubclass(SnapshotFencedError, LivelearnError)
True
"""

from __future__ import annotations

__all__ = [
    "LivelearnError",
    "ConfigError",
    "InputError",
    "ConnectionFailedError",
    "EventError",
    "SnapshotError",
    "SnapshotCorruptError",
    "SnapshotFencedError",
    "StaleLineageError",
    "ControlError",
    "VersionNotFoundError",
    "ModelSpecMismatchError",
    "LeaseLostError",
    "OutputDeliveryError",
    "StoreLostError",
    "EmbeddedServerError",
]


class LivelearnError(Exception):
    """Root of every error livelearn raises on purpose."""


class ConfigError(LivelearnError):
    """The configuration is invalid; the message names the setting and its env var."""


class InputError(LivelearnError):
    """A file or value given on the command line is unusable (a missing directory, a CSV without the
    dataset's columns...); the message names it and what to pass instead."""


class ConnectionFailedError(LivelearnError):
    """Kafka or Redis could not be reached; the message names the address that was tried."""


class EventError(LivelearnError):
    """An event could not be decoded or failed validation.

    ``reason`` is a short machine-readable code (e.g. ``non_finite``) that ends up in the
    dead-letter headers and the ``livelearn_events_dead_lettered_total`` metric label.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SnapshotError(LivelearnError):
    """A snapshot could not be written, read or restored."""


class SnapshotCorruptError(SnapshotError):
    """A stored snapshot does not match its checksum or cannot be decoded."""


class SnapshotFencedError(SnapshotError):
    """A snapshot write was rejected because the writer no longer holds the model's lease."""


class StaleLineageError(SnapshotError):
    """A snapshot write was rejected because a rollback moved the lineage on; reload the head."""


class ControlError(LivelearnError):
    """An operator or monitor action (pin, rollback, resume...) was refused; nothing was changed."""


class VersionNotFoundError(SnapshotError):
    """The requested version number does not exist (never written, or removed by retention)."""


class ModelSpecMismatchError(SnapshotError):
    """A snapshot was written for a model with another structure than the configured one."""


class OutputDeliveryError(LivelearnError):
    """Dead letters or predictions could not be delivered to Kafka; no snapshot moved past them."""


class StoreLostError(LivelearnError):
    """Redis holds no version of a model that Kafka says was learned before: Redis lost its data."""


class LeaseLostError(LivelearnError):
    """This learner lost its writer lease (expired or taken over) and must stop learning."""


class EmbeddedServerError(LivelearnError):
    """An embedded broker or redis-server could not be found or started."""
