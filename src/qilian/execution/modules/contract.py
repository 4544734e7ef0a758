"""Contracts as modules: ``contracts.deploy`` / ``contracts.upgrade`` under their policies, and calls of deployed
and system contracts (targets that are 40-hex addresses or system contract names)."""

from __future__ import annotations

from typing import ClassVar

from qilian.contracts import CallOutcome, Context
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.contracts import (
    CONTRACTS_MODULE,
    DEPLOY_ROLE,
    get_code,
    get_frozen,
    is_system_contract,
)
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.members import get_member_by_address
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module, expect_args
from qilian.execution.modules.regulator import check_contract_not_frozen
from qilian.types.core import STATUS_FAILED, STATUS_OUT_OF_FUEL, Event, Transaction


def compute_outcome(out: CallOutcome) -> Outcome:
    """A contract runtime outcome as a module outcome (event sources are cut to the receipt's limit)."""
    if not out.ok:
        status = STATUS_OUT_OF_FUEL if out.out_of_fuel else STATUS_FAILED
        return Outcome(None, (), out.fuel_used, status, out.error or "failed")
    return Outcome(out.value, tuple(Event(src[:128], name, data) for src, name, data in out.events), out.fuel_used)


def get_context(env: BlockEnv, call: TxCall, this: str) -> Context:
    """``ctx`` for a contract running in this transaction."""
    return Context(call.sender, call.member.organisation, env.height, env.time_ms, call.tx_hash.hex(), this,
                   call.sender)


def get_owner_org(env: BlockEnv, deployer: str) -> str | None:
    """The organisation that owns a contract: its deployer's in this state — kept after the deployer's key is
    rotated or revoked (None for system contracts, deployer "")."""
    if not deployer:
        return None
    member = get_member_by_address(env.rules, env.state.get, deployer)
    return member.organisation if member else None


class ContractsModule(Module):
    """Deployment and upgrade of contracts."""

    name = CONTRACTS_MODULE
    version = 2
    methods: ClassVar = {"deploy": "contract.deploy", "upgrade": "contract.upgrade"}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        if DEPLOY_ROLE not in member.roles:
            raise TxRejected("forbidden", f"sender {member.organisation}/{member.name} may not deploy or upgrade "
                                          f"contracts (needs the {DEPLOY_ROLE} role)")

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        me = call.member.to_approver()
        if call.method == "deploy":
            env.process_require("contract.deploy", (me,))
            ctx = get_context(env, call, CONTRACTS_MODULE)
            return compute_outcome(env.contracts.deploy(ctx, call.tx.body.sender, list(call.args)))
        if call.method == "upgrade":
            address, source = expect_args(call, (2,), "contracts.upgrade takes (address, source)")
            if type(address) is not str:
                raise CallFailed("contracts.upgrade takes (address, source)")
            if is_system_contract(address):
                policy = env.get_policy("contract.upgrade.system")
                raise CallFailed(f"{address} is a system contract: it is upgraded only through governance "
                                 f"(qilian gov propose / gov execute) under policy contract.upgrade.system = "
                                 f"{policy.describe()}; found 1 organisation ({call.member.organisation})")
            code = get_code(env.state.get, address)
            if code is None:
                raise CallFailed(f"no contract at {address}")
            verdict = env.process_require("contract.upgrade", (me,), get_owner_org(env, code[1]))
            return compute_outcome(env.contracts.upgrade(address, source, list(verdict.found), "tx"))
        raise CallFailed(f"contracts has no method {quote(call.method)}")


class ContractCallModule(Module):
    """Calls of contract functions; addressed by the contract's address, not by a module name."""

    name = "contract-call"
    version = 1

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        """Any method: whether the contract exports it is known only when it runs."""

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        to = call.tx.body.to
        frozen = get_frozen(env.state.get, to)
        if frozen is not None:
            raise CallFailed(f"contract {to} is frozen (by governance at height {frozen[0]}, approved by "
                             f"{', '.join(frozen[1])})")
        check_contract_not_frozen(env, to)  # a regulator's freeze: "[frozen] contract … is frozen until …"
        return compute_outcome(env.contracts.call(get_context(env, call, to), call.method, list(call.args)))
