"""Block assembly from a proposal's signed hashes: the block comes out in proposal order whatever order its
transactions arrive in, and each admitted transaction costs a lookup of the hashes still missing, not of the
whole proposal.

Why the second property matters: every admitted transaction wakes the waiting assemblies. Looking up all of a
5,000-transaction proposal's hashes at each wake was quadratic; in a 30-minute soak it took 20 % of a validator's
time by minute 27, while a proposal waited for its last transactions (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qilian.crypto import get_suite
from qilian.mempool.pool import Mempool, PoolEntry
from qilian.p2p.messages import GetTxs, ProposalMsg
from qilian.shell.mempool import MempoolReactor
from qilian.shell.timing import ShellTiming
from qilian.types.core import Block, Transaction, TxBody, compute_signed_tx_hash, compute_tx_hash
from tests.unit.test_storage import make_block

SUITE = get_suite("ed25519")


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Clock:
    """Time stands still; timers are kept and fired by the test."""

    def __init__(self) -> None:
        self.timers: list[tuple[_Timer, Callable[[], None]]] = []

    def get_monotonic_ms(self) -> int:
        return 0

    def get_wall_ms(self) -> int:
        return 0

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> _Timer:
        timer = _Timer()
        self.timers.append((timer, callback))
        return timer

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for timer, callback in timers:
            if not timer.cancelled:
                callback()


class _CountingMempool(Mempool):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def get_signed(self, signed_hash: bytes) -> PoolEntry | None:
        self.lookups += 1
        return super().get_signed(signed_hash)


class _Pool:
    """The node's admission port: a mempool, and (for relayed transactions) a verdict for every one — "full" once
    the test says the mempool is full, as the node answers under overload (signatures checked, nothing added)."""

    def __init__(self) -> None:
        self.mempool = _CountingMempool()
        self.full = False

    def get_verifying_tx(self, signed_hash: bytes) -> Transaction | None:
        return None

    def submit_batch(self, raws: list[bytes], from_client: bool,
                     done: Callable[[list[tuple[bytes, str, str]]], None]) -> None:
        out = []
        for raw in raws:
            tx = Transaction.decode(raw)
            th = compute_tx_hash(SUITE, tx.body)
            if self.full:
                out.append((th, "mempool_full", "full"))
            else:
                self.mempool.process_add(_entry(tx))
                out.append((th, "accepted", ""))
        done(out)

    def is_sig_verified(self, tx: Transaction, tx_hash: bytes) -> bool:
        return True

    def verify_many(self, items: list[tuple[Transaction, bytes]], done: Callable[[dict[bytes, bool]], None]) -> None:
        done({th: True for _tx, th in items})


class _Network:
    def __init__(self) -> None:
        self.asked: list[Any] = []

    def send(self, address: bytes, msg: Any) -> bool:
        self.asked.append(msg)
        return True

    def broadcast(self, msg: Any, exclude: Any = frozenset()) -> None:
        self.asked.append(msg)


def _tx(i: int) -> Transaction:
    return Transaction(TxBody("c", b"\1" * 32, i, 10, "kv", "put", (b"k%d" % i, b"v")), b"\2" * 64)


def _entry(tx: Transaction) -> PoolEntry:
    return PoolEntry(tx, compute_tx_hash(SUITE, tx.body), compute_signed_tx_hash(SUITE, tx), len(tx.encode()))


def test_a_block_is_assembled_in_proposal_order_looking_up_only_what_is_missing() -> None:
    txs = [_tx(i) for i in range(200)]
    signed = tuple(compute_signed_tx_hash(SUITE, tx) for tx in txs)
    header = make_block(5, len(txs)).header
    msg = ProposalMsg(0, 0, header, signed, None, (), b"\7" * 20, b"")
    pool, clock, net = _Pool(), _Clock(), _Network()
    reactor = MempoolReactor(pool=pool, network=net, clock=clock, timing=ShellTiming(), suite=SUITE,  # type: ignore[arg-type]
                             get_block_tx=lambda _h: None, get_tip_height=lambda: 4)
    for tx in txs[:190]:
        pool.mempool.process_add(_entry(tx))
    out: list[Block | None] = []
    reactor.assemble(msg, b"\7" * 20, out.append)
    clock.fire()  # the first attempt looks up every hash and asks the proposer for the 10 missing
    assert out == [] and pool.mempool.lookups == 200
    assert isinstance(net.asked[0], GetTxs) and list(net.asked[0].hashes) == list(signed[190:])
    # The missing ones arrive last-first, one admission each: each costs one lookup, of the one that arrived —
    # not a re-attempt over every hash still missing (under overload that starved the event loop).
    for tx in reversed(txs[190:]):
        before = pool.mempool.lookups
        pool.mempool.process_add(_entry(tx))
        reactor.on_tx_admitted(tx.encode(), from_client=False)
        assert pool.mempool.lookups - before == 1
    assert len(out) == 1 and out[0] is not None
    assert out[0].txs == tuple(txs) and out[0].header == header


def test_a_proposal_gets_its_fetched_transactions_even_when_gossip_kept_aside_is_at_its_bound() -> None:
    """Overload: every mempool is full, so relayed transactions are kept aside (``fetched``) up to
    MAX_FETCHED_TXS. The answer to a proposal's own fetch must still be kept — before, it was dropped once the
    bound was reached, no node could assemble the proposal, and the chain stalled round after round."""
    from qilian.p2p.messages import TxBatch
    from qilian.shell import mempool as shell_mempool

    pool, clock, net = _Pool(), _Clock(), _Network()
    reactor = MempoolReactor(pool=pool, network=net, clock=clock, timing=ShellTiming(), suite=SUITE,  # type: ignore[arg-type]
                             get_block_tx=lambda _h: None, get_tip_height=lambda: 4)
    pool.full = True
    bound = 50
    shell_mempool.MAX_FETCHED_TXS, saved = bound, shell_mempool.MAX_FETCHED_TXS
    try:
        gossip = [_tx(1000 + i) for i in range(bound + 5)]
        reactor.on_txs(b"\5" * 20, TxBatch(tuple(tx.encode() for tx in gossip)))
        assert len(reactor.fetched) == bound  # gossip kept aside, up to the bound
        txs = [_tx(i) for i in range(8)]
        msg = ProposalMsg(0, 0, make_block(5, len(txs)).header,
                          tuple(compute_signed_tx_hash(SUITE, tx) for tx in txs), None, (), b"\7" * 20, b"")
        out: list[Block | None] = []
        reactor.assemble(msg, b"\7" * 20, out.append)
        clock.fire()
        assert out == [] and isinstance(net.asked[-1], GetTxs) and len(net.asked[-1].hashes) == len(txs)
        reactor.on_txs(b"\7" * 20, TxBatch(tuple(tx.encode() for tx in txs)))  # the proposer's answer
        assert len(out) == 1 and out[0] is not None and out[0].txs == tuple(txs)
        # A committed block trims what was kept aside, never what a waiting proposal still lacks.
        reactor.fetched.update({bytes([i]) * 32: reactor.fetched[next(iter(reactor.fetched))] for i in range(bound)})
        reactor.on_committed([])
        assert reactor.fetched == {}
    finally:
        shell_mempool.MAX_FETCHED_TXS = saved


class _TickingClock(_Clock):
    """A clock the test moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0

    def get_monotonic_ms(self) -> int:
        return self.now


def test_the_fetch_deadline_grows_with_the_proposals_round() -> None:
    """A proposal whose transactions do not arrive is given up ("invalid") at the round's fetch deadline, and that
    deadline grows with the round as the consensus timeouts do: a fixed one made every round of an overloaded
    network fail the same way (a height took 114 s on a soak), and a node whose fetch alone was slow could not
    decide the block the others committed."""
    timing = ShellTiming()
    assert [timing.compute_fetch_timeout_ms(r) for r in (0, 1, 6, 1000)] == [2000, 2500, 5000, 30_000]
    txs = [_tx(i) for i in range(5)]
    header = make_block(5, len(txs)).header
    for round_, deadline in ((0, 2000), (6, 5000)):
        msg = ProposalMsg(round_, 0, header, tuple(compute_signed_tx_hash(SUITE, tx) for tx in txs), None, (),
                          b"\7" * 20, b"")
        pool, clock, net = _Pool(), _TickingClock(), _Network()
        reactor = MempoolReactor(pool=pool, network=net, clock=clock, timing=timing, suite=SUITE,  # type: ignore[arg-type]
                                 get_block_tx=lambda _h: None, get_tip_height=lambda: 4)
        out: list[Block | None] = []
        reactor.assemble(msg, b"\7" * 20, out.append)
        for clock.now in range(0, deadline, 250):
            clock.fire()
            assert out == [], (round_, clock.now)  # still fetching
        clock.now = deadline
        clock.fire()
        assert out == [None], round_
