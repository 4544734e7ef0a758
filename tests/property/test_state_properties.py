"""Properties of qilian.state against a dict model and a naive recursive root written from the definition.

The root must be a function of the key set alone (order, batch split and history do not matter); reads and
proofs must agree with the model at every historical root; and no mutation of an honest proof may verify.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qilian.state import (
    EMPTY_ROOT,
    ZERO_HASH,
    MemoryNodeStore,
    StateProof,
    StateTree,
    compute_state_path,
    verify_state_proof,
)

HashFn = Callable[[bytes], bytes]
Key = tuple[str, bytes]
Writes = dict[Key, bytes | None]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


HASH_FNS = st.sampled_from([sha256, sm3])
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A small key space so that updates, deletes of present keys and re-inserts happen often.
KEYS = st.tuples(st.sampled_from(["kv", "存证", ""]), st.binary(max_size=2))
VALUES = st.binary(max_size=6)
WRITES = st.dictionaries(KEYS, st.none() | VALUES, max_size=40)
STATES = st.dictionaries(KEYS, VALUES, max_size=60)


def reference_root(hash_fn: HashFn, items: dict[bytes, bytes], depth: int = 0) -> bytes:
    if not items:
        return ZERO_HASH
    if len(items) == 1:
        ((path, value),) = items.items()
        return hash_fn(b"\x00" + path + hash_fn(value))
    left = {p: v for p, v in items.items() if not (p[depth // 8] >> (7 - depth % 8)) & 1}
    right = {p: v for p, v in items.items() if p not in left}
    return hash_fn(b"\x01" + reference_root(hash_fn, left, depth + 1) + reference_root(hash_fn, right, depth + 1))


def model_root(hash_fn: HashFn, model: dict[Key, bytes]) -> bytes:
    return reference_root(hash_fn, {compute_state_path(hash_fn, ns, k): v for (ns, k), v in model.items()})


def commit(tree: StateTree, store: MemoryNodeStore, root: bytes, writes: Writes) -> bytes:
    new_root, nodes = tree.apply_writes(root, writes)
    store.put_nodes(nodes)
    return new_root


def apply_model(model: dict[Key, bytes], writes: Writes) -> None:
    for k, v in writes.items():
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v


@SETTINGS
@given(HASH_FNS, STATES, st.randoms(use_true_random=False), st.lists(st.integers(0, 60), max_size=5))
def test_root_independent_of_order_and_split(hash_fn: HashFn, state: dict[Key, bytes], rnd: Any,
                                             cuts: list[int]) -> None:
    expected = model_root(hash_fn, state)
    store = MemoryNodeStore()
    tree = StateTree(hash_fn, store)
    assert commit(tree, store, EMPTY_ROOT, dict(state)) == expected
    items = list(state.items())
    rnd.shuffle(items)
    bounds = sorted({0, len(items), *(c for c in cuts if c < len(items))})
    root = EMPTY_ROOT
    for lo, hi in itertools.pairwise(bounds):
        root = commit(tree, store, root, dict(items[lo:hi]))
    assert root == expected
    assert tree.check_tree(root) == len(state)


@SETTINGS
@given(HASH_FNS, STATES, STATES, st.randoms(use_true_random=False))
def test_delete_restores_previous_root(hash_fn: HashFn, base: dict[Key, bytes], extra: dict[Key, bytes],
                                       rnd: Any) -> None:
    store = MemoryNodeStore()
    tree = StateTree(hash_fn, store)
    root0 = commit(tree, store, EMPTY_ROOT, dict(base))
    added = {k: v for k, v in extra.items() if k not in base}
    root1 = commit(tree, store, root0, dict(added))
    # Delete in a different grouping than the insert: one by one in a random order, or all at once.
    keys = list(added)
    rnd.shuffle(keys)
    root = root1
    for k in keys:
        root = commit(tree, store, root, {k: None})
    assert root == root0
    assert tree.apply_writes(root1, dict.fromkeys(added))[0] == root0


@SETTINGS
@given(HASH_FNS, st.lists(WRITES, min_size=1, max_size=6), st.lists(KEYS, max_size=10))
def test_reads_and_proofs_follow_the_model(hash_fn: HashFn, blocks: list[Writes], probes: list[Key]) -> None:
    store = MemoryNodeStore()
    tree = StateTree(hash_fn, store)
    root = EMPTY_ROOT
    model: dict[Key, bytes] = {}
    history: list[tuple[bytes, dict[Key, bytes]]] = [(root, {})]
    for writes in blocks:
        root = commit(tree, store, root, writes)
        apply_model(model, writes)
        assert root == model_root(hash_fn, model)
        history.append((root, dict(model)))
    # Every historical root still answers and proves, for its keys and for absent ones.
    for hroot, hmodel in history:
        for key in [*hmodel, *probes, ("kv", b"never-written")]:
            value = hmodel.get(key)
            assert tree.get_value(hroot, *key) == value
            proof = tree.get_proof(hroot, *key)
            assert StateProof.from_wire(proof.to_wire()) == proof
            assert verify_state_proof(hash_fn, hroot, *key, value, proof)
            assert not verify_state_proof(hash_fn, hroot, *key, (value or b"") + b"x", proof)
            if value is not None:
                assert not verify_state_proof(hash_fn, hroot, *key, None, proof)
            else:
                assert not verify_state_proof(hash_fn, hroot, *key, b"", proof)


def _mutate(wire: list[Any], data: st.DataObject) -> list[Any]:
    """One random local change to a proof's wire form."""
    depth, bitmap, sibs, term = wire
    sibs, term = list(sibs), list(term)
    choice = data.draw(st.sampled_from(["depth", "bitmap", "sibling", "drop", "add", "term", "term_swap"]))
    if choice == "depth":
        depth = data.draw(st.integers(0, 256).filter(lambda d: d != depth))
    elif choice == "bitmap" and bitmap:
        i = data.draw(st.integers(0, len(bitmap) * 8 - 1))
        bitmap = bytes(b ^ (0x80 >> (i % 8)) if n == i // 8 else b for n, b in enumerate(bitmap))
    elif choice == "sibling" and sibs:
        i = data.draw(st.integers(0, len(sibs) - 1))
        j = data.draw(st.integers(0, 31))
        sibs[i] = sibs[i][:j] + bytes([sibs[i][j] ^ data.draw(st.integers(1, 255))]) + sibs[i][j + 1:]
    elif choice == "drop" and sibs:
        del sibs[data.draw(st.integers(0, len(sibs) - 1))]
    elif choice == "add":
        sibs.insert(data.draw(st.integers(0, len(sibs))), data.draw(st.binary(min_size=32, max_size=32)))
    elif choice == "term" and term:
        i = data.draw(st.integers(0, 1))
        j = data.draw(st.integers(0, 31))
        term[i] = term[i][:j] + bytes([term[i][j] ^ data.draw(st.integers(1, 255))]) + term[i][j + 1:]
    else:
        term = [] if term else [data.draw(st.binary(min_size=32, max_size=32)) for _ in range(2)]
    return [depth, bitmap, sibs, term]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HASH_FNS, st.dictionaries(KEYS, VALUES, min_size=1, max_size=40), KEYS, st.data())
def test_mutated_proofs_never_verify(hash_fn: HashFn, state: dict[Key, bytes], probe: Key,
                                     data: st.DataObject) -> None:
    store = MemoryNodeStore()
    tree = StateTree(hash_fn, store)
    root = commit(tree, store, EMPTY_ROOT, dict(state))
    key = data.draw(st.sampled_from([*state, probe]))
    value = state.get(key)
    wire = tree.get_proof(root, *key).to_wire()
    forged = _mutate(wire, data)
    if forged == wire:
        return
    try:
        proof = StateProof.from_wire(forged)
    except ValueError:
        return
    assert not verify_state_proof(hash_fn, root, *key, value, proof)
    assert not verify_state_proof(hash_fn, root, *key, None if value is not None else b"", proof)


@SETTINGS
@given(HASH_FNS, st.dictionaries(KEYS, VALUES, min_size=2, max_size=40), st.data())
def test_proof_of_one_key_does_not_prove_another(hash_fn: HashFn, state: dict[Key, bytes],
                                                 data: st.DataObject) -> None:
    store = MemoryNodeStore()
    tree = StateTree(hash_fn, store)
    root = commit(tree, store, EMPTY_ROOT, dict(state))
    a, b = data.draw(st.lists(st.sampled_from(list(state)), min_size=2, max_size=2, unique=True))
    proof = tree.get_proof(root, *a)
    assert not verify_state_proof(hash_fn, root, *b, state[b], proof)
    assert not verify_state_proof(hash_fn, root, *b, state[a], proof)
    assert not verify_state_proof(hash_fn, root, *b, None, proof)


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | st.binary(max_size=40) | st.text(max_size=3),
                    lambda c: st.lists(c, max_size=5), max_leaves=30))
def test_from_wire_total_on_junk(obj: Any) -> None:
    """Any junk either parses into a well-formed proof or raises ValueError — never anything else."""
    try:
        proof = StateProof.from_wire(obj)
    except ValueError:
        return
    assert StateProof.from_wire(proof.to_wire()) == proof
    assert verify_state_proof(sha256, EMPTY_ROOT, "kv", b"k", None, proof) in (True, False)
