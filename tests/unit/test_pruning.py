"""State pruning (issue 18, "Storage only grows"): the tree's report of what each commit replaced is exact; a store
that keeps the last N versions deletes exactly the nodes and root pointers no retained version reaches — also when
a root hash recurs — and a SIGKILL in the middle of pruning leaves every retained version whole; the floor of
``keep_states`` is enforced where the node reads its configuration."""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qilian.node.config import NodeConfig, init_home, load_config
from qilian.node.pruning import MIN_KEEP_STATES, KeepStatesTooSmall, check_keep_states, compute_prune_budget
from qilian.state import ZERO_HASH, ZERO_REF, MemoryNodeStore, StateTree
from qilian.storage.store import ChainStore, ChainTip
from qilian.types.core import ChainParams, Commit, Genesis, ValidatorSet

from .test_storage import make_block

ENGINES = ("rocksdb", "lmdb")
GENESIS = Genesis("prune-test", "ed25519", 0, (), ValidatorSet(()), ChainParams())
KEYS = [b"k%d" % i for i in range(40)]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def get_reachable(get_node: object, root: bytes) -> set[bytes]:
    """Every reference under ``root`` (a brute-force walk: the oracle)."""
    get = get_node.get_node  # type: ignore[attr-defined]
    if root == ZERO_HASH:
        return set()
    out: set[bytes] = set()
    stack = [get(root)]
    while stack:
        ref = stack.pop()
        if ref == ZERO_REF:
            continue
        assert ref is not None
        out.add(ref)
        data = get(ref)
        assert data is not None, f"node {ref.hex()} is missing"
        if data[0] & 1:
            stack += [data[1:41], data[41:81]]
    return out


def compute_block_writes(rng: random.Random, keys: list[bytes]) -> dict[tuple[str, bytes], bytes | None]:
    """A block's writes: overwrites, deletes (often of absent keys) and sometimes nothing at all."""
    if rng.random() < 0.1:
        return {}
    writes: dict[tuple[str, bytes], bytes | None] = {}
    for _ in range(rng.randint(1, 8)):
        writes[("kv", rng.choice(keys))] = None if rng.random() < 0.35 else rng.choice([b"a", b"b", b"c"])
    return writes


def test_the_tree_reports_exactly_the_nodes_a_commit_replaced() -> None:
    """``stale`` = nodes reachable from the old root and not from the new one, for every kind of write
    (insert, overwrite, same value, delete of present and absent keys, a lone leaf rising to the root); a changed
    root is always a node of the new version."""
    rng = random.Random(18)
    for trial in range(120):
        store = MemoryNodeStore()
        tree = StateTree(sha, store)
        root = ZERO_HASH
        keys = KEYS[:rng.choice([1, 2, 3, 6, 40])]
        for version in range(1, 25):
            before = get_reachable(store, root)
            root_ref = store.nodes.get(root)
            c = tree.compute_commit(root, compute_block_writes(rng, keys), version)
            store.put_nodes(c.nodes)
            after = get_reachable(store, c.root)
            assert set(c.stale) == before - after, (trial, version)
            assert len(c.stale) == len(set(c.stale))
            if c.root == root:
                assert c.stale == () and c.replaced_root is None and c.nodes == {}
            else:
                assert c.replaced_root == root_ref
                if c.root != ZERO_HASH:
                    assert store.nodes[c.root][:8] == version.to_bytes(8, "big")
            tree.check_tree(c.root)
            root = c.root


class Chain:
    """Blocks of random writes committed to a real store, with the expected state of every version."""

    def __init__(self, store: ChainStore, seed: int):
        self.store = store
        self.tree = StateTree(sha, store)
        self.rng = random.Random(seed)
        root, nodes = StateTree(sha, MemoryNodeStore()).apply_writes(ZERO_HASH, {("kv", b"g"): b"genesis"})
        store.process_init(GENESIS, ChainTip(0, b"", 0, root, b"\4" * 32), {("kv", b"g"): b"genesis"}, nodes)
        self.roots = [root]
        self.states: list[dict[tuple[str, bytes], bytes]] = [{("kv", b"g"): b"genesis"}]

    def process_block(self, writes: dict[tuple[str, bytes], bytes | None]) -> None:
        height = len(self.roots)
        c = self.tree.compute_commit(self.roots[-1], writes, height)
        self.store.process_commit_block(make_block(height), Commit(height, 0, b"\1" * 32, ()), [], [], writes,
                                        c.nodes, ChainTip(height, b"\1" * 32, height, c.root, b"\4" * 32), (),
                                        c.stale, c.replaced_root)
        state = dict(self.states[-1])
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        self.roots.append(c.root)
        self.states.append(state)

    def process_prune_all(self, batch: int = 7) -> int:
        done = 0
        while True:
            step = self.store.process_prune(batch)
            done += step.entries
            if not step.more:
                return done

    def check(self) -> None:
        """Every retained version is whole and holds its state; the store holds nothing else (no leak) — every
        node and pointer is one a retained version reaches."""
        tip = len(self.roots) - 1
        oldest = self.store.get_oldest_state_version()
        keep = self.store.keep_states
        assert oldest == max(0, tip - keep + 1)
        live: set[bytes] = set()
        for v in range(oldest, tip + 1):
            root = self.roots[v]
            assert self.tree.check_tree(root) == len(self.states[v]), v
            for (ns, key), value in self.states[v].items():
                assert self.tree.get_value(root, ns, key) == value
            live |= get_reachable(self.store, root)
            if root != ZERO_HASH:
                live.add(root)  # its pointer
        stored = {k for table in (b"n", b"p") for k, _ in self.store.kv.iter_from(table, b"")}  # nodes, roots
        assert all(len(k) == 40 for k, _ in self.store.kv.iter_from(b"n", b""))  # root pointers in their table
        assert stored == live, (len(stored - live), len(live - stored))


@pytest.mark.parametrize("engine", ENGINES)
def test_pruning_keeps_exactly_the_last_n_versions(tmp_path: Path, engine: str) -> None:
    """A chain of overwrites, deletes and empty blocks; after each block the pruner runs (in batches of 7): the
    last N versions stay provable and whole, older ones are refused, and no node leaks."""
    store = ChainStore(tmp_path / "d", engine=engine, keep_states=4)
    try:
        chain = Chain(store, seed=1)
        assert store.process_enable_stale_index() == 1
        pruned = 0
        for _ in range(60):
            chain.process_block(compute_block_writes(chain.rng, KEYS[:12]))
            pruned += chain.process_prune_all()
            chain.check()
        assert pruned > 0
        assert 0 < store.get_state_floor() <= len(chain.roots) - 4  # the bound of the last batch that deleted
    finally:
        store.close()


def test_a_recurring_root_hash_keeps_its_pointer(tmp_path: Path) -> None:
    """The same root hash at several versions — an unchanged state (empty blocks), and a key set that returns to
    an earlier one, down to a single leaf at the root that a delete lifts back — never loses the pointer a
    retained version uses, and the pointer of a root no retained version has is deleted."""
    store = ChainStore(tmp_path / "d", keep_states=2)
    try:
        chain = Chain(store, seed=2)
        store.process_enable_stale_index()
        a, b = ("kv", b"a"), ("kv", b"b")
        g = ("kv", b"g")
        sequence: list[dict[tuple[str, bytes], bytes | None]] = [
            {g: None, a: b"1"},   # 1: {a} — the root is leaf a
            {b: b"1"},            # 2: {a, b} — leaf a stays, now a child
            {b: None},            # 3: {a} again: leaf a lifted back to the root (same root hash as 1)
            {},                   # 4: unchanged
            {},                   # 5: unchanged
            {b: b"1"},            # 6: {a, b} again (root hash of 2)
            {b: None},            # 7: {a}
            {a: None},            # 8: empty
            {a: b"1"},            # 9: {a} again
            {a: b"2", b: b"2"},   # 10
            {a: b"1", b: None},   # 11: {a} again
        ]
        for writes in sequence:
            chain.process_block(writes)
            chain.process_prune_all(batch=1)
            chain.check()
        assert chain.roots[1] == chain.roots[3] == chain.roots[9] == chain.roots[11]
        assert chain.roots[2] == chain.roots[6]
    finally:
        store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_an_archive_store_records_no_stale_index_and_keeps_everything(tmp_path: Path, engine: str) -> None:
    store = ChainStore(tmp_path / "d", engine=engine)
    try:
        chain = Chain(store, seed=3)
        for _ in range(20):
            chain.process_block(compute_block_writes(chain.rng, KEYS[:8]))
        assert not store.is_recording_stale()
        assert list(store.kv.iter_from(b"s", b"")) == []
        assert store.process_prune(100).entries == 0
        assert store.get_oldest_state_version() == 0
        for v, root in enumerate(chain.roots):
            assert chain.tree.check_tree(root) == len(chain.states[v])
    finally:
        store.close()


def test_pruning_enabled_later_keeps_the_older_history_it_has_no_index_for(tmp_path: Path) -> None:
    """An archive store switched to pruning: reads below the window are refused at once, nodes replaced before
    the switch stay (the index starts at the switch), everything replaced after it is pruned, and the retained
    versions are whole."""
    path = tmp_path / "d"
    store = ChainStore(path)
    chain = Chain(store, seed=4)
    for _ in range(10):
        chain.process_block(compute_block_writes(chain.rng, KEYS[:8]))
    store.close()
    store = ChainStore(path, keep_states=3)
    try:
        chain.store, chain.tree = store, StateTree(sha, store)
        assert store.process_enable_stale_index() == 11
        assert store.get_oldest_state_version() == 8
        for _ in range(10):
            chain.process_block(compute_block_writes(chain.rng, KEYS[:8]))
            chain.process_prune_all()
        tip = len(chain.roots) - 1
        for v in range(tip - 2, tip + 1):
            assert chain.tree.check_tree(chain.roots[v]) == len(chain.states[v])
        assert 0 < store.get_state_floor() <= tip - 2
    finally:
        store.close()


_PRUNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path[:0] = sys.argv[3:]
    from qilian.storage.store import ChainStore
    from tests.unit.test_pruning import Chain, compute_pruner_writes, reopen_chain
    store = ChainStore(Path(sys.argv[1]), engine=sys.argv[2], keep_states=3)
    chain = reopen_chain(store) if store.get_genesis() else Chain(store, seed=5)
    store.process_enable_stale_index()
    while True:
        chain.process_block(compute_pruner_writes(len(chain.roots)))
        while store.process_prune(2).more:  # tiny batches: most of the time is spent pruning
            pass
        print(len(chain.roots) - 1, flush=True)
""")


def compute_pruner_writes(height: int) -> dict[tuple[str, bytes], bytes | None]:
    """The writes of block ``height`` in the SIGKILL test: a function of the height, so the test can replay the
    expected state of every version."""
    rng = random.Random(height)
    return {("kv", rng.choice(KEYS)): None if rng.random() < 0.3 else b"%d" % height for _ in range(12)}


def reopen_chain(store: ChainStore) -> Chain:
    """The chain of the SIGKILL test as of the store's tip, replayed in memory (roots and expected states)."""
    chain = Chain.__new__(Chain)
    chain.store, chain.tree, chain.rng = store, StateTree(sha, store), random.Random(0)
    mem = MemoryNodeStore()
    tree = StateTree(sha, mem)
    root, nodes = tree.apply_writes(ZERO_HASH, {("kv", b"g"): b"genesis"})
    mem.put_nodes(nodes)
    chain.roots, chain.states = [root], [{("kv", b"g"): b"genesis"}]
    for h in range(1, store.get_tip().height + 1):
        writes = compute_pruner_writes(h)
        root, nodes = tree.apply_writes(root, writes, h)
        mem.put_nodes(nodes)
        state = dict(chain.states[-1])
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        chain.roots.append(root)
        chain.states.append(state)
    assert chain.roots[-1] == store.get_tip().state_root
    return chain


def _wait_for_lines(proc: subprocess.Popen[bytes], count: int, deadline_s: float = 120.0) -> None:
    """Read ``count`` lines of the writer's output (one per committed block), failing at the deadline — not a
    fixed sleep, which on a loaded machine ended before the writer had even created the store."""
    assert proc.stdout is not None
    deadline = time.monotonic() + deadline_s
    for _ in range(count):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            proc.wait()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"the writer committed no block within {deadline_s:.0f} s: {err[-2000:]}")


@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_mid_prune_leaves_every_retained_version_whole(tmp_path: Path, engine: str) -> None:
    """A process commits blocks and prunes in batches of two entries, and is SIGKILLed at arbitrary moments
    (mostly inside the pruning); every reopen finds each version from the oldest retained one to the tip whole
    and holding its state, the writer resumes on the same store, and a final full prune leaves no leak."""
    data = tmp_path / "d"
    root = Path(__file__).resolve().parents[2]
    paths = [str(root), *sys.path]
    for kill_after in (0.4, 0.55, 0.7, 0.85):
        proc = subprocess.Popen([sys.executable, "-c", _PRUNER, str(data), engine, *paths],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
        _wait_for_lines(proc, 4)  # the writer is past its imports and has committed (and pruned) 4 blocks …
        try:  # … then it runs on for an arbitrary moment (mostly inside a prune); it must not end by itself
            proc.wait(timeout=kill_after)
            pytest.fail(f"the writer exited on its own: {proc.stderr.read().decode() if proc.stderr else ''}")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = ChainStore(data, engine=engine, keep_states=3)
        try:
            tip = store.get_tip().height
            assert tip > 3, proc.stderr.read() if proc.stderr else ""
            chain = reopen_chain(store)
            oldest = store.get_oldest_state_version()
            assert oldest == tip - 2
            for v in range(oldest, tip + 1):
                assert chain.tree.check_tree(chain.roots[v]) == len(chain.states[v]), v
                for (ns, key), value in chain.states[v].items():
                    assert chain.tree.get_value(chain.roots[v], ns, key) == value
        finally:
            store.close()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    store = ChainStore(data, engine=engine, keep_states=3)
    try:
        chain = reopen_chain(store)
        chain.process_prune_all()
        chain.check()
    finally:
        store.close()


# -- the floor ------------------------------------------------------------------------------------------------


def test_the_floor_is_the_evidence_window_plus_the_tip() -> None:
    assert MIN_KEEP_STATES == 1001
    check_keep_states(0)
    check_keep_states(MIN_KEEP_STATES)
    with pytest.raises(KeepStatesTooSmall, match=r"below the floor of 1001.*evidence up to 1000 blocks"):
        check_keep_states(1000)
    with pytest.raises(KeepStatesTooSmall, match="integer"):
        check_keep_states(-1)
    assert compute_prune_budget(0) < compute_prune_budget(50_000)


def test_node_toml_keep_states_is_read_checked_and_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, chain_id="prune-chain", suite_name="ed25519", params=ChainParams())
    toml = home / "node.toml"
    assert load_config(home).store_keep_states == 0
    toml.write_text(toml.read_text() + "\n[store]\nkeep_states = 5\n")
    with pytest.raises(ValueError, match=r"node.toml: \[store\] keep_states = 5 is below the floor of 1001"):
        load_config(home)
    toml.write_text(toml.read_text().replace("keep_states = 5", "keep_states = 2000"))
    cfg = load_config(home)
    assert cfg.store_keep_states == 2000
    from qilian.node.config import save_config

    save_config(cfg)
    assert load_config(home).store_keep_states == 2000


def test_a_node_refuses_a_keep_states_below_the_floor(tmp_path: Path) -> None:
    from qilian.node.node import Node

    init_home(tmp_path / "home", chain_id="prune-chain", suite_name="ed25519", params=ChainParams())
    with pytest.raises(KeepStatesTooSmall, match="floor"):
        Node(NodeConfig(home=tmp_path / "home", store_keep_states=10))


def test_the_governance_index_keeps_each_changed_validator_set(tmp_path: Path) -> None:
    """The light clients' validator path must not need old states (a pruning node has none): the set signing a
    height whose header names a new set is kept in the index entry; unchanged heights and entries written without
    a set (before the index kept them) answer None, so the reader falls back to the state."""
    from dataclasses import replace

    from qilian.types.core import Validator

    def vset(n: int) -> ValidatorSet:
        return ValidatorSet((Validator(bytes([n]) * 20, bytes([n]) * 32, n),))

    store = ChainStore(tmp_path / "d")
    try:
        store.process_init(GENESIS, ChainTip(0, b"", 0, ZERO_HASH, b"\4" * 32))
        hashes = {1: b"\xaa" * 32, 2: b"\xaa" * 32, 3: b"\xbb" * 32, 4: b"\xbb" * 32, 5: b"\xcc" * 32}
        for h, vh in hashes.items():
            block = make_block(h)
            block = replace(block, header=replace(block.header, validators_hash=vh))
            store.process_commit_block(block, Commit(h, 0, b"\1" * 32, ()), [], [], {}, {},
                                       ChainTip(h, b"\1" * 32, h, ZERO_HASH, b"\4" * 32),
                                       validators=None if h == 5 else vset(h))
        with store.begin_snapshot() as snap:
            assert snap.get_validator_change_heights(5) == [3, 5]
            assert snap.get_changed_validator_set(3) == vset(3)
            assert snap.get_changed_validator_set(2) is None  # no change at 2
            assert snap.get_changed_validator_set(5) is None  # written without the set: read the state
    finally:
        store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_compaction_gives_pruned_space_back_and_keeps_every_retained_version(tmp_path: Path, engine: str) -> None:
    """After pruning, ``process_compact`` (``qilian node prune --compact``) leaves the same retained versions and
    nothing else; on LMDB — whose pruned pages stay allocated, partly empty — the file shrinks; a leftover
    ``compact.tmp`` of a compaction killed half-way is ignored and replaced."""
    store = ChainStore(tmp_path / "d", engine=engine, keep_states=3)
    try:
        chain = Chain(store, seed=6)
        store.process_enable_stale_index()
        for _ in range(40):
            chain.process_block(compute_block_writes(chain.rng, KEYS))
            chain.process_prune_all(batch=50)
        if engine == "lmdb":
            (tmp_path / "d" / "compact.tmp").mkdir()
            (tmp_path / "d" / "compact.tmp" / "data.mdb").write_bytes(b"half a file")
        before = store.get_disk_bytes()
        store.process_compact()
        chain.check()
        chain.process_block(compute_block_writes(chain.rng, KEYS))  # the store still takes commits
        chain.process_prune_all()
        chain.check()
        if engine == "lmdb":
            assert store.get_disk_bytes() < before
            assert not (tmp_path / "d" / "compact.tmp").exists()
    finally:
        store.close()
    store = ChainStore(tmp_path / "d", engine=engine, keep_states=3)
    try:
        assert store.get_tip().height == 41
    finally:
        store.close()
