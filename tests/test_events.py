"""The event contract: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.errors import EventError
from streaming.events import Event, EventLimits, check_feature, check_features, decode_event, encode_event

LIMITS = EventLimits(max_event_bytes=2048, max_features=5, max_string_length=16, max_abs_value=1e6)


def doc(**changes):
    base = {"event_id": "e", "ts": 1, "user_id": "u", "features": {"a": 1.5, "b": "x", "c": True}, "label": 1}
    base.update(changes)
    return base


def test_msgpack_and_json_decode_to_the_same_event():
    from_msgpack = decode_event(msgpack.packb(doc()), "msgpack", LIMITS)
    from_json = decode_event(json.dumps(doc()).encode(), "json", LIMITS)
    assert from_msgpack == from_json == Event("e", 1, {"a": 1.5, "b": "x", "c": "true"}, True, "u")
    assert decode_event(json.dumps(doc()).encode(), "auto", LIMITS) == from_msgpack


def test_label_is_optional_and_int_user_ids_become_strings():
    event = decode_event(msgpack.packb(doc(label=None, user_id=42)), "msgpack", LIMITS)
    assert event.label is None
    assert event.user_id == "42"


def test_round_trip_of_encode_event():
    event = Event("e9", 5, {"a": 2, "b": "y"}, False, None)
    assert decode_event(encode_event(event), "msgpack", LIMITS) == event
    assert decode_event(encode_event(event, "json"), "json", LIMITS) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "undecodable"),
        (b"\xc1", "undecodable"),
        (b"{not json", "undecodable"),
        (msgpack.packb("text"), "bad_shape"),
        (msgpack.packb(doc(event_id="")), "bad_field"),
        (msgpack.packb(doc(ts=-1)), "bad_field"),
        (msgpack.packb(doc(ts=True)), "bad_field"),
        (msgpack.packb(doc(features=[1])), "bad_field"),
        (msgpack.packb(doc(features={"a": float("nan")})), "non_finite"),
        (msgpack.packb(doc(features={"a": float("-inf")})), "non_finite"),
        (msgpack.packb(doc(features={"a": 1e7})), "oversized"),
        (msgpack.packb(doc(features={"a": "y" * 17})), "oversized"),
        (msgpack.packb(doc(features={f"f{i}": i for i in range(6)})), "too_many_features"),
        (msgpack.packb(doc(features={"a": None})), "bad_type"),
        (msgpack.packb(doc(features={1: 2})), "bad_feature_name"),
        (msgpack.packb(doc(label=2)), "bad_label"),
        (msgpack.packb(doc(user_id=["u"])), "bad_field"),
        (b"\x80" * 3000, "oversized"),
        (b'{"event_id": "e", "ts": 1, "features": {"a": 1' + b"0" * 400 + b"}}", "oversized"),
        (msgpack.packb({"event_id": "e", "ts": 1, "features": {"a": 1}, "x": {(1, 2): 3}}), "undecodable"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(EventError) as info:
        decode_event(raw, "auto" if raw and raw[:1] == b"{" else "msgpack", LIMITS)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b'{"event_id": "e", "ts": 1000000000000000000000000000000, "features": {}}', "bad_field", "out of range"),
        (b'{"event_id": "e", "ts": 9223372036854775808, "features": {}}', "bad_field", "2^63-1"),
        (b'{"event_id": "\\udfff", "ts": 1, "features": {}}', "bad_string", "event_id"),
        (b'{"event_id": "e", "ts": 1, "user_id": "\\udfff", "features": {}}', "bad_string", "user_id"),
        (b'{"event_id": "e", "ts": 1, "features": {"\\ud800": 1}}', "bad_string", "feature name"),
        (b'{"event_id": "e", "ts": 1, "features": {"a": "x\\ud800"}}', "bad_string", "'a'"),
        (b'{"event_id": "e", "ts": 1, "user_id": 100000000000000000000000, "features": {}}', "bad_field", "user_id"),
        (b'{"event_id": "e", "ts": 1, "features": {"a": null}}', "bad_type", "got null"),
        (b'{"event_id": "e", "ts": 1, "features": [1]}', "bad_field", "got array"),
        (b"[1, 2]", "bad_shape", "got array"),
        (b'{"event_id": "e", "ts": 1.5, "features": {}}', "bad_field", "got number"),
    ],
)
def test_values_that_cannot_be_written_again_are_rejected_with_contract_types(raw, reason, words):
    with pytest.raises(EventError) as info:
        decode_event(raw, "json", LIMITS)
    assert info.value.reason == reason
    assert words in info.value.detail
    assert "NoneType" not in info.value.detail
    assert "list" not in info.value.detail
    info.value.detail.encode()  # the reason itself is valid text for a Kafka header


def test_auto_format_accepts_a_bom_and_leading_whitespace():
    body = json.dumps(doc()).encode()
    for raw in (b"\xef\xbb\xbf" + body, b" \n\t" + body, b"\xef\xbb\xbf\r\n " + body):
        assert decode_event(raw, "auto", LIMITS) == decode_event(body, "json", LIMITS)
    assert decode_event(b"\xef\xbb\xbf" + body, "json", LIMITS).event_id == "e"


def test_json_sent_to_a_msgpack_learner_says_how_to_fix_it():
    with pytest.raises(EventError) as info:
        decode_event(b" " + json.dumps(doc()).encode(), "msgpack", LIMITS)
    assert info.value.reason == "undecodable"
    assert "set LIVELEARN_EVENT_FORMAT=json or auto" in info.value.detail


_names = st.one_of(
    st.text(max_size=8),
    st.text(alphabet="ab\ud800é", max_size=4),
    st.text(min_size=250, max_size=260),
    st.integers(),
    st.none(),
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.booleans(),
    st.text(max_size=8),
    st.text(alphabet="ab\ud800é", max_size=4),
    st.text(min_size=255, max_size=258),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@given(st.dictionaries(_names, _values, max_size=6))
@settings(max_examples=400, deadline=None)
def test_the_fast_feature_check_agrees_with_the_full_one(features):
    """The fast path of check_features gives exactly check_feature's values, or the same refusal."""
    limits = EventLimits(max_string_length=256, max_abs_value=1e15)

    def outcome(check):
        try:
            values = check()
        except EventError as exc:
            return ("refused", exc.reason, exc.detail)
        return ("accepted", values, [type(v) for v in values.values()])

    full = outcome(lambda: {name: check_feature(name, value, limits) for name, value in features.items()})
    assert outcome(lambda: check_features(features, limits)) == full
