"""Typed structures over the canonical codec: a frozen dataclass is encoded as the array of its fields.

Each structure lists its fields' wire kinds once (``WIRE``); the generic ``to_wire``/``from_wire`` walk that list,
so a decoder checks every field's type and length and there is exactly one place that says what a field may hold.

Two ways in: ``from_wire`` takes any Python value; ``from_decoded`` takes what :func:`decode_raw` returned (``decode``
uses it), which lets fields of kind ``any`` be checked by :func:`check_decoded_value` instead of the slower walk.
On a decoded value both accept and refuse exactly alike, with the same messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Final, Self

from qilian.types.codec import MAX_INT, CodecError, check_decoded_value, check_value, decode_raw, encode_trusted

MAX_TEXT: Final = 4096
"""Longest text field (in characters) inside a structure, unless a field says otherwise."""
MAX_ITEMS: Final = 100_000
"""Most items in any list field (blocks are further capped by consensus params)."""


class Kind:
    """How one field travels: a check on decode and a conversion on encode."""

    def to_wire(self, value: Any) -> Any:
        return value

    def from_wire(self, obj: Any, where: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_decoded(self, obj: Any, where: str) -> Any:
        """``from_wire`` for a part of what ``decode_raw`` returned. Only kinds that can check such a value more
        cheaply (``any`` fields, and the kinds that contain them) override it; the verdict never differs."""
        return self.from_wire(obj, where)


class UInt(Kind):
    """A non-negative integer up to 2**64-1."""

    def from_wire(self, obj: Any, where: str) -> Any:
        if type(obj) is not int or not 0 <= obj <= MAX_INT:
            raise CodecError(f"{where}: expected an unsigned integer, got {_describe(obj)}")
        return obj


class Bytes(Kind):
    """A byte string, optionally of an exact length (``size``) or bounded (``max_size``)."""

    def __init__(self, size: int | None = None, max_size: int = 1 << 24, allow_empty: bool = False):
        self.size = size
        self.max_size = max_size
        self.allow_empty = allow_empty

    def from_wire(self, obj: Any, where: str) -> Any:
        if type(obj) is not bytes:
            raise CodecError(f"{where}: expected bytes, got {_describe(obj)}")
        if self.allow_empty and not obj:
            return obj
        if self.size is not None and len(obj) != self.size:
            raise CodecError(f"{where}: expected {self.size} bytes, got {len(obj)}")
        if len(obj) > self.max_size:
            raise CodecError(f"{where}: {len(obj)} bytes is over the limit of {self.max_size}")
        return obj


class Text(Kind):
    """A UTF-8 string with a length bound."""

    def __init__(self, max_len: int = MAX_TEXT):
        self.max_len = max_len

    def from_wire(self, obj: Any, where: str) -> Any:
        if type(obj) is not str:
            raise CodecError(f"{where}: expected text, got {_describe(obj)}")
        if len(obj) > self.max_len:
            raise CodecError(f"{where}: text of {len(obj)} characters is over the limit of {self.max_len}")
        return obj


class Bool(Kind):
    def from_wire(self, obj: Any, where: str) -> Any:
        if type(obj) is not bool:
            raise CodecError(f"{where}: expected a boolean, got {_describe(obj)}")
        return obj


class AnyValue(Kind):
    """Any codec value (contract arguments, results, event data). Lists stay lists."""

    def from_wire(self, obj: Any, where: str) -> Any:
        try:
            check_value(obj)
        except CodecError as exc:
            raise CodecError(f"{where}: {exc}") from None
        return obj

    def from_decoded(self, obj: Any, where: str) -> Any:
        try:
            check_decoded_value(obj)
        except CodecError as exc:
            raise CodecError(f"{where}: {exc}") from None
        return obj


class Struct(Kind):
    """A nested structure."""

    def __init__(self, cls: type[Wire]):
        self.cls = cls

    def to_wire(self, value: Any) -> Any:
        return value.to_wire()

    def from_wire(self, obj: Any, where: str) -> Any:
        return self.cls.from_wire(obj, where)

    def from_decoded(self, obj: Any, where: str) -> Any:
        return self.cls.from_decoded(obj, where)


class Optional(Kind):
    """A field that may be nil."""

    def __init__(self, inner: Kind):
        self.inner = inner

    def to_wire(self, value: Any) -> Any:
        return None if value is None else self.inner.to_wire(value)

    def from_wire(self, obj: Any, where: str) -> Any:
        return None if obj is None else self.inner.from_wire(obj, where)

    def from_decoded(self, obj: Any, where: str) -> Any:
        return None if obj is None else self.inner.from_decoded(obj, where)


class ListOf(Kind):
    """A homogeneous list, kept as a tuple in the dataclass so the structure stays immutable."""

    def __init__(self, inner: Kind, max_items: int = MAX_ITEMS):
        self.inner = inner
        self.max_items = max_items

    def to_wire(self, value: Any) -> Any:
        return [self.inner.to_wire(v) for v in value]

    def from_wire(self, obj: Any, where: str) -> Any:
        return self._get_items(obj, where, self.inner.from_wire)

    def from_decoded(self, obj: Any, where: str) -> Any:
        return self._get_items(obj, where, self.inner.from_decoded)

    def _get_items(self, obj: Any, where: str, item_from: Callable[[Any, str], Any]) -> tuple[Any, ...]:
        if type(obj) is not list:
            raise CodecError(f"{where}: expected a list, got {_describe(obj)}")
        if len(obj) > self.max_items:
            raise CodecError(f"{where}: {len(obj)} items is over the limit of {self.max_items}")
        return tuple(item_from(v, f"{where}[{i}]") for i, v in enumerate(obj))


def _describe(obj: Any) -> str:
    return type(obj).__name__


_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}
_WIRE_PLANS: dict[type, tuple[tuple[str, Callable[[Any], Any] | None], ...]] = {}


def _get_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    """``dataclasses.fields`` of a structure, computed once per class (it walks the class dict on every call, and
    every encode and decode of every block, transaction, vote and receipt asks for it)."""
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = dataclasses.fields(cls)
    return fields


def _get_wire_plan(cls: type[Wire]) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """Per field of ``cls``: its name and its kind's ``to_wire``, or None where that is the identity (the scalar
    kinds), so encoding a structure calls nothing for its plain fields. Computed once per class."""
    plan = _WIRE_PLANS.get(cls)
    if plan is None:
        plan = _WIRE_PLANS[cls] = tuple(
            (f.name, None if type(kind).to_wire is Kind.to_wire else kind.to_wire)
            for kind, f in zip(cls.WIRE, _get_fields(cls), strict=True))
    return plan


class Wire:
    """Mixin for frozen dataclasses with a ``WIRE`` tuple of field kinds in declaration order."""

    WIRE: ClassVar[tuple[Kind, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A structure with its own ``from_wire`` checks must give ``from_decoded`` the same checks, or decoding
        (which goes through ``from_decoded``) would skip them: refuse such a class when it is defined."""
        super().__init_subclass__(**kwargs)
        if "from_wire" in vars(cls) and "from_decoded" not in vars(cls):
            raise TypeError(f"{cls.__name__} overrides from_wire but not from_decoded")

    def to_wire(self) -> list[Any]:
        """The structure as a codec value: the array of its fields."""
        return [getattr(self, name) if convert is None else convert(getattr(self, name))
                for name, convert in _get_wire_plan(type(self))]

    @classmethod
    def from_wire(cls, obj: Any, where: str = "") -> Self:
        """Build the structure from an array, checking every field; raises CodecError naming the field."""
        return cls._build_checked(obj, where, False)

    @classmethod
    def from_decoded(cls, obj: Any, where: str = "") -> Self:
        """``from_wire`` for what ``decode_raw`` returned (or a part of it): same verdict, cheaper ``any`` fields."""
        return cls._build_checked(obj, where, True)

    @classmethod
    def _build_checked(cls, obj: Any, where: str, decoded: bool) -> Self:
        """One body for both ways in, so they can differ only in how ``any`` fields are checked."""
        where = where or cls.__name__
        fields = _get_fields(cls)
        if type(obj) is not list:
            raise CodecError(f"{where}: expected an array of {len(fields)} fields, got {_describe(obj)}")
        if len(obj) != len(fields):
            raise CodecError(f"{where}: expected {len(fields)} fields, got {len(obj)}")
        triples = zip(cls.WIRE, fields, obj, strict=True)
        if decoded:
            values = [kind.from_decoded(o, f"{where}.{f.name}") for kind, f, o in triples]
        else:
            values = [kind.from_wire(o, f"{where}.{f.name}") for kind, f, o in triples]
        return cls(*values)

    def encode(self) -> bytes:
        """Canonical bytes of this structure."""
        return encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = 16 * 1024 * 1024) -> Self:
        """Parse canonical bytes; raises CodecError on any deviation (the node's only entry for outside bytes)."""
        return cls.from_decoded(decode_raw(data, max_bytes=max_bytes))
