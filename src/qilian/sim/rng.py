"""The simulator's only source of randomness: SplitMix64, written out so that no library can change it under us.

Why not `random`: its algorithm and seeding are CPython details, and the pure packages must not import it. SplitMix64
(Steele, Lea, Flood 2014) is 64-bit integer arithmetic only, passes BigCrush, and is trivial to reimplement in another
language to replay a trace. Every draw is an integer; nothing that affects the trace ever touches a float."""

from __future__ import annotations

import hashlib

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


class Rng:
    """A SplitMix64 stream. `fork(label)` gives an independent stream named by `label`, so adding draws to one
    concern (say, the network) does not shift the draws of another (say, the fault schedule)."""

    __slots__ = ("seed", "state")

    def __init__(self, seed: int) -> None:
        self.seed = seed & MASK64
        """The seed this stream started from (forks derive from it, not from the current state)."""
        self.state = self.seed

    def next_u64(self) -> int:
        """Next 64-bit output."""
        self.state = (self.state + GOLDEN_GAMMA) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Uniform integer in [0, n) by multiply-shift (bias < n / 2**64, irrelevant for a simulator)."""
        assert n > 0
        return (self.next_u64() * n) >> 64

    def between(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        assert hi >= lo
        return lo + self.below(hi - lo + 1)

    def chance(self, permille: int) -> bool:
        """True with probability permille / 1000."""
        return permille > 0 and self.below(1000) < permille

    def pick(self, items: list[int] | tuple[int, ...]) -> int:
        """One element of a non-empty sequence."""
        return items[self.below(len(items))]

    def shuffled(self, items: list[int] | tuple[int, ...]) -> list[int]:
        """A Fisher-Yates shuffled copy."""
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def fork(self, label: str) -> Rng:
        """An independent stream for one concern, derived from this stream's seed and `label` only."""
        digest = hashlib.sha256(b"qilian-sim:%d:%s" % (self.seed, label.encode())).digest()
        return Rng(int.from_bytes(digest[:8], "big"))
