"""Membership and validator sets as chain state: the layout, pure readers, and the rules of a change.

Genesis only seeds these entries; every reader asks the state of the height it works at, so a key revoked in
block h is refused from block h on while blocks before h still verify (they are re-executed with their own
state). Layout (docs/governance.md, "State layout"):

* ``sys:member`` public key → ``[org, name, roles]`` — a key that may sign (removed when revoked);
* ``sys:revoked`` public key → ``[org, name, height, reason]`` — revoked keys; never a member again;
* ``sys:address`` address (20 bytes) → public key — contract code names its deployer by address;
* ``sys:org`` organisation name → ``[added_height, info, member keys]`` (current keys, sorted);
  ``sys:orgs`` ``b"names"`` → the sorted names;
* ``sys:validators`` ``b"current"`` → the set signing the next block, ``b"next"`` → the set signing the one after
  (each an encoded ValidatorSet); ``sys:param`` name → value (the validator-set safety rails).

Pure code: the state comes in as a ``get(namespace, key)`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from qilian.execution.chain import ChainRules, MemberInfo
from qilian.execution.messages import quote
from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import ROLES, Genesis, Validator, ValidatorSet

StateGet = Callable[[str, bytes], bytes | None]

REVOKED_NAMESPACE: Final = "sys:revoked"
"""Revoked keys: public key → ``[org, name, height, reason]``."""
ADDRESS_NAMESPACE: Final = "sys:address"
"""Address (20 bytes) → public key, for every key that ever was a member."""
ORG_NAMESPACE: Final = "sys:org"
"""Organisation name (UTF-8) → ``[added_height, info, keys]`` (info: a map of short texts; keys: its current
member keys, sorted)."""
ORG_LIST_NAMESPACE: Final = "sys:orgs"
"""Key ``names`` → the sorted list of organisation names (the scope of a policy that names none)."""
ORG_LIST_KEY: Final = b"names"
VALIDATOR_NAMESPACE: Final = "sys:validators"
"""Keys ``current`` and ``next``: encoded ValidatorSets (see the module docstring)."""
CURRENT_KEY: Final = b"current"
NEXT_KEY: Final = b"next"
PARAM_NAMESPACE: Final = "sys:param"
"""Governed chain parameters: name (UTF-8) → canonical value."""

PARAM_MIN_VALIDATORS: Final = "validators.min"
"""Fewest validators a change may leave (an int >= 1). Seeded as min(4, genesis validators): four is the smallest
set that tolerates one faulty validator."""
PARAM_MAX_CHANGE: Final = "validators.max_change"
"""Largest share of the current total power one change may move, as ``[a, b]`` (a/b, default 1/3): with less
than 1/3 moved between consecutive sets, a light client can skip from any trusted set to a later one."""
DEFAULT_MAX_CHANGE: Final = (1, 3)
PARAMS: Final = (PARAM_MAX_CHANGE, PARAM_MIN_VALIDATORS)
"""Every parameter ``gov.set_param`` may set."""
MAX_POWER: Final = 1_000_000
"""Largest voting power of one validator (keeps the proposer period bounded)."""
MAX_VALIDATORS: Final = 1024
"""Most validators in a set (the ValidatorSet wire limit)."""
MAX_ORG_INFO: Final = 16
"""Most entries in an organisation's info map (each text of at most 256 characters)."""


class MembershipError(ValueError):
    """A membership or validator change that does not apply; the message names why."""


# -- readers ----------------------------------------------------------------------------------------------


def is_seeded(state: StateGet) -> bool:
    """Whether ``state`` holds the genesis seed. A state without it is a unit test's empty state: genesis
    membership and validators apply there, as default policies do (get_policy)."""
    return state(VALIDATOR_NAMESPACE, CURRENT_KEY) is not None


def get_member(rules: ChainRules, state: StateGet, public_key: bytes) -> MemberInfo | None:
    """The membership of a key in ``state`` (None: not a member, or revoked)."""
    raw = state(MEMBER_NAMESPACE, public_key)
    if raw is None:
        return None if is_seeded(state) else rules.members.get(public_key)
    org, name, roles = decode_raw(raw)
    return MemberInfo(org, name, frozenset(roles))


def get_revoked(state: StateGet, public_key: bytes) -> tuple[str, str, int, str] | None:
    """(org, name, height, reason) of a revoked key, or None."""
    raw = state(REVOKED_NAMESPACE, public_key)
    if raw is None:
        return None
    org, name, height, reason = decode_raw(raw)
    return org, name, height, reason


def get_member_by_address(rules: ChainRules, state: StateGet, address: str) -> MemberInfo | None:
    """Membership of the key with this address (hex) — also a revoked one: a contract keeps the organisation
    of its deployer after the deployer's key is rotated out."""
    try:
        raw_addr = bytes.fromhex(address)
    except ValueError:
        return None
    pub = state(ADDRESS_NAMESPACE, raw_addr)
    if pub is None:
        return None if is_seeded(state) else rules.members_by_address.get(address)
    member = get_member(rules, state, pub)
    if member is not None:
        return member
    revoked = get_revoked(state, pub)
    return None if revoked is None else MemberInfo(revoked[0], revoked[1], frozenset())


def get_org_names(rules: ChainRules, state: StateGet) -> tuple[str, ...]:
    """Every organisation, sorted."""
    raw = state(ORG_LIST_NAMESPACE, ORG_LIST_KEY)
    if raw is None:
        return () if is_seeded(state) else rules.org_names
    return tuple(decode_raw(raw))


def get_org(state: StateGet, name: str) -> tuple[int, dict[str, str], list[bytes]] | None:
    """(added height, info, member keys) of an organisation, or None."""
    raw = state(ORG_NAMESPACE, name.encode())
    if raw is None:
        return None
    added, info, keys = decode_raw(raw)
    return added, dict(info), list(keys)


def get_validator_sets(rules: ChainRules, state: StateGet) -> tuple[ValidatorSet, ValidatorSet]:
    """(current, next): after executing block h, the sets that sign blocks h+1 and h+2."""
    cur, nxt = state(VALIDATOR_NAMESPACE, CURRENT_KEY), state(VALIDATOR_NAMESPACE, NEXT_KEY)
    if cur is None:
        return rules.genesis.validators, rules.genesis.validators
    current = ValidatorSet.decode(cur)
    return current, current if nxt is None else ValidatorSet.decode(nxt)


def get_param(state: StateGet, name: str, default: Any) -> Any:
    """A governed parameter, or ``default`` when it was never set."""
    raw = state(PARAM_NAMESPACE, name.encode())
    return default if raw is None else decode_raw(raw)


# -- genesis ----------------------------------------------------------------------------------------------


def compute_membership_genesis_writes(genesis: Genesis, compute_address: Callable[[bytes], bytes]
                                      ) -> dict[tuple[str, bytes], bytes | None]:
    """The seed of membership, organisations, validator sets and rails (members themselves: contracts.py)."""
    writes: dict[tuple[str, bytes], bytes | None] = {}
    for org in genesis.organisations:
        writes[(ORG_NAMESPACE, org.name.encode())] = encode_trusted(
            [0, {}, sorted(m.public_key for m in org.members)])
        for m in org.members:
            writes[(ADDRESS_NAMESPACE, compute_address(m.public_key))] = m.public_key
    writes[(ORG_LIST_NAMESPACE, ORG_LIST_KEY)] = encode_trusted(sorted(o.name for o in genesis.organisations))
    vset = genesis.validators.encode()
    writes[(VALIDATOR_NAMESPACE, CURRENT_KEY)] = vset
    writes[(VALIDATOR_NAMESPACE, NEXT_KEY)] = vset
    writes[(PARAM_NAMESPACE, PARAM_MIN_VALIDATORS.encode())] = encode_trusted(
        min(4, len(genesis.validators.validators)))
    writes[(PARAM_NAMESPACE, PARAM_MAX_CHANGE.encode())] = encode_trusted(list(DEFAULT_MAX_CHANGE))
    return writes


# -- validator-set changes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidatorUpdate:
    """One entry of a ``validator.update`` action."""

    public_key: bytes
    """The validator's key."""
    power: int
    """New voting power; 0 removes it."""


def compute_validator_updates(value: Any, key_size: int) -> tuple[ValidatorUpdate, ...]:
    """Parse ``[[public_key, power], ...]``; a key may appear once (the updates are a set, so their order can
    never matter). Raises MembershipError."""
    if type(value) not in (list, tuple) or not value or len(value) > MAX_VALIDATORS:
        raise MembershipError(f"validator updates are a non-empty list of at most {MAX_VALIDATORS} "
                              f"[public_key, power]")
    out: dict[bytes, ValidatorUpdate] = {}
    for i, u in enumerate(value):
        if type(u) not in (list, tuple) or len(u) != 2 or type(u[0]) is not bytes or type(u[1]) is not int:
            raise MembershipError(f"validator update {i} is not [public_key, power]")
        if len(u[0]) != key_size:
            raise MembershipError(f"validator update {i}: the key is {len(u[0])} bytes, the suite's are {key_size}")
        if not 0 <= u[1] <= MAX_POWER:
            raise MembershipError(f"validator update {i}: power must be 0..{MAX_POWER} (0 removes)")
        if u[0] in out:
            raise MembershipError(f"validator update {i}: key {u[0].hex()[:16]}… is updated twice")
        out[u[0]] = ValidatorUpdate(u[0], u[1])
    return tuple(out[k] for k in sorted(out))


def compute_updated_set(base: ValidatorSet, updates: Iterable[ValidatorUpdate],
                        compute_address: Callable[[bytes], bytes]) -> ValidatorSet:
    """``base`` with ``updates`` applied as one set (a map from key to power), sorted by address: the result is
    the same whatever the order of ``updates``. Raises MembershipError for removing a non-validator."""
    powers: dict[bytes, Validator] = {v.address: v for v in base.validators}
    for u in updates:
        address = compute_address(u.public_key)
        if u.power == 0:
            if address not in powers:
                raise MembershipError(f"key {u.public_key.hex()[:16]}… is not a validator; nothing to remove")
            del powers[address]
        else:
            powers[address] = Validator(address, u.public_key, u.power)
    return ValidatorSet(tuple(powers[a] for a in sorted(powers)))


def compute_power_moved(before: ValidatorSet, after: ValidatorSet) -> int:
    """Total power that changes hands between two sets: the sum over validators of |power after − before|."""
    old = {v.address: v.power for v in before.validators}
    new = {v.address: v.power for v in after.validators}
    return sum(abs(new.get(a, 0) - old.get(a, 0)) for a in old.keys() | new.keys())


def check_validator_rails(current: ValidatorSet, proposed: ValidatorSet, min_validators: int,
                          max_change: tuple[int, int]) -> None:
    """The safety rails of a change (governed parameters): at least ``min_validators`` validators remain, and
    the power moved from the set signing now to the proposed one is at most ``max_change`` of today's total.
    Raises MembershipError naming the rail."""
    if len(proposed.validators) < min_validators:
        raise MembershipError(f"the change leaves {len(proposed.validators)} validator(s); parameter "
                              f"{PARAM_MIN_VALIDATORS} requires at least {min_validators}")
    a, b = max_change
    moved = compute_power_moved(current, proposed)
    if moved * b > a * current.total_power:
        raise MembershipError(f"the change moves {moved} of {current.total_power} voting power; parameter "
                              f"{PARAM_MAX_CHANGE} allows at most {a}/{b} per change (split it over several "
                              f"actions, each applied two blocks after the previous)")


# -- membership changes -----------------------------------------------------------------------------------


def compute_roles(value: Any, where: str) -> tuple[str, ...]:
    """Check a roles list: a non-empty subset of ROLES, sorted. Raises MembershipError."""
    if type(value) not in (list, tuple) or not value or any(type(r) is not str for r in value):
        raise MembershipError(f"{where}: roles must be a non-empty list of {', '.join(ROLES)}")
    for r in value:
        if r not in ROLES:
            raise MembershipError(f"{where}: unknown role {quote(r)} (roles: {', '.join(ROLES)})")
    if len(set(value)) != len(value):
        raise MembershipError(f"{where}: roles must not repeat")
    return tuple(sorted(value))


def is_name(text: Any) -> bool:
    """Organisation and member names: 1..64 ASCII letters, digits, ``-`` and ``_``."""
    return type(text) is str and 0 < len(text) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_")
                                                              for c in text)


def compute_org_info(value: Any) -> dict[str, str]:
    """Check an organisation's info map (short texts about it: title, contact …)."""
    if type(value) is not dict or len(value) > MAX_ORG_INFO or any(
            type(k) is not str or type(v) is not str or len(k) > 64 or len(v) > 256 for k, v in value.items()):
        raise MembershipError(f"organisation info is a map of at most {MAX_ORG_INFO} texts (keys <= 64, values "
                              f"<= 256 characters)")
    return dict(sorted(value.items()))


def get_validator_keys(sets: Iterable[ValidatorSet]) -> Mapping[bytes, int]:
    """Public key → power over several sets (the keys that may not be revoked while they validate)."""
    return {v.public_key: v.power for s in sets for v in s.validators}


__all__ = [
    "ADDRESS_NAMESPACE",
    "ORG_LIST_NAMESPACE",
    "ORG_NAMESPACE",
    "PARAMS",
    "PARAM_MAX_CHANGE",
    "PARAM_MIN_VALIDATORS",
    "PARAM_NAMESPACE",
    "REVOKED_NAMESPACE",
    "VALIDATOR_NAMESPACE",
    "MembershipError",
    "ValidatorUpdate",
    "check_validator_rails",
    "compute_membership_genesis_writes",
    "compute_power_moved",
    "compute_updated_set",
    "compute_validator_updates",
    "get_member",
    "get_member_by_address",
    "get_org",
    "get_org_names",
    "get_param",
    "get_revoked",
    "get_validator_sets",
    "is_seeded",
]
