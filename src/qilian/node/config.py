"""A node's home directory: ``genesis.json``, ``node.toml``, ``keys/`` and ``data/``.

``qilian init`` writes a home; ``qilian node start --home DIR`` reads it. Everything a node needs to start
unattended is in the home (key passwords come from the environment, never from a file).
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from qilian.crypto import get_suite
from qilian.mempool.pool import DEFAULT_MAX_BYTES, DEFAULT_MAX_TXS
from qilian.sdk.keys import KeyPair, generate_key, save_key
from qilian.types.core import ChainParams, Genesis, Member, Organisation, Validator, ValidatorSet
from qilian.types.genesis_json import check_genesis, genesis_from_json, genesis_to_json

DEFAULT_API_PORT = 8545
"""First HTTP API port; node i of a local network uses DEFAULT_API_PORT + i."""


@dataclass(frozen=True)
class NodeConfig:
    """Settings of one node (``node.toml``)."""

    home: Path
    """The home directory (paths below are relative to it)."""
    name: str = "node0"
    """Node name (for logs)."""
    key_file: str = "keys/node0.pem"
    """The node's validator key."""
    data_dir: str = "data"
    """Where the LMDB database lives."""
    api_host: str = "127.0.0.1"
    """HTTP API bind address."""
    api_port: int = DEFAULT_API_PORT
    """HTTP API port."""
    mempool_max_txs: int = DEFAULT_MAX_TXS
    """Mempool capacity in transactions."""
    mempool_max_bytes: int = DEFAULT_MAX_BYTES
    """Mempool capacity in bytes."""
    max_request_bytes: int = 1024 * 1024
    """Largest HTTP request body accepted."""
    max_wait_s: float = 60.0
    """Longest a ``wait=commit`` request may block."""
    max_ws_clients: int = 256
    """Most concurrent /events subscribers."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Unknown settings, kept for forward compatibility."""

    @property
    def genesis_path(self) -> Path:
        return self.home / "genesis.json"

    @property
    def key_path(self) -> Path:
        return self.home / self.key_file

    @property
    def data_path(self) -> Path:
        return self.home / self.data_dir


def load_config(home: Path) -> NodeConfig:
    """Read ``home/node.toml``."""
    path = home / "node.toml"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `qilian init --home {home}` first")
    doc = tomllib.loads(path.read_text())
    node, api, mp = doc.get("node", {}), doc.get("api", {}), doc.get("mempool", {})
    return NodeConfig(
        home=home,
        name=node.get("name", "node0"),
        key_file=node.get("key_file", "keys/node0.pem"),
        data_dir=node.get("data_dir", "data"),
        api_host=api.get("host", "127.0.0.1"),
        api_port=int(api.get("port", DEFAULT_API_PORT)),
        max_request_bytes=int(api.get("max_request_bytes", 1024 * 1024)),
        max_wait_s=float(api.get("max_wait_s", 60.0)),
        max_ws_clients=int(api.get("max_ws_clients", 256)),
        mempool_max_txs=int(mp.get("max_txs", DEFAULT_MAX_TXS)),
        mempool_max_bytes=int(mp.get("max_bytes", DEFAULT_MAX_BYTES)),
    )


def save_config(cfg: NodeConfig) -> None:
    """Write ``node.toml``."""
    doc = {
        "node": {"name": cfg.name, "key_file": cfg.key_file, "data_dir": cfg.data_dir},
        "api": {
            "host": cfg.api_host,
            "port": cfg.api_port,
            "max_request_bytes": cfg.max_request_bytes,
            "max_wait_s": cfg.max_wait_s,
            "max_ws_clients": cfg.max_ws_clients,
        },
        "mempool": {"max_txs": cfg.mempool_max_txs, "max_bytes": cfg.mempool_max_bytes},
    }
    (cfg.home / "node.toml").write_text(tomli_w.dumps(doc))


def load_genesis(path: Path) -> Genesis:
    """Read and check a genesis file."""
    genesis = genesis_from_json(path.read_text())
    suite = get_suite(genesis.suite)
    check_genesis(genesis, suite.compute_address)
    return genesis


@dataclass(frozen=True)
class InitResult:
    """What ``qilian init`` created."""

    home: Path
    genesis: Genesis
    key_files: dict[str, Path]


def init_home(
    home: Path,
    chain_id: str = "qilian-dev",
    suite_name: str = "sm2",
    organisations: tuple[str, ...] = ("org1",),
    api_port: int = DEFAULT_API_PORT,
    params: ChainParams | None = None,
    password: bytes | None = None,
    genesis_time_ms: int | None = None,
) -> InitResult:
    """Create a single-validator chain home: keys for the validator and each organisation's admin and client.

    The first organisation runs the validator. Refuses to touch a directory that already has a genesis."""
    if (home / "genesis.json").exists():
        raise FileExistsError(f"{home} already holds a chain (genesis.json); use another --home or remove it")
    suite = get_suite(suite_name)
    home.mkdir(parents=True, exist_ok=True)
    keys: dict[str, KeyPair] = {}
    key_files: dict[str, Path] = {}

    def new_key(label: str) -> KeyPair:
        k = generate_key(suite_name)
        path = home / "keys" / f"{label}.pem"
        save_key(k, path, password)
        keys[label] = k
        key_files[label] = path
        return k

    validator = new_key("node0")
    orgs = []
    for i, org in enumerate(organisations):
        members = []
        if i == 0:
            members.append(Member("node0", validator.public_key, ("validator",)))
        admin = new_key(f"{org}-admin")
        client = new_key(f"{org}-client")
        members.append(Member("admin", admin.public_key, ("admin", "member")))
        members.append(Member("client", client.public_key, ("member",)))
        orgs.append(Organisation(org, tuple(members)))
    genesis = Genesis(
        chain_id=chain_id,
        suite=suite.name,
        genesis_time_ms=genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
        organisations=tuple(orgs),
        validators=ValidatorSet((Validator(validator.address, validator.public_key, 1),)),
        params=params or ChainParams(),
    )
    check_genesis(genesis, suite.compute_address)
    (home / "genesis.json").write_text(genesis_to_json(genesis))
    save_config(NodeConfig(home=home, api_port=api_port))
    return InitResult(home, genesis, key_files)
