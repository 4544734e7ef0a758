"""The shell: the reactors wired together, and the router that hands each peer message kind to its reactor.

The node (:mod:`qilian.node.consensus`) and the simulator (:mod:`qilian.sim.world`) build exactly this object over
their own ports; nothing else of the shell differs between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qilian.consensus.timeouts import TimeoutConfig
from qilian.p2p.messages import (
    Blocks,
    EvidenceMsg,
    GetBlocks,
    GetTxs,
    Hello,
    HelloProof,
    PeerViolation,
    ProposalMsg,
    Status,
    TxBatch,
)
from qilian.shell.apply import Applier
from qilian.shell.blocksync import BlockSyncReactor
from qilian.shell.consensus import ConsensusReactor, ShellObserver
from qilian.shell.mempool import MempoolReactor
from qilian.shell.ports import Clock, Ledger, Network, Signer, SignerStore, TxPool, WalFile
from qilian.shell.timing import ShellTiming
from qilian.types.core import Vote as SignedVote


class Shell:
    """Consensus, mempool and block-sync reactors over one set of ports."""

    def __init__(self, *, ledger: Ledger, pool: TxPool, network: Network | None, clock: Clock, wal: WalFile,
                 signer_store: SignerStore, signer: Signer, timeouts: TimeoutConfig,
                 timing: ShellTiming = ShellTiming(), on_fatal: Callable[[str], None] | None = None,
                 observer: ShellObserver | None = None):
        self.network = network
        self.fatal_reason = ""
        """Why the node halted (empty while it runs)."""
        self._on_fatal_cb = on_fatal
        self.applier = Applier(ledger)
        self.consensus = ConsensusReactor(ledger=ledger, pool=pool, network=network, clock=clock, wal=wal,
                                          signer_store=signer_store, signer=signer, timeouts=timeouts,
                                          applier=self.applier, timing=timing, on_fatal=self._on_fatal,
                                          observer=observer)
        self.mempool = MempoolReactor(pool=pool, network=network, clock=clock, timing=timing, suite=ledger.rules.suite,
                                      get_block_tx=self.consensus.get_block_tx,
                                      get_tip_height=self.consensus.get_tip_height)
        self.blocksync: BlockSyncReactor | None = None
        if network is not None:
            self.blocksync = BlockSyncReactor(ledger=ledger, pool=pool, network=network, clock=clock, timing=timing,
                                              applier=self.applier, consensus=self.consensus,
                                              on_fatal=self._on_fatal)
        self.consensus.blocks_source = self.mempool
        self.consensus.sync = self.blocksync
        self.consensus.on_stored = self.mempool.on_committed

    def _on_fatal(self, reason: str) -> None:
        if self.fatal_reason:
            return
        self.fatal_reason = reason
        self.stop()
        if self._on_fatal_cb is not None:
            self._on_fatal_cb(reason)

    def start(self) -> None:
        """Replay the WAL into the core, then start the periodic work (the network may connect after this)."""
        self.consensus.start()
        if self.blocksync is not None:
            self.blocksync.start()

    def stop(self) -> None:
        self.consensus.stop()
        self.mempool.stop()
        if self.blocksync is not None:
            self.blocksync.stop()

    def on_tx_admitted(self, raw: bytes, from_client: bool) -> None:
        """The node admitted a transaction into the mempool."""
        self.mempool.on_tx_admitted(raw, from_client)
        self.consensus.on_work()

    def on_peer_up(self, address: bytes) -> None:
        """A peer (re)connected: our height, then what we hold of this height; fetch from it if it is ahead."""
        if self.blocksync is not None:
            self.blocksync.on_peer_up(address)
        self.consensus.on_peer_up(address)
        if self.blocksync is not None:
            self.blocksync.on_peer_ready(address)

    def on_message(self, sender: bytes, msg: Any, finished: Callable[[], None] | None = None) -> bool:
        """Route one authenticated peer message to its reactor. Raises PeerViolation for provably bad input found
        at once; bad input found later is reported through the network port. Returns True when ``finished``
        will be called once the message's work is done (the transport reads the peer's next frame only then:
        back-pressure), False when the work is already done."""
        if isinstance(msg, SignedVote):
            self.consensus.on_vote(msg, sender)
        elif isinstance(msg, ProposalMsg):
            self.consensus.on_proposal(msg, sender)
        elif isinstance(msg, TxBatch):
            self.mempool.on_txs(sender, msg, finished)
            return True
        elif isinstance(msg, GetTxs):
            self.mempool.on_get_txs(sender, msg)
        elif isinstance(msg, EvidenceMsg):
            self.consensus.on_evidence(msg, sender)
        elif isinstance(msg, Status):
            if self.blocksync is not None:
                self.blocksync.on_status(sender, msg)
        elif isinstance(msg, GetBlocks):
            if self.blocksync is not None:
                self.blocksync.on_get_blocks(sender, msg)
        elif isinstance(msg, Blocks):
            if self.blocksync is not None:
                self.blocksync.on_blocks(sender, msg, finished)
                return True
        elif isinstance(msg, Hello | HelloProof):
            raise PeerViolation("second Hello on a connection")
        return False
