"""What a module sees while a block executes: buffered state, the block's facts, the sender, the policy table.

Pure: the state reader comes in, writes stay buffered until the storage layer commits the whole block."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from qilian.execution.chain import ChainRules, MemberInfo
from qilian.execution.members import get_member, get_org_names
from qilian.execution.policy import Approver, Policy, PolicyError, Verdict, compute_verdict, get_policy
from qilian.state import StateError, validate_write
from qilian.types.core import STATUS_OK, Event, Transaction

if TYPE_CHECKING:
    from qilian.execution.contracts import ContractExecutor

StateKey = tuple[str, bytes]
Writes = dict[StateKey, bytes | None]


class StateReader(Protocol):
    """Read access to the state as of the last executed block."""

    def get_state(self, namespace: str, key: bytes) -> bytes | None: ...


class CallFailed(Exception):
    """A call that failed for a reason every node agrees on; recorded in its receipt."""


MEMO_VALUE_BYTES = 4096
"""Largest base-state value an :class:`Overlay` remembers for the rest of its block (absent keys always are)."""


class Overlay:
    """Buffered writes over a state reader; a transaction's own layer is dropped if it fails.

    Reads of the base state are remembered for the overlay's life (one block): the base is the parent state,
    which nothing changes while the block executes, so a repeated read is answered from memory with the same
    bytes. Most reads of a full block repeat — every transaction of one sender reads that sender's membership
    and regulation, every call of a contract its freeze — and each would otherwise be a store read."""

    def __init__(self, base: StateReader, block_writes: Writes):
        self.base = base
        self.block_writes = block_writes
        self.tx_writes: Writes = {}
        self._base_reads: dict[StateKey, bytes | None] = {}

    def get(self, ns: str, key: bytes) -> bytes | None:
        k = (ns, key)
        if k in self.tx_writes:
            return self.tx_writes[k]
        if k in self.block_writes:
            return self.block_writes[k]
        memo = self._base_reads
        if k in memo:
            return memo[k]
        value = self.base.get_state(ns, key)
        if value is None or len(value) <= MEMO_VALUE_BYTES:
            memo[k] = value
        return value

    def put(self, ns: str, key: bytes, value: bytes | None) -> None:
        # The state tree refuses over-limit writes at commit time, which would halt every node at once; refusing
        # here fails only this transaction.
        try:
            validate_write(ns, key, value)
        except StateError as exc:
            raise CallFailed(str(exc)) from None
        self.tx_writes[(ns, key)] = value


@dataclass(frozen=True, slots=True)
class TxCall:
    """One transaction as a module executes it."""

    tx: Transaction
    """The transaction (admitted: its sender is a member and its signature verified)."""
    tx_hash: bytes
    """Its hash."""
    member: MemberInfo
    """The sender's membership."""
    sender: str
    """The sender's address (hex), what contracts see as ``ctx.sender``."""

    @property
    def method(self) -> str:
        return self.tx.body.method

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self.tx.body.args)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a module call produced; turned into the transaction's receipt."""

    result: Any = None
    """The return value (a codec value)."""
    events: tuple[Event, ...] = ()
    """Events to record."""
    fuel: int = 0
    """Fuel used (contract code only)."""
    status: int = STATUS_OK
    """Receipt status; not OK means every write of the call is dropped."""
    error: str = ""
    """Why it failed."""


@dataclass
class BlockEnv:
    """The execution context of one block, shared by its transactions in order."""

    rules: ChainRules
    """Genesis facts and membership."""
    state: Overlay
    """Buffered state of the block so far."""
    contracts: ContractExecutor
    """The block's contract runner (it carries the block fuel budget)."""
    height: int
    """Height being executed."""
    time_ms: int
    """That block's time."""
    receipt_bytes_left: int = 8 * 1024 * 1024
    """Encoded bytes the block's successful receipts may still take (MAX_BLOCK_RECEIPT_BYTES at the start)."""
    policies: dict[str, Policy] = field(default_factory=dict)
    """Policies read in this block, so a block of many kv writes reads each policy once (cleared whenever a
    governance call runs, since it may change them)."""
    members: dict[bytes, MemberInfo | None] = field(default_factory=dict)
    """Memberships read in this block (cleared with ``policies``: governance may revoke or add keys)."""
    org_names: tuple[str, ...] | None = None
    """Organisations of the chain as of this point of the block (None: not read yet)."""

    def get_member(self, public_key: bytes) -> MemberInfo | None:
        """The membership of a key at this point of the block (a key revoked earlier in it is no member)."""
        if public_key not in self.members:
            self.members[public_key] = get_member(self.rules, self.state.get, public_key)
        return self.members[public_key]

    def get_org_names(self) -> tuple[str, ...]:
        """Every organisation at this point of the block: the scope of a policy that names none."""
        if self.org_names is None:
            self.org_names = get_org_names(self.rules, self.state.get)
        return self.org_names

    def process_forget(self) -> None:
        """Drop what was read of governed state: a governance call may have changed (or rolled back) it."""
        self.policies.clear()
        self.members.clear()
        self.org_names = None

    def get_policy(self, resource: str) -> Policy:
        """The policy in force for ``resource`` at this point of the block."""
        p = self.policies.get(resource)
        if p is None:
            try:
                p = get_policy(self.state.get, resource)
            except PolicyError as exc:  # pragma: no cover - state is written only through compute_policy
                raise CallFailed(f"policy {resource}: {exc}") from None
            self.policies[resource] = p
        return p

    def process_require(self, resource: str, approvers: Iterable[Approver], self_org: str | None = None) -> Verdict:
        """Raise CallFailed with the policy's refusal unless ``approvers`` satisfy ``resource``'s policy."""
        verdict = compute_verdict(resource, self.get_policy(resource), approvers, self.get_org_names(), self_org)
        if not verdict.ok:
            raise CallFailed(verdict.message)
        return verdict
