"""Merkle trees over a block's transactions and receipts, with inclusion proofs a header-only client checks.

The tree is the one of RFC 6962/9162 (Certificate Transparency), with the chain suite's hash: leaf hash
``H(0x00 ‖ data)``, interior ``H(0x01 ‖ left ‖ right)``, split at the largest power of two below the leaf count,
and the empty tree hashing to ``H(b"")``. The 0x00/0x01 prefixes stop an interior node from being passed off as a
leaf (the second-preimage attack on naive Merkle trees); RFC 9162's verification algorithm also pins the tree
size, so a proof cannot be truncated or re-rooted at a subtree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

HashFn = Callable[[bytes], bytes]

MAX_PROOF_DEPTH: Final = 64
"""No tree has more than 2**64 leaves, so no valid proof is longer than this."""


def compute_leaf_hash(hash_fn: HashFn, data: bytes) -> bytes:
    """Hash of a leaf."""
    return hash_fn(b"\x00" + data)


def compute_node_hash(hash_fn: HashFn, left: bytes, right: bytes) -> bytes:
    """Hash of an interior node."""
    return hash_fn(b"\x01" + left + right)


def compute_root(hash_fn: HashFn, leaves: Sequence[bytes]) -> bytes:
    """The Merkle root of ``leaves`` (leaf data, not yet hashed)."""
    if not leaves:
        return hash_fn(b"")
    return compute_root_of_nodes(hash_fn, [hash_fn(b"\x00" + d) for d in leaves])


def compute_root_of_nodes(hash_fn: HashFn, nodes: Sequence[bytes]) -> bytes:
    """The root over one level of already-hashed nodes (at least one), paired bottom-up.

    Over leaf hashes this is the RFC 6962 root: bottom-up pairing, an odd last node carried up, gives the same
    tree as the RFC's recursive split. Over the roots of consecutive subtrees of ``2**k`` leaves each (the last
    one may hold fewer) it is the root of the whole tree as well: RFC 6962 splits ``n > 2**k`` leaves at the
    largest power of two below ``n``, a multiple of ``2**k``, so every split falls on a subtree boundary, and that
    power counted in subtrees is the largest power of two below the subtree count. This is what lets a caller
    hash chunks of a power-of-two size apart (in other processes) and still get the one root of the whole list.
    """
    if not nodes:
        raise ValueError("a level of a Merkle tree has at least one node")
    level = list(nodes)
    while len(level) > 1:
        nxt = [hash_fn(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Inclusion proof of leaf ``index`` in a tree of ``size`` leaves: sibling hashes from the bottom up."""

    index: int
    """Position of the leaf."""
    size: int
    """Number of leaves in the tree."""
    path: tuple[bytes, ...]
    """Sibling hashes, leaf level first."""

    def to_wire(self) -> list[Any]:
        """As a codec value ``[index, size, [hash, …]]``."""
        return [self.index, self.size, list(self.path)]

    @classmethod
    def from_wire(cls, obj: Any) -> MerkleProof:
        """Parse a proof from untrusted input; raises ValueError on a malformed shape."""
        if type(obj) is not list or len(obj) != 3:
            raise ValueError("Merkle proof must be [index, size, path]")
        index, size, path = obj
        if type(index) is not int or type(size) is not int or not 0 <= index < size:
            raise ValueError("Merkle proof index/size out of range")
        if type(path) is not list or len(path) > MAX_PROOF_DEPTH:
            raise ValueError("Merkle proof path must be a list of at most 64 hashes")
        if any(type(h) is not bytes or len(h) != 32 for h in path):
            raise ValueError("Merkle proof path entries must be 32-byte hashes")
        return cls(index, size, tuple(path))


def compute_proof(hash_fn: HashFn, leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of ``leaves[index]``."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaves)} leaves")
    level = [hash_fn(b"\x00" + d) for d in leaves]
    path: list[bytes] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        nxt = [hash_fn(b"\x01" + level[j] + level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i //= 2
    return MerkleProof(index, len(leaves), tuple(path))


def is_valid_proof(hash_fn: HashFn, root: bytes, leaf_data: bytes, proof: MerkleProof) -> bool:
    """True iff ``proof`` shows ``leaf_data`` at ``proof.index`` in a tree of ``proof.size`` leaves with ``root``.

    RFC 9162 §2.1.3.2: walking up, a node is a right child iff its index bit is 1 or it is the last node of its
    level; when it is the last node and a left child, it has no sibling at that level and is carried up.
    """
    index, size = proof.index, proof.size
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = hash_fn(b"\x00" + leaf_data)
    for p in proof.path:
        if sn == 0:
            return False  # longer than the tree is deep
        if fn & 1 or fn == sn:
            r = hash_fn(b"\x01" + p + r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_fn(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
