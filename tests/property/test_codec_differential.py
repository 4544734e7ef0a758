"""The codec's decoders against a frozen copy of the implementation they replaced (issue 16).

Decoding used to walk every decoded value in Python (``check_value``) to refuse floats and deep nesting; now the
canonical bytes usually prove there is neither (``is_plain_encoding``) and the walk runs only when they do not.
The set of accepted byte strings is consensus: every node must accept and refuse exactly what it did before. So
the pre-change code is kept below, verbatim in behaviour, as the oracle, and both are run on the same inputs:
thousands of valid values (boundary integers, lengths around every header change, nesting around ``MAX_DEPTH``,
floats and container-heavy values that defeat the byte proof) and malformed bytes (flips, truncations, appended
bytes, non-minimal forms, floats, extension types, non-text keys, deep nesting). They must agree on acceptance, on
the decoded value (types included) and on the error message.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import ormsgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qilian.types import codec, core
from qilian.types.codec import MAX_DEPTH, MAX_INT, MAX_MESSAGE_BYTES, MIN_INT, CodecError
from qilian.types.struct import AnyValue, ListOf, Optional, Struct, Wire

# -- the oracle: the decoders as they were before issue 16 -----------------------------------------------------------


def old_check_value(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise CodecError(f"value nested deeper than {MAX_DEPTH}")
    t = type(value)
    if value is None or t is bool or t is bytes or t is str:
        return
    if t is int:
        if not MIN_INT <= value <= MAX_INT:
            raise CodecError(f"integer {value} outside [-2**63, 2**64-1]")
        return
    if t is list or t is tuple:
        for item in value:
            old_check_value(item, depth + 1)
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise CodecError(f"map key must be text, got {type(k).__name__}")
            old_check_value(v, depth + 1)
        return
    raise CodecError(f"type {t.__name__} cannot be encoded (allowed: None, bool, int, bytes, str, list, dict)")


def old_decode_raw(data: Any, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise CodecError(f"encoded object is {len(data)} bytes, over the limit of {max_bytes}")
    if not data:
        raise CodecError("empty input")
    try:
        obj = ormsgpack.unpackb(data)
    except (ormsgpack.MsgpackDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise CodecError(f"malformed encoding: {exc}") from None
    try:
        again = ormsgpack.packb(obj, option=ormsgpack.OPT_SORT_KEYS)
    except (TypeError, ormsgpack.MsgpackEncodeError) as exc:
        raise CodecError(f"value cannot be re-encoded: {exc}") from None
    if again != data:
        raise CodecError("non-canonical encoding (decode→encode gives different bytes)")
    return obj


def old_decode(data: Any, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    obj = old_decode_raw(data, max_bytes=max_bytes)
    old_check_value(obj)
    return obj


def _old_kind_from_wire(kind: Any, obj: Any, where: str) -> Any:
    """The field kinds' decoders as they were; leaf kinds (UInt, Bytes, Text, Bool) did not change."""
    if isinstance(kind, AnyValue):
        try:
            old_check_value(obj)
        except CodecError as exc:
            raise CodecError(f"{where}: {exc}") from None
        return obj
    if isinstance(kind, Struct):
        return old_from_wire(kind.cls, obj, where)
    if isinstance(kind, Optional):
        return None if obj is None else _old_kind_from_wire(kind.inner, obj, where)
    if isinstance(kind, ListOf):
        if type(obj) is not list:
            raise CodecError(f"{where}: expected a list, got {type(obj).__name__}")
        if len(obj) > kind.max_items:
            raise CodecError(f"{where}: {len(obj)} items is over the limit of {kind.max_items}")
        return tuple(_old_kind_from_wire(kind.inner, v, f"{where}[{i}]") for i, v in enumerate(obj))
    return kind.from_wire(obj, where)


def _old_generic_from_wire(cls: Any, obj: Any, where: str) -> Any:
    import dataclasses

    where = where or cls.__name__
    fields = dataclasses.fields(cls)
    if type(obj) is not list:
        raise CodecError(f"{where}: expected an array of {len(fields)} fields, got {type(obj).__name__}")
    if len(obj) != len(fields):
        raise CodecError(f"{where}: expected {len(fields)} fields, got {len(obj)}")
    return cls(*[_old_kind_from_wire(k, o, f"{where}.{f.name}") for k, f, o in zip(cls.WIRE, fields, obj, strict=True)])


def old_from_wire(cls: Any, obj: Any, where: str = "") -> Any:
    if cls is core.Transaction:  # the inline fast path Transaction.from_wire had
        if type(obj) is list and len(obj) == 2:
            b, sig = obj
            if type(b) is list and len(b) == 7 and type(sig) is bytes and len(sig) <= core.MAX_SIGNATURE:
                chain_id, sender, nonce, exp, to, method, args = b
                if (
                    type(chain_id) is str and len(chain_id) <= 64
                    and type(sender) is bytes and len(sender) <= core.MAX_PUBLIC_KEY
                    and type(nonce) is int and 0 <= nonce <= MAX_INT
                    and type(exp) is int and 0 <= exp <= MAX_INT
                    and type(to) is str and len(to) <= 128
                    and type(method) is str and len(method) <= 128
                    and type(args) is list and len(args) <= 64
                ):
                    try:
                        for a in args:
                            old_check_value(a)
                    except CodecError:
                        pass
                    else:
                        return cls(core.TxBody(chain_id, sender, nonce, exp, to, method, tuple(args)), sig)
    return _old_generic_from_wire(cls, obj, where)


def old_struct_decode(cls: Any, data: Any, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    return old_from_wire(cls, old_decode_raw(data, max_bytes=max_bytes))


# -- comparing ---------------------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal with identical types all the way down (True is not 1; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except CodecError as exc:
        return "error", str(exc)


def assert_agree(new: Callable[[], Any], old: Callable[[], Any]) -> str:
    """Both accept with the same value or both refuse with the same message; returns which."""
    n, o = outcome(new), outcome(old)
    assert n[0] == o[0], (n, o)
    if n[0] == "ok":
        assert same(n[1], o[1]) or n[1] == o[1], (n, o)
    else:
        assert n[1] == o[1], (n, o)
    return n[0]


STRUCTURES: tuple[type[Wire], ...] = (core.Transaction, core.TxBody, core.Block, core.Receipt, core.Event)


def check_all_decoders(data: Any) -> str:
    """Every decoder that took the old path, old against new, on one input; returns the plain decoder's verdict."""
    verdict = assert_agree(lambda: codec.decode(data), lambda: old_decode(data))
    assert_agree(lambda: codec.decode_raw(data), lambda: old_decode_raw(data))
    for cls in STRUCTURES:
        assert_agree(lambda cls=cls: cls.decode(data), lambda cls=cls: old_struct_decode(cls, data))
    return verdict


def check_value_checks(value: Any) -> None:
    """A decoded value's parts, checked the new way and the old way."""
    assert_agree(lambda: codec.check_decoded_value(value), lambda: old_check_value(value))
    if type(value) is list:
        for v in value:
            check_value_checks(v)
    elif type(value) is dict:
        for v in value.values():
            check_value_checks(v)


# -- inputs ------------------------------------------------------------------------------------------------------

BOUNDARY_INTS = sorted({
    x for b in (0, 31, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, -1, -32,
                -33, -128, -129, -32768, -32769, -(2**31), -(2**63))
    for x in (b - 1, b, b + 1)
})
"""Integers on both sides of every header change and of the allowed range (some outside it: refused)."""
LENGTHS = (0, 1, 15, 16, 17, 30, 31, 32, 33, 254, 255, 256, 257, 65534, 65535, 65536, 65537)
"""Lengths on both sides of every str/bin/array/map header change."""
FLOATS = (0.0, -0.0, 1.0, 0.5, -2.5, 1e300, float("inf"), float("nan"), 203.0)


def random_text(rnd: random.Random, n: int) -> str:
    if rnd.random() < 0.7 or n > 300:
        return rnd.choice(["x", "键", "é", "\U0001f600", "\u00cb", "\x7f"]) * n if n else ""
    return "".join(rnd.choice("ab\u00cb\u00e9\u4e2d\u00df\U0001f600") for _ in range(n))


def random_scalar(rnd: random.Random, floats: bool) -> Any:
    r = rnd.random()
    if floats and r < 0.05:
        return rnd.choice(FLOATS)
    if r < 0.3:
        return rnd.choice(BOUNDARY_INTS) if rnd.random() < 0.7 else rnd.randint(MIN_INT, MAX_INT)
    if r < 0.5:
        n = rnd.choice(LENGTHS) if rnd.random() < 0.2 else rnd.randint(0, 40)
        return rnd.randbytes(n) if rnd.random() < 0.5 else bytes([rnd.choice([0xCB, 0x90, 0xDC, 0x81])]) * n
    if r < 0.8:
        return random_text(rnd, rnd.choice(LENGTHS) if rnd.random() < 0.2 else rnd.randint(0, 40))
    return rnd.choice([None, True, False])


def random_value(rnd: random.Random, floats: bool, budget: int = 40, depth: int = 0) -> Any:
    """A random value: wide, narrow, shallow or deep (past MAX_DEPTH sometimes), floats only if asked."""
    r = rnd.random()
    if depth > 40 or budget <= 0 or r < 0.35:
        return random_scalar(rnd, floats)
    if r < 0.45:  # a long chain: reaches and passes MAX_DEPTH
        levels = rnd.choice([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, rnd.randint(1, 40)])
        leaf = random_scalar(rnd, floats) if rnd.random() < 0.7 else rnd.choice([[], {}])
        for _ in range(levels):
            leaf = {random_text(rnd, rnd.randint(0, 3)): leaf} if rnd.random() < 0.5 else [leaf]
        return leaf
    n = rnd.choice([0, 1, 2, 3, 5, 15, 16, 17]) if rnd.random() < 0.9 else rnd.choice([40, 300])
    items = [random_value(rnd, floats, budget // max(n, 1) - 1, depth + 1) for _ in range(n)]
    if rnd.random() < 0.5:
        return items
    return {random_text(rnd, rnd.randint(0, 6)) + str(i % 7): v for i, v in enumerate(items)}


def pack(value: Any) -> bytes | None:
    """Canonical-looking bytes of any value (floats included), or None past ormsgpack's nesting limit."""
    try:
        return ormsgpack.packb(value, option=ormsgpack.OPT_SORT_KEYS)
    except (TypeError, ormsgpack.MsgpackEncodeError):
        return None


def mutate(rnd: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.choice(["flip", "set", "truncate", "append", "insert", "delete"])
        pos = rnd.randint(0, max(len(out) - 1, 0))
        if op == "flip" and out:
            out[pos] ^= 1 << rnd.randint(0, 7)
        elif op == "set" and out:
            out[pos] = rnd.choice([rnd.randint(0, 255), 0xCB, 0xCA, 0xD4, 0xC7, 0xC1, 0xC0, 0x90, 0xDC, 0xDE])
        elif op == "truncate":
            del out[pos:]
        elif op == "append":
            out += rnd.randbytes(rnd.randint(1, 9))
        elif op == "insert":
            out[pos:pos] = rnd.choice([rnd.randbytes(rnd.randint(1, 4)), b"\x91", b"\x81\xa1a", b"\xcb" + bytes(8)])
        elif op == "delete" and out:
            del out[pos : pos + rnd.randint(1, 4)]
    return bytes(out)


def tx_bytes(args: list[Any], sig: bytes = b"s" * 64, sender: bytes = b"k" * 32) -> bytes | None:
    return pack([["chain", sender, 7, 100, "trace", "ship", args], sig])


def epcis_ship(item: str) -> dict[str, Any]:
    """The trace bench's ship event (qilian.bench.network.build_call)."""
    return {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": "2025-05-01T08:00:00+08:00",
            "epcList": [item], "destinationList": [{"type": "owning_party", "destination": "org2"}]}


# -- the differential tests ----------------------------------------------------------------------------------------


def test_thousands_of_random_values_and_their_mutations_agree() -> None:
    """Seeded: valid values (and values with floats or too deep), alone and as transaction arguments; and three
    mutations of each encoding."""
    rnd = random.Random(16)
    verdicts: dict[str, int] = {"ok": 0, "error": 0}
    for i in range(2000):
        value = random_value(rnd, floats=i % 3 == 0)
        data = pack(value)
        if data is None:
            continue
        verdicts[check_all_decoders(data)] += 1
        try:
            check_value_checks(ormsgpack.unpackb(data))
        except (ValueError, TypeError):
            pass
        as_tx = tx_bytes([value] if i % 2 else [value, i, "x"], sig=rnd.randbytes(rnd.choice([0, 64, 72])),
                         sender=rnd.randbytes(rnd.choice([32, 65])))
        if as_tx is not None:
            check_all_decoders(as_tx)
        for _ in range(3):
            check_all_decoders(mutate(rnd, data))
            if as_tx is not None:
                check_all_decoders(mutate(rnd, as_tx))
    assert verdicts["ok"] > 700 and verdicts["error"] > 200, verdicts  # both sides well exercised


def test_the_trace_bench_event_agrees_with_every_one_byte_change() -> None:
    """The workload issue 16 is about: its ship transaction, and every byte of it set to each interesting value."""
    rnd = random.Random(1616)
    data = tx_bytes([epcis_ship("urn:bench:t1:0")], sig=rnd.randbytes(64), sender=rnd.randbytes(32))
    assert data is not None
    assert check_all_decoders(data) == "ok"
    assert core.Transaction.decode(data).body.args[0]["epcList"] == ["urn:bench:t1:0"]
    for pos in range(len(data)):
        for b in (0xCB, 0xCA, 0xD4, 0xC7, 0xC1, 0x90, 0x80, 0xDC, 0xDE, 0xC0, 0x00, 0xFF, data[pos] ^ 1):
            check_all_decoders(data[:pos] + bytes([b]) + data[pos + 1 :])
        check_all_decoders(data[:pos])
        check_all_decoders(data[:pos] + b"\xcb" + struct.pack(">d", 1.5) + data[pos:])


@pytest.mark.parametrize("levels", range(MAX_DEPTH - 3, MAX_DEPTH + 4))
@pytest.mark.parametrize("shape", ["list", "map", "mixed"])
@pytest.mark.parametrize("leaf", [0, [], {}, 1.5, "\u00cb" * 40, b"\xcb"])
def test_nesting_around_the_limit_agrees(levels: int, shape: str, leaf: Any) -> None:
    value = leaf
    for i in range(levels):
        as_map = shape == "map" or (shape == "mixed" and i % 2 == 0)
        value = {"k": value} if as_map else [value]
    data = pack(value)
    assert data is not None
    check_all_decoders(data)
    check_all_decoders(tx_bytes([value]))
    check_all_decoders(tx_bytes([1, [[value]]]))
    wide = pack([value, [[] for _ in range(40)], "\x9c" * 50])  # many container-like bytes, no deep nesting
    assert wide is not None
    check_all_decoders(wide)


def test_hand_made_non_canonical_and_forbidden_forms_agree() -> None:
    """Non-minimal integers and lengths, unsorted and duplicate keys, floats, extension types, non-text keys, c1,
    trailing bytes, size limits — alone and inside a transaction argument."""
    cases: list[bytes] = []
    for v in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, -1, -32, -33, -129, MIN_INT, MAX_INT):
        for tag, size, signed in ((0xCC, 1, False), (0xCD, 2, False), (0xCE, 4, False), (0xCF, 8, False),
                                  (0xD0, 1, True), (0xD1, 2, True), (0xD2, 4, True), (0xD3, 8, True)):
            try:
                cases.append(bytes([tag]) + v.to_bytes(size, "big", signed=signed))
            except OverflowError:
                pass
    for n in (0, 5, 31, 32, 255, 256):
        s = b"a" * n
        cases += [bytes([0xD9, n]) + s if n < 256 else b"", b"\xda" + n.to_bytes(2, "big") + s,
                  b"\xdb" + n.to_bytes(4, "big") + s, b"\xc5" + n.to_bytes(2, "big") + s]
    for n in (0, 3, 15, 16):
        cases += [b"\xdc" + n.to_bytes(2, "big") + b"\x00" * n, b"\xdd" + n.to_bytes(4, "big") + b"\x00" * n,
                  b"\xde" + n.to_bytes(2, "big") + b"".join(b"\xa3k" + bytes([48 + i // 10, 48 + i % 10]) + b"\x00"
                                                            for i in range(n))]
    cases += [b"\x82\xa1b\x01\xa1a\x02", b"\x82\xa1a\x01\xa1a\x02", b"\x82\xa2ab\x01\xa1a\x02"]
    cases += [b"\xcb" + struct.pack(">d", f) for f in FLOATS] + [b"\xca" + struct.pack(">f", 1.5)]
    cases += [b"\xd4\x01\x00", b"\xd5\x01\x00\x00", b"\xd6\xff" + bytes(4), b"\xd7\xff" + bytes(8),
              b"\xd8\x01" + bytes(16), b"\xc7\x01\x05\x00", b"\xc8\x00\x01\x05\x00", b"\xc9\x00\x00\x00\x01\x05\x00"]
    cases += [b"\x81" + k + b"\xc0" for k in (b"\xc0", b"\x01", b"\xc4\x01a", b"\xc3", b"\x90", b"\x80",
                                               b"\xcb" + bytes(8))]
    cases += [b"\xc1", b"\x01\x01", b"\x91", b"", b"\xa3\xed\xa0\x80", b"\x91" * (MAX_DEPTH + 1) + b"\x00",
              b"\x91" * 300 + b"\x00", b"\x81\xa1k" * (MAX_DEPTH + 1) + b"\x00"]
    for c in cases:
        check_all_decoders(c)
        for wrapped in (b"\x91" + c, b"\x81\xa1a" + c, b"\x92" + c + b"\xc0"):
            check_all_decoders(wrapped)
        tx = tx_bytes([0])
        assert tx is not None and tx.endswith(b"\x00\xc4\x40" + b"s" * 64)
        check_all_decoders(tx[: -len(b"\x00\xc4\x40" + b"s" * 64)] + c + b"\xc4\x40" + b"s" * 64)  # as the argument
    data = pack({"a": [1, 2, "x" * 100]})
    assert data is not None
    for limit in (len(data) - 1, len(data), len(data) + 1):
        assert_agree(lambda limit=limit: codec.decode(data, max_bytes=limit),
                     lambda limit=limit: old_decode(data, max_bytes=limit))
    for wrapper in (bytearray, memoryview):
        check_all_decoders(wrapper(data))
        check_all_decoders(wrapper(b"\x91\xcb" + bytes(8)))
    for not_bytes in ("c0", 0, None, [0xC0]):
        assert_agree(lambda nb=not_bytes: codec.decode(nb), lambda nb=not_bytes: old_decode(nb))


def test_blocks_and_receipts_agree() -> None:
    """Structures that hold transactions and ``any`` fields deeper down go through the same checks."""
    rnd = random.Random(3)
    header = core.BlockHeader(2, "c", 1, 0, b"", b"", bytes(32), 1, bytes(32), bytes(32), bytes(32), bytes(32),
                              bytes(20), bytes(32))
    for _ in range(150):
        txs = [core.Transaction(core.TxBody("c", rnd.randbytes(32), 1, 1, "trace", "ship", (epcis_ship("i"),)),
                                rnd.randbytes(64))]
        arg = random_value(rnd, floats=True)
        raw_tx = tx_bytes([arg])
        if raw_tx is None:
            continue
        wire_tx = ormsgpack.unpackb(raw_tx)
        block = pack([header.to_wire(), [t.to_wire() for t in txs] + [wire_tx], None, []])
        receipt = pack([bytes(32), 0, "", 1, arg, [["trace", "shipped", arg]]])
        for data in (block, receipt):
            if data is not None:
                check_all_decoders(data)
                for _ in range(3):
                    check_all_decoders(mutate(rnd, data))


def test_decoded_value_check_matches_the_walk_on_other_python_values() -> None:
    """check_decoded_value is for decoded values, but whatever ormsgpack would refuse to re-encode (tuples,
    subclasses, non-text keys, huge integers, cycles) still gets check_value's verdict and message."""

    class Text(str):
        pass

    class Number(int):
        pass

    loop: list[Any] = []
    loop.append(loop)
    for value in ([(1, 2)], {"a": (1,)}, [Text("x")], {"a": Number(3)}, {1: 2}, {"a": {None: 1}}, [2**64],
                  [MIN_INT - 1], [{1.5: 1}], loop, [[[1.5]]], [{"a": [2**70]}], Text("x"), 2**64, 1.5, (1,),
                  [set()], [object()]):
        assert_agree(lambda v=value: codec.check_decoded_value(v), lambda v=value: old_check_value(v))


def test_a_structure_cannot_override_from_wire_alone() -> None:
    """Decoding goes through from_decoded: a structure whose own from_wire adds checks must give them to
    from_decoded too, or decoding would skip them; Wire refuses such a class when it is defined."""
    with pytest.raises(TypeError, match="from_decoded"):

        class Lopsided(Wire):
            WIRE = (AnyValue(),)

            @classmethod
            def from_wire(cls, obj: Any, where: str = "") -> Any:
                return super().from_wire(obj, where)


# Hypothesis on top of the seeded runs: it shrinks a disagreement to a small example.

_scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(BOUNDARY_INTS), st.integers(MIN_INT, MAX_INT),
                     st.binary(max_size=40), st.text(max_size=40), st.sampled_from(FLOATS),
                     st.sampled_from(LENGTHS).map(lambda n: "\u00cb" * n))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=6), c,
                                                                                      max_size=5), max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values, st.integers(0, MAX_DEPTH + 3), st.booleans())
def test_hypothesis_values_agree(value: Any, wrap: int, as_map: bool) -> None:
    for _ in range(wrap):
        value = {"w": value} if as_map else [value]
    data = pack(value)
    if data is None:
        return
    check_all_decoders(data)
    check_all_decoders(tx_bytes([value, "x"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values, st.randoms(use_true_random=False))
def test_hypothesis_mutations_agree(value: Any, rnd: random.Random) -> None:
    data = pack(value)
    if data is None:
        return
    check_all_decoders(mutate(rnd, data))
    tx = tx_bytes([value])
    if tx is not None:
        check_all_decoders(mutate(rnd, tx))


def test_the_library_facts_the_proof_rests_on() -> None:
    """is_plain_encoding assumes these of ormsgpack; an upgrade that changes one must fail here first."""
    for f in FLOATS:
        assert ormsgpack.packb(f)[0] == 0xCB
        assert ormsgpack.packb([f], option=codec._PROOF_PACK_OPTS)[1] == 0xCB
    for bad in (b"\xd4\x01\x00", b"\xc7\x01\x05\x00", b"\xd6\xff" + bytes(4), b"\x81\xc0\x01", b"\x81\x01\x01",
                b"\x81\xc4\x01a\x01", b"\x81\xcb" + bytes(8) + b"\x01", b"\x81\x90\x01"):
        with pytest.raises((ValueError, TypeError)):
            ormsgpack.unpackb(bad)
    assert type(ormsgpack.unpackb(b"\xca\x3f\xc0\x00\x00")) is float  # float 32 decodes …
    assert ormsgpack.packb(ormsgpack.unpackb(b"\xca\x3f\xc0\x00\x00"))[0] == 0xCB  # … and re-encodes as float 64
    for container in ([], {}, [0] * 16, {str(i): 0 for i in range(16)}, [0] * 70000, {str(i): 0 for i in range(70000)}):
        assert ormsgpack.packb(container)[0] in codec._CONTAINER_HEADS
    for other in (None, True, 0, -1, 2**64 - 1, MIN_INT, "", "x" * 40, b"", b"x" * 300):
        assert ormsgpack.packb(other)[0] not in codec._CONTAINER_HEADS
