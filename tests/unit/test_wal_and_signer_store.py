"""The consensus WAL survives torn writes; the signer state survives restarts and keeps refusing conflicts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from qilian.consensus.signer import SignerState, SignRefused, check_sign
from qilian.consensus.types import Proposal, TimeoutKind, Vote, VoteType
from qilian.node.signer_store import load_signer_state, save_signer_state
from qilian.node.wal import FSYNC_BUCKETS_S, SyncTimes, Wal, read_records
from qilian.shell.wal import WalHeight, WalTimeout, WalValidity, decode_record


def _t(h: int, r: int) -> WalTimeout:
    return WalTimeout(TimeoutKind.PROPOSE, h, r)


def test_typed_records_keep_the_old_wire_lists() -> None:
    """A WAL written before records were typed still replays: the typed records encode to the same lists."""
    assert WalHeight(7).encode() == ["height", 7]
    assert WalTimeout(TimeoutKind.PREVOTE, 7, 2).encode() == ["t", int(TimeoutKind.PREVOTE), 7, 2]
    assert WalValidity(b"\x01" * 32, False, None).encode() == ["a", b"\x01" * 32, False, b""]
    for rec in (WalHeight(3), _t(3, 1), WalValidity(b"\x02" * 32, False, None)):
        assert decode_record(rec.encode()) == rec


def test_a_valid_answer_records_the_block_bytes_it_was_given_or_encodes_them() -> None:
    """The validity check hands the block's encoding on (it measured the size with it); the record is the same
    either way and replays to the block."""
    from .test_storage import make_block

    block = make_block(5, 0)
    given = WalValidity(b"\3" * 32, True, block, block.encode())
    made = WalValidity(b"\3" * 32, True, block)
    assert given.encode() == made.encode() == ["a", b"\3" * 32, True, block.encode()]
    assert decode_record(given.encode()) == made
    assert WalValidity(b"\3" * 32, False, None, b"ignored").encode() == ["a", b"\3" * 32, False, b""]


def test_wal_round_trip_and_reset(tmp_path: Path) -> None:
    w = Wal(tmp_path / "cs.wal")
    w.reset(7)
    w.append(_t(7, 1))
    w.append(_t(7, 2))
    w.sync()
    w.close()
    assert Wal(tmp_path / "cs.wal").records == [WalHeight(7), _t(7, 1), _t(7, 2)]


def test_every_wal_fsync_is_counted_and_timed(tmp_path: Path) -> None:
    """The WAL times each real fsync (reset, sync of appended records; a clean log syncs nothing more): what
    /metrics exports as qilian_wal_fsync_seconds."""
    w = Wal(tmp_path / "cs.wal")
    assert w.sync_times.count == 0
    w.reset(7)  # writes the height marker and syncs it
    w.sync()  # nothing appended since: no fsync
    w.append(_t(7, 1))
    w.sync()
    w.close()
    st = w.sync_times
    assert st.count == 2 == w.syncs and st.sum_s > 0 and 0 < st.max_s <= st.sum_s
    cum = st.get_cumulative()
    assert [b for b, _ in cum] == [*FSYNC_BUCKETS_S, float("inf")] and cum[-1][1] == 2
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(cum))


def test_sync_times_buckets() -> None:
    st = SyncTimes()
    for s in (0.00005, 0.0001, 0.003, 2.0):  # at a bound counts in that bucket; beyond the last only in +Inf
        st.on_sync(s)
    cum = dict(st.get_cumulative())
    assert cum[0.0001] == 2 and cum[0.0025] == 2 and cum[0.005] == 3 and cum[1.0] == 3 and cum[float("inf")] == 4
    assert st.max_s == 2.0 and abs(st.sum_s - 2.00315) < 1e-9


@pytest.mark.parametrize("cut", [1, 3, 5, 8, 20])
def test_torn_tail_is_cut_not_fatal(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cs.wal"
    w = Wal(path)
    w.reset(3)
    w.append(WalValidity(b"x" * 32, False, None))
    w.sync()
    w.close()
    intact = path.stat().st_size
    w = Wal(path)
    w.append(WalValidity(b"y" * 32, False, None))
    w.sync()
    w.close()
    full = path.read_bytes()
    path.write_bytes(full[: len(full) - cut])  # a crash in the middle of the last record
    w = Wal(path)
    assert w.records == [WalHeight(3), WalValidity(b"x" * 32, False, None)]
    assert path.stat().st_size == intact
    w.append(_t(3, 9))  # and the log goes on from the cut
    w.sync()
    w.close()
    assert read_records(path)[0][-1] == _t(3, 9)


def test_corrupted_record_ends_the_log_there(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    w = Wal(path)
    w.reset(1)
    w.append(_t(1, 0))
    w.append(_t(1, 1))
    w.sync()
    w.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # checksum no longer matches
    path.write_bytes(bytes(data))
    assert Wal(path).records == [WalHeight(1), _t(1, 0)]


def test_signer_state_persists_and_still_refuses_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "signer" / "state"
    assert load_signer_state(path) == SignerState()
    addr = b"\x02" * 20
    vote = Vote(VoteType.PRECOMMIT, 5, 1, b"\x03" * 32, addr)
    st = check_sign(load_signer_state(path), vote)
    save_signer_state(path, st)
    reloaded = load_signer_state(path)  # "after a restart"
    assert reloaded == st
    assert check_sign(reloaded, vote) == reloaded  # the identical message may be re-signed
    with pytest.raises(SignRefused):
        check_sign(reloaded, Vote(VoteType.PRECOMMIT, 5, 1, None, addr))
    with pytest.raises(SignRefused):
        check_sign(reloaded, Vote(VoteType.PREVOTE, 5, 1, b"\x04" * 32, addr))
    prop = Proposal(6, 0, b"hdr", b"\x05" * 32, -1, addr)
    st2 = check_sign(reloaded, prop)
    save_signer_state(path, st2)
    assert load_signer_state(path) == st2


def test_corrupt_signer_state_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"\xff\x00garbage")
    with pytest.raises(RuntimeError, match="never delete"):
        load_signer_state(path)
