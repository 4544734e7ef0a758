"""Policies: who must approve an action, in ChainMaker's language, kept in authenticated state.

A policy names a rule over organisations × roles. Approvals are counted **per organisation**: an organisation
approves when at least one of its keys with one of the policy's roles signed, so two admins of one organisation
count once (a consortium is a set of organisations, not of keys). Pure code: the state reader comes in.

Rules:

* ``ANY`` — one organisation in scope; ``ALL`` — every organisation in scope;
* ``MAJORITY`` — more than half of the organisations in scope;
* ``n`` (e.g. ``2``) — at least n organisations; ``a/b`` (e.g. ``2/3``) — at least a/b of them (rounded up);
* ``SELF`` — the organisation that owns the resource (a contract's deployer); nothing else counts;
* ``FORBIDDEN`` — nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from qilian.execution.messages import quote
from qilian.types.codec import CodecError, decode_raw, encode_trusted
from qilian.types.core import ROLES

POLICY_NAMESPACE: Final = "sys:policy"
"""State namespace of policies: key = resource name (UTF-8), value = canonical [rule, orgs, roles]."""
MEMBER_NAMESPACE: Final = "sys:member"
"""State namespace of membership: key = raw public key, value = canonical [org, name, roles] (seeded at genesis;
what a light client proves a sender's organisation from)."""

RULE_WORDS: Final = ("ALL", "ANY", "MAJORITY", "SELF", "FORBIDDEN")
"""Rules that are words; the others are a count ``n`` or a fraction ``a/b``."""
MAX_RULE_NUMBER: Final = 1000
"""Largest n, a or b in a rule (a consortium of more organisations is not a use case)."""

GOVERNING_ROLES: Final = ("admin",)
SENDING_ROLE_LIST: Final = ("admin", "member", "validator")
REGULATOR_ROLES: Final = ("regulator",)


@dataclass(frozen=True, slots=True)
class Policy:
    """Who must approve: ``rule`` over the keys of ``orgs`` that hold one of ``roles``."""

    rule: str
    """``ALL | ANY | MAJORITY | SELF | FORBIDDEN``, a count ``n`` or a fraction ``a/b``."""
    orgs: tuple[str, ...]
    """Organisations in scope, sorted; empty means every organisation of the chain."""
    roles: tuple[str, ...]
    """Roles whose signatures count, sorted; never empty."""

    def to_value(self) -> list[Any]:
        """The canonical codec value stored in state."""
        return [self.rule, list(self.orgs), list(self.roles)]

    def describe(self) -> str:
        """Human form, e.g. ``MAJORITY of admin in all organisations``."""
        where = ", ".join(self.orgs) if self.orgs else "all organisations"
        return f"{self.rule} of {'/'.join(self.roles)} in {where}"


class PolicyError(ValueError):
    """A policy that is not well formed; the message names the part."""


DEFAULT_POLICIES: Final[Mapping[str, Policy]] = {
    "kv.put": Policy("ANY", (), SENDING_ROLE_LIST),
    "kv.delete": Policy("ANY", (), SENDING_ROLE_LIST),
    "contract.deploy": Policy("ANY", (), GOVERNING_ROLES),
    "contract.upgrade": Policy("SELF", (), GOVERNING_ROLES),
    "contract.upgrade.system": Policy("MAJORITY", (), GOVERNING_ROLES),
    "contract.freeze": Policy("MAJORITY", (), GOVERNING_ROLES),
    "contract.unfreeze": Policy("MAJORITY", (), GOVERNING_ROLES),
    "gov.propose": Policy("ANY", (), GOVERNING_ROLES),
    "gov.set_policy": Policy("MAJORITY", (), GOVERNING_ROLES),
    # Scenario apps (docs/apps/): the modules enforce custody and holder rules; these say who may try.
    "trace.commission": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.observe": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.ship": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.receive": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.decommission": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.aggregate": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.transform": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.transact": Policy("ANY", (), SENDING_ROLE_LIST),
    "trace.recall": Policy("SELF", (), GOVERNING_ROLES),
    "iot.device": Policy("ANY", (), GOVERNING_ROLES),
    "iot.anchor": Policy("ANY", (), SENDING_ROLE_LIST),
    "copyright.register": Policy("ANY", (), SENDING_ROLE_LIST),
    "copyright.transfer": Policy("ANY", (), SENDING_ROLE_LIST),
    "copyright.license": Policy("ANY", (), SENDING_ROLE_LIST),
    "copyright.dispute": Policy("ANY", (), GOVERNING_ROLES),
    # apps (issue 17): payments and settlement, identity, government registries
    "asset.create": Policy("ANY", (), GOVERNING_ROLES),
    "asset.issue": Policy("SELF", (), GOVERNING_ROLES),
    "asset.transfer": Policy("ANY", (), SENDING_ROLE_LIST),
    "fx.quote": Policy("ANY", (), GOVERNING_ROLES),
    "settle.net": Policy("ANY", (), GOVERNING_ROLES),
    "did.write": Policy("ANY", (), SENDING_ROLE_LIST),
    "registry.create": Policy("ANY", (), GOVERNING_ROLES),
    "registry.submit": Policy("ANY", (), SENDING_ROLE_LIST),
    "gov.set_param": Policy("MAJORITY", (), GOVERNING_ROLES),
    "org.add": Policy("MAJORITY", (), GOVERNING_ROLES),
    "org.remove": Policy("MAJORITY", (), GOVERNING_ROLES),
    "org.update": Policy("MAJORITY", (), GOVERNING_ROLES),
    "member.add": Policy("SELF", (), GOVERNING_ROLES),
    "member.revoke": Policy("SELF", (), GOVERNING_ROLES),
    "member.rotate": Policy("SELF", (), GOVERNING_ROLES),
    "validator.update": Policy("MAJORITY", (), GOVERNING_ROLES),
    "node.endpoint": Policy("SELF", (), GOVERNING_ROLES),
    "chain.set_params": Policy("MAJORITY", (), GOVERNING_ROLES),
    # the regulator (execution/modules/regulator.py): one supervisory body acts alone; tighten by gov.set_policy
    "regulator.freeze": Policy("ANY", (), REGULATOR_ROLES),
    "regulator.unfreeze": Policy("ANY", (), REGULATOR_ROLES),
    "regulator.abolish": Policy("ANY", (), REGULATOR_ROLES),
}
"""The policies every chain starts with (seeded into state at genesis). A new contract harms nobody, so any
organisation's admin deploys; a contract is upgraded by its own organisation's admin; system contracts, freezes,
the policy table, chain parameters, the organisations and the validator set need a majority of the organisations'
admins, through governance; an organisation adds, revokes and rotates its own keys (SELF)."""

RESOURCES: Final = tuple(sorted(DEFAULT_POLICIES))
"""Every resource a policy may be set for (a typo in ``set_policy`` is refused rather than stored)."""
UNLOCKABLE: Final = frozenset({"gov.set_policy"})
"""Resources that may never be FORBIDDEN: that would lock the policy table for good."""


def compute_policy(rule: Any, orgs: Any, roles: Any, known_orgs: Iterable[str] | None = None) -> Policy:
    """Check and normalise a policy given as codec values; raises PolicyError naming the part at fault."""
    if type(rule) is not str or not is_valid_rule(rule):
        raise PolicyError(f"rule {quote(rule)} is not ALL, ANY, MAJORITY, SELF, FORBIDDEN, a count n or a fraction a/b "
                          f"(numbers 1..{MAX_RULE_NUMBER}, a <= b)")
    if type(orgs) not in (list, tuple) or any(type(o) is not str or not o for o in orgs):
        raise PolicyError("orgs must be a list of organisation names (empty = all)")
    if type(roles) not in (list, tuple) or not roles or any(type(r) is not str for r in roles):
        raise PolicyError("roles must be a non-empty list of role names")
    for r in roles:
        if r not in ROLES:
            raise PolicyError(f"unknown role {quote(r)} (roles: {', '.join(ROLES)})")
    if known_orgs is not None:
        known = set(known_orgs)
        for o in orgs:
            if o not in known:
                raise PolicyError(f"unknown organisation {quote(o)}")
    if len(set(orgs)) != len(orgs) or len(set(roles)) != len(roles):
        raise PolicyError("orgs and roles must not repeat")
    return Policy(rule, tuple(sorted(orgs)), tuple(sorted(roles)))


def is_valid_rule(rule: str) -> bool:
    """Whether ``rule`` is a word rule, a count 1..MAX or a fraction a/b with 1 <= a <= b <= MAX."""
    if rule in RULE_WORDS:
        return True
    parts = rule.split("/")
    if len(parts) > 2 or not all(p.isdigit() and p.isascii() and p == str(int(p)) for p in parts):
        return False
    nums = [int(p) for p in parts]
    if not all(1 <= n <= MAX_RULE_NUMBER for n in nums):
        return False
    return len(nums) == 1 or nums[0] <= nums[1]


def encode_policy(policy: Policy) -> bytes:
    """Bytes stored under ``POLICY_NAMESPACE``."""
    return encode_trusted(policy.to_value())


def decode_policy(raw: bytes) -> Policy:
    """A stored policy; raises PolicyError if the bytes are not one."""
    try:
        value = decode_raw(raw)
    except CodecError as exc:
        raise PolicyError(f"stored policy does not decode: {exc}") from None
    if type(value) is not list or len(value) != 3:
        raise PolicyError("stored policy is not [rule, orgs, roles]")
    return compute_policy(*value)


def get_policy(state: Callable[[str, bytes], bytes | None], resource: str) -> Policy:
    """The policy in force for ``resource``. Genesis seeds every known resource and policies are never deleted,
    so a missing entry means a state without genesis (a test): the default applies; an unknown resource is
    FORBIDDEN (fail closed)."""
    raw = state(POLICY_NAMESPACE, resource.encode())
    if raw is None:
        return DEFAULT_POLICIES.get(resource, Policy("FORBIDDEN", (), GOVERNING_ROLES))
    return decode_policy(raw)


@dataclass(frozen=True, slots=True)
class Approver:
    """A verified signer of an approval (a transaction sender, a voter, an endorser)."""

    org: str
    """Its organisation."""
    name: str
    """Its member name."""
    roles: frozenset[str]
    """Its roles."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of evaluating a policy over a set of approvers."""

    ok: bool
    """Whether the approvals satisfy the policy."""
    found: tuple[str, ...]
    """Organisations whose approval counted, sorted."""
    needed: int
    """How many organisations the rule needs (0 when it cannot be met at all)."""
    message: str
    """Why it failed, naming resource, rule, the signers found and needed (empty when ok)."""


def compute_needed(policy: Policy, scope_size: int) -> int:
    """How many organisations of a scope of ``scope_size`` the rule needs (SELF needs 1, FORBIDDEN 0)."""
    rule = policy.rule
    if rule in ("ANY", "SELF"):
        return 1
    if rule == "ALL":
        return scope_size
    if rule == "MAJORITY":
        return scope_size // 2 + 1
    if rule == "FORBIDDEN":
        return 0
    if "/" in rule:
        a, b = (int(p) for p in rule.split("/"))
        return max(1, (a * scope_size + b - 1) // b)
    return int(rule)


def compute_scope(policy: Policy, all_orgs: Iterable[str], self_org: str | None) -> tuple[str, ...]:
    """The organisations whose approval counts: SELF's owner, the listed ones, or all."""
    if policy.rule == "SELF":
        return (self_org,) if self_org else ()
    return policy.orgs if policy.orgs else tuple(sorted(all_orgs))


def is_counted(policy: Policy, scope: Iterable[str], approver: Approver) -> bool:
    """Whether this approver's signature counts for its organisation under ``policy``."""
    return approver.org in scope and bool(approver.roles & set(policy.roles))


def compute_verdict(resource: str, policy: Policy, approvers: Iterable[Approver], all_orgs: Iterable[str],
                    self_org: str | None = None) -> Verdict:
    """Evaluate ``policy`` for ``resource`` over verified approvers. Each organisation counts once."""
    orgs = tuple(sorted(set(all_orgs)))
    scope = compute_scope(policy, orgs, self_org)
    found = tuple(sorted({a.org for a in approvers if is_counted(policy, scope, a)}))
    needed = compute_needed(policy, len(scope))
    if policy.rule == "FORBIDDEN":
        return Verdict(False, found, 0, f"policy {resource} is FORBIDDEN: nobody may do this")
    if policy.rule == "SELF" and not scope:
        return Verdict(False, found, 0, f"policy {resource} is SELF ({'/'.join(policy.roles)} of the owning "
                                        f"organisation) but this resource has no owning organisation")
    if needed > len(scope):
        return Verdict(False, found, needed, f"policy {resource} is {policy.describe()}: needs {needed} "
                                             f"organisation(s) but only {len(scope)} are in scope")
    if len(found) >= needed:
        return Verdict(True, found, needed, "")
    who = ", ".join(found) if found else "none"
    return Verdict(False, found, needed,
                   f"policy {resource} is {policy.describe()}"
                   + (f" (owner {scope[0]})" if policy.rule == "SELF" else "")
                   + f": needs approval of {needed} of {len(scope)} organisation(s), found {len(found)} ({who})")


def is_reachable(resource: str, policy: Policy, yes: Iterable[Approver], undecided_orgs: Iterable[str],
                 all_orgs: Iterable[str], self_org: str | None = None) -> bool:
    """Whether the policy could still be met if every undecided organisation approved (else a proposal is
    rejected at once)."""
    role = policy.roles[0]
    hypothetical = [*yes, *(Approver(o, "", frozenset({role})) for o in undecided_orgs)]
    return compute_verdict(resource, policy, hypothetical, all_orgs, self_org).ok


def compute_default_policy_writes() -> dict[tuple[str, bytes], bytes | None]:
    """Genesis state of the policy table."""
    return {(POLICY_NAMESPACE, r.encode()): encode_policy(p) for r, p in sorted(DEFAULT_POLICIES.items())}


__all__ = [
    "DEFAULT_POLICIES",
    "MEMBER_NAMESPACE",
    "POLICY_NAMESPACE",
    "RESOURCES",
    "Approver",
    "Policy",
    "PolicyError",
    "Verdict",
    "compute_default_policy_writes",
    "compute_policy",
    "compute_verdict",
    "decode_policy",
    "encode_policy",
    "get_policy",
    "is_reachable",
]
