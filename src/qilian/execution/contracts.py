"""Contracts in transactions: deployment and upgrade (the built-in ``contracts`` module), calls, read-only queries
and the system contracts installed at genesis. Pure: the state comes in, receipts and writes go out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from qilian.contracts import (
    DEFAULT_FUEL,
    DEFAULT_PRICES,
    CallOutcome,
    CompiledContract,
    Context,
    ContractRejected,
    FuelPrices,
    Runtime,
    compile_contract,
    compute_deploy_fuel,
)
from qilian.contracts.system import SYSTEM_CONTRACTS
from qilian.crypto import get_suite
from qilian.crypto.suite import Suite
from qilian.execution.members import compute_membership_genesis_writes
from qilian.execution.messages import quote
from qilian.execution.policy import MEMBER_NAMESPACE, compute_default_policy_writes
from qilian.types.codec import CodecError, decode_raw, encode_trusted
from qilian.types.core import Genesis

CONTRACTS_MODULE: Final = "contracts"
"""Target of deploy and upgrade transactions."""
CODE_NAMESPACE: Final = "code"
"""State namespace of contract code: key = address (text), value = [source, deployer, version]. The deployer
(address hex; empty for system contracts) never changes, so an upgrade cannot take a contract over."""
FROZEN_NAMESPACE: Final = "sys:frozen"
"""State namespace of frozen contracts: key = address (text), value = [height, approving orgs]."""
DEPLOY_ROLE: Final = "admin"
"""Role a key needs to send deploy or upgrade transactions at all (static admission); which admins may act is
the business of the policies ``contract.deploy`` and ``contract.upgrade`` in state."""
DOMAIN_CONTRACT: Final = b"QILIAN/CONTRACT/1\x00"
"""Prefix of what a contract address is hashed from."""
MAX_BLOCK_FUEL: Final = 15_000_000
"""Fuel all contract calls and deployments of one block may spend together, as genesis sets it (the consortium
may change it within bounds: chain parameter ``block.max_fuel``, execution/params.py). Execution is deferred (after the
decision), so this budget is what bounds a block's execution time: once spent, the block's remaining contract calls
fail at once ("block fuel budget exhausted") — deterministically, on every node — and their senders resubmit.
Sized by `qilian bench fuel` (docs/contracts.md): at the worst-priced operation 15M fuel is ~3.6 s of CPU on the
reference machine, at the median ~1 s."""
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


def compute_genesis_writes(genesis: Genesis) -> dict[tuple[str, bytes], bytes | None]:
    """The state every chain starts with: the system contracts' code, the default policies, and the membership
    of genesis (so a light client can prove a sender's organisation from a state proof, never from a file a
    certificate carries)."""
    writes: dict[tuple[str, bytes], bytes | None] = {
        (CODE_NAMESPACE, name.encode()): encode_trusted([source, "", 1])
        for name, source in sorted(SYSTEM_CONTRACTS.items())}
    writes.update(compute_default_policy_writes())
    for org in genesis.organisations:
        for m in org.members:
            writes[(MEMBER_NAMESPACE, m.public_key)] = encode_trusted([org.name, m.name, list(m.roles)])
    writes.update(compute_membership_genesis_writes(genesis, get_suite(genesis.suite).compute_address))
    return writes


def is_system_contract(address: str) -> bool:
    """Whether ``address`` names a system contract (installed at genesis; upgraded only through governance)."""
    return address in SYSTEM_CONTRACTS


def get_code(state: Callable[[str, bytes], bytes | None], address: str) -> tuple[str, str, int] | None:
    """(source, deployer address hex, version) of the contract at ``address``."""
    raw = state(CODE_NAMESPACE, address.encode())
    if raw is None:
        return None
    source, deployer, version = decode_raw(raw)[:3]
    return source, deployer, version


def get_frozen(state: Callable[[str, bytes], bytes | None], address: str) -> tuple[int, list[str]] | None:
    """(height, approving orgs) of the freeze of ``address``, or None when it is not frozen."""
    raw = state(FROZEN_NAMESPACE, address.encode())
    if raw is None:
        return None
    height, orgs = decode_raw(raw)
    return height, orgs


class ContractExecutor:
    """Runs the contract transactions of one block (or one query) over a state."""

    def __init__(self, suite: Suite, state: StateRW, block_fuel: int = MAX_BLOCK_FUEL, refuse_frozen: bool = False,
                 is_frozen: Callable[[str], bool] | None = None, prices: FuelPrices = DEFAULT_PRICES):
        self.suite = suite
        self.prices = prices
        """The governed fuel prices in force at the block's height (chain parameters ``fuel.*``)."""
        self.block_fuel = block_fuel
        """The block's fuel budget (chain parameter ``block.max_fuel``)."""
        self.state = state
        self.refuse_frozen = refuse_frozen
        """Treat frozen contracts as absent (in blocks, so a contract cannot call a frozen one either)."""
        self.is_frozen = is_frozen
        """Whether a regulator's freeze stops this contract at the block's height (with ``refuse_frozen``)."""
        self.runtime = Runtime(state, self._load, suite.hash, prices)
        self.block_fuel_left = block_fuel
        """What the block's remaining contract calls may still spend."""

    def _load(self, address: str) -> CompiledContract | None:
        try:
            code = get_code(self.state.get, address)
        except (CodecError, ValueError, TypeError):
            return None
        if code is None:
            return None
        if self.refuse_frozen and (self.state.get(FROZEN_NAMESPACE, address.encode()) is not None
                                   or (self.is_frozen is not None and self.is_frozen(address))):
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
            return CallOutcome(False, None, f"block fuel budget of {self.block_fuel} exhausted; resubmit in a later "
                                            f"block", 0, True)
        out = self.runtime.run_call(ctx.this, method, args, ctx, limit, read_only)
        self.block_fuel_left -= out.fuel_used
        if out.out_of_fuel and limit < fuel:
            return CallOutcome(False, None, f"block fuel budget of {self.block_fuel} exhausted; resubmit in a "
                                            f"later block", out.fuel_used, True)
        return out

    def deploy(self, ctx: Context, sender_public_key: bytes, args: list[Any]) -> CallOutcome:
        """``contracts.deploy(name, source[, init_args])``: the address derives from the deployer and the name."""
        if len(args) not in (2, 3) or type(args[0]) is not str or type(args[1]) is not str:
            return _fail("contracts.deploy takes (name, source[, init_args])")
        name, source = args[0], args[1]
        if not 0 < len(name) <= MAX_CONTRACT_NAME:
            return _fail(f"a contract name is 1..{MAX_CONTRACT_NAME} characters")
        address = compute_contract_address(self.suite, sender_public_key, name)
        if self.state.get(CODE_NAMESPACE, address.encode()) is not None:
            return _fail(f"this key already deployed a contract named {quote(name)} at {address}; use upgrade")
        paid = self._charge_compile(source)
        if isinstance(paid, CallOutcome):
            return paid
        try:
            compiled = compile_contract(source)
        except ContractRejected as exc:
            return _fail(f"contract rejected: {exc}", paid)
        self.state.put(CODE_NAMESPACE, address.encode(), encode_trusted([source, ctx.sender, 1]))
        self.runtime._instances.pop(address, None)
        if len(args) == 3:
            init_args = args[2]
            if type(init_args) is not list:
                return _fail("init_args must be a list")
            if "init" not in compiled.exports:
                return _fail("init_args given but the contract exports no init()")
            c = ctx
            out = self.call(Context(c.sender, c.org, c.height, c.time_ms, c.tx_hash, address, c.sender), "init",
                            init_args)
            if not out.ok:
                return CallOutcome(False, None, out.error, paid + out.fuel_used, out.out_of_fuel, code=out.code)
            return CallOutcome(True, address, None, paid + out.fuel_used, False, out.events)
        return CallOutcome(True, address, None, paid, False)

    def _charge_compile(self, source: str) -> int | CallOutcome:
        """Charge what validating and compiling ``source`` costs (compute_deploy_fuel) to the block budget before
        doing it, so deployments cannot buy unmetered CPU; the fuel paid, or the failed outcome."""
        paid = compute_deploy_fuel(source, self.prices.deploy)
        if paid > DEFAULT_FUEL:
            return CallOutcome(False, None, f"[limit] deploying this source costs {paid} fuel, over a transaction's "
                                            f"{DEFAULT_FUEL}", 0, True, code="limit")
        if paid > self.block_fuel_left:
            return CallOutcome(False, None, f"block fuel budget of {self.block_fuel} exhausted; resubmit in a later "
                                            f"block", 0, True, code="out_of_fuel")
        self.block_fuel_left -= paid
        return paid

    def upgrade(self, address: str, source: Any, approvers: list[str], via: str) -> CallOutcome:
        """Replace the code at ``address`` (its storage stays). The deployer is kept — an upgrade never changes
        who owns a contract — and an ``Upgraded`` event records the version and the approving organisations.
        Who may upgrade is decided by the caller (policy ``contract.upgrade`` or governance)."""
        if type(source) is not str:
            return _fail("the new source must be text")
        old = get_code(self.state.get, address)
        if old is None:
            return _fail(f"no contract at {quote(address)}")
        paid = self._charge_compile(source)
        if isinstance(paid, CallOutcome):
            return paid
        try:
            compile_contract(source)
        except ContractRejected as exc:
            return _fail(f"contract rejected: {exc}", paid)
        version = old[2] + 1
        self.state.put(CODE_NAMESPACE, address.encode(), encode_trusted([source, old[1], version]))
        self.runtime._instances.pop(address, None)
        event = ("contracts", "Upgraded", {"address": address, "version": version, "approvers": approvers,
                                           "via": via})
        return CallOutcome(True, address, None, paid, False, (event,))


def _fail(message: str, fuel: int = 0) -> CallOutcome:
    return CallOutcome(False, None, message, fuel, False)
