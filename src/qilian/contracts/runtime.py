"""Running metered contract code: guards, safe built-ins, storage, context, events and cross-contract calls.

A `Runtime` serves one block (or one read-only query). Contract modules are instantiated once per runtime and per
contract; their globals hold only the contract API, the guarded built-ins and the `_q_` guards, and
``__builtins__`` is replaced, so nothing of the node is reachable. Everything is deterministic: fuel is a count of
operations and sizes, never time; there are no floats, sets, hashes of objects or clocks.

Three rules make that hold by construction (docs/contracts.md, "Why a contract cannot …"):

* **One boundary.** Values cross between node and contract only as canonical codec values, checked, sized, charged
  and *copied* by one bounded, iterative walker (`Runtime.process_value`): arguments (a fresh copy per call),
  return values, event data, storage values and defaults, cross-contract arguments and results. A contract never
  holds a reference to anything the node reads later, and never receives one of the node's objects.
* **Errors are codes.** A failure is reported as ``[code] line N: detail`` composed by the runtime from
  deterministic facts (`ErrorCode`, the contract's statement line, a fixed text per exception class, or a bounded
  plain-text assertion message). Interpreter exception text, reprs, addresses and paths never reach a receipt.
* **Every sized operation is priced before it runs**, by a guard that checks the operand types against a closed
  list and the result size against the limits below.

Prices (fuel units) are the ``PRICE_*`` and ``*_PER_FUEL`` constants; ``qilian bench fuel`` measures CPU per fuel
unit of each guarded operation and is how they were tuned."""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import CodeType, FunctionType, TracebackType
from typing import Any, Final, Protocol

from qilian.contracts import std
from qilian.contracts.validate import is_plain_text
from qilian.types.codec import MAX_DEPTH as CODEC_MAX_DEPTH
from qilian.types.codec import MAX_INT as CODEC_MAX_INT
from qilian.types.codec import MIN_INT as CODEC_MIN_INT
from qilian.types.codec import CodecError, decode_raw, encode_trusted

PRICE_ENTER: Final = 20
"""A contract function entry."""
PRICE_ITER: Final = 1
"""A loop iteration or comprehension item."""
PRICE_CALL: Final = 2
"""A function or method call (plus the size-based price of sized operations)."""
PRICE_OP: Final = 1
"""An indexing, a key check, a small arithmetic or comparison."""
PRICE_FIXED: Final = 8
"""A std.Fixed operation (Python code: a few object allocations and a division)."""
PRICE_CROSS_CALL: Final = 500
"""Calling another contract (plus what it spends)."""
PRICE_READ: Final = 50
"""A storage read (plus 1 per READ_BYTES_PER_FUEL bytes read)."""
READ_BYTES_PER_FUEL: Final = 4
PRICE_WRITE: Final = 200
"""A storage write (plus 1 per 8 bytes written)."""
WRITE_BYTES_PER_FUEL: Final = 1
PRICE_EMIT: Final = 50
"""An event (plus the size of its data, see OUT_BYTES_PER_FUEL)."""
PRICE_DEPLOY: Final = 1_000
"""Base fuel of validating, instrumenting, compiling and instantiating a contract (plus a price per source byte,
contracts.compute_deploy_fuel)."""


@dataclass(frozen=True, slots=True)
class FuelPrices:
    """The prices of a contract's dealings with the chain — storage, events, calls to other contracts, loading
    code — which a consortium may raise by governance (chain parameters ``fuel.*``, execution/params.py); the
    interpreter's operation prices stay code constants, calibrated to CPU by ``qilian bench fuel``."""

    read: int = PRICE_READ
    """A storage read (``fuel.read``)."""
    write: int = PRICE_WRITE
    """A storage write (``fuel.write``)."""
    emit: int = PRICE_EMIT
    """An event (``fuel.emit``)."""
    cross_call: int = PRICE_CROSS_CALL
    """A call into another contract (``fuel.cross_call``)."""
    deploy: int = PRICE_DEPLOY
    """The base of loading a contract's code (``fuel.deploy``; plus a price per source byte)."""


DEFAULT_PRICES: Final = FuelPrices()
"""The prices genesis starts with."""
BYTES_PER_FUEL: Final = 16
"""Text and bytes operations cost 1 fuel per this many bytes they scan or build."""
ITEMS_PER_FUEL: Final = 4
"""List, tuple and dict operations cost 1 fuel per this many items they touch or build."""
WEIGHT_PER_FUEL: Final = 1
"""Comparisons, min and max cost 1 fuel per this many weight units (a bounded walk of the operands)."""
SORT_WEIGHT_PER_FUEL: Final = 4
"""Sorts cost 1 fuel per this many weight units × log2(items)."""
INT_ADD_BITS_PER_FUEL: Final = 1024
"""Linear big-integer work (+, -, &, |, ^, >>, <<): 1 fuel per this many bits."""
INT_MUL_BITS2_PER_FUEL: Final = 1 << 16
"""Quadratic big-integer work (*, //, %, divmod, **): 1 fuel per this many bit×bit."""
SEARCH_PER_FUEL: Final = 1024
"""Substring search (find, count, index, replace, split, in): 1 fuel per this many haystack×needle bytes."""
DIGEST_BYTES_PER_FUEL: Final = 4
"""std.digest: 1 fuel per this many bytes hashed."""
CODEC_BYTES_PER_FUEL: Final = 2
"""std.encode/decode, storage reads: 1 fuel per this many encoded bytes."""
COPY_NODES_PER_FUEL: Final = 1
"""The boundary walker: 1 fuel per this many values checked and copied."""
OUT_BYTES_PER_FUEL: Final = 2
"""Return values and event data: 1 fuel per this many encoded bytes (on top of the boundary walk). A call's
receipt payload is bounded by MAX_RESULT_BYTES + MAX_CALL_EVENT_BYTES; a block's total is the execution layer's
to bound (docs/contracts.md)."""

MAX_SEQ: Final = 65_536
"""Longest string, bytes, list, tuple or dict a contract operation may build."""
MAX_INT_BITS: Final = std.MAX_INT_BITS
"""Largest integer a contract operation may build."""
MAX_DEPTH: Final = 64
"""Deepest contract call stack (function calls and cross-contract calls together)."""
MAX_VALUE_DEPTH: Final = CODEC_MAX_DEPTH
"""Deepest nesting of a value that crosses the boundary or is compared, sorted or searched (the codec's)."""
MAX_VALUE_NODES: Final = 65_536
"""Most values (items, keys, nested values) in one value that crosses the boundary."""
MAX_WALK_NODES: Final = 262_144
"""Most values one comparison, sort or search may visit (shared references count each time they are reached)."""
MAX_EVENTS: Final = 256
"""Most events one transaction may emit."""
MAX_EVENT_BYTES: Final = 16 * 1024
"""Largest encoded event data."""
MAX_CALL_EVENT_BYTES: Final = 64 * 1024
"""Largest total encoded event data of one call (all its events, cross-contract callees included)."""
MAX_RESULT_BYTES: Final = 64 * 1024
"""Largest encoded return value (of a call, or of a cross-contract call)."""
MAX_ARG_BYTES: Final = 1024 * 1024
"""Largest encoded argument list a call accepts."""
MAX_STORED_VALUE: Final = 64 * 1024
"""Largest encoded storage value."""
MAX_STORAGE_KEY: Final = 1024
"""Largest encoded storage key."""
MAX_ASSERT_CHARS: Final = 200
"""Longest assertion message kept in an error (longer ones are cut at this many characters)."""
MAX_INT_TEXT: Final = 1300
"""Longest text ``int()`` parses."""
DEFAULT_FUEL: Final = 5_000_000
"""Fuel of a transaction's call (and the default of a read-only query)."""
CONTRACT_FILENAME: Final = "<contract>"
"""The file name contract code is compiled under: how error reporting finds the contract's own frames."""


class ErrorCode(enum.StrEnum):
    """Why a call failed: the first word of every error a contract call produces, the same on every node."""

    ASSERTION = "assertion"
    OUT_OF_FUEL = "out_of_fuel"
    LIMIT = "limit"
    TYPE = "type"
    KEY = "key"
    INDEX = "index"
    VALUE = "value"
    ZERO_DIVISION = "zero_division"
    ARITHMETIC = "arithmetic"
    STACK = "stack"
    NOT_FOUND = "not_found"
    READ_ONLY = "read_only"
    STORAGE = "storage"
    CODEC = "codec"
    STD = "std"
    INTERNAL = "internal"


INTERPRETER_ERRORS: Final[tuple[tuple[type[BaseException], ErrorCode, str], ...]] = (
    (RecursionError, ErrorCode.STACK, "call stack too deep"),
    (MemoryError, ErrorCode.LIMIT, "out of memory"),
    (ZeroDivisionError, ErrorCode.ZERO_DIVISION, "division or modulo by zero"),
    (OverflowError, ErrorCode.ARITHMETIC, "number too large for this operation"),
    (KeyError, ErrorCode.KEY, "key not found"),
    (IndexError, ErrorCode.INDEX, "index out of range"),
    (CodecError, ErrorCode.CODEC, "not a canonical value"),
    (std.StdError, ErrorCode.STD, "bad argument to a std function"),
    (UnicodeError, ErrorCode.VALUE, "text or bytes not valid in this encoding"),
    (ValueError, ErrorCode.VALUE, "invalid value for this operation"),
    (TypeError, ErrorCode.TYPE, "operation not supported for these types or arguments"),
    (AttributeError, ErrorCode.TYPE, "no such attribute for this type"),
    (RuntimeError, ErrorCode.VALUE, "container changed during iteration"),
)
"""Exception class raised by the interpreter → (code, fixed text). First match wins (subclasses first). The text is
fixed per class because the interpreter's own messages differ between CPython versions and may hold reprs and
addresses; ``str(exc)`` is never used."""


class OutOfFuel(Exception):
    """The call used up its fuel; everything it did is rolled back."""


class ContractError(Exception):
    """A contract failed a runtime rule: everything it did is rolled back. ``message`` is composed by the runtime
    from deterministic facts only (limits, type names, counts) — never from a contract value."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class StateAccess(Protocol):
    """Where contract storage lives (the block's overlay, or an in-memory state in tests)."""

    def get(self, namespace: str, key: bytes) -> bytes | None: ...
    def put(self, namespace: str, key: bytes, value: bytes | None) -> None: ...


@dataclass(frozen=True, slots=True)
class CompiledContract:
    """A validated, instrumented contract ready to instantiate."""

    code: CodeType
    """The instrumented module code."""
    exports: tuple[str, ...]
    """Exported function names."""
    storage: tuple[str, ...]
    """Declared storage names."""
    source_hash: bytes
    """SHA-256 of the source (the compile cache key)."""
    lines: tuple[int, ...] = ()
    """Source line → first line of its innermost statement (instrument.compute_statement_lines)."""
    load_fuel: int = 0
    """Fuel charged when a runtime first instantiates the contract (compute_deploy_fuel of the source): a warm
    compile cache must not make a block cheaper to run on one node than the fuel says."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a call did."""

    ok: bool
    """Whether the call completed (its writes and events stand)."""
    value: Any
    """The return value (a canonical codec value, a copy the contract no longer holds), when ok."""
    error: str | None
    """``[code] line N: detail`` when not ok: composed by the runtime, byte-identical on every node."""
    fuel_used: int
    """Fuel spent (never more than the limit)."""
    out_of_fuel: bool
    """Whether the call ran out of fuel."""
    events: tuple[tuple[str, str, Any], ...] = ()
    """(source contract, name, data) of each event, when ok; data is a canonical copy taken at emit time."""
    code: str | None = None
    """The ErrorCode value when not ok (None when ok, or when an older caller built the outcome)."""


class Context:
    """``ctx`` in contract code: who called, where, when. Read-only to contracts (attribute writes are refused at
    deploy)."""

    __slots__ = ("caller", "height", "org", "sender", "this", "time_ms", "tx_hash")

    def __init__(self, sender: str, org: str, height: int, time_ms: int, tx_hash: str, this: str, caller: str):
        self.sender = sender
        """Address (hex) of the transaction's signer."""
        self.org = org
        """The signer's organisation."""
        self.height = height
        """Height of the block being executed (the next height in a query)."""
        self.time_ms = time_ms
        """Time of that block (ms since the epoch)."""
        self.tx_hash = tx_hash
        """Hash (hex) of the transaction (empty in a query)."""
        self.this = this
        """This contract's address."""
        self.caller = caller
        """Who called this function: the signer, or the contract that called this one."""


# ---------------------------------------------------------------------------------------------- errors

def compute_assertion_text(exc: BaseException) -> str:
    """The detail of a failed ``assert``: its message if that is plain text (cut to MAX_ASSERT_CHARS characters),
    else a fixed text. Bounded work whatever the contract built: one type check, one slice, one encode."""
    args = exc.args
    if len(args) == 1 and type(args[0]) is str:
        text: str = args[0][:MAX_ASSERT_CHARS]
        if text and is_plain_text(text):
            return text
    return "assertion failed"


def compute_error(exc: BaseException) -> tuple[ErrorCode, str]:
    """(code, detail) of an exception that ended a call, from a fixed table: never the interpreter's text."""
    t = type(exc)
    if t is OutOfFuel:
        return ErrorCode.OUT_OF_FUEL, "out of fuel"
    if t is ContractError:
        assert isinstance(exc, ContractError)
        return exc.code, exc.message
    if t is AssertionError:
        return ErrorCode.ASSERTION, compute_assertion_text(exc)
    if t is std.StdError:
        assert isinstance(exc, std.StdError)
        return ErrorCode.STD, exc.message
    for cls, code, text in INTERPRETER_ERRORS:
        if isinstance(exc, cls):
            return code, text
    return ErrorCode.INTERNAL, "internal error"


def get_contract_line(tb: TracebackType | None) -> int:
    """The statement line of the innermost contract frame of a traceback (0 if the failure happened before any
    contract code ran). Bounded: a traceback is at most the interpreter's recursion limit deep."""
    line = 0
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename == CONTRACT_FILENAME:
            ln = tb.tb_lineno
            lines = frame.f_globals.get("_q_lines")
            if type(ln) is int and type(lines) is tuple and 0 <= ln < len(lines) and lines[ln]:
                line = lines[ln]
            elif type(ln) is int:
                line = ln
        tb = tb.tb_next
    return line


def compute_error_text(code: ErrorCode, line: int, detail: str) -> str:
    """The receipt's error string: ``[code] line N: detail`` (or ``[code] detail`` outside contract code)."""
    return f"[{code.value}] line {line}: {detail}" if line else f"[{code.value}] {detail}"


# ---------------------------------------------------------------------------------------------- sizes

def compute_packed_int_size(x: int) -> int:
    """Bytes of an integer in the canonical MessagePack form (shortest)."""
    if -32 <= x <= 127:
        return 1
    if -128 <= x <= 255:
        return 2
    if -32768 <= x <= 65535:
        return 3
    if -(2**31) <= x <= 2**32 - 1:
        return 5
    return 9


def _header(n: int) -> int:
    return 1 if n <= 15 else 3 if n <= 65535 else 5


def _str_header(n: int) -> int:
    return 1 if n <= 31 else 2 if n <= 255 else 3 if n <= 65535 else 5


def compute_weight(x: Any) -> int:
    """Work units of comparing, sorting or searching ``x``: 1 per value, 1 per BYTES_PER_FUEL bytes of text, 1 per
    512 bits of integer. Iterative and bounded: refuses values deeper than MAX_VALUE_DEPTH or with more than
    MAX_WALK_NODES values, so no comparison the interpreter then does can recurse without bound."""
    t = type(x)
    if t is str or t is bytes:
        return 1 + len(x) // BYTES_PER_FUEL
    if t is int:
        return 1 + x.bit_length() // 512
    if t is not list and t is not tuple and t is not dict:
        return 1
    total = 0
    nodes = 0
    stack: list[tuple[Any, int]] = [(x, 0)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is list or t is tuple or t is dict:
            if depth >= MAX_VALUE_DEPTH:
                raise ContractError(ErrorCode.LIMIT, f"value nested deeper than {MAX_VALUE_DEPTH}")
            n = len(v)
            nodes += n + 1
            if nodes > MAX_WALK_NODES:
                raise ContractError(ErrorCode.LIMIT, f"value of more than {MAX_WALK_NODES} items to compare")
            total += 1 + n
            items = v.values() if t is dict else v
            for c in items:
                tc = type(c)
                if tc is list or tc is tuple or tc is dict:
                    stack.append((c, depth + 1))
                elif tc is str or tc is bytes:
                    total += len(c) // BYTES_PER_FUEL
                elif tc is int:
                    total += c.bit_length() // 512
            if t is dict:
                for k in v:
                    if type(k) is str or type(k) is bytes:
                        total += len(k) // BYTES_PER_FUEL
        else:
            total += 1
    return total


_KEY_TYPES: Final = frozenset({str, int, bytes, bool, type(None)})
"""Types a dict key may have: their hash is cheap, flat and deterministic (no deep tuple can be hashed)."""
_ITERABLE_TYPES: Final = frozenset({list, tuple, str, bytes, dict, range})
"""What a loop, comprehension or collecting built-in may iterate: all sized, none lazy over node objects."""
_SEQ_TYPES: Final = frozenset({str, bytes, list, tuple})
_INDEXABLE: Final = frozenset({list, tuple, str, bytes, range})
_INT_TYPES: Final = frozenset({int, bool})
_ASCII_SPACE: Final = " \t\n\r\x0b\x0c"
"""Whitespace for strip()/split() without arguments: ASCII's, as bytes methods use (str's Unicode tables differ
between CPython versions)."""
_ASCII_SEPARATORS: Final = ("\x1c", "\x1d", "\x1e", "\x1f")
"""ASCII characters str.split() treats as whitespace and bytes.split() does not."""
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})
_ASCII_NAMES: Final = frozenset({"ascii", "ASCII"})
_BINOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add, "*": operator.mul, "**": operator.pow, "<<": operator.lshift, "%": operator.mod,
    "-": operator.sub, "//": operator.floordiv, ">>": operator.rshift, "|": operator.or_, "^": operator.xor,
    "&": operator.and_,
}
_LINEAR_INT_OPS: Final = frozenset({"+", "-", "&", "|", "^", ">>"})
_CMPOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge,
}
_MISSING: Final = object()


def _limit(what: str, n: int, limit: int) -> ContractError:
    return ContractError(ErrorCode.LIMIT, f"{what} of {n} is over the limit of {limit}")


def _type_error(message: str) -> ContractError:
    return ContractError(ErrorCode.TYPE, message)


def _check_key(k: Any) -> Any:
    if type(k) not in _KEY_TYPES:
        raise _type_error(f"dict keys are str, int, bytes, bool or None, not {type(k).__name__}")
    return k


def _check_int(x: Any) -> Any:
    if type(x) is int and x.bit_length() > MAX_INT_BITS:
        raise _limit("integer bits", x.bit_length(), MAX_INT_BITS)
    return x


def _check_len(x: Any) -> Any:
    t = type(x)
    if (t is str or t is bytes or t is list or t is tuple or t is dict) and len(x) > MAX_SEQ:
        raise _limit(f"{t.__name__} length", len(x), MAX_SEQ)
    return x


def _sized(x: Any) -> int:
    """Length of an iterable of the closed list (refusing anything else)."""
    if type(x) not in _ITERABLE_TYPES:
        raise _type_error(f"{type(x).__name__} cannot be iterated (lists, tuples, text, bytes, dicts, ranges)")
    return len(x)


def _index(x: Any, what: str) -> Any:
    if x is not None and type(x) not in _INT_TYPES:
        raise _type_error(f"{what} must be an int")
    return x


def _ascii_bytes(s: str) -> bytes:
    """Text as UTF-8 bytes: bytes methods are ASCII-only on every CPython, which pins case maps, predicates and
    whitespace to ASCII (non-ASCII characters are never letters, digits or space, and case maps keep them)."""
    return s.encode("utf-8")


def _text_encoding(encoding: Any, errors: Any) -> str:
    if errors != "strict" or type(errors) is not str:
        raise ContractError(ErrorCode.VALUE, "only errors='strict' is supported")
    if type(encoding) is str and encoding in _UTF8_NAMES:
        return "utf-8"
    if type(encoding) is str and encoding in _ASCII_NAMES:
        return "ascii"
    raise ContractError(ErrorCode.VALUE, "encodings are 'utf-8' or 'ascii'")


class Runtime:
    """Executes contract calls against one state, with one fuel meter per top-level call."""

    def __init__(self, state: StateAccess, load_code: Callable[[str], CompiledContract | None],
                 hash_fn: Callable[[bytes], bytes], prices: FuelPrices = DEFAULT_PRICES):
        self.state = state
        self.prices = prices
        """The governed prices in force at the block's height."""
        self.load_code = load_code
        self.hash_fn = hash_fn
        self.used = 0
        self.limit = 0
        self.depth = 0
        self.events: list[tuple[str, str, Any]] = []
        self.event_bytes = 0
        self.read_only = False
        self.instantiating = False
        """True only while a contract module's top level runs: when storage may be declared."""
        self._instances: dict[str, tuple[dict[str, Any], frozenset[str], CompiledContract]] = {}
        self.ctx = Context("", "", 0, 0, "", "", "")

    # ------------------------------------------------------------------------------------------ metering

    def charge(self, n: int) -> None:
        """Spend ``n`` fuel, before the work it pays for."""
        self.used += n
        if self.used > self.limit:
            raise OutOfFuel

    # ------------------------------------------------------------------------------------------ the boundary

    def process_value(self, value: Any, what: str, max_bytes: int) -> tuple[Any, int]:
        """(a copy of ``value``, its canonical encoded size): the one crossing between node and contract.

        Refuses anything but canonical codec values (None, bool, int in the codec's range, surrogate-free text,
        bytes, lists/tuples, dicts with text keys) — so no storage object, function, Fixed or context can cross —
        nested at most MAX_VALUE_DEPTH deep, at most MAX_VALUE_NODES values and ``max_bytes`` encoded. Iterative
        (no recursion whatever the value), each container charged before it is copied. Tuples become lists."""
        charge = self.charge

        def scalar_size(c: Any) -> int:
            tc = type(c)
            if tc is str:
                if c.isascii():
                    n = len(c)
                else:
                    if not is_plain_text(c):
                        raise ContractError(ErrorCode.CODEC, f"{what}: text with lone surrogates")
                    n = len(c.encode("utf-8"))
                return _str_header(n) + n
            if tc is int:
                if not CODEC_MIN_INT <= c <= CODEC_MAX_INT:
                    raise ContractError(ErrorCode.CODEC, f"{what}: integers are within [-2**63, 2**64-1]")
                return compute_packed_int_size(c)
            if c is None or tc is bool:
                return 1
            if tc is bytes:
                n = len(c)
                return (2 if n <= 255 else 3 if n <= 65535 else 5) + n
            raise ContractError(ErrorCode.CODEC, f"{what}: a {tc.__name__} cannot cross the contract boundary "
                                                 f"(None, bool, int, str, bytes, list, dict only)")

        t = type(value)
        if t is not list and t is not tuple and t is not dict:
            size = scalar_size(value)
            if size > max_bytes:
                raise _limit(f"{what}: encoded bytes", size, max_bytes)
            charge(1 + size // BYTES_PER_FUEL)
            return value, size
        nodes = 0
        size = 0
        holder: list[Any] = [None]
        stack: list[tuple[Any, Any, Any, int]] = [(value, holder, 0, 0)]
        while stack:
            v, parent, slot, depth = stack.pop()
            t = type(v)
            if depth >= MAX_VALUE_DEPTH:
                raise ContractError(ErrorCode.LIMIT, f"{what} nested deeper than {MAX_VALUE_DEPTH}")
            n = len(v)
            nodes += n
            if nodes > MAX_VALUE_NODES:
                raise _limit(f"{what}: values", nodes, MAX_VALUE_NODES)
            charge(1 + n // COPY_NODES_PER_FUEL)
            before = size
            size += _header(n)
            out: Any
            # Short ASCII text and short bytes -- most of what crosses -- are sized inline (the same sizes
            # scalar_size gives: a 1-byte header up to 31 characters, a 2-byte one up to 255 bytes); everything
            # else goes through scalar_size, which also refuses what may not cross.
            if t is dict:
                out = {}
                for k, c in v.items():
                    if type(k) is not str:
                        raise ContractError(ErrorCode.CODEC, f"{what}: map keys are text, not {type(k).__name__}")
                    if len(k) <= 31 and k.isascii():
                        size += 1 + len(k)
                    else:
                        size += scalar_size(k)
                    tc = type(c)
                    if tc is str and len(c) <= 31 and c.isascii():
                        size += 1 + len(c)
                        out[k] = c
                    elif tc is bytes and len(c) <= 255:
                        size += 2 + len(c)
                        out[k] = c
                    elif tc is list or tc is tuple or tc is dict:
                        out[k] = None
                        stack.append((c, out, k, depth + 1))
                    else:
                        size += scalar_size(c)
                        out[k] = c
            else:
                out = [None] * n
                for i, c in enumerate(v):
                    tc = type(c)
                    if tc is str and len(c) <= 31 and c.isascii():
                        size += 1 + len(c)
                        out[i] = c
                    elif tc is bytes and len(c) <= 255:
                        size += 2 + len(c)
                        out[i] = c
                    elif tc is list or tc is tuple or tc is dict:
                        stack.append((c, out, i, depth + 1))
                    else:
                        size += scalar_size(c)
                        out[i] = c
            if size > max_bytes:
                raise _limit(f"{what}: encoded bytes", size, max_bytes)
            charge((size - before) // BYTES_PER_FUEL)
            parent[slot] = out
        return holder[0], size

    def copy_value(self, value: Any, what: str, max_bytes: int = MAX_RESULT_BYTES) -> Any:
        """The checked, charged copy of a value (process_value without the size)."""
        return self.process_value(value, what, max_bytes)[0]

    # ------------------------------------------------------------------------------------------ entry

    def run_call(self, address: str, method: str, args: list[Any], ctx: Context, fuel: int,
                 read_only: bool = False) -> CallOutcome:
        """Call ``method`` of the contract at ``address``. Never raises for anything the contract does; the
        caller discards the state writes when the outcome is not ok."""
        self.used, self.limit, self.depth = 0, fuel, 0
        self.events = []
        self.event_bytes = 0
        self.read_only = read_only
        self.instantiating = False
        try:
            if type(args) is not list and type(args) is not tuple:
                raise _type_error("arguments are a list")
            fresh = self.copy_value(list(args), "arguments", MAX_ARG_BYTES)
            result = self._invoke(address, method, fresh, ctx)
            value, size = self.process_value(result, "return value", MAX_RESULT_BYTES)
            self.charge(size // OUT_BYTES_PER_FUEL)
        except Exception as exc:
            code, detail = compute_error(exc)
            text = compute_error_text(code, get_contract_line(exc.__traceback__), detail)
            self.instantiating = False
            return CallOutcome(False, None, text, min(self.used, self.limit), code is ErrorCode.OUT_OF_FUEL, (),
                               code.value)
        return CallOutcome(True, value, None, self.used, False, tuple(self.events))

    def _invoke(self, address: str, method: str, args: list[Any], ctx: Context) -> Any:
        g, exports, _ = self._instance(address)
        fn = g.get(method) if type(method) is str and method in exports else None
        if type(fn) is not FunctionType:
            raise ContractError(ErrorCode.NOT_FOUND, "the contract has no exported function of that name")
        code = fn.__code__
        most = code.co_argcount
        least = most - len(fn.__defaults__ or ())
        if not least <= len(args) <= most:
            raise _type_error(f"the function takes {least}..{most} arguments, {len(args)} given")
        prev = self.ctx
        self.ctx = ctx
        g["ctx"] = ctx
        try:
            return fn(*args)
        finally:
            self.ctx = prev
            g["ctx"] = prev

    def _instance(self, address: str) -> tuple[dict[str, Any], frozenset[str], CompiledContract]:
        inst = self._instances.get(address)
        if inst is not None:
            return inst
        compiled = self.load_code(address)
        if compiled is None:
            raise ContractError(ErrorCode.NOT_FOUND, "no contract at that address")
        self.charge(compiled.load_fuel - DEFAULT_PRICES.deploy + self.prices.deploy)
        g = self._make_globals(address)
        g["_q_lines"] = compiled.lines
        exported: set[str] = set()
        rt = self

        def export(fn: Any) -> Any:
            if not rt.instantiating or type(fn) is not FunctionType:
                raise ContractError(ErrorCode.STORAGE, "@export marks module-level functions only")
            exported.add(fn.__name__)
            return fn

        g["export"] = export
        self.instantiating = True
        try:
            exec(compiled.code, g)  # validated, instrumented contract code with guarded builtins only
        finally:
            self.instantiating = False
        for name, obj in list(g.items()):
            if isinstance(obj, _Storage):
                obj.name = name
                obj.ns = "c:" + address
        inst = (g, frozenset(exported), compiled)
        self._instances[address] = inst
        return inst

    # ------------------------------------------------------------------------------------------ globals

    def _make_globals(self, address: str) -> dict[str, Any]:
        rt = self
        charge = self.charge

        def q_enter() -> None:
            rt.used += PRICE_ENTER
            if rt.used > rt.limit:
                raise OutOfFuel
            rt.depth += 1
            if rt.depth > MAX_DEPTH:
                raise ContractError(ErrorCode.STACK, f"call stack deeper than {MAX_DEPTH}")

        def q_exit() -> None:
            rt.depth -= 1

        def q_tick(n: int = PRICE_ITER) -> None:
            rt.used += n
            if rt.used > rt.limit:
                raise OutOfFuel

        def q_iter(it: Any, weight: int = 0) -> Iterator[Any]:
            _sized(it)
            return _metered(it, PRICE_ITER + weight)

        def _metered(it: Iterable[Any], price: int) -> Iterator[Any]:
            for x in it:
                rt.used += price
                if rt.used > rt.limit:
                    raise OutOfFuel
                yield x

        def q_call(f: Any) -> Any:
            rt.used += PRICE_CALL
            if rt.used > rt.limit:
                raise OutOfFuel
            return f

        def collect(x: Any) -> list[Any]:
            n = _sized(x)
            if n > MAX_SEQ:
                raise _limit(f"{type(x).__name__} length", n, MAX_SEQ)
            charge(1 + n // ITEMS_PER_FUEL)
            return list(x)

        # -- arithmetic ------------------------------------------------------------------------------

        def int_binop(op: str, a: int, b: int) -> Any:
            la, lb = a.bit_length(), b.bit_length()
            if op in _LINEAR_INT_OPS:
                charge(PRICE_OP + (la if la > lb else lb) // INT_ADD_BITS_PER_FUEL)
            elif op == "*":
                if la + lb > MAX_INT_BITS + 1:
                    raise _limit("product bits", la + lb, MAX_INT_BITS)
                charge(PRICE_OP + la * lb // INT_MUL_BITS2_PER_FUEL)
            elif op == "//" or op == "%":
                charge(PRICE_OP + (la * lb + la) // INT_MUL_BITS2_PER_FUEL)
            elif op == "<<":
                if a and b > MAX_INT_BITS:
                    raise _limit("shift", b, MAX_INT_BITS)
                if a and la + b > MAX_INT_BITS:
                    raise _limit("integer bits", la + b, MAX_INT_BITS)
                charge(PRICE_OP + (la + max(b, 0)) // INT_ADD_BITS_PER_FUEL)
            else:  # "**"
                if b < 0:
                    raise ContractError(ErrorCode.ARITHMETIC, "negative exponents give fractions; use std.Fixed")
                if a in (0, 1, -1) or b in (0, 1):
                    charge(PRICE_OP)
                else:
                    low = b * (la - 1) + 1
                    if low > MAX_INT_BITS:
                        raise _limit("power bits", low, MAX_INT_BITS)
                    high = b * la
                    charge(PRICE_OP + high * high // INT_MUL_BITS2_PER_FUEL)
            return _check_int(_BINOPS[op](a, b))

        def q_binop(op: str, a: Any, b: Any) -> Any:
            ta, tb = type(a), type(b)
            if ta in _INT_TYPES and tb in _INT_TYPES:
                return int_binop(op, a, b)
            if ta is std.Fixed or tb is std.Fixed:
                if op not in ("+", "-", "*"):
                    raise _type_error(f"Fixed supports +, - and * (and .div), not {op}")
                charge(PRICE_FIXED + _fixed_bits(a, b) // INT_ADD_BITS_PER_FUEL)
                return _BINOPS[op](a, b)
            if op == "+" and ta is tb and ta in _SEQ_TYPES:
                n = len(a) + len(b)
                if n > MAX_SEQ:
                    raise _limit(f"{ta.__name__} length", n, MAX_SEQ)
                charge(PRICE_OP + n // (BYTES_PER_FUEL if ta is str or ta is bytes else ITEMS_PER_FUEL))
                return a + b
            if op == "*" and ((ta in _SEQ_TYPES and tb in _INT_TYPES) or (tb in _SEQ_TYPES and ta in _INT_TYPES)):
                seq, k = (a, b) if tb in _INT_TYPES else (b, a)
                n = len(seq) * max(k, 0)
                if n > MAX_SEQ:
                    raise _limit(f"{type(seq).__name__} length", n, MAX_SEQ)
                ts = type(seq)
                charge(PRICE_OP + n // (BYTES_PER_FUEL if ts is str or ts is bytes else ITEMS_PER_FUEL))
                return seq * k
            if op == "|" and ta is dict and tb is dict:
                n = len(a) + len(b)
                if n > MAX_SEQ:
                    raise _limit("dict length", n, MAX_SEQ)
                charge(PRICE_OP + n // ITEMS_PER_FUEL)
                return a | b
            raise _type_error(f"{op} is not supported between {ta.__name__} and {tb.__name__}")

        def _fixed_bits(a: Any, b: Any) -> int:
            return sum(x.units.bit_length() if type(x) is std.Fixed else x.bit_length() if type(x) in _INT_TYPES
                       else 0 for x in (a, b))

        # -- comparisons -----------------------------------------------------------------------------

        def q_compare(op: str, a: Any, b: Any) -> Any:
            if op == "in" or op == "not in":
                tb = type(b)
                if tb is dict:
                    _check_key(a)
                    charge(PRICE_OP)
                elif tb is str or tb is bytes:
                    ta = type(a)
                    if ta is tb:
                        charge(PRICE_OP + len(b) // BYTES_PER_FUEL + len(b) * min(len(a), 256) // SEARCH_PER_FUEL)
                    elif tb is bytes and ta in _INT_TYPES:
                        charge(PRICE_OP + len(b) // BYTES_PER_FUEL)
                    else:
                        raise _type_error(f"`in` {tb.__name__} needs a {tb.__name__}")
                elif tb is list or tb is tuple:
                    charge(PRICE_OP + len(b) * compute_weight(a) // ITEMS_PER_FUEL)
                elif tb is range:
                    if type(a) not in _INT_TYPES:
                        raise _type_error("`in` a range needs an int")
                    charge(PRICE_OP)
                else:
                    raise _type_error(f"`in` is not supported for {tb.__name__}")
                return (a in b) if op == "in" else (a not in b)
            charge(PRICE_OP + (compute_weight(a) + compute_weight(b)) // WEIGHT_PER_FUEL)
            return _CMPOPS[op](a, b)

        def q_chain(ops: list[str], operands: list[Any]) -> bool:
            for i, op in enumerate(ops):
                a, b = operands[i], operands[i + 1]
                if op == "is":
                    ok = a is b
                elif op == "is not":
                    ok = a is not b
                else:
                    ok = q_compare(op, a, b)
                if not ok:
                    return False
            return True

        # -- subscripts ------------------------------------------------------------------------------

        def q_key(k: Any) -> Any:
            return _check_key(k)

        def q_getitem(obj: Any, key: Any) -> Any:
            t = type(obj)
            rt.used += PRICE_OP
            if rt.used > rt.limit:
                raise OutOfFuel
            if t is dict:
                return obj[_check_key(key)]
            if t in _INDEXABLE:
                return obj[_index(key, "an index")]
            if t is _Hash:
                return obj[key]
            raise _type_error(f"{t.__name__} cannot be indexed")

        def q_setitem(obj: Any, key: Any, value: Any) -> None:
            t = type(obj)
            charge(PRICE_OP)
            if t is dict:
                if _check_key(key) not in obj and len(obj) >= MAX_SEQ:
                    raise _limit("dict length", len(obj) + 1, MAX_SEQ)
                obj[key] = value
            elif t is list:
                obj[_index(key, "an index")] = value
            elif t is _Hash:
                obj[key] = value
            else:
                raise _type_error(f"{t.__name__} items cannot be assigned")

        def q_delitem(obj: Any, key: Any) -> None:
            t = type(obj)
            if t is dict:
                charge(PRICE_OP)
                del obj[_check_key(key)]
            elif t is list:
                charge(PRICE_OP + len(obj) // ITEMS_PER_FUEL)
                del obj[_index(key, "an index")]
            elif t is _Hash:
                del obj[key]
            else:
                raise _type_error(f"{t.__name__} items cannot be deleted")

        def q_augitem(obj: Any, key: Any, op: str, value: Any) -> None:
            charge(PRICE_OP)
            q_setitem(obj, key, q_binop(op, q_getitem(obj, key), value))

        def _slice_len(n: int, lo: Any, hi: Any, step: Any) -> int:
            return len(range(*slice(_index(lo, "a slice bound"), _index(hi, "a slice bound"),
                                    _index(step, "a slice step")).indices(n)))

        def q_slice(s: Any, lo: Any, hi: Any, step: Any) -> Any:
            t = type(s)
            if t not in _INDEXABLE:
                raise _type_error(f"{t.__name__} cannot be sliced")
            if t is range:
                _slice_len(0, lo, hi, step)
                charge(PRICE_OP)
                return s[lo:hi:step]
            n = _slice_len(len(s), lo, hi, step)
            charge(PRICE_OP + n // (BYTES_PER_FUEL if t is str or t is bytes else ITEMS_PER_FUEL))
            return s[lo:hi:step]

        def q_setslice(obj: Any, lo: Any, hi: Any, step: Any, value: Any) -> None:
            if type(obj) is not list:
                raise _type_error(f"{type(obj).__name__} slices cannot be assigned")
            items = collect(value)
            removed = _slice_len(len(obj), lo, hi, step)
            n = len(obj) - removed + len(items)
            if n > MAX_SEQ:
                raise _limit("list length", n, MAX_SEQ)
            charge(PRICE_OP + (len(obj) + len(items)) // ITEMS_PER_FUEL)
            obj[lo:hi:step] = items

        def q_delslice(obj: Any, lo: Any, hi: Any, step: Any) -> None:
            if type(obj) is not list:
                raise _type_error(f"{type(obj).__name__} slices cannot be deleted")
            _slice_len(len(obj), lo, hi, step)
            charge(PRICE_OP + len(obj) // ITEMS_PER_FUEL)
            del obj[lo:hi:step]

        # -- f-strings -------------------------------------------------------------------------------

        def q_fstr(parts: list[Any]) -> str:
            texts = []
            total = 0
            for v in parts:
                t = type(v)
                if t is str:
                    s = v
                elif t is int:
                    charge(PRICE_OP + v.bit_length() * v.bit_length() // INT_MUL_BITS2_PER_FUEL)
                    s = str(v)
                elif t is bool or v is None:
                    s = str(v)
                elif t is std.Fixed:
                    charge(PRICE_CALL + v.units.bit_length() * v.units.bit_length() // INT_MUL_BITS2_PER_FUEL)
                    s = v.to_str()
                elif t is bytes:
                    if 4 * len(v) + 3 > MAX_SEQ:
                        raise _limit("f-string length", 4 * len(v) + 3, MAX_SEQ)
                    s = str(v)
                else:
                    raise _type_error(f"f-strings format numbers, text and bytes, not {t.__name__}")
                total += len(s)
                if total > MAX_SEQ:
                    raise _limit("f-string length", total, MAX_SEQ)
                texts.append(s)
            charge(PRICE_OP + total // BYTES_PER_FUEL)
            return "".join(texts)

        # -- methods ---------------------------------------------------------------------------------

        methods = self._methods(collect, q_binop)

        def q_method(obj: Any, name: str, /, *args: Any, **kw: Any) -> Any:
            rt.used += PRICE_CALL
            if rt.used > rt.limit:
                raise OutOfFuel
            h = methods.get((type(obj), name))
            if h is None:
                if name == "fromhex" and obj is safe_bytes:
                    h = methods[(bytes, "fromhex")]
                else:
                    raise _type_error(f"{type(obj).__name__} has no method {name}")
            return h(obj, *args, **kw)

        # -- the API ---------------------------------------------------------------------------------

        def emit(name: Any, data: Any = None) -> None:
            if type(name) is not str or not 0 < len(name) <= 128 or not is_plain_text(name):
                raise _type_error("an event name is text of 1..128 characters")
            if len(rt.events) >= MAX_EVENTS:
                raise _limit("events", len(rt.events) + 1, MAX_EVENTS)
            copy, size = rt.process_value(data, "event data", MAX_EVENT_BYTES)
            rt.event_bytes += size + len(name)
            if rt.event_bytes > MAX_CALL_EVENT_BYTES:
                raise _limit("event bytes of the call", rt.event_bytes, MAX_CALL_EVENT_BYTES)
            charge(rt.prices.emit + (size + len(name)) // OUT_BYTES_PER_FUEL)
            rt.events.append((rt.ctx.this, name, copy))

        def call(target: Any, method: Any, *args: Any) -> Any:
            charge(rt.prices.cross_call)
            if type(target) is not str or type(method) is not str:
                raise _type_error("call(address, method, *args) takes text address and method")
            fresh = rt.copy_value(list(args), "call arguments", MAX_ARG_BYTES)
            rt.depth += 1
            if rt.depth > MAX_DEPTH:
                raise ContractError(ErrorCode.STACK, f"call stack deeper than {MAX_DEPTH}")
            try:
                c = rt.ctx
                result = rt._invoke(target, method, fresh,
                                    Context(c.sender, c.org, c.height, c.time_ms, c.tx_hash, target, c.this))
            finally:
                rt.depth -= 1
            return rt.copy_value(result, "call result", MAX_RESULT_BYTES)

        def declared(default: Any) -> Any:
            if not rt.instantiating:
                raise ContractError(ErrorCode.STORAGE, "storage is declared at module level only")
            return rt.copy_value(default, "storage default", MAX_STORED_VALUE)

        def make_variable(default: Any = None) -> _Variable:
            return _Variable(rt, declared(default))

        def make_hash(default: Any = None) -> _Hash:
            return _Hash(rt, declared(default))

        std_module = std.make_module(self.hash_fn, charge, lambda v: rt.copy_value(v, "std value",
                                                                                   MAX_STORED_VALUE))

        def import_std(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (),
                       level: int = 0) -> Any:
            """``from std import …`` is the only import; validated at deploy, checked again here."""
            if name != "std" or level != 0:
                raise ContractError(ErrorCode.NOT_FOUND, "contracts import from std only")
            return std_module

        builtins = self._safe_builtins(collect, q_binop)
        safe_bytes = builtins["bytes"]
        builtins["__import__"] = import_std
        return {
            "__builtins__": builtins, "__name__": "contract",
            "_q_enter": q_enter, "_q_exit": q_exit, "_q_tick": q_tick, "_q_iter": q_iter, "_q_call": q_call,
            "_q_binop": q_binop, "_q_augitem": q_augitem, "_q_compare": q_compare, "_q_chain": q_chain,
            "_q_slice": q_slice, "_q_method": q_method, "_q_fstr": q_fstr, "_q_key": q_key,
            "_q_getitem": q_getitem, "_q_setitem": q_setitem, "_q_delitem": q_delitem,
            "_q_setslice": q_setslice, "_q_delslice": q_delslice,
            "emit": emit, "call": call, "Variable": make_variable, "Hash": make_hash, "ctx": self.ctx,
        }

    # ------------------------------------------------------------------------------------------ methods

    def _methods(self, collect: Callable[[Any], list[Any]],
                 q_binop: Callable[[str, Any, Any], Any]) -> dict[tuple[type, str], Callable[..., Any]]:
        """The closed table of methods contract code may call, each priced by its operands before it runs.
        Anything not here (including every method of range, zip, functions, Context) is refused."""
        charge = self.charge
        table: dict[tuple[type, str], Callable[..., Any]] = {}

        def scan_args(args: tuple[Any, ...]) -> int:
            n = 0
            for a in args:
                ta = type(a)
                if ta is str or ta is bytes:
                    n += len(a)
                elif ta is tuple:
                    for x in a:
                        if type(x) is not str and type(x) is not bytes:
                            raise _type_error("a tuple argument holds text or bytes")
                        n += len(x)
                elif ta not in _INT_TYPES and a is not None:
                    raise _type_error(f"bad argument type {ta.__name__}")
            return n

        def searching(name: str) -> Callable[..., Any]:
            """find, count, index, startswith, endswith, split(sep), strip(chars)…: output no larger than the
            input; priced by haystack × needle (the worst case of CPython's search)."""
            def run(obj: Any, *args: Any) -> Any:
                needle = scan_args(args)
                n = len(obj)
                charge(PRICE_OP + (n + needle) // BYTES_PER_FUEL + n * min(needle, 256) // SEARCH_PER_FUEL)
                return getattr(obj, name)(*args)
            return run

        for t in (str, bytes):
            for name in ("find", "count", "index", "startswith", "endswith"):
                table[(t, name)] = searching(name)

        def ascii_map(name: str) -> Callable[..., Any]:
            def run(obj: Any) -> Any:
                charge(PRICE_OP + len(obj) // BYTES_PER_FUEL)
                if type(obj) is bytes or obj.isascii():
                    return getattr(obj, name)()
                r = getattr(_ascii_bytes(obj), name)()
                return r.decode("utf-8") if type(r) is bytes else r
            return run

        for name in ("lower", "upper", "title", "capitalize", "isdigit", "isalpha", "isalnum"):
            table[(str, name)] = table[(bytes, name)] = ascii_map(name)

        def stripping(name: str) -> Callable[..., Any]:
            search = searching(name)

            def run(obj: Any, chars: Any = None) -> Any:
                if chars is not None:
                    return search(obj, chars)
                charge(PRICE_OP + len(obj) // BYTES_PER_FUEL)
                return getattr(obj, name)(_ASCII_SPACE if type(obj) is str else None)
            return run

        for name in ("strip", "lstrip", "rstrip"):
            table[(str, name)] = table[(bytes, name)] = stripping(name)

        split_search = searching("split")

        def split(obj: Any, sep: Any = None, maxsplit: Any = -1) -> Any:
            if type(maxsplit) not in _INT_TYPES:
                raise _type_error("maxsplit must be an int")
            if sep is not None:
                return split_search(obj, sep, maxsplit)
            if type(obj) is bytes or (obj.isascii() and not any(c in obj for c in _ASCII_SEPARATORS)):
                charge(PRICE_OP + len(obj) // BYTES_PER_FUEL * 2)
                return obj.split(None, maxsplit)
            charge(PRICE_OP + len(obj) // 2)
            return [p.decode("utf-8") for p in _ascii_bytes(obj).split(None, maxsplit)]

        table[(str, "split")] = table[(bytes, "split")] = split

        def replace(obj: Any, old: Any, new: Any, count: Any = -1) -> Any:
            if type(old) is not type(obj) or type(new) is not type(obj) or type(count) not in _INT_TYPES:
                raise _type_error("replace(old, new[, count]) takes two of the same type and an int")
            n = len(obj)
            charge(PRICE_OP + n * min(len(old), 256) // SEARCH_PER_FUEL + n // BYTES_PER_FUEL)
            hits = obj.count(old) if old else n + 1
            if 0 <= count < hits:
                hits = count
            size = n + hits * (len(new) - len(old))
            if size > MAX_SEQ:
                raise _limit(f"{type(obj).__name__} length", size, MAX_SEQ)
            charge(size // BYTES_PER_FUEL)
            return obj.replace(old, new, count)

        table[(str, "replace")] = table[(bytes, "replace")] = replace

        def join(obj: Any, parts: Any) -> Any:
            items = collect(parts)
            t = type(obj)
            total = len(obj) * max(len(items) - 1, 0)
            for p in items:
                if type(p) is not t:
                    raise _type_error(f"join takes {t.__name__} items only")
                total += len(p)
            if total > MAX_SEQ:
                raise _limit(f"{t.__name__} length", total, MAX_SEQ)
            charge(PRICE_OP + total // BYTES_PER_FUEL)
            return obj.join(items)

        table[(str, "join")] = table[(bytes, "join")] = join

        def encode(obj: str, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
            enc = _text_encoding(encoding, errors)
            if 4 * len(obj) > MAX_SEQ and len(obj) > MAX_SEQ:
                raise _limit("bytes length", len(obj), MAX_SEQ)
            charge(PRICE_OP + 4 * len(obj) // BYTES_PER_FUEL)
            return _check_len(obj.encode(enc, "strict"))

        def decode(obj: bytes, encoding: Any = "utf-8", errors: Any = "strict") -> str:
            enc = _text_encoding(encoding, errors)
            charge(PRICE_OP + 2 * len(obj) // BYTES_PER_FUEL)
            return obj.decode(enc, "strict")

        def to_hex(obj: bytes) -> str:
            if 2 * len(obj) > MAX_SEQ:
                raise _limit("str length", 2 * len(obj), MAX_SEQ)
            charge(PRICE_OP + 2 * len(obj) // BYTES_PER_FUEL)
            return obj.hex()

        def fromhex(_obj: Any, text: Any) -> bytes:
            if type(text) is not str or not text.isascii():
                raise _type_error("fromhex takes ASCII text")
            charge(PRICE_OP + len(text) // BYTES_PER_FUEL)
            return bytes.fromhex(text)

        table[(str, "encode")] = encode
        table[(bytes, "decode")] = decode
        table[(bytes, "hex")] = to_hex
        table[(bytes, "fromhex")] = fromhex

        # list / tuple / dict

        def append(obj: list[Any], x: Any) -> None:
            if len(obj) >= MAX_SEQ:
                raise _limit("list length", len(obj) + 1, MAX_SEQ)
            charge(PRICE_OP)
            obj.append(x)

        def pop(obj: list[Any], *args: Any) -> Any:
            if args:
                _index(args[0], "an index")
            charge(PRICE_OP + (len(obj) // ITEMS_PER_FUEL if args else 0))
            return obj.pop(*args)

        def insert(obj: list[Any], i: Any, x: Any) -> None:
            _index(i, "an index")
            if len(obj) >= MAX_SEQ:
                raise _limit("list length", len(obj) + 1, MAX_SEQ)
            charge(PRICE_OP + len(obj) // ITEMS_PER_FUEL)
            obj.insert(i, x)

        def comparing(name: str) -> Callable[..., Any]:
            """index, count, remove: one comparison per item, each at most the weight of the argument."""
            def run(obj: Any, x: Any, *args: Any) -> Any:
                for a in args:
                    _index(a, "an index")
                charge(PRICE_OP + len(obj) * compute_weight(x) // ITEMS_PER_FUEL)
                return getattr(obj, name)(x, *args)
            return run

        def sort(obj: list[Any], key: Any = None, reverse: Any = False) -> None:
            n = len(obj)
            charge(PRICE_OP + compute_weight(obj) * max(n.bit_length(), 1) // SORT_WEIGHT_PER_FUEL)
            obj.sort(key=key, reverse=bool(reverse))

        def linear(name: str) -> Callable[..., Any]:
            def run(obj: Any) -> Any:
                charge(PRICE_OP + len(obj) // ITEMS_PER_FUEL)
                return getattr(obj, name)()
            return run

        def extend(obj: list[Any], it: Any) -> None:
            items = collect(it)
            if len(obj) + len(items) > MAX_SEQ:
                raise _limit("list length", len(obj) + len(items), MAX_SEQ)
            obj.extend(items)

        table[(list, "append")] = append
        table[(list, "pop")] = pop
        table[(list, "insert")] = insert
        table[(list, "sort")] = sort
        table[(list, "extend")] = extend
        for name in ("index", "count", "remove"):
            table[(list, name)] = comparing(name)
        for name in ("index", "count"):
            table[(tuple, name)] = comparing(name)
        for name in ("reverse", "copy", "clear"):
            table[(list, name)] = linear(name)
        for name in ("copy", "clear"):
            table[(dict, name)] = linear(name)

        def d_get(obj: dict[Any, Any], k: Any, default: Any = None) -> Any:
            charge(PRICE_OP)
            return obj.get(_check_key(k), default)

        def d_pop(obj: dict[Any, Any], k: Any, *default: Any) -> Any:
            charge(PRICE_OP)
            return obj.pop(_check_key(k), *default)

        def d_setdefault(obj: dict[Any, Any], k: Any, default: Any = None) -> Any:
            charge(PRICE_OP)
            if _check_key(k) not in obj and len(obj) >= MAX_SEQ:
                raise _limit("dict length", len(obj) + 1, MAX_SEQ)
            return obj.setdefault(k, default)

        def d_view(name: str) -> Callable[..., Any]:
            """keys(), values(), items() are lists (insertion order): no set operations on views, ever."""
            def run(obj: dict[Any, Any]) -> list[Any]:
                charge(PRICE_OP + len(obj) // ITEMS_PER_FUEL * (2 if name == "items" else 1))
                return list(getattr(obj, name)())
            return run

        def d_update(obj: dict[Any, Any], other: Any = (), **kw: Any) -> None:
            pairs = _pairs(other, collect)
            pairs.extend(kw.items())
            if len(obj) + len(pairs) > MAX_SEQ:
                raise _limit("dict length", len(obj) + len(pairs), MAX_SEQ)
            charge(PRICE_OP + len(pairs))
            obj.update(pairs)

        table[(dict, "get")] = d_get
        table[(dict, "pop")] = d_pop
        table[(dict, "setdefault")] = d_setdefault
        table[(dict, "update")] = d_update
        for name in ("keys", "values", "items"):
            table[(dict, name)] = d_view(name)

        # storage, Fixed

        table[(_Variable, "get")] = lambda obj: obj.get()
        table[(_Variable, "set")] = lambda obj, value: obj.set(value)
        table[(_Hash, "get")] = lambda obj, key, default=None: obj.get(key, default)

        def fixed(name: str) -> Callable[..., Any]:
            def run(obj: std.Fixed, *args: Any) -> Any:
                bits = obj.units.bit_length() + sum(
                    a.units.bit_length() if type(a) is std.Fixed else a.bit_length() if type(a) in _INT_TYPES
                    else 0 for a in args)
                charge(PRICE_FIXED + bits * bits // INT_MUL_BITS2_PER_FUEL)
                return getattr(obj, name)(*args)
            return run

        for name in ("add", "sub", "mul", "div", "to_str"):
            table[(std.Fixed, name)] = fixed(name)
        return table

    # ------------------------------------------------------------------------------------------ built-ins

    def _safe_builtins(self, collect: Callable[[Any], list[Any]],
                       q_binop: Callable[[str, Any, Any], Any]) -> dict[str, Any]:
        charge = self.charge

        def weighed(items: list[Any]) -> None:
            charge(PRICE_OP + compute_weight(items) // WEIGHT_PER_FUEL)

        def safe_list(x: Any = ()) -> list[Any]:
            return collect(x)

        def safe_tuple(x: Any = ()) -> tuple[Any, ...]:
            return tuple(collect(x))

        def safe_dict(x: Any = (), **kw: Any) -> dict[Any, Any]:
            pairs = _pairs(x, collect)
            pairs.extend(kw.items())
            if len(pairs) > MAX_SEQ:
                raise _limit("dict length", len(pairs), MAX_SEQ)
            charge(PRICE_OP + len(pairs))
            return dict(pairs)

        def safe_sorted(x: Any, key: Any = None, reverse: Any = False) -> list[Any]:
            items = collect(x)
            charge(PRICE_OP + compute_weight(items) * max(len(items).bit_length(), 1) // SORT_WEIGHT_PER_FUEL)
            return sorted(items, key=key, reverse=bool(reverse))

        def safe_reversed(x: Any) -> list[Any]:
            items = collect(x)
            items.reverse()
            return items

        def safe_enumerate(x: Any, start: Any = 0) -> list[tuple[int, Any]]:
            if type(start) not in _INT_TYPES:
                raise _type_error("enumerate start must be an int")
            items = collect(x)
            charge(len(items))
            return list(enumerate(items, start))

        def safe_zip(*its: Any, strict: Any = False) -> list[tuple[Any, ...]]:
            sizes = [_sized(i) for i in its]
            n = min(sizes, default=0)
            if strict and any(s != n for s in sizes):
                raise ContractError(ErrorCode.VALUE, "zip(strict=True) of different lengths")
            cols = [collect(i if s == n else (list(i)[:n] if type(i) is dict else i[:n])) for i, s in
                    zip(its, sizes, strict=True)]
            charge(n * max(len(cols), 1) // ITEMS_PER_FUEL)
            return list(zip(*cols, strict=False))

        def extremum(fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, key: Any = None, default: Any = _MISSING) -> Any:
                items = collect(args[0]) if len(args) == 1 else list(args)
                weighed(items)
                if default is _MISSING:
                    return fn(items, key=key)
                return fn(items, key=key, default=default)
            return run

        def safe_sum(x: Any, start: Any = 0) -> Any:
            items = collect(x)
            if type(start) in _INT_TYPES and all(type(i) in _INT_TYPES for i in items):
                bits = start.bit_length() + sum(i.bit_length() for i in items)
                charge(PRICE_OP + bits // INT_ADD_BITS_PER_FUEL + len(items))
                return _check_int(sum(items, start))
            acc = start
            for i in items:  # each addition priced and size-checked like `acc + i`
                acc = q_binop("+", acc, i)
            return acc

        def truth(fn: Callable[[Iterable[Any]], bool]) -> Callable[[Any], bool]:
            def run(x: Any) -> bool:
                return fn(collect(x))
            return run

        def safe_str(x: Any = "") -> str:
            t = type(x)
            if t is str:
                return x
            if t is int:
                charge(PRICE_OP + x.bit_length() * x.bit_length() // INT_MUL_BITS2_PER_FUEL)
                return str(x)
            if t is bool or x is None:
                return str(x)
            if t is std.Fixed:
                charge(PRICE_CALL + x.units.bit_length() * x.units.bit_length() // INT_MUL_BITS2_PER_FUEL)
                return x.to_str()
            raise _type_error(f"str() of {t.__name__} is not available (use std.encode, or b.hex())")

        def safe_bytes(x: Any = b"") -> bytes:
            t = type(x)
            if t is int:
                if not 0 <= x <= MAX_SEQ:
                    raise _limit("bytes length", x, MAX_SEQ)
                charge(PRICE_OP + x // BYTES_PER_FUEL)
                return bytes(x)
            if t is bytes:
                return x
            if t is str:
                raise _type_error("bytes(str) needs an encoding: use s.encode()")
            items = collect(x)
            charge(len(items))
            if not all(type(i) in _INT_TYPES for i in items):
                raise _type_error("bytes() of a list takes ints 0..255")
            return bytes(items)

        def safe_int(x: Any = 0, base: Any = _MISSING) -> int:
            t = type(x)
            if t in _INT_TYPES and base is _MISSING:
                return int(x)
            if t is not str and t is not bytes:
                raise _type_error(f"int() of {t.__name__} is not available")
            if len(x) > MAX_INT_TEXT:
                raise _limit("integer text length", len(x), MAX_INT_TEXT)
            if not x.isascii():
                raise ContractError(ErrorCode.VALUE, "integer text is ASCII digits")
            charge(PRICE_OP + len(x) * len(x) // (INT_MUL_BITS2_PER_FUEL // 16))
            if base is _MISSING:
                return _check_int(int(x))
            if type(base) is not int:
                raise _type_error("base must be an int")
            return _check_int(int(x, base))

        def safe_range(*args: Any) -> range:
            if not 1 <= len(args) <= 3 or not all(type(a) in _INT_TYPES for a in args):
                raise _type_error("range() takes 1 to 3 ints")
            charge(PRICE_CALL)
            return range(*args)

        def safe_divmod(a: Any, b: Any) -> tuple[int, int]:
            if type(a) not in _INT_TYPES or type(b) not in _INT_TYPES:
                raise _type_error("divmod() takes ints")
            q = q_binop("//", a, b)
            charge(PRICE_OP)
            return q, a % b

        def safe_chr(i: Any) -> str:
            if type(i) not in _INT_TYPES:
                raise _type_error("chr() takes an int")
            if 0xD800 <= i <= 0xDFFF:
                raise ContractError(ErrorCode.VALUE, "chr() of a surrogate code point")
            return chr(i)

        def safe_ord(c: Any) -> int:
            if type(c) is not str and type(c) is not bytes:
                raise _type_error("ord() takes one character")
            return ord(c)

        def safe_len(x: Any) -> int:
            t = type(x)
            if t not in _ITERABLE_TYPES:
                raise _type_error(f"len() of {t.__name__}")
            return len(x)

        def safe_abs(x: Any) -> Any:
            if type(x) not in _INT_TYPES:
                raise _type_error("abs() takes an int")
            return abs(x)

        def safe_bool(x: Any = False) -> bool:
            return bool(x)

        def safe_isinstance(x: Any, t: Any) -> bool:
            # In contract code `int`, `str`, … name the guarded constructors below; map them back to the types.
            ts = t if type(t) is tuple else (t,)
            types = tuple(type_of.get(tt) if callable(tt) else None for tt in ts)
            if not types or any(tt is None for tt in types):
                raise _type_error("isinstance() checks int, str, bytes, bool, list, dict or tuple")
            if bool not in types and type(x) is bool and int in types:
                return False  # True is not a number here: a flag passed as an amount is a mistake
            return isinstance(x, types)  # type: ignore[arg-type]

        def safe_hex(x: Any) -> str:
            if type(x) not in _INT_TYPES:
                raise _type_error("hex() takes an int; for bytes use b.hex()")
            charge(PRICE_OP + x.bit_length() // INT_ADD_BITS_PER_FUEL)
            return hex(x)

        type_of: dict[Any, type] = {safe_int: int, safe_str: str, safe_bytes: bytes, safe_bool: bool,
                                     safe_list: list, safe_dict: dict, safe_tuple: tuple}
        return {
            "len": safe_len, "range": safe_range, "min": extremum(min), "max": extremum(max), "sum": safe_sum,
            "abs": safe_abs, "divmod": safe_divmod, "str": safe_str, "int": safe_int, "bool": safe_bool,
            "bytes": safe_bytes, "list": safe_list, "dict": safe_dict, "tuple": safe_tuple,
            "enumerate": safe_enumerate, "zip": safe_zip, "sorted": safe_sorted, "reversed": safe_reversed,
            "isinstance": safe_isinstance, "any": truth(any), "all": truth(all), "chr": safe_chr,
            "ord": safe_ord, "hex": safe_hex, "True": True, "False": False, "None": None,
        }


def _pairs(x: Any, collect: Callable[[Any], list[Any]]) -> list[tuple[Any, Any]]:
    """Key/value pairs for dict() and update(): from a dict, or a collection of 2-item lists/tuples with keys of
    the allowed types."""
    if type(x) is dict:
        if len(x) > MAX_SEQ:
            raise _limit("dict length", len(x), MAX_SEQ)
        return list(x.items())
    out = []
    for item in collect(x):
        if (type(item) is not tuple and type(item) is not list) or len(item) != 2:
            raise _type_error("dict() takes pairs (2-item tuples or lists)")
        out.append((_check_key(item[0]), item[1]))
    return out


class _Storage:
    """Persistent contract storage; bound to a name and namespace when the contract is instantiated."""

    __slots__ = ("default", "name", "ns", "rt")

    def __init__(self, rt: Runtime, default: Any):
        self.rt = rt
        self.default = default
        """A canonical copy of the declared default; every read returns a fresh copy of it."""
        self.name = ""
        self.ns = ""

    def _key(self, parts: tuple[Any, ...]) -> bytes:
        for p in parts:
            t = type(p)
            if t is int:
                if not CODEC_MIN_INT <= p <= CODEC_MAX_INT:
                    raise ContractError(ErrorCode.CODEC, "storage key integers are within [-2**63, 2**64-1]")
            elif t is str:
                if len(p) > MAX_STORAGE_KEY or not is_plain_text(p):
                    raise ContractError(ErrorCode.CODEC, f"storage key text is plain and at most "
                                                         f"{MAX_STORAGE_KEY} characters")
            elif t is bytes:
                if len(p) > MAX_STORAGE_KEY:
                    raise _limit("storage key bytes", len(p), MAX_STORAGE_KEY)
            elif t is not bool:
                raise _type_error(f"storage keys are text, bytes, int or bool, not {t.__name__}")
        if len(parts) > 16:
            raise _limit("storage key parts", len(parts), 16)
        key = encode_trusted([self.name, *parts])
        if len(key) > MAX_STORAGE_KEY:
            raise _limit("storage key bytes", len(key), MAX_STORAGE_KEY)
        return key

    def _read(self, parts: tuple[Any, ...]) -> Any:
        rt = self.rt
        raw = rt.state.get(self.ns, self._key(parts))
        rt.charge(rt.prices.read + (len(raw) if raw else 0) // READ_BYTES_PER_FUEL)
        if raw is None:
            return rt.copy_value(self.default, "storage default", MAX_STORED_VALUE)
        return decode_raw(raw)

    def _write(self, parts: tuple[Any, ...], value: Any) -> None:
        rt = self.rt
        if rt.read_only:
            raise ContractError(ErrorCode.READ_ONLY, "a read-only query cannot write storage")
        key = self._key(parts)
        if value is None:
            rt.charge(rt.prices.write)
            rt.state.put(self.ns, key, None)
            return
        copy, size = rt.process_value(value, "storage value", MAX_STORED_VALUE)
        rt.charge(rt.prices.write + (size + len(key)) // WRITE_BYTES_PER_FUEL)
        rt.state.put(self.ns, key, encode_trusted(copy))


class _Variable(_Storage):
    """``Variable(default)``: one stored value; ``v.get()``, ``v.set(x)``."""

    __slots__ = ()

    def get(self) -> Any:
        return self._read(())

    def set(self, value: Any) -> None:
        self._write((), value)


class _Hash(_Storage):
    """``Hash(default)``: a stored map with one- or multi-part keys; ``h[k]``, ``h[a, b] = v``, ``del h[k]``."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        return self._read(key if type(key) is tuple else (key,))

    def __setitem__(self, key: Any, value: Any) -> None:
        self._write(key if type(key) is tuple else (key,), value)

    def __delitem__(self, key: Any) -> None:
        self._write(key if type(key) is tuple else (key,), None)

    def get(self, key: Any, default: Any = None) -> Any:
        v = self._read(key if type(key) is tuple else (key,))
        return default if v is None else v
