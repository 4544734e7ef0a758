"""Running metered contract code: guards, safe built-ins, storage, context, events and cross-contract calls.

A `Runtime` serves one block (or one read-only query). Contract modules are instantiated once per runtime and per
contract; their globals hold only the contract API, the guarded built-ins and the `_q_` guards, and
``__builtins__`` is replaced, so nothing of the node is reachable. Everything is deterministic: fuel is a count of
operations and sizes, never time; there are no floats, sets, hashes of objects or clocks.

Price list (fuel units; docs/contracts.md):"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any, Final, Protocol

from qilian.contracts import std
from qilian.types.codec import CodecError, check_value, decode_raw, encode_trusted

PRICE_ENTER: Final = 20
"""A contract function entry."""
PRICE_ITER: Final = 1
"""A loop iteration or comprehension item."""
PRICE_CALL: Final = 2
"""A function or method call (plus the size-based price of sized operations)."""
PRICE_CROSS_CALL: Final = 500
"""Calling another contract (plus what it spends)."""
PRICE_READ: Final = 50
"""A storage read (plus 1 per 32 bytes read)."""
PRICE_WRITE: Final = 200
"""A storage write (plus 1 per 8 bytes written)."""
PRICE_EMIT: Final = 50
"""An event (plus 1 per 16 bytes)."""
BYTES_PER_FUEL: Final = 16
"""Sized operations cost 1 fuel per this many bytes or 1 per element they touch or build."""

MAX_SEQ: Final = 65_536
"""Longest string, bytes, list, tuple or dict a contract operation may build."""
MAX_INT_BITS: Final = 4096
"""Largest integer a contract operation may build."""
MAX_DEPTH: Final = 64
"""Deepest contract call stack (function calls and cross-contract calls together)."""
MAX_EVENTS: Final = 256
"""Most events one transaction may emit."""
MAX_STORED_VALUE: Final = 64 * 1024
"""Largest encoded storage value."""
MAX_STORAGE_KEY: Final = 1024
"""Largest encoded storage key."""
DEFAULT_FUEL: Final = 5_000_000
"""Fuel of a transaction's call (and the default of a read-only query)."""


class OutOfFuel(Exception):
    """The call used up its fuel; everything it did is rolled back."""


class ContractError(Exception):
    """A contract failed: a failed assertion, a limit, a bad argument. Everything it did is rolled back."""


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


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a call did."""

    ok: bool
    value: Any
    error: str | None
    fuel_used: int
    out_of_fuel: bool
    events: tuple[tuple[str, str, Any], ...] = ()
    """(source contract, name, data) of each event, when ok."""


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


def _size(x: Any) -> int:
    t = type(x)
    if t is int:
        return (x.bit_length() + 63) // 64
    if t is str or t is bytes or t is list or t is tuple or t is dict:
        return len(x)
    return 1


def _check_built(x: Any) -> Any:
    t = type(x)
    if t is int:
        if x.bit_length() > MAX_INT_BITS:
            raise ContractError(f"integer of {x.bit_length()} bits is over the limit of {MAX_INT_BITS}")
    elif (t is str or t is bytes or t is list or t is tuple or t is dict) and len(x) > MAX_SEQ:
        raise ContractError(f"{t.__name__} of {len(x)} items is over the limit of {MAX_SEQ}")
    return x


_BINOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add, "*": operator.mul, "**": operator.pow, "<<": operator.lshift, "%": operator.mod,
    "-": operator.sub, "//": operator.floordiv, ">>": operator.rshift, "|": operator.or_, "^": operator.xor,
    "&": operator.and_,
}
_CMPOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge, "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
    "is": operator.is_, "is not": operator.is_not,
}
_SEQ_TYPES: Final = (str, bytes, list, tuple)


class Runtime:
    """Executes contract calls against one state, with one fuel meter per top-level call."""

    def __init__(self, state: StateAccess, load_code: Callable[[str], CompiledContract | None],
                 hash_fn: Callable[[bytes], bytes]):
        self.state = state
        self.load_code = load_code
        self.hash_fn = hash_fn
        self.used = 0
        self.limit = 0
        self.depth = 0
        self.events: list[tuple[str, str, Any]] = []
        self.read_only = False
        self._instances: dict[str, tuple[dict[str, Any], frozenset[str], CompiledContract]] = {}
        self._ctx_stack: list[Context] = []
        self.ctx = Context("", "", 0, 0, "", "", "")

    # ------------------------------------------------------------------------------------------ metering

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise OutOfFuel(f"out of fuel after {self.limit} units")

    # ------------------------------------------------------------------------------------------ entry

    def run_call(self, address: str, method: str, args: list[Any], ctx: Context, fuel: int,
                 read_only: bool = False) -> CallOutcome:
        """Call ``method`` of the contract at ``address``. Never raises for anything the contract does; the
        caller discards the state writes when the outcome is not ok."""
        self.used, self.limit, self.depth = 0, fuel, 0
        self.events = []
        self.read_only = read_only
        self._ctx_stack = []
        try:
            value = self._invoke(address, method, args, ctx)
            check_value(value)
        except OutOfFuel as exc:
            return CallOutcome(False, None, str(exc), min(self.used, self.limit), True)
        except (ContractError, CodecError) as exc:
            return CallOutcome(False, None, str(exc), self.used, False)
        except AssertionError as exc:
            return CallOutcome(False, None, f"assertion failed: {exc}" if str(exc) else "assertion failed",
                               self.used, False)
        except RecursionError:
            return CallOutcome(False, None, "call stack too deep", self.used, False)
        except MemoryError:
            return CallOutcome(False, None, "out of memory", self.used, False)
        except Exception as exc:
            return CallOutcome(False, None, f"{type(exc).__name__}: {exc}"[:500], self.used, False)
        return CallOutcome(True, value, None, self.used, False, tuple(self.events))

    def _invoke(self, address: str, method: str, args: list[Any], ctx: Context) -> Any:
        g, exports, _ = self._instance(address)
        if method not in exports:
            raise ContractError(f"contract {address} has no exported function {method!r}")
        fn = g[method]
        prev = self.ctx
        self.ctx = ctx
        g["ctx"] = ctx
        try:
            return fn(*args)
        except TypeError as exc:
            raise ContractError(f"{method}: {exc}") from None
        finally:
            self.ctx = prev
            g["ctx"] = prev

    def _instance(self, address: str) -> tuple[dict[str, Any], frozenset[str], CompiledContract]:
        inst = self._instances.get(address)
        if inst is not None:
            return inst
        compiled = self.load_code(address)
        if compiled is None:
            raise ContractError(f"no contract at {address!r}")
        g = self._make_globals(address)
        exported: set[str] = set()

        def export(fn: Any) -> Any:
            exported.add(fn.__name__)
            return fn

        g["export"] = export
        exec(compiled.code, g)  # validated, instrumented contract code with guarded builtins only
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
                raise OutOfFuel(f"out of fuel after {rt.limit} units")
            rt.depth += 1
            if rt.depth > MAX_DEPTH:
                raise ContractError(f"call stack deeper than {MAX_DEPTH}")

        def q_exit() -> None:
            rt.depth -= 1

        def q_tick() -> None:
            rt.used += PRICE_ITER
            if rt.used > rt.limit:
                raise OutOfFuel(f"out of fuel after {rt.limit} units")

        def q_iter(it: Iterable[Any]) -> Iterator[Any]:
            for x in it:
                rt.used += PRICE_ITER
                if rt.used > rt.limit:
                    raise OutOfFuel(f"out of fuel after {rt.limit} units")
                yield x

        def q_call(f: Any) -> Any:
            rt.used += PRICE_CALL
            if rt.used > rt.limit:
                raise OutOfFuel(f"out of fuel after {rt.limit} units")
            return f

        def q_binop(op: str, a: Any, b: Any) -> Any:
            ta, tb = type(a), type(b)
            if ta is int and tb is int:
                if op == "**":
                    if b < 0:
                        raise ContractError("negative exponents give fractions; use std.Fixed")
                    bits = b * max(a.bit_length(), 1) if a not in (0, 1, -1) else 1
                    if bits > MAX_INT_BITS:
                        raise ContractError(f"{a} ** {b} is over the integer limit of {MAX_INT_BITS} bits")
                    charge(1 + bits // 64)
                elif op == "<<":
                    if b > MAX_INT_BITS:
                        raise ContractError(f"shift by {b} is over the integer limit of {MAX_INT_BITS} bits")
                    charge(1 + (a.bit_length() + max(b, 0)) // 64)
                elif op == "*":
                    bits = a.bit_length() + b.bit_length()
                    if bits > MAX_INT_BITS:
                        raise ContractError(f"product of {bits} bits is over the limit of {MAX_INT_BITS}")
                    charge(1 + bits // 64)
                else:
                    charge(1)
                return _check_built(_BINOPS[op](a, b))
            if op == "%" and (ta is str or ta is bytes):
                raise ContractError("%-formatting is not available; use f-strings")
            if op == "*":
                seq, n = (a, b) if tb is int else (b, a)
                if type(n) is not int or type(seq) not in _SEQ_TYPES:
                    raise ContractError(f"unsupported operand types for *: {ta.__name__}, {tb.__name__}")
                size = len(seq) * max(n, 0)
                if size > MAX_SEQ:
                    raise ContractError(f"result of {size} items is over the limit of {MAX_SEQ}")
                charge(1 + size // BYTES_PER_FUEL)
                return seq * n
            if op == "+" and ta in _SEQ_TYPES:
                if tb is not ta:
                    raise ContractError(f"cannot add {tb.__name__} to {ta.__name__}")
                size = len(a) + len(b)
                if size > MAX_SEQ:
                    raise ContractError(f"result of {size} items is over the limit of {MAX_SEQ}")
                charge(1 + size // BYTES_PER_FUEL)
                return a + b
            charge(1)
            return _check_built(_BINOPS[op](a, b))

        def q_augitem(target: Any, key: Any, op: str, value: Any) -> None:
            target[key] = q_binop(op, target[key], value)

        def q_compare(op: str, a: Any, b: Any) -> Any:
            charge(1 + (_size(a) + _size(b)) // BYTES_PER_FUEL)
            return _CMPOPS[op](a, b)

        def q_chain(ops: list[str], operands: list[Any]) -> bool:
            for i, op in enumerate(ops):
                if not q_compare(op, operands[i], operands[i + 1]):
                    return False
            return True

        def q_slice(s: Any, lo: Any, hi: Any, step: Any) -> Any:
            charge(1 + _size(s) // BYTES_PER_FUEL)
            return s[lo:hi:step]

        def q_method(obj: Any, name: str, *args: Any) -> Any:
            size = _size(obj) + sum(_size(a) for a in args)
            charge(PRICE_CALL + size // BYTES_PER_FUEL)
            t = type(obj)
            if name == "join" and (t is str or t is bytes) and args:
                parts = list(q_iter(args[0]))
                total = sum(len(p) if type(p) is t else 0 for p in parts) + len(obj) * max(len(parts) - 1, 0)
                if total > MAX_SEQ:
                    raise ContractError(f"join of {total} items is over the limit of {MAX_SEQ}")
                charge(total // BYTES_PER_FUEL)
                return obj.join(parts)
            if name == "replace" and (t is str or t is bytes) and len(args) >= 2:
                grow = obj.count(args[0]) * (len(args[1]) - len(args[0])) if len(args[0]) else len(obj) * len(
                    args[1])
                if len(obj) + grow > MAX_SEQ:
                    raise ContractError(f"replace would build {len(obj) + grow} items, over {MAX_SEQ}")
            if name in ("extend", "update") and args and len(obj) + _size(args[0]) > MAX_SEQ:
                raise ContractError(f"{name} would build more than {MAX_SEQ} items")
            if name == "insert" and len(obj) + 1 > MAX_SEQ:
                raise ContractError(f"list of more than {MAX_SEQ} items")
            if isinstance(obj, _Storage | std.Fixed | Context):
                raise ContractError(f"{name} is not a method of {type(obj).__name__}")
            try:
                m = getattr(obj, name)
            except AttributeError:
                raise ContractError(f"{t.__name__} has no method {name!r}") from None
            return _check_built(m(*args))

        def q_fmt(v: Any) -> Any:
            if type(v) not in (str, int, bool, bytes) and v is not None and not isinstance(v, std.Fixed):
                raise ContractError(f"f-strings format numbers, text and bytes, not {type(v).__name__}")
            return v

        def emit(name: str, data: Any = None) -> None:
            if type(name) is not str or not 0 < len(name) <= 128:
                raise ContractError("an event name is text of 1..128 characters")
            check_value(data)
            size = len(encode_trusted(data))
            charge(PRICE_EMIT + size // BYTES_PER_FUEL)
            if len(rt.events) >= MAX_EVENTS:
                raise ContractError(f"more than {MAX_EVENTS} events")
            rt.events.append((rt.ctx.this, name, data))

        def call(target: str, method: str, *args: Any) -> Any:
            charge(PRICE_CROSS_CALL)
            if type(target) is not str or type(method) is not str:
                raise ContractError("call(address, method, *args)")
            for a in args:
                check_value(a)
            rt.depth += 1
            if rt.depth > MAX_DEPTH:
                raise ContractError(f"call stack deeper than {MAX_DEPTH}")
            try:
                c = rt.ctx
                return rt._invoke(target, method, list(args),
                                  Context(c.sender, c.org, c.height, c.time_ms, c.tx_hash, target, c.this))
            finally:
                rt.depth -= 1

        def make_variable(default: Any = None) -> _Variable:
            check_value(default)
            return _Variable(rt, default)

        def make_hash(default: Any = None) -> _Hash:
            check_value(default)
            return _Hash(rt, default)

        std_module = std.make_module(self.hash_fn)

        def import_std(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (),
                       level: int = 0) -> Any:
            """``from std import …`` is the only import; validated at deploy, checked again here."""
            if name != "std" or level != 0:
                raise ContractError(f"no module {name!r} for contracts")
            return std_module

        builtins = dict(self._safe_builtins())
        builtins["__import__"] = import_std
        return {
            "__builtins__": builtins, "__name__": "contract",
            "_q_enter": q_enter, "_q_exit": q_exit, "_q_tick": q_tick, "_q_iter": q_iter, "_q_call": q_call,
            "_q_binop": q_binop, "_q_augitem": q_augitem, "_q_compare": q_compare, "_q_chain": q_chain,
            "_q_slice": q_slice, "_q_method": q_method, "_q_fmt": q_fmt,
            "emit": emit, "call": call, "Variable": make_variable, "Hash": make_hash, "ctx": self.ctx,
        }

    def _safe_builtins(self) -> dict[str, Any]:
        charge = self.charge

        def sized(x: Any) -> int:
            try:
                n = len(x)
            except TypeError:
                return -1
            if n > MAX_SEQ * 64:
                raise ContractError(f"{type(x).__name__} of {n} items is too large")
            return int(n)

        def collect(x: Any) -> list[Any]:
            n = sized(x)
            if n >= 0:
                if n > MAX_SEQ:
                    raise ContractError(f"{n} items is over the limit of {MAX_SEQ}")
                charge(1 + n // 4)
                return list(x)
            out = []
            for item in x:
                charge(1)
                out.append(item)
                if len(out) > MAX_SEQ:
                    raise ContractError(f"more than {MAX_SEQ} items")
            return out

        def safe_list(x: Any = ()) -> list[Any]:
            return collect(x)

        def safe_tuple(x: Any = ()) -> tuple[Any, ...]:
            return tuple(collect(x))

        def safe_dict(x: Any = ()) -> dict[Any, Any]:
            if isinstance(x, dict):
                x = list(x.items())
            return dict(collect(x))

        def safe_sorted(x: Any, key: Any = None, reverse: bool = False) -> list[Any]:
            items = collect(x)
            charge(len(items) * max(len(items).bit_length(), 1) // 4)
            return sorted(items, key=key, reverse=reverse)

        def safe_str(x: Any = "") -> str:
            if type(x) not in (str, int, bool) and x is not None and not isinstance(x, std.Fixed):
                raise ContractError(f"str() of {type(x).__name__} is not available (use std.encode)")
            charge(1 + _size(x) // BYTES_PER_FUEL)
            return str(x)

        def safe_bytes(x: Any = b"") -> bytes:
            if type(x) is int:
                if not 0 <= x <= MAX_SEQ:
                    raise ContractError(f"bytes({x}): size must be 0..{MAX_SEQ}")
                charge(1 + x // BYTES_PER_FUEL)
                return bytes(x)
            if type(x) is bytes:
                return x
            if type(x) is str:
                raise ContractError("bytes(str) needs an encoding: use s.encode()")
            return bytes(collect(x))

        def safe_int(x: Any = 0, base: int | None = None) -> int:
            charge(1 + _size(x) // BYTES_PER_FUEL)
            if type(x) is str and len(x) > 1300:
                raise ContractError("integer text longer than 1300 digits")
            return _check_built(int(x) if base is None else int(x, base))

        def safe_range(*args: int) -> range:
            if not all(type(a) is int for a in args):
                raise ContractError("range() takes integers")
            return range(*args)

        def fold(fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(x: Any, *rest: Any) -> Any:
                if rest:
                    return fn(x, *rest)
                return fn(collect(x))
            return run

        def safe_isinstance(x: Any, t: Any) -> bool:
            # In contract code `int`, `str`, … name the guarded constructors below; map them back to the types.
            ts = t if type(t) is tuple else (t,)
            types = tuple(type_of.get(tt) for tt in ts)
            if not types or any(tt is None for tt in types):
                raise ContractError("isinstance() checks int, str, bytes, bool, list, dict or tuple")
            if bool not in types and type(x) is bool and int in types:
                return False  # True is not a number here: a flag passed as an amount is a mistake
            return isinstance(x, types)  # type: ignore[arg-type]

        def safe_hex(x: int) -> str:
            if type(x) is not int:
                raise ContractError("hex() takes an int; for bytes use b.hex()")
            return hex(x)

        type_of: dict[Any, type] = {safe_int: int, safe_str: str, safe_bytes: bytes, bool: bool,
                                     safe_list: list, safe_dict: dict, safe_tuple: tuple}
        return {
            "len": len, "range": safe_range, "min": fold(min), "max": fold(max), "sum": fold(sum), "abs": abs,
            "divmod": divmod, "str": safe_str, "int": safe_int, "bool": bool, "bytes": safe_bytes,
            "list": safe_list, "dict": safe_dict, "tuple": safe_tuple, "enumerate": enumerate, "zip": zip,
            "sorted": safe_sorted, "reversed": reversed, "isinstance": safe_isinstance, "any": fold(any),
            "all": fold(all), "chr": chr, "ord": ord, "hex": safe_hex, "True": True, "False": False,
            "None": None,
        }


class _Storage:
    """Persistent contract storage; bound to a name and namespace when the contract is instantiated."""

    __slots__ = ("default", "name", "ns", "rt")

    def __init__(self, rt: Runtime, default: Any):
        self.rt = rt
        self.default = default
        self.name = ""
        self.ns = ""

    def _key(self, parts: tuple[Any, ...]) -> bytes:
        for p in parts:
            if type(p) not in (str, bytes, int, bool):
                raise ContractError(f"storage keys are text, bytes, int or bool, not {type(p).__name__}")
        key = encode_trusted([self.name, *parts])
        if len(key) > MAX_STORAGE_KEY:
            raise ContractError(f"storage key of {len(key)} bytes is over {MAX_STORAGE_KEY}")
        return key

    def _read(self, parts: tuple[Any, ...]) -> Any:
        rt = self.rt
        raw = rt.state.get(self.ns, self._key(parts))
        rt.charge(PRICE_READ + (len(raw) if raw else 0) // 32)
        if raw is None:
            return self.default
        return decode_raw(raw)

    def _write(self, parts: tuple[Any, ...], value: Any) -> None:
        rt = self.rt
        if rt.read_only:
            raise ContractError("a read-only query cannot write storage")
        key = self._key(parts)
        if value is None:
            rt.charge(PRICE_WRITE)
            rt.state.put(self.ns, key, None)
            return
        check_value(value)
        raw = encode_trusted(value)
        if len(raw) > MAX_STORED_VALUE:
            raise ContractError(f"storage value of {len(raw)} bytes is over {MAX_STORED_VALUE}")
        rt.charge(PRICE_WRITE + (len(raw) + len(key)) // 8)
        rt.state.put(self.ns, key, raw)


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
