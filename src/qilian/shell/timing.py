"""How often the shell does things, in milliseconds: one frozen value, so the simulator can scale every period
down with the consensus timeouts while the node keeps its real-time defaults."""

from __future__ import annotations

from dataclasses import dataclass

from qilian.shell.limits import ANTI_ENTROPY_S, FETCH_RETRY_S


@dataclass(frozen=True, slots=True)
class ShellTiming:
    """Periods and deadlines of the shell's reactors (ms)."""

    fetch_timeout_ms: int = 2000
    """How long block assembly waits for missing transactions before answering "invalid" (costs one round)."""
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
