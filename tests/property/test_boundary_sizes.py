"""The contract boundary's size accounting agrees with the codec spec, whatever crosses.

``Runtime.process_value`` is the one crossing between node and contract: what it returns as a value's size is what
fuel and every byte limit (stored value, event, result) are charged on. It sizes common scalars inline for speed, so
it is checked here against the spec's reference encoder (``ref_encode``, written from docs/spec/encoding.md, not
from the runtime): for any codec value the size is exactly the canonical encoding's length and the copy equals the
value with tuples turned into lists and shares no container with it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qilian.contracts.runtime import ContractError, Runtime
from qilian.types.codec import MAX_INT, MIN_INT
from tests.property.test_codec_properties import ref_encode

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lengths that sit on the encoding's header boundaries (31/32 characters or UTF-8 bytes, 255/256 bytes, …).
_lengths = st.sampled_from([0, 1, 15, 16, 30, 31, 32, 33, 254, 255, 256, 257, 1000, 65535, 65536])
_text = st.one_of(
    st.text(max_size=40),
    _lengths.map(lambda n: "a" * n),
    _lengths.map(lambda n: "é" * (n // 2)),  # two UTF-8 bytes per character: characters ≠ bytes
    st.text(alphabet="a中\U0001f600", max_size=40),
)
_bytes = st.one_of(st.binary(max_size=40), _lengths.map(lambda n: b"\x00" * n))
_ints = st.one_of(st.integers(MIN_INT, MAX_INT),
                  st.sampled_from([-33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536, -129, -128, -32768, -32769,
                                   2**31 - 1, 2**31, 2**32 - 1, 2**32, -(2**31), -(2**31) - 1, MIN_INT, MAX_INT]))
_scalars = st.one_of(st.none(), st.booleans(), _ints, _text, _bytes)
values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=20), st.lists(inner, max_size=5).map(tuple),
                            st.dictionaries(_text, inner, max_size=20)),
    max_leaves=60,
)


def _runtime() -> Runtime:
    rt = Runtime(state=None, load_code=lambda _a: None, hash_fn=lambda b: b)  # type: ignore[arg-type]
    rt.limit = 1 << 60
    return rt


def _as_lists(v: Any) -> Any:
    if type(v) in (list, tuple):
        return [_as_lists(x) for x in v]
    if type(v) is dict:
        return {k: _as_lists(x) for k, x in v.items()}
    return v


def _containers(v: Any) -> list[int]:
    if type(v) in (list, tuple):
        return [id(v)] + [i for x in v for i in _containers(x)]
    if type(v) is dict:
        return [id(v)] + [i for x in v.values() for i in _containers(x)]
    return []


@SETTINGS
@given(values)
def test_size_is_the_canonical_encoding_length(value: Any) -> None:
    copy, size = _runtime().process_value(value, "value", 1 << 30)
    assert size == len(ref_encode(value))
    assert copy == _as_lists(value) and type(copy) is type(_as_lists(value))
    assert not set(_containers(value)) & set(_containers(copy)), "the copy shares a container with the original"


@SETTINGS
@given(values)
def test_byte_limit_is_exact(value: Any) -> None:
    """A value whose encoding is exactly the limit crosses; one byte less refuses it."""
    size = len(ref_encode(value))
    _runtime().process_value(value, "value", size)
    with pytest.raises(ContractError):
        _runtime().process_value(value, "value", size - 1)


@pytest.mark.parametrize("bad", [
    1.5, {1: "x"}, {"k": 1.0}, ["a", {b"k": 1}], "\ud800", ["\udfff"], {"\ud800": 1}, MAX_INT + 1, [MIN_INT - 1],
    {"a": frozenset()}, [bytearray(b"x")], (memoryview(b"x"),), type("S", (str,), {})("x"), [True, 2.0],
])
def test_what_may_not_cross_is_refused(bad: Any) -> None:
    with pytest.raises(ContractError):
        _runtime().process_value(bad, "value", 1 << 30)
