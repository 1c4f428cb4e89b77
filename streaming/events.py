"""The event contract: decode, validate and encode behaviour events.

An event is a map with ``event_id`` (str), ``ts`` (epoch milliseconds), ``user_id`` (optional),
``features`` (name -> number | string | bool) and ``label`` (optional bool or 0/1). It travels as
msgpack by default; JSON is accepted where configured. Anything else is rejected with an
:class:`~streaming.errors.EventError` whose ``reason`` goes to the dead-letter topic.

Booleans are categorical for the model, so ``decode_event`` turns them into ``"true"``/``"false"``.

>>> limits = EventLimits()
>>> raw = encode_event(Event("e1", 1700000000000, {"pages": 3, "weekend": True}, label=1, user_id="u9"))
>>> ev = decode_event(raw, "msgpack", limits)
>>> ev.event_id, ev.features, ev.label
('e1', {'pages': 3, 'weekend': 'true'}, True)
>>> decode_event(b'{"event_id": "e2", "ts": 1, "features": {"x": NaN}}', "auto", limits)
Traceback (most recent call last):
...
streaming.errors.EventError: non_finite: feature 'x' is NaN or infinite
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal

import msgpack

from streaming.errors import EventError

__all__ = ["Event", "EventLimits", "check_feature", "decode_event", "encode_event", "EventFormat"]

EventFormat = Literal["msgpack", "json", "auto"]
Feature = float | int | str


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One validated behaviour event."""

    event_id: str
    ts: int
    features: dict[str, Feature]
    label: bool | None = None
    user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "ts": self.ts,
            "user_id": self.user_id,
            "features": self.features,
            "label": self.label,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds past which an event is dead-lettered instead of learned from."""

    max_event_bytes: int = 1_048_576
    max_features: int = 1000
    max_string_length: int = 256
    max_abs_value: float = 1e15


def encode_event(event: Event, fmt: Literal["msgpack", "json"] = "msgpack") -> bytes:
    """Serialise an event for the events topic."""
    doc = event.to_dict()
    if fmt == "json":
        return json.dumps(doc, separators=(",", ":")).encode()
    return msgpack.packb(doc, use_bin_type=True)


def _parse(raw: bytes, fmt: EventFormat) -> Any:
    if fmt == "auto":
        fmt = "json" if raw[:1] in (b"{", b" ", b"\n") else "msgpack"
    try:
        if fmt == "json":
            return json.loads(raw)
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise EventError("undecodable", f"not valid {fmt}: {exc}") from None


def check_feature(name: Any, value: Any, limits: EventLimits) -> Feature:
    if not isinstance(name, str) or not name:
        raise EventError("bad_feature_name", f"feature names must be non-empty strings, got {name!r}")
    if len(name) > limits.max_string_length:
        raise EventError("oversized", f"feature name longer than {limits.max_string_length} characters")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) > limits.max_abs_value:  # before isfinite: huge ints overflow it
        raise EventError("oversized", f"feature {name!r} exceeds +/-{limits.max_abs_value:g}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise EventError("non_finite", f"feature {name!r} is NaN or infinite")
        if abs(value) > limits.max_abs_value:
            raise EventError("oversized", f"feature {name!r} = {value!r} exceeds +/-{limits.max_abs_value:g}")
        return value
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            raise EventError("oversized", f"feature {name!r} is longer than {limits.max_string_length} characters")
        return value
    raise EventError("bad_type", f"feature {name!r} must be a number, string or bool, got {type(value).__name__}")


def _check_label(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise EventError("bad_label", f"label must be true/false/0/1 or absent, got {value!r}")


def decode_event(raw: bytes | None, fmt: EventFormat, limits: EventLimits) -> Event:
    """Decode and validate one Kafka record value, or raise :class:`EventError` — never anything else,
    so no input can stop a learner."""
    try:
        return _decode(raw, fmt, limits)
    except EventError:
        raise
    except Exception as exc:  # e.g. unhashable msgpack map keys, recursion in deeply nested input
        raise EventError("undecodable", f"{type(exc).__name__}: {exc}"[:500]) from None


def _decode(raw: bytes | None, fmt: EventFormat, limits: EventLimits) -> Event:
    if raw is None:
        raise EventError("undecodable", "record has no value (tombstone)")
    if len(raw) > limits.max_event_bytes:
        raise EventError("oversized", f"event is {len(raw)} bytes, limit {limits.max_event_bytes}")
    doc = _parse(raw, fmt)
    if not isinstance(doc, dict):
        raise EventError("bad_shape", f"event must be a map, got {type(doc).__name__}")
    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > limits.max_string_length:
        raise EventError("bad_field", "event_id must be a non-empty string")
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise EventError("bad_field", "ts must be a non-negative integer (epoch milliseconds)")
    user_id = doc.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > limits.max_string_length):
        raise EventError("bad_field", "user_id must be a string or absent")
    features = doc.get("features")
    if not isinstance(features, dict):
        raise EventError("bad_field", "features must be a map of name -> number | string | bool")
    if len(features) > limits.max_features:
        raise EventError("too_many_features", f"{len(features)} features, limit {limits.max_features}")
    checked = {name: check_feature(name, value, limits) for name, value in features.items()}
    return Event(event_id, ts, checked, _check_label(doc.get("label")), user_id)
