"""How often the shell does things, in milliseconds: one frozen value, so the simulator can scale every period
down with the consensus timeouts while the node keeps its real-time defaults."""

from __future__ import annotations

from dataclasses import dataclass

from qilian.shell.limits import ANTI_ENTROPY_S, FETCH_RETRY_S


@dataclass(frozen=True, slots=True)
class ShellTiming:
    """Periods and deadlines of the shell's reactors (ms)."""

    fetch_timeout_ms: int = 2000
    """How long block assembly waits for missing transactions of a round-0 proposal before answering "invalid"
    (costs the round, and the node cannot decide that block by itself: block sync has to bring it)."""
    fetch_round_delta_ms: int = 500
    """Added to the fetch deadline per round of the proposal (:meth:`compute_fetch_timeout_ms`)."""
    fetch_timeout_cap_ms: int = 30_000
    """No fetch waits longer (the consensus timeouts' own cap)."""
    fetch_retry_ms: int = int(FETCH_RETRY_S * 1000)
    """Missing transactions are asked of the proposal's sender first, then of every peer at this interval."""
    status_interval_ms: int = 1000
    """How often a node tells its peers its height (drives block sync) and checks for anti-entropy."""
    sync_timeout_ms: int = 5000
    """A sync request unanswered this long is abandoned and re-sent (to the most advanced peer)."""
    anti_entropy_ms: int = int(ANTI_ENTROPY_S * 1000)
    """A height not committed for this long re-sends what it holds."""
    tx_gossip_ms: int = 10
    """Client transactions are batched to peers at this interval."""
    pace_poll_ms: int = 50
    """The pacer looks again at least this often while idle (it also wakes on transactions and commits)."""
    busy_poll_ms: int = 20
    """How often the pacer looks while a height runs (cheap: it only checks that nothing is pending)."""

    def compute_fetch_timeout_ms(self, round_: int) -> int:
        """How long assembly waits for a proposal's missing transactions: linear in the proposal's round, capped,
        like the consensus timeouts (qilian.consensus.timeouts).

        Why it grows: Tendermint's liveness rests on every wait of a round growing with the round, so that once
        the network is slow but finite, some round is long enough. A fixed fetch deadline broke that: under
        overload (mempools full of different transactions, so a proposal's transactions must be fetched, and
        event loops slowed by admission) fetching and checking took longer than 2 s in *every* round, each
        validator answered "invalid", and on a 30-minute soak a height took 114 s; a node whose fetch alone timed
        out could not decide the block the others committed and waited 3 minutes for block sync."""
        return min(self.fetch_timeout_ms + max(0, round_) * self.fetch_round_delta_ms, self.fetch_timeout_cap_ms)
