"""The facts of genesis the execution rules need, indexed once, and the error a rule-breaking transaction gets.

Kept apart from :mod:`qilian.execution.rules` so that the modules (which need membership) and the rules (which
dispatch to the modules) do not import each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from qilian.crypto.suite import Suite
from qilian.execution.policy import Approver
from qilian.types.core import Genesis


class TxRejected(ValueError):
    """A transaction that is not valid on this chain. ``code`` is stable for clients; the message names why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A sending key's place in the consortium."""

    organisation: str
    """Its organisation."""
    name: str
    """Its member name."""
    roles: frozenset[str]
    """Its roles."""

    def to_approver(self) -> Approver:
        """This member as a policy approver."""
        return Approver(self.organisation, self.name, self.roles)


@dataclass(frozen=True)
class ChainRules:
    """The facts of genesis the rules need, indexed for the hot path."""

    genesis: Genesis
    """The chain's genesis."""
    suite: Suite
    """The chain's crypto suite."""
    members: dict[bytes, MemberInfo] = field(default_factory=dict)
    """Public key → membership, built from genesis."""
    members_by_address: dict[str, MemberInfo] = field(default_factory=dict)
    """Address (hex) → membership: contract code records name their deployer by address."""
    org_names: tuple[str, ...] = ()
    """Every organisation, sorted: the scope of a policy that names none."""

    @classmethod
    def from_genesis(cls, genesis: Genesis, suite: Suite) -> ChainRules:
        """Index genesis membership by public key and by address."""
        members: dict[bytes, MemberInfo] = {}
        by_address: dict[str, MemberInfo] = {}
        for org in genesis.organisations:
            for m in org.members:
                info = MemberInfo(org.name, m.name, frozenset(m.roles))
                members[m.public_key] = info
                by_address[suite.compute_address(m.public_key).hex()] = info
        return cls(genesis, suite, members, by_address, tuple(sorted(o.name for o in genesis.organisations)))

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id
