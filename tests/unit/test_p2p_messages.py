"""Peer messages: every kind round-trips, and anything but the canonical form of a known message is refused."""

from __future__ import annotations

import pytest

from qilian.p2p.messages import (
    MAX_BLOCKS_PER_REPLY,
    Blocks,
    BlockWithCommit,
    GetBlocks,
    GetTxs,
    Status,
    TxBatch,
    decode_message,
    encode_message,
)
from qilian.types.codec import CodecError, encode_trusted
from qilian.types.core import PREVOTE, Vote


@pytest.mark.parametrize("msg", [
    Status(7, 2), TxBatch((b"a", b"bc")), GetTxs((b"\x01" * 32,)), GetBlocks(5, 32),
    Blocks((BlockWithCommit(b"blk", b"cmt"),)), Vote(PREVOTE, 3, 0, b"", b"\x02" * 20, b"\x03" * 64),
])
def test_round_trip(msg: object) -> None:
    assert decode_message(encode_message(msg)) == msg  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [
    b"", b"\xc1", encode_trusted([99, []]), encode_trusted([2, [1]]), encode_trusted([2, [1, 2], 3]),
    encode_trusted(["2", [1, 2]]), encode_trusted([4, [[b"short"]]]),
    encode_trusted([8, [[[b"b", b"c"]] * (MAX_BLOCKS_PER_REPLY + 1)]]),
])
def test_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_message(data)


def test_non_canonical_integer_is_refused() -> None:
    canonical = encode_message(Status(7, 2))
    assert canonical[-2:] == b"\x07\x02"
    padded = canonical[:-2] + b"\xcc\x07\x02"  # 7 as a uint8 instead of a fixint: same value, other bytes
    with pytest.raises(CodecError):
        decode_message(padded)
