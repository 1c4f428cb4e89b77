"""The learner's event decoder (:class:`~streaming.events.EventDecoder`: a typed msgspec pass first) gives exactly what
:func:`~streaming.events.decode_event` gives — the same event, or the same error (reason and detail) — for any
value a producer can send: generated documents with hostile fields, raw bytes, and the edges of every limit."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.errors import EventError
from streaming.events import INT64_MAX, Event, EventDecoder, EventLimits, decode_event, encode_event

LIMITS = EventLimits(max_features=6, max_string_length=12, max_abs_value=1e6, max_event_bytes=600)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, 2, -1, 10**6, 10**6 + 1, -(10**6), INT64_MAX, INT64_MAX + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e6, 1e6 + 0.5, -1e6, math.nan, math.inf, 0.0, -0.0]),
    st.text(max_size=14),
    st.binary(max_size=4),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2))
names = st.one_of(st.text(max_size=14), st.integers(-3, 3), st.sampled_from(["", "a" * 12, "a" * 13, "é" * 12]))
features = st.one_of(st.dictionaries(names, values, max_size=8), values)
documents = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.text(max_size=14), scalars),
        "ts": st.one_of(st.integers(-2, 2**64 - 1), scalars),
        "user_id": st.one_of(st.text(max_size=14), st.integers(-(2**63), 2**64 - 1), scalars),
        "features": features,
        "label": scalars,
        "extra": values,
    },
)

edge_values = st.one_of(
    st.booleans(),
    st.integers(-(10**6) - 2, 10**6 + 2),
    st.floats(min_value=-1.1e6, max_value=1.1e6),
    st.sampled_from([1e6, -1e6, 1e6 + 0.5, math.nan, math.inf, -math.inf, -0.0, 2**63, -(2**63)]),
    st.sampled_from([10**6, -(10**6), 10**6 + 1, -(10**6) - 1, "a" * 12, "a" * 13]),
    st.text(max_size=13),
)
nearly_valid = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.text(min_size=1, max_size=13), st.just("")),
        "ts": st.one_of(st.integers(0, INT64_MAX), st.sampled_from([-1, INT64_MAX + 1, True])),
        "features": st.dictionaries(st.text(max_size=13), edge_values, max_size=7),
    },
    optional={
        "user_id": st.one_of(st.text(max_size=13), st.integers(-(2**63), 2**64 - 1), st.none(), st.booleans()),
        "label": st.one_of(st.none(), st.booleans(), st.integers(-1, 2), st.just(1.0)),
    },
)


def outcome(decode, raw: bytes | None) -> object:
    try:
        return decode(raw)
    except EventError as exc:
        return ("error", exc.reason, exc.detail)


@pytest.mark.parametrize("labels", [False, True])
@settings(max_examples=600, deadline=None)
@given(doc=documents)
def test_the_decoder_gives_what_decode_event_gives_for_any_document(labels, doc):
    try:
        raw = msgpack.packb(doc, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return  # not representable in msgpack
    decoder = EventDecoder("msgpack", LIMITS, labels=labels)
    assert outcome(decoder, raw) == outcome(lambda r: decode_event(r, "msgpack", LIMITS, labels=labels), raw)


@pytest.mark.parametrize("labels", [False, True])
@settings(max_examples=800, deadline=None)
@given(doc=nearly_valid)
def test_the_decoder_gives_what_decode_event_gives_at_the_edges_of_every_limit(labels, doc):
    raw = msgpack.packb(doc, use_bin_type=True)
    decoder = EventDecoder("msgpack", LIMITS, labels=labels)
    assert outcome(decoder, raw) == outcome(lambda r: decode_event(r, "msgpack", LIMITS, labels=labels), raw)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_the_edges_are_reached_both_ways():
    """The generated documents above are mostly accepted by the typed path, and mostly not: both sides are tested."""
    decoder = EventDecoder("msgpack", LIMITS)
    typed = 0
    for doc in (nearly_valid.example() for _ in range(300)):
        try:
            decoder._typed(msgpack.packb(doc, use_bin_type=True))  # type: ignore[misc]
            typed += 1
        except Exception:
            continue
    assert 30 < typed < 270


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=700), st.none()))
def test_the_decoder_gives_what_decode_event_gives_for_any_bytes(raw):
    decoder = EventDecoder("msgpack", LIMITS)
    assert outcome(decoder, raw) == outcome(lambda r: decode_event(r, "msgpack", LIMITS), raw)


def test_valid_events_take_the_typed_path_and_come_out_as_the_contract_says():
    decoder = EventDecoder("msgpack", EventLimits())
    event = Event("e1", 7, {"n": 3, "x": -2.5, "month": "Feb", "weekend": True, "new": False}, label=True, user_id="u")
    decoded = decoder(encode_event(event))
    assert decoded == Event("e1", 7, {"n": 3, "x": -2.5, "month": "Feb", "weekend": "true", "new": "false"}, True, "u")
    assert type(decoded.features["n"]) is int and type(decoded.features["x"]) is float
    assert decoder(msgpack.packb({"event_id": "e", "ts": 0, "features": {}, "user_id": 42, "label": 0})) == Event(
        "e", 0, {}, False, "42"
    )
    # the slow path never ran for them
    decoder._typed = None  # type: ignore[assignment]  (the fallback alone gives the same)
    assert decoder(encode_event(event)) == decoded


def _crafted(extra: bytes) -> bytes:
    """An event whose fifth field (``referrer``, not in the contract) is the raw msgpack ``extra``."""
    pack = lambda value: msgpack.packb(value, use_bin_type=True)  # noqa: E731
    return (
        b"\x84"
        + pack("event_id")
        + pack("e1")
        + pack("ts")
        + pack(5)
        + pack("features")
        + pack({"a": 1})
        + (pack("referrer") + extra)
    )


@pytest.mark.parametrize(
    "extra",
    [
        b"\xa2\xc3(",  # a string cut inside a UTF-8 character
        b"\xc7\x03\xff\x00\x01\x02",  # a timestamp extension of a length msgpack refuses
        b"\x81\x91\x01\x02",  # an array as a map key
        b"\xa3abc",  # a plain string: an event with a field the contract does not name
    ],
)
def test_a_field_outside_the_contract_is_read_as_decode_event_reads_it(extra):
    """What msgpack refuses anywhere in the record is refused (dead-lettered), also in a field the typed pass does not
    know; a well-formed extra field is ignored, as decode_event ignores it."""
    raw = _crafted(extra)
    assert outcome(EventDecoder("msgpack", EventLimits()), raw) == outcome(
        lambda r: decode_event(r, "msgpack", EventLimits()), raw
    )
