"""The consensus write-ahead log's records and framing — pure: bytes in, bytes out. The file (production:
:mod:`qilian.node.wal`) and the simulator's in-memory disk (:mod:`qilian.sim.disk`) both use exactly this code, so
a torn tail the simulator makes is cut by the same reader the node runs.

Framing: ``u32 length ‖ u32 crc32(payload) ‖ payload``, payload = the canonical encoding of a record's wire list.
A crash can tear the last record; the reader stops at the last intact one (a torn tail is expected after a crash,
never a reason not to start).

Records are typed (frozen dataclasses, ``encode() -> list`` / :func:`decode_record`); their wire lists are those of
the untyped log before them, so a WAL written by an older node still replays."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from qilian.consensus.types import TimeoutKind
from qilian.p2p.messages import ProposalMsg
from qilian.types.codec import CodecError, decode_raw, encode_trusted
from qilian.types.core import Block
from qilian.types.core import Vote as SignedVote

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""A length prefix above this is treated as a torn (garbage) tail."""
_HEAD = struct.Struct(">II")


class WalCorrupt(ValueError):
    """A framed record that decodes as canonical bytes but is no known record (the replay stops there)."""


@dataclass(frozen=True, slots=True)
class WalHeight:
    """First record of a log: the height its inputs are for."""

    height: int
    """The height being decided."""

    def encode(self) -> list[Any]:
        return ["height", self.height]


@dataclass(frozen=True, slots=True)
class WalProposal:
    """A verified proposal of another validator, fed to the core."""

    msg: ProposalMsg
    """The signed proposal as received."""

    def encode(self) -> list[Any]:
        return ["p", self.msg.encode()]


@dataclass(frozen=True, slots=True)
class WalOwnProposal:
    """This node's signed proposal (the core counts its own proposal itself; the record lets a restart re-send it
    verbatim instead of signing anew)."""

    msg: ProposalMsg
    """The signed proposal as sent."""

    def encode(self) -> list[Any]:
        return ["s", "p", self.msg.encode()]


@dataclass(frozen=True, slots=True)
class WalVote:
    """A verified vote fed to the core: another validator's, or our own once signed (then it is also what a
    restart re-sends)."""

    vote: SignedVote
    """The signed vote."""

    def encode(self) -> list[Any]:
        return ["v", self.vote.encode()]


@dataclass(frozen=True, slots=True)
class WalTimeout:
    """A timer that fired for the current height and round."""

    kind: TimeoutKind
    """propose, prevote or precommit."""
    height: int
    """Height it was scheduled for."""
    round: int
    """Round it was scheduled for."""

    def encode(self) -> list[Any]:
        return ["t", int(self.kind), self.height, self.round]


@dataclass(frozen=True, slots=True)
class WalValue:
    """The answer to the core's getValue(): the whole block this node built (a replay must propose the same one)."""

    height: int
    """Height asked for."""
    round: int
    """Round asked for."""
    block: Block
    """The block; its header is the value."""

    def encode(self) -> list[Any]:
        return ["r", self.height, self.round, self.block.encode()]


@dataclass(frozen=True, slots=True)
class WalValidity:
    """The answer to valid(v), with the assembled block when valid (a replay must not need the network)."""

    value_id: bytes
    """id(v) asked about."""
    valid: bool
    """The verdict."""
    block: Block | None
    """The assembled block (valid answers only)."""
    block_bytes: bytes | None = field(default=None, compare=False, repr=False)
    """``block.encode()`` when the caller already has it (the validity check measured the block's size with it):
    a 5,000-transaction block's encoding is some 20 ms of the event loop's time, paid once instead of twice."""

    def encode(self) -> list[Any]:
        if not self.valid or self.block is None:
            return ["a", self.value_id, self.valid, b""]
        raw = self.block_bytes if self.block_bytes is not None else self.block.encode()
        return ["a", self.value_id, self.valid, raw]


WalRecord = WalHeight | WalProposal | WalOwnProposal | WalVote | WalTimeout | WalValue | WalValidity


def decode_record(w: Any) -> WalRecord:
    """The typed record of a decoded wire list; raises WalCorrupt or CodecError for anything else."""
    if not isinstance(w, list) or not w:
        raise WalCorrupt("record is not a non-empty list")
    kind = w[0]
    try:
        if kind == "height":
            return WalHeight(int(w[1]))
        if kind == "p":
            return WalProposal(ProposalMsg.decode(w[1]))
        if kind == "s":
            if w[1] != "p":
                raise WalCorrupt(f"unknown signed-message kind {w[1]!r}")
            return WalOwnProposal(ProposalMsg.decode(w[2]))
        if kind == "v":
            return WalVote(SignedVote.decode(w[1]))
        if kind == "t":
            return WalTimeout(TimeoutKind(w[1]), int(w[2]), int(w[3]))
        if kind == "r":
            return WalValue(int(w[1]), int(w[2]), Block.decode(w[3]))
        if kind == "a":
            valid = bool(w[2])
            return WalValidity(bytes(w[1]), valid, Block.decode(w[3]) if valid and w[3] else None)
    except (IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, WalCorrupt):
            raise
        raise WalCorrupt(f"malformed {kind!r} record: {exc}") from None
    raise WalCorrupt(f"unknown WAL record kind {kind!r}")


def encode_frame(record: WalRecord) -> bytes:
    """One framed record, as handed to the OS in one write."""
    payload = encode_trusted(record.encode())
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def decode_frames(data: bytes) -> tuple[list[WalRecord], int]:
    """The intact records at the start of ``data`` and the byte offset where the intact prefix ends. A record whose
    frame checks out but which is no known record also ends the prefix (it cannot be replayed, so neither can
    anything after it)."""
    records: list[WalRecord] = []
    off = 0
    while off + _HEAD.size <= len(data):
        n, crc = _HEAD.unpack_from(data, off)
        if n > MAX_RECORD_BYTES or off + _HEAD.size + n > len(data):
            break
        payload = data[off + _HEAD.size: off + _HEAD.size + n]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(decode_record(decode_raw(payload, max_bytes=MAX_RECORD_BYTES)))
        except (CodecError, WalCorrupt):
            break
        off += _HEAD.size + n
    return records, off
