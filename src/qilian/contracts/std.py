"""The contract standard library: ``from std import digest, digest_hex, encode, decode, Fixed``.

``digest`` hashes with the chain's suite (SM3 on an SM2 chain, SHA-256 on an Ed25519 chain), so a contract computes
the same digests as clients and proofs do. ``Fixed`` is a deterministic fixed-point decimal on integers (no floats
anywhere)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Final

from qilian.types.codec import CodecError, decode, encode_trusted

MAX_PLACES: Final = 18
"""Most decimal places of a Fixed."""
MAX_INT_BITS: Final = 4096
"""Largest integer a contract operation may build (also a Fixed's units)."""
MAX_DECODE_BYTES: Final = 64 * 1024
"""Largest input of std.decode."""
DIGEST_BYTES_PER_FUEL: Final = 4
"""std.digest: 1 fuel per this many bytes hashed (SM3 and SHA-256 are both C code)."""
DECODE_BYTES_PER_FUEL: Final = 1
"""std.decode: 1 fuel per this many input bytes (a byte can become a whole value)."""
ENCODE_BYTES_PER_FUEL: Final = 1
"""std.encode: 1 fuel per this many output bytes (on top of the boundary walk)."""


class StdError(ValueError):
    """Bad input to a standard-library function (the call fails). ``message`` is a fixed text of std's own: it
    becomes part of the receipt, so it never quotes the input."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _bits_ok(x: int) -> int:
    if x.bit_length() > MAX_INT_BITS:
        raise StdError(f"Fixed units over {MAX_INT_BITS} bits")
    return x


class Fixed:
    """A decimal with ``places`` digits after the point, held as an integer number of units (10**-places).

    Arithmetic rounds toward zero; operands must have the same number of places. Values are stored in contract
    storage as ``f.units`` (an int) and rebuilt with ``Fixed(units=…, places=…)``."""

    __slots__ = ("places", "units")

    def __init__(self, value: int | str = 0, places: int = 6, units: int | None = None):
        if type(places) is not int or not 0 <= places <= MAX_PLACES:
            raise StdError(f"places must be 0..{MAX_PLACES}")
        self.places = places
        if units is not None:
            if type(units) is not int:
                raise StdError("units is an int")
            self.units = _bits_ok(units)
        elif type(value) is int:
            if value.bit_length() > MAX_INT_BITS - 64:
                raise StdError(f"Fixed units over {MAX_INT_BITS} bits")
            self.units = value * 10**places
        elif type(value) is str:
            self.units = _parse(value, places)
        else:
            raise StdError("Fixed takes an int or decimal text like '12.50'")

    def _other(self, o: Any) -> int:
        if type(o) is int:
            if o.bit_length() > MAX_INT_BITS - 64:
                raise StdError(f"Fixed units over {MAX_INT_BITS} bits")
            return o * 10**self.places
        if isinstance(o, Fixed) and o.places == self.places:
            return o.units
        raise StdError("Fixed arithmetic needs an int or a Fixed with the same places")

    def add(self, o: Any) -> Fixed:
        return Fixed(places=self.places, units=self.units + self._other(o))

    def sub(self, o: Any) -> Fixed:
        return Fixed(places=self.places, units=self.units - self._other(o))

    def mul(self, o: Any) -> Fixed:
        other = self._other(o)
        if self.units.bit_length() + other.bit_length() > MAX_INT_BITS + 64:
            raise StdError(f"Fixed product over {MAX_INT_BITS} bits")
        p = self.units * other
        q = 10**self.places
        return Fixed(places=self.places, units=abs(p) // q * (1 if p >= 0 else -1))

    def div(self, o: Any) -> Fixed:
        d = self._other(o)
        if d == 0:
            raise StdError("division by zero")
        n = self.units * 10**self.places
        return Fixed(places=self.places, units=abs(n) // abs(d) * (1 if (n >= 0) == (d >= 0) else -1))

    __add__ = add
    __sub__ = sub
    __mul__ = mul

    def __eq__(self, o: object) -> bool:
        return isinstance(o, Fixed | int) and self.units == self._other(o)

    def __lt__(self, o: Any) -> bool:
        return self.units < self._other(o)

    def __le__(self, o: Any) -> bool:
        return self.units <= self._other(o)

    def __gt__(self, o: Any) -> bool:
        return self.units > self._other(o)

    def __ge__(self, o: Any) -> bool:
        return self.units >= self._other(o)

    __hash__ = None  # type: ignore[assignment]

    def to_str(self) -> str:
        sign = "-" if self.units < 0 else ""
        whole, frac = divmod(abs(self.units), 10**self.places)
        return f"{sign}{whole}.{frac:0{self.places}d}" if self.places else f"{sign}{whole}"

    __str__ = to_str

    def __format__(self, spec: str) -> str:
        return self.to_str()


def _parse(text: str, places: int) -> int:
    if len(text) > 80:
        raise StdError("decimal text longer than 80 characters")
    if not text.isascii():
        raise StdError("decimal text is ASCII")  # Unicode digits differ between CPython versions
    t = text.strip(" ")
    neg = t.startswith("-")
    t = t.lstrip("+-")
    whole, _, frac = t.partition(".")
    if not (whole.isdigit() or (whole == "" and frac)) or (frac and not frac.isdigit()) or len(frac) > places:
        raise StdError(f"not a decimal with at most {places} places")
    units = int(whole or "0") * 10**places + int((frac or "0").ljust(places, "0")[:places] or "0")
    return -units if neg else units


def make_module(hash_fn: Callable[[bytes], bytes], charge: Callable[[int], None],
                copy_value: Callable[[Any], Any]) -> SimpleNamespace:
    """The ``std`` module of one chain (its suite's hash) for one runtime: ``charge`` spends fuel before the work,
    ``copy_value`` is the runtime's boundary walker (canonical values only, bounded, charged)."""

    def digest(data: bytes) -> bytes:
        if type(data) is not bytes:
            raise StdError("digest() takes bytes (use text.encode())")
        charge(1 + len(data) // DIGEST_BYTES_PER_FUEL)
        return hash_fn(data)

    def digest_hex(data: bytes) -> str:
        return digest(data).hex()

    def encode(value: Any) -> bytes:
        canonical = copy_value(value)
        out = encode_trusted(canonical)
        charge(len(out) // ENCODE_BYTES_PER_FUEL)
        return out

    def decode_value(data: bytes) -> Any:
        if type(data) is not bytes:
            raise StdError("decode() takes bytes")
        if len(data) > MAX_DECODE_BYTES:
            raise StdError(f"decode() takes at most {MAX_DECODE_BYTES} bytes")
        charge(1 + len(data) // DECODE_BYTES_PER_FUEL)
        try:
            return decode(data, max_bytes=MAX_DECODE_BYTES)  # the float-refusing path
        except (CodecError, RecursionError):
            raise StdError("not the canonical encoding of a value") from None

    return SimpleNamespace(digest=digest, digest_hex=digest_hex, encode=encode, decode=decode_value, Fixed=Fixed)
