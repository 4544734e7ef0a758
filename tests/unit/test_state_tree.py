"""Unit tests of qilian.state: formulas, limits, canonical form at the edges, proofs and their forgeries.

A naive recursive sparse-Merkle-tree root written here from the spec is the oracle for roots. Deep trees (paths
sharing 255 bits) cannot be found by grinding, so a test hash function maps chosen path pre-images to chosen paths
and hashes everything else with SHA-256 — ``hash_fn`` is injected precisely so such tests are possible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest

from qilian.state import (
    EMPTY_ROOT,
    MAX_KEY_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_VALUE_BYTES,
    ZERO_HASH,
    ZERO_REF,
    CorruptNodeError,
    MemoryNodeStore,
    MissingNodeError,
    StateError,
    StateLimitError,
    StateOverlay,
    StateProof,
    StateTree,
    compute_state_path,
    validate_write,
    verify_state_proof,
)
from qilian.types import codec

HashFn = Callable[[bytes], bytes]
Writes = dict[tuple[str, bytes], bytes | None]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


HASH_FNS = pytest.mark.parametrize("hash_fn", [sha256, sm3], ids=["sha256", "sm3"])


def reference_root(hash_fn: HashFn, items: dict[bytes, bytes], depth: int = 0) -> bytes:
    """Root of the canonical tree over {path: value}, straight from the definition."""
    if not items:
        return ZERO_HASH
    if len(items) == 1:
        ((path, value),) = items.items()
        return hash_fn(b"\x00" + path + hash_fn(value))
    left = {p: v for p, v in items.items() if not (p[depth // 8] >> (7 - depth % 8)) & 1}
    right = {p: v for p, v in items.items() if p not in left}
    return hash_fn(b"\x01" + reference_root(hash_fn, left, depth + 1) + reference_root(hash_fn, right, depth + 1))


def model_root(hash_fn: HashFn, model: dict[tuple[str, bytes], bytes]) -> bytes:
    return reference_root(hash_fn, {compute_state_path(hash_fn, ns, k): v for (ns, k), v in model.items()})


class Tree:
    """A tree with its store and current root, committing like the node does."""

    def __init__(self, hash_fn: HashFn) -> None:
        self.hash_fn = hash_fn
        self.store = MemoryNodeStore()
        self.tree = StateTree(hash_fn, self.store)
        self.root = EMPTY_ROOT

    def commit(self, writes: Writes) -> bytes:
        self.root, nodes = self.tree.apply_writes(self.root, writes)
        for key, enc in nodes.items():
            if len(key) == 32:  # the root pointer
                assert key == self.root and enc[8:] == self.root
            else:  # a node under its reference: version ‖ hash of the node, children named by hash
                assert node_hash(self.hash_fn, enc) == key[8:]
        self.store.put_nodes(nodes)
        for key, enc in nodes.items():
            if len(key) == 40 and enc[0] & 1:
                assert leaf_marks(enc) == tuple(self.get_leaf_path(child) for child in (enc[1:41], enc[41:81]))
        return self.root

    def get_leaf_path(self, ref: bytes) -> bytes | None:
        """A child's path if it is a leaf: what a commit's node must mark (every leaf child, in a tree that only
        commits built)."""
        if ref == ZERO_REF:
            return None
        enc = self.store.nodes[ref]
        return enc[1:33] if enc[0] == 0 else None


def leaf_marks(enc: bytes) -> tuple[bytes | None, bytes | None]:
    """The (left, right) leaf paths an internal node's tag says it carries after its two references."""
    extra = enc[81:]
    if enc[0] == 1:
        assert not extra
        return None, None
    if enc[0] == 3:
        assert len(extra) == 32
        return extra, None
    if enc[0] == 5:
        assert len(extra) == 32
        return None, extra
    assert enc[0] == 7 and len(extra) == 64
    return extra[:32], extra[32:]


def node_hash(hash_fn: HashFn, enc: bytes) -> bytes:
    """Hash of a stored node: an internal node's children are hashed by hash (their 8-byte versions are not)."""
    return hash_fn(b"\x01" + enc[9:41] + enc[49:81]) if enc[0] & 1 else hash_fn(enc[:65])


def keys(n: int, ns: str = "kv") -> list[tuple[str, bytes]]:
    return [(ns, b"k%d" % i) for i in range(n)]


# -- formulas and pinned vectors -------------------------------------------------------------------------------


@HASH_FNS
def test_path_formula(hash_fn: HashFn) -> None:
    assert compute_state_path(hash_fn, "kv", b"alice") == hash_fn(b"\x00\x02kv" + b"alice")
    ns = "存证"
    raw = ns.encode()
    assert compute_state_path(hash_fn, ns, b"") == hash_fn(len(raw).to_bytes(2, "big") + raw)
    # The length prefix keeps ("ab", "c") and ("a", "bc") apart.
    assert compute_state_path(hash_fn, "ab", b"c") != compute_state_path(hash_fn, "a", b"bc")


@pytest.mark.parametrize(("hash_fn", "one", "four"), [
    (sha256, "9fa54f4335a57d97f40f19dd7946a30e493bcd0ccf2a6bbfbb7820ec09c54d36",
     "bfde79ec9e5df9670659bdb9cfc2e39694abda04cdb6073fb3491a97aea8d7ff"),
    (sm3, "3512f0f60a28d7350af6661012e4f8e837cd7f8605320e181c20eb1ee1753fc5",
     "ce3cc8f7f84fa23c5bda86b963a6c91a064194d4e83336ee18d4346b81366521"),
], ids=["sha256", "sm3"])
def test_pinned_roots(hash_fn: HashFn, one: str, four: str) -> None:
    """Known answers for SDKs in other languages; a change here is a consensus break."""
    t = Tree(hash_fn)
    assert t.commit({("kv", b"alice"): b"100"}).hex() == one
    path = compute_state_path(hash_fn, "kv", b"alice")
    assert t.root == hash_fn(b"\x00" + path + hash_fn(b"100"))
    writes: Writes = {("kv", b"bob"): b"", ("存证", b"\x00\x01"): b"hash-of-document", ("kv", b"carol"): b"7"}
    assert t.commit(writes).hex() == four
    model = {("kv", b"alice"): b"100", ("kv", b"bob"): b"", ("存证", b"\x00\x01"): b"hash-of-document",
             ("kv", b"carol"): b"7"}
    assert t.root == model_root(hash_fn, model)


@HASH_FNS
def test_empty_tree(hash_fn: HashFn) -> None:
    t = Tree(hash_fn)
    assert EMPTY_ROOT == ZERO_HASH == b"\x00" * 32
    assert t.tree.apply_writes(EMPTY_ROOT, {}) == (EMPTY_ROOT, {})
    assert t.tree.apply_writes(EMPTY_ROOT, {("kv", b"x"): None}) == (EMPTY_ROOT, {})
    assert t.tree.get_value(EMPTY_ROOT, "kv", b"x") is None
    proof = t.tree.get_proof(EMPTY_ROOT, "kv", b"x")
    assert proof == StateProof(0, b"", (), None, None)
    assert verify_state_proof(hash_fn, EMPTY_ROOT, "kv", b"x", None, proof)
    assert not verify_state_proof(hash_fn, EMPTY_ROOT, "kv", b"x", b"", proof)
    assert t.tree.check_tree(EMPTY_ROOT) == 0


@HASH_FNS
def test_single_key_then_delete(hash_fn: HashFn) -> None:
    t = Tree(hash_fn)
    t.commit({("kv", b"a"): b"1"})
    assert t.tree.get_value(t.root, "kv", b"a") == b"1"
    proof = t.tree.get_proof(t.root, "kv", b"a")
    assert proof.depth == 0 and proof.siblings == ()
    assert verify_state_proof(hash_fn, t.root, "kv", b"a", b"1", proof)
    # Absence of another key is proven by the root leaf itself (depth 0: every path shares the empty prefix).
    other = t.tree.get_proof(t.root, "kv", b"b")
    assert other.leaf_path == compute_state_path(hash_fn, "kv", b"a")
    assert verify_state_proof(hash_fn, t.root, "kv", b"b", None, other)
    assert t.commit({("kv", b"a"): None}) == EMPTY_ROOT


@HASH_FNS
def test_empty_value_is_present(hash_fn: HashFn) -> None:
    t = Tree(hash_fn)
    t.commit({("kv", b"e"): b""})
    assert t.tree.get_value(t.root, "kv", b"e") == b""
    proof = t.tree.get_proof(t.root, "kv", b"e")
    assert verify_state_proof(hash_fn, t.root, "kv", b"e", b"", proof)
    assert not verify_state_proof(hash_fn, t.root, "kv", b"e", None, proof)


# -- commits -----------------------------------------------------------------------------------------------------


@HASH_FNS
def test_commit_matches_reference_and_is_pure(hash_fn: HashFn) -> None:
    t = Tree(hash_fn)
    model: dict[tuple[str, bytes], bytes] = {}
    for round_ in range(4):
        writes: Writes = {k: b"v%d-%d" % (round_, i) for i, k in enumerate(keys(300)[round_ * 50:round_ * 50 + 120])}
        for k in keys(300)[round_ * 37:round_ * 37 + 20]:
            writes[k] = None
        before = dict(t.store.nodes)
        new_root, nodes = t.tree.apply_writes(t.root, writes)
        assert t.store.nodes == before, "apply_writes must not touch the store"
        t.store.put_nodes(nodes)
        t.root = new_root
        for k, v in writes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert t.root == model_root(hash_fn, model)
        assert t.tree.check_tree(t.root) == len(model)
        assert sorted(t.tree.iter_items(t.root)) == sorted(
            (compute_state_path(hash_fn, *k), v) for k, v in model.items())


@HASH_FNS
def test_no_op_writes_write_no_nodes(hash_fn: HashFn) -> None:
    t = Tree(hash_fn)
    t.commit({k: b"same" for k in keys(50)})
    root = t.root
    assert t.tree.apply_writes(root, {k: b"same" for k in keys(50)[:10]}) == (root, {})
    assert t.tree.apply_writes(root, {("kv", b"absent"): None}) == (root, {})
    assert t.tree.apply_writes(root, {("kv", b"absent"): None, keys(50)[3]: b"same"}) == (root, {})


@HASH_FNS
def test_new_nodes_are_all_reachable(hash_fn: HashFn) -> None:
    """Every returned node is part of the new tree: nothing is written that the new root does not use."""
    t = Tree(hash_fn)
    t.commit({k: b"x" for k in keys(200)})
    writes: Writes = {k: b"y" for k in keys(400)[150:260]}
    writes.update({k: None for k in keys(200)[:60]})
    root, nodes = t.tree.apply_writes(t.root, writes)
    t.store.put_nodes(nodes)
    reachable = {root}
    stack = [t.store.nodes[root]]  # the root pointer → the root's reference
    while stack:
        ref = stack.pop()
        if ref == ZERO_REF:
            continue
        reachable.add(ref)
        enc = t.store.nodes[ref]
        if enc[0] & 1:
            stack += [enc[1:41], enc[41:81]]
    assert set(nodes) <= reachable


def test_commit_cost_is_logarithmic() -> None:
    """Nodes written per key follow the tree depth below the shared levels, not the state size."""
    t = Tree(sha256)
    t.commit({k: b"x" for k in keys(4096)})
    _, nodes = t.tree.apply_writes(t.root, {("kv", b"k17"): b"new"})
    assert len(nodes) <= 25  # 1 leaf + about log2(4096) + a few internal nodes + the root pointer
    _, nodes = t.tree.apply_writes(t.root, {("new", b"%d" % i): b"v" for i in range(64)})
    assert len(nodes) < 64 * 12


def test_missing_and_bad_roots() -> None:
    t = Tree(sha256)
    unknown = sha256(b"unknown root")
    with pytest.raises(MissingNodeError):
        t.tree.apply_writes(unknown, {("kv", b"a"): b"1"})
    with pytest.raises(MissingNodeError):
        t.tree.get_value(unknown, "kv", b"a")
    with pytest.raises(MissingNodeError):
        t.tree.get_proof(unknown, "kv", b"a")
    for bad in (b"short", "0" * 32, None):
        with pytest.raises(StateError):
            t.tree.apply_writes(bad, {("kv", b"a"): b"1"})  # type: ignore[arg-type]
        with pytest.raises(StateError):
            t.tree.get_value(bad, "kv", b"a")  # type: ignore[arg-type]


def test_corruption_is_detected() -> None:
    t = Tree(sha256)
    t.commit({k: b"value" for k in keys(20)})
    assert t.tree.check_tree(t.root) == 20
    leaf_hash = next(h for h, enc in t.store.nodes.items() if len(h) == 40 and enc[0] == 0 and enc[65:] == b"value")
    good = t.store.nodes[leaf_hash]
    t.store.nodes[leaf_hash] = good[:65] + b"VALUE"
    with pytest.raises(CorruptNodeError):
        t.tree.check_tree(t.root)
    path = good[1:33]
    key = next(k for k in keys(20) if compute_state_path(sha256, *k) == path)
    with pytest.raises(CorruptNodeError):
        t.tree.get_value(t.root, *key)
    t.store.nodes[leaf_hash] = b"\x01" + good[1:20]
    with pytest.raises(CorruptNodeError):
        t.tree.get_value(t.root, *key)
    t.store.nodes[leaf_hash] = b"\x07" + good[1:]
    with pytest.raises(CorruptNodeError):
        t.tree.get_proof(t.root, *key)
    t.store.nodes[leaf_hash] = good
    # The leaf's parent names its path (so a commit need not read the leaf): a wrong or malformed mark is caught.
    parent_ref, parent = next((r, e) for r, e in t.store.nodes.items() if len(r) == 40 and e[0] & 1
                              and leaf_hash in (e[1:41], e[41:81]))
    assert path in (parent[81:113], parent[113:145])
    t.store.nodes[parent_ref] = parent.replace(path, bytes(32))
    with pytest.raises(CorruptNodeError, match="marks a child"):
        t.tree.check_tree(t.root)
    for bad in (parent[:113] + b"x", b"\x09" + parent[1:], b"\x03" + parent[1:81], b""):
        t.store.nodes[parent_ref] = bad
        with pytest.raises(CorruptNodeError):
            t.tree.apply_writes(t.root, {key: b"other"})
        with pytest.raises(CorruptNodeError):
            t.tree.check_tree(t.root)
    t.store.nodes[parent_ref] = parent
    assert t.tree.check_tree(t.root) == 20
    # A non-canonical node (one key below an internal node) is caught by the fsck.
    lone = b"\x01" + leaf_hash + ZERO_REF
    lone_hash = sha256(b"\x01" + leaf_hash[8:] + ZERO_HASH)
    t.store.put_nodes({bytes(8) + lone_hash: lone, lone_hash: bytes(8) + lone_hash})
    with pytest.raises(CorruptNodeError, match="canonical"):
        t.tree.check_tree(lone_hash)


# -- limits ------------------------------------------------------------------------------------------------------


def test_limits() -> None:
    t = Tree(sha256)
    ok: Writes = {
        ("n" * MAX_NAMESPACE_BYTES, b"k"): b"v",
        ("é" * (MAX_NAMESPACE_BYTES // 2), b"k"): b"v",
        ("kv", b"k" * MAX_KEY_BYTES): b"v",
        ("kv", b"big"): b"v" * MAX_VALUE_BYTES,
        ("", b""): b"",
    }
    t.commit(ok)
    assert t.tree.get_value(t.root, "kv", b"big") == b"v" * MAX_VALUE_BYTES
    bad: list[tuple[Any, Any, Any]] = [
        ("n" * (MAX_NAMESPACE_BYTES + 1), b"k", b"v"),
        ("é" * (MAX_NAMESPACE_BYTES // 2 + 1), b"k", b"v"),  # 256 UTF-8 bytes in 128 characters
        ("kv", b"k" * (MAX_KEY_BYTES + 1), b"v"),
        ("kv", b"k", b"v" * (MAX_VALUE_BYTES + 1)),
        ("kv", "text key", b"v"),
        ("kv", bytearray(b"k"), b"v"),
        ("kv", b"k", "text value"),
        ("kv", b"k", bytearray(b"v")),
        (b"kv", b"k", b"v"),
        ("\ud800", b"k", b"v"),
    ]
    root_before, nodes_before = t.root, dict(t.store.nodes)
    for ns, key, value in bad:
        with pytest.raises(StateLimitError):
            validate_write(ns, key, value)
        if type(key) is not bytearray:  # a bytearray key cannot even be a dict key
            with pytest.raises(ValueError):
                t.tree.apply_writes(t.root, {("kv", b"fine"): b"1", (ns, key): value})
        if value is not None and type(value) is bytes and len(value) <= MAX_VALUE_BYTES:
            with pytest.raises(ValueError):
                t.tree.get_value(t.root, ns, key)
            assert not verify_state_proof(sha256, t.root, ns, key, None, StateProof(0, b"", (), None, None))
    assert t.root == root_before and t.store.nodes == nodes_before
    assert issubclass(StateLimitError, StateError) and issubclass(StateError, ValueError)


def test_overlay() -> None:
    base = {("kv", b"a"): b"1", ("kv", b"b"): b"2"}
    overlay = StateOverlay(lambda ns, k: base.get((ns, k)))
    assert overlay.get_value("kv", b"a") == b"1"
    overlay.apply_write("zz", b"z", b"26")
    overlay.apply_write("kv", b"a", None)
    overlay.apply_write("kv", b"c", b"3")
    assert overlay.get_value("kv", b"a") is None
    assert overlay.get_value("kv", b"b") == b"2"
    assert overlay.get_value("kv", b"c") == b"3"
    assert list(overlay.get_writes()) == [("kv", b"a"), ("kv", b"c"), ("zz", b"z")]
    assert len(overlay) == 3
    with pytest.raises(StateLimitError):
        overlay.apply_write("kv", b"x", b"v" * (MAX_VALUE_BYTES + 1))
    assert len(overlay) == 3


# -- deep trees via a hash function with chosen paths --------------------------------------------------------------


def chosen_paths_hash(paths: dict[tuple[str, bytes], bytes]) -> HashFn:
    """SHA-256, except that the path pre-image of each listed key hashes to the chosen path."""
    table = {len(ns.encode()).to_bytes(2, "big") + ns.encode() + key: p for (ns, key), p in paths.items()}

    def hash_fn(data: bytes) -> bytes:
        return table.get(data) or hashlib.sha256(data).digest()

    return hash_fn


def path_with_bits(bits: Iterable[int]) -> bytes:
    """A path with the given bit positions set."""
    x = 0
    for b in bits:
        x |= 1 << (255 - b)
    return x.to_bytes(32, "big")


def test_deepest_possible_leaves() -> None:
    """Two paths differing only in bit 255: 255 one-child internal nodes, leaves at depth 256."""
    a, b, c = ("kv", b"a"), ("kv", b"b"), ("kv", b"c")
    paths = {a: path_with_bits([]), b: path_with_bits([255]), c: path_with_bits([0])}
    hash_fn = chosen_paths_hash(paths)
    t = Tree(hash_fn)
    t.commit({a: b"A"})
    root_a = t.root
    t.commit({b: b"B"})
    model = {a: b"A", b: b"B"}
    assert t.root == model_root(hash_fn, model)
    for k, v in model.items():
        proof = t.tree.get_proof(t.root, *k)
        assert proof.depth == 256 and len(proof.siblings) == 1 and proof.bitmap[-1] == 1
        assert verify_state_proof(hash_fn, t.root, *k, v, proof)
        assert StateProof.from_wire(proof.to_wire()) == proof
    # A third key splitting at the root; then deleting b collapses the 255-node chain back to a's leaf.
    t.commit({c: b"C"})
    assert t.root == model_root(hash_fn, {a: b"A", b: b"B", c: b"C"})
    absent = t.tree.get_proof(t.root, "kv", b"zzz")
    assert verify_state_proof(hash_fn, t.root, "kv", b"zzz", None, absent)
    t.commit({c: None, b: None})
    assert t.root == root_a
    assert t.tree.check_tree(t.root) == 1


@pytest.mark.parametrize("split_bit", [0, 1, 7, 8, 100, 254, 255])
def test_long_shared_prefixes_in_batches(split_bit: int) -> None:
    """Keys sharing long prefixes, written in one batch and one by one, deleted in any grouping: same roots."""
    ks = [("kv", b"%d" % i) for i in range(6)]
    base = [0, 3] if split_bit > 3 else []
    paths = {
        ks[0]: path_with_bits(base),
        ks[1]: path_with_bits([*base, split_bit]),
        ks[2]: path_with_bits([*base, split_bit, 255]) if split_bit < 255 else path_with_bits([*base, 254]),
        ks[3]: path_with_bits([1, 2, 200]),
        ks[4]: path_with_bits([1, 2, 201]),
        ks[5]: path_with_bits(range(256)),
    }
    hash_fn = chosen_paths_hash(paths)
    values: dict[tuple[str, bytes], bytes] = {k: b"v" + k[1] for k in ks}
    expected = model_root(hash_fn, values)
    one = Tree(hash_fn)
    one.commit(dict(values))
    assert one.root == expected
    single = Tree(hash_fn)
    for k in reversed(ks):
        single.commit({k: values[k]})
    assert single.root == expected
    for group in ([0], [1, 2], [0, 1, 2], [3], [5, 4], [1, 3, 5]):
        rest = {k: v for i, (k, v) in enumerate(values.items()) if i not in group}
        r, _ = one.tree.apply_writes(one.root, {ks[i]: None for i in group})
        assert r == model_root(hash_fn, rest)
    for k in ks:
        proof = one.tree.get_proof(one.root, *k)
        assert verify_state_proof(hash_fn, one.root, *k, values[k], proof)


# -- proofs and forgeries ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proven() -> tuple[Tree, dict[tuple[str, bytes], bytes]]:
    t = Tree(sm3)
    model = {k: b"value of " + k[1] for k in keys(500)}
    t.commit(dict(model))
    return t, model


def _forgeries(proof: StateProof) -> list[StateProof]:
    """Structurally plausible variants of ``proof`` (built directly, bypassing from_wire)."""
    out: list[StateProof] = []
    sibs = proof.siblings
    for i, s in enumerate(sibs):
        for pos in (0, 31):
            flipped = bytes([s[pos] ^ 1]) + s[1:] if pos == 0 else s[:31] + bytes([s[31] ^ 0x80])
            out.append(replace(proof, siblings=(*sibs[:i], flipped, *sibs[i + 1:])))
    if sibs:
        out.append(replace(proof, siblings=sibs[1:]))
        out.append(replace(proof, siblings=sibs[:-1]))
        out.append(replace(proof, siblings=(*sibs[:-1], sibs[-1], sibs[-1])))
        out.append(replace(proof, siblings=tuple(reversed(sibs))))
    out.append(replace(proof, siblings=(*sibs, sm3(b"extra"))))
    for i in range(len(proof.bitmap) * 8):
        flipped_bm = bytearray(proof.bitmap)
        flipped_bm[i // 8] ^= 0x80 >> (i % 8)
        out.append(replace(proof, bitmap=bytes(flipped_bm)))
    if proof.depth:
        out.append(replace(proof, depth=proof.depth - 1))
    out.append(replace(proof, depth=proof.depth + 1))
    nb = (proof.depth + 8) // 8
    out.append(replace(proof, depth=proof.depth + 1, bitmap=(int.from_bytes(proof.bitmap, "big") << (
        nb * 8 - len(proof.bitmap) * 8)).to_bytes(nb, "big")))
    if proof.leaf_path is not None and proof.leaf_value_hash is not None:
        lp, lv = proof.leaf_path, proof.leaf_value_hash
        out.append(replace(proof, leaf_path=bytes([lp[0] ^ 1]) + lp[1:]))
        out.append(replace(proof, leaf_path=lp[:31] + bytes([lp[31] ^ 1])))
        out.append(replace(proof, leaf_value_hash=bytes([lv[0] ^ 1]) + lv[1:]))
        out.append(replace(proof, leaf_path=None, leaf_value_hash=None))
        out.append(replace(proof, leaf_value_hash=None))
    else:
        out.append(replace(proof, leaf_path=sm3(b"p"), leaf_value_hash=sm3(b"v")))
    return [p for p in out if p != proof]


def test_presence_proofs_and_forgeries(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    t, model = proven
    ks = list(model)
    for n, k in enumerate(ks[:40]):
        v = model[k]
        proof = t.tree.get_proof(t.root, *k)
        assert verify_state_proof(sm3, t.root, *k, v, proof)
        assert not verify_state_proof(sm3, t.root, *k, v + b"!", proof), "wrong value"
        assert not verify_state_proof(sm3, t.root, *k, None, proof), "presence proof offered as absence"
        assert not verify_state_proof(sm3, sm3(t.root), *k, v, proof), "other root"
        other = ks[-1 - n]
        assert not verify_state_proof(sm3, t.root, *other, v, proof), "proof of another key"
        assert not verify_state_proof(sm3, t.root, *other, model[other], proof)
        # Another key's leaf proves our absence only if it sits on our path, which no present key's leaf does.
        assert not verify_state_proof(sm3, t.root, *other, None, proof), "presence of one key as absence of another"
        assert not verify_state_proof(sha256, t.root, *k, v, proof), "other hash function"
        for forged in _forgeries(proof):
            assert not verify_state_proof(sm3, t.root, *k, v, forged), forged
            assert not verify_state_proof(sm3, t.root, *k, None, forged), forged


def test_absence_proofs_and_forgeries(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    t, model = proven
    kinds = set()
    for i in range(60):
        k = ("kv", b"absent-%d" % i)
        proof = t.tree.get_proof(t.root, *k)
        kinds.add(proof.leaf_path is None)
        assert verify_state_proof(sm3, t.root, *k, None, proof)
        assert not verify_state_proof(sm3, t.root, *k, b"", proof), "absence proof offered as presence"
        assert not verify_state_proof(sm3, sm3(t.root), *k, None, proof)
        for forged in _forgeries(proof):
            assert not verify_state_proof(sm3, t.root, *k, None, forged), forged
        # An absence proof is about a path prefix: it does not transfer to a present key — except that an
        # absence proof ending in key K's leaf is, by construction, exactly K's presence proof.
        for present in list(model)[:5]:
            assert not verify_state_proof(sm3, t.root, *present, None, proof)
            is_its_leaf = proof.leaf_path == compute_state_path(sm3, *present)
            assert verify_state_proof(sm3, t.root, *present, model[present], proof) == is_its_leaf
    assert kinds == {True, False}, "both terminal kinds (empty subtree, other key's leaf) were exercised"


def test_absence_proof_for_present_key_cannot_be_made(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    """Dressing a present key's proof up as absence: empty terminal, or a neighbour's leaf on the same path."""
    t, model = proven
    k = next(iter(model))
    proof = t.tree.get_proof(t.root, *k)
    assert not verify_state_proof(sm3, t.root, *k, None, replace(proof, leaf_path=None, leaf_value_hash=None))
    for other in list(model)[1:30]:
        op = t.tree.get_proof(t.root, *other)
        assert not verify_state_proof(sm3, t.root, *k, None, replace(proof, leaf_path=op.leaf_path,
                                                                      leaf_value_hash=op.leaf_value_hash))


def test_historical_roots(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    t0, model = proven
    t = Tree(sm3)
    t.store.put_nodes(t0.store.nodes)
    t.root = old = t0.root
    t.commit({k: b"changed" for k in list(model)[:100]})
    t.commit({k: None for k in list(model)[100:200]})
    t.commit({("kv", b"later"): b"x"})
    for k in list(model)[::25]:
        assert t.tree.get_value(old, *k) == model[k]
        assert verify_state_proof(sm3, old, *k, model[k], t.tree.get_proof(old, *k))
    assert verify_state_proof(sm3, old, "kv", b"later", None, t.tree.get_proof(old, "kv", b"later"))
    assert t.tree.get_value(t.root, "kv", b"later") == b"x"
    assert t.tree.check_tree(old) == len(model)


def test_wire_round_trip_through_codec(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    t, model = proven
    for k in [*list(model)[:10], ("kv", b"nope"), ("kv", b"nope2")]:
        proof = t.tree.get_proof(t.root, *k)
        wire = proof.to_wire()
        assert all(type(x) in (int, bytes, list) for x in wire)
        back = StateProof.from_wire(codec.decode(codec.encode(wire)))
        assert back == proof
        assert StateProof.from_wire(codec.from_json_value(codec.to_json_value(wire))) == proof


def _good_wire(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> list[Any]:
    t, model = proven
    return t.tree.get_proof(t.root, *next(iter(model))).to_wire()


def test_from_wire_rejects_malformed(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    wire = _good_wire(proven)
    depth, bitmap, sibs, term = wire
    assert len(sibs) >= 2 and term
    h = b"\x11" * 32
    bad: list[Any] = [
        None, b"", 0, [], tuple(wire), wire[:3], [*wire, 0], {"depth": depth},
        [True, bitmap, sibs, term], [float(depth), bitmap, sibs, term], [-1, b"", [], []], [257, b"\xff" * 33, [], []],
        [str(depth), bitmap, sibs, term],
        [depth, bytearray(bitmap), sibs, term], [depth, bitmap + b"\x00", sibs, term], [depth, bitmap[:-1], sibs, term],
        [depth, list(bitmap), sibs, term], [depth, None, sibs, term],
        [depth, bitmap, tuple(sibs), term], [depth, bitmap, sibs[:-1], term], [depth, bitmap, [*sibs, h], term],
        [depth, bitmap, [sibs[0][:31], *sibs[1:]], term], [depth, bitmap, [sibs[0] + b"\x00", *sibs[1:]], term],
        [depth, bitmap, [ZERO_HASH, *sibs[1:]], term], [depth, bitmap, [bytearray(sibs[0]), *sibs[1:]], term],
        [depth, bitmap, [sibs[0].hex(), *sibs[1:]], term], [depth, bitmap, [h] * 300, term],
        [depth, bitmap, sibs, term[:1]], [depth, bitmap, sibs, [*term, h]], [depth, bitmap, sibs, None],
        [depth, bitmap, sibs, [term[0][:31], term[1]]], [depth, bitmap, sibs, [term[0], None]],
        [depth, bitmap, sibs, tuple(term)], [depth, bitmap, sibs, [None, None]],
        [0, b"", [], [h]], [0, b"\x00", [], []], [1, b"\x00", [], []], [1, b"\x40", [h], []],
        [8, b"\x01\x00", [h], []], [3, b"\x40", [h], []], [3, b"\x21", [h, h], []],
    ]
    for obj in bad:
        with pytest.raises(ValueError):
            StateProof.from_wire(obj)
    # Near misses that are well formed: the last sibling must be present (canonical form), padding zero.
    assert StateProof.from_wire([3, b"\x20", [h], []]).depth == 3
    assert StateProof.from_wire([3, b"\xa0", [h, h], []]).depth == 3
    assert StateProof.from_wire([256, b"\x00" * 31 + b"\x01", [h], [h, h]]).depth == 256


def test_verify_never_raises_on_junk(proven: tuple[Tree, dict[tuple[str, bytes], bytes]]) -> None:
    t, model = proven
    k = next(iter(model))
    good = t.tree.get_proof(t.root, *k)
    junk: list[Any] = [
        None, "proof", good.to_wire(),
        replace(good, depth=-5), replace(good, depth="3"), replace(good, depth=10**9), replace(good, bitmap=None),
        replace(good, bitmap="ff"), replace(good, siblings=None), replace(good, siblings=list(good.siblings)),
        replace(good, siblings=(None,) * len(good.siblings)), replace(good, siblings=(b"",) * len(good.siblings)),
        replace(good, leaf_path=b"short"), replace(good, leaf_value_hash=42), replace(good, leaf_path=123),
    ]
    for proof in junk:
        assert verify_state_proof(sm3, t.root, *k, model[k], proof) is False
    args: list[tuple[Any, ...]] = [
        (None, *k, model[k]), (t.root[:31], *k, model[k]), (t.root, 5, k[1], model[k]), (t.root, k[0], "s", model[k]),
        (t.root, *k, "value"), (t.root, *k, 7), (t.root, "n" * 300, k[1], None), (t.root, k[0], b"k" * 2000, None),
        (t.root, *k, b"v" * (MAX_VALUE_BYTES + 1)),
    ]
    for root, ns, key, value in args:
        assert verify_state_proof(sm3, root, ns, key, value, good) is False


def test_verifier_rejects_crafted_non_canonical_trees() -> None:
    """Defence in depth against a root that was not built by the honest algorithm (e.g. forged by a majority).

    In an honest tree a leaf always sits on its own path and no internal node has a lone child leaf, so these
    checks never fire there; against a crafted tree they stop a present key from being "proven" absent.
    """
    h = sha256
    key = ("kv", b"victim")
    path = compute_state_path(h, *key)
    first_bit = path[0] >> 7
    # A leaf of some other path on the *wrong* side of the root.
    other_path = next(p for p in (h(b"%d" % i) for i in range(64)) if p[0] >> 7 != first_bit)
    off_leaf = h(b"\x00" + other_path + h(b"x"))
    sibling = h(b"any subtree")
    root = h(b"\x01" + (sibling + off_leaf if first_bit else off_leaf + sibling))
    proof = StateProof(1, b"\x80", (sibling,), other_path, h(b"x"))
    assert not verify_state_proof(h, root, *key, None, proof)  # the leaf does not share the 1-bit prefix
    # Control: the same shape with an empty subtree on the victim's side does prove absence.
    empty_side_root = h(b"\x01" + (sibling + ZERO_HASH if first_bit else ZERO_HASH + sibling))
    assert verify_state_proof(h, empty_side_root, *key, None, StateProof(1, b"\x80", (sibling,), None, None))
    # A lone leaf under an internal node (should have been lifted): rejected by shape, before any hashing.
    leaf = h(b"\x00" + path + h(b"v"))
    lone_root = h(b"\x01" + (ZERO_HASH + leaf if first_bit else leaf + ZERO_HASH))
    lone = StateProof(1, b"\x00", (), path, h(b"v"))
    assert not verify_state_proof(h, lone_root, *key, b"v", lone)
    with pytest.raises(ValueError, match="deepest sibling"):
        StateProof.from_wire(lone.to_wire())
