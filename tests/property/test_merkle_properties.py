"""Properties of qilian.crypto.merkle against a straightforward recursive RFC 6962 implementation written here.

The reference follows RFC 6962 §2.1 literally (MTH, PATH, split at the largest power of two below n); the
verifier under test follows RFC 9162 §2.1.3.2. Beyond "every honest proof verifies", the forgery tests check that
the verifier answers exactly as the reference does for *any* claimed (index, size, path): a proof binds the leaf to
the root and fixes the shape of the leaf's path, and nothing more — see test_size_is_bound_only_through_the_shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qilian.crypto import merkle
from qilian.crypto.merkle import MerkleProof, compute_proof, compute_root, is_valid_proof
from qilian.types import codec

HashFn = Callable[[bytes], bytes]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


HASH_FNS = st.sampled_from([sha256, sm3])
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the reference: RFC 6962 §2.1, recursive -----------------------------------------------------------------


def split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class RefTree:
    """MTH and PATH of RFC 6962 over one leaf list, with subtree hashes memoised by range."""

    def __init__(self, h: HashFn, leaves: list[bytes]):
        self.h = h
        self.leaves = leaves
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return self.h(b"")
        if n == 1:
            return self.h(b"\x00" + self.leaves[lo])
        k = split(n)
        return self.h(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))

    def root(self) -> bytes:
        return self.mth(0, len(self.leaves))

    def path(self, m: int, lo: int = 0, hi: int | None = None) -> list[bytes]:
        """PATH(m, D[lo:hi]), leaf level first."""
        hi = len(self.leaves) if hi is None else hi
        n = hi - lo
        if n == 1:
            return []
        k = split(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]


def shape(m: int, n: int) -> list[bool]:
    """For leaf m of an n-leaf tree, leaf level first: is the sibling at each level on the right?"""
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*shape(m, k), True]
    return [*shape(m - k, n - k), False]


def ref_verify(h: HashFn, root: bytes, leaf: bytes, m: int, n: int, path: list[bytes] | tuple[bytes, ...]) -> bool:
    """Recompute the root along the RFC 6962 shape of (m, n); the reference answer for any claimed proof."""
    if not 0 <= m < n:
        return False
    directions = shape(m, n)
    if len(directions) != len(path):
        return False
    r = h(b"\x00" + leaf)
    for sibling_on_right, p in zip(directions, path, strict=True):
        r = h(b"\x01" + (r + p if sibling_on_right else p + r))
    return r == root


# -- strategies ------------------------------------------------------------------------------------------------

# Sizes are drawn first so that large trees (up to 300 leaves) are as common as small ones.
sizes = st.one_of(st.integers(0, 20), st.integers(21, 300), st.sampled_from([63, 64, 65, 255, 256, 257, 300]))
leaf_lists = sizes.flatmap(lambda n: st.lists(st.binary(max_size=40), min_size=n, max_size=n))
unique_leaf_lists = sizes.filter(bool).flatmap(
    lambda n: st.lists(st.binary(min_size=1, max_size=40), min_size=n, max_size=n, unique=True)
)
digests = st.binary(min_size=32, max_size=32)


def _indices(data: st.DataObject, n: int) -> list[int]:
    """All indices of a small tree; the ends and a few drawn ones of a large tree (proofs cost O(n) each)."""
    if n <= 40:
        return list(range(n))
    drawn = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6))
    return sorted({0, n - 1, split(n) - 1, split(n), *drawn} & set(range(n)))


# -- roots and honest proofs -------------------------------------------------------------------------------------


@SETTINGS
@given(HASH_FNS, leaf_lists)
def test_root_matches_reference(h: HashFn, leaves: list[bytes]) -> None:
    assert compute_root(h, leaves) == RefTree(h, leaves).root()


@pytest.mark.parametrize("h", [sha256, sm3])
def test_small_and_power_of_two_sizes_match_reference(h: HashFn) -> None:
    for n in [*range(0, 34), 63, 64, 65, 127, 128, 129, 255, 256, 257]:
        leaves = [i.to_bytes(2, "big") for i in range(n)]
        assert compute_root(h, leaves) == RefTree(h, leaves).root(), n


@pytest.mark.parametrize("h", [sha256, sm3])
def test_empty_and_single_leaf_trees(h: HashFn) -> None:
    assert compute_root(h, []) == h(b"")
    assert compute_root(h, [b"x"]) == h(b"\x00x") != h(b"x")
    proof = compute_proof(h, [b"x"], 0)
    assert proof == MerkleProof(0, 1, ())
    assert is_valid_proof(h, h(b"\x00x"), b"x", proof)
    with pytest.raises(IndexError):
        compute_proof(h, [], 0)
    for bad in (-1, 1):
        with pytest.raises(IndexError):
            compute_proof(h, [b"x"], bad)


@SETTINGS
@given(HASH_FNS, leaf_lists.filter(bool), st.data())
def test_every_proof_verifies_and_matches_reference_path(h: HashFn, leaves: list[bytes], data: st.DataObject) -> None:
    ref = RefTree(h, leaves)
    root = compute_root(h, leaves)
    for i in _indices(data, len(leaves)):
        proof = compute_proof(h, leaves, i)
        assert (proof.index, proof.size) == (i, len(leaves))
        assert list(proof.path) == ref.path(i)
        assert len(proof.path) == len(shape(i, len(leaves))) <= merkle.MAX_PROOF_DEPTH
        assert is_valid_proof(h, root, leaves[i], proof)
        assert ref_verify(h, root, leaves[i], i, len(leaves), proof.path)
        assert MerkleProof.from_wire(proof.to_wire()) == proof
        assert MerkleProof.from_wire(codec.decode(codec.encode(proof.to_wire()))) == proof


# -- forgeries ---------------------------------------------------------------------------------------------------


@SETTINGS
@given(HASH_FNS, unique_leaf_lists, st.data())
def test_forged_proofs_are_rejected(h: HashFn, leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    root = compute_root(h, leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = compute_proof(h, leaves, i)
    path = list(proof.path)
    leaf = leaves[i]

    def valid(leaf_data: bytes, index: int, size: int, p: list[bytes], against: bytes = root) -> bool:
        result = is_valid_proof(h, against, leaf_data, MerkleProof(index, size, tuple(p)))
        assert result == ref_verify(h, against, leaf_data, index, size, p)  # same answer as the reference, always
        return result

    assert valid(leaf, i, n, path)
    # wrong leaf: another leaf of the tree, or any other bytes
    other_leaf = data.draw(st.one_of(st.sampled_from(leaves), st.binary(max_size=40)))
    assume(other_leaf != leaf)
    assert not valid(other_leaf, i, n, path)
    assert not valid(h(b"\x00" + leaf), i, n, path)  # the leaf hash is not the leaf
    # wrong index, same size (unique leaves: no two leaves share a path shape and hashes)
    for j in {0, n - 1, data.draw(st.integers(0, n - 1))} - {i}:
        assert not valid(leaf, j, n, path)
    # out-of-range index or size
    for index, size in ((n, n), (-1, n), (i, 0), (i, i), (i, -5)):
        assert not valid(leaf, index, size, path)
    # wrong size: refused unless (i, size) has exactly the path shape of (i, n) (see the next test)
    for size in {n + 1, n - 1, 2 * n, data.draw(st.integers(1, 4 * n + 4)), data.draw(st.integers(1, 2**64))}:
        if size > i and size != n:
            assert valid(leaf, i, size, path) == (shape(i, size) == shape(i, n))
    # any claimed position: the verifier agrees with the reference (asserted inside valid())
    valid(leaf, data.draw(st.integers(-2, n + 2)), data.draw(st.integers(-2, 2 * n + 2)), path)
    # one bit of one path entry flipped
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = bytearray(path[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not valid(leaf, i, n, [*path[:k], bytes(flipped), *path[k + 1 :]])
        # an entry dropped, or duplicated in place
        assert not valid(leaf, i, n, path[:k] + path[k + 1 :])
        assert not valid(leaf, i, n, [*path[: k + 1], path[k], *path[k + 1 :]])
        # entries swapped
        if len(path) > 1 and k + 1 < len(path) and path[k] != path[k + 1]:
            assert not valid(leaf, i, n, [*path[:k], path[k + 1], path[k], *path[k + 2 :]])
    # an entry appended or prepended; truncations
    extra = data.draw(digests)
    assert not valid(leaf, i, n, [*path, extra])
    assert not valid(leaf, i, n, [extra, *path])
    for cut in range(len(path)):
        assert not valid(leaf, i, n, path[:cut])
    # a proof for this tree checked against another tree's root
    other = data.draw(st.one_of(leaf_lists, st.just(leaves[:-1]), st.just([*leaves[:i], b"", *leaves[i + 1 :]])))
    other_root = compute_root(h, other)
    assert valid(leaf, i, n, path, against=other_root) == (other_root == root)
    assert not valid(leaf, i, n, path, against=data.draw(digests.filter(lambda d: d != root)))


@SETTINGS
@given(HASH_FNS, unique_leaf_lists, st.data())
def test_proof_for_one_tree_fails_against_an_extended_tree(h: HashFn, leaves: list[bytes], data: st.DataObject) -> None:
    more = data.draw(st.lists(st.binary(max_size=40), min_size=1, max_size=20))
    bigger = leaves + more
    i = data.draw(st.integers(0, len(leaves) - 1))
    old = compute_proof(h, leaves, i)
    new = compute_proof(h, bigger, i)
    big_root = compute_root(h, bigger)
    assert is_valid_proof(h, big_root, leaves[i], new)
    assert old.path != new.path  # the root-level sibling always changes when leaves are appended
    assert not is_valid_proof(h, big_root, leaves[i], old)
    assert not is_valid_proof(h, big_root, leaves[i], MerkleProof(i, len(bigger), old.path))
    assert not is_valid_proof(h, compute_root(h, leaves), leaves[i], new)


def test_size_is_bound_only_through_the_shape() -> None:
    """RFC 9162 verification recomputes the root along the path's shape, so sizes with the same shape for the
    index pass: leaf 0 of 5 ([h1, h23, h4]) is also 'leaf 0 of 6, 7 or 8', and leaf 4 of 5 is 'leaf 2 of 3'.
    A verifier must therefore take the size from something it trusts (a header's tx_count)."""
    leaves = [bytes([x]) for x in b"abcde"]
    root = compute_root(sha256, leaves)
    p0 = compute_proof(sha256, leaves, 0)
    assert [s for s in range(1, 20) if is_valid_proof(sha256, root, b"a", MerkleProof(0, s, p0.path))] == [5, 6, 7, 8]
    p4 = compute_proof(sha256, leaves, 4)
    assert is_valid_proof(sha256, root, b"e", MerkleProof(2, 3, p4.path))
    assert not is_valid_proof(sha256, root, b"e", MerkleProof(4, 6, p4.path))


@pytest.mark.parametrize("h", [sha256, sm3])
def test_interior_node_cannot_pose_as_a_leaf(h: HashFn) -> None:
    """The 0x00/0x01 prefixes: the concatenation of two child hashes is not accepted as leaf data."""
    leaves = [b"a", b"b", b"c", b"d"]
    root = compute_root(h, leaves)
    lh = [h(b"\x00" + x) for x in leaves]
    n01, n23 = h(b"\x01" + lh[0] + lh[1]), h(b"\x01" + lh[2] + lh[3])
    assert root == h(b"\x01" + n01 + n23)
    assert not is_valid_proof(h, root, lh[0] + lh[1], MerkleProof(0, 2, (n23,)))
    assert not is_valid_proof(h, root, n01, MerkleProof(0, 2, (n23,)))


# -- MerkleProof.from_wire ---------------------------------------------------------------------------------------

H32 = bytes(32)


@pytest.mark.parametrize("wire", [
    None, 0, b"", "x", {}, (0, 1, []), [], [0], [0, 1], [0, 1, [], None], [0, 1, [], []],
    [True, 2, []], [0, True, []], [0.0, 1, []], [0, 1.0, []], ["0", 1, []], [None, 1, []], [0, b"\x01", []],
    [-1, 1, []], [1, 1, []], [5, 3, []], [0, 0, []], [0, -1, []],
    [0, 1, None], [0, 1, (H32,)], [0, 1, b""], [0, 1, {}], [0, 1, [H32] * 65],
    [0, 1, [b""]], [0, 1, [bytes(31)]], [0, 1, [bytes(33)]], [0, 1, ["00" * 32]], [0, 1, [bytearray(32)]],
    [0, 1, [H32, None]], [0, 1, [list(H32)]],
], ids=repr)
def test_from_wire_rejects_malformed_shapes(wire: Any) -> None:
    with pytest.raises(ValueError):
        MerkleProof.from_wire(wire)


def test_from_wire_accepts_the_edges() -> None:
    assert MerkleProof.from_wire([0, 1, []]) == MerkleProof(0, 1, ())
    assert MerkleProof.from_wire([2**64 - 2, 2**64 - 1, [H32] * 64]).path == (H32,) * 64


@SETTINGS
@given(st.integers(0, 2**64), st.integers(0, 2**64), st.lists(digests, max_size=70))
def test_from_wire_accepts_exactly_the_documented_shapes(index: int, size: int, path: list[bytes]) -> None:
    ok = index < size and len(path) <= merkle.MAX_PROOF_DEPTH
    if ok:
        assert MerkleProof.from_wire([index, size, path]) == MerkleProof(index, size, tuple(path))
    else:
        with pytest.raises(ValueError):
            MerkleProof.from_wire([index, size, path])
