"""Contracts in transactions: deployment and upgrade (the built-in ``contracts`` module), calls, read-only queries
and the system contracts installed at genesis. Pure: the state comes in, receipts and writes go out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from qilian.contracts import (
    DEFAULT_FUEL,
    CallOutcome,
    CompiledContract,
    Context,
    ContractRejected,
    Runtime,
    compile_contract,
)
from qilian.contracts.system import SYSTEM_CONTRACTS
from qilian.crypto.suite import Suite
from qilian.types.codec import CodecError, decode_raw, encode_trusted

CONTRACTS_MODULE: Final = "contracts"
"""Target of deploy and upgrade transactions."""
CODE_NAMESPACE: Final = "code"
"""State namespace of contract code: key = address (text), value = [source, deployer, version]."""
DEPLOY_ROLE: Final = "admin"
"""Role a key needs to deploy or upgrade contracts (from genesis; governance comes later)."""
DOMAIN_CONTRACT: Final = b"QILIAN/CONTRACT/1\x00"
"""Prefix of what a contract address is hashed from."""
MAX_BLOCK_FUEL: Final = 50_000_000
"""Fuel all contract calls of one block may spend together. Execution is deferred (after the decision), so this
budget is what bounds a block's execution time: once spent, the block's remaining contract calls fail at once
("block fuel budget exhausted") — deterministically, on every node — and their senders resubmit."""
MAX_CONTRACT_NAME: Final = 64
"""Longest contract name given at deployment."""


class StateRW(Protocol):
    def get(self, namespace: str, key: bytes) -> bytes | None: ...
    def put(self, namespace: str, key: bytes, value: bytes | None) -> None: ...


def compute_contract_address(suite: Suite, deployer_public_key: bytes, name: str) -> str:
    """A deployed contract's address: 20 bytes of hash(domain ‖ deployer address ‖ name), as hex. Deterministic,
    so a client knows the address before the deployment commits."""
    return suite.hash(DOMAIN_CONTRACT + suite.compute_address(deployer_public_key) + name.encode())[:20].hex()


def is_contract_target(to: str) -> bool:
    """Whether ``to`` names a contract (a system contract, or 40 lowercase hex digits)."""
    return to in SYSTEM_CONTRACTS or (len(to) == 40 and all(c in "0123456789abcdef" for c in to))


def compute_genesis_writes() -> dict[tuple[str, bytes], bytes | None]:
    """The state every chain starts with: the system contracts' code."""
    return {(CODE_NAMESPACE, name.encode()): encode_trusted([source, "", 1])
            for name, source in sorted(SYSTEM_CONTRACTS.items())}


def get_code(state: Callable[[str, bytes], bytes | None], address: str) -> tuple[str, str, int] | None:
    """(source, deployer address hex, version) of the contract at ``address``."""
    raw = state(CODE_NAMESPACE, address.encode())
    if raw is None:
        return None
    source, deployer, version = decode_raw(raw)
    return source, deployer, version


class ContractExecutor:
    """Runs the contract transactions of one block (or one query) over a state."""

    def __init__(self, suite: Suite, state: StateRW, block_fuel: int = MAX_BLOCK_FUEL):
        self.suite = suite
        self.state = state
        self.runtime = Runtime(state, self._load, suite.hash)
        self.block_fuel_left = block_fuel
        """What the block's remaining contract calls may still spend."""

    def _load(self, address: str) -> CompiledContract | None:
        try:
            code = get_code(self.state.get, address)
        except (CodecError, ValueError, TypeError):
            return None
        if code is None:
            return None
        try:
            return compile_contract(code[0])
        except ContractRejected:
            return None

    def call(self, ctx: Context, method: str, args: list[Any], fuel: int = DEFAULT_FUEL,
             read_only: bool = False) -> CallOutcome:
        """Call a function of the contract ``ctx.this`` with at most ``fuel``, and never more than the block has
        left."""
        limit = min(fuel, self.block_fuel_left)
        if limit <= 0:
            return CallOutcome(False, None, f"block fuel budget of {MAX_BLOCK_FUEL} exhausted; resubmit in a later "
                                            f"block", 0, True)
        out = self.runtime.run_call(ctx.this, method, args, ctx, limit, read_only)
        self.block_fuel_left -= out.fuel_used
        if out.out_of_fuel and limit < fuel:
            return CallOutcome(False, None, f"block fuel budget of {MAX_BLOCK_FUEL} exhausted; resubmit in a "
                                            f"later block", out.fuel_used, True)
        return out

    def deploy(self, ctx: Context, sender_public_key: bytes, method: str, args: list[Any]) -> CallOutcome:
        """``contracts.deploy(name, source[, init_args])`` or ``contracts.upgrade(address, source)``."""
        if method == "deploy":
            if len(args) not in (2, 3) or type(args[0]) is not str or type(args[1]) is not str:
                return _fail("contracts.deploy takes (name, source[, init_args])")
            name, source = args[0], args[1]
            if not 0 < len(name) <= MAX_CONTRACT_NAME:
                return _fail(f"a contract name is 1..{MAX_CONTRACT_NAME} characters")
            address = compute_contract_address(self.suite, sender_public_key, name)
            if self.state.get(CODE_NAMESPACE, address.encode()) is not None:
                return _fail(f"this key already deployed a contract named {name!r} at {address}; use upgrade")
            version = 1
        elif method == "upgrade":
            if len(args) != 2 or type(args[0]) is not str or type(args[1]) is not str:
                return _fail("contracts.upgrade takes (address, source)")
            address, source = args[0], args[1]
            old = get_code(self.state.get, address)
            if old is None:
                return _fail(f"no contract at {address}")
            version = old[2] + 1
        else:
            return _fail(f"contracts has no method {method!r}")
        try:
            compiled = compile_contract(source)
        except ContractRejected as exc:
            return _fail(f"contract rejected: {exc}")
        self.state.put(CODE_NAMESPACE, address.encode(), encode_trusted([source, ctx.sender, version]))
        self.runtime._instances.pop(address, None)
        if method == "deploy" and len(args) == 3:
            init_args = args[2]
            if type(init_args) is not list:
                return _fail("init_args must be a list")
            if "init" not in compiled.exports:
                return _fail("init_args given but the contract exports no init()")
            c = ctx
            out = self.call(Context(c.sender, c.org, c.height, c.time_ms, c.tx_hash, address, c.sender), "init",
                            init_args)
            if not out.ok:
                return out
            return CallOutcome(True, address, None, out.fuel_used, False, out.events)
        return CallOutcome(True, address, None, 0, False)


def _fail(message: str) -> CallOutcome:
    return CallOutcome(False, None, message, 0, False)
