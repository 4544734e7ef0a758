"""Governance: actions that need the approval of several organisations, collected two ways.

* **Online proposals** — ``gov.propose(action[, ttl])``, ``gov.vote(id, yes|no)``, ``gov.revoke(id)``. The action
  runs in the very transaction whose vote meets the policy, deterministically; a proposal that can no longer
  reach its threshold is rejected; one not decided within ``ttl`` blocks expires at the end of its last block.
* **Offline multi-signature** — ``gov.execute(action, deadline, endorsements)``: one transaction carrying
  endorsements (signatures of member keys over :func:`compute_endorsement_sign_bytes`) that meet the policy.

An action is a canonical list ``[kind, *args]``; the policy it needs depends on the kind (and, for an upgrade,
on whether the contract is a system contract). Every organisation counts once, whichever path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final

from qilian.crypto.suite import Suite
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.contracts import (
    FROZEN_NAMESPACE,
    get_code,
    get_frozen,
    is_system_contract,
)
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module, expect_args
from qilian.execution.modules.contract import compute_outcome, get_owner_org
from qilian.execution.modules.orgs import (
    MEMBERSHIP_ACTIONS,
    compute_membership_target,
    process_membership_action,
    process_promote_params,
    process_promote_validators,
)
from qilian.execution.modules.regulator import (
    REGULATOR_ACTIONS,
    check_new_keys_not_abolished,
    compute_regulator_target,
    process_regulator_action,
)
from qilian.execution.policy import (
    POLICY_NAMESPACE,
    RESOURCES,
    UNLOCKABLE,
    Approver,
    Policy,
    PolicyError,
    compute_policy,
    compute_scope,
    compute_verdict,
    encode_policy,
    is_counted,
    is_reachable,
)
from qilian.types.codec import decode_raw, encode, encode_trusted
from qilian.types.core import STATUS_OK, Event, Transaction

GOV_MODULE: Final = "gov"
"""Target of governance transactions."""
GOV_NAMESPACE: Final = "sys:gov"
"""State namespace of governance: ``next`` (next proposal id), ``p`` ‖ id (8 bytes big-endian) → proposal,
``pending`` → ids of pending proposals, ``done`` ‖ digest → height an endorsed action was executed."""
DOMAIN_ENDORSE: Final = b"QILIAN/GOV-ENDORSE/1\x00"
"""Prefix of the bytes an endorser signs, so an endorsement can never pass for a transaction or a vote."""
DEFAULT_PROPOSAL_TTL: Final = 1000
"""Blocks a proposal stays open by default."""
MAX_PROPOSAL_TTL: Final = 100_000
"""Longest a proposal may stay open."""
MAX_PENDING: Final = 256
"""Pending proposals at once: bounds the end-of-block expiry scan."""
MAX_ENDORSEMENTS: Final = 64
"""Endorsements one ``gov.execute`` may carry (each costs a signature check in execution)."""

ACTION_ARITY: Final = {"contract.upgrade": 2, "gov.set_policy": 4, "contract.freeze": 1, "contract.unfreeze": 1,
                       **MEMBERSHIP_ACTIONS, **REGULATOR_ACTIONS}
"""Action kind → number of arguments: ``[contract.upgrade, address, source]``, ``[gov.set_policy, resource, rule,
orgs, roles]``, ``[contract.freeze, address]``, ``[contract.unfreeze, address]``, the membership and
validator actions of :data:`qilian.execution.modules.orgs.MEMBERSHIP_ACTIONS`, and the regulator's actions of
:data:`qilian.execution.modules.regulator.REGULATOR_ACTIONS` (so a policy stricter than one regulator can be met by
proposals or endorsements)."""

PENDING: Final = "pending"
EXECUTED: Final = "executed"
REJECTED: Final = "rejected"
REVOKED: Final = "revoked"
EXPIRED: Final = "expired"
FAILED: Final = "failed"


@dataclass(frozen=True, slots=True)
class Action:
    """A governed change, as proposed or endorsed."""

    kind: str
    """One of ACTION_ARITY's kinds."""
    args: tuple[Any, ...]
    """Its arguments (codec values)."""

    def to_value(self) -> list[Any]:
        """The canonical list ``[kind, *args]`` that is signed and stored."""
        return [self.kind, *self.args]


def compute_action(value: Any) -> Action:
    """Check an action's shape (not yet whether it applies to the current state); raises CallFailed."""
    if type(value) not in (list, tuple) or not value or type(value[0]) is not str:
        raise CallFailed(f"an action is a list [kind, *args]; kinds: {', '.join(ACTION_ARITY)}")
    kind, args = value[0], tuple(value[1:])
    arity = ACTION_ARITY.get(kind)
    if arity is None:
        raise CallFailed(f"unknown action {quote(kind)}; kinds: {', '.join(ACTION_ARITY)}")
    if len(args) != arity:
        raise CallFailed(f"action {kind} takes {arity} argument(s), got {len(args)}")
    if kind in ("contract.upgrade", "contract.freeze", "contract.unfreeze") and type(args[0]) is not str:
        raise CallFailed(f"action {kind}: the contract address must be text")
    if kind == "contract.upgrade" and type(args[1]) is not str:
        raise CallFailed("action contract.upgrade: the source must be text")
    if kind == "gov.set_policy" and type(args[0]) is not str:
        raise CallFailed("action gov.set_policy: the resource must be text")
    return Action(kind, args)


def compute_endorsement_sign_bytes(suite: Suite, chain_id: str, action: list[Any], deadline: int) -> bytes:
    """What an endorser signs: the domain tag, then hash([chain_id, action bytes, deadline]). The chain ID keeps
    an endorsement from being replayed on another chain, the deadline (a height) bounds how long it is good for,
    and the chain records each executed digest so it is used once."""
    action_bytes = encode(list(action))
    return DOMAIN_ENDORSE + suite.hash(encode_trusted([chain_id, action_bytes, deadline]))


def compute_endorsement(suite: Suite, private_key: bytes, public_key: bytes, chain_id: str, action: list[Any],
                        deadline: int) -> list[bytes]:
    """An endorsement ``[public_key, signature]`` by a member key."""
    return [public_key, suite.sign(private_key, compute_endorsement_sign_bytes(suite, chain_id, action, deadline))]


def compute_proposal_key(proposal_id: int) -> bytes:
    """State key of a proposal under GOV_NAMESPACE."""
    return b"p" + proposal_id.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class Vote:
    """One organisation's vote on a proposal."""

    org: str
    """The voter's organisation (counted once)."""
    member: str
    """The voter's member name."""
    address: str
    """The voter's address (hex)."""
    roles: tuple[str, ...]
    """The voter's roles, so the tally can be redone under a changed policy."""
    yes: bool
    """For or against."""
    height: int
    """Height of the vote."""

    def to_approver(self) -> Approver:
        return Approver(self.org, self.member, frozenset(self.roles))


@dataclass(frozen=True, slots=True)
class Proposal:
    """A pending or decided governance proposal, as stored in state (a map, readable in proofs)."""

    id: int
    """Sequential id, from 1."""
    proposer: str
    """Proposer's address (hex); only it may revoke."""
    proposer_org: str
    """Proposer's organisation."""
    action: tuple[Any, ...]
    """The action ``[kind, *args]``."""
    resource: str
    """The policy resource the action needs."""
    self_org: str
    """Owning organisation for SELF rules (a contract's deployer's); empty for none."""
    created: int
    """Height it was proposed at."""
    expires: int
    """Last height at which it may be voted on."""
    status: str
    """pending, executed, rejected, revoked, expired or failed."""
    votes: tuple[Vote, ...]
    """Votes in order, at most one per organisation."""
    decided: int = 0
    """Height it left ``pending`` (0 while pending)."""
    result: str = ""
    """Why it failed or was rejected (empty otherwise)."""

    def to_value(self) -> dict[str, Any]:
        return {
            "id": self.id, "proposer": self.proposer, "proposer_org": self.proposer_org, "action": list(self.action),
            "resource": self.resource, "self_org": self.self_org, "created": self.created, "expires": self.expires,
            "status": self.status, "decided": self.decided, "result": self.result,
            "votes": [{"org": v.org, "member": v.member, "address": v.address, "roles": list(v.roles),
                       "yes": v.yes, "height": v.height} for v in self.votes],
        }

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> Proposal:
        votes = tuple(Vote(v["org"], v["member"], v["address"], tuple(v["roles"]), v["yes"], v["height"])
                      for v in d["votes"])
        return cls(d["id"], d["proposer"], d["proposer_org"], tuple(d["action"]), d["resource"], d["self_org"],
                   d["created"], d["expires"], d["status"], votes, d["decided"], d["result"])

    def summary(self) -> dict[str, Any]:
        """The receipt's result: status and tally, without the (possibly large) action."""
        return {"id": self.id, "status": self.status, "resource": self.resource, "expires": self.expires,
                "yes": sorted(v.org for v in self.votes if v.yes), "no": sorted(v.org for v in self.votes if not v.yes),
                "result": self.result}


def get_proposal(state: Any, proposal_id: int) -> Proposal | None:
    """A stored proposal (``state`` is a ``get(namespace, key)`` callable)."""
    raw = state(GOV_NAMESPACE, compute_proposal_key(proposal_id))
    return None if raw is None else Proposal.from_value(decode_raw(raw))


def get_proposal_count(state: Any) -> int:
    """How many proposals were ever made (ids run 1..count)."""
    raw = state(GOV_NAMESPACE, b"next")
    return 0 if raw is None else int(decode_raw(raw)) - 1


def _get_pending(env: BlockEnv) -> list[int]:
    raw = env.state.get(GOV_NAMESPACE, b"pending")
    return [] if raw is None else list(decode_raw(raw))


def _put_pending(env: BlockEnv, ids: list[int]) -> None:
    env.state.put(GOV_NAMESPACE, b"pending", encode_trusted(ids) if ids else None)


def _put_proposal(env: BlockEnv, p: Proposal) -> None:
    env.state.put(GOV_NAMESPACE, compute_proposal_key(p.id), encode_trusted(p.to_value()))


def compute_action_target(env: BlockEnv, action: Action) -> tuple[str, str | None]:
    """(policy resource, owning organisation) of an action in the current state; CallFailed if it cannot apply."""
    if action.kind == "contract.upgrade":
        address = action.args[0]
        if is_system_contract(address):
            return "contract.upgrade.system", None
        code = get_code(env.state.get, address)
        if code is None:
            raise CallFailed(f"no contract at {address}")
        return "contract.upgrade", get_owner_org(env, code[1])
    if action.kind == "gov.set_policy":
        compute_new_policy(env, action)
        return "gov.set_policy", None
    if action.kind in MEMBERSHIP_ACTIONS:
        check_new_keys_not_abolished(env, action.kind, action.args)
        return compute_membership_target(env, action.kind, action.args)
    if action.kind in REGULATOR_ACTIONS:
        return compute_regulator_target(env, action.kind, action.args)
    address = action.args[0]
    if get_code(env.state.get, address) is None:
        raise CallFailed(f"no contract at {address}")
    return action.kind, None


def compute_new_policy(env: BlockEnv, action: Action) -> tuple[str, Policy]:
    """The (resource, policy) a set_policy action would store; CallFailed if it is not well formed."""
    resource, rule, orgs, roles = action.args
    if resource not in RESOURCES:
        raise CallFailed(f"unknown resource {quote(resource)}; resources: {', '.join(RESOURCES)}")
    try:
        policy = compute_policy(rule, orgs, roles, env.get_org_names())
    except PolicyError as exc:
        raise CallFailed(f"set_policy {resource}: {exc}") from None
    if policy.rule == "FORBIDDEN" and resource in UNLOCKABLE:
        raise CallFailed(f"{resource} may not be FORBIDDEN: the policy table could never change again")
    return resource, policy


def process_action(env: BlockEnv, action: Action, approvers: list[str], via: str) -> Outcome:
    """Apply an approved action; a failed Outcome (or CallFailed) means nothing of it may be kept."""
    if action.kind == "contract.upgrade":
        return compute_outcome(env.contracts.upgrade(action.args[0], action.args[1], approvers, via))
    if action.kind == "gov.set_policy":
        resource, policy = compute_new_policy(env, action)
        env.state.put(POLICY_NAMESPACE, resource.encode(), encode_policy(policy))
        env.policies.clear()
        return Outcome(resource, (Event(GOV_MODULE, "PolicySet", {
            "resource": resource, "rule": policy.rule, "orgs": list(policy.orgs), "roles": list(policy.roles),
            "approvers": approvers, "via": via}),))
    if action.kind in MEMBERSHIP_ACTIONS:
        check_new_keys_not_abolished(env, action.kind, action.args)
        out = process_membership_action(env, action.kind, action.args, approvers, via)
        env.process_forget()
        return out
    if action.kind in REGULATOR_ACTIONS:
        out = process_regulator_action(env, action.kind, action.args, approvers, via)
        env.process_forget()
        return out
    address = action.args[0]
    frozen = get_frozen(env.state.get, address)
    if action.kind == "contract.freeze":
        if frozen is not None:
            raise CallFailed(f"contract {address} is already frozen")
        env.state.put(FROZEN_NAMESPACE, address.encode(), encode_trusted([env.height, approvers]))
        return Outcome(address, (Event(GOV_MODULE, "Frozen", {"address": address, "approvers": approvers}),))
    if frozen is None:
        raise CallFailed(f"contract {address} is not frozen")
    env.state.put(FROZEN_NAMESPACE, address.encode(), None)
    return Outcome(address, (Event(GOV_MODULE, "Unfrozen", {"address": address, "approvers": approvers}),))


def _parse_vote(value: Any) -> bool:
    if type(value) is bool:
        return value
    if value in ("yes", "no"):
        return value == "yes"
    raise CallFailed("a vote is yes or no")


def _parse_id(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise CallFailed("a proposal id is a positive integer")
    return value


class GovModule(Module):
    """Proposals, votes and multi-signature execution of governed actions."""

    name = GOV_MODULE
    version = 1
    methods: ClassVar = {"propose": "gov.propose", "vote": "", "revoke": "", "execute": ""}
    arity: ClassVar = {"propose": (1, 2), "vote": (2,), "revoke": (1,), "execute": (3,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        counts = self.arity[tx.body.method]
        if len(tx.body.args) not in counts:
            raise TxRejected("bad_args", f"gov.{tx.body.method} takes {' or '.join(map(str, counts))} argument(s), "
                                         f"got {len(tx.body.args)}")

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        if call.method == "propose":
            return self.process_propose(env, call)
        if call.method == "vote":
            return self.process_vote(env, call)
        if call.method == "revoke":
            return self.process_revoke(env, call)
        if call.method == "execute":
            return self.process_execute(env, call)
        raise CallFailed(f"gov has no method {quote(call.method)}")

    # -- online proposals -------------------------------------------------------------------------------

    def process_propose(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = expect_args(call, (1, 2), "gov.propose takes (action[, ttl])")
        ttl = args[1] if len(args) == 2 else DEFAULT_PROPOSAL_TTL
        if type(ttl) is not int or not 1 <= ttl <= MAX_PROPOSAL_TTL:
            raise CallFailed(f"ttl must be 1..{MAX_PROPOSAL_TTL} blocks")
        env.process_require("gov.propose", (call.member.to_approver(),))
        action = compute_action(args[0])
        resource, self_org = compute_action_target(env, action)
        pending = _get_pending(env)
        if len(pending) >= MAX_PENDING:
            raise CallFailed(f"{MAX_PENDING} proposals are pending already; vote, revoke or let them expire")
        raw = env.state.get(GOV_NAMESPACE, b"next")
        pid = 1 if raw is None else int(decode_raw(raw))
        env.state.put(GOV_NAMESPACE, b"next", encode_trusted(pid + 1))
        p = Proposal(pid, call.sender, call.member.organisation, tuple(action.to_value()), resource,
                     self_org or "", env.height, env.height + ttl, PENDING, ())
        events = [Event(GOV_MODULE, "Proposed", {"id": pid, "kind": action.kind, "resource": resource,
                                                 "proposer_org": p.proposer_org})]
        policy = env.get_policy(resource)
        scope = compute_scope(policy, env.get_org_names(), self_org)
        if is_counted(policy, scope, call.member.to_approver()):
            p = replace(p, votes=(self._vote_of(env, call, True),))
        p, more = self._process_tally(env, p)
        _put_proposal(env, p)
        if p.status == PENDING:
            _put_pending(env, [*pending, pid])
        return Outcome(p.summary(), (*events, *more))

    def process_vote(self, env: BlockEnv, call: TxCall) -> Outcome:
        pid_value, vote_value = expect_args(call, (2,), "gov.vote takes (id, yes|no)")
        pid, yes = _parse_id(pid_value), _parse_vote(vote_value)
        p = self._get_open(env, pid)
        me = call.member.to_approver()
        for v in p.votes:
            if v.org == me.org:
                raise CallFailed(f"organisation {v.org} has already voted on proposal {pid} ({v.org}/{v.member} at "
                                 f"height {v.height}); an organisation counts once")
        policy = env.get_policy(p.resource)
        scope = compute_scope(policy, env.get_org_names(), p.self_org or None)
        if not is_counted(policy, scope, me):
            raise CallFailed(f"the vote of {me.org}/{me.name} would not count: policy {p.resource} is "
                             f"{policy.describe()}" + (f" (owner {p.self_org})" if policy.rule == "SELF" else ""))
        p = replace(p, votes=(*p.votes, self._vote_of(env, call, yes)))
        event = Event(GOV_MODULE, "Voted", {"id": pid, "org": me.org, "yes": yes})
        p, more = self._process_tally(env, p)
        _put_proposal(env, p)
        if p.status != PENDING:
            _put_pending(env, [i for i in _get_pending(env) if i != pid])
        return Outcome(p.summary(), (event, *more))

    def process_revoke(self, env: BlockEnv, call: TxCall) -> Outcome:
        (pid_value,) = expect_args(call, (1,), "gov.revoke takes (id)")
        p = self._get_open(env, _parse_id(pid_value))
        if p.proposer != call.sender:
            raise CallFailed(f"only the proposer ({p.proposer_org}, address {p.proposer}) may revoke proposal {p.id}")
        p = replace(p, status=REVOKED, decided=env.height)
        _put_proposal(env, p)
        _put_pending(env, [i for i in _get_pending(env) if i != p.id])
        return Outcome(p.summary(), (Event(GOV_MODULE, "Revoked", {"id": p.id}),))

    def begin_block(self, env: BlockEnv) -> None:
        """Promote the validator set decided two blocks ago (see process_promote_validators) and the chain
        parameters scheduled for this height (process_promote_params)."""
        process_promote_validators(env)
        process_promote_params(env)

    def end_block(self, env: BlockEnv) -> None:
        """Expire the pending proposals whose last voting height is this one (a vote later is refused)."""
        pending = _get_pending(env)
        if not pending:
            return
        keep = []
        for pid in pending:
            p = get_proposal(env.state.get, pid)
            if p is None or p.status != PENDING:
                continue
            if p.expires <= env.height:
                _put_proposal(env, replace(p, status=EXPIRED, decided=env.height))
            else:
                keep.append(pid)
        if keep != pending:
            _put_pending(env, keep)

    def _get_open(self, env: BlockEnv, pid: int) -> Proposal:
        p = get_proposal(env.state.get, pid)
        if p is None:
            raise CallFailed(f"no proposal {pid}")
        if p.status != PENDING:
            raise CallFailed(f"proposal {pid} is {p.status}" + (f" (since height {p.decided})" if p.decided else ""))
        if env.height > p.expires:  # pragma: no cover - end_block marks it expired first
            raise CallFailed(f"proposal {pid} expired at height {p.expires}")
        return p

    def _vote_of(self, env: BlockEnv, call: TxCall, yes: bool) -> Vote:
        m = call.member
        return Vote(m.organisation, m.name, call.sender, tuple(sorted(m.roles)), yes, env.height)

    def _process_tally(self, env: BlockEnv, p: Proposal) -> tuple[Proposal, tuple[Event, ...]]:
        """Execute the action if the yes votes meet the policy now; reject it if they never can."""
        policy = env.get_policy(p.resource)
        self_org = p.self_org or None
        yes = [v.to_approver() for v in p.votes if v.yes]
        verdict = compute_verdict(p.resource, policy, yes, env.get_org_names(), self_org)
        if verdict.ok:
            saved = dict(env.state.tx_writes)
            try:
                out = process_action(env, compute_action(list(p.action)), list(verdict.found), f"proposal {p.id}")
            except CallFailed as exc:
                out = Outcome(status=1, error=str(exc))
            if out.status != STATUS_OK:
                env.state.tx_writes = saved
                env.process_forget()
                return (replace(p, status=FAILED, decided=env.height, result=out.error),
                        (Event(GOV_MODULE, "Failed", {"id": p.id, "error": out.error[:512]}),))
            return (replace(p, status=EXECUTED, decided=env.height),
                    (*out.events, Event(GOV_MODULE, "Executed", {"id": p.id, "approvers": list(verdict.found)})))
        voted = {v.org for v in p.votes}
        undecided = [o for o in compute_scope(policy, env.get_org_names(), self_org) if o not in voted]
        if not is_reachable(p.resource, policy, yes, undecided, env.get_org_names(), self_org):
            return (replace(p, status=REJECTED, decided=env.height, result=verdict.message),
                    (Event(GOV_MODULE, "Rejected", {"id": p.id}),))
        return p, ()

    # -- offline multi-signature ------------------------------------------------------------------------

    def process_execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        action_value, deadline, endorsements = expect_args(call, (3,), "gov.execute takes (action, deadline, "
                                                                        "endorsements)")
        action = compute_action(action_value)
        if type(deadline) is not int or deadline < 0:
            raise CallFailed("deadline must be a block height")
        if env.height > deadline:
            raise CallFailed(f"the endorsements were good until height {deadline}; the chain is at {env.height}")
        if type(endorsements) is not list or len(endorsements) > MAX_ENDORSEMENTS:
            raise CallFailed(f"endorsements must be a list of at most {MAX_ENDORSEMENTS} [public_key, signature]")
        suite = env.rules.suite
        sign_bytes = compute_endorsement_sign_bytes(suite, env.rules.chain_id, action.to_value(), deadline)
        digest = suite.hash(sign_bytes)
        done = env.state.get(GOV_NAMESPACE, b"done" + digest)
        if done is not None:
            raise CallFailed(f"these endorsements were already used at height {decode_raw(done)}")
        resource, self_org = compute_action_target(env, action)
        policy = env.get_policy(resource)
        approvers = [call.member.to_approver()]
        scope = compute_scope(policy, env.get_org_names(), self_org)
        for i, e in enumerate(endorsements):
            approvers.append(self._check_endorsement(env, i, e, sign_bytes, policy, resource, scope))
        verdict = env.process_require(resource, approvers, self_org)
        env.state.put(GOV_NAMESPACE, b"done" + digest, encode_trusted(env.height))
        out = process_action(env, action, list(verdict.found), "endorsements")
        if out.status != STATUS_OK:
            return out
        return Outcome(out.result, (*out.events, Event(GOV_MODULE, "Executed", {
            "kind": action.kind, "resource": resource, "approvers": list(verdict.found)})), out.fuel)

    def _check_endorsement(self, env: BlockEnv, i: int, e: Any, sign_bytes: bytes, policy: Policy, resource: str,
                           scope: Iterable[str]) -> Approver:
        """The approver of one endorsement, or CallFailed naming why it does not count."""
        if type(e) is not list or len(e) != 2 or type(e[0]) is not bytes or type(e[1]) is not bytes:
            raise CallFailed(f"endorsement {i} is not [public_key, signature]")
        member = env.get_member(e[0])
        if member is None:
            raise CallFailed(f"endorsement {i}: key {e[0].hex()[:16]}… is not a member of any organisation")
        who = f"{member.organisation}/{member.name}"
        if not env.rules.suite.verify(e[0], sign_bytes, e[1]):  # never raises on malformed input
            raise CallFailed(f"endorsement {i} by {who}: the signature does not verify for this action, deadline "
                             f"and chain {quote(env.rules.chain_id)}")
        approver = member.to_approver()
        if not is_counted(policy, tuple(scope), approver):
            raise CallFailed(f"endorsement {i} by {who} (roles {', '.join(sorted(member.roles))}) does not count: "
                             f"policy {resource} is {policy.describe()}")
        return approver


__all__ = [
    "DOMAIN_ENDORSE",
    "GOV_MODULE",
    "GOV_NAMESPACE",
    "Action",
    "GovModule",
    "Proposal",
    "compute_action",
    "compute_endorsement",
    "compute_endorsement_sign_bytes",
    "compute_proposal_key",
    "get_proposal",
    "get_proposal_count",
]
