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
from qilian.node.pruning import KeepStatesTooSmall, check_keep_states
from qilian.sdk.keys import KeyPair, generate_key, save_key
from qilian.storage.nodecache import NODE_CACHE_BYTES
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
    """Where the chain store and the consensus WAL live."""
    store_engine: str = ""
    """``[store] engine``: ``lmdb`` or ``rocksdb`` for a new data directory ("" = RocksDB). An existing directory
    is opened with the engine that wrote it; naming another engine refuses to start (no migration)."""
    store_keep_states: int = 0
    """``[store] keep_states``: how many recent states the node keeps (older tree nodes are deleted after each
    commit, and reads of older heights are refused with 410); 0 (the default) keeps every state — an archive
    node. At least :data:`qilian.node.pruning.MIN_KEEP_STATES` (1,001) when set: consensus reads that far back."""
    store_node_cache_mib: int = NODE_CACHE_BYTES // (1024 * 1024)
    """``[store] node_cache_mib``: memory for the cache of state-tree internal nodes (:mod:`qilian.storage.nodecache`;
    about 240 bytes per cached node, and the live tree has about one internal node per state key, so the default
    holds the whole tree's internal nodes up to about 4.4 million keys; beyond that the deepest levels are read
    from the engine). 1 … 65,536."""
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
    p2p_host: str = "127.0.0.1"
    """P2P listen address."""
    p2p_port: int = 0
    """P2P listen port (0: this node has no peers — a one-validator chain)."""
    peers: tuple[dict[str, Any], ...] = ()
    """Address book: name, public_key (hex), host, port of nodes to dial when chain state registers no endpoint
    for them. Who is *admitted* is chain state's call, never this list's. The node's own entry is skipped."""
    seeds: tuple[str, ...] = ()
    """``[p2p] seeds``: ``host:port`` addresses to dial whatever node key answers (a joining node needs only the
    genesis and one seed; it learns the others' endpoints from chain state)."""
    blocked_peers: tuple[str, ...] = ()
    """Names of configured peers this node neither dials nor accepts (an operator's deny-list; fault tests use it
    to cut single links of a network)."""
    indexer_backend: str = "sqlite"
    """``[indexer] backend``: ``sqlite`` (beside the node's data), ``postgres`` (an explorer for many users) or
    ``off`` (no explorer index on this node — a validator that serves no explorer saves the indexing work; the
    index routes answer 503 ``index_off``)."""
    indexer_url: str = ""
    """``[indexer] url``: the PostgreSQL URL (no password: libpq reads PGPASSWORD or ~/.pgpass), or for SQLite an
    optional file path (empty: ``index/index.sqlite`` in the home)."""
    state_sync: bool = False
    """``[sync] state_sync``: a node whose store holds no block yet joins by state sync — a verified snapshot of a
    recent height, then block sync from there (docs/architecture.md, "State sync") — instead of re-executing the
    chain from genesis."""
    serve_snapshots: bool = True
    """``[sync] serve_snapshots``: answer joining nodes' snapshot requests (from one store snapshot per offered
    height; see :mod:`qilian.node.snapshots` for what that costs)."""
    chunk_entries: int = 4096
    """``[sync] chunk_entries``: the most state entries a served chunk holds (1..16,384, the receivers' limit;
    a chunk is also cut at 1 MiB)."""
    timeouts: dict[str, int] = field(default_factory=dict)
    """Consensus timer overrides (TimeoutConfig field names, milliseconds)."""
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

    @property
    def tls_dir(self) -> Path:
        """TLS key and certificate (made at first start when missing)."""
        return self.home / "tls"

    @property
    def signer_state_path(self) -> Path:
        """The signer guard's state: outside ``data/`` so that wiping data never enables a double sign."""
        return self.home / "signer" / "state"

    @property
    def wal_path(self) -> Path:
        """The consensus write-ahead log."""
        return self.data_path / "cs.wal"


def load_config(home: Path) -> NodeConfig:
    """Read ``home/node.toml``."""
    path = home / "node.toml"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `qilian init --home {home}` first")
    doc = tomllib.loads(path.read_text())
    node, api, mp = doc.get("node", {}), doc.get("api", {}), doc.get("mempool", {})
    p2p, ix, st = doc.get("p2p", {}), doc.get("indexer", {}), doc.get("store", {})
    sync = doc.get("sync", {})
    for name in ("state_sync", "serve_snapshots"):
        if name in sync and type(sync[name]) is not bool:
            raise ValueError(f"{path}: [sync] {name} must be true or false")
    chunk_entries = sync.get("chunk_entries", 4096)
    if type(chunk_entries) is not int or not 1 <= chunk_entries <= 16_384:
        raise ValueError(f"{path}: [sync] chunk_entries must be an integer in 1..16384")
    store_engine = str(st.get("engine", ""))
    if store_engine not in ("", "lmdb", "rocksdb"):
        raise ValueError(f"{path}: [store] engine must be \"lmdb\" or \"rocksdb\", not {store_engine!r}")
    keep_states = st.get("keep_states", 0)
    try:
        check_keep_states(keep_states)
    except KeepStatesTooSmall as exc:
        raise ValueError(f"{path}: {exc}") from None
    node_cache_mib = st.get("node_cache_mib", NODE_CACHE_BYTES // (1024 * 1024))
    if type(node_cache_mib) is not int or not 1 <= node_cache_mib <= 65_536:
        raise ValueError(f"{path}: [store] node_cache_mib must be an integer in 1..65536 (MiB)")
    backend = str(ix.get("backend", "sqlite"))
    if backend not in ("sqlite", "postgres", "off") or (backend == "postgres" and not ix.get("url")):
        raise ValueError(f"{path}: [indexer] backend must be \"sqlite\", \"postgres\" (with a url) or \"off\"")
    return NodeConfig(
        home=home,
        name=node.get("name", "node0"),
        key_file=node.get("key_file", "keys/node0.pem"),
        data_dir=node.get("data_dir", "data"),
        store_engine=store_engine,
        store_keep_states=keep_states,
        store_node_cache_mib=node_cache_mib,
        api_host=api.get("host", "127.0.0.1"),
        api_port=int(api.get("port", DEFAULT_API_PORT)),
        max_request_bytes=int(api.get("max_request_bytes", 1024 * 1024)),
        max_wait_s=float(api.get("max_wait_s", 60.0)),
        max_ws_clients=int(api.get("max_ws_clients", 256)),
        mempool_max_txs=int(mp.get("max_txs", DEFAULT_MAX_TXS)),
        mempool_max_bytes=int(mp.get("max_bytes", DEFAULT_MAX_BYTES)),
        p2p_host=p2p.get("host", "127.0.0.1"),
        p2p_port=int(p2p.get("port", 0)),
        peers=tuple(doc.get("peers", [])),
        seeds=tuple(str(x) for x in p2p.get("seeds", [])),
        blocked_peers=tuple(str(x) for x in p2p.get("blocked_peers", [])),
        timeouts={k: int(v) for k, v in doc.get("consensus", {}).items()},
        indexer_backend=backend,
        indexer_url=str(ix.get("url", "")),
        state_sync=bool(sync.get("state_sync", False)),
        serve_snapshots=bool(sync.get("serve_snapshots", True)),
        chunk_entries=chunk_entries,
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
    store: dict[str, Any] = {}
    if cfg.store_engine:
        store["engine"] = cfg.store_engine
    if cfg.store_keep_states:
        store["keep_states"] = cfg.store_keep_states
    if cfg.store_node_cache_mib != NODE_CACHE_BYTES // (1024 * 1024):
        store["node_cache_mib"] = cfg.store_node_cache_mib
    if store:
        doc["store"] = store
    if cfg.indexer_backend != "sqlite" or cfg.indexer_url:
        doc["indexer"] = {"backend": cfg.indexer_backend, "url": cfg.indexer_url}
    if cfg.timeouts:
        doc["consensus"] = dict(cfg.timeouts)
    if cfg.state_sync or not cfg.serve_snapshots or cfg.chunk_entries != 4096:
        doc["sync"] = {"state_sync": cfg.state_sync, "serve_snapshots": cfg.serve_snapshots,
                       "chunk_entries": cfg.chunk_entries}
    if cfg.p2p_port:
        p2p: dict[str, Any] = {"host": cfg.p2p_host, "port": cfg.p2p_port}
        if cfg.blocked_peers:
            p2p["blocked_peers"] = list(cfg.blocked_peers)
        if cfg.seeds:
            p2p["seeds"] = list(cfg.seeds)
        doc["p2p"] = p2p
        if cfg.peers:
            doc["peers"] = [dict(p) for p in cfg.peers]
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


DEFAULT_P2P_PORT = 26656
"""First P2P port; node i of a local network uses DEFAULT_P2P_PORT + i."""
LOCAL_TIMEOUTS: dict[str, int] = {"propose_base_ms": 1500, "propose_delta_ms": 500, "prevote_base_ms": 500,
                                  "prevote_delta_ms": 500, "precommit_base_ms": 500, "precommit_delta_ms": 500}
"""Consensus timers written for networks on one host or a LAN (the TimeoutConfig defaults suit a WAN)."""


@dataclass(frozen=True)
class NetworkInitResult:
    """What ``qilian init --validators N`` created."""

    root: Path
    """The network directory: ``network.toml``, ``keys/`` (organisation keys), ``node0/`` … ``nodeN-1/``."""
    genesis: Genesis
    """The shared genesis."""
    nodes: tuple[NodeConfig, ...]
    """Each node's configuration (its home is ``root/nodeI``)."""
    key_files: dict[str, Path]
    """Organisation admin and client keys."""


def init_network(
    root: Path,
    validators: int,
    chain_id: str = "qilian-dev",
    suite_name: str = "sm2",
    organisations: tuple[str, ...] = ("org1",),
    hosts: tuple[str, ...] = (),
    api_port: int = DEFAULT_API_PORT,
    p2p_port: int = DEFAULT_P2P_PORT,
    params: ChainParams | None = None,
    password: bytes | None = None,
    genesis_time_ms: int | None = None,
    timeouts: dict[str, int] | None = None,
) -> NetworkInitResult:
    """Create an N-validator network: one home per node (key, TLS identity, config with every peer as its address
    book) and the organisations' keys. Validators are spread over the organisations in turn.

    ``hosts`` names the machine of each node (default: all on 127.0.0.1, ports counting up from the bases); with
    distinct hosts every node uses the base ports and listens for peers on all interfaces."""
    from qilian.p2p.tls import create_tls_identity

    if validators < 1:
        raise ValueError("a network needs at least one validator")
    if (root / "network.toml").exists() or (root / "genesis.json").exists():
        raise FileExistsError(f"{root} already holds a chain; use another --home or remove it")
    if hosts and len(hosts) != validators:
        raise ValueError(f"--hosts names {len(hosts)} hosts for {validators} validators")
    local = not hosts or len(set(hosts)) == 1
    hosts = hosts or tuple("127.0.0.1" for _ in range(validators))
    suite = get_suite(suite_name)
    root.mkdir(parents=True, exist_ok=True)
    key_files: dict[str, Path] = {}

    def new_key(path: Path) -> KeyPair:
        k = generate_key(suite_name)
        save_key(k, path, password)
        return k

    node_keys = [new_key(root / f"node{i}" / "keys" / f"node{i}.pem") for i in range(validators)]
    orgs = []
    for j, org in enumerate(organisations):
        members = [Member(f"node{i}", k.public_key, ("validator",)) for i, k in enumerate(node_keys)
                   if i % len(organisations) == j]
        for label, roles in (("admin", ("admin", "member")), ("client", ("member",))):
            path = root / "keys" / f"{org}-{label}.pem"
            members.append(Member(label, new_key(path).public_key, roles))
            key_files[f"{org}-{label}"] = path
        orgs.append(Organisation(org, tuple(members)))
    genesis = Genesis(
        chain_id=chain_id,
        suite=suite.name,
        genesis_time_ms=genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
        organisations=tuple(orgs),
        validators=ValidatorSet(tuple(sorted((Validator(k.address, k.public_key, 1) for k in node_keys),
                                             key=lambda v: v.address))),
        params=params or ChainParams(),
    )
    check_genesis(genesis, suite.compute_address)
    for i in range(validators):  # TLS encrypts; admission is by node key in chain state (no trust bundle)
        create_tls_identity(root / f"node{i}" / "tls", f"node{i}")
    peers = tuple({"name": f"node{i}", "public_key": k.public_key.hex(), "host": hosts[i],
                   "port": p2p_port + i if local else p2p_port} for i, k in enumerate(node_keys))
    configs = []
    for i in range(validators):
        home = root / f"node{i}"
        (home / "genesis.json").write_text(genesis_to_json(genesis))
        cfg = NodeConfig(home=home, name=f"node{i}", key_file=f"keys/node{i}.pem",
                         api_port=api_port + i if local else api_port,
                         p2p_host="127.0.0.1" if local else "0.0.0.0",
                         p2p_port=p2p_port + i if local else p2p_port, peers=peers,
                         timeouts=dict(LOCAL_TIMEOUTS if timeouts is None else timeouts))
        save_config(cfg)
        configs.append(cfg)
    doc = {"chain_id": chain_id, "suite": suite.name,
           "nodes": [{"name": c.name, "home": c.home.name, "api": f"http://{hosts[i]}:{c.api_port}"}
                     for i, c in enumerate(configs)]}
    (root / "network.toml").write_text(tomli_w.dumps(doc))
    # A copy for clients on this machine: `qilian tx get --home ROOT` verifies proofs against it.
    (root / "genesis.json").write_text(genesis_to_json(genesis))
    return NetworkInitResult(root, genesis, tuple(configs), key_files)


def load_network(root: Path) -> dict[str, Any]:
    """Read ``root/network.toml`` (written by :func:`init_network`)."""
    return tomllib.loads((root / "network.toml").read_text())
