"""Genesis as a human-readable JSON document (``genesis.json``) and back.

Operators read and hand genesis files around, so the file is JSON with hex keys; the chain itself only ever
hashes the canonical binary encoding of the parsed :class:`Genesis`, so whitespace or key order in the file
never changes the genesis hash.
"""

from __future__ import annotations

import json
from typing import Any

from qilian.types.codec import CodecError
from qilian.types.core import (
    MAX_BLOCK_TXS_BOUND,
    ROLES,
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Validator,
    ValidatorSet,
)


def genesis_to_json(genesis: Genesis) -> str:
    """Pretty JSON of a genesis."""
    doc = {
        "chain_id": genesis.chain_id,
        "suite": genesis.suite,
        "genesis_time_ms": genesis.genesis_time_ms,
        "params": {
            "block_interval_ms": genesis.params.block_interval_ms,
            "create_empty_blocks": genesis.params.create_empty_blocks,
            "max_block_txs": genesis.params.max_block_txs,
            "max_block_bytes": genesis.params.max_block_bytes,
            "max_tx_bytes": genesis.params.max_tx_bytes,
            "tx_validity_blocks": genesis.params.tx_validity_blocks,
        },
        "organisations": [
            {
                "name": org.name,
                "members": [
                    {"name": m.name, "public_key": m.public_key.hex(), "roles": list(m.roles)} for m in org.members
                ],
            }
            for org in genesis.organisations
        ],
        "validators": [
            {"address": v.address.hex(), "public_key": v.public_key.hex(), "power": v.power}
            for v in genesis.validators.validators
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _get(d: Any, key: str, typ: type, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise CodecError(f"genesis: {where} lacks {key!r}")
    v = d[key]
    if typ is int and (type(v) is not int):
        raise CodecError(f"genesis: {where}.{key} must be an integer")
    if typ is not int and not isinstance(v, typ):
        raise CodecError(f"genesis: {where}.{key} must be {typ.__name__}")
    return v


def _hex(s: Any, where: str) -> bytes:
    if not isinstance(s, str):
        raise CodecError(f"genesis: {where} must be a hex string")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise CodecError(f"genesis: {where} is not valid hex") from None


def genesis_from_json(text: str) -> Genesis:
    """Parse and check a genesis file; raises CodecError naming the first problem."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodecError(f"genesis: not JSON: {exc}") from None
    p = _get(doc, "params", dict, "genesis")
    defaults = ChainParams()
    params = ChainParams(
        block_interval_ms=int(p.get("block_interval_ms", defaults.block_interval_ms)),
        create_empty_blocks=bool(p.get("create_empty_blocks", defaults.create_empty_blocks)),
        max_block_txs=int(p.get("max_block_txs", defaults.max_block_txs)),
        max_block_bytes=int(p.get("max_block_bytes", defaults.max_block_bytes)),
        max_tx_bytes=int(p.get("max_tx_bytes", defaults.max_tx_bytes)),
        tx_validity_blocks=int(p.get("tx_validity_blocks", defaults.tx_validity_blocks)),
    )
    orgs = []
    for i, o in enumerate(_get(doc, "organisations", list, "genesis")):
        members = []
        for j, m in enumerate(_get(o, "members", list, f"organisations[{i}]")):
            where = f"organisations[{i}].members[{j}]"
            roles = tuple(sorted(_get(m, "roles", list, where)))
            for r in roles:
                if r not in ROLES:
                    raise CodecError(f"genesis: {where} has unknown role {r!r} (roles: {', '.join(ROLES)})")
            members.append(Member(_get(m, "name", str, where), _hex(m.get("public_key"), where + ".public_key"),
                                  roles))
        orgs.append(Organisation(_get(o, "name", str, f"organisations[{i}]"), tuple(members)))
    vals = []
    for i, v in enumerate(_get(doc, "validators", list, "genesis")):
        where = f"validators[{i}]"
        power = _get(v, "power", int, where)
        if power <= 0:
            raise CodecError(f"genesis: {where}.power must be positive")
        address = _hex(v.get("address"), where + ".address")
        vals.append(Validator(address, _hex(v.get("public_key"), where + ".public_key"), power))
    genesis = Genesis(
        chain_id=_get(doc, "chain_id", str, "genesis"),
        suite=_get(doc, "suite", str, "genesis"),
        genesis_time_ms=_get(doc, "genesis_time_ms", int, "genesis"),
        organisations=tuple(orgs),
        validators=ValidatorSet(tuple(sorted(vals, key=lambda v: v.address))),
        params=params,
    )
    # Round-trip through the codec so every field limit of the binary form applies to the file too.
    return Genesis.decode(genesis.encode())


def check_genesis(genesis: Genesis, hash_address: Any) -> None:
    """Consistency rules beyond field types: unique names/keys, validators are members with the role, addresses
    match keys. ``hash_address`` maps a public key to its address (the suite's rule)."""
    if not genesis.validators.validators:
        raise CodecError("genesis: no validators")
    if not 1 <= genesis.params.max_block_txs <= MAX_BLOCK_TXS_BOUND:
        raise CodecError(f"genesis: max_block_txs must be 1..{MAX_BLOCK_TXS_BOUND}")
    names = [o.name for o in genesis.organisations]
    if len(set(names)) != len(names):
        raise CodecError("genesis: organisation names must be unique")
    keys: dict[bytes, str] = {}
    for o in genesis.organisations:
        for m in o.members:
            if m.public_key in keys:
                raise CodecError(f"genesis: key of {o.name}/{m.name} is also {keys[m.public_key]}")
            keys[m.public_key] = f"{o.name}/{m.name}"
    for v in genesis.validators.validators:
        if hash_address(v.public_key) != v.address:
            raise CodecError(f"genesis: validator address {v.address.hex()} does not match its key")
        member = genesis.get_member(v.public_key)
        if member is None or "validator" not in member[1].roles:
            raise CodecError(f"genesis: validator {v.address.hex()} is not a member with the validator role")
