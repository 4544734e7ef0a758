"""The authenticated world state: a sparse Merkle tree whose 32-byte root goes into block headers.

Why this shape
--------------
A client that trusts only a header must be able to check "key K holds V" *and* "key K holds nothing" against the
state root. A sorted-leaf Merkle tree proves presence but needs neighbour proofs for absence; a sparse Merkle tree
over hashed keys proves both with one walk, and its root depends on the key set only (not on history), which is
what lets every node — and ``verify-ledger`` re-executing from genesis — reach the same root.

The tree
--------
* A key ``(namespace, key)`` lives at the 256-bit *path* ``hash(len(ns) ‖ ns ‖ key)`` (length on 2 bytes,
  big-endian; the key is last, so no length is needed for it). Bit 0 of the path is the most significant bit of
  byte 0; a 0 bit goes left.
* A binary tree of depth 256 over paths, with *leaf shortcuts*: a subtree holding exactly one key is that key's
  leaf, placed as high as possible; an empty subtree is ``ZERO_HASH`` (32 zero bytes, which no hash output is
  expected to equal); an internal node has at least two keys below it. That canonical form is what makes the root
  a function of the key set: inserting in any order, in any batch split, or inserting then deleting, yields the
  same tree.
* ``leaf hash = hash(0x00 ‖ path ‖ hash(value))`` and ``internal hash = hash(0x01 ‖ left ‖ right)``. Both
  pre-images are 65 bytes and differ in the first byte, so a leaf can never be passed off as an internal node or
  the reverse. A leaf's hash does not depend on its depth, so when a deletion lifts a lone leaf up the tree it keeps
  its hash and nothing below needs rewriting; the verifier instead checks that the leaf's path agrees with the
  proven key's path on every bit above the leaf.

Node store
----------
Nodes are stored under a *reference* ``version ‖ hash``: the 8-byte big-endian height of the block that created
the node, then its hash. A parent names its children by reference, so a walk from the root finds every node by key —
and all nodes created by one block sort together at the end of the store, which keeps a commit's writes local (a
key of random hashes would dirty one database page per node; see docs/benchmarks.md). Versions are never hashed:
the root is still a function of the key set only. Roots are named by hash (headers, proofs); each commit also
stores a pointer ``root hash → root reference``. The tree itself never overwrites or deletes: every historical
root whose nodes are stored stays readable and provable. A commit adds about ``log2(state size)`` nodes per written
key (less the shared upper levels) and makes as many old ones unreachable from the new root; so that a node can
keep only its recent states, :meth:`StateTree.compute_commit` also names those replaced nodes (``stale``) and the
replaced root. Which versions a node keeps, and the deleting, are the store's and the node's business
(:mod:`qilian.storage.store`, :mod:`qilian.node.pruning`): this module stays pure. A changed root is always a node
of the version that made it (a delete that lifts an older subtree to the root stores a copy of it under the new
version), so a root pointer written at version v always names a version-v reference — which is how the pruner tells
a pointer a later version rewrote (the same root hash can recur: a key set that returns to an earlier one) from the
one it recorded as replaced. Encodings:

* internal: ``tag ‖ left reference ‖ right reference ‖ leaf paths`` (81, 113 or 145 bytes; its hash is
  ``hash(0x01 ‖ left hash ‖ right hash)`` whatever the tag). The tag is odd: 0x01 names no path, 0x03 the left
  child's, 0x05 the right child's, 0x07 both (left first). A path given is that of the child, which is a leaf. A
  commit writes one for every leaf child it knows of (all of them in a tree only commits built; a state sync's
  upper nodes and a store of layout 2 have tag 0x01 only). Why: to insert a key a commit must know the path of
  the leaf its walk ends at (to split it) or that it replaces, and without the mark that was one engine read per
  written key, from a store that grows with the chain (docs/benchmarks.md, "Leaf paths in the parent"). The
  marks are a cache of the children's bytes, not part of the hash: a wrong one is corruption like a wrong
  reference, and :meth:`StateTree.check_tree` checks each against the child;
* leaf: ``0x00 ‖ path ‖ hash(value) ‖ value`` (65 + len(value) bytes: the first 65 bytes are the pre-image, and
  the value rides along so any historical root can answer ``get_value`` by walking the tree);
* root pointer: key = root hash (32 bytes), value = the root's reference (40 bytes).

Commits
-------
:meth:`StateTree.apply_writes` is pure: it reads old nodes and returns ``(new_root, new_nodes)``; the storage layer
persists ``new_nodes`` in the block's write transaction (:meth:`StateTree.compute_commit` returns the same plus the
replaced nodes and root, for a pruning store). The writes are sorted by path and applied in one descent,
so each affected node is read and rewritten once: a commit costs O(keys written × log(state size)), never O(state
size). Where a single key remains in a subtree (almost always below the top log2(batch) levels) a loop replaces the
recursion.

Integrity
---------
Nodes read from the store get a structural check (tag and length) and :meth:`StateTree.get_value` re-hashes the
value it returns against the leaf's value hash, so a corrupted store raises :class:`CorruptNodeError` instead of
serving wrong data. :meth:`StateTree.check_tree` re-hashes every node under a root and checks the canonical form —
an fsck for the state.

Deviation from the brief: none in the tree itself. One consequence worth stating: ``apply_writes`` raises
:class:`StateLimitError` on an over-limit write, and at commit time that would halt every node at once. Execution
must therefore enforce the same limits per transaction (:func:`validate_write`, or :class:`StateOverlay`, which
calls it on every write) so an over-limit write fails its transaction, not the block.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

HashFn = Callable[[bytes], bytes]
StateKey = tuple[str, bytes]

MAX_NAMESPACE_BYTES: Final = 255
"""Longest namespace, in UTF-8 bytes (contract or module names; 255 leaves room and fits the 2-byte prefix)."""
MAX_KEY_BYTES: Final = 1024
"""Longest key within a namespace."""
MAX_VALUE_BYTES: Final = 1024 * 1024
"""Largest value (1 MiB): bounds a leaf node, a proof's companion value and a block's write set."""
PATH_BITS: Final = 256
"""Depth of the tree: paths are 32-byte hashes."""
ZERO_HASH: Final = b"\x00" * 32
"""Hash of an empty subtree, and the root of the empty state."""
EMPTY_ROOT: Final = ZERO_HASH
"""Root of a state with no keys."""

_LEAF_TAG: Final = 0
_REF_LEN: Final = 40
"""A node reference: version (8 bytes, the block height that created the node) ‖ hash."""
ZERO_REF: Final = b"\x00" * _REF_LEN
"""Reference of the empty subtree."""
_NODE_LENS: Final = tuple({1: 81, 3: 113, 5: 113, 7: 145}.get(tag, 0) for tag in range(256))
"""An internal node's length by its tag byte (0 for a tag that is not an internal node's)."""
# _BIT[d] selects path bit d of a path held as an int; _HIGH[d] keeps bits 0..d-1 (the prefix above depth d).
_BIT: Final = tuple(1 << (255 - d) for d in range(PATH_BITS))
_HIGH: Final = tuple(((1 << 256) - 1) ^ ((1 << (256 - d)) - 1) for d in range(PATH_BITS))


class StateError(ValueError):
    """A state operation refused on its input."""


class StateLimitError(StateError):
    """A namespace, key or value over its limit, or of the wrong type."""


class MissingNodeError(LookupError):
    """The store lacks a node reachable from the given root (unknown root, or an incomplete store)."""


class CorruptNodeError(StateError):
    """A stored node is malformed or does not hash to the name it is stored under."""


class NodeStore(Protocol):
    """Read access to tree nodes by reference (and root pointers by root hash); the chain store implements it."""

    def get_node(self, node_hash: bytes) -> bytes | None:
        """The entry stored under a reference or root hash, or None."""
        ...


class MemoryNodeStore:
    """A dict-backed :class:`NodeStore` for tests, benchmarks and the simulator."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: Mapping[bytes, bytes] | None = None) -> None:
        self.nodes: dict[bytes, bytes] = dict(nodes) if nodes else {}

    def get_node(self, node_hash: bytes) -> bytes | None:
        """The encoded node stored under ``node_hash``, or None."""
        return self.nodes.get(node_hash)

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        """Add the nodes returned by :meth:`StateTree.apply_writes` (content-addressed, so order is irrelevant)."""
        self.nodes.update(nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def validate_write(namespace: str, key: bytes, value: bytes | None) -> None:
    """Raise :class:`StateLimitError` unless ``(namespace, key) := value`` is storable.

    Execution calls this per write so an over-limit write fails its transaction rather than the block commit.
    """
    compute_namespace_prefix(namespace)
    if type(key) is not bytes:
        raise StateLimitError(f"state key must be bytes, got {type(key).__name__}")
    if len(key) > MAX_KEY_BYTES:
        raise StateLimitError(f"state key of {len(key)} bytes is over the limit of {MAX_KEY_BYTES}")
    if value is not None:
        if type(value) is not bytes:
            raise StateLimitError(f"state value must be bytes or None, got {type(value).__name__}")
        if len(value) > MAX_VALUE_BYTES:
            raise StateLimitError(f"state value of {len(value)} bytes is over the limit of {MAX_VALUE_BYTES}")


def compute_namespace_prefix(namespace: str) -> bytes:
    """``len(ns_utf8)`` on 2 bytes big-endian ‖ ``ns_utf8``: the part of a path pre-image fixed by the namespace."""
    if type(namespace) is not str:
        raise StateLimitError(f"namespace must be text, got {type(namespace).__name__}")
    try:
        raw = namespace.encode("utf-8")
    except UnicodeEncodeError:
        raise StateLimitError("namespace is not valid Unicode text (lone surrogate)") from None
    if len(raw) > MAX_NAMESPACE_BYTES:
        raise StateLimitError(f"namespace of {len(raw)} UTF-8 bytes is over the limit of {MAX_NAMESPACE_BYTES}")
    return len(raw).to_bytes(2, "big") + raw


def compute_state_path(hash_fn: HashFn, namespace: str, key: bytes) -> bytes:
    """The 32-byte tree path of a key; raises :class:`StateLimitError` on an over-limit namespace or key."""
    prefix = compute_namespace_prefix(namespace)
    if type(key) is not bytes:
        raise StateLimitError(f"state key must be bytes, got {type(key).__name__}")
    if len(key) > MAX_KEY_BYTES:
        raise StateLimitError(f"state key of {len(key)} bytes is over the limit of {MAX_KEY_BYTES}")
    path = hash_fn(prefix + key)
    if len(path) != 32:
        raise StateError(f"hash function returned {len(path)} bytes, expected 32")
    return path


def compute_leaf_hash(hash_fn: HashFn, path: bytes, value_hash: bytes) -> bytes:
    """Hash of the leaf of ``path`` holding a value whose hash is ``value_hash``."""
    return hash_fn(b"\x00" + path + value_hash)


def compute_node_hash(hash_fn: HashFn, left: bytes, right: bytes) -> bytes:
    """Hash of an internal node."""
    return hash_fn(b"\x01" + left + right)


def _encode_node(left: bytes, right: bytes, lpath: bytes | None, rpath: bytes | None) -> bytes:
    """An internal node's stored bytes: tag ‖ left reference ‖ right reference, then the path of each child that is
    a leaf (where the writer knows it), the tag saying which (see "Encodings")."""
    if lpath is None:
        return b"\x01" + left + right if rpath is None else b"\x05" + left + right + rpath
    return b"\x03" + left + right + lpath if rpath is None else b"\x07" + left + right + lpath + rpath


def get_leaf_marks(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The leaf paths a stored internal node gives for its (left, right) children; None where it gives none (the
    child is internal, empty, or a leaf its writer did not mark)."""
    tag = data[0]
    if tag == 1:
        return None, None
    if tag == 3:
        return data[81:113], None
    if tag == 5:
        return None, data[81:113]
    return data[81:113], data[113:145]


@dataclass(frozen=True, slots=True)
class StateProof:
    """Proof that under a root a path ends in an empty subtree or in a given leaf.

    The verifier recomputes the root from the terminal upward; the proof carries the non-empty siblings only, a
    bitmap saying at which depths they sit, and the terminal. For a present key the terminal leaf is the key's
    own (path, value hash) — the value itself comes from the caller. Wire form (:meth:`to_wire`):
    ``[depth, bitmap, [sibling, …], terminal]`` with ``terminal`` = ``[]`` (empty subtree) or
    ``[leaf_path, leaf_value_hash]``.
    """

    depth: int
    """Depth of the terminal: number of internal nodes from the root down to it (0..256)."""
    bitmap: bytes
    """``ceil(depth / 8)`` bytes; bit d (MSB first) set iff the sibling at depth d is non-empty; padding zero."""
    siblings: tuple[bytes, ...]
    """The non-empty sibling hashes, root side first (one per set bitmap bit)."""
    leaf_path: bytes | None
    """Path of the terminal leaf, or None when the path ends in an empty subtree."""
    leaf_value_hash: bytes | None
    """Value hash of the terminal leaf (None iff ``leaf_path`` is None)."""

    def to_wire(self) -> list[Any]:
        """As a codec value (ints, bytes and lists only)."""
        terminal: list[bytes] = [] if self.leaf_path is None else [self.leaf_path, self.leaf_value_hash or b""]
        return [self.depth, self.bitmap, list(self.siblings), terminal]

    @classmethod
    def from_wire(cls, obj: Any) -> StateProof:
        """Parse a proof from untrusted input; raises ValueError on anything malformed or non-canonical."""
        if type(obj) is not list or len(obj) != 4:
            raise ValueError("state proof must be [depth, bitmap, siblings, terminal]")
        depth, bitmap, siblings, terminal = obj
        if type(siblings) is not list or len(siblings) > PATH_BITS:
            raise ValueError("state proof siblings must be a list of at most 256 hashes")
        if type(terminal) is not list or len(terminal) not in (0, 2):
            raise ValueError("state proof terminal must be [] or [leaf_path, leaf_value_hash]")
        leaf_path, leaf_value_hash = terminal or (None, None)
        if terminal and (type(leaf_path) is not bytes or type(leaf_value_hash) is not bytes):
            raise ValueError("state proof terminal leaf must be two byte strings")
        proof = cls(depth, bitmap, tuple(siblings), leaf_path, leaf_value_hash)
        problem = _get_shape_problem(proof)
        if problem:
            raise ValueError(f"state proof {problem}")
        return proof


def _get_shape_problem(proof: StateProof) -> str:
    """Why ``proof`` is malformed or non-canonical, or "" when its shape is fine (the root check is separate)."""
    depth, bitmap, siblings = proof.depth, proof.bitmap, proof.siblings
    if type(depth) is not int or not 0 <= depth <= PATH_BITS:
        return "depth must be an int in 0..256"
    if type(bitmap) is not bytes or len(bitmap) != (depth + 7) // 8:
        return f"bitmap must be {(depth + 7) // 8} bytes for depth {depth}"
    bits = int.from_bytes(bitmap, "big")
    pad = len(bitmap) * 8 - depth
    if bits & ((1 << pad) - 1):
        return "bitmap padding bits must be zero"
    if type(siblings) is not tuple or len(siblings) != bits.bit_count():
        return "must carry exactly one sibling per set bitmap bit"
    for s in siblings:
        if type(s) is not bytes or len(s) != 32 or s == ZERO_HASH:
            return "siblings must be non-empty 32-byte hashes"
    # Canonical form: the node just above the terminal has a non-empty other child (else it would not exist).
    if depth and not (bits >> pad) & 1:
        return "deepest sibling must be non-empty"
    leaf_path, leaf_value_hash = proof.leaf_path, proof.leaf_value_hash
    if leaf_path is None:
        if leaf_value_hash is not None:
            return "has a leaf value hash but no leaf path"
    elif (type(leaf_path) is not bytes or len(leaf_path) != 32 or type(leaf_value_hash) is not bytes
          or len(leaf_value_hash) != 32):
        return "terminal leaf must be a 32-byte path and a 32-byte value hash"
    return ""


def verify_state_proof(hash_fn: HashFn, root: bytes, namespace: str, key: bytes, value: bytes | None,
                       proof: StateProof) -> bool:
    """True iff ``proof`` shows that under ``root`` the key maps to ``value`` (None: the key is absent).

    Never raises on a malformed proof or argument: it answers False.
    """
    try:
        if not isinstance(proof, StateProof) or _get_shape_problem(proof):
            return False
        if type(root) is not bytes or len(root) != 32:
            return False
        if value is not None and (type(value) is not bytes or len(value) > MAX_VALUE_BYTES):
            return False
        path = compute_state_path(hash_fn, namespace, key)
        x = int.from_bytes(path, "big")
        depth = proof.depth
        leaf_path = proof.leaf_path
        if value is not None:
            if leaf_path != path or proof.leaf_value_hash != hash_fn(value):
                return False
            cur = hash_fn(b"\x00" + path + proof.leaf_value_hash)
        elif leaf_path is None:
            cur = ZERO_HASH
        else:
            # Another key's leaf ends this path: it must be a different key whose path shares our first `depth`
            # bits (otherwise the leaf would not sit on our path and proves nothing about us).
            if leaf_path == path or (x ^ int.from_bytes(leaf_path, "big")) >> (PATH_BITS - depth):
                return False
            cur = hash_fn(b"\x00" + leaf_path + (proof.leaf_value_hash or b""))
        bits = int.from_bytes(proof.bitmap, "big") >> (len(proof.bitmap) * 8 - depth)
        siblings = proof.siblings
        i = len(siblings)
        for d in range(depth - 1, -1, -1):
            if bits & 1:
                i -= 1
                sib = siblings[i]
            else:
                sib = ZERO_HASH
            bits >>= 1
            cur = hash_fn(b"\x01" + sib + cur) if x & _BIT[d] else hash_fn(b"\x01" + cur + sib)
        return i == 0 and cur == root
    except (TypeError, ValueError, IndexError, AttributeError):
        return False


@dataclass(frozen=True, slots=True)
class StateCommit:
    """What :meth:`StateTree.compute_commit` computed for one block's writes."""

    root: bytes
    """The new state root."""
    nodes: dict[bytes, bytes]
    """Entries to persist: each new node under its reference, and the new root's pointer."""
    stale: tuple[bytes, ...]
    """References of the old tree's nodes that the new tree no longer holds: unreachable from this version's root
    and every later one, so they may be deleted once no retained version is older than this one."""
    replaced_root: bytes | None
    """The old root's reference when the root changed (None: unchanged, or the old state was empty). Its pointer
    entry ``old root hash → this reference`` serves the old version only."""


class StateTree:
    """Reads, proofs and batch commits over a :class:`NodeStore`; holds no state of its own besides the two."""

    __slots__ = ("_get_node", "hash_fn", "store")

    def __init__(self, hash_fn: HashFn, store: NodeStore) -> None:
        self.hash_fn = hash_fn
        """The chain suite's 32-byte hash (SM3 or SHA-256)."""
        self.store = store
        """Where old nodes are read from; never written by this class."""
        # The in-memory store's dict lookup directly: one Python call less per node visited.
        self._get_node: Callable[[bytes], bytes | None] = (
            store.nodes.get if type(store) is MemoryNodeStore else store.get_node)

    def _read(self, ref: bytes) -> bytes:
        """A stored node by reference, structurally checked."""
        data = self._get_node(ref)
        if data is None:
            raise MissingNodeError(f"state node {ref[8:].hex()} (version {int.from_bytes(ref[:8], 'big')}) is not "
                                   f"in the store")
        if not data or (len(data) != _NODE_LENS[data[0]] if data[0] & 1 else data[0] != _LEAF_TAG or len(data) < 65):
            raise CorruptNodeError(f"state node {ref[8:].hex()} is malformed")
        return data

    def _root_ref(self, root: bytes) -> bytes:
        """The reference of a root, from its pointer entry."""
        _check_root(root)
        if root == ZERO_HASH:
            return ZERO_REF
        ref = self._get_node(root)
        if ref is None:
            raise MissingNodeError(f"state root {root.hex()} is not in the store")
        if len(ref) != _REF_LEN or ref[8:] != root:
            raise CorruptNodeError(f"state root pointer {root.hex()} is malformed")
        return ref

    def _node_hash(self, data: bytes) -> bytes:
        """Hash of a stored node (its children named by hash only: versions are not hashed)."""
        if data[0] & 1:
            return self.hash_fn(b"\x01" + data[9:41] + data[49:81])
        return self.hash_fn(data[:65])

    # -- reads -------------------------------------------------------------------------------------------------

    def get_value(self, root: bytes, namespace: str, key: bytes) -> bytes | None:
        """The value of a key under ``root`` (any historical root whose nodes are stored), or None."""
        path = compute_state_path(self.hash_fn, namespace, key)
        ref = self._root_ref(root)
        x = int.from_bytes(path, "big")
        read = self._read
        for d in range(PATH_BITS + 1):
            if ref == ZERO_REF:
                return None
            data = read(ref)
            if data[0] & 1:
                if d == PATH_BITS:
                    break
                ref = data[41:81] if x & _BIT[d] else data[1:41]
                continue
            if data[1:33] != path:
                return None
            value = data[65:]
            if self.hash_fn(value) != data[33:65]:
                raise CorruptNodeError(f"state leaf {ref[8:].hex()} holds a value that does not match its hash")
            return value
        raise CorruptNodeError("state tree deeper than 256 levels")

    def get_proof(self, root: bytes, namespace: str, key: bytes) -> StateProof:
        """Proof of the key's value, or of its absence, under ``root``."""
        path = compute_state_path(self.hash_fn, namespace, key)
        ref = self._root_ref(root)
        x = int.from_bytes(path, "big")
        read = self._read
        siblings: list[bytes] = []
        bits = 0
        depth = 0
        while ref != ZERO_REF:
            data = read(ref)
            if not data[0] & 1:
                return _make_proof(depth, bits, siblings, data[1:33], data[33:65])
            if depth == PATH_BITS:
                raise CorruptNodeError("state tree deeper than 256 levels")
            if x & _BIT[depth]:
                sib, ref = data[1:41], data[41:81]
            else:
                ref, sib = data[1:41], data[41:81]
            bits <<= 1
            if sib != ZERO_REF:
                bits |= 1
                siblings.append(sib[8:])
            depth += 1
        return _make_proof(depth, bits, siblings, None, None)

    def get_subtree_hash(self, root: bytes, prefix: int, depth: int) -> bytes:
        """Hash of the canonical subtree of the paths starting with ``prefix`` (``depth`` bits) under ``root``:
        ZERO_HASH when no key lies there, the leaf's hash when one does (a lone leaf may sit above the prefix's
        depth), else the node at that depth. What a state-sync chunk spec names (:mod:`qilian.state.snapshot`)."""
        ref = self._root_ref(root)
        read = self._read
        for d in range(depth):
            if ref == ZERO_REF:
                return ZERO_HASH
            data = read(ref)
            if not data[0] & 1:
                under = int.from_bytes(data[1:33], "big") >> (PATH_BITS - depth) == prefix
                return ref[8:] if under else ZERO_HASH
            ref = data[41:81] if (prefix >> (depth - 1 - d)) & 1 else data[1:41]
        return ZERO_HASH if ref == ZERO_REF else ref[8:]

    def iter_items(self, root: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(path, value)`` under ``root``, in path order (keys are hashed; the tree does not hold them)."""
        stack = [self._root_ref(root)]
        read = self._read
        while stack:
            ref = stack.pop()
            if ref == ZERO_REF:
                continue
            data = read(ref)
            if data[0] & 1:
                stack.append(data[41:81])
                stack.append(data[1:41])
            else:
                yield data[1:33], data[65:]

    def check_tree(self, root: bytes) -> int:
        """Re-hash every node under ``root`` and check the canonical form; returns the number of keys.

        Raises :class:`CorruptNodeError` (or :class:`MissingNodeError`) at the first problem: an fsck for the state,
        and the oracle the tests use for canonical form.
        """
        hash_fn = self.hash_fn
        read = self._read
        count = 0
        # (reference, depth, prefix of the path bits above it as an int)
        stack: list[tuple[bytes, int, int]] = [(self._root_ref(root), 0, 0)]
        while stack:
            ref, depth, prefix = stack.pop()
            if ref == ZERO_REF:
                continue
            data = read(ref)
            if self._node_hash(data) != ref[8:]:
                raise CorruptNodeError(f"state node {ref[8:].hex()} does not hash to its name")
            if data[0] & 1:
                left, right = data[1:41], data[41:81]
                if depth >= PATH_BITS:
                    raise CorruptNodeError("state tree deeper than 256 levels")
                for child, other in ((left, right), (right, left)):
                    if other == ZERO_REF and (child == ZERO_REF or read(child)[0] == _LEAF_TAG):
                        raise CorruptNodeError(f"state node {ref[8:].hex()} is not canonical (fewer than two keys)")
                for child, mark in zip((left, right), get_leaf_marks(data), strict=True):
                    if mark is not None and (child == ZERO_REF or read(child)[:33] != b"\x00" + mark):
                        raise CorruptNodeError(f"state node {ref[8:].hex()} marks a child as a leaf of a path it "
                                               f"does not have")
                stack.append((right, depth + 1, (prefix << 1) | 1))
                stack.append((left, depth + 1, prefix << 1))
            else:
                if hash_fn(data[65:]) != data[33:65]:
                    raise CorruptNodeError(f"state leaf {ref[8:].hex()} holds a value that does not match its hash")
                if depth and int.from_bytes(data[1:33], "big") >> (PATH_BITS - depth) != prefix:
                    raise CorruptNodeError(f"state leaf {ref[8:].hex()} sits off its path")
                count += 1
        return count

    # -- commits -----------------------------------------------------------------------------------------------

    def apply_writes(self, root: bytes, writes: Mapping[StateKey, bytes | None], version: int = 0,
                     ) -> tuple[bytes, dict[bytes, bytes]]:
        """Apply a block's net writes (None deletes) to the tree at ``root``.

        Returns the new root and the entries to persist: every new node under its reference ``version ‖ hash``,
        and a pointer ``new root → its reference``. ``version`` is the block height, so the nodes of one block sort
        together in the store. Pure: the store is only read; on any error nothing has been written anywhere.
        Raises :class:`StateLimitError` on an over-limit write and :class:`MissingNodeError` when ``root`` is
        unknown. :meth:`compute_commit` also names the old nodes the new tree no longer holds (for pruning).
        """
        commit = self.compute_commit(root, writes, version)
        return commit.root, commit.nodes

    def compute_commit(self, root: bytes, writes: Mapping[StateKey, bytes | None], version: int = 0,
                       ) -> StateCommit:
        """:meth:`apply_writes`, also reporting what the new tree replaced: the references of every node of the
        tree at ``root`` that the new tree no longer holds (each one was read on a rewritten path; a node the new
        tree keeps — an untouched sibling, a leaf that rises after a delete — is not reported) and the old root's
        reference when the root changed. Pure, like :meth:`apply_writes`; the store decides when to delete them.

        ``version`` must exceed the version of every node under ``root`` (the block height does) for the report
        to be exact: a reference names one node of one version, and a node replaced at version v can then never
        reappear in a later tree (later trees are built from the previous tree's references and new ones).
        """
        root_ref = self._root_ref(root)
        if not writes:
            return StateCommit(root, {}, (), None)
        if not 0 <= version < 1 << 64:
            raise StateError("version must fit in 8 bytes")
        vprefix = version.to_bytes(8, "big")
        hash_fn = self.hash_fn
        read = self._read
        prefixes: dict[str, bytes] = {}
        entries: list[tuple[bytes, bytes | None]] = []
        for (namespace, key), value in writes.items():
            prefix = prefixes.get(namespace) if type(namespace) is str else None
            if prefix is None:
                prefix = prefixes[namespace] = compute_namespace_prefix(namespace)
            if (type(key) is not bytes or len(key) > MAX_KEY_BYTES
                    or (value is not None and (type(value) is not bytes or len(value) > MAX_VALUE_BYTES))):
                validate_write(namespace, key, value)  # raises with the reason
            entries.append((hash_fn(prefix + key), value))
        entries.sort(key=_first)
        n = len(entries)
        paths = [e[0] for e in entries]
        ints = [int.from_bytes(p, "big") for p in paths]
        for i in range(1, n):
            if ints[i] == ints[i - 1]:
                raise StateError("two keys of one batch have the same path (hash collision)")
        # Per write: new leaf reference and encoding (None, None for a delete).
        lrefs: list[bytes | None] = []
        lencs: list[bytes | None] = []
        for path, value in entries:
            if value is None:
                lrefs.append(None)
                lencs.append(None)
            else:
                head = b"\x00" + path + hash_fn(value)
                lrefs.append(vprefix + hash_fn(head))
                lencs.append(head + value)
        new: dict[bytes, bytes] = {}
        stale: list[bytes] = []  # old references the new tree no longer holds
        bit_of, high_of, node_lens = _BIT, _HIGH, _NODE_LENS
        get_node = self._get_node

        def get_leaf_path(ref: bytes) -> bytes | None:
            """The path of ``ref`` when it is a leaf (new in this commit or stored), else None: a read, for the
            children no parent marked."""
            data = new.get(ref)
            if data is None:
                data = read(ref)
            return data[1:33] if data[0] == _LEAF_TAG else None

        def put_node(left: bytes, right: bytes, lpath: bytes | None, rpath: bytes | None) -> bytes:
            ref = vprefix + hash_fn(b"\x01" + left[8:] + right[8:])
            new[ref] = _encode_node(left, right, lpath, rpath)
            return ref

        def build(depth: int, bints: list[int], brefs: list[bytes], bencs: list[bytes | None],
                  bpaths: list[bytes], lo: int, hi: int) -> tuple[bytes, bytes | None]:
            """Canonical subtree at ``depth`` holding exactly the (non-empty, sorted) leaves ``lo..hi``: its
            reference, and its path when it is a lone leaf."""
            if hi - lo == 1:
                enc = bencs[lo]
                if enc is not None:
                    new[brefs[lo]] = enc
                return brefs[lo], bpaths[lo]
            # First bit where the leaves differ: a chain of one-child nodes from `depth` down to it.
            split_depth = PATH_BITS - (bints[lo] ^ bints[hi - 1]).bit_length()
            split = bisect_left(bints, (bints[lo] & high_of[split_depth]) | bit_of[split_depth], lo, hi)
            left, lpath = build(split_depth + 1, bints, brefs, bencs, bpaths, lo, split)
            right, rpath = build(split_depth + 1, bints, brefs, bencs, bpaths, split, hi)
            ref = put_node(left, right, lpath, rpath)
            first = bints[lo]
            for d in range(split_depth - 1, depth - 1, -1):
                ref = put_node(ZERO_REF, ref, None, None) if first & bit_of[d] else put_node(ref, ZERO_REF, None, None)
            return ref, None

        def rebuild_leaf_range(depth: int, lo: int, hi: int, old: bytes | None, old_path: bytes | None,
                               ) -> tuple[bytes, bytes | None]:
            """New subtree at ``depth`` for writes ``lo..hi`` over an empty subtree or the single leaf ``old`` (of
            path ``old_path``)."""
            bints: list[int] = []
            brefs: list[bytes] = []
            bencs: list[bytes | None] = []
            bpaths: list[bytes] = []
            old_int = -1
            if old is not None and old_path is not None:
                old_int = int.from_bytes(old_path, "big")
            for i in range(lo, hi):
                xi = ints[i]
                if old_int != -1 and old_int < xi:
                    bints.append(old_int)
                    brefs.append(old)  # type: ignore[arg-type]
                    bencs.append(None)
                    bpaths.append(old_path)  # type: ignore[arg-type]
                    old_int = -1
                elif xi == old_int:
                    old_int = -1
                    lr = lrefs[i]
                    if lr is not None and lr[8:] == old[8:]:  # type: ignore[index]
                        bints.append(xi)
                        brefs.append(old)  # type: ignore[arg-type]
                        bencs.append(None)
                        bpaths.append(paths[i])
                        continue
                    stale.append(old)  # type: ignore[arg-type]  # overwritten or deleted
                lr = lrefs[i]
                if lr is not None:
                    bints.append(xi)
                    brefs.append(lr)
                    bencs.append(lencs[i])
                    bpaths.append(paths[i])
            if old_int != -1:
                bints.append(old_int)
                brefs.append(old)  # type: ignore[arg-type]
                bencs.append(None)
                bpaths.append(old_path)  # type: ignore[arg-type]
            if not bints:
                return ZERO_REF, None
            return build(depth, bints, brefs, bencs, bpaths, 0, len(bints))

        def update_one(ref: bytes, depth: int, i: int, ref_path: bytes | None) -> tuple[bytes, bytes | None]:
            """Write ``i`` alone into the subtree ``ref`` at ``depth`` (a leaf of path ``ref_path`` when that is
            given): walk down, then rehash up (no recursion). Returns the new subtree and its path if a leaf."""
            x = ints[i]
            lr = lrefs[i]
            top = ref
            sibs: list[bytes] = []
            sib_paths: list[bytes | None] = []  # a sibling's path where its parent marked it a leaf
            walked: list[bytes] = []  # the internal nodes on the path: all replaced once the terminal changes
            d = depth
            leaf_path = ref_path  # the terminal leaf's path, when the walk ends at one
            while leaf_path is None and ref != ZERO_REF:
                node = get_node(ref)  # inlined _read: this loop is the hot path of a commit
                if not node or len(node) != node_lens[node[0]]:
                    # A leaf (reached because no parent marked it), or a missing or malformed node: read() raises.
                    leaf_path = (node if node and node[0] == _LEAF_TAG and len(node) >= 65 else read(ref))[1:33]
                    break
                walked.append(ref)
                tag = node[0]
                d += 1
                if x & bit_of[d - 1]:
                    sibs.append(node[1:41])
                    sib_paths.append(node[81:113] if tag & 2 else None)
                    ref = node[41:81]
                    if tag & 4:  # the parent says: a leaf, at this path (no read)
                        leaf_path = node[113:145] if tag == 7 else node[81:113]
                else:
                    sibs.append(node[41:81])
                    sib_paths.append((node[113:145] if tag == 7 else node[81:113]) if tag & 4 else None)
                    ref = node[1:41]
                    if tag & 2:
                        leaf_path = node[81:113]
            if ref == ZERO_REF:
                if lr is None:
                    return top, ref_path
                new[lr] = lencs[i]  # type: ignore[assignment]
                cur, cur_path = lr, paths[i]
            elif leaf_path == paths[i]:
                if lr is None:
                    cur, cur_path = ZERO_REF, None
                elif lr[8:] == ref[8:]:
                    return top, ref_path
                else:
                    new[lr] = lencs[i]  # type: ignore[assignment]
                    cur, cur_path = lr, paths[i]
                stale.append(ref)  # the key's old leaf: overwritten or deleted
            else:
                if lr is None:
                    return top, ref_path
                new[lr] = lencs[i]  # type: ignore[assignment]
                split_depth = PATH_BITS - (x ^ int.from_bytes(leaf_path, "big")).bit_length()  # type: ignore[arg-type]
                if x & bit_of[split_depth]:
                    cur = put_node(ref, lr, leaf_path, paths[i])
                else:
                    cur = put_node(lr, ref, paths[i], leaf_path)
                for k in range(split_depth - 1, d - 1, -1):
                    cur = put_node(ZERO_REF, cur, None, None) if x & bit_of[k] else put_node(cur, ZERO_REF, None, None)
                cur_path = None
            stale.extend(walked)
            for k in range(d - 1, depth - 1, -1):
                s = sibs[k - depth]
                s_path = sib_paths[k - depth]
                if s == ZERO_REF:
                    if cur_path is not None or cur == ZERO_REF:
                        continue  # a lone leaf (or nothing) rises past a node that would have one key
                elif cur == ZERO_REF:
                    if s_path is None:
                        s_path = get_leaf_path(s)
                    if s_path is not None:
                        cur, cur_path = s, s_path  # the sibling is now alone: a leaf rises
                        continue
                if x & bit_of[k]:
                    h = hash_fn(b"\x01" + s[8:] + cur[8:])
                    enc = _encode_node(s, cur, s_path, cur_path)
                else:
                    h = hash_fn(b"\x01" + cur[8:] + s[8:])
                    enc = _encode_node(cur, s, cur_path, s_path)
                cur = vprefix + h
                new[cur] = enc
                cur_path = None
            return cur, cur_path

        def update(ref: bytes, depth: int, lo: int, hi: int, ref_path: bytes | None,
                   ) -> tuple[bytes, bytes | None]:
            """Writes ``lo..hi`` (sorted, sharing the path prefix above ``depth``) into subtree ``ref`` (a leaf of
            path ``ref_path`` when that is given). Returns the new subtree and, when it is a leaf, its path (None
            also where that is not known without a read)."""
            if hi - lo == 1:
                return update_one(ref, depth, lo, ref_path)
            if ref == ZERO_REF:
                return rebuild_leaf_range(depth, lo, hi, None, None)
            if ref_path is not None:
                return rebuild_leaf_range(depth, lo, hi, ref, ref_path)
            data = read(ref)
            if data[0] == _LEAF_TAG:
                return rebuild_leaf_range(depth, lo, hi, ref, data[1:33])
            left, right = data[1:41], data[41:81]
            lmark, rmark = get_leaf_marks(data)
            split = bisect_left(ints, (ints[lo] & high_of[depth]) | bit_of[depth], lo, hi)
            new_left, lpath = update(left, depth + 1, lo, split, lmark) if split > lo else (left, lmark)
            new_right, rpath = update(right, depth + 1, split, hi, rmark) if hi > split else (right, rmark)
            if new_left == left and new_right == right:
                return ref, None
            stale.append(ref)  # rehashed or collapsed away
            if new_right == ZERO_REF:
                if new_left == ZERO_REF:
                    return ZERO_REF, None
                if lpath is None:
                    lpath = get_leaf_path(new_left)
                if lpath is not None:
                    return new_left, lpath
            elif new_left == ZERO_REF:
                if rpath is None:
                    rpath = get_leaf_path(new_right)
                if rpath is not None:
                    return new_right, rpath
            return put_node(new_left, new_right, lpath, rpath), None

        new_ref = update(root_ref, 0, 0, n, None)[0]
        if new_ref == root_ref:
            return StateCommit(root, {}, (), None)
        replaced_root = None if root_ref == ZERO_REF else root_ref
        if new_ref != ZERO_REF and new_ref[:8] != vprefix:
            # A delete lifted an older subtree to the root: store a copy of it under this version, so that a
            # changed root is always a node of the version that made it. A root pointer written at version v then
            # always holds a reference of version v, and the pruner can tell a pointer a later version rewrote
            # (even to the same root hash) from the one it recorded as replaced (see qilian.storage.store).
            data = new.get(new_ref)
            lifted = vprefix + new_ref[8:]
            new[lifted] = data if data is not None else read(new_ref)
            stale.append(new_ref)
            new_ref = lifted
        if new:
            stale = [r for r in stale if r not in new]  # a reference both old and new: only with a reused version
        if new_ref == ZERO_REF:
            return StateCommit(ZERO_HASH, new, tuple(stale), replaced_root)
        new[new_ref[8:]] = new_ref  # the root pointer: roots are named by hash in headers and proofs
        return StateCommit(new_ref[8:], new, tuple(stale), replaced_root)


def _first(entry: tuple[bytes, bytes | None]) -> bytes:
    return entry[0]


def _check_root(root: bytes) -> None:
    if type(root) is not bytes or len(root) != 32:
        raise StateError("state root must be 32 bytes")


def _make_proof(depth: int, bits: int, siblings: list[bytes], leaf_path: bytes | None,
                leaf_value_hash: bytes | None) -> StateProof:
    nbytes = (depth + 7) // 8
    bitmap = (bits << (nbytes * 8 - depth)).to_bytes(nbytes, "big")
    return StateProof(depth, bitmap, tuple(siblings), leaf_path, leaf_value_hash)


class StateOverlay:
    """Buffered writes over a read function, for execution: reads see the buffer first, then the base state.

    Every write is checked against the limits (:func:`validate_write`) when it is made, so an over-limit write
    fails the call that made it. :meth:`get_writes` hands the net writes to :meth:`StateTree.apply_writes` in a
    fixed (namespace, key) order, so iterating them is deterministic whatever order execution wrote them in.
    """

    __slots__ = ("_read", "_writes")

    def __init__(self, read: Callable[[str, bytes], bytes | None]) -> None:
        self._read = read
        self._writes: dict[StateKey, bytes | None] = {}

    def get_value(self, namespace: str, key: bytes) -> bytes | None:
        """The value as execution sees it: the buffered write if any, else the base state's."""
        k = (namespace, key)
        if k in self._writes:
            return self._writes[k]
        return self._read(namespace, key)

    def apply_write(self, namespace: str, key: bytes, value: bytes | None) -> None:
        """Buffer a write (None deletes); raises :class:`StateLimitError` when over a limit."""
        validate_write(namespace, key, value)
        self._writes[(namespace, key)] = value

    def get_writes(self) -> dict[StateKey, bytes | None]:
        """The net writes, sorted by (namespace, key)."""
        return dict(sorted(self._writes.items(), key=_first_key))

    def __len__(self) -> int:
        return len(self._writes)


def _first_key(item: tuple[StateKey, bytes | None]) -> StateKey:
    return item[0]
