"""Messages nodes exchange, as canonical structures (the same codec as blocks and transactions).

Every frame on the wire is ``u32 length ‖ canonical array [kind, body]``. Decoding is strict — a frame that is not
exactly the canonical encoding of one of these structures is a protocol violation and the peer is disconnected.
Limits are explicit: the frame size (MAX_FRAME_BYTES) and the item counts below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from qilian.state.snapshot import MAX_CHUNK_ENTRIES, MAX_CHUNKS, ChunkSpec
from qilian.state.tree import MAX_KEY_BYTES, MAX_NAMESPACE_BYTES, MAX_VALUE_BYTES
from qilian.types.codec import CodecError, decode_raw, encode_trusted
from qilian.types.core import (
    ADDRESS_SIZE,
    DOMAIN_PROPOSAL,
    HASH_SIZE,
    MAX_EVIDENCE_ON_WIRE,
    MAX_PUBLIC_KEY,
    MAX_SIGNATURE,
    BlockHeader,
    Commit,
    Evidence,
    Vote,
)
from qilian.types.struct import Bool, Bytes, Kind, ListOf, Optional, Struct, Text, UInt, Wire

MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
"""Largest frame a node accepts from a peer; a larger length prefix disconnects the peer before reading it."""
MAX_TXS_PER_BATCH: Final = 5000
"""Most transactions in one gossip batch or fetch answer."""
MAX_HASHES: Final = 10_000
"""Most hashes in a proposal or fetch request."""
MAX_TX_BYTES_ON_WIRE: Final = 1 << 20
"""Largest transaction in a gossip batch or fetch answer (the chain's max_tx_bytes must fit)."""
MAX_EVIDENCE_PER_MESSAGE: Final = 16
"""Most evidence items in one gossip message (and carried by one proposal: at most MAX_EVIDENCE_ON_WIRE)."""
MAX_BLOCKS_PER_REPLY: Final = 64
"""Most blocks in one sync answer (also bounded by the frame size)."""
DOMAIN_HELLO: Final = b"QILIAN/HELLO/2\x00"
"""Prefix of the bytes a node signs in its handshake (version 2: nonces and the accepting side's certificate)."""
HELLO_NONCE_BYTES: Final = 32
"""Size of a handshake nonce."""
MAX_SNAPSHOT_PATH_ENTRIES: Final = 256
"""Most validator-set changes a snapshot manifest's validator path carries (from genesis to the snapshot's
proving header). A chain with more changes needs the path in pieces or a trusted checkpoint (docs/spec/statesync.md,
"Limits"); a server refuses to offer a snapshot past it."""
MAX_SNAPSHOT_WINDOW_SETS: Final = 1024
"""Most distinct validator sets a manifest names for the heights of the replay window (at most one per height)."""
MAX_HEADER_BYTES: Final = 4096
"""Largest encoded header or validator-path header in a manifest (a header is ~400 bytes)."""
MAX_COMMIT_BYTES: Final = 1 << 20
"""Largest encoded commit in a manifest (as in a synced block)."""
MAX_VALIDATOR_SET_BYTES: Final = 1 << 20
"""Largest encoded validator set in a manifest."""

_hash = Bytes(size=HASH_SIZE)
_sig = Bytes(max_size=MAX_SIGNATURE)


class PeerViolation(Exception):
    """A peer broke the protocol; it is disconnected. (Here, beside the messages, so that the shell — which judges
    messages but owns no sockets — and the transport raise and catch the same class.)"""


@dataclass(frozen=True, slots=True)
class Hello(Wire):
    """First message on a connection: who I claim to be, and a fresh nonce the peer must sign over."""

    chain_id: str
    """The sender's chain."""
    genesis_hash: bytes
    """The sender's genesis hash: nodes of different chains with one ID never talk."""
    public_key: bytes
    """The sender's node public key (admitted only if chain state registers it as a node)."""
    height: int
    """The sender's committed height."""
    nonce: bytes
    """HELLO_NONCE_BYTES fresh random bytes: the peer's HelloProof signs them, so a proof is never replayable."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Text(64), _hash, Bytes(max_size=MAX_PUBLIC_KEY), UInt(),
                                        Bytes(size=HELLO_NONCE_BYTES))


@dataclass(frozen=True, slots=True)
class HelloProof(Wire):
    """Second message: the sender's node key signs this TLS session (:func:`compute_hello_sign_bytes`)."""

    signature: bytes
    """Signature by the Hello's public key."""

    WIRE: ClassVar[tuple[Kind, ...]] = (_sig,)


def compute_hello_sign_bytes(chain_id: str, genesis_hash: bytes, server_cert: bytes, dialer: bool,
                             own_nonce: bytes, peer_nonce: bytes) -> bytes:
    """What a node signs in its HelloProof: its node key bound to this TLS session — the hash of the accepting
    side's certificate (whose TLS key terminates the session, so a relay in the middle presents another one),
    its side (so the dialer's proof never passes for the acceptor's) and both nonces (so a proof is good for
    this connection only)."""
    return DOMAIN_HELLO + encode_trusted([chain_id, genesis_hash, server_cert, 1 if dialer else 0, own_nonce,
                                          peer_nonce])


@dataclass(frozen=True, slots=True)
class Status(Wire):
    """Periodic: my committed height and where consensus is. Peers ahead of me are where I sync from."""

    height: int
    """Committed height."""
    round: int
    """Current consensus round (of height + 1)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt())


@dataclass(frozen=True, slots=True)
class TxBatch(Wire):
    """Transactions (raw canonical bytes) gossiped from a mempool, or the answer to GetTxs."""

    txs: tuple[bytes, ...]
    """Encoded transactions."""

    WIRE: ClassVar[tuple[Kind, ...]] = (ListOf(Bytes(max_size=MAX_TX_BYTES_ON_WIRE), max_items=MAX_TXS_PER_BATCH),)


@dataclass(frozen=True, slots=True)
class GetTxs(Wire):
    """Ask a peer for transactions of a proposal this node lacks, by *signed* hash: the exact signed version the
    proposal names, even when this node holds the same body under another signature."""

    hashes: tuple[bytes, ...]
    """Signed transaction hashes (:func:`qilian.types.core.compute_signed_tx_hash`)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (ListOf(_hash, max_items=MAX_HASHES),)


@dataclass(frozen=True, slots=True)
class ProposalMsg(Wire):
    """PROPOSAL(h, r, v, vr): the block header and its transactions' signed hashes — not the transactions
    themselves."""

    round: int
    """Round."""
    valid_round: int
    """vr + 1 (0 encodes -1: the codec carries unsigned integers)."""
    header: BlockHeader
    """The proposed block's header; its hash is the block ID."""
    signed_hashes: tuple[bytes, ...]
    """Signed hashes of the block's transactions, in order (their root is the header's ``txs_root``): each names
    one exact signed version, which every node assembles, stores and serves."""
    last_commit: Commit | None
    """The commit of the parent block carried by the proposed block."""
    evidence: tuple[Evidence, ...]
    """The proposed block's evidence items (their root is the header's ``evidence_hash``): carried whole, as they
    are few and a node may not have seen them."""
    proposer: bytes
    """Address of this round's proposer — not always the header's: a value locked in an earlier round (vr ≥ 0)
    is proposed again, unchanged, by a later round's proposer."""
    signature: bytes
    """Proposer's signature over :func:`compute_proposal_sign_bytes`."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt(), Struct(BlockHeader), ListOf(_hash, max_items=MAX_HASHES),
                                        Optional(Struct(Commit)),
                                        ListOf(Struct(Evidence), max_items=MAX_EVIDENCE_ON_WIRE),
                                        Bytes(size=ADDRESS_SIZE), _sig)


@dataclass(frozen=True, slots=True)
class GetBlocks(Wire):
    """Ask a peer for committed blocks from ``start`` on."""

    start: int
    """First height wanted."""
    count: int
    """How many (the peer sends at most MAX_BLOCKS_PER_REPLY)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt())


@dataclass(frozen=True, slots=True)
class BlockWithCommit(Wire):
    """A committed block and the commit that decided it."""

    block: bytes
    """The encoded block."""
    commit: bytes
    """The encoded commit."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Bytes(max_size=MAX_FRAME_BYTES), Bytes(max_size=1 << 20))


@dataclass(frozen=True, slots=True)
class Blocks(Wire):
    """Answer to GetBlocks; empty when the peer has none of them."""

    items: tuple[BlockWithCommit, ...]
    """Blocks in height order."""

    WIRE: ClassVar[tuple[Kind, ...]] = (ListOf(Struct(BlockWithCommit), max_items=MAX_BLOCKS_PER_REPLY),)


@dataclass(frozen=True, slots=True)
class EvidenceMsg(Wire):
    """Equivocation evidence gossiped between peers: verified before it is kept or relayed, relayed once."""

    items: tuple[Evidence, ...]
    """Evidence items."""

    WIRE: ClassVar[tuple[Kind, ...]] = (ListOf(Struct(Evidence), max_items=MAX_EVIDENCE_PER_MESSAGE),)


@dataclass(frozen=True, slots=True)
class GetSnapshot(Wire):
    """Ask a peer for the manifest of a state-sync snapshot (docs/spec/statesync.md)."""

    height: int
    """0: the newest snapshot the peer offers; else that height (a joiner resuming)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(),)


@dataclass(frozen=True, slots=True)
class PathEntry(Wire):
    """One entry of a validator path (the API's ``qilian-validator-path/1``, in canonical bytes): a height whose
    signing set differs from the height before's."""

    validators: bytes
    """The encoded validator set that signs the entry's header."""
    header: bytes
    """The encoded header of the change height."""
    commit: bytes
    """Its encoded commit."""
    parent_header: bytes
    """The encoded header before it (signed by the previously trusted set, naming this set as next), or empty
    when more than 1/3 of the previous set's power signed ``commit`` (the skipping rule)."""
    parent_commit: bytes
    """The parent header's encoded commit, or empty."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Bytes(max_size=MAX_VALIDATOR_SET_BYTES), Bytes(max_size=MAX_HEADER_BYTES),
                                        Bytes(max_size=MAX_COMMIT_BYTES), Bytes(max_size=MAX_HEADER_BYTES),
                                        Bytes(max_size=MAX_COMMIT_BYTES))


@dataclass(frozen=True, slots=True)
class SnapshotManifest(Wire):
    """Answer to GetSnapshot: the state after block ``height`` and everything that proves it from genesis.

    ``height`` 0 means no snapshot now: ``retry_ms`` > 0 — one is being prepared, ask again after that long;
    ``retry_ms`` 0 — this peer offers none (too little history, or state sync serving is off)."""

    height: int
    """H: the snapshot holds the state after executing block H (0: none, see above)."""
    retry_ms: int
    """When ``height`` is 0: when to ask again (0: do not)."""
    next_header: bytes
    """The encoded header of block H + 1: its ``state_root`` is the snapshot's root (deferred execution: header
    h + 1 commits the state after h)."""
    next_commit: bytes
    """The encoded commit of block H + 1, signed by more than 2/3 of that height's validator power."""
    last_commit: bytes
    """The encoded commit of block H carried by block H + 1 (its hash is ``next_header.last_commit_hash``)."""
    path: tuple[PathEntry, ...]
    """The validator path from genesis to H + 1 (checked by :func:`qilian.sdk.verify.verify_validator_path`)."""
    window_sets: tuple[bytes, ...]
    """The encoded validator sets named by the headers of the replay window (the blocks a joiner fetches below
    H + 1), each once."""
    chunks: tuple[ChunkSpec, ...]
    """The chunk list: a cover of the state tree's path space (:mod:`qilian.state.snapshot`)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt(), Bytes(max_size=MAX_HEADER_BYTES, allow_empty=True),
                                        Bytes(max_size=MAX_COMMIT_BYTES), Bytes(max_size=MAX_COMMIT_BYTES),
                                        ListOf(Struct(PathEntry), max_items=MAX_SNAPSHOT_PATH_ENTRIES),
                                        ListOf(Bytes(max_size=MAX_VALIDATOR_SET_BYTES),
                                               max_items=MAX_SNAPSHOT_WINDOW_SETS),
                                        ListOf(Struct(ChunkSpec), max_items=MAX_CHUNKS))


@dataclass(frozen=True, slots=True)
class GetChunk(Wire):
    """Ask a peer for one chunk of the snapshot of ``height``."""

    height: int
    """The snapshot's height (from its manifest)."""
    index: int
    """The chunk's position in the manifest's chunk list."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt())


class ChunkEntries(Kind):
    """A chunk's entries: a list of ``[namespace, key, value]`` (text, bytes, bytes), kept as a tuple of tuples.
    Keys travel whole because the state tree holds only their hashed paths. Checked inline (types and bounds),
    not as one structure per entry: a chunk holds thousands, and the receiver checks each against its spec
    anyway (:func:`qilian.state.snapshot.check_chunk`: namespace and key limits, paths, order)."""

    def to_wire(self, value: Any) -> Any:
        return [list(e) for e in value]

    def from_wire(self, obj: Any, where: str) -> Any:
        if type(obj) is not list:
            raise CodecError(f"{where}: expected a list of entries")
        if len(obj) > MAX_CHUNK_ENTRIES:
            raise CodecError(f"{where}: {len(obj)} entries is over the limit of {MAX_CHUNK_ENTRIES}")
        out = []
        for i, e in enumerate(obj):
            if (type(e) is not list or len(e) != 3 or type(e[0]) is not str or type(e[1]) is not bytes
                    or type(e[2]) is not bytes):
                raise CodecError(f"{where}[{i}]: expected [namespace, key, value]")
            if len(e[0]) > MAX_NAMESPACE_BYTES or len(e[1]) > MAX_KEY_BYTES or len(e[2]) > MAX_VALUE_BYTES:
                raise CodecError(f"{where}[{i}]: namespace, key or value over its limit")
            out.append((e[0], e[1], e[2]))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Chunk(Wire):
    """Answer to GetChunk: the entries under the chunk's prefix in path order, or ``found`` False when the peer no
    longer serves that snapshot (the joiner starts over with a fresh manifest)."""

    height: int
    """The snapshot's height."""
    index: int
    """The chunk's position in the manifest."""
    found: bool
    """False: the snapshot is gone (expired on the peer)."""
    entries: tuple[tuple[str, bytes, bytes], ...]
    """The entries as (namespace, key, value), in path order (at most MAX_CHUNK_ENTRIES; bytes bounded by the
    frame and by MAX_CHUNK_BYTES at the check)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt(), Bool(), ChunkEntries())


Message = (Hello | Status | TxBatch | GetTxs | ProposalMsg | Vote | GetBlocks | Blocks | HelloProof | EvidenceMsg
           | GetSnapshot | SnapshotManifest | GetChunk | Chunk)
KINDS: Final[dict[int, type[Wire]]] = {1: Hello, 2: Status, 3: TxBatch, 4: GetTxs, 5: ProposalMsg, 6: Vote,
                                       7: GetBlocks, 8: Blocks, 9: HelloProof, 10: EvidenceMsg, 11: GetSnapshot,
                                       12: SnapshotManifest, 13: GetChunk, 14: Chunk}
_KIND_OF: Final = {cls: k for k, cls in KINDS.items()}


def encode_message(msg: Wire) -> bytes:
    """Frame body of a message: the canonical array [kind, fields]."""
    return encode_trusted([_KIND_OF[type(msg)], msg.to_wire()])


def decode_message(data: bytes) -> Any:
    """Parse a frame body; raises CodecError on anything but the canonical form of a known message."""
    obj = decode_raw(data, max_bytes=MAX_FRAME_BYTES)
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not int or obj[0] not in KINDS:
        raise CodecError("not a peer message: expected [kind, body] with a known kind")
    msg = KINDS[obj[0]].from_decoded(obj[1])
    if encode_message(msg) != data:
        raise CodecError(f"{type(msg).__name__} is not in canonical form")
    return msg


def compute_proposal_sign_bytes(chain_id: str, height: int, round_: int, block_id: bytes, valid_round: int) -> bytes:
    """The bytes a proposer signs (valid_round as sent: vr + 1)."""
    return DOMAIN_PROPOSAL + encode_trusted([chain_id, height, round_, block_id, valid_round])
