"""Validator set: weighted voting power, thresholds and the weighted round-robin proposer.

Thresholds use integers only: "more than 2/3 of the total power" is `3 * power > 2 * total`, "more than 1/3" (f + 1
of the paper) is `3 * power > total`. With n > 3f by power these are the paper's 2f+1 and f+1.

Proposer selection (documented in docs/spec/consensus.md): a smooth weighted round robin by priority accumulation.
Powers are divided by their gcd; starting with every priority at 0, each step adds each validator's power to its
priority, picks the highest priority (ties: smallest address) and subtracts the total from the winner. After `total`
steps every validator has been picked exactly `power` times and all priorities are 0 again, so the sequence is
periodic and precomputed once. proposer(h, r) = sequence[(h + r) mod period]: a pure function of (height, round),
the same on every node whatever rounds earlier heights took."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_PROPOSER_PERIOD = 100_000
"""Bound on the precomputed proposer sequence (sum of powers after dividing by their gcd)."""


@dataclass(frozen=True)
class ValidatorSet:
    """Validators of one height and their voting power."""

    powers: Mapping[bytes, int]
    """Address → voting power (> 0)."""
    total: int = field(init=False)
    """Sum of the powers."""
    sequence: tuple[bytes, ...] = field(init=False, repr=False)
    """One period of the proposer sequence."""

    def __post_init__(self) -> None:
        assert self.powers, "a validator set needs validators"
        assert all(isinstance(p, int) and p > 0 for p in self.powers.values()), "powers must be positive integers"
        object.__setattr__(self, "powers", dict(sorted(self.powers.items())))
        object.__setattr__(self, "total", sum(self.powers.values()))
        object.__setattr__(self, "sequence", compute_proposer_sequence(self.powers))

    @classmethod
    def equal(cls, addresses: Iterable[bytes], power: int = 1) -> ValidatorSet:
        """A set where every validator has the same power."""
        return cls({a: power for a in addresses})

    def get_power(self, address: bytes) -> int:
        """Power of `address`, 0 if it is not a validator."""
        return self.powers.get(address, 0)

    def is_quorum(self, power: int) -> bool:
        """More than 2/3 of the total power (2f+1)."""
        return 3 * power > 2 * self.total

    def is_one_third(self, power: int) -> bool:
        """More than 1/3 of the total power (f+1): at least one correct validator among them."""
        return 3 * power > self.total

    def get_proposer(self, height: int, round: int) -> bytes:
        """proposer(h, r) of the paper."""
        assert height >= 0 and round >= 0
        return self.sequence[(height + round) % len(self.sequence)]


def compute_proposer_sequence(powers: Mapping[bytes, int]) -> tuple[bytes, ...]:
    """One period of the smooth weighted round robin over `powers` (see the module docstring)."""
    g = 0
    for p in powers.values():
        g = math.gcd(g, p)
    weights = {a: p // g for a, p in sorted(powers.items())}
    total = sum(weights.values())
    assert total <= MAX_PROPOSER_PERIOD, f"proposer period {total} too long: scale the powers down"
    priority = dict.fromkeys(weights, 0)
    out = []
    for _ in range(total):
        for a, w in weights.items():
            priority[a] += w
        winner = max(priority, key=lambda a: (priority[a], [-b for b in a]))
        priority[winner] -= total
        out.append(winner)
    assert all(v == 0 for v in priority.values()), "smooth weighted round robin must return to zero"
    return tuple(out)
