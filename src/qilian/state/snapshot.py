"""State-sync snapshots of the state tree: the chunk list a server offers, and the checks a joining node runs on it.

A joining node that trusts a state root (from a header it verified) fetches the state in *chunks* and must be able
to refuse a forged chunk the moment it arrives, so each chunk is proven on its own:

* The path space is cut into aligned **prefixes** (a prefix of ``depth`` bits covers every path that starts with
  it). The cut is a complete, disjoint cover of the space, listed in path order — equivalently, the leaves of a
  binary tree whose root is the empty prefix. Each :class:`ChunkSpec` names its prefix, how many keys lie under it
  and the hash of the canonical subtree rooted there (:func:`compute_subtree_hash`'s definition: ``ZERO_HASH``
  for none, the key's leaf hash for one — a lone leaf keeps its hash whatever depth it sits at — and otherwise the
  internal node at the prefix's depth, which may be a chain of one-child nodes down to the first bit where the
  keys differ).
* :func:`check_chunk_specs` recomputes the tree's top from the specs alone — siblings merge by the tree's own
  canonical rules (an empty pair stays empty, a lone leaf rises, anything else is an internal node) — and the
  result must equal the trusted root. The rule for a merge needs to know whether a side holds 0, 1 or more keys,
  which is why a spec carries its count. (The root binds a count only as "none, one or more"; the exact count is
  bound by the chunk check below, as the subtree hash commits to the key set.)
* :func:`check_chunk` takes one chunk's ``(namespace, key, value)`` entries (the tree does not hold keys, only
  their hashed paths, and the node's flat state table is keyed by namespace and key — so entries travel as
  triples and the receiver computes every path itself), checks them against their spec — count, order, every path
  under the prefix — and rebuilds the subtree with :meth:`StateTree.apply_writes`: the rebuilt subtree's hash
  must equal the spec's. Since the specs were already tied to the root, a chunk that passes holds exactly the
  keys and values of the trusted state under its prefix (a different set would need a hash collision).
* :func:`compute_top_nodes` then stores the top of the tree over the verified subtrees, so the node's store holds
  exactly the nodes :meth:`StateTree.apply_writes` would have made for the whole state in one batch.

Limits (every one refused with a reason when exceeded): MAX_CHUNKS per snapshot, MAX_CHUNK_ENTRIES and
MAX_CHUNK_BYTES per chunk. A server aims well below them (CHUNK_TARGET_ENTRIES, CHUNK_TARGET_BYTES) so that a
chunk is a few hundred milliseconds of work at either end and one bad chunk costs little to refetch; a single
entry (at most 255 + 1,024 bytes of name and key and a 1 MiB value) always fits a chunk alone.

Pure code: no IO; the server's scan of its store and the receiver's writes live in :mod:`qilian.node.statesync`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from qilian.state.tree import (
    MAX_VALUE_BYTES,
    PATH_BITS,
    ZERO_HASH,
    ZERO_REF,
    HashFn,
    MemoryNodeStore,
    StateError,
    StateKey,
    StateLimitError,
    StateTree,
    compute_state_path,
)
from qilian.types.struct import Bytes, Kind, UInt, Wire

MAX_CHUNKS: Final = 16_384
"""Most chunks in one snapshot (a receiver refuses a manifest with more): with MAX_CHUNK_ENTRIES each, a state of
up to 268 M keys; the chunk list then takes about 1.3 MB of the manifest."""
MAX_CHUNK_ENTRIES: Final = 16_384
"""Most entries a receiver accepts in one chunk."""
MAX_CHUNK_BYTES: Final = 8 * 1024 * 1024
"""Most bytes (namespace + key + value of every entry) a receiver accepts in one chunk; below the P2P frame limit
(16 MiB) with room for the encoding's overhead."""
CHUNK_TARGET_ENTRIES: Final = 4096
"""A server splits a prefix holding more entries than this (a receiver verifies ~4k entries in well under a
second here)."""
CHUNK_TARGET_BYTES: Final = 1024 * 1024
"""A server splits a prefix holding more bytes than this, unless it holds a single entry (which may be up to
MAX_VALUE_BYTES and a little more)."""
MAX_ENTRY_BYTES: Final = 255 + 1024 + MAX_VALUE_BYTES
"""Largest single entry (namespace, key, value): it must fit a chunk on its own."""

assert MAX_ENTRY_BYTES <= CHUNK_TARGET_BYTES + 2 * 1024 <= MAX_CHUNK_BYTES
assert CHUNK_TARGET_ENTRIES <= MAX_CHUNK_ENTRIES

Entry = tuple[str, bytes, bytes]
"""One state entry as a chunk carries it: (namespace, key, value)."""


class SnapshotInvalid(StateError):
    """A snapshot's chunk list that does not prove the trusted root (or breaks a limit); the message says how."""


class ChunkInvalid(StateError):
    """A chunk that does not match its spec (or breaks a limit); the message says how."""


@dataclass(frozen=True, slots=True)
class ChunkSpec(Wire):
    """One prefix of a snapshot's cover of the path space: what its chunk must hold, as the server's tree says.

    Wire form: ``[depth, prefix, count, subtree_hash]`` (the P2P manifest carries a list of them); the decoder
    checks types and sizes, :func:`get_spec_problem` the rest."""

    depth: int
    """Length of the prefix in bits (0..256; 0: the whole space)."""
    prefix: bytes
    """The prefix bits, most significant first: ``ceil(depth / 8)`` bytes whose padding bits are zero."""
    count: int
    """Number of keys whose path starts with the prefix."""
    subtree_hash: bytes
    """Hash of the canonical subtree rooted at the prefix (ZERO_HASH iff ``count`` is 0)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), Bytes(max_size=32), UInt(), Bytes(size=32))

    def get_prefix_int(self) -> int:
        """The prefix as an integer of ``depth`` bits."""
        return int.from_bytes(self.prefix, "big") >> (len(self.prefix) * 8 - self.depth)

    def get_path_range(self) -> tuple[int, int]:
        """[first, end) of the paths (as 256-bit integers) under the prefix."""
        shift = PATH_BITS - self.depth
        first = self.get_prefix_int() << shift
        return first, first + (1 << shift)


def compute_prefix_bytes(prefix: int, depth: int) -> bytes:
    """``prefix`` (``depth`` bits) as the bytes a :class:`ChunkSpec` carries: MSB first, zero padding."""
    nbytes = (depth + 7) // 8
    return (prefix << (nbytes * 8 - depth)).to_bytes(nbytes, "big") if depth else b""


def get_spec_problem(spec: ChunkSpec) -> str:
    """Why ``spec`` is malformed, or "" (whether it proves anything is :func:`check_chunk_specs`'s call)."""
    depth, prefix, count, h = spec.depth, spec.prefix, spec.count, spec.subtree_hash
    if type(depth) is not int or not 0 <= depth <= PATH_BITS:
        return "depth must be an int in 0..256"
    if type(prefix) is not bytes or len(prefix) != (depth + 7) // 8:
        return f"prefix must be {(depth + 7) // 8} bytes for depth {depth}"
    if int.from_bytes(prefix, "big") & ((1 << (len(prefix) * 8 - depth)) - 1):
        return "prefix padding bits must be zero"
    if type(count) is not int or not 0 <= count <= MAX_CHUNK_ENTRIES:
        return f"count must be an int in 0..{MAX_CHUNK_ENTRIES}"
    if type(h) is not bytes or len(h) != 32:
        return "subtree hash must be 32 bytes"
    if (count == 0) != (h == ZERO_HASH):
        return "subtree hash must be ZERO_HASH exactly when the count is 0"
    return ""


def compute_merged(hash_fn: HashFn, left: tuple[int, bytes], right: tuple[int, bytes]) -> tuple[int, bytes]:
    """(count, hash) of a subtree from its two halves', by the tree's canonical form: no keys — empty; one key —
    its leaf, lifted (a leaf's hash does not depend on its depth); more — an internal node."""
    count = left[0] + right[0]
    if count == 0:
        return 0, ZERO_HASH
    if count == 1:
        return 1, left[1] if left[0] else right[1]
    return count, hash_fn(b"\x01" + left[1] + right[1])


def check_chunk_specs(hash_fn: HashFn, state_root: bytes, specs: Sequence[ChunkSpec]) -> None:
    """Raise SnapshotInvalid unless ``specs`` is a complete, disjoint cover of the path space in path order whose
    subtree hashes and counts recompute ``state_root`` (see the module docstring)."""
    if not 1 <= len(specs) <= MAX_CHUNKS:
        raise SnapshotInvalid(f"a snapshot has 1..{MAX_CHUNKS} chunks, this one {len(specs)}")
    # Stack of (depth, prefix, count, hash) of subtrees not yet merged with their sibling.
    stack: list[tuple[int, int, int, bytes]] = []
    expected = 0  # the first path the next spec must start at
    for i, spec in enumerate(specs):
        problem = get_spec_problem(spec)
        if problem:
            raise SnapshotInvalid(f"chunk {i}: {problem}")
        first, end = spec.get_path_range()
        if first != expected:
            raise SnapshotInvalid(f"chunk {i} does not start where chunk {i - 1} ends (a gap or an overlap)"
                                  if i else "chunk 0 does not start at the first path")
        expected = end
        depth, prefix, count, h = spec.depth, spec.get_prefix_int(), spec.count, spec.subtree_hash
        while stack and stack[-1][0] == depth and depth > 0 and prefix & 1:
            _, lp, lc, lh = stack.pop()
            if lp != prefix - 1:
                raise SnapshotInvalid(f"chunk {i} does not close a subtree of the cover")
            count, h = compute_merged(hash_fn, (lc, lh), (count, h))
            depth, prefix = depth - 1, prefix >> 1
        stack.append((depth, prefix, count, h))
    if expected != 1 << PATH_BITS:
        raise SnapshotInvalid("the chunks do not reach the last path")
    if len(stack) != 1 or stack[0][0] != 0:
        raise SnapshotInvalid("the chunks do not form a binary cover of the path space")
    if stack[0][3] != state_root:
        raise SnapshotInvalid("the chunks' subtree hashes do not recompute the trusted state root")


@dataclass(frozen=True, slots=True)
class VerifiedChunk:
    """A chunk that matched its spec: what to store."""

    spec: ChunkSpec
    """The spec it matched."""
    writes: dict[StateKey, bytes]
    """Its entries as state writes, in path order (for the flat value table)."""
    nodes: dict[bytes, bytes]
    """The tree nodes of its subtree under their references (``version ‖ hash``), as the full tree holds them."""
    top_ref: bytes
    """Reference of the subtree's root (ZERO_REF when empty; a leaf's when it holds one key)."""


def check_chunk(hash_fn: HashFn, spec: ChunkSpec, entries: Sequence[Entry], version: int) -> VerifiedChunk:
    """Raise ChunkInvalid unless ``entries`` are exactly the keys and values under ``spec``'s prefix: within the
    limits, in strictly increasing path order, every path under the prefix, as many as the spec counts, and
    rebuilding to the spec's subtree hash. Returns the chunk's writes and its subtree's nodes (made at ``version``,
    the snapshot's height)."""
    n = len(entries)
    if n > MAX_CHUNK_ENTRIES:
        raise ChunkInvalid(f"chunk holds {n} entries, over the limit of {MAX_CHUNK_ENTRIES}")
    if n != spec.count:
        raise ChunkInvalid(f"chunk holds {n} entries; its spec counts {spec.count} (an entry missing or extra)")
    first, end = spec.get_path_range()
    size = 0
    last = -1
    writes: dict[StateKey, bytes] = {}
    for i, entry in enumerate(entries):
        if type(entry) is not tuple or len(entry) != 3:
            raise ChunkInvalid(f"entry {i} is not (namespace, key, value)")
        namespace, key, value = entry
        if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
            raise ChunkInvalid(f"entry {i}: value must be bytes of at most {MAX_VALUE_BYTES}")
        try:
            path = int.from_bytes(compute_state_path(hash_fn, namespace, key), "big")
        except StateLimitError as exc:
            raise ChunkInvalid(f"entry {i}: {exc}") from None
        if not first <= path < end:
            raise ChunkInvalid(f"entry {i} ({namespace!r}, {key.hex()[:32]}) lies outside the chunk's prefix")
        if path <= last:
            raise ChunkInvalid(f"entry {i} is not after entry {i - 1} in path order (out of order or repeated)")
        last = path
        size += len(namespace.encode()) + len(key) + len(value)
        if size > MAX_CHUNK_BYTES:
            raise ChunkInvalid(f"chunk holds more than {MAX_CHUNK_BYTES} bytes")
        writes[(namespace, key)] = value
    if not n:
        if spec.subtree_hash != ZERO_HASH:
            raise ChunkInvalid("chunk is empty but its spec names a non-empty subtree")
        return VerifiedChunk(spec, writes, {}, ZERO_REF)
    tree = StateTree(hash_fn, MemoryNodeStore())
    root, nodes = tree.apply_writes(ZERO_HASH, writes, version)
    nodes.pop(root, None)  # the root pointer of this partial tree
    ref = version.to_bytes(8, "big") + root
    # The partial tree holds only this prefix's keys: above the prefix's depth it is a chain of one-child nodes
    # (none when a lone leaf is the root). Walk it down to the subtree and drop it.
    bits = spec.get_prefix_int()
    for d in range(spec.depth):
        data = nodes[ref]
        if not data[0] & 1:
            break  # a lone leaf: it is the subtree
        left, right = data[1:41], data[41:81]
        bit = (bits >> (spec.depth - 1 - d)) & 1
        child, other = (right, left) if bit else (left, right)
        if other != ZERO_REF:  # cannot happen: every path was checked to lie under the prefix
            raise ChunkInvalid("chunk entries leave the prefix")
        del nodes[ref]
        ref = child
    if ref[8:] != spec.subtree_hash:
        raise ChunkInvalid("chunk does not rebuild to its spec's subtree hash (a value or key differs)")
    return VerifiedChunk(spec, writes, nodes, ref)


def compute_top_nodes(hash_fn: HashFn, specs: Sequence[ChunkSpec], top_refs: Sequence[bytes], version: int
                      ) -> tuple[bytes, dict[bytes, bytes]]:
    """The tree's nodes above the chunks' subtrees (``top_refs``: each verified chunk's :attr:`VerifiedChunk.top_ref`,
    in spec order) and the root pointer: returns (root, nodes). The specs must have passed
    :func:`check_chunk_specs`; the root is then the trusted one."""
    vprefix = version.to_bytes(8, "big")
    nodes: dict[bytes, bytes] = {}
    # (depth, prefix, count, reference)
    stack: list[tuple[int, int, int, bytes]] = []
    for spec, ref in zip(specs, top_refs, strict=True):
        depth, prefix, count = spec.depth, spec.get_prefix_int(), spec.count
        while stack and stack[-1][0] == depth and depth > 0 and prefix & 1:
            _, _, lc, lref = stack.pop()
            total = lc + count
            if total == 0:
                ref = ZERO_REF
            elif total == 1:
                ref = lref if lc else ref
            else:
                rref = ref
                ref = vprefix + hash_fn(b"\x01" + lref[8:] + rref[8:])
                nodes[ref] = b"\x01" + lref + rref
            count, depth, prefix = total, depth - 1, prefix >> 1
        stack.append((depth, prefix, count, ref))
    if len(stack) != 1:
        raise SnapshotInvalid("the chunks do not form a binary cover of the path space")
    root_ref = stack[0][3]
    if root_ref == ZERO_REF:
        return ZERO_HASH, nodes
    nodes[root_ref[8:]] = root_ref
    return root_ref[8:], nodes



BucketItems = Callable[[int], list[tuple[int, int]]]
"""Bucket index → its entries as (path as an integer, size in bytes), sorted by path (a server's callback, asked
only for a bucket too large for one chunk)."""


def compute_cover(bucket_bits: int, counts: Sequence[int], sizes: Sequence[int], get_bucket_items: BucketItems,
                  target_entries: int = CHUNK_TARGET_ENTRIES, target_bytes: int = CHUNK_TARGET_BYTES,
                  ) -> list[tuple[int, int, int]]:
    """A server's cut of the path space into chunks: ``(depth, prefix, count)`` in path order, each prefix holding
    at most ``target_entries`` entries and ``target_bytes`` bytes (or a single entry).

    The server has counted its state per *bucket* — the first ``bucket_bits`` bits of the path — (``counts`` and
    ``sizes``, ``2 ** bucket_bits`` each); a prefix is split in two while it is over a target, bucket ranges by
    their sums and, below the bucket depth, a single bucket by its entries' paths."""
    n = 1 << bucket_bits
    if len(counts) != n or len(sizes) != n:
        raise ValueError(f"expected {n} bucket counts and sizes")
    cum_c = [0] * (n + 1)
    cum_s = [0] * (n + 1)
    for i in range(n):
        cum_c[i + 1] = cum_c[i] + counts[i]
        cum_s[i + 1] = cum_s[i] + sizes[i]
    out: list[tuple[int, int, int]] = []

    def split_items(depth: int, prefix: int, items: list[tuple[int, int]]) -> None:
        size = sum(s for _, s in items)
        if len(items) <= 1 or (len(items) <= target_entries and size <= target_bytes):
            out.append((depth, prefix, len(items)))
            return
        if depth >= PATH_BITS:
            raise ValueError("two entries with one path")
        mid = ((prefix << 1) | 1) << (PATH_BITS - depth - 1)
        k = bisect_left(items, (mid, -1))
        split_items(depth + 1, prefix << 1, items[:k])
        split_items(depth + 1, (prefix << 1) | 1, items[k:])

    def split(depth: int, prefix: int) -> None:
        lo, hi = prefix << (bucket_bits - depth), (prefix + 1) << (bucket_bits - depth)
        count, size = cum_c[hi] - cum_c[lo], cum_s[hi] - cum_s[lo]
        if count <= 1 or (count <= target_entries and size <= target_bytes):
            out.append((depth, prefix, count))
        elif depth < bucket_bits:
            split(depth + 1, prefix << 1)
            split(depth + 1, (prefix << 1) | 1)
        else:
            split_items(depth, prefix, get_bucket_items(prefix))

    split(0, 0)
    return out
