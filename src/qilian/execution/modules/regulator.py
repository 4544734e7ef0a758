"""Regulation (监管): freezing, unfreezing and abolishing accounts, and freezing contracts, under policies.

A regulator is a key holding the ``regulator`` role (an organisation's supervisory key, or a supervisory body
admitted as an organisation). It acts on an **address**: an account (the address of a key) or a contract (a
deployed contract's address or a system contract's name). Each action carries a reason and is an event, so the
audit trail is on chain (``qilian gov history``).

* ``freeze(address, reason[, until])`` — until height ``until`` (0 or absent: until unfrozen). A frozen account's
  transactions fail with ``[frozen] …`` — except ``gov.*`` (governance stays with the consortium: a regulator must
  not be able to silence an organisation's vote) and ``regulator.appeal``. A frozen contract refuses every call
  (``[frozen] contract …``), also from other contracts; read-only queries still work. The freeze lapses by itself
  at height ``until``: every check compares with the block height, so no end-of-block scan is needed.
* ``unfreeze(address, reason)`` — lifts a freeze early.
* ``abolish(address, reason)`` — permanent: the key is revoked (``sys:revoked``, so it never returns as a member and
  the mempool refuses it), the address can never be unfrozen, and no key with this address can be added later.
  Refused for contracts (freeze them), for keys with the ``admin`` role (governance keys leave only by governance:
  ``member.revoke`` or ``org.remove``) and for validators (remove them from the set first).
* ``appeal(reason)`` — a frozen account states its case once per freeze (an ``Appealed`` event).

The same three actions exist as governance actions (``["regulator.freeze", address, reason, until]``, …) so that
a stricter policy than one regulator (e.g. ``2`` of ``regulator``) can be met by proposals or endorsements.
State: ``sys:regulator`` address (text) → map ``{state, kind, height, until, reason, by, via, appealed}``. Pure
code over the block's buffered state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.contracts import get_code, is_contract_target
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.members import (
    ADDRESS_NAMESPACE,
    ORG_NAMESPACE,
    REVOKED_NAMESPACE,
    get_org,
    get_validator_sets,
)
from qilian.execution.messages import compute_receipt_error, quote
from qilian.execution.modules.base import Module, expect_args
from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Event, Transaction

StateGet = Callable[[str, bytes], bytes | None]

REGULATOR_MODULE: Final = "regulator"
"""Target of regulator transactions."""
REGULATOR_NAMESPACE: Final = "sys:regulator"
"""State namespace of regulation: key = address (text), value = a map (see :class:`Regulation`)."""
REGULATOR_ROLE: Final = "regulator"
"""The role whose keys the default policies count."""
FROZEN: Final = "frozen"
ABOLISHED: Final = "abolished"
MAX_REASON: Final = 256
"""Longest reason (characters) an action or an appeal carries."""
MAX_HEIGHT: Final = 2**63 - 1
EXEMPT_MODULES: Final = frozenset({"gov"})
"""Modules a frozen account may still use: governance belongs to the consortium, not to the regulator."""
EXEMPT_METHODS: Final = frozenset({(REGULATOR_MODULE, "appeal")})
"""(module, method) pairs a frozen account may still send: the appeal."""

REGULATOR_ACTIONS: Final = {"regulator.freeze": 3, "regulator.unfreeze": 2, "regulator.abolish": 2}
"""Governance action kind → number of arguments: ``[regulator.freeze, address, reason, until]`` (until 0: until
unfrozen), ``[regulator.unfreeze, address, reason]``, ``[regulator.abolish, address, reason]``. The resource of
each is its kind."""


@dataclass(frozen=True, slots=True)
class Regulation:
    """A freeze or abolition of one address, as stored."""

    state: str
    """``frozen`` or ``abolished``."""
    kind: str
    """``account`` or ``contract`` (what the address was when the action applied)."""
    height: int
    """Height of the action."""
    until: int
    """First height at which a freeze no longer applies (0: until unfrozen; always 0 when abolished)."""
    reason: str
    """The regulator's reason."""
    by: tuple[str, ...]
    """Organisations whose approval counted."""
    via: str
    """``tx`` (a regulator's own transaction), ``proposal N`` or ``endorsements``."""
    appealed: int = 0
    """Height of the account's appeal against this freeze (0: none yet)."""

    def to_value(self) -> dict[str, Any]:
        return {"state": self.state, "kind": self.kind, "height": self.height, "until": self.until,
                "reason": self.reason, "by": list(self.by), "via": self.via, "appealed": self.appealed}

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> Regulation:
        return cls(d["state"], d["kind"], d["height"], d["until"], d["reason"], tuple(d["by"]), d["via"],
                   d["appealed"])

    def is_in_force(self, height: int) -> bool:
        """Whether it applies to a transaction of block ``height``: abolition always, a freeze until ``until``."""
        return self.state == ABOLISHED or self.until == 0 or height < self.until

    def describe(self, address: str) -> str:
        """The stable receipt text of a refused transaction: ``[frozen]`` or ``[abolished]`` first."""
        who = f"by {', '.join(self.by)} at height {self.height}: {quote(self.reason)}"
        if self.state == ABOLISHED:
            return f"[abolished] account {address} was abolished ({who}); abolition is permanent"
        until = f"until height {self.until}" if self.until else "until unfrozen"
        return f"[frozen] {self.kind} {address} is frozen {until} ({who})"


def get_regulation(state: StateGet, address: str) -> Regulation | None:
    """The stored regulation of an address (in force or lapsed), or None."""
    raw = state(REGULATOR_NAMESPACE, address.encode())
    return None if raw is None else Regulation.from_value(decode_raw(raw))


def get_regulation_in_force(state: StateGet, address: str, height: int) -> Regulation | None:
    """The regulation of an address that applies at ``height`` (a lapsed freeze is None)."""
    reg = get_regulation(state, address)
    return reg if reg is not None and reg.is_in_force(height) else None


def is_contract_frozen(state: StateGet, address: str, height: int) -> bool:
    """Whether a regulator's freeze stops calls of this contract at ``height`` (the contract runner's hook, so
    a contract cannot call a frozen one either)."""
    return get_regulation_in_force(state, address, height) is not None


def check_sender_not_frozen(env: BlockEnv, call: TxCall) -> None:
    """Raise CallFailed with the ``[frozen]`` / ``[abolished]`` text when the sender's account is regulated at
    this height and the call is not one a frozen account keeps (governance, the appeal)."""
    to, method = call.tx.body.to, call.tx.body.method
    if to in EXEMPT_MODULES or (to, method) in EXEMPT_METHODS:
        return
    reg = get_regulation_in_force(env.state.get, call.sender, env.height)
    if reg is not None:
        raise CallFailed(reg.describe(call.sender) + ("; appeal with regulator.appeal" if reg.state == FROZEN
                                                      else ""))


def check_admission_not_frozen(state: StateGet, sender: str, to: str, method: str, height: int) -> None:
    """Mempool admission's version of :func:`check_sender_not_frozen`: refuse (TxRejected ``frozen``) a regulated
    account's transaction before it takes room in a block, where it could only fail. The block rule stays the
    authority (the state may change before the block); this only keeps frozen accounts from filling blocks."""
    if to in EXEMPT_MODULES or (to, method) in EXEMPT_METHODS:
        return
    reg = get_regulation_in_force(state, sender, height)
    if reg is not None:
        raise TxRejected("frozen", compute_receipt_error(reg.describe(sender)))


def check_contract_not_frozen(env: BlockEnv, address: str) -> None:
    """Raise CallFailed with the ``[frozen]`` text when a regulator froze this contract at this height."""
    reg = get_regulation_in_force(env.state.get, address, env.height)
    if reg is not None:
        raise CallFailed(reg.describe(address))


def _parse_address(env: BlockEnv, value: Any, where: str) -> tuple[str, str]:
    """(address, ``account`` | ``contract``) of an action's target; CallFailed if it is not an address."""
    if type(value) is not str or not is_contract_target(value):
        raise CallFailed(f"{where}: the target is an address (40 lowercase hex digits) or a system contract name")
    kind = "contract" if get_code(env.state.get, value) is not None else "account"
    return value, kind


def _parse_reason(value: Any, where: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_REASON:
        raise CallFailed(f"{where}: the reason is a text of 1..{MAX_REASON} characters (it is recorded on chain)")
    return value


def _parse_until(env: BlockEnv, value: Any, where: str) -> int:
    if type(value) is not int or not (value == 0 or env.height < value <= MAX_HEIGHT):
        raise CallFailed(f"{where}: until is 0 (until unfrozen) or a height after {env.height}")
    return value


def _get_member_key(env: BlockEnv, address: str) -> bytes | None:
    """The public key that ever had this address (sys:address), or None."""
    return env.state.get(ADDRESS_NAMESPACE, bytes.fromhex(address))


def compute_regulator_target(env: BlockEnv, kind: str, args: tuple[Any, ...]) -> tuple[str, str | None]:
    """(policy resource, owning organisation) of a regulator action in the current state; CallFailed if it cannot
    apply (already frozen, not frozen, abolished, an admin or validator key to abolish …)."""
    where = kind
    address, target_kind = _parse_address(env, args[0], where)
    _parse_reason(args[1], where)
    reg = get_regulation(env.state.get, address)
    if reg is not None and reg.state == ABOLISHED:
        raise CallFailed(f"{where}: " + reg.describe(address))
    current = reg if reg is not None and reg.is_in_force(env.height) else None
    if kind == "regulator.freeze":
        _parse_until(env, args[2], where)
        if current is not None:
            raise CallFailed(f"{where}: {target_kind} {address} is already frozen (since height {current.height}); "
                             f"unfreeze it first to change the terms")
    elif kind == "regulator.unfreeze":
        if current is None:
            raise CallFailed(f"{where}: {target_kind} {address} is not frozen")
    elif kind == "regulator.abolish":
        if target_kind == "contract":
            raise CallFailed(f"{where}: {address} is a contract; abolition is for accounts (freeze the contract)")
        _check_abolishable(env, address, where)
    else:  # pragma: no cover - compute_action checked the kind
        raise CallFailed(f"unknown action {quote(kind)}")
    return kind, None


def _check_abolishable(env: BlockEnv, address: str, where: str) -> None:
    key = _get_member_key(env, address)
    member = None if key is None else env.get_member(key)
    if key is None or member is None:
        return
    if "admin" in member.roles:
        raise CallFailed(f"{where}: account {address} is an admin key of {member.organisation}; governance keys "
                         f"leave only by governance (member.revoke or org.remove) — freeze it instead")
    current, nxt = get_validator_sets(env.rules, env.state.get)
    for label, vset in (("current", current), ("next", nxt)):
        if any(v.public_key == key for v in vset.validators):
            raise CallFailed(f"{where}: account {address} is in the {label} validator set; remove the validator "
                             f"first (validator.update with power 0)")


def _revoke(env: BlockEnv, key: bytes, reason: str) -> str | None:
    """Revoke a member key for good (the abolished account's membership); the organisation, or None when the key
    was no member."""
    raw = env.state.get(MEMBER_NAMESPACE, key)
    if raw is None:
        return None
    org, name, _ = decode_raw(raw)
    env.state.put(MEMBER_NAMESPACE, key, None)
    env.state.put(REVOKED_NAMESPACE, key, encode_trusted([org, name, env.height, reason]))
    record = get_org(env.state.get, org)
    if record is not None:
        added, info, keys = record
        env.state.put(ORG_NAMESPACE, org.encode(), encode_trusted([added, info, sorted(k for k in keys if k != key)]))
    env.process_forget()
    return str(org)


def process_regulator_action(env: BlockEnv, kind: str, args: tuple[Any, ...], approvers: list[str],
                             via: str) -> Outcome:
    """Apply an approved regulator action (checked again here: the state may have changed since it was
    proposed). Emits ``Frozen``, ``Unfrozen`` or ``Abolished`` from source ``regulator``."""
    compute_regulator_target(env, kind, args)
    address, target_kind = _parse_address(env, args[0], kind)
    reason = _parse_reason(args[1], kind)
    data: dict[str, Any] = {"address": address, "kind": target_kind, "reason": reason, "approvers": approvers,
                            "via": via}
    if kind == "regulator.freeze":
        until = args[2]
        reg = Regulation(FROZEN, target_kind, env.height, until, reason, tuple(approvers), via)
        env.state.put(REGULATOR_NAMESPACE, address.encode(), encode_trusted(reg.to_value()))
        return Outcome(reg.to_value(), (Event(REGULATOR_MODULE, "Frozen", {**data, "until": until}),))
    if kind == "regulator.unfreeze":
        env.state.put(REGULATOR_NAMESPACE, address.encode(), None)
        return Outcome(address, (Event(REGULATOR_MODULE, "Unfrozen", data),))
    reg = Regulation(ABOLISHED, target_kind, env.height, 0, reason, tuple(approvers), via)
    env.state.put(REGULATOR_NAMESPACE, address.encode(), encode_trusted(reg.to_value()))
    key = _get_member_key(env, address)
    org = None if key is None else _revoke(env, key, f"abolished: {reason}"[:MAX_REASON])
    return Outcome(reg.to_value(), (Event(REGULATOR_MODULE, "Abolished", {**data, "revoked_org": org or ""}),))


def check_new_keys_not_abolished(env: BlockEnv, kind: str, args: tuple[Any, ...]) -> None:
    """Refuse a membership action that would (re-)admit a key whose address was abolished (a key that was a
    member is also refused as revoked; this covers an abolished address that never was one)."""
    keys: list[Any] = []
    if kind == "org.add" and type(args[1]) in (list, tuple):
        keys = [m[1] for m in args[1] if type(m) in (list, tuple) and len(m) == 3]
    elif kind == "member.add":
        keys = [args[2]]
    elif kind == "member.rotate":
        keys = [args[1]]
    for key in keys:
        if type(key) is not bytes:
            continue
        address = env.rules.suite.compute_address(key).hex()
        reg = get_regulation(env.state.get, address)
        if reg is not None and reg.state == ABOLISHED:
            raise CallFailed(f"{kind}: " + reg.describe(address) + "; the key can never become a member")


class RegulatorModule(Module):
    """A regulator's own transactions (one approval: the sender's), and a frozen account's appeal."""

    name = REGULATOR_MODULE
    version = 1
    methods: ClassVar = {"freeze": "regulator.freeze", "unfreeze": "regulator.unfreeze",
                         "abolish": "regulator.abolish", "appeal": ""}
    arity: ClassVar = {"freeze": (2, 3), "unfreeze": (2,), "abolish": (2,), "appeal": (1,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        counts = self.arity[tx.body.method]
        if len(tx.body.args) not in counts:
            raise TxRejected("bad_args", f"regulator.{tx.body.method} takes {' or '.join(map(str, counts))} "
                                         f"argument(s), got {len(tx.body.args)}")

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        if call.method == "appeal":
            return self.process_appeal(env, call)
        if call.method == "freeze":
            args = expect_args(call, (2, 3), "regulator.freeze takes (address, reason[, until])")
            action = ("regulator.freeze", args[0], args[1], args[2] if len(args) == 3 else 0)
        elif call.method in ("unfreeze", "abolish"):
            args = expect_args(call, (2,), f"regulator.{call.method} takes (address, reason)")
            action = (f"regulator.{call.method}", *args)
        else:
            raise CallFailed(f"regulator has no method {quote(call.method)}")
        kind, args = action[0], tuple(action[1:])
        resource, _ = compute_regulator_target(env, kind, args)
        verdict = env.process_require(resource, (call.member.to_approver(),))
        return process_regulator_action(env, kind, args, list(verdict.found), "tx")

    def process_appeal(self, env: BlockEnv, call: TxCall) -> Outcome:
        """Record a frozen account's appeal: once per freeze, so an appeal cannot flood the chain."""
        (reason_value,) = expect_args(call, (1,), "regulator.appeal takes (reason)")
        reason = _parse_reason(reason_value, "regulator.appeal")
        reg = get_regulation_in_force(env.state.get, call.sender, env.height)
        if reg is None:
            raise CallFailed(f"regulator.appeal: account {call.sender} is not frozen; nothing to appeal")
        if reg.appealed:
            raise CallFailed(f"regulator.appeal: account {call.sender} appealed this freeze at height {reg.appealed} "
                             f"already")
        updated = Regulation(reg.state, reg.kind, reg.height, reg.until, reg.reason, reg.by, reg.via, env.height)
        env.state.put(REGULATOR_NAMESPACE, call.sender.encode(), encode_trusted(updated.to_value()))
        return Outcome(call.sender, (Event(REGULATOR_MODULE, "Appealed", {
            "address": call.sender, "org": call.member.organisation, "reason": reason, "frozen_at": reg.height,
            "frozen_by": list(reg.by)}),))


__all__ = [
    "REGULATOR_ACTIONS",
    "REGULATOR_MODULE",
    "REGULATOR_NAMESPACE",
    "Regulation",
    "RegulatorModule",
    "check_contract_not_frozen",
    "check_new_keys_not_abolished",
    "check_sender_not_frozen",
    "compute_regulator_target",
    "get_regulation",
    "get_regulation_in_force",
    "is_contract_frozen",
    "process_regulator_action",
]
