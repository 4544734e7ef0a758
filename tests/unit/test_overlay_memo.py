"""A block's overlay answers repeated reads of the parent state from memory — and never with stale bytes."""

from __future__ import annotations

from qilian.execution.env import MEMO_VALUE_BYTES, Overlay


class _CountingState:
    def __init__(self, values: dict[tuple[str, bytes], bytes]) -> None:
        self.values = values
        self.reads: list[tuple[str, bytes]] = []

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        self.reads.append((namespace, key))
        return self.values.get((namespace, key))


def test_repeated_reads_reach_the_store_once_and_writes_still_win() -> None:
    big = b"x" * (MEMO_VALUE_BYTES + 1)
    base = _CountingState({("ns", b"a"): b"1", ("ns", b"big"): big})
    overlay = Overlay(base, {})
    for _ in range(5):  # e.g. the same sender's membership, once per transaction
        assert overlay.get("ns", b"a") == b"1"
        assert overlay.get("ns", b"absent") is None
    assert base.reads == [("ns", b"a"), ("ns", b"absent")]
    overlay.tx_writes[("ns", b"a")] = b"2"  # a transaction's write shadows the remembered read …
    assert overlay.get("ns", b"a") == b"2"
    overlay.block_writes[("ns", b"a")] = None  # … and so does the block's (a delete)
    overlay.tx_writes = {}
    assert overlay.get("ns", b"a") is None
    overlay.block_writes[("ns", b"absent")] = b"3"
    assert overlay.get("ns", b"absent") == b"3"
    assert overlay.get("ns", b"big") == big and overlay.get("ns", b"big") == big  # large values: read each time
    assert base.reads.count(("ns", b"big")) == 2 and len(base.reads) == 4
