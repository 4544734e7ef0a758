"""The canonical codec: one byte encoding for everything Qilian hashes, signs, stores or sends.

The encoding is a strict subset of MessagePack (see docs/spec/encoding.md), chosen because every language has a
MessagePack library, so an SDK elsewhere needs only the restrictions below, not a new format:

* values are nil, booleans, integers in [-2**63, 2**64-1], byte strings (bin), UTF-8 text (str), arrays and maps;
* maps have text keys, sorted by their UTF-8 bytes, no duplicates;
* every item uses the shortest MessagePack form that holds it;
* no floats, no extension types, no trailing bytes.

Decoding enforces canonical form by re-encoding: ``encode(decode(b)) == b`` or the input is refused. That single
comparison catches non-minimal integers and lengths, unsorted or duplicated keys and trailing garbage, which is
why this module can lean on a fast C MessagePack library instead of a hand-written parser.

Structures (transactions, headers, votes …) are encoded as arrays of their fields in declaration order; their
decoders in :mod:`qilian.types.core` check every field's type.
"""

from __future__ import annotations

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


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode canonical bytes into a value; refuses anything non-canonical, oversized or with floats."""
    obj = decode_raw(data, max_bytes=max_bytes)
    check_value(obj)
    return obj


def decode_raw(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode and check canonical form, without walking the value for floats.

    Used by typed structure decoders, which check each field's type themselves (a float fails there)."""
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
