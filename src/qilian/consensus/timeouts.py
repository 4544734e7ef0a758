"""Timeout durations: linear in the round, capped. Never exponential (a doubling timer reached 4,096 s in Besu)."""

from __future__ import annotations

from dataclasses import dataclass

from qilian.consensus.types import TimeoutKind


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Base and per-round increment of each timer, and a cap on all of them (milliseconds)."""

    propose_base_ms: int = 3000
    """timeoutPropose(0)."""
    propose_delta_ms: int = 500
    """Added per round to timeoutPropose."""
    prevote_base_ms: int = 1000
    """timeoutPrevote(0)."""
    prevote_delta_ms: int = 500
    """Added per round to timeoutPrevote."""
    precommit_base_ms: int = 1000
    """timeoutPrecommit(0)."""
    precommit_delta_ms: int = 500
    """Added per round to timeoutPrecommit."""
    cap_ms: int = 30_000
    """No timer is ever longer than this."""

    def __post_init__(self) -> None:
        values = (self.propose_base_ms, self.propose_delta_ms, self.prevote_base_ms, self.prevote_delta_ms,
                  self.precommit_base_ms, self.precommit_delta_ms)
        assert all(v >= 0 for v in values) and self.cap_ms > 0

    def compute_duration_ms(self, kind: TimeoutKind, round: int) -> int:
        """base + round × delta, capped at `cap_ms`."""
        assert round >= 0
        base, delta = {
            TimeoutKind.PROPOSE: (self.propose_base_ms, self.propose_delta_ms),
            TimeoutKind.PREVOTE: (self.prevote_base_ms, self.prevote_delta_ms),
            TimeoutKind.PRECOMMIT: (self.precommit_base_ms, self.precommit_delta_ms),
        }[kind]
        return min(base + round * delta, self.cap_ms)
