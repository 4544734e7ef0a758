"""The mempool reactor: gossip of admitted transactions, answers to peers' GetTxs, and assembly of a proposed
block from the mempool plus what must be fetched.

Narrow interface: consensus asks :meth:`MempoolReactor.assemble`; the node (or the simulator) reports admissions
through :meth:`MempoolReactor.on_tx_admitted`; everything else arrives as peer messages.

A proposal names its transactions by *signed* hash, and the block is assembled from exactly those signed versions.
The mempool holds one version per body (the first seen); when the proposal names another version of a body this
node holds, that version is fetched like a missing transaction — so every node stores the proposer's bytes, and a
block ID means the same bytes everywhere (docs/spec/consensus.md, "Proposals and transaction fetch")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from qilian.crypto.suite import Suite
from qilian.p2p.messages import MAX_FRAME_BYTES, MAX_HASHES, MAX_TXS_PER_BATCH, GetTxs, ProposalMsg, TxBatch
from qilian.shell.ports import Clock, Network, TimerHandle, TxPool
from qilian.shell.timing import ShellTiming
from qilian.types.core import Block, Transaction

log = logging.getLogger("qilian.mempool")

MAX_FETCHED_TXS = 20_000
"""Transactions relayed by peers and kept outside the mempool (a full mempool refused them) in case a proposal
names them. A transaction a waiting proposal lacks is kept beyond this bound (those are at most one block's), so
gossip kept aside can never crowd out what a proposal needs."""


class _Assembly:
    """One proposal waiting for its transactions."""

    __slots__ = ("asks", "deadline", "done", "missing", "msg", "next_ask", "pending", "sender", "timer", "txs")

    def __init__(self, msg: ProposalMsg, sender: bytes | None, deadline: int, done: Callable[[Block | None], None]):
        self.msg = msg
        self.sender = sender
        self.deadline = deadline
        self.next_ask = 0
        self.asks = 0
        self.done = done
        self.missing: frozenset[bytes] = frozenset()
        """Signed hashes not found at the last attempt (what a fetch answer may bring)."""
        self.timer: TimerHandle | None = None
        self.txs: list[Transaction | None] = [None] * len(msg.signed_hashes)
        """The block's transactions found so far, in block order (None: not yet)."""
        self.pending: dict[bytes, list[int]] = {}
        """Signed hashes not found yet → their positions in the block, in block order: an attempt looks up only
        these. Every admitted transaction wakes the waiting assemblies, so looking up all of a 5,000-transaction
        proposal's hashes each time was quadratic — 20 % of a validator's time by minute 27 of a soak, while a
        proposal waited for its last few transactions (docs/benchmarks.md)."""
        for i, h in enumerate(msg.signed_hashes):
            self.pending.setdefault(h, []).append(i)


class MempoolReactor:
    """Transactions between peers."""

    def __init__(self, *, pool: TxPool, network: Network | None, clock: Clock, timing: ShellTiming, suite: Suite,
                 get_block_tx: Callable[[bytes], Transaction | None], get_tip_height: Callable[[], int]):
        self.pool = pool
        self.suite = suite
        self.network = network
        self.clock = clock
        self.timing = timing
        self._get_block_tx = get_block_tx
        self._get_tip_height = get_tip_height
        self.fetched: dict[bytes, tuple[Transaction, bytes, int]] = {}
        """Transactions fetched for proposals and not in the mempool, by signed hash → (transaction, body hash, tip
        height when kept); each signature verified. Either the mempool could not take them, or it holds the same
        body under another signature."""
        self.gossip_out: list[bytes] = []
        self._gossip_timer: TimerHandle | None = None
        self._assemblies: list[_Assembly] = []
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True
        if self._gossip_timer is not None:
            self._gossip_timer.cancel()
        for a in self._assemblies:
            if a.timer is not None:
                a.timer.cancel()
        self._assemblies = []

    # ------------------------------------------------------------------------------------------ gossip

    def on_tx_admitted(self, raw: bytes, from_client: bool) -> None:
        """A transaction entered the mempool: clients' ones are batched to peers (peers' ones are not relayed
        again — the network is a full mesh); a proposal waiting for it may be complete now."""
        if from_client and self.network is not None:
            self.gossip_out.append(raw)
            if self._gossip_timer is None and not self._stopping:
                self._gossip_timer = self.clock.call_later(self.timing.tx_gossip_ms, self._flush_gossip)
        if self._assemblies:
            self._on_arrived(self.suite.hash(raw))  # raw was decoded, hence canonical: this is its signed hash

    def _on_arrived(self, signed_hash: bytes) -> None:
        """One transaction entered the mempool: fill it into the proposals waiting for it, O(1) each.

        Why not re-attempt every waiting proposal (as a batch does): admission calls this once per transaction,
        and a re-attempt looks up every hash the proposal still lacks. Under overload — a proposal lacking 4,750
        of 5,000 transactions while thousands a second are admitted — that was millions of lookups a second on
        the event loop: timers fired tens of seconds late, fetch deadlines passed, and a node stopped following
        the chain for minutes (the 30-minute soak, docs/benchmarks.md)."""
        for a in list(self._assemblies):
            positions = a.pending.get(signed_hash)
            if positions is None:
                continue
            entry = self.pool.mempool.get_signed(signed_hash)
            if entry is None:
                continue
            del a.pending[signed_hash]
            for i in positions:
                a.txs[i] = entry.tx
            if not a.pending:  # (``missing`` stays as the last attempt left it: a superset, and only a bound's hint)
                self._attempt(a)  # complete: assembles and answers

    def _flush_gossip(self) -> None:
        self._gossip_timer = None
        out, self.gossip_out = self.gossip_out, []
        if self.network is None:
            return
        for i in range(0, len(out), MAX_TXS_PER_BATCH):
            self.network.broadcast(TxBatch(tuple(out[i:i + MAX_TXS_PER_BATCH])))

    def on_txs(self, sender: bytes | None, batch: TxBatch, finished: Callable[[], None] | None = None) -> None:
        """Transactions relayed by a peer (gossip, or answers to GetTxs): admitted like a client's. Valid ones the
        mempool cannot take (full, or already past a rule that depends on our height) are kept aside for
        assembling the proposal that needs them; so is a signed version a waiting proposal names when the mempool
        holds the same body under another signature (admission answers "known" for it without checking its
        signature, so it is verified here first). A peer relaying a malformed or badly signed one is cut off."""
        height = self._get_tip_height()

        def admitted(results: Sequence[tuple[bytes, str, str]]) -> None:
            other_versions: list[tuple[Transaction, bytes, bytes]] = []
            try:
                wanted = self._get_wanted()
                for raw, (th, status, message) in zip(batch.txs, results, strict=True):
                    if status in ("malformed", "bad_signature"):
                        self._report(sender, f"peer relayed a transaction that is {status}: {message}")
                        return
                    if not th or status == "accepted":
                        continue
                    sh = self.suite.hash(raw)  # raw decoded, hence canonical: its hash is the signed hash
                    if sh in self.fetched or self.pool.mempool.get_signed(sh) is not None:
                        continue
                    # What a waiting proposal lacks is kept whatever the bound: under a sustained overload the
                    # mempools are full, gossip kept aside filled ``fetched`` to its bound, and the answers to a
                    # proposal's own fetch were dropped — no node could assemble it, round after round (the
                    # 30-minute soak stalled so; docs/benchmarks.md).
                    is_wanted = sh in wanted
                    if not is_wanted and len(self.fetched) >= MAX_FETCHED_TXS:
                        continue
                    tx = Transaction.decode(raw)
                    if status == "known":
                        if is_wanted:
                            other_versions.append((tx, th, sh))
                    elif status != "committed":
                        if self.pool.is_sig_verified(tx, th):
                            self.fetched[sh] = (tx, th, height)
                        elif is_wanted:  # refused before its signature was checked: check it, then keep it
                            other_versions.append((tx, th, sh))
                if other_versions:
                    self.pool.verify_many([(tx, th) for tx, th, _ in other_versions],
                                          lambda verdicts: self._on_other_versions(sender, other_versions, verdicts,
                                                                                   height))
                self._wake()
            finally:
                if finished is not None:
                    finished()

        self.pool.submit_batch(list(batch.txs), False, admitted)

    def _get_wanted(self) -> set[bytes]:
        """Signed hashes waiting proposals lack."""
        out: set[bytes] = set()
        for a in self._assemblies:
            out |= a.missing
        return out

    def _on_other_versions(self, sender: bytes | None, items: list[tuple[Transaction, bytes, bytes]],
                           verdicts: Mapping[bytes, bool], height: int) -> None:
        """Signatures of fetched transactions a waiting proposal lacks — versions of bodies the mempool holds
        differently, or ones refused before their signature was checked: keep the good ones aside."""
        if self._stopping:
            return
        if not all(verdicts.values()):
            self._report(sender, "peer relayed a transaction that is bad_signature: signature does not verify for "
                                 "the sender key and this body")
            return
        for tx, th, sh in items:  # each one a waiting proposal lacked: kept beyond the bound
            self.fetched[sh] = (tx, th, height)
        self._wake()

    def _report(self, sender: bytes | None, reason: str) -> None:
        if self.network is not None:
            self.network.report_violation(sender, reason)

    def on_get_txs(self, sender: bytes, req: GetTxs) -> None:
        """Answer a peer's request for transactions of a proposal by signed hash (from the mempool, the blocks of
        this height and what we fetched ourselves), bounded by the frame size. Only the exact signed version asked
        for is sent: another version of the same body would not match the proposal's ``txs_root``."""
        if self.network is None:
            return
        out: list[bytes] = []
        size = 0
        for h in req.hashes:
            e = self.pool.mempool.get_signed(h)
            tx = e.tx if e is not None else (self._get_block_tx(h) or
                                             (self.fetched[h][0] if h in self.fetched else None))
            if tx is None:
                continue
            raw = tx.encode()
            size += len(raw) + 8
            if size > MAX_FRAME_BYTES - 1024 or len(out) >= MAX_TXS_PER_BATCH:
                break
            out.append(raw)
        if out:
            self.network.send(sender, TxBatch(tuple(out)))

    def on_committed(self, hashes: list[bytes]) -> None:
        """A block is stored: its transactions (by body hash: whichever signed versions we kept) need not be kept
        aside any more."""
        if self.fetched:
            gone = set(hashes)
            self.fetched = {sh: v for sh, v in self.fetched.items() if v[1] not in gone}
        if len(self.fetched) > MAX_FETCHED_TXS:  # drop what was kept aside, except what a proposal waits for
            wanted = self._get_wanted()
            self.fetched = {sh: v for sh, v in self.fetched.items() if sh in wanted}

    # ------------------------------------------------------------------------------------------ assembly

    def assemble(self, msg: ProposalMsg, sender: bytes | None, done: Callable[[Block | None], None]) -> None:
        """The proposal's block from our mempool and what we fetch: asked of the peer that sent the proposal
        first (the proposer, or a peer that relayed it), then of every peer every fetch_retry_ms, until the
        round's fetch deadline (:meth:`ShellTiming.compute_fetch_timeout_ms`). ``done`` is called exactly once,
        never inside this call."""
        a = _Assembly(msg, sender, self.clock.get_monotonic_ms() + self.timing.compute_fetch_timeout_ms(msg.round),
                      done)
        self._assemblies.append(a)
        a.timer = self.clock.call_later(0, lambda: self._attempt(a))

    def _wake(self) -> None:
        for a in list(self._assemblies):
            self._attempt(a)

    def _attempt(self, a: _Assembly) -> None:
        if a not in self._assemblies or self._stopping:
            return
        if a.timer is not None:
            a.timer.cancel()
            a.timer = None
        msg = a.msg
        still: dict[bytes, list[int]] = {}
        found = a.txs
        for h, positions in a.pending.items():
            e = self.pool.mempool.get_signed(h)
            if e is not None:
                tx: Transaction | None = e.tx
            elif h in self.fetched:
                tx = self.fetched[h][0]
            else:
                tx = self.pool.get_verifying_tx(h)
            if tx is None:
                still[h] = positions
            else:  # a transaction found once stays found: its signed hash fixes its every byte
                for i in positions:
                    found[i] = tx
        a.pending = still
        missing = list(still)
        a.missing = frozenset(missing)
        now = self.clock.get_monotonic_ms()
        if not missing:
            txs = tuple(tx for tx in found if tx is not None)
            self._finish(a, Block(msg.header, txs, msg.last_commit, msg.evidence))
            return
        net = self.network
        if now >= a.deadline or net is None:
            log.warning("proposal at height %d: %d transactions could not be fetched", msg.header.height, len(missing))
            self._finish(a, None)
            return
        if now >= a.next_ask:
            req = GetTxs(tuple(missing[:MAX_HASHES]))
            if a.asks > 0 or a.sender is None or not net.send(a.sender, req):
                net.broadcast(req)
            a.asks += 1
            a.next_ask = now + self.timing.fetch_retry_ms
        a.timer = self.clock.call_later(min(a.next_ask, a.deadline) - now, lambda: self._attempt(a))

    def _finish(self, a: _Assembly, block: Block | None) -> None:
        self._assemblies.remove(a)
        a.done(block)
