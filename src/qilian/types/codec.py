"""The canonical codec: one byte encoding for everything Qilian hashes, signs, stores or sends.

The encoding is a strict subset of MessagePack (see docs/spec/encoding.md), chosen because every language has a
MessagePack library, so an SDK elsewhere needs only the restrictions below, not a new format:

* values are nil, booleans, integers in [-2**63, 2**64-1], byte strings (bin), UTF-8 text (str), arrays and maps;
* maps have text keys, sorted by their UTF-8 bytes, no duplicates;
* every item uses the shortest MessagePack form that holds it;
* no floats, no extension types, no trailing bytes.

Decoding enforces canonical form by re-encoding: ``encode(decode(b)) == b`` or the input is refused. That single
comparison catches non-minimal integers and lengths, unsorted or duplicated keys and trailing garbage, which is
why this module can lean on a fast C MessagePack library instead of a hand-written parser. The MessagePack library
itself refuses extension types, non-text map keys, invalid UTF-8 and integers outside the range; what is left to
refuse is float64 values (which re-encode identically) and nesting deeper than ``MAX_DEPTH``. A walk of the value
(:func:`check_value`) finds both, but costs a Python step per item; for decoded values the canonical bytes usually
prove there is neither (:func:`is_plain_encoding`), and the walk runs only when they do not.

Structures (transactions, headers, votes …) are encoded as arrays of their fields in declaration order; their
decoders in :mod:`qilian.types.core` check every field's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import ormsgpack

MAX_DEPTH: Final = 32
"""Deepest nesting of arrays/maps accepted in a value (a guard against stack exhaustion on hostile input)."""
MAX_INT: Final = 2**64 - 1
MIN_INT: Final = -(2**63)
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""No encoded object larger than this is ever decoded (blocks are capped far below it by consensus params)."""

Value = None | bool | int | bytes | str | list["Value"] | tuple["Value", ...] | dict[str, "Value"]
"""The values the codec carries: the same set contract arguments, results and events use."""

_PACK_OPTS: Final = ormsgpack.OPT_SORT_KEYS

_FLOAT64_HEAD: Final = 0xCB
"""The only header ormsgpack writes for a float (it never writes float 32): a float in a value puts this byte in its
encoding."""
_CONTAINER_HEADS: Final = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
"""Headers of maps and arrays (fixmap, fixarray, array 16/32, map 16/32): every container starts with one of them."""
_PROOF_PACK_OPTS: Final = (
    ormsgpack.OPT_PASSTHROUGH_SUBCLASS | ormsgpack.OPT_PASSTHROUGH_TUPLE | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME | ormsgpack.OPT_PASSTHROUGH_ENUM | ormsgpack.OPT_PASSTHROUGH_UUID
)
"""Re-encoding for :func:`check_decoded_value`: no key sorting (any order proves the same), and the types
:func:`check_value` refuses but ormsgpack would serialise are refused instead — a second line of defence should a
value that was never decoded reach it."""


class CodecError(ValueError):
    """Bytes that are not the canonical encoding of a value of the expected shape."""


def encode(value: Any) -> bytes:
    """Canonical bytes of ``value``; raises CodecError for values outside the codec's set (floats, sets …)."""
    check_value(value)
    return encode_trusted(value)


def encode_trusted(value: Any) -> bytes:
    """Canonical bytes of a value built by Qilian itself (skips the type walk; structures are typed)."""
    try:
        return ormsgpack.packb(value, option=_PACK_OPTS)
    except (TypeError, ormsgpack.MsgpackEncodeError) as exc:  # pragma: no cover - exercised via encode()
        raise CodecError(f"value cannot be encoded: {exc}") from None


def encode_array_of_encoded(items: Sequence[bytes]) -> bytes:
    """Canonical bytes of a list whose items are already encoded (each ``items[i]`` the canonical bytes of a value):
    the same bytes as encoding the list of values, without building or walking them again."""
    n = len(items)
    if n < 16:
        head = bytes([0x90 | n])
    elif n < 1 << 16:
        head = b"\xdc" + n.to_bytes(2, "big")
    elif n < 1 << 32:
        head = b"\xdd" + n.to_bytes(4, "big")
    else:
        raise CodecError(f"a list of {n} items is over the codec's limit")
    return head + b"".join(items)


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode canonical bytes into a value; refuses anything non-canonical, oversized or with floats."""
    obj = decode_raw(data, max_bytes=max_bytes)
    # decode_raw accepted the bytes, so they are obj's re-encoding: the proof can read them as they are.
    if not is_plain_encoding(data if type(data) is bytes else bytes(data)):
        check_value(obj)
    return obj


def decode_raw(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode and check canonical form, without walking the value for floats.

    Used by typed structure decoders, which check each field's type themselves (a float fails there)."""
    if type(data) is not bytes:  # the common case skips the isinstance test on a union, which is not free
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
        again = ormsgpack.packb(obj, option=_PACK_OPTS)
    except (TypeError, ormsgpack.MsgpackEncodeError) as exc:
        raise CodecError(f"value cannot be re-encoded: {exc}") from None
    if again != data:
        raise CodecError("non-canonical encoding (decode→encode gives different bytes)")
    return obj


_FIXED_SIZES: Final = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
                       0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}
"""Whole size of the MessagePack items whose header byte fixes it (nil, booleans, floats, sized integers)."""
_SIZED: Final = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
"""bin 8/16/32 and str 8/16/32: bytes of the big-endian length after the header byte."""
_COUNTED: Final = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}
"""array 16/32 and map 16/32: (bytes of the count, items per counted entry)."""


def get_item_end(data: bytes, start: int) -> int:
    """The offset just past the one MessagePack item that begins at ``start`` — so a caller can take a part of an
    encoding (a block's header, the first field of a stored record) without decoding the rest. The slice is only
    as canonical as ``data``: use it on bytes :func:`decode_raw` accepted once (what the node stored itself).
    Iterative (a count of items still to skip), so nesting costs no stack; raises CodecError on a truncated item or
    a header outside MessagePack's (extension types included)."""
    pos, pending, n = start, 1, len(data)
    while pending:
        if pos >= n:
            raise CodecError("truncated encoding")
        head = data[pos]
        pending -= 1
        if head <= 0x7F or head >= 0xE0:  # positive / negative fixint
            pos += 1
        elif head <= 0x8F:  # fixmap
            pos, pending = pos + 1, pending + 2 * (head & 0x0F)
        elif head <= 0x9F:  # fixarray
            pos, pending = pos + 1, pending + (head & 0x0F)
        elif head <= 0xBF:  # fixstr
            pos += 1 + (head & 0x1F)
        elif head in _FIXED_SIZES:
            pos += _FIXED_SIZES[head]
        elif head in _SIZED:
            k = _SIZED[head]
            pos += 1 + k + int.from_bytes(data[pos + 1:pos + 1 + k], "big")
        elif head in _COUNTED:
            k, per = _COUNTED[head]
            pos, pending = pos + 1 + k, pending + per * int.from_bytes(data[pos + 1:pos + 1 + k], "big")
        else:
            raise CodecError(f"no such item header: 0x{head:02x}")
    if pos > n:
        raise CodecError("truncated encoding")
    return pos


def is_plain_encoding(encoded: bytes) -> bool:
    """True if ``encoded`` proves that the value it encodes, and every part of that value, passes
    :func:`check_value`; False means "walk it to know".

    ``encoded`` must be ormsgpack's encoding of a value ormsgpack decoded (the input :func:`decode_raw` accepted, or
    a re-encoding of part of its result). Such a value holds only nil, booleans, in-range integers, text, bytes,
    arrays, text-keyed maps and floats: ormsgpack refuses extension types, other map keys and larger integers, and
    :func:`decode_raw` refuses float 32 (it re-encodes as float 64). So two things can still fail the walk:

    * a float — its encoding holds the byte ``cb``; no such byte, no float (the byte may also sit inside text,
      bytes or an integer: then the answer is merely False);
    * nesting deeper than ``MAX_DEPTH`` — that takes ``MAX_DEPTH + 1`` nested containers, each starting with its own
      container header byte; at most ``MAX_DEPTH`` such bytes in all, and no part is nested too deep, counting from
      the top or from any part inside it.

    Two C-level scans of the bytes instead of a Python step per item."""
    if _FLOAT64_HEAD in encoded:
        return False
    return len(encoded) - len(encoded.translate(None, _CONTAINER_HEADS)) <= MAX_DEPTH


def check_decoded_value(value: Any) -> None:
    """:func:`check_value` for a value that :func:`decode_raw` returned, or any part of one (a contract argument,
    a field of kind ``any``): the same verdict and the same error, usually without the walk.

    Scalars are checked as check_value does. An array or map is re-encoded (C speed) and the bytes are read by
    :func:`is_plain_encoding`; only when they prove nothing does the walk run and name the problem. Values that were
    never decoded must go to check_value: types such as ``bytearray`` encode like their allowed counterparts."""
    t = type(value)
    if t is list or t is dict:
        try:
            encoded = ormsgpack.packb(value, option=_PROOF_PACK_OPTS)
        except (TypeError, ormsgpack.MsgpackEncodeError):
            check_value(value)  # not a decoded value after all: the walk says what is wrong
            return
        if not is_plain_encoding(encoded):
            check_value(value)
    elif not (t is str or t is bytes or t is bool or value is None or (t is int and MIN_INT <= value <= MAX_INT)):
        check_value(value)  # raises, with check_value's message


def check_value(value: Any, depth: int = 0) -> None:
    """Raise CodecError unless ``value`` is made only of the codec's types, within the depth limit."""
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
            check_value(item, depth + 1)
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise CodecError(f"map key must be text, got {type(k).__name__}")
            check_value(v, depth + 1)
        return
    raise CodecError(f"type {t.__name__} cannot be encoded (allowed: None, bool, int, bytes, str, list, dict)")


_JSON_TAGS: Final = ({"hex"}, {"map"})


def to_json_value(value: Any) -> Any:
    """A JSON-friendly view of a codec value for the HTTP API: bytes become ``{"hex": …}`` objects.

    A map whose only key is ``hex`` or ``map`` would read back as bytes or as a wrapper, so such a map is itself
    wrapped as ``{"map": {…}}`` — the round trip through JSON is exact for every value."""
    if type(value) is bytes:
        return {"hex": value.hex()}
    if type(value) in (list, tuple):
        return [to_json_value(v) for v in value]
    if type(value) is dict:
        inner = {k: to_json_value(v) for k, v in value.items()}
        return {"map": inner} if set(value) in _JSON_TAGS else inner
    return value


def from_json_value(value: Any, depth: int = 0) -> Any:
    """Inverse of :func:`to_json_value`; raises CodecError on floats or malformed ``{"hex": …}`` objects."""
    if depth > MAX_DEPTH:
        raise CodecError(f"value nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            if not isinstance(value["hex"], str):
                raise CodecError('{"hex": …} must hold a hex string')
            try:
                return bytes.fromhex(value["hex"])
            except ValueError:
                raise CodecError(f"invalid hex string {value['hex'][:40]!r}") from None
        if set(value) == {"map"} and isinstance(value["map"], dict):
            return {str(k): from_json_value(v, depth + 1) for k, v in value["map"].items()}
        return {str(k): from_json_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json_value(v, depth + 1) for v in value]
    if isinstance(value, float):
        raise CodecError("floats are not allowed (use integers or fixed-point)")
    check_value(value, depth)
    return value
