"""Bootstrapping a network across organisations that never share a secret.

Each organisation runs :func:`process_org_keygen` on its own machine: it makes its node keys, TLS identities and
admin/client keys there (encrypted with its own password) and writes ``org.json`` — public keys, node addresses
and TLS certificates only. One party runs :func:`process_genesis_assemble` over every ``org.json``: it computes the
validator set from the public keys (addresses are derived, never typed), and writes ``genesis.json`` and the peer
list. Each organisation then runs :func:`process_node_configure` on each of its node homes with those two public
files. There is no TLS trust bundle: P2P admission is by node key in chain state (execution/nodes.py). An
organisation joining later runs :func:`process_node_join` (genesis + a seed address). Private keys never leave the
machine that made them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from qilian.crypto import SUITES, get_suite
from qilian.node.config import DEFAULT_API_PORT, DEFAULT_P2P_PORT, NodeConfig, save_config
from qilian.sdk.keys import generate_key, save_key
from qilian.types.core import ChainParams, Genesis, Member, Organisation, Validator, ValidatorSet
from qilian.types.genesis_json import check_genesis, genesis_from_json, genesis_to_json

ORG_FORMAT: Final = "qilian-org/1"
"""Format tag of ``org.json``."""
PEERS_FORMAT: Final = "qilian-peers/1"
"""Format tag of ``peers.json``."""
MAX_NODES_PER_ORG: Final = 64
"""Most nodes one ``org keygen`` makes."""


class BootstrapError(ValueError):
    """Input files that do not fit together; the message names the file and the problem."""


@dataclass(frozen=True)
class OrgKeygenResult:
    """What ``org keygen`` wrote."""

    org_json: Path
    """The public description to hand to whoever assembles the genesis."""
    node_homes: tuple[Path, ...]
    """One home per node (keys and TLS identity; configured later by ``node configure``)."""
    key_files: dict[str, Path]
    """The organisation's admin and client keys."""


def is_name(text: str) -> bool:
    """Organisation and node names: 1..64 of ASCII letters, digits, ``-`` and ``_``."""
    return 0 < len(text) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def process_org_keygen(home: Path, org: str, suite_name: str, nodes: int, host: str,
                       p2p_port: int = DEFAULT_P2P_PORT, api_port: int = DEFAULT_API_PORT,
                       password: bytes | None = None) -> OrgKeygenResult:
    """Make an organisation's keys in ``home`` and its public ``org.json``. Node i is called ``ORG-nodeI``, listens
    on ``host`` at ``p2p_port + i`` (P2P) and ``api_port + i`` (API)."""
    from qilian.p2p.tls import create_tls_identity

    if not is_name(org):
        raise BootstrapError(f"organisation name {org!r}: use 1..64 letters, digits, - or _")
    if suite_name not in SUITES:
        raise BootstrapError(f"unknown suite {suite_name!r}; choose one of {', '.join(SUITES)}")
    if not 0 <= nodes <= MAX_NODES_PER_ORG:
        raise BootstrapError(f"--nodes is 0..{MAX_NODES_PER_ORG}")
    if (home / "org.json").exists():
        raise FileExistsError(f"{home} already holds an organisation (org.json); use another --home")
    home.mkdir(parents=True, exist_ok=True)
    key_files: dict[str, Path] = {}
    members = []
    for label, roles in (("admin", ["admin", "member"]), ("client", ["member"])):
        path = home / "keys" / f"{org}-{label}.pem"
        k = generate_key(suite_name)
        save_key(k, path, password)
        key_files[f"{org}-{label}"] = path
        members.append({"name": label, "public_key": k.public_key.hex(), "roles": roles})
    node_docs = []
    homes = []
    for i in range(nodes):
        name = f"{org}-node{i}"
        nh = home / name
        k = generate_key(suite_name)
        save_key(k, nh / "keys" / f"{name}.pem", password)
        crt = create_tls_identity(nh / "tls", name)
        node_docs.append({"name": name, "public_key": k.public_key.hex(), "host": host, "p2p_port": p2p_port + i,
                          "api_port": api_port + i, "tls_cert": crt.read_text()})
        homes.append(nh)
    doc = {"format": ORG_FORMAT, "org": org, "suite": suite_name, "members": members, "nodes": node_docs}
    (home / "org.json").write_text(json.dumps(doc, indent=1))
    return OrgKeygenResult(home / "org.json", tuple(homes), key_files)


def _load_org(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BootstrapError(f"{path} is not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != ORG_FORMAT:
        raise BootstrapError(f"{path} is not an org.json from `qilian org keygen` (format {ORG_FORMAT})")
    return doc


def process_genesis_assemble(org_files: list[Path], out: Path, chain_id: str,
                             params: ChainParams | None = None, genesis_time_ms: int | None = None) -> Genesis:
    """Build the genesis from every organisation's public ``org.json``: every node is a validator of power 1,
    its address computed from its key. Writes ``out/genesis.json`` and ``out/peers.json`` (where each node
    listens: the address book of every node)."""
    if not org_files:
        raise BootstrapError("give at least one org.json")
    if (out / "genesis.json").exists():
        raise FileExistsError(f"{out} already holds a genesis.json; use another --out")
    docs = [_load_org(p) for p in org_files]
    suites = {d.get("suite") for d in docs}
    if len(suites) != 1:
        raise BootstrapError(f"the organisations chose different crypto suites: {sorted(map(str, suites))}")
    suite_name = str(docs[0]["suite"])
    if suite_name not in SUITES:
        raise BootstrapError(f"unknown suite {suite_name!r}")
    suite = get_suite(suite_name)
    orgs = []
    validators = []
    peers = []
    node_names: set[str] = set()
    try:
        for path, d in zip(org_files, docs, strict=True):
            if not is_name(str(d.get("org", ""))):
                raise BootstrapError(f"{path}: bad organisation name {d.get('org')!r}")
            members = [Member(str(m["name"]), bytes.fromhex(m["public_key"]), tuple(sorted(m["roles"])))
                       for m in d["members"]]
            for n in d["nodes"]:
                name = str(n["name"])
                if not is_name(name) or name in node_names:
                    raise BootstrapError(f"{path}: node name {name!r} is invalid or used twice")
                node_names.add(name)
                pub = bytes.fromhex(n["public_key"])
                members.append(Member(name, pub, ("validator",)))
                validators.append(Validator(suite.compute_address(pub), pub, 1))
                peers.append({"name": name, "public_key": pub.hex(), "host": str(n["host"]),
                              "port": int(n["p2p_port"]), "api_port": int(n["api_port"])})
            orgs.append(Organisation(str(d["org"]), tuple(members)))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BootstrapError):
            raise
        raise BootstrapError(f"an org.json is incomplete or malformed: {type(exc).__name__} {exc}") from None
    if not validators:
        raise BootstrapError("no organisation brought a node: a chain needs at least one validator")
    genesis = Genesis(
        chain_id=chain_id,
        suite=suite.name,
        genesis_time_ms=genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
        organisations=tuple(orgs),
        validators=ValidatorSet(tuple(sorted(validators, key=lambda v: v.address))),
        params=params or ChainParams(),
    )
    try:
        check_genesis(genesis, suite.compute_address)
    except ValueError as exc:
        raise BootstrapError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "genesis.json").write_text(genesis_to_json(genesis))
    (out / "peers.json").write_text(json.dumps({"format": PEERS_FORMAT, "chain_id": chain_id, "peers": peers},
                                               indent=1))
    return genesis


def process_node_configure(home: Path, genesis_file: Path, peers_file: Path,
                           listen: str | None = None, api_host: str | None = None,
                           timeouts: dict[str, int] | None = None) -> NodeConfig:
    """Make a node home from ``org keygen`` ready to start: copy the genesis, write ``node.toml`` with every peer
    as its address book (consensus timers: the WAN defaults unless ``timeouts`` is given, e.g.
    config.LOCAL_TIMEOUTS for one LAN). The node is the one whose key is in ``home/keys``; its key must be a validator
    of the genesis under the same name (so a home and a genesis that do not belong together are refused)."""
    keys = sorted((home / "keys").glob("*.pem")) if (home / "keys").is_dir() else []
    if len(keys) != 1:
        raise BootstrapError(f"{home}/keys must hold exactly one node key (from `qilian org keygen`)")
    name = keys[0].stem
    genesis = genesis_from_json(genesis_file.read_text())
    check_genesis(genesis, get_suite(genesis.suite).compute_address)
    try:
        peers_doc = json.loads(peers_file.read_text())
    except json.JSONDecodeError as exc:
        raise BootstrapError(f"{peers_file} is not JSON: {exc.msg}") from None
    if not isinstance(peers_doc, dict) or peers_doc.get("format") != PEERS_FORMAT:
        raise BootstrapError(f"{peers_file} is not a peers.json from `qilian genesis assemble`")
    if peers_doc.get("chain_id") != genesis.chain_id:
        raise BootstrapError(f"{peers_file} is for chain {peers_doc.get('chain_id')!r}, the genesis for "
                             f"{genesis.chain_id!r}")
    peers = tuple(peers_doc["peers"])
    me = [p for p in peers if p["name"] == name]
    if len(me) != 1:
        raise BootstrapError(f"node {name} is not in {peers_file}")
    own = me[0]
    pub = bytes.fromhex(own["public_key"])
    if not any(v.public_key == pub for v in genesis.validators.validators):
        raise BootstrapError(f"node {name} is not a validator of this genesis")
    if not (home / "tls" / "node.crt").exists():
        raise BootstrapError(f"{home}/tls has no node.crt (from `qilian org keygen`)")
    (home / "genesis.json").write_text(genesis_to_json(genesis))
    host = str(own["host"])
    cfg = NodeConfig(home=home, name=name, key_file=f"keys/{name}.pem", api_host=api_host or host,
                     api_port=int(own["api_port"]), p2p_host=listen or host, p2p_port=int(own["port"]),
                     peers=tuple({k: p[k] for k in ("name", "public_key", "host", "port")} for p in peers),
                     timeouts=dict(timeouts or {}))
    save_config(cfg)
    return cfg


def process_node_join(home: Path, genesis_file: Path, seeds: list[str], listen: str | None = None,
                      api_host: str | None = None, timeouts: dict[str, int] | None = None,
                      state_sync: bool = False) -> NodeConfig:
    """Make a node home from ``org keygen`` ready to join a *running* chain: copy its genesis and write
    ``node.toml`` with the seed addresses only — no peer list and no trust bundle, because admission and dialing
    follow chain state (execution/nodes.py). The node starts as an observer, syncs from genesis and is admitted
    by the others once its organisation (with this node key) is added by governance. Host and ports come from
    the organisation's ``org.json`` beside the home. ``state_sync``: join from a verified snapshot of a recent
    height instead of re-executing from genesis (``[sync] state_sync``)."""
    from qilian.execution.nodes import EndpointError, compute_endpoint

    keys = sorted((home / "keys").glob("*.pem")) if (home / "keys").is_dir() else []
    if len(keys) != 1:
        raise BootstrapError(f"{home}/keys must hold exactly one node key (from `qilian org keygen`)")
    name = keys[0].stem
    org_doc = _load_org(home.parent / "org.json")
    me = [n for n in org_doc.get("nodes", []) if n.get("name") == name]
    if len(me) != 1:
        raise BootstrapError(f"node {name} is not in {home.parent / 'org.json'}")
    if not seeds:
        raise BootstrapError("give at least one --seed host:port of a running node of the chain")
    for s in seeds:
        try:
            compute_endpoint(s)
        except EndpointError as exc:
            raise BootstrapError(f"--seed: {exc}") from None
    genesis = genesis_from_json(genesis_file.read_text())
    check_genesis(genesis, get_suite(genesis.suite).compute_address)
    if genesis.suite != org_doc.get("suite"):
        raise BootstrapError(f"the chain uses {genesis.suite}, the organisation's keys are {org_doc.get('suite')}")
    (home / "genesis.json").write_text(genesis_to_json(genesis))
    host = str(me[0]["host"])
    cfg = NodeConfig(home=home, name=name, key_file=f"keys/{name}.pem", api_host=api_host or host,
                     api_port=int(me[0]["api_port"]), p2p_host=listen or host, p2p_port=int(me[0]["p2p_port"]),
                     seeds=tuple(seeds), timeouts=dict(timeouts or {}), state_sync=state_sync)
    save_config(cfg)
    return cfg
