"""Properties of the canonical codec and the structure decoders (docs/spec/encoding.md).

The reference encoder below is written from the spec, not from the code: the codec must agree with it on every
value, accept exactly its output, and refuse every other byte string with a CodecError — never another exception,
whatever the input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qilian.types import codec, core
from qilian.types.codec import MAX_DEPTH, MAX_INT, MIN_INT, CodecError
from qilian.types.struct import AnyValue, Bool, Bytes, Kind, ListOf, Optional, Struct, Text, UInt, Wire

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STRUCTURES: tuple[type[Wire], ...] = (
    core.TxBody, core.Transaction, core.Event, core.Receipt, core.BlockHeader, core.CommitSig, core.Commit,
    core.Block, core.Vote, core.Validator, core.ValidatorSet, core.Member, core.Organisation, core.ChainParams,
    core.Genesis,
)

# -- a reference encoder, from the spec --------------------------------------------------------------------------


def _uint_head(tags: tuple[int, int, int], n: int) -> bytes:
    """Header of a 16- or 32-bit (or 8-bit for str/bin) length."""
    t8, t16, t32 = tags
    if t8 and n < 1 << 8:
        return bytes([t8, n])
    if n < 1 << 16:
        return bytes([t16]) + n.to_bytes(2, "big")
    return bytes([t32]) + n.to_bytes(4, "big")


def ref_encode(v: Any) -> bytes:
    """Canonical bytes per docs/spec/encoding.md, written independently of qilian.types.codec."""
    if v is None:
        return b"\xc0"
    if v is False:
        return b"\xc2"
    if v is True:
        return b"\xc3"
    if type(v) is int:
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return bytes([v & 0xFF])
        if v > 0:
            for tag, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
                if v < 1 << (8 * size):
                    return bytes([tag]) + v.to_bytes(size, "big")
        for tag, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if v >= -(1 << (8 * size - 1)):
                return bytes([tag]) + v.to_bytes(size, "big", signed=True)
        raise AssertionError(v)
    if type(v) is str:
        b = v.encode("utf-8")
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else _uint_head((0xD9, 0xDA, 0xDB), len(b))) + b
    if type(v) is bytes:
        return _uint_head((0xC4, 0xC5, 0xC6), len(v)) + v
    if type(v) in (list, tuple):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else _uint_head((0, 0xDC, 0xDD), len(v))
        return head + b"".join(ref_encode(x) for x in v)
    if type(v) is dict:
        head = bytes([0x80 | len(v)]) if len(v) < 16 else _uint_head((0, 0xDE, 0xDF), len(v))
        items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-8"))
        return head + b"".join(ref_encode(k) + ref_encode(x) for k, x in items)
    raise AssertionError(type(v))


def int_forms(v: int) -> list[bytes]:
    """Every MessagePack encoding of the integer ``v``, canonical or not."""
    forms = []
    if 0 <= v <= 0x7F:
        forms.append(bytes([v]))
    if -32 <= v < 0:
        forms.append(bytes([v & 0xFF]))
    for tag, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if 0 <= v < 1 << (8 * size):
            forms.append(bytes([tag]) + v.to_bytes(size, "big"))
    for tag, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if -(1 << (8 * size - 1)) <= v < 1 << (8 * size - 1):
            forms.append(bytes([tag]) + v.to_bytes(size, "big", signed=True))
    return forms


def length_heads(family: str, n: int) -> list[bytes]:
    """Every MessagePack header for a str/bin/array/map of length ``n``, canonical or not."""
    fix = {"str": (0xA0, 32), "array": (0x90, 16), "map": (0x80, 16)}
    sized = {"str": (0xD9, 0xDA, 0xDB), "bin": (0xC4, 0xC5, 0xC6), "array": (0, 0xDC, 0xDD), "map": (0, 0xDE, 0xDF)}
    heads = []
    if family in fix and n < fix[family][1]:
        heads.append(bytes([fix[family][0] | n]))
    t8, t16, t32 = sized[family]
    if t8 and n < 1 << 8:
        heads.append(bytes([t8, n]))
    if n < 1 << 16:
        heads.append(bytes([t16]) + n.to_bytes(2, "big"))
    heads.append(bytes([t32]) + n.to_bytes(4, "big"))
    return heads


def depth(v: Any) -> int:
    """Depth of the deepest value inside ``v`` (``v`` itself is at depth 0)."""
    if type(v) in (list, tuple):
        return 1 + max(map(depth, v)) if v else 0
    if type(v) is dict:
        return 1 + max(map(depth, v.values())) if v else 0
    return 0


def normalise(v: Any) -> Any:
    """What decoding gives back: tuples become lists."""
    if type(v) in (list, tuple):
        return [normalise(x) for x in v]
    if type(v) is dict:
        return {k: normalise(x) for k, x in v.items()}
    return v


def same(a: Any, b: Any) -> bool:
    """Equal with identical types all the way down (True is not 1, a tuple is not a list)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def nest(levels: int, leaf: Any, as_map: bool = False) -> Any:
    """``leaf`` inside ``levels`` arrays (or single-key maps)."""
    for _ in range(levels):
        leaf = {"k": leaf} if as_map else [leaf]
    return leaf


# -- strategies --------------------------------------------------------------------------------------------------

BOUNDARY_INTS = sorted({
    x for b in (0, 127, 255, 65535, 2**32 - 1, 2**63 - 1, 2**64 - 1, -32, -128, -32768, -(2**31), -(2**63))
    for x in (b - 1, b, b + 1) if MIN_INT <= x <= MAX_INT
})
ints = st.one_of(st.sampled_from(BOUNDARY_INTS), st.integers(MIN_INT, MAX_INT))
texts = st.text(max_size=40)
scalars = st.one_of(st.none(), st.booleans(), ints, st.binary(max_size=64), texts)
keys = st.text(max_size=8)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=6),
    )


values = st.recursive(scalars, _containers, max_leaves=25)
# Values as decoding returns them (no tuples), for fields of kind "any".
plain_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=4), max_leaves=10
).filter(lambda v: depth(v) <= MAX_DEPTH)


def kind_strategy(kind: Kind) -> st.SearchStrategy[Any]:
    """Valid field values of one wire kind (small sizes: the point is shape, not bulk)."""
    if isinstance(kind, UInt):
        return st.one_of(st.sampled_from([0, 127, 128, 2**32, 2**64 - 1]), st.integers(0, MAX_INT))
    if isinstance(kind, Bool):
        return st.booleans()
    if isinstance(kind, Bytes):
        if kind.size is not None:
            exact = st.binary(min_size=kind.size, max_size=kind.size)
            return st.one_of(st.just(b""), exact) if kind.allow_empty else exact
        return st.binary(max_size=min(kind.max_size, 80))
    if isinstance(kind, Text):
        return st.text(max_size=min(kind.max_len, 24))
    if isinstance(kind, AnyValue):
        return plain_values
    if isinstance(kind, Optional):
        return st.one_of(st.none(), kind_strategy(kind.inner))
    if isinstance(kind, ListOf):
        return st.lists(kind_strategy(kind.inner), max_size=min(kind.max_items, 3)).map(tuple)
    if isinstance(kind, Struct):
        return structure(kind.cls)
    raise AssertionError(kind)


def structure(cls: type[Wire]) -> st.SearchStrategy[Any]:
    """Random valid instances of a structure, built from its WIRE field kinds."""
    return st.deferred(lambda: st.builds(cls, *[kind_strategy(k) for k in cls.WIRE]))


transactions = structure(core.Transaction)
headers = structure(core.BlockHeader)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> bytes:
    """A valid encoding with one or a few mutations: bit flips, byte changes, truncation, insertion, appending."""
    data = bytearray(draw(base).encode())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "append", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=9))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)


def _decodes_canonically_or_codec_error(data: bytes) -> None:
    """The fuzz oracle: decode succeeds only on canonical bytes; every failure is a CodecError."""
    try:
        value = codec.decode(data)
    except CodecError:
        pass
    else:
        assert codec.encode(value) == data
        assert ref_encode(value) == data
    try:
        raw = codec.decode_raw(data)
    except CodecError:
        pass
    else:
        assert codec.encode_trusted(raw) == data
    for cls in (core.Transaction, core.BlockHeader, core.TxBody, core.Block, core.Receipt, core.Commit):
        try:
            obj = cls.decode(data)
        except CodecError:
            continue
        assert obj.encode() == data


# -- round trips --------------------------------------------------------------------------------------------------


@FAST
@given(values)
def test_encode_matches_the_reference_encoder_and_round_trips(v: Any) -> None:
    if depth(v) > MAX_DEPTH:
        with pytest.raises(CodecError):
            codec.encode(v)
        return
    data = codec.encode(v)
    assert data == ref_encode(v)
    back = codec.decode(data)
    assert same(back, normalise(v))
    assert codec.encode(back) == data


@FAST
@given(ints)
def test_integers_use_exactly_one_form(v: int) -> None:
    canonical = ref_encode(v)
    assert codec.encode(v) == canonical
    forms = int_forms(v)
    assert canonical in forms
    for form in forms:
        if form == canonical:
            assert codec.decode(form) == v
        else:
            with pytest.raises(CodecError):
                codec.decode(form)


@FAST
@given(st.integers(min_value=MAX_INT + 1) | st.integers(max_value=MIN_INT - 1))
def test_out_of_range_integers_are_refused(v: int) -> None:
    with pytest.raises(CodecError):
        codec.check_value(v)
    with pytest.raises(CodecError):
        codec.encode([v])


@FAST
@given(st.one_of(
    texts.map(lambda t: ("str", t.encode(), t)),
    st.binary(max_size=300).map(lambda b: ("bin", b, b)),
    st.integers(0, 300).map(lambda n: ("str", b"x" * n, "x" * n)),
))
def test_lengths_use_the_shortest_header(case: tuple[str, bytes, Any]) -> None:
    family, payload, value = case
    canonical = ref_encode(value)
    heads = length_heads(family, len(payload))
    assert canonical in [h + payload for h in heads]
    for head in heads:
        if head + payload == canonical:
            assert same(codec.decode(head + payload), value)
        else:
            with pytest.raises(CodecError):
                codec.decode(head + payload)


@FAST
@given(st.lists(scalars, max_size=20), st.booleans())
def test_array_and_map_lengths_use_the_shortest_header(items: list[Any], as_map: bool) -> None:
    if as_map:
        value: Any = {f"k{i:02d}": x for i, x in enumerate(items)}
        body = b"".join(ref_encode(k) + ref_encode(value[k]) for k in sorted(value))
    else:
        value = items
        body = b"".join(ref_encode(x) for x in items)
    canonical = ref_encode(value)
    for head in length_heads("map" if as_map else "array", len(items)):
        if head + body == canonical:
            assert same(codec.decode(head + body), value)
        else:
            with pytest.raises(CodecError):
                codec.decode(head + body)


# -- fuzzing: nothing but CodecError ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_decode_canonically_or_raise_codec_error(data: bytes) -> None:
    _decodes_canonically_or_codec_error(data)


# Random sequences of MessagePack-looking tokens reach deeper into the parser than uniform bytes do.
_TOKENS = st.sampled_from([
    b"\x90", b"\x91", b"\x92", b"\x80", b"\x81", b"\x82", b"\xa1a", b"\xa1b", b"\xa0", b"\xc0", b"\xc2", b"\xc3",
    b"\x00", b"\x7f", b"\xff", b"\xcc\x80", b"\xd0\x05", b"\xc4\x01x", b"\xc4\x00", b"\xd9\x01a", b"\xdc\x00\x01",
    b"\xde\x00\x01", b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", b"\xd4\x01\x00", b"\xc1", b"\xdd\xff\xff\xff\xff",
    b"\xa2\xed\xa0", b"\x97", b"\x9b", b"\xc4\x20" + bytes(32), b"\xc4\x14" + bytes(20), b"\xabqilian-test",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKENS, min_size=1, max_size=16).map(b"".join))
def test_token_soup_decodes_canonically_or_raises_codec_error(data: bytes) -> None:
    _decodes_canonically_or_codec_error(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(transactions))
def test_mutated_transactions_decode_canonically_or_raise_codec_error(data: bytes) -> None:
    _decodes_canonically_or_codec_error(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(headers))
def test_mutated_headers_decode_canonically_or_raise_codec_error(data: bytes) -> None:
    _decodes_canonically_or_codec_error(data)


# -- non-canonical and out-of-set input -----------------------------------------------------------------------------


@FAST
@given(st.dictionaries(keys, scalars, min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_unsorted_map_keys_are_refused(d: dict[str, Any], rnd: Any) -> None:
    pairs = sorted(d.items(), key=lambda kv: kv[0].encode())
    shuffled = pairs[:]
    rnd.shuffle(shuffled)
    assume(shuffled != pairs)
    data = length_heads("map", len(d))[0] + b"".join(ref_encode(k) + ref_encode(v) for k, v in shuffled)
    with pytest.raises(CodecError):
        codec.decode(data)
    assert codec.decode(ref_encode(d)) == d


@FAST
@given(st.dictionaries(keys, scalars, min_size=1, max_size=6), st.data())
def test_duplicate_map_keys_are_refused(d: dict[str, Any], data: st.DataObject) -> None:
    pairs = sorted(d.items(), key=lambda kv: kv[0].encode())
    i = data.draw(st.integers(0, len(pairs) - 1))
    dup = (pairs[i][0], data.draw(scalars))
    pairs.insert(data.draw(st.integers(0, len(pairs))), dup)  # sorted or not, a key appears twice
    encoded = length_heads("map", len(pairs))[0] + b"".join(ref_encode(k) + ref_encode(v) for k, v in pairs)
    with pytest.raises(CodecError):
        codec.decode(encoded)


@FAST
@given(values, st.binary(min_size=1, max_size=16))
def test_trailing_bytes_are_refused(v: Any, tail: bytes) -> None:
    assume(depth(v) <= MAX_DEPTH)
    with pytest.raises(CodecError):
        codec.decode(codec.encode(v) + tail)


@FAST
@given(st.one_of(st.binary(min_size=4, max_size=4).map(lambda b: b"\xca" + b),
                 st.binary(min_size=8, max_size=8).map(lambda b: b"\xcb" + b)),
       st.sampled_from([(b"", b""), (b"\x91", b""), (b"\x81\xa1a", b""), (b"\x92", b"\xc0")]))
def test_floats_are_refused(float_bytes: bytes, around: tuple[bytes, bytes]) -> None:
    with pytest.raises(CodecError):
        codec.decode(around[0] + float_bytes + around[1])
    body = core.TxBody("c", b"k", 1, 1, "kv", "put", ()).encode()
    with pytest.raises(CodecError):  # a float inside a structure's "any" field
        core.TxBody.decode(body[:-1] + b"\x91" + float_bytes)


@FAST
@given(st.sampled_from([(0xD4, 1), (0xD5, 2), (0xD6, 4), (0xD7, 8), (0xD8, 16), (0xC7, None), (0xC8, None),
                        (0xC9, None)]),
       st.integers(-128, 127), st.binary(max_size=20))
def test_extension_types_are_refused(head: tuple[int, int | None], ext_type: int, payload: bytes) -> None:
    tag, fixed = head
    if fixed is not None:
        payload = (payload + bytes(fixed))[:fixed]
        data = bytes([tag]) + ext_type.to_bytes(1, "big", signed=True) + payload
    else:
        size = {0xC7: 1, 0xC8: 2, 0xC9: 4}[tag]
        data = bytes([tag]) + len(payload).to_bytes(size, "big") + ext_type.to_bytes(1, "big", signed=True) + payload
    for wrapped in (data, b"\x91" + data, b"\x81\xa1a" + data):
        with pytest.raises(CodecError):
            codec.decode(wrapped)


@FAST
@given(st.binary(min_size=1, max_size=40))
def test_text_that_is_not_utf8_is_refused(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        raw = raw + b"\xff"  # 0xff never occurs in UTF-8
    for head in length_heads("str", len(raw)):
        with pytest.raises(CodecError):
            codec.decode(head + raw)


@pytest.mark.parametrize("utf8", [b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
                                  b"\xf8\x88\x80\x80\x80", b"\x80", b"\xc3"])
def test_overlong_surrogate_and_out_of_range_utf8_is_refused(utf8: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(bytes([0xA0 | len(utf8)]) + utf8)


@pytest.mark.parametrize("key", [b"\xc4\x01a", b"\x01", b"\xff", b"\xc0", b"\xc2", b"\xc3", b"\x90", b"\x80",
                                 b"\xcd\x01\x00", b"\xcb" + bytes(8)])
def test_map_keys_other_than_text_are_refused(key: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(b"\x81" + key + b"\xc0")


@pytest.mark.parametrize("as_map", [False, True])
def test_nesting_limit(as_map: bool) -> None:
    """A value may sit at depth MAX_DEPTH (the top value is at depth 0), not deeper."""
    ok_scalar = nest(MAX_DEPTH, 0, as_map)
    ok_empty = nest(MAX_DEPTH, {} if as_map else [], as_map)  # an empty container at depth 32 holds nothing deeper
    assert codec.decode(codec.encode(ok_scalar)) == ok_scalar
    assert codec.decode(codec.encode(ok_empty)) == ok_empty
    for too_deep in (nest(MAX_DEPTH + 1, 0, as_map), nest(MAX_DEPTH + 1, [[]], as_map)):
        with pytest.raises(CodecError):
            codec.check_value(too_deep)
        with pytest.raises(CodecError):
            codec.encode(too_deep)
        with pytest.raises(CodecError):
            codec.decode(ref_encode(too_deep))
    for levels in (300, 10_000, 200_000):  # hostile depth never escapes as RecursionError or a crash
        with pytest.raises(CodecError):
            codec.decode(b"\x91" * levels + b"\xc0")
        with pytest.raises(CodecError):
            core.Transaction.decode(b"\x91" * levels + b"\xc0")


def test_any_fields_count_depth_from_the_field() -> None:
    body = core.TxBody("c", b"k", 1, 1, "kv", "put", (nest(MAX_DEPTH, 1),))
    assert core.TxBody.decode(body.encode()) == body
    deep = dataclasses.replace(body, args=(nest(MAX_DEPTH + 1, 1),))
    with pytest.raises(CodecError, match=r"TxBody\.args\[0\]"):
        core.TxBody.decode(deep.encode())
    # The structure as a whole is deeper than MAX_DEPTH (spec §2): valid as a Block, not as a plain value.
    header = core.BlockHeader(1, "c", 1, 0, b"", b"", bytes(32), 1, bytes(32), bytes(32), bytes(32), bytes(32),
                              bytes(20), bytes(32))
    block = core.Block(header, (core.Transaction(body, b"s"),), None)
    data = block.encode()
    assert depth(block.to_wire()) == 5 + MAX_DEPTH
    assert core.Block.decode(data) == block
    with pytest.raises(CodecError, match="nested deeper"):
        codec.decode(data)


@FAST
@given(values)
def test_input_over_max_bytes_is_refused(v: Any) -> None:
    assume(depth(v) <= MAX_DEPTH)
    data = codec.encode(v)
    assert same(codec.decode(data, max_bytes=len(data)), normalise(v))
    with pytest.raises(CodecError):
        codec.decode(data, max_bytes=len(data) - 1)
    with pytest.raises(CodecError):
        codec.decode_raw(data, max_bytes=len(data) - 1)


def test_default_size_limit_and_empty_input() -> None:
    big = b"\xc6" + (codec.MAX_MESSAGE_BYTES - 4).to_bytes(4, "big") + bytes(codec.MAX_MESSAGE_BYTES - 4)
    assert len(big) == codec.MAX_MESSAGE_BYTES + 1
    with pytest.raises(CodecError, match="over the limit"):
        codec.decode(big)
    with pytest.raises(CodecError, match="over the limit"):
        core.Transaction.decode(big)
    for empty in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(CodecError):
            codec.decode(empty)
    for not_bytes in ("c0", 0, None, [0xC0]):
        with pytest.raises(CodecError):
            codec.decode(not_bytes)  # type: ignore[arg-type]


# -- check_value ------------------------------------------------------------------------------------------------


_BAD_LEAVES = st.one_of(
    st.floats(allow_nan=True),
    st.sets(st.integers(0, 3), max_size=3),
    st.frozensets(st.integers(0, 3), max_size=3),
    st.binary(max_size=4).map(bytearray),
    st.integers(min_value=MAX_INT + 1),
    st.integers(max_value=MIN_INT - 1),
    st.just(object()),
    st.complex_numbers(allow_nan=False),
)
_BAD_KEYS = st.one_of(st.integers(), st.binary(max_size=4), st.none(), st.booleans(), st.tuples(st.integers()))


@FAST
@given(_BAD_LEAVES, st.integers(0, 3), st.booleans())
def test_check_value_refuses_values_outside_the_set(bad: Any, levels: int, as_map: bool) -> None:
    v = nest(levels, bad, as_map)
    with pytest.raises(CodecError):
        codec.check_value(v)
    with pytest.raises(CodecError):
        codec.encode(v)


@FAST
@given(_BAD_KEYS, st.integers(0, 3))
def test_check_value_refuses_non_text_keys(key: Any, levels: int) -> None:
    v = nest(levels, {key: 1})
    with pytest.raises(CodecError):
        codec.check_value(v)
    with pytest.raises(CodecError):
        codec.encode(v)


def test_encode_refuses_unencodable_text_with_codec_error() -> None:
    for v in ("\ud800", {"\udc00": 1}, ["ok", "\udfff"]):
        with pytest.raises(CodecError):
            codec.encode(v)


# -- structure decoders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", STRUCTURES, ids=lambda c: c.__name__)
@FEW
@given(data=st.data())
def test_structures_round_trip(cls: type[Wire], data: st.DataObject) -> None:
    obj = data.draw(structure(cls))
    encoded = obj.encode()
    assert encoded == ref_encode(obj.to_wire())
    back = cls.decode(encoded)
    assert back.encode() == encoded
    assert back == obj  # list fields are tuples here, as the decoder makes them


def test_tx_body_with_list_args_equals_its_decoded_self() -> None:
    body = core.TxBody("c", b"k", 1, 1, "kv", "put", [b"key", "value"])  # a list, as TxBody documents
    assert core.TxBody.decode(body.encode()) == body


def _wrong_values(kind: Kind) -> list[Any]:
    """Values a field of ``kind`` must refuse (all encodable, so the refusal comes from the field check)."""
    if isinstance(kind, UInt):
        return [-1, "1", b"\x01", True, None, [], 1.5]
    if isinstance(kind, Bool):
        return [0, 1, None, "true", b""]
    if isinstance(kind, Bytes):
        wrong: list[Any] = ["ab", 1, None, [], False]
        if kind.size is not None:
            wrong += [bytes(kind.size + 1)] + ([bytes(kind.size - 1)] if kind.size > 1 else [])
            if not kind.allow_empty:
                wrong.append(b"")
        else:
            wrong.append(bytes(kind.max_size + 1))
        return wrong
    if isinstance(kind, Text):
        return [b"x", 1, None, [], "a" * (kind.max_len + 1)]
    if isinstance(kind, AnyValue):
        return [1.5, [1.5], {"a": 2.5}, nest(MAX_DEPTH + 1, 0)]
    if isinstance(kind, Optional):
        return [w for w in _wrong_values(kind.inner) if w is not None]
    if isinstance(kind, ListOf):
        inner_bad = [w for w in _wrong_values(kind.inner) if not isinstance(w, list | tuple)][:2]
        return [1, "x", b"", None, {}, *[[w] for w in inner_bad]]
    if isinstance(kind, Struct):
        return [1, "x", b"", None, {}, [], [None]]
    raise AssertionError(kind)


@pytest.mark.parametrize("cls", STRUCTURES, ids=lambda c: c.__name__)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_structure_decoders_name_the_bad_field(cls: type[Wire], data: st.DataObject) -> None:
    wire = data.draw(structure(cls)).to_wire()
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    for i, (kind, f) in enumerate(zip(cls.WIRE, fields, strict=True)):
        for bad in _wrong_values(kind):
            broken = [*wire[:i], bad, *wire[i + 1 :]]
            with pytest.raises(CodecError) as info:
                cls.decode(codec.encode_trusted(broken))
            assert f"{cls.__name__}.{f.name}" in str(info.value), (f.name, bad, str(info.value))


@pytest.mark.parametrize("cls", STRUCTURES, ids=lambda c: c.__name__)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_structure_decoders_refuse_wrong_field_counts(cls: type[Wire], data: st.DataObject) -> None:
    wire = data.draw(structure(cls)).to_wire()
    n = len(wire)
    for broken in (wire[:-1], [*wire, None], [*wire, *wire], []):
        with pytest.raises(CodecError, match=rf"^{cls.__name__}: expected {n} fields, got {len(broken)}$"):
            cls.decode(codec.encode_trusted(broken))
    for not_array in (None, 0, "x", b"x", {"a": 1}):
        with pytest.raises(CodecError, match=rf"^{cls.__name__}: expected an array of {n} fields"):
            cls.decode(codec.encode_trusted(not_array))


def test_nested_structure_errors_name_the_path() -> None:
    tx = core.Transaction(core.TxBody("c", b"k", 1, 1, "kv", "put", ()), b"s")
    wire = tx.to_wire()
    wire[0][2] = "one"
    with pytest.raises(CodecError, match=r"^Transaction\.body\.nonce: expected an unsigned integer"):
        core.Transaction.decode(codec.encode_trusted(wire))
    wire[0][2] = 1
    wire[0][6] = [1, 2.5]
    with pytest.raises(CodecError, match=r"^Transaction\.body\.args\[1\]: "):
        core.Transaction.decode(codec.encode_trusted(wire))
    commit = core.Commit(1, 0, bytes(32), (core.CommitSig(bytes(20), b"s"), core.CommitSig(bytes(20), b"s")))
    cwire = commit.to_wire()
    cwire[3][1][0] = bytes(19)
    with pytest.raises(CodecError, match=r"^Commit\.signatures\[1\]\.validator: expected 20 bytes, got 19$"):
        core.Commit.decode(codec.encode_trusted(cwire))


def test_list_field_item_limits() -> None:
    body = core.TxBody("c", b"k", 1, 1, "kv", "put", tuple(range(64)))
    assert core.TxBody.decode(body.encode()) == body
    with pytest.raises(CodecError, match=r"^TxBody\.args: 65 items is over the limit of 64$"):
        core.TxBody.decode(dataclasses.replace(body, args=tuple(range(65))).encode())
    member = core.Member("m", b"k", tuple("abcdefghi"))
    with pytest.raises(CodecError, match=r"^Member\.roles: 9 items"):
        core.Member.decode(member.encode())


def test_structure_decode_refuses_non_canonical_bytes() -> None:
    body = core.TxBody("c", b"k", 5, 1, "kv", "put", ())
    data = body.encode()
    nonce_at = data.index(b"\x05\x01\xa2kv")
    longer = data[:nonce_at] + b"\xcc\x05" + data[nonce_at + 1 :]  # nonce 5 as uint8
    with pytest.raises(CodecError, match="non-canonical"):
        core.TxBody.decode(longer)
    with pytest.raises(CodecError):
        core.TxBody.decode(data + b"\x00")


@given(transactions | mutated(transactions))
def test_the_tx_hash_from_raw_bytes_is_the_tx_hash(x: Any) -> None:
    """Admission hashes a transaction's body as a slice of the bytes it decoded from; for every transaction that
    decodes (any signature length, mutated inputs included) that equals hashing the re-encoded body."""
    from qilian.crypto import get_suite

    raw = x if isinstance(x, bytes) else x.encode()
    try:
        tx = core.Transaction.decode(raw)
    except CodecError:
        return
    for name in ("ed25519", "sm2"):
        suite = get_suite(name)
        assert core.compute_tx_hash_of_raw(suite, raw, tx) == core.compute_tx_hash(suite, tx.body)


@given(values, st.binary(max_size=8), st.binary(max_size=8), st.floats(allow_nan=False))
def test_get_item_end_finds_exactly_one_items_end(value: Any, before: bytes, after: bytes, f: float) -> None:
    """``get_item_end`` skips one whole item wherever it sits, whatever follows (floats included, which decode
    refuses but a skip must still measure); every proper prefix of an item is refused as truncated."""
    for v in (value, [value, f]):
        enc = codec.encode_trusted(v)
        assert codec.get_item_end(before + enc + after, len(before)) == len(before) + len(enc)
        for cut in {0, 1, len(enc) // 2, len(enc) - 1} - {len(enc)}:
            with pytest.raises(CodecError):
                codec.get_item_end(enc[:cut], 0)


@pytest.mark.parametrize("head", [*range(0xC1, 0xC2), *range(0xC7, 0xCA), *range(0xD4, 0xD9)])
def test_get_item_end_refuses_headers_outside_the_format(head: int) -> None:
    """Extension types (and the never-used 0xc1) are no items of the codec."""
    with pytest.raises(CodecError):
        codec.get_item_end(bytes([head, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 0)


@given(st.lists(values, max_size=40))
def test_a_list_of_encoded_items_is_the_encoding_of_the_list(items: list[Any]) -> None:
    """Execution builds a block's stored receipts from each receipt's own bytes; they must be the very bytes of
    encoding the list (the receipts root, ``verify-ledger`` and every reader compare against those)."""
    assert codec.encode_array_of_encoded([codec.encode_trusted(v) for v in items]) == codec.encode_trusted(items)


@pytest.mark.parametrize("n", [0, 15, 16, 65_535, 65_536])
def test_a_list_of_encoded_items_uses_the_canonical_header_at_each_size_boundary(n: int) -> None:
    items = [i % 200 for i in range(n)]
    assert codec.encode_array_of_encoded([codec.encode_trusted(v) for v in items]) == codec.encode_trusted(items)
