"""What livelearn packs for Redis (:func:`snapshotter.packing.packb`, written by msgspec's encoder) is byte for byte
what ``msgpack.packb(value, use_bin_type=True)`` wrote before: on generated documents, at every size boundary of
msgpack's shortest forms, and for the values msgspec's encoder refuses (the same bytes, or the same error)."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapshotter.codec import pack
from snapshotter.packing import Packed, Packer, packb

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -32, -33, -128, -129, -(2**31) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, math.nan, 1e308, 5e-324]),
    st.text(max_size=40),
    st.binary(max_size=40),
)
keys = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1), st.binary(max_size=4), st.booleans())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=20),
        st.lists(inner, max_size=20).map(tuple),
        st.dictionaries(keys, inner, max_size=20),
    ),
    max_leaves=60,
)


def reference(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


@settings(max_examples=1500, deadline=None)
@given(documents)
def test_generated_documents_pack_to_msgpacks_bytes(doc):
    assert packb(doc) == reference(doc)
    assert pack(doc) == reference(doc)


@pytest.mark.parametrize("n", [0, 15, 16, 31, 32, 255, 256, 65535, 65536])
def test_every_shortest_form_boundary_is_msgpacks(n):
    for value in ("a" * n, "é" * n, b"x" * n, bytearray(b"y" * n), list(range(n)), tuple([0.5] * n)):
        assert packb(value) == reference(value)
    mapping = {f"k{i}": i for i in range(n)}
    assert packb(mapping) == reference(mapping)


def test_what_msgspec_refuses_is_packed_by_msgpack_or_refused_as_msgpack_refuses():
    class Text(str):
        pass

    for value in ({"spec": Packed(b"\x80")}, np.float64(1.5), [Text("x"), np.float64(-2.0)], True):
        assert packb(value) == reference(value)
    for value in (2**64, -(2**63) - 1, object()):
        with pytest.raises(Exception) as expected:
            reference(value)
        with pytest.raises(expected.type):
            packb(value)


def test_the_packer_writes_msgpacks_bytes_call_after_call():
    packer = Packer()
    names = [f"w{i}" for i in range(5000)]
    for grown in (names, [*names, "a", "b"], [*names, "a", "b", 3]):
        doc = {"model": {"weights": {"names": grown, "float64le": b"\x00" * 8}}, "n": len(grown)}
        assert packer.pack(doc) == reference(doc)
