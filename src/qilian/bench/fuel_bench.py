"""``qilian bench fuel``: CPU time per fuel unit of every guarded operation, at several operand sizes.

Fuel is only a bound on a block's execution time if every operation costs about the same CPU per fuel unit. This
benchmark runs small generated contracts through the real `Runtime` (validated, instrumented code, guarded
built-ins, in-memory storage) and measures, for each operation, the CPU it adds over an empty loop and the fuel it
adds, so the ratio is the operation's own µs per fuel unit. It reports the median ratio, the worst ratio and how
many CPU seconds a block's whole fuel budget (MAX_BLOCK_FUEL) would take if spent on the worst operation.

Compilation and instantiation are measured the same way against `compute_deploy_fuel`."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from qilian.contracts import MemoryState, Runtime, compile_contract, compute_deploy_fuel
from qilian.contracts.runtime import CompiledContract, Context
from qilian.execution.contracts import MAX_BLOCK_FUEL


@dataclass(frozen=True, slots=True)
class FuelCase:
    """One operation at one size."""

    name: str
    """What is measured."""
    size: int
    """The operand size parameter ``n``."""
    setup: str
    """Statements run once before the loop (may use ``n``)."""
    op: str
    """The statement(s) measured, run once per loop iteration."""
    helpers: str = ""
    """Extra module-level code (functions, storage)."""


@dataclass(frozen=True, slots=True)
class FuelRow:
    """A measured case."""

    name: str
    """The operation."""
    size: int
    """Its size parameter."""
    fuel_per_op: float
    """Fuel charged per operation."""
    us_per_op: float
    """CPU µs per operation (over the empty loop)."""
    us_per_fuel: float
    """CPU µs per fuel unit: the number that must be about equal everywhere."""
    error: str = ""
    """Why the case could not be measured (a limit, usually), if it could not."""


_S = (16, 1024, 16384)
_B = (64, 1024, 4000)
_L = (8, 512, 8192)


def compute_cases() -> list[FuelCase]:
    """The operations measured: every allowed built-in, method and operator, plus ordinary code."""
    c: list[FuelCase] = []

    def add(name: str, sizes: tuple[int, ...], setup: str, op: str, helpers: str = "") -> None:
        for n in sizes:
            c.append(FuelCase(name, n, setup.replace("{n}", str(n)), op.replace("{n}", str(n)), helpers))

    helpers = ("def one():\n    return 1\n\n@export\ndef ret(n):\n    return list(range(n))\n\n"
               "@export\ndef echo(x):\n    return x\n\nh = Hash(default=0)\nv = Variable(default=[])\n")
    add("straight-line code", (1,), "a = 1", "b = a\n        c = b\n        d = c\n        e = d\n        f = e\n"
        "        g = not f\n        a = -a")
    add("if/else + bool ops", (1,), "a = 1", "if a and i:\n            b = 1\n        else:\n            b = 2")
    add("while loop", (1,), "j = 0", "j = 0\n        while j < 5:\n            j += 1")
    add("function call", (1,), "", "one()", helpers)
    add("ctx attribute", (1,), "", "a = ctx.sender")
    add("list comprehension", _L[:2], "L = list(range({n}))", "M = [x for x in L]")
    add("dict comprehension", _L[:2], "L = list(range({n}))", "D = {x: x for x in L}")
    add("list display", (1,), "", "L = [i, i, i, i, i, i, i, i]")
    add("dict display", (1,), "", "D = {'a': i, 'b': i, 'c': i}")
    for op in ("+", "-", "&", "^", "|", ">>"):
        add(f"int {op}", _B, "a = (1 << {n}) - 1\n    b = (1 << ({n} // 2)) + 3", f"x = a {op} b")
    add("int *", (64, 1024, 2040), "a = (1 << {n}) - 1", "x = a * a")
    add("int //", _B, "a = (1 << {n}) - 1\n    b = (1 << ({n} // 2)) + 3", "x = a // b")
    add("int %", _B, "a = (1 << {n}) - 1\n    b = (1 << ({n} // 2)) + 3", "x = a % b")
    add("divmod", _B, "a = (1 << {n}) - 1\n    b = (1 << ({n} // 2)) + 3", "x = divmod(a, b)")
    add("int **", (16, 500, 2500), "", "x = 3 ** {n}")
    add("int <<", _B, "", "x = 1 << {n}")
    add("int compare", _B, "a = (1 << {n}) - 1\n    b = a - 1", "x = a < b")
    add("str(int)", _B, "a = (1 << {n}) - 1", "s = str(a)")
    add("hex(int)", _B, "a = (1 << {n}) - 1", "s = hex(a)")
    add("int(str)", (10, 300, 1200), "s = '7' * {n}", "x = int(s)")
    add("f-string int", _B, "a = (1 << {n}) - 1", "s = f'{a}'")
    add("f-string str", _S, "s = 'x' * {n}", "t = f'{s}-{s}'")
    add("str +", _S, "s = 'x' * {n}", "t = s + s")
    add("str *", _S, "s = 'x' * {n}", "t = s * 2")
    add("bytes +", _S, "s = b'x' * {n}", "t = s + s")
    add("list +", _L, "L = [1] * {n}", "M = L + L")
    add("list *", _L, "L = [1] * {n}", "M = L * 2")
    add("tuple +", _L, "L = tuple([1] * {n})", "M = L + L")
    add("dict |", _L, "D = {x: x for x in range({n})}\n    E = {-x: x for x in range({n})}", "F = D | E")
    add("str ==", _S, "s = 'x' * {n}\n    t = 'x' * ({n} - 1) + 'y'", "x = s == t")
    add("str <", _S, "s = 'x' * {n}\n    t = 'x' * ({n} - 1) + 'y'", "x = s < t")
    add("nested list ==", _L, "L = [[x, x] for x in range({n})]\n    M = [[x, x] for x in range({n})]",
        "x = L == M")
    add("nested list <", _L, "L = [[x, 'ab'] for x in range({n})]\n    M = [[x, 'ab'] for x in range({n})]",
        "x = L < M")
    add("dict ==", _L, "D = {x: [x] for x in range({n})}\n    E = {x: [x] for x in range({n})}", "x = D == E")
    add("in list (miss)", _L, "L = list(range({n}))", "x = -1 in L")
    add("in nested list (miss)", _L, "L = [[x, x] for x in range({n})]", "x = [-1, -1] in L")
    add("in str (adversarial)", _S, "s = 'a' * {n}\n    t = 'a' * 200 + 'b'", "x = t in s")
    add("in bytes", _S, "s = b'a' * {n}\n    t = b'a' * 20 + b'b'", "x = t in s")
    add("in dict", (8,), "D = {x: x for x in range({n})}", "x = 3 in D")
    add("in range", (8,), "R = range(10 ** 12)", "x = 5 in R")
    add("list[i]", (8,), "L = list(range({n}))", "x = L[3]")
    add("dict[k]", (8,), "D = {'a': 1}", "x = D['a']")
    add("dict[k] = v", (8,), "D = {'a': 1}", "D['a'] = i")
    add("list[i] = v", (8,), "L = list(range({n}))", "L[3] = i")
    add("t[k] += v", (8,), "D = {'a': 1}", "D['a'] += 1")
    add("del dict[k]", (8,), "D = {'a': 1}", "D['b'] = 1\n        del D['b']")
    add("list slice", _L, "L = list(range({n}))", "M = L[1:]")
    add("str slice", _S, "s = 'x' * {n}", "t = s[1:]")
    add("slice assign", _L, "L = list(range({n}))", "L[0:1] = [5]")
    add("del slice", _L, "L = list(range({n}))", "L.append(1)\n        del L[0:1]")
    add("str.join", _L, "P = ['ab'] * {n}", "s = ','.join(P)")
    add("str.split(sep)", _L, "s = 'ab ' * {n}", "P = s.split(' ')")
    add("str.split()", _L, "s = 'ab ' * {n}", "P = s.split()")
    add("str.split() non-ASCII", _L, "s = 'é ' * {n}", "P = s.split()")
    add("str.replace", _S, "s = 'ab' * ({n} // 2)", "t = s.replace('a', 'xy')")
    add("str.find (adversarial)", _S, "s = 'a' * {n}\n    t = 'a' * 200 + 'b'", "x = s.find(t)")
    add("str.count", _S, "s = 'ab' * ({n} // 2)", "x = s.count('b')")
    add("str.startswith", _S, "s = 'a' * {n}", "x = s.startswith(s)")
    for m in ("upper", "lower", "title", "capitalize", "isalpha", "isdigit", "isalnum", "strip"):
        add(f"str.{m}", _S, "s = 'aB1 ' * ({n} // 4)", f"t = s.{m}()")
    add("str.upper non-ASCII", _S, "s = 'éa' * ({n} // 2)", "t = s.upper()")
    add("str.isalpha non-ASCII", _S, "s = 'éa' * ({n} // 2)", "t = s.isalpha()")
    add("str.strip(chars)", _S, "s = 'ab' * ({n} // 2)", "t = s.strip('ba')")
    add("str.encode", _S, "s = 'é' * ({n} // 2)", "b = s.encode()")
    add("bytes.decode", _S, "b = ('é' * ({n} // 2)).encode()", "s = b.decode()")
    add("bytes.hex", (16, 1024, 16000), "b = b'x' * {n}", "s = b.hex()")
    add("bytes.fromhex", _S, "s = 'ab' * ({n} // 2)", "b = bytes.fromhex(s)")
    add("bytes(n)", _S, "", "b = bytes({n})")
    add("bytes(list)", _L, "L = [65] * {n}", "b = bytes(L)")
    add("chr/ord", (1,), "", "x = ord(chr(i % 1000 + 32))")
    add("list.append+pop", (8,), "L = []", "L.append(i)\n        L.pop()")
    add("list.insert(0)+pop(0)", _L, "L = list(range({n}))", "L.insert(0, i)\n        L.pop(0)")
    add("list.index", _L, "L = list(range({n}))", "x = L.index({n} - 1)")
    add("list.count", _L, "L = list(range({n}))", "x = L.count(-1)")
    add("list.remove+append", _L, "L = list(range({n}))", "L.remove({n} - 1)\n        L.append({n} - 1)")
    add("list.sort (ints)", _L, "L = list(range({n}, 0, -1))", "M = L.copy()\n        M.sort()")
    add("sorted (nested)", _L, "L = [[x % 7, x] for x in range({n}, 0, -1)]", "M = sorted(L)")
    add("sorted (str)", _L, "L = ['k' * 20 + str(x) for x in range({n}, 0, -1)]", "M = sorted(L)")
    add("sorted key=", (8, 512), "L = list(range({n}, 0, -1))", "M = sorted(L, key=abs)")
    add("list.reverse", _L, "L = list(range({n}))", "L.reverse()")
    add("list.copy", _L, "L = list(range({n}))", "M = L.copy()")
    add("list.extend(range)", _L, "", "M = []\n        M.extend(range({n}))")
    add("list.clear", _L, "L = list(range({n}))", "M = L.copy()\n        M.clear()")
    add("dict.get", (8,), "D = {'a': 1}", "x = D.get('a')")
    add("dict.keys", _L, "D = {x: x for x in range({n})}", "K = D.keys()")
    add("dict.items", _L, "D = {x: x for x in range({n})}", "K = D.items()")
    add("dict.update", _L, "D = {x: x for x in range({n})}", "E = {}\n        E.update(D)")
    add("dict.setdefault", (8,), "D = {}", "D.setdefault('a', 1)")
    add("dict.pop", (8,), "D = {}", "D['a'] = 1\n        D.pop('a')")
    add("dict.copy", _L, "D = {x: x for x in range({n})}", "E = D.copy()")
    add("dict(zip())", _L, "K = list(range({n}))", "D = dict(zip(K, K))")
    add("list(range)", _L, "", "L = list(range({n}))")
    add("tuple(list)", _L, "L = [1] * {n}", "T = tuple(L)")
    add("enumerate", _L, "L = [1] * {n}", "E = enumerate(L)")
    add("reversed", _L, "L = [1] * {n}", "E = reversed(L)")
    add("min/max", _L, "L = list(range({n}))", "x = min(L)\n        y = max(L)")
    add("sum ints", _L, "L = list(range({n}))", "x = sum(L)")
    add("sum lists", (8, 64, 256), "L = [[1]] * {n}", "x = sum(L, [])")
    add("any/all", _L, "L = [1] * {n}", "x = any(L)\n        y = all(L)")
    add("len/abs/isinstance", (1,), "L = [1]", "x = len(L) + abs(-i)\n        y = isinstance(L, list)")
    add("range()", (1,), "", "R = range(i)")
    add("std.digest", _S, "b = b'x' * {n}", "d = digest(b)")
    add("std.encode", _L, "L = [[x, 'ab'] for x in range({n})]", "b = encode(L)")
    add("std.decode", _L, "b = encode([[x, 'ab'] for x in range({n})])", "L = decode(b)")
    add("Fixed.mul/div", (1,), "a = Fixed('12.5', 6)\n    b = Fixed('3.25', 6)", "x = a.mul(b).div(b)")
    add("Fixed +", (1,), "a = Fixed('12.5', 6)", "x = a + a")
    add("storage read (miss)", (1,), "", "x = h[i]", helpers)
    add("storage write int", (1,), "", "h[i % 16] = i", helpers)
    add("storage write list", _L, "L = [[x, 'ab'] for x in range({n})]", "v.set(L)", helpers)
    add("storage read list", _L, "v.set([[x, 'ab'] for x in range({n})])", "L = v.get()", helpers)
    add("emit", (8, 512), "L = [[x, 'ab'] for x in range({n})]", "emit('E', L)")
    add("cross-contract call", (1,), "", "x = call(ctx.this, 'echo', 1)", helpers)
    add("cross-contract result copy", (8, 512, 4096), "", "x = call(ctx.this, 'ret', {n})", helpers)
    return c


def _source(case: FuelCase, op: str) -> str:
    imports = "from std import digest, encode, decode, Fixed\n\n"
    return (f"{imports}{case.helpers}\n@export\ndef attack(k):\n    {case.setup or 'pass'}\n"
            f"    for i in range(k):\n        {op}\n    return 0\n")


def _run(source: str, k: int, hash_fn: Callable[[bytes], bytes]) -> tuple[float, int, str]:
    compiled = compile_contract(source)
    rt = Runtime(MemoryState(), lambda a: compiled if a == "bench" else None, hash_fn)
    ctx = Context("00" * 20, "org1", 1, 0, "00" * 32, "bench", "00" * 20)
    rt.run_call("bench", "attack", [0], ctx, 10**9)  # instantiate outside the measurement
    t0 = time.process_time()
    out = rt.run_call("bench", "attack", [k], ctx, 10**9)
    return time.process_time() - t0, out.fuel_used, out.error or ""


def measure_case(case: FuelCase, target_fuel: int = 300_000, repeats: int = 3,
                 hash_fn: Callable[[bytes], bytes] = lambda b: hashlib.sha256(b).digest()) -> FuelRow:
    """CPU and fuel the operation adds over the same contract with an empty loop body."""
    src, base = _source(case, case.op), _source(case, "pass")
    _, f1, err = _run(src, 1, hash_fn)
    _, b1, _ = _run(base, 1, hash_fn)
    if err:
        return FuelRow(case.name, case.size, 0, 0, 0, err)
    per = max(f1 - b1, 1)
    k = max(2, min(200_000, target_fuel // per))
    if "emit" in case.name:
        k = min(k, 200)
    best = float("inf")
    fuel = 0
    for _ in range(repeats):
        t_op, f_op, err = _run(src, k, hash_fn)
        t_base, f_base, _ = _run(base, k, hash_fn)
        if err:
            return FuelRow(case.name, case.size, 0, 0, 0, err)
        best = min(best, max(t_op - t_base, 0.0))
        fuel = f_op - f_base
    us = best * 1e6 / k
    return FuelRow(case.name, case.size, fuel / k, us, us / max(fuel / k, 1e-9))


def _loader(compiled: CompiledContract) -> Callable[[str], CompiledContract]:
    return lambda _address: compiled


def measure_compile(functions: int) -> FuelRow:
    """CPU of a cold compile + first instantiation of a generated contract, per fuel of compute_deploy_fuel."""
    body = "".join(f"@export\ndef f{j}(a, b):\n    x = [a + b, a * b, {{'k': a}}]\n    if a > b:\n"
                   f"        return x[0]\n    return f'{{a}}-{{b}}'\n\n" for j in range(functions))
    best = float("inf")
    for r in range(3):
        src = f"# {time.process_time_ns()} {r}\n" + body  # a new source: a cold compile each time
        t0 = time.process_time()
        rt = Runtime(MemoryState(), _loader(compile_contract(src)), lambda b: hashlib.sha256(b).digest())
        rt.run_call("x", "f0", [1, 2], Context("", "", 0, 0, "", "x", ""), 10**9)
        best = min(best, time.process_time() - t0)
    fuel = compute_deploy_fuel(body)
    return FuelRow("compile + instantiate", functions, fuel, best * 1e6, best * 1e6 / fuel)


@dataclass(frozen=True, slots=True)
class FuelReport:
    """The bench's summary."""

    rows: list[FuelRow]
    """Every measured case."""
    median: float
    """Median µs per fuel unit."""
    worst: FuelRow
    """The case with the highest µs per fuel unit."""
    block_cpu_s: float
    """CPU seconds of a block spending MAX_BLOCK_FUEL on the worst operation."""


def run_fuel_bench(quick: bool = False, progress: Callable[[str], None] | None = None) -> FuelReport:
    """Measure every case (``quick``: only the largest size of each, fewer repeats)."""
    cases = compute_cases()
    if quick:
        last: dict[str, FuelCase] = {}
        for case in cases:
            last[case.name] = case
        cases = list(last.values())
    rows = []
    for case in cases:
        if progress:
            progress(f"{case.name} n={case.size}")
        try:
            rows.append(measure_case(case, repeats=2 if quick else 3))
        except Exception as exc:  # a bench reports a broken case and goes on
            rows.append(FuelRow(case.name, case.size, 0, 0, 0, f"{type(exc).__name__}: {exc}"))
    for f in (5, 50):
        rows.append(measure_compile(f))
    ok = [r for r in rows if not r.error and r.us_per_op > 0]
    median = statistics.median(r.us_per_fuel for r in ok)
    worst = max(ok, key=lambda r: r.us_per_fuel)
    return FuelReport(rows, median, worst, worst.us_per_fuel * MAX_BLOCK_FUEL / 1e6)
