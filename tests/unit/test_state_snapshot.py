"""State-sync chunks (qilian.state.snapshot): honest snapshots verify and rebuild exactly the tree a single
``apply_writes`` makes; every forgery — a changed byte, a missing, extra, foreign or repeated entry, a forged
chunk list — is refused with its reason."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from qilian.state import ZERO_HASH, MemoryNodeStore, StateTree, compute_state_path
from qilian.state.snapshot import (
    MAX_CHUNK_ENTRIES,
    ChunkInvalid,
    ChunkSpec,
    Entry,
    SnapshotInvalid,
    check_chunk,
    check_chunk_specs,
    compute_cover,
    compute_prefix_bytes,
    compute_top_nodes,
)

VERSION = 77
BUCKET_BITS = 6


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def make_state(n: int, big: int = 0) -> dict[tuple[str, bytes], bytes]:
    state = {("kv", f"key-{i}".encode()): f"value-{i}".encode() * (1 + i % 3) for i in range(n)}
    state.update({("sys:blob", f"b{i}".encode()): bytes([i]) * 300_000 for i in range(big)})
    return state


def make_snapshot(state: dict[tuple[str, bytes], bytes], target_entries: int = 16, target_bytes: int = 1 << 20,
                  ) -> tuple[bytes, list[ChunkSpec], list[list[Entry]], dict[bytes, bytes]]:
    """What an honest server offers: (root, specs, chunks' entries) — and the nodes of the whole tree made in one
    batch, the oracle of the receiver's store."""
    tree = StateTree(sha256, MemoryNodeStore())
    root, nodes = tree.apply_writes(ZERO_HASH, state, VERSION)
    store = MemoryNodeStore(nodes)
    tree = StateTree(sha256, store)
    items = sorted((int.from_bytes(compute_state_path(sha256, ns, k), "big"), ns, k, v) for (ns, k), v in state.items())
    shift = 256 - BUCKET_BITS
    counts, sizes = [0] * (1 << BUCKET_BITS), [0] * (1 << BUCKET_BITS)
    for p, ns, k, v in items:
        counts[p >> shift] += 1
        sizes[p >> shift] += len(ns) + len(k) + len(v)

    def bucket(b: int) -> list[tuple[int, int]]:
        return [(p, len(ns) + len(k) + len(v)) for p, ns, k, v in items if p >> shift == b]

    cover = compute_cover(BUCKET_BITS, counts, sizes, bucket, target_entries, target_bytes)
    specs, chunks = [], []
    for depth, prefix, count in cover:
        spec = ChunkSpec(depth, compute_prefix_bytes(prefix, depth), count, tree.get_subtree_hash(root, prefix, depth))
        lo, hi = spec.get_path_range()
        entries = [(ns, k, v) for p, ns, k, v in items if lo <= p < hi]
        assert len(entries) == count
        specs.append(spec)
        chunks.append(entries)
    return root, specs, chunks, nodes


Installed = tuple[bytes, dict[bytes, bytes], dict[tuple[str, bytes], bytes]]
Snap = tuple[bytes, list[ChunkSpec], list[list[Entry]], dict[bytes, bytes]]


def install(root: bytes, specs: list[ChunkSpec], chunks: list[list[Entry]]) -> Installed:
    check_chunk_specs(sha256, root, specs)
    nodes: dict[bytes, bytes] = {}
    values: dict[tuple[str, bytes], bytes] = {}
    refs = []
    for spec, entries in zip(specs, chunks, strict=True):
        v = check_chunk(sha256, spec, entries, VERSION)
        nodes.update(v.nodes)
        values.update(v.writes)
        refs.append(v.top_ref)
    top_root, top = compute_top_nodes(sha256, specs, refs, VERSION)
    nodes.update(top)
    return top_root, nodes, values


@pytest.mark.parametrize("n", [0, 1, 2, 3, 40, 500])
def test_honest_snapshot_rebuilds_the_exact_tree(n: int) -> None:
    state = make_state(n)
    root, specs, chunks, oracle = make_snapshot(state)
    assert all(s.count <= 16 for s in specs)
    got_root, nodes, values = install(root, specs, chunks)
    assert got_root == root
    assert values == state
    assert nodes == oracle  # no stray node, none missing: what apply_writes makes in one batch
    if n:
        assert StateTree(sha256, MemoryNodeStore(nodes)).check_tree(root) == n


def test_large_values_split_by_bytes_and_a_single_entry_always_fits() -> None:
    state = make_state(30, big=6)
    root, specs, chunks, oracle = make_snapshot(state, target_entries=1000, target_bytes=500_000)
    assert len(specs) > 2
    assert all(sum(len(ns) + len(k) + len(v) for ns, k, v in c) <= 500_000 or len(c) == 1 for c in chunks)
    got_root, nodes, _ = install(root, specs, chunks)
    assert got_root == root and nodes == oracle


@pytest.fixture(scope="module")
def snap() -> Snap:
    return make_snapshot(make_state(300))


def _busy(specs: list[ChunkSpec]) -> int:
    return next(i for i, s in enumerate(specs) if s.count >= 3)


def test_a_changed_value_byte_is_refused(snap: Snap) -> None:
    _, specs, chunks, _ = snap
    i = _busy(specs)
    ns, k, v = chunks[i][1]
    bad = list(chunks[i])
    bad[1] = (ns, k, bytes([v[0] ^ 1]) + v[1:])
    with pytest.raises(ChunkInvalid, match="subtree hash"):
        check_chunk(sha256, specs[i], bad, VERSION)
    check_chunk(sha256, specs[i], chunks[i], VERSION)  # the honest one passes


def test_a_missing_or_extra_entry_is_refused(snap: Snap) -> None:
    root, specs, chunks, _ = snap
    i = _busy(specs)
    with pytest.raises(ChunkInvalid, match="missing or extra"):
        check_chunk(sha256, specs[i], chunks[i][:-1], VERSION)
    with pytest.raises(ChunkInvalid, match="missing or extra"):
        check_chunk(sha256, specs[i], [*chunks[i], chunks[i][0]], VERSION)
    # a missing entry hidden behind a forged count: the root binds a count only as "0, 1 or more", but the
    # subtree hash binds the key set, so the chunk fails
    forged = list(specs)
    forged[i] = replace(specs[i], count=specs[i].count - 1)
    check_chunk_specs(sha256, root, forged)
    with pytest.raises(ChunkInvalid, match="subtree hash"):
        check_chunk(sha256, forged[i], chunks[i][:-1], VERSION)
    # a repeated entry in place of another
    dup = list(chunks[i])
    dup[1] = dup[0]
    with pytest.raises(ChunkInvalid, match="path order"):
        check_chunk(sha256, specs[i], dup, VERSION)


def test_an_entry_of_another_prefix_is_refused(snap: Snap) -> None:
    _, specs, chunks, _ = snap
    i = _busy(specs)
    j = next(j for j in range(len(specs)) if j != i and chunks[j])
    bad = list(chunks[i])
    bad[-1] = chunks[j][0]
    with pytest.raises(ChunkInvalid, match="outside the chunk's prefix"):
        check_chunk(sha256, specs[i], sorted(bad, key=lambda e: compute_state_path(sha256, e[0], e[1])), VERSION)


def test_entries_out_of_order_or_over_limits_are_refused(snap: Snap) -> None:
    _, specs, chunks, _ = snap
    i = _busy(specs)
    with pytest.raises(ChunkInvalid, match="path order"):
        check_chunk(sha256, specs[i], list(reversed(chunks[i])), VERSION)
    with pytest.raises(ChunkInvalid, match="over the limit"):
        check_chunk(sha256, specs[i], chunks[i] * (MAX_CHUNK_ENTRIES // len(chunks[i]) + 1), VERSION)
    _, k, v = chunks[i][0]
    with pytest.raises(ChunkInvalid, match="namespace"):
        check_chunk(sha256, specs[i], [("x" * 300, k, v), *chunks[i][1:]], VERSION)


def test_forged_chunk_lists_are_refused(snap: Snap) -> None:
    root, specs, chunks, _ = snap
    check_chunk_specs(sha256, root, specs)
    with pytest.raises(SnapshotInvalid, match="state root"):
        check_chunk_specs(sha256, bytes(32 - 1) + b"\x01", specs)
    i = _busy(specs)
    with pytest.raises(SnapshotInvalid, match="state root"):  # one subtree hash changed
        check_chunk_specs(sha256, root, [*specs[:i], replace(specs[i], subtree_hash=sha256(b"x")), *specs[i + 1:]])
    k = len(specs) // 2
    with pytest.raises(SnapshotInvalid, match="gap or an overlap"):  # a chunk left out
        check_chunk_specs(sha256, root, specs[:k] + specs[k + 1:])
    with pytest.raises(SnapshotInvalid, match="gap or an overlap"):  # a chunk twice
        check_chunk_specs(sha256, root, specs[:k + 1] + specs[k:])
    with pytest.raises(SnapshotInvalid, match="last path"):
        check_chunk_specs(sha256, root, specs[:-1])
    with pytest.raises(SnapshotInvalid, match="ZERO_HASH"):  # an empty spec claiming content
        check_chunk_specs(sha256, root, [replace(specs[i], count=0)])
    with pytest.raises(SnapshotInvalid, match="padding"):
        check_chunk_specs(sha256, root, [ChunkSpec.from_wire([1, b"\x7f", 0, ZERO_HASH]), *specs[1:]])
    # the whole state claimed as one (too large) chunk with the right root still needs its entries to match
    whole = ChunkSpec(0, b"", 300, root)
    check_chunk_specs(sha256, root, [whole])
    v = check_chunk(sha256, whole, [e for c in chunks for e in c], VERSION)
    assert v.top_ref[8:] == root
