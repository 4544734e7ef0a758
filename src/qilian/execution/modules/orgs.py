"""Governed membership and validator changes: what the ``org.*``, ``member.*``, ``validator.update`` and
``gov.set_param`` actions check and write (the gov module collects their approvals).

Each ``compute_*_target`` checks that an action applies to the current state and names the policy resource
and the owning organisation (for SELF rules); each ``process_*`` applies an approved action. Both raise
CallFailed naming what does not hold, and nothing is kept then. Pure code over the block's buffered state.
"""

from __future__ import annotations

from typing import Any, Final

from qilian.execution.env import BlockEnv, CallFailed, Outcome
from qilian.execution.members import (
    ADDRESS_NAMESPACE,
    CURRENT_KEY,
    DEFAULT_MAX_CHANGE,
    MAX_VALIDATORS,
    NEXT_KEY,
    ORG_LIST_KEY,
    ORG_LIST_NAMESPACE,
    ORG_NAMESPACE,
    PARAM_MAX_CHANGE,
    PARAM_MIN_VALIDATORS,
    PARAM_NAMESPACE,
    PARAMS,
    REVOKED_NAMESPACE,
    VALIDATOR_NAMESPACE,
    MembershipError,
    check_validator_rails,
    compute_org_info,
    compute_roles,
    compute_updated_set,
    compute_validator_updates,
    get_param,
    get_revoked,
    get_validator_sets,
    is_name,
    is_seeded,
)
from qilian.execution.messages import quote
from qilian.execution.nodes import ENDPOINT_NAMESPACE, NODE_ROLES, EndpointError, compute_endpoint
from qilian.execution.params import (
    MAX_ACTIVATION_DELAY,
    MAX_PENDING_CHANGES,
    MIN_ACTIVATION_DELAY,
    PENDING_KEY,
    ParamError,
    compute_param_changes,
    encode_pending_changes,
    get_pending_changes,
)
from qilian.execution.policy import MAX_RULE_NUMBER, MEMBER_NAMESPACE
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Event

MODULE: Final = "gov"
"""Source of the events (membership is governed by the gov module)."""
MAX_ORG_MEMBERS: Final = 1000
"""Most keys of one organisation (its record lists them)."""

MEMBERSHIP_ACTIONS: Final = {
    "org.add": 3, "org.remove": 1, "org.update": 2, "member.add": 4, "member.revoke": 2, "member.rotate": 2,
    "validator.update": 1, "gov.set_param": 2, "node.endpoint": 2, "chain.set_params": 2,
}
"""Action kind → number of arguments: ``[org.add, name, members, info]`` (members: ``[[name, public_key, roles],
…]``), ``[org.remove, name]``, ``[org.update, name, info]``, ``[member.add, org, name, public_key, roles]``,
``[member.revoke, public_key, reason]``, ``[member.rotate, old_public_key, new_public_key]``,
``[validator.update, [[public_key, power], …]]`` (power 0 removes), ``[gov.set_param, name, value]``,
``[node.endpoint, public_key, "host:port"]`` (empty text removes it; execution/nodes.py),
``[chain.set_params, {name: value}, height]`` (fuel prices and block limits from ``height``, 0: two blocks after
the executing one; execution/params.py). The resource of each is its kind."""


def _fail(exc: MembershipError) -> CallFailed:
    return CallFailed(str(exc))


def _get_org_record(env: BlockEnv, name: str) -> tuple[int, dict[str, str], list[bytes]]:
    raw = env.state.get(ORG_NAMESPACE, name.encode())
    if raw is None:
        raise CallFailed(f"no organisation {quote(name)}")
    added, info, keys = decode_raw(raw)
    return added, dict(info), list(keys)


def _put_org_record(env: BlockEnv, name: str, added: int, info: dict[str, str], keys: list[bytes]) -> None:
    if len(keys) > MAX_ORG_MEMBERS:
        raise CallFailed(f"organisation {name} would have more than {MAX_ORG_MEMBERS} keys")
    env.state.put(ORG_NAMESPACE, name.encode(), encode_trusted([added, info, sorted(keys)]))


def _put_org_names(env: BlockEnv, names: list[str]) -> None:
    env.state.put(ORG_LIST_NAMESPACE, ORG_LIST_KEY, encode_trusted(sorted(names)))
    env.org_names = None


def _check_new_key(env: BlockEnv, public_key: Any, where: str) -> bytes:
    size = env.rules.suite.public_key_size
    if type(public_key) is not bytes or len(public_key) != size:
        raise CallFailed(f"{where}: a public key is {size} bytes of suite {env.rules.suite.name}")
    if env.get_member(public_key) is not None:
        raise CallFailed(f"{where}: key {public_key.hex()[:16]}… is already a member")
    revoked = get_revoked(env.state.get, public_key)
    if revoked is not None:
        raise CallFailed(f"{where}: key {public_key.hex()[:16]}… was revoked at height {revoked[2]} "
                         f"({revoked[0]}/{revoked[1]}); a revoked key never returns")
    return public_key


def _get_member_entry(env: BlockEnv, public_key: Any, where: str) -> tuple[str, str, tuple[str, ...]]:
    if type(public_key) is not bytes:
        raise CallFailed(f"{where}: the key must be bytes")
    raw = env.state.get(MEMBER_NAMESPACE, public_key)
    if raw is None:
        revoked = get_revoked(env.state.get, public_key)
        raise CallFailed(f"{where}: key {public_key.hex()[:16]}… is not a member" + (
            f" (revoked at height {revoked[2]})" if revoked else ""))
    org, name, roles = decode_raw(raw)
    return org, name, tuple(roles)


def _check_not_validator(env: BlockEnv, public_key: bytes, where: str) -> None:
    current, nxt = get_validator_sets(env.rules, env.state.get)
    for label, vset in (("current", current), ("next", nxt)):
        if any(v.public_key == public_key for v in vset.validators):
            raise CallFailed(f"{where}: key {public_key.hex()[:16]}… is in the {label} validator set; remove the "
                             f"validator first (validator.update with power 0)")


def _check_keeps_admin(env: BlockEnv, org: str, leaving: bytes, where: str) -> None:
    _, _, keys = _get_org_record(env, org)
    for k in keys:
        if k == leaving:
            continue
        m = env.get_member(k)
        if m is not None and "admin" in m.roles:
            return
    raise CallFailed(f"{where}: it is the last admin key of {org}; an organisation keeps at least one (rotate it "
                     f"instead, or remove the organisation)")


def _write_member(env: BlockEnv, org: str, name: str, public_key: bytes, roles: tuple[str, ...]) -> None:
    env.state.put(MEMBER_NAMESPACE, public_key, encode_trusted([org, name, list(roles)]))
    env.state.put(ADDRESS_NAMESPACE, env.rules.suite.compute_address(public_key), public_key)
    env.members.pop(public_key, None)


def _write_revoked(env: BlockEnv, org: str, name: str, public_key: bytes, reason: str) -> None:
    env.state.put(MEMBER_NAMESPACE, public_key, None)
    if env.state.get(ENDPOINT_NAMESPACE, public_key) is not None:  # a revoked node is no longer dialled
        env.state.put(ENDPOINT_NAMESPACE, public_key, None)
    env.state.put(REVOKED_NAMESPACE, public_key, encode_trusted([org, name, env.height, reason]))
    env.members.pop(public_key, None)


def _parse_members(env: BlockEnv, value: Any, org: str) -> list[tuple[str, bytes, tuple[str, ...]]]:
    if type(value) not in (list, tuple) or not value or len(value) > MAX_ORG_MEMBERS:
        raise CallFailed(f"org.add {org}: members are a non-empty list of [name, public_key, roles]")
    out = []
    seen: set[bytes] = set()
    for i, m in enumerate(value):
        where = f"org.add {org} member {i}"
        if type(m) not in (list, tuple) or len(m) != 3 or not is_name(m[0]):
            raise CallFailed(f"{where}: not [name, public_key, roles] with a name of 1..64 letters, digits, - _")
        key = _check_new_key(env, m[1], where)
        if key in seen:
            raise CallFailed(f"{where}: key listed twice")
        seen.add(key)
        try:
            roles = compute_roles(m[2], where)
        except MembershipError as exc:
            raise _fail(exc) from None
        out.append((m[0], key, roles))
    if not any("admin" in r for _, _, r in out):
        raise CallFailed(f"org.add {org}: an organisation needs at least one admin key (it governs through it)")
    return out


def compute_membership_target(env: BlockEnv, kind: str, args: tuple[Any, ...]) -> tuple[str, str | None]:
    """(policy resource, owning organisation) of a membership action in the current state; CallFailed if it
    cannot apply. SELF rules of ``member.*`` are about the organisation of the key (or the one named)."""
    if not is_seeded(env.state.get):
        raise CallFailed("this state has no governed membership (no genesis seed)")
    if kind == "org.add":
        name, members, info = args
        if not is_name(name):
            raise CallFailed("org.add: the name is 1..64 letters, digits, - or _")
        if name in env.get_org_names():
            raise CallFailed(f"org.add: organisation {name} exists already")
        _parse_members(env, members, name)
        _check_info(info)
        return kind, None
    if kind in ("org.remove", "org.update"):
        if type(args[0]) is not str:
            raise CallFailed(f"{kind}: the organisation name must be text")
        _get_org_record(env, args[0])
        if kind == "org.update":
            _check_info(args[1])
        elif len(env.get_org_names()) <= 1:
            raise CallFailed("org.remove: the last organisation cannot be removed")
        return kind, None
    if kind == "member.add":
        org, name, key, roles = args
        if type(org) is not str:
            raise CallFailed("member.add: the organisation name must be text")
        _get_org_record(env, org)
        if not is_name(name):
            raise CallFailed("member.add: the member name is 1..64 letters, digits, - or _")
        _check_new_key(env, key, "member.add")
        try:
            compute_roles(roles, "member.add")
        except MembershipError as exc:
            raise _fail(exc) from None
        return kind, org
    if kind == "member.revoke":
        key, reason = args
        if type(reason) is not str or len(reason) > 256:
            raise CallFailed("member.revoke: the reason is a text of at most 256 characters")
        org, _, roles = _get_member_entry(env, key, "member.revoke")
        _check_not_validator(env, key, "member.revoke")
        if "admin" in roles:
            _check_keeps_admin(env, org, key, "member.revoke")
        return kind, org
    if kind == "member.rotate":
        old, new = args
        org, _, _ = _get_member_entry(env, old, "member.rotate")
        _check_not_validator(env, old, "member.rotate")
        _check_new_key(env, new, "member.rotate")
        return kind, org
    if kind == "validator.update":
        compute_new_validators(env, args[0])
        return kind, None
    if kind == "gov.set_param":
        compute_param(args[0], args[1])
        return kind, None
    if kind == "node.endpoint":
        return kind, _check_endpoint_action(env, args)
    if kind == "chain.set_params":
        compute_params_schedule(env, args)
        return kind, None
    raise CallFailed(f"unknown action {quote(kind)}")  # pragma: no cover - compute_action checked the kind


def _check_endpoint_action(env: BlockEnv, args: tuple[Any, ...]) -> str:
    """The organisation owning the node key of a ``node.endpoint`` action (SELF: it says where its own node
    listens); CallFailed unless the key is a member with a node role and the endpoint is ``host:port`` or empty."""
    key, endpoint = args
    org, _, roles = _get_member_entry(env, key, "node.endpoint")
    if not NODE_ROLES & set(roles):
        raise CallFailed(f"node.endpoint: key {key.hex()[:16]}… of {org} has no node role "
                         f"({', '.join(sorted(NODE_ROLES))}); only node keys have endpoints")
    if endpoint != "":
        try:
            compute_endpoint(endpoint)
        except EndpointError as exc:
            raise CallFailed(f"node.endpoint: {exc}") from None
    return org


def compute_params_schedule(env: BlockEnv, args: tuple[Any, ...]) -> tuple[int, dict[str, int]]:
    """(effective height, checked changes) of a ``chain.set_params`` executing now; CallFailed naming the hard
    bound a value breaks, or why the height cannot be. Height 0 means the earliest: two blocks from now."""
    changes, height = args
    try:
        checked = compute_param_changes(env.rules.genesis.params, changes)
    except ParamError as exc:
        raise CallFailed(f"chain.set_params: {exc}") from None
    earliest = env.height + MIN_ACTIVATION_DELAY
    if type(height) is not int or height < 0:
        raise CallFailed("chain.set_params: the effective height is a block height (0: the earliest)")
    if height == 0:
        height = earliest
    latest = env.height + MAX_ACTIVATION_DELAY
    if not earliest <= height <= latest:
        raise CallFailed(f"chain.set_params: effective height {height} must be {earliest}..{latest} when executed "
                         f"at height {env.height} (a change applies two blocks after the one that decides it at the "
                         f"earliest)")
    if len(get_pending_changes(env.state.get)) >= MAX_PENDING_CHANGES:
        raise CallFailed(f"chain.set_params: {MAX_PENDING_CHANGES} changes are scheduled already")
    return height, checked


def process_promote_params(env: BlockEnv) -> None:
    """Begin-of-block: the scheduled parameter changes due at this height become the values in force (the
    readers already applied them from the schedule; this keeps the schedule short)."""
    pending = get_pending_changes(env.state.get)
    due = [c for h, c in pending if h <= env.height]
    if not due:
        return
    for changes in due:
        for name, value in changes.items():
            env.state.put(PARAM_NAMESPACE, name.encode(), encode_trusted(value))
    env.state.put(PARAM_NAMESPACE, PENDING_KEY, encode_pending_changes([(h, c) for h, c in pending
                                                                        if h > env.height]))


def _check_info(info: Any) -> dict[str, str]:
    try:
        return compute_org_info(info)
    except MembershipError as exc:
        raise _fail(exc) from None


def compute_new_validators(env: BlockEnv, value: Any) -> tuple[Any, Any, list[list[Any]]]:
    """(current, proposed next, readable updates) for a ``validator.update``: every added key is a member with
    the ``validator`` role, and the rails hold. CallFailed otherwise."""
    suite = env.rules.suite
    try:
        updates = compute_validator_updates(value, suite.public_key_size)
    except MembershipError as exc:
        raise _fail(exc) from None
    for u in updates:
        if u.power > 0:
            m = env.get_member(u.public_key)
            if m is None or "validator" not in m.roles:
                raise CallFailed(f"validator.update: key {u.public_key.hex()[:16]}… is not a member with the "
                                 f"validator role (add it with member.add or org.add first)")
    current, nxt = get_validator_sets(env.rules, env.state.get)
    try:
        proposed = compute_updated_set(nxt, updates, suite.compute_address)
        check_validator_rails(current, proposed, get_param(env.state.get, PARAM_MIN_VALIDATORS, 1),
                              tuple(get_param(env.state.get, PARAM_MAX_CHANGE, list(DEFAULT_MAX_CHANGE))))
    except MembershipError as exc:
        raise CallFailed(f"validator.update refused: {exc}") from None
    readable = [[suite.compute_address(u.public_key).hex(), u.power] for u in updates]
    return current, proposed, readable


def compute_param(name: Any, value: Any) -> Any:
    """The canonical stored value of a parameter; CallFailed if the name or value is not allowed."""
    if name not in PARAMS:
        raise CallFailed(f"unknown parameter {quote(name)}; parameters: {', '.join(PARAMS)} (fuel prices and block "
                         f"limits: the chain.set_params action)")
    if name == PARAM_MIN_VALIDATORS:
        if type(value) is not int or not 1 <= value <= MAX_VALIDATORS:
            raise CallFailed(f"{name} is an integer 1..{MAX_VALIDATORS}")
        return value
    if type(value) is str and value.count("/") == 1:
        parts = value.split("/")
        if all(p.isascii() and p.isdigit() for p in parts):
            value = [int(p) for p in parts]
    if type(value) not in (list, tuple) or len(value) != 2 or any(type(x) is not int for x in value) or \
            not 1 <= value[0] <= value[1] <= MAX_RULE_NUMBER:
        raise CallFailed(f"{name} is a fraction a/b with 1 <= a <= b <= {MAX_RULE_NUMBER}")
    return list(value)


def process_membership_action(env: BlockEnv, kind: str, args: tuple[Any, ...], approvers: list[str],
                              via: str) -> Outcome:
    """Apply an approved membership action (its target was checked in this state by the caller)."""
    who: dict[str, Any] = {"approvers": approvers, "via": via}
    if kind == "org.add":
        name, members, info = args
        parsed = _parse_members(env, members, name)
        for mname, key, roles in parsed:
            _write_member(env, name, mname, key, roles)
        _put_org_record(env, name, env.height, _check_info(info), [k for _, k, _ in parsed])
        _put_org_names(env, [*env.get_org_names(), name])
        return Outcome(name, (Event(MODULE, "OrgAdded", {"org": name, "keys": len(parsed), **who}),))
    if kind == "org.remove":
        (name,) = args
        _, _, keys = _get_org_record(env, name)
        for k in keys:
            _check_not_validator(env, k, f"org.remove {name}")
        for k in keys:
            entry = env.state.get(MEMBER_NAMESPACE, k)
            if entry is not None:
                _write_revoked(env, name, decode_raw(entry)[1], k, "organisation removed")
        env.state.put(ORG_NAMESPACE, name.encode(), None)
        _put_org_names(env, [o for o in env.get_org_names() if o != name])
        return Outcome(name, (Event(MODULE, "OrgRemoved", {"org": name, "revoked_keys": len(keys), **who}),))
    if kind == "org.update":
        name, info = args
        added, _, keys = _get_org_record(env, name)
        _put_org_record(env, name, added, _check_info(info), keys)
        return Outcome(name, (Event(MODULE, "OrgUpdated", {"org": name, **who}),))
    if kind == "member.add":
        org, name, key, roles = args
        added, info, keys = _get_org_record(env, org)
        _write_member(env, org, name, key, tuple(sorted(roles)))
        _put_org_record(env, org, added, info, [*keys, key])
        address = env.rules.suite.compute_address(key).hex()
        return Outcome(address, (Event(MODULE, "MemberAdded", {"org": org, "name": name, "address": address,
                                                                "roles": sorted(roles), **who}),))
    if kind == "member.revoke":
        key, reason = args
        org, name, _ = _get_member_entry(env, key, "member.revoke")
        _write_revoked(env, org, name, key, reason)
        added, info, keys = _get_org_record(env, org)
        _put_org_record(env, org, added, info, [k for k in keys if k != key])
        address = env.rules.suite.compute_address(key).hex()
        return Outcome(address, (Event(MODULE, "MemberRevoked", {"org": org, "name": name, "address": address,
                                                                  "reason": reason, **who}),))
    if kind == "member.rotate":
        old, new = args
        org, name, roles = _get_member_entry(env, old, "member.rotate")
        new_address = env.rules.suite.compute_address(new).hex()
        _write_revoked(env, org, name, old, f"rotated to {new_address}")
        _write_member(env, org, name, new, roles)
        added, info, keys = _get_org_record(env, org)
        _put_org_record(env, org, added, info, [*(k for k in keys if k != old), new])
        return Outcome(new_address, (Event(MODULE, "MemberRotated", {
            "org": org, "name": name, "old": env.rules.suite.compute_address(old).hex(), "new": new_address,
            **who}),))
    if kind == "validator.update":
        _, proposed, readable = compute_new_validators(env, args[0])
        env.state.put(VALIDATOR_NAMESPACE, NEXT_KEY, proposed.encode())
        return Outcome(readable, (Event(MODULE, "ValidatorsUpdated", {
            "updates": readable, "effective_height": env.height + 2, "validators": len(proposed.validators),
            "total_power": proposed.total_power, **who}),))
    if kind == "chain.set_params":
        height, checked = compute_params_schedule(env, args)
        pending = get_pending_changes(env.state.get)
        merged = dict(next((c for h, c in pending if h == height), {}))
        merged.update(checked)
        pending = sorted([*((h, c) for h, c in pending if h != height), (height, merged)], key=lambda e: e[0])
        env.state.put(PARAM_NAMESPACE, PENDING_KEY, encode_pending_changes(pending))
        return Outcome({"effective_height": height, "changes": checked}, (Event(MODULE, "ParamsScheduled", {
            "changes": checked, "effective_height": height, **who}),))
    if kind == "node.endpoint":
        key, endpoint = args
        org = _check_endpoint_action(env, args)
        env.state.put(ENDPOINT_NAMESPACE, key, endpoint.encode() if endpoint else None)
        address = env.rules.suite.compute_address(key).hex()
        return Outcome(address, (Event(MODULE, "EndpointSet", {"org": org, "address": address,
                                                                "endpoint": endpoint, **who}),))
    name, value = args
    stored = compute_param(name, value)
    env.state.put(PARAM_NAMESPACE, name.encode(), encode_trusted(stored))
    return Outcome(name, (Event(MODULE, "ParamSet", {"name": name, "value": stored, **who}),))


def process_promote_validators(env: BlockEnv) -> None:
    """Begin-of-block: the set decided in block h−1 (``next``) signs from h+1 on, so it becomes ``current`` in
    the state of block h (Tendermint's H+2 rule). Writes only when the sets differ."""
    cur = env.state.get(VALIDATOR_NAMESPACE, CURRENT_KEY)
    nxt = env.state.get(VALIDATOR_NAMESPACE, NEXT_KEY)
    if cur is not None and nxt is not None and cur != nxt:
        env.state.put(VALIDATOR_NAMESPACE, CURRENT_KEY, nxt)


__all__ = [
    "MEMBERSHIP_ACTIONS",
    "compute_membership_target",
    "compute_new_validators",
    "compute_param",
    "compute_params_schedule",
    "process_membership_action",
    "process_promote_params",
    "process_promote_validators",
]
