"""The event contract: decode, validate and encode behaviour events.

An event is a map with ``event_id`` (string), ``ts`` (epoch milliseconds, an integer), ``user_id``
(optional string or integer), ``features`` (name -> number | string | boolean) and ``label`` (optional
boolean or 0/1). It travels as msgpack by default; JSON is accepted where configured. Anything else is
rejected with an :class:`~streaming.errors.EventError` whose ``reason`` goes to the dead-letter topic.

Every value that passes can be written again as msgpack and UTF-8 (predictions, snapshots): integers
stay within 64 bits and strings must encode (JSON can smuggle in lone UTF-16 surrogates such as
``"\\udfff"``, which no encoder accepts). Messages name contract types (``number``, ``null``...), not
Python's. Booleans are categorical for the model, so ``decode_event`` turns them into ``"true"``/``"false"``.

>>> limits = EventLimits()
>>> raw = encode_event(Event("e1", 1700000000000, {"pages": 3, "weekend": True}, label=1, user_id="u9"))
>>> ev = decode_event(raw, "msgpack", limits)
>>> ev.event_id, ev.features, ev.label
('e1', {'pages': 3, 'weekend': 'true'}, True)
>>> decode_event(b'{"event_id": "e2", "ts": 1, "features": {"x": NaN}}', "auto", limits)
Traceback (most recent call last):
...
streaming.errors.EventError: non_finite: feature 'x' is NaN or infinite
>>> decode_event(b'{"event_id": "e3", "ts": 1, "features": {}}', "msgpack", limits)
Traceback (most recent call last):
...
streaming.errors.EventError: undecodable: not valid msgpack (...); it looks like JSON: set ...=json or auto
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, overload

import msgpack
import msgspec

from streaming.config import EventLimitSettings, Settings
from streaming.errors import EventError

__all__ = [
    "INT64_MAX",
    "Event",
    "EventDecoder",
    "EventFormat",
    "EventLimits",
    "Label",
    "check_feature",
    "check_features",
    "decode_event",
    "encodable",
    "encode_event",
    "encode_label",
    "kind_of",
    "sniff_format",
]

EventFormat = Literal["msgpack", "json", "auto"]
Feature = float | int | str
INT64_MAX = 2**63 - 1
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One validated behaviour event.

    :func:`decode_event` builds it from a Kafka record value and checks every field; built directly (a replay, a
    test), it is trusted as given. :func:`encode_event` writes it for the events topic.

    Parameters
    ----------
    event_id
        The event's id, non-empty: the learner skips an id it saw recently on the same partition (a retried send).
    ts
        When it happened, in epoch milliseconds (an integer from 0 to 2^63-1).
    features
        Name -> number or string, as the model sees them (booleans arrive decoded as ``"true"``/``"false"``).
    label
        Whether the session bought (default ``None``: unlabelled, scored but not learned).
    user_id
        Who it belongs to (default ``None``); its record's key (else ``event_id``): one user's events stay in order.

    Examples
    --------
    >>> event = Event("e1", 1700000000000, {"pages": 3, "month": "Feb"}, label=True, user_id="u9")
    >>> event.to_dict()
    {'event_id': 'e1', 'ts': 1700000000000, 'user_id': 'u9', 'features': {'pages': 3, 'month': 'Feb'}, 'label': True}
    >>> decode_event(encode_event(event), "msgpack", EventLimits()) == event
    True
    >>> decode_event(encode_event(event, "json"), "auto", EventLimits()) == event
    True
    """

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
class Label:
    """A label that arrives on its own, after (or before) the event it belongs to: ``{event_id, label, ts}``.

    It travels on the labels topic (``LIVELEARN_LABELS_TOPIC``) or, as a record without ``features``, on the
    events topic; the learner joins it to the scored event with the same ``event_id`` (see
    :mod:`streaming.learner.join`). :func:`decode_event` with ``labels=True`` returns one for a record without
    ``features``.

    Parameters
    ----------
    event_id
        The event it labels.
    ts
        When the outcome happened (epoch milliseconds): a purchase's time, at or after its session's.
    label
        Whether the session bought.

    Examples
    --------
    >>> raw = encode_label(Label("e1", 1700000060000, True))
    >>> decode_event(raw, "msgpack", EventLimits(), labels=True)
    Label(event_id='e1', ts=1700000060000, label=True)
    >>> decode_event(raw, "msgpack", EventLimits())  # labels not joined: a record without features is refused
    Traceback (most recent call last):
    ...
    streaming.errors.EventError: bad_field: features must be a map of name -> number | string | boolean, got null
    """

    event_id: str
    ts: int
    label: bool

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "ts": self.ts, "label": self.label}


@dataclasses.dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds past which an event is dead-lettered instead of learned from.

    :func:`decode_event` checks them (a request to the prediction API is refused past them too); each is a setting
    (``LIVELEARN_MAX_*``: :meth:`from_settings`).

    Parameters
    ----------
    max_event_bytes
        The longest record value, in bytes (default 1 MiB).
    max_features
        The most features one event carries (default ``1000``).
    max_string_length
        The longest string, in characters: a feature's name or value, ``event_id``, ``user_id`` (default ``256``).
    max_abs_value
        The largest magnitude of a number (default ``1e15``).

    Examples
    --------
    >>> limits = EventLimits(max_features=2, max_string_length=8)
    >>> decode_event(encode_event(Event("e1", 1, {"a": 1, "b": 2, "c": 3})), "msgpack", limits)
    Traceback (most recent call last):
    ...
    streaming.errors.EventError: too_many_features: 3 features, limit 2
    >>> decode_event(encode_event(Event("e2", 1, {"city": "Llanfairpwll"})), "msgpack", limits)
    Traceback (most recent call last):
    ...
    streaming.errors.EventError: oversized: feature 'city' is longer than 8 characters
    >>> from streaming.config import Settings
    >>> EventLimits.from_settings(Settings(max_features=50)).max_features
    50
    """

    max_event_bytes: int = 1_048_576
    max_features: int = 1000
    max_string_length: int = 256
    max_abs_value: float = 1e15

    @classmethod
    def from_settings(cls, settings: EventLimitSettings | Settings) -> EventLimits:
        """The limits configured in :class:`~streaming.config.Settings` (``LIVELEARN_MAX_*``), from the settings or
        their ``limits`` group."""
        limits = EventLimitSettings.of(settings)
        return cls(limits.max_event_bytes, limits.max_features, limits.max_string_length, limits.max_abs_value)


def encode_event(event: Event, fmt: Literal["msgpack", "json"] = "msgpack") -> bytes:
    """Serialise an event for the events topic."""
    return _encode(event.to_dict(), fmt)


def encode_label(label: Label, fmt: Literal["msgpack", "json"] = "msgpack") -> bytes:
    """Serialise a label record (for the labels topic, or the events topic with the join on)."""
    return _encode(label.to_dict(), fmt)


def _encode(doc: dict[str, Any], fmt: Literal["msgpack", "json"]) -> bytes:
    if fmt == "json":
        return json.dumps(doc, separators=(",", ":")).encode()
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return packed


def kind_of(value: Any) -> str:
    """The contract's name for the type of a decoded value.

    >>> [kind_of(v) for v in (None, True, 3, 2.5, "x", [1], {}, b"")]
    ['null', 'boolean', 'integer', 'number', 'string', 'array', 'map', 'bytes']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    return "msgpack extension"


def sniff_format(raw: bytes) -> Literal["msgpack", "json"]:
    """JSON when the value starts with ``{`` after an optional UTF-8 BOM and whitespace, else msgpack.

    >>> sniff_format(b'\\xef\\xbb\\xbf  {"a": 1}'), sniff_format(b"\\x81\\xa1a\\x01")
    ('json', 'msgpack')
    """
    return "json" if raw.removeprefix(_BOM).lstrip(_WHITESPACE)[:1] == b"{" else "msgpack"


def _parse(raw: bytes, fmt: EventFormat) -> Any:
    resolved = sniff_format(raw) if fmt == "auto" else fmt
    try:
        if resolved == "json":
            return json.loads(raw.decode("utf-8-sig"))
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, RecursionError) as exc:
        detail = f"not valid {resolved} ({str(exc)[:200]})"
        if resolved == "msgpack" and sniff_format(raw) == "json":
            detail += "; it looks like JSON: set LIVELEARN_EVENT_FORMAT=json or auto"
        raise EventError("undecodable", detail) from None


def encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (lone surrogates do not)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_string(value: str, what: str, limits: EventLimits) -> str:
    if len(value) > limits.max_string_length:
        raise EventError("oversized", f"{what} is longer than {limits.max_string_length} characters")
    if not encodable(value):
        raise EventError("bad_string", f"{what} is not valid Unicode text (a lone UTF-16 surrogate?)")
    return value


def check_feature(name: Any, value: Any, limits: EventLimits) -> Feature:
    """Validate one feature; returns the value the model sees (booleans become ``"true"``/``"false"``)."""
    if not isinstance(name, str) or not name:
        raise EventError("bad_feature_name", f"feature names must be non-empty strings, got {kind_of(name)}")
    _check_string(name, "a feature name", limits)
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
        return _check_string(value, f"feature {name!r}", limits)
    raise EventError("bad_type", f"feature {name!r} must be a number, string or boolean, got {kind_of(value)}")


def check_features(features: dict[Any, Any], limits: EventLimits) -> dict[str, Feature]:
    """:func:`check_feature` for every feature, with a fast path for the common case: a short ASCII name with
    a finite number in range, a short ASCII string or a boolean (exact types). Anything else takes the full
    check, which gives the same values and the precise error.

    >>> check_features({"pages": 3, "month": "Feb", "new": True, "dur": 1.5}, EventLimits())
    {'pages': 3, 'month': 'Feb', 'new': 'true', 'dur': 1.5}
    """
    checked: dict[str, Feature] = {}
    longest, bound = limits.max_string_length, limits.max_abs_value
    for name, value in features.items():
        if type(name) is str and name and len(name) <= longest and name.isascii():
            kind = type(value)
            if kind is float or kind is int:
                if -bound <= value <= bound:  # NaN and infinities fail this: the full check names them
                    checked[name] = value
                    continue
            elif kind is str:
                if len(value) <= longest and value.isascii():
                    checked[name] = value
                    continue
            elif kind is bool:
                checked[name] = "true" if value else "false"
                continue
        checked[name] = check_feature(name, value, limits)
    return checked


def _check_label(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    shown = repr(value)[:40] if isinstance(value, int | float) else kind_of(value)
    raise EventError("bad_label", f"label must be true/false/0/1 or absent, got {shown}")


@overload
def decode_event(raw: bytes | None, fmt: EventFormat, limits: EventLimits) -> Event: ...
@overload
def decode_event(raw: bytes | None, fmt: EventFormat, limits: EventLimits, *, labels: bool) -> Event | Label: ...
def decode_event(raw: bytes | None, fmt: EventFormat, limits: EventLimits, *, labels: bool = False) -> Event | Label:
    """Decode and validate one Kafka record value, or raise :class:`EventError` — never anything else,
    so no input can stop a learner. With ``labels`` (the label join is on), a record without ``features`` is a
    :class:`Label` (its ``label`` required)."""
    try:
        return _decode(raw, fmt, limits, labels)
    except EventError:
        raise
    except Exception as exc:  # noqa: BLE001 - the promise: nothing but EventError (e.g. unhashable map keys)
        raise EventError("undecodable", f"{type(exc).__name__}: {exc}"[:500]) from None


def _decode(raw: bytes | None, fmt: EventFormat, limits: EventLimits, labels: bool = False) -> Event | Label:
    if raw is None:
        raise EventError("undecodable", "record has no value (tombstone)")
    if len(raw) > limits.max_event_bytes:
        raise EventError("oversized", f"event is {len(raw)} bytes, limit {limits.max_event_bytes}")
    doc = _parse(raw, fmt)
    if not isinstance(doc, dict):
        raise EventError("bad_shape", f"event must be a map, got {kind_of(doc)}")
    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError("bad_field", f"event_id must be a non-empty string, got {kind_of(event_id)}")
    _check_string(event_id, "event_id", limits)
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= INT64_MAX:
        shown = "out of range" if isinstance(ts, int) and not isinstance(ts, bool) else kind_of(ts)
        raise EventError("bad_field", f"ts must be an integer from 0 to 2^63-1 (epoch milliseconds), got {shown}")
    user_id = doc.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool) and abs(user_id) <= INT64_MAX:
        user_id = str(user_id)
    if user_id is not None:
        if not isinstance(user_id, str):
            raise EventError(
                "bad_field", f"user_id must be a string, a 64-bit integer or absent, got {kind_of(user_id)}"
            )
        _check_string(user_id, "user_id", limits)
    if labels and "features" not in doc:
        label = _check_label(doc.get("label"))
        if label is None:
            raise EventError("bad_label", "a label record (no features) must carry label true/false/0/1")
        return Label(event_id, ts, label)
    features = doc.get("features")
    if not isinstance(features, dict):
        raise EventError(
            "bad_field", f"features must be a map of name -> number | string | boolean, got {kind_of(features)}"
        )
    if len(features) > limits.max_features:
        raise EventError("too_many_features", f"{len(features)} features, limit {limits.max_features}")
    return Event(event_id, ts, check_features(features, limits), _check_label(doc.get("label")), user_id)


class EventDecoder:
    """:func:`decode_event` for one format and set of limits, with a compiled fast path for msgpack events.

    A msgpack event is first decoded and checked in one pass by a typed msgspec decoder built from the limits
    (strings within ``max_string_length``, numbers within ``max_abs_value`` — NaN and infinities fail it —, ``ts``
    a 64-bit non-negative integer, no field besides the contract's five: the typed pass would skip an unknown
    field's bytes unread), the feature names' lengths checked after it (a bound on a map's keys makes msgspec's
    pass twice as slow); whatever it does not accept as it stands (a label record, a label ``2``, another
    field, any error) is decoded again by :func:`decode_event`, which gives the value or the precise error. So the
    result is :func:`decode_event`'s (tested over generated documents and crafted bytes,
    ``tests/test_event_decoder.py``).

    Parameters
    ----------
    fmt
        ``LIVELEARN_EVENT_FORMAT``: the fast path is for ``msgpack``.
    limits
        The contract's bounds.
    labels
        Whether a record without ``features`` is a :class:`Label` (the label join is on).

    Examples
    --------
    >>> decode = EventDecoder("msgpack", EventLimits())
    >>> decode(encode_event(Event("e1", 1, {"pages": 3, "weekend": True}, label=True, user_id="u9"))).features
    {'pages': 3, 'weekend': 'true'}
    >>> decode(encode_event(Event("e2", 1, {"x": float("nan")})))
    Traceback (most recent call last):
    ...
    streaming.errors.EventError: non_finite: feature 'x' is NaN or infinite
    """

    def __init__(self, fmt: EventFormat, limits: EventLimits, *, labels: bool = False) -> None:
        self.fmt, self.limits, self.labels = fmt, limits, labels
        self._longest = limits.max_string_length  # (read for every event)
        self._typed: Callable[[bytes], Any] | None = (
            None if fmt != "msgpack" else msgspec.msgpack.Decoder(_document_type(limits)).decode
        )

    def __call__(self, raw: bytes | None) -> Event | Label:
        typed = self._typed
        if typed is not None and raw is not None and len(raw) <= self.limits.max_event_bytes:
            try:
                doc = typed(raw)
            except (msgspec.DecodeError, RecursionError):
                pass  # (ValidationError is a DecodeError) decoded again below: the precise error, or a label record
            else:
                event = self._event(doc)
                if event is not None:
                    return event
        return decode_event(raw, self.fmt, self.limits, labels=self.labels)

    def _event(self, doc: Any) -> Event | None:
        """The event of a typed document, or ``None`` when only :func:`decode_event` can say."""
        features = doc.features
        if features is None or len(features) > self.limits.max_features:
            return None
        label = doc.label
        if label is not None and type(label) is not bool:
            if label != 0 and label != 1:  # noqa: PLR1714 — an int (the type says so): 0 or 1 only
                return None
            label = bool(label)
        user_id = doc.user_id
        if type(user_id) is int:
            if abs(user_id) > INT64_MAX or len(text := str(user_id)) > self.limits.max_string_length:
                return None
            user_id = text
        # (the names are checked here: msgspec reads a key with a length bound about twice as slowly as the whole rest)
        if "" in features:
            return None
        longest = self._longest
        for name, value in features.items():
            if len(name) > longest:
                return None
            if type(value) is bool:
                features[name] = "true" if value else "false"
        return Event(doc.event_id, doc.ts, features, label, user_id)


def _document_type(limits: EventLimits) -> type:
    """The msgspec type of an event document within ``limits`` (features ``None`` when absent: a label record)."""
    longest, bound = limits.max_string_length, limits.max_abs_value
    name: Any = Annotated[str, msgspec.Meta(min_length=1, max_length=longest)]
    text: Any = Annotated[str, msgspec.Meta(max_length=longest)]
    whole: Any = Annotated[int, msgspec.Meta(ge=-math.floor(bound), le=math.floor(bound))]
    real: Any = Annotated[float, msgspec.Meta(ge=-bound, le=bound)]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("event_id", name),
        ("ts", Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]),
        ("features", dict[str, whole | real | text | bool] | None, None),  # (names: checked by EventDecoder._event)
        ("user_id", text | int | None, None),
        ("label", bool | int | None, None),
    ]
    # (a field it does not know is not read: unknown fields go to decode_event, which reads — and checks — them all)
    return msgspec.defstruct("EventDocument", fields, forbid_unknown_fields=True)
