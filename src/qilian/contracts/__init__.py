"""Python smart contracts: a validated, metered, isolated subset of Python (docs/contracts.md).

Pure code: validation (validate.py), metering by rewriting (instrument.py), and the runtime (runtime.py) do no IO;
the state they read and write is handed to them."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Final

from qilian.contracts.instrument import compute_statement_lines, instrument
from qilian.contracts.runtime import (
    CONTRACT_FILENAME,
    DEFAULT_FUEL,
    DEFAULT_PRICES,
    PRICE_DEPLOY,
    CallOutcome,
    CompiledContract,
    Context,
    ErrorCode,
    FuelPrices,
    Runtime,
)
from qilian.contracts.validate import ContractInfo, ContractRejected, validate_source

DEPLOY_FUEL_PER_NODE: Final = 80
"""What one syntax-tree node costs to validate, instrument, compile and instantiate (measured by bench fuel)."""
DEPLOY_FUEL_PER_BYTE: Final = 2 + DEPLOY_FUEL_PER_NODE * 3 // 4
"""Fuel per byte of source: parsing, plus the node cost at the densest source Python allows (about 3 nodes per 4
bytes). Priced by bytes, never by counting the interpreter's syntax tree: tree shapes differ between CPython
versions (3.12 adds nodes to f-string format specs), and fuel is consensus data."""

COMPILE_CACHE_SIZE: Final = 256
"""Compiled contracts kept per process (by source hash): instrumenting happens once per code, not per call."""
_cache: OrderedDict[bytes, CompiledContract] = OrderedDict()


def compute_deploy_fuel(source: str, base: int = PRICE_DEPLOY) -> int:
    """Fuel that compiling ``source`` is worth: a base plus a price per source byte that covers the densest syntax
    tree (``qilian bench fuel``). Charged by a deployment before anything is parsed, and again by every runtime
    (block) on a contract's first use there, so the CPU of cold compiles and instantiation is paid in fuel whether
    or not a cache is warm. Depends on the source bytes alone — the same on every interpreter."""
    return base + len(source.encode("utf-8", "surrogatepass")) * DEPLOY_FUEL_PER_BYTE


def compile_contract(source: str) -> CompiledContract:
    """Validate, instrument and compile a contract; raises ContractRejected naming the line and rule."""
    key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()
    hit = _cache.get(key)
    if hit is not None:
        return hit
    tree, info = validate_source(source)
    lines = compute_statement_lines(tree)
    load_fuel = compute_deploy_fuel(source)
    code = compile(instrument(tree), CONTRACT_FILENAME, "exec", dont_inherit=True, optimize=0)
    compiled = CompiledContract(code, info.exports, info.storage, key, lines, load_fuel)
    # Insertion order, oldest dropped first; each dict operation is atomic, so API query threads may share it.
    _cache[key] = compiled
    while len(_cache) > COMPILE_CACHE_SIZE:
        try:
            _cache.popitem(last=False)
        except KeyError:  # emptied by another thread meanwhile
            break
    return compiled


class MemoryState:
    """An in-memory state for sandbox runs and tests (``get``/``put`` by namespace and key)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, bytes], bytes] = {}

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self.data.get((namespace, key))

    def put(self, namespace: str, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.data.pop((namespace, key), None)
        else:
            self.data[(namespace, key)] = value


def sandbox_run(source: str, method: str = "attack", args: tuple[Any, ...] = (), fuel: int = 1_000_000,
                ) -> CallOutcome:
    """Compile a contract, deploy it into a fresh in-memory state and call one function (for tests and the
    escape corpus). Raises ContractRejected if it does not validate; never raises for what it does at run time."""
    compiled = compile_contract(source)
    rt = Runtime(MemoryState(), lambda addr: compiled if addr == "sandbox" else None,
                 lambda b: hashlib.sha256(b).digest())
    ctx = Context("00" * 20, "org1", 1, 0, "00" * 32, "sandbox", "00" * 20)
    return rt.run_call("sandbox", method, list(args), ctx, fuel)


__all__ = [
    "DEFAULT_FUEL",
    "DEFAULT_PRICES",
    "PRICE_DEPLOY",
    "CallOutcome",
    "CompiledContract",
    "Context",
    "ContractInfo",
    "ContractRejected",
    "ErrorCode",
    "FuelPrices",
    "MemoryState",
    "Runtime",
    "compile_contract",
    "compute_deploy_fuel",
    "sandbox_run",
]
