"""The shell's IO, as ports: everything the reactors need from the world, and nothing more.

Why ports: the shell (WAL, signer guard, relay, block sync, the order of durability) is where crash bugs live, so
the simulator must run *this* code, not a model of it. The node plugs in asyncio timers, the TLS transport, a WAL
file, the signer-state file and RocksDB (:mod:`qilian.node.adapters`); the simulator plugs in a seeded clock, its
network and an in-memory disk that can die between any two writes or fsyncs (:mod:`qilian.sim.disk`).

Rules of the ports: time is an integer of milliseconds; work that takes time in production (executing a block,
verifying signatures, admitting transactions) answers through a callback, never by blocking; a port that fails
raises (the simulator's crash is an exception that unwinds the shell exactly where the process would die)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from qilian.consensus.signer import SignerState
from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.execution.block import ParentInfo
from qilian.execution.rules import ChainRules
from qilian.mempool.pool import Mempool
from qilian.shell.wal import WalRecord
from qilian.types.core import Block, Commit, Receipt, Transaction, ValidatorSet
from qilian.types.struct import Wire


class TimerHandle(Protocol):
    """A scheduled callback."""

    def cancel(self) -> None:
        """It will not run."""


class Clock(Protocol):
    """Time and timers."""

    def get_monotonic_ms(self) -> int:
        """Milliseconds on a clock that never goes back (pacing, anti-entropy, sync timeouts)."""

    def get_wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (block header time)."""

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` after ``delay_ms`` (on the shell's one thread of control)."""


class Network(Protocol):
    """Authenticated peers, addressed by their node address."""

    def send(self, address: bytes, msg: Wire) -> bool:
        """Queue ``msg`` for one peer; False when it is not connected."""

    def broadcast(self, msg: Wire, exclude: frozenset[bytes] | set[bytes] = frozenset()) -> None:
        """Queue ``msg`` for every connected peer but ``exclude``."""

    def get_peers(self) -> list[bytes]:
        """Addresses of the connected peers."""

    def get_peer_height(self, address: bytes) -> int:
        """The committed height a peer last told us (0 when unknown)."""

    def set_peer_height(self, address: bytes, height: int) -> None:
        """Remember a peer's committed height (from its Status)."""

    def report_violation(self, address: bytes | None, reason: str) -> None:
        """A peer sent provably bad input after its message was accepted (found by work that finished later):
        count it and disconnect the peer."""


class WalFile(Protocol):
    """The consensus write-ahead log of the current height."""

    records: list[WalRecord]
    """The intact records found when the log was opened (a torn tail already cut)."""

    @property
    def is_dirty(self) -> bool:
        """Records were appended since the last sync."""

    def append(self, record: WalRecord) -> None:
        """Write a record (it survives a process crash, not a power loss, until :meth:`sync`)."""

    def sync(self) -> None:
        """Make every appended record durable."""

    def reset(self, height: int) -> None:
        """Drop the old records and start the log of ``height`` (durably)."""


class SignerStore(Protocol):
    """Where the signer guard's state lives (outside the data directory)."""

    def load(self) -> SignerState:
        """The persisted state (the initial one if none)."""

    def save(self, state: SignerState) -> None:
        """Persist atomically and durably, before any signature it allows is released."""


class Ledger(Protocol):
    """The committed chain: the tip and its facts, stored blocks, and executing a decided block."""

    rules: ChainRules
    """The chain's rules (genesis, suite, parameters)."""

    def get_parent_info(self) -> ParentInfo:
        """The committed tip as the next block's parent."""

    def get_block_bytes(self, height: int) -> bytes | None:
        """A stored block's canonical bytes."""

    def get_commit(self, height: int) -> Commit | None:
        """A stored block's commit."""

    def get_committed(self, tx_hashes: Iterable[bytes]) -> set[bytes]:
        """Those of ``tx_hashes`` already on chain."""

    def get_validators(self, height: int) -> ValidatorSet | None:
        """The validator set that signs block ``height``, from chain state (a change decided in block h signs from
        h+2, docs/governance.md); None when it is not known yet (beyond tip + 2). Never genesis's by default: the
        shell checks every vote, proposal and commit against the set of its own height."""

    def get_consensus_validators(self, height: int) -> ConsensusValidators | None:
        """The consensus core's view (address → power) of :meth:`get_validators`; the node's key absent from it
        makes this node an observer of that height (it follows, never proposes or votes)."""

    def get_public_key(self, height: int, address: bytes) -> bytes | None:
        """The key of a validator of ``height``; None when ``address`` is none of them or the set is unknown."""

    def execute_and_store(self, block: Block, commit: Commit, hashes: list[bytes],
                          done: Callable[[list[Receipt] | None, BaseException | None], None]) -> None:
        """Execute the next block and store it with its commit and results in one durable write; then call
        ``done(receipts, None)`` — or ``done(None, error)`` — on the shell's thread of control."""

    def on_block_stored(self, block: Block, commit: Commit, hashes: list[bytes], receipts: list[Receipt]) -> None:
        """After the durable write: drop the block's transactions from the mempool, answer waiters, notify."""


class TxPool(Protocol):
    """Transaction admission: the mempool and the signature-verdict cache."""

    @property
    def mempool(self) -> Mempool:
        """Admitted transactions waiting for a block."""

    @property
    def results_pending(self) -> bool:
        """The last block had transactions whose results a next header must commit."""

    def submit_batch(self, raws: list[bytes], from_client: bool,
                     done: Callable[[Sequence[tuple[bytes, str, str]]], None]) -> None:
        """Admit transactions (rules, dedup, signatures once); ``done`` gets (hash, status, message) each."""

    def verify_many(self, items: list[tuple[Transaction, bytes]], done: Callable[[Mapping[bytes, bool]], None]) -> None:
        """Signature verdicts (keyed like the verdict cache) of transactions not necessarily admitted."""

    def get_verifying_tx(self, signed_hash: bytes) -> Transaction | None:
        """The transaction with this signed hash whose signature check is running."""

    def is_sig_verified(self, tx: Transaction, tx_hash: bytes) -> bool:
        """This very signature was verified for this body."""

    def get_sig_checked(self, txs: Sequence[Transaction], tx_hashes: Sequence[bytes]) -> dict[bytes, bool]:
        """For ``check_block``: hashes of these transactions whose own signature is verified."""


class Signer(Protocol):
    """The node key (a port so that a key held elsewhere — an HSM — fits the same shell)."""

    address: bytes
    """The key's address."""

    def sign(self, message: bytes) -> bytes:
        """Sign bytes the signer guard has already allowed."""
