"""The chain's data: transactions, receipts, blocks, votes, commits, validator sets and genesis.

Every structure is a frozen dataclass encoded as the array of its fields (docs/spec/encoding.md gives the field
order). Identifiers are suite hashes of canonical bytes, with a domain tag wherever a signature is involved so a
signature made for one purpose can never be replayed as another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from qilian.crypto.suite import Suite
from qilian.types.codec import (
    MAX_INT,
    CodecError,
    check_decoded_value,
    check_value,
    decode_raw,
    encode,
    encode_trusted,
    get_item_end,
)
from qilian.types.struct import (
    AnyValue,
    Bool,
    Bytes,
    Kind,
    ListOf,
    Optional,
    Struct,
    Text,
    UInt,
    Wire,
)

HASH_SIZE: Final = 32
ADDRESS_SIZE: Final = 20
MAX_PUBLIC_KEY: Final = 65
MAX_SIGNATURE: Final = 72

DOMAIN_TX: Final = b"QILIAN/TX/1\x00"
"""Prefix of the bytes a sender signs: the tag, then the transaction hash."""
DOMAIN_VOTE: Final = b"QILIAN/VOTE/1\x00"
"""Prefix of the bytes a validator signs for a prevote or precommit."""
DOMAIN_PROPOSAL: Final = b"QILIAN/PROPOSAL/1\x00"
"""Prefix of the bytes a proposer signs for a proposal."""

ROLES: Final = ("admin", "member", "validator", "observer", "regulator")
"""Membership roles. Admins govern, members and validators transact, validators vote, observers only read,
regulators freeze and unfreeze accounts and contracts (docs/governance.md, "Regulator")."""
SENDING_ROLES: Final = frozenset({"admin", "member", "validator", "regulator"})
"""Roles allowed to sign transactions."""

BLOCK_VERSION: Final = 2
"""Protocol version a header names: the block format and state-transition rules it follows. Version 1 added
``version`` and ``next_validators_hash`` and moved membership and validator sets into state (docs/governance.md).
Version 2 commits to the signed bytes: ``txs_root`` is the Merkle root of the transactions' *signed* hashes
(:func:`compute_signed_tx_hash`), so one block ID means one set of stored bytes, signatures included; and a block
carries evidence of equivocation (``Block.evidence``, committed by ``evidence_hash``)."""

PREVOTE: Final = 1
PRECOMMIT: Final = 2

_hash32 = Bytes(size=HASH_SIZE)
_hash32_or_empty = Bytes(size=HASH_SIZE, allow_empty=True)
_address = Bytes(size=ADDRESS_SIZE)
_pubkey = Bytes(max_size=MAX_PUBLIC_KEY)
_signature = Bytes(max_size=MAX_SIGNATURE)


@dataclass(frozen=True, slots=True)
class TxBody(Wire):
    """What a sender signs."""

    chain_id: str
    """The chain this transaction is for; invalid on any other chain."""
    sender: bytes
    """The sender's raw public key (65 bytes for SM2, 32 for Ed25519)."""
    nonce: int
    """A number the client picks (at random) so two otherwise equal transactions get different hashes."""
    expires_at: int
    """Last block height that may include it. With hash uniqueness this is the replay protection."""
    to: str
    """Target: a built-in module (``kv``) or a contract address."""
    method: str
    """The function to call."""
    args: Any
    """The arguments: a list of codec values."""

    WIRE: ClassVar[tuple[Kind, ...]] = (
        Text(64),
        _pubkey,
        UInt(),
        UInt(),
        Text(128),
        Text(128),
        ListOf(AnyValue(), max_items=64),
    )

    def __post_init__(self) -> None:
        # One representation whatever the caller passed: decoded bodies hold a tuple, so built ones must too.
        if type(self.args) is not tuple:
            object.__setattr__(self, "args", tuple(self.args))

    def to_wire(self) -> list[Any]:
        return [self.chain_id, self.sender, self.nonce, self.expires_at, self.to, self.method, list(self.args)]


@dataclass(frozen=True, slots=True)
class Transaction(Wire):
    """A signed transaction. Its hash — the ID users see, dedup and replay protection — covers the body only: one
    body can carry many valid signatures (SM2 signing is randomised; a client retrying elsewhere re-signs), and they
    are one transaction. What a block commits to is the *signed* hash (:func:`compute_signed_tx_hash`), so the
    chain also agrees on which signature authorised it."""

    body: TxBody
    """The signed content."""
    signature: bytes
    """Signature by ``body.sender`` over DOMAIN_TX ‖ hash(body)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Struct(TxBody), _signature)

    def to_wire(self) -> list[Any]:
        return [self.body.to_wire(), self.signature]

    @classmethod
    def from_wire(cls, obj: Any, where: str = "") -> Transaction:
        return cls._build_checked(obj, where, False)

    @classmethod
    def from_decoded(cls, obj: Any, where: str = "") -> Transaction:
        """Every submitted transaction and every transaction of every decoded block passes here; the arguments are
        parts of a decoded value, so :func:`check_decoded_value` checks them (an EPCIS event, a nested map, costs
        two byte scans instead of a walk)."""
        return cls._build_checked(obj, where, True)

    @classmethod
    def _build_checked(cls, obj: Any, where: str, decoded: bool) -> Transaction:
        """The common case is checked inline (the same rules as ``WIRE``); anything unusual falls back to the
        generic path, which names the offending field."""
        if type(obj) is list and len(obj) == 2:
            b, sig = obj
            if type(b) is list and len(b) == 7 and type(sig) is bytes and len(sig) <= MAX_SIGNATURE:
                chain_id, sender, nonce, exp, to, method, args = b
                if (
                    type(chain_id) is str and len(chain_id) <= 64
                    and type(sender) is bytes and len(sender) <= MAX_PUBLIC_KEY
                    and type(nonce) is int and 0 <= nonce <= MAX_INT
                    and type(exp) is int and 0 <= exp <= MAX_INT
                    and type(to) is str and len(to) <= 128
                    and type(method) is str and len(method) <= 128
                    and type(args) is list and len(args) <= 64
                ):
                    check = check_decoded_value if decoded else check_value
                    try:
                        for a in args:
                            check(a)
                    except CodecError:
                        pass
                    else:
                        return cls(TxBody(chain_id, sender, nonce, exp, to, method, tuple(args)), sig)
        return Wire._build_checked.__func__(cls, obj, where, decoded)  # type: ignore[attr-defined]


def compute_tx_hash(suite: Suite, body: TxBody) -> bytes:
    """A transaction's identity: the suite hash of its canonical body bytes."""
    return suite.hash(encode_trusted(body.to_wire()))


def compute_tx_hash_of_raw(suite: Suite, raw: bytes, tx: Transaction) -> bytes:
    """:func:`compute_tx_hash` of ``tx`` decoded from ``raw``, without re-encoding the body.

    ``Transaction.decode`` accepts canonical bytes only, so ``raw`` is ``0x92 ‖ body bytes ‖ bin(signature)``:
    the body's canonical encoding is the slice between the array header and the signature's bin header (2 bytes
    up to 255 signature bytes, 3 up to 65,535). Admission hashes every submitted transaction, and re-encoding
    the body cost more than checking it; the caller must pass the very bytes ``tx`` was decoded from."""
    n = len(tx.signature)
    return suite.hash(raw[1:len(raw) - n - (2 if n <= 255 else 3 if n <= 65535 else 5)])


def compute_signed_tx_hash(suite: Suite, tx: Transaction) -> bytes:
    """The hash of a transaction's full canonical bytes (body, sender key, signature): the leaf of ``txs_root`` and
    the name of one signed version in proposals and fetches. Two versions of one body (same ``compute_tx_hash``,
    different signatures) have different signed hashes, so a block ID pins the exact signature every node stores.
    For bytes that decoded as a Transaction this equals ``suite.hash(raw)``: decoding accepts canonical bytes only."""
    return suite.hash(encode_trusted(tx.to_wire()))


def compute_tx_sign_bytes(tx_hash: bytes) -> bytes:
    """The bytes a sender signs: signing the fixed-size hash keeps verification cost independent of size."""
    return DOMAIN_TX + tx_hash


def sign_tx(suite: Suite, private_key: bytes, body: TxBody) -> Transaction:
    """Sign a body with the sender's private key. The body is checked first (CodecError), so a client never
    signs something no node would decode."""
    TxBody.from_decoded(decode_raw(encode(body.to_wire())))
    return Transaction(body, suite.sign(private_key, compute_tx_sign_bytes(compute_tx_hash(suite, body))))


@dataclass(frozen=True, slots=True)
class Event(Wire):
    """Something a transaction announces: written to its receipt and pushed to /events subscribers."""

    source: str
    """The module or contract that emitted it."""
    name: str
    """Event name."""
    data: Any
    """Event payload (a codec value)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Text(128), Text(128), AnyValue())


STATUS_OK: Final = 0
STATUS_FAILED: Final = 1
STATUS_OUT_OF_FUEL: Final = 2


@dataclass(frozen=True, slots=True)
class Receipt(Wire):
    """The outcome of one transaction. A failed transaction is still in its block; it changed nothing."""

    tx_hash: bytes
    """The transaction's hash."""
    status: int
    """0 ok, 1 failed (error names why), 2 out of fuel."""
    error: str
    """Why it failed; empty on success."""
    fuel_used: int
    """Fuel consumed (0 for built-in modules)."""
    result: Any
    """The call's return value (a codec value)."""
    events: tuple[Event, ...] = field(default=())
    """Events emitted; empty when the call failed."""

    WIRE: ClassVar[tuple[Kind, ...]] = (
        _hash32,
        UInt(),
        Text(4096),
        UInt(),
        AnyValue(),
        ListOf(Struct(Event), max_items=1024),
    )


@dataclass(frozen=True, slots=True)
class BlockHeader(Wire):
    """What validators vote on (by its hash, the block ID).

    Execution is deferred: the state and receipts roots in header ``h`` are those after executing block ``h-1``,
    so consensus on ``h`` never waits for execution. A transaction's receipt is therefore proven against the
    header of the next block.
    """

    version: int
    """Protocol version (BLOCK_VERSION): a node refuses a block of a version it does not run."""
    chain_id: str
    """The chain."""
    height: int
    """Height, from 1."""
    time_ms: int
    """Proposer's time in milliseconds since the Unix epoch; never earlier than the parent's."""
    prev_block_id: bytes
    """ID of the block at height-1 (empty at height 1)."""
    last_commit_hash: bytes
    """Hash of the commit (signatures) for block height-1 carried in this block (empty at height 1)."""
    txs_root: bytes
    """Merkle root of this block's transactions' signed hashes (:func:`compute_signed_tx_hash`, in block order):
    the signatures are part of what the block ID commits to."""
    tx_count: int
    """Number of transactions in this block."""
    state_root: bytes
    """State root after executing blocks up to height-1."""
    receipts_root: bytes
    """Merkle root of the receipts of block height-1 (empty-tree root at height 1)."""
    validators_hash: bytes
    """Hash of the validator set that signs this block."""
    next_validators_hash: bytes
    """Hash of the validator set that signs the next block: a change decided in block h is in state after h,
    hence in this hash of header h+1 and signs from h+2 on (Tendermint's rule), so a light client can follow
    the set header by header."""
    proposer: bytes
    """Address of the validator that proposed this block."""
    evidence_hash: bytes
    """Merkle root of the canonical bytes of the block's evidence items (equivocation proofs, in block order; the
    empty-tree root when there are none): the evidence a block carries is part of what validators vote on."""

    WIRE: ClassVar[tuple[Kind, ...]] = (
        UInt(),
        Text(64),
        UInt(),
        UInt(),
        _hash32_or_empty,
        _hash32_or_empty,
        _hash32,
        UInt(),
        _hash32,
        _hash32,
        _hash32,
        _hash32,
        _address,
        _hash32,
    )


def compute_block_id(suite: Suite, header: BlockHeader) -> bytes:
    """A block's identity: the suite hash of its header's canonical bytes."""
    return suite.hash(header.encode())


@dataclass(frozen=True, slots=True)
class CommitSig(Wire):
    """One validator's precommit signature inside a commit."""

    validator: bytes
    """The validator's address."""
    signature: bytes
    """Its signature over the precommit's sign bytes."""

    WIRE: ClassVar[tuple[Kind, ...]] = (_address, _signature)


@dataclass(frozen=True, slots=True)
class Commit(Wire):
    """Proof that a block was decided: precommits for its ID by more than 2/3 of the voting power."""

    height: int
    """Height of the decided block."""
    round: int
    """Consensus round in which it was decided."""
    block_id: bytes
    """The decided block's ID."""
    signatures: tuple[CommitSig, ...]
    """Precommit signatures, sorted by validator address."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt(), _hash32, ListOf(Struct(CommitSig), max_items=1024))


def compute_commit_hash(suite: Suite, commit: Commit | None) -> bytes:
    """Hash of a commit, or empty bytes for none (height 1 has no previous commit)."""
    return b"" if commit is None else suite.hash(commit.encode())


@dataclass(frozen=True, slots=True)
class Vote(Wire):
    """A signed prevote or precommit. An empty block_id is a vote for nil."""

    kind: int
    """1 prevote, 2 precommit."""
    height: int
    """Height voted on."""
    round: int
    """Round voted in."""
    block_id: bytes
    """Block ID voted for; empty for nil."""
    validator: bytes
    """Voter's address."""
    signature: bytes
    """Signature over :func:`compute_vote_sign_bytes`."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), UInt(), UInt(), _hash32_or_empty, _address, _signature)


def compute_vote_sign_bytes(chain_id: str, kind: int, height: int, round_: int, block_id: bytes) -> bytes:
    """The bytes a validator signs for a vote: domain tag, then the canonical array of what it commits to."""
    return DOMAIN_VOTE + encode_trusted([chain_id, kind, height, round_, block_id])


MAX_EVIDENCE_ON_WIRE: Final = 64
"""Most evidence items any block or message can decode with (consensus caps a block lower: MAX_BLOCK_EVIDENCE)."""


@dataclass(frozen=True, slots=True)
class Evidence(Wire):
    """Proof that a validator equivocated: two votes it signed for one (height, round, kind) naming different block
    IDs (a vote for nil counts as naming the empty ID). Both votes travel with their signatures, so any node — and
    any later reader of the chain — can check the proof alone against the validator set of that height.

    One equivocation has one encoding: ``vote_a`` names the smaller block ID (bytewise), so the same pair seen in
    either order is the same item, deduplicated by :func:`compute_evidence_hash`."""

    vote_a: Vote
    """The vote naming the smaller block ID."""
    vote_b: Vote
    """The conflicting vote (same validator, height, round and kind; a larger block ID)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Struct(Vote), Struct(Vote))


def compute_evidence_hash(suite: Suite, evidence: Evidence) -> bytes:
    """An evidence item's identity: the suite hash of its canonical bytes (dedup, the state record's key)."""
    return suite.hash(encode_trusted(evidence.to_wire()))


@dataclass(frozen=True, slots=True)
class Block(Wire):
    """A header, its transactions, the commit that decided its parent, and evidence of equivocation."""

    header: BlockHeader
    """The header."""
    txs: tuple[Transaction, ...]
    """Transactions in execution order."""
    last_commit: Commit | None
    """Commit for the block at height-1 (None at height 1)."""
    evidence: tuple[Evidence, ...] = ()
    """Equivocation proofs committed by this block (``header.evidence_hash`` is their root)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (
        Struct(BlockHeader),
        ListOf(Struct(Transaction)),
        Optional(Struct(Commit)),
        ListOf(Struct(Evidence), max_items=MAX_EVIDENCE_ON_WIRE),
    )


def get_block_header_of_raw(raw: bytes) -> BlockHeader:
    """The header of an encoded block, decoded without its transactions: a block is an array whose first item is
    the header, so the header's canonical bytes are the slice after the array's one-byte head. Reading a height's
    time or roots this way costs the header, not the 5,000 transactions of a full block. CodecError for bytes
    that are no block."""
    if not raw or not 0x91 <= raw[0] <= 0x9F:
        raise CodecError("an encoded block is a short array")
    return BlockHeader.from_decoded(decode_raw(raw[1:get_item_end(raw, 1)]))


@dataclass(frozen=True, slots=True)
class Validator(Wire):
    """A member of the validator set."""

    address: bytes
    """Address of the public key."""
    public_key: bytes
    """Raw public key."""
    power: int
    """Voting power (> 0)."""

    WIRE: ClassVar[tuple[Kind, ...]] = (_address, _pubkey, UInt())


@dataclass(frozen=True, slots=True)
class ValidatorSet(Wire):
    """The validators of a height, sorted by address."""

    validators: tuple[Validator, ...]
    """Validators in address order."""

    WIRE: ClassVar[tuple[Kind, ...]] = (ListOf(Struct(Validator), max_items=1024),)

    @property
    def total_power(self) -> int:
        """Sum of all voting power."""
        return sum(v.power for v in self.validators)

    def get_by_address(self, address: bytes) -> Validator | None:
        """The validator with this address, or None."""
        for v in self.validators:
            if v.address == address:
                return v
        return None

    def compute_hash(self, suite: Suite) -> bytes:
        """Hash committed in headers as ``validators_hash``."""
        return suite.hash(self.encode())


@dataclass(frozen=True, slots=True)
class Member(Wire):
    """A key of an organisation and what it may do."""

    name: str
    """Human label (``alice``, ``node0``)."""
    public_key: bytes
    """Raw public key."""
    roles: tuple[str, ...]
    """Sorted subset of ROLES."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Text(128), _pubkey, ListOf(Text(32), max_items=8))


@dataclass(frozen=True, slots=True)
class Organisation(Wire):
    """A consortium member organisation."""

    name: str
    """Organisation name, unique on the chain."""
    members: tuple[Member, ...]
    """Its keys."""

    WIRE: ClassVar[tuple[Kind, ...]] = (Text(128), ListOf(Struct(Member), max_items=10_000))


MAX_BLOCK_TXS_BOUND: Final = 10_000
"""No genesis may set ``max_block_txs`` above this (execution sizes its receipt budget by it)."""


@dataclass(frozen=True, slots=True)
class ChainParams(Wire):
    """Limits and timing fixed in genesis. Every limit a node enforces is here or a named constant."""

    block_interval_ms: int = 1000
    """Target time between blocks."""
    create_empty_blocks: bool = False
    """Produce blocks with no transactions on every interval (otherwise only when there is work)."""
    max_block_txs: int = 5000
    """Most transactions in one block."""
    max_block_bytes: int = 8 * 1024 * 1024
    """Largest encoded block."""
    max_tx_bytes: int = 64 * 1024
    """Largest encoded transaction."""
    tx_validity_blocks: int = 1000
    """``expires_at`` may be at most this many blocks ahead of the including height."""

    WIRE: ClassVar[tuple[Kind, ...]] = (UInt(), Bool(), UInt(), UInt(), UInt(), UInt())


@dataclass(frozen=True, slots=True)
class Genesis(Wire):
    """The chain's first facts. Its hash identifies the chain together with the chain ID."""

    chain_id: str
    """Chain name, e.g. ``qingdao-port-1``."""
    suite: str
    """Crypto suite: ``sm2`` or ``ed25519``."""
    genesis_time_ms: int
    """Time of genesis (ms since the Unix epoch); block times are never earlier."""
    organisations: tuple[Organisation, ...]
    """Consortium members and their keys."""
    validators: ValidatorSet
    """The initial validator set."""
    params: ChainParams
    """Limits and timing."""

    WIRE: ClassVar[tuple[Kind, ...]] = (
        Text(64),
        Text(16),
        UInt(),
        ListOf(Struct(Organisation), max_items=1000),
        Struct(ValidatorSet),
        Struct(ChainParams),
    )

    def compute_hash(self, suite: Suite) -> bytes:
        """The genesis hash."""
        return suite.hash(self.encode())

    def get_member(self, public_key: bytes) -> tuple[Organisation, Member] | None:
        """The organisation and member entry of a key, or None if the key is not a member."""
        for org in self.organisations:
            for m in org.members:
                if m.public_key == public_key:
                    return org, m
        return None
