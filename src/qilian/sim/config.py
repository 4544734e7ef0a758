"""What a simulation run is made of: every parameter, all integers, all derived from one seed by `qilian.sim.world`.

One tick is one millisecond of simulated time. Timeouts are scaled down from the node's defaults (the shape — linear
in the round, capped — is the same) so that a run of many rounds costs few events."""

from __future__ import annotations

from dataclasses import dataclass, field

from qilian.consensus.timeouts import TimeoutConfig

FAULTS = ("drop", "dup", "reorder", "partition", "asym", "isolate", "crash", "torn", "drift")
"""Fault kinds a run may use (`--faults`). Base network delays are always on.

- drop: messages lost (chaos phase only); dup: messages delivered twice; reorder: a heavy delay tail;
- partition: symmetric split in two; asym: one group cannot reach the other, the reverse works; isolate: one node
  cut off both ways; every partition is healed by a later fault event or by the final heal;
- crash: a correct node dies before one of its next 1..40 durable operations (seeded), as a process crash: it
  loses its memory; a WAL write it was in may be torn; it restarts later from its disk (qilian.sim.disk);
- torn: the same as a power loss: the unsynced WAL tail is lost too, but for a seeded torn prefix;
- drift: per-node clock rate error (±5 %) applied to its timers."""

BEHAVIOURS = ("equivocate", "double-vote", "silent", "spam", "dup-key")
"""Byzantine behaviours (`--behaviours`): equivocating proposer (two proposals, one per half of the network, the second
sometimes invalid), double voter (a vote for one value to one half, a conflicting vote to the other), silent,
future-round/future-height spammer, and one key running on two correct-looking nodes."""

SIM_TIMEOUTS = TimeoutConfig(propose_base_ms=300, propose_delta_ms=100, prevote_base_ms=150, prevote_delta_ms=100,
                             precommit_base_ms=150, precommit_delta_ms=100, cap_ms=3000)
"""Timeouts used by simulated nodes (ticks)."""

MAX_NODES = 64
"""Bound on validators in one run (event counts grow with the square of it)."""
MAX_HEIGHTS = 1000
"""Bound on heights in one run."""
DEFAULT_CHAOS_TICKS = 6000
"""Default length of the fault phase."""
DEFAULT_LIVENESS_BOUND = 40_000
"""Default liveness bound after the heal (ticks); see docs/spec/consensus.md for why it holds."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Parameters of one run. Only `seed` varies across a sweep."""

    seed: int
    """Root seed: network, faults, Byzantine choices, powers and application values all derive from it."""
    nodes: int = 4
    """Validators (distinct keys). A `dup-key` Byzantine adds one extra node holding a copy of its key."""
    byzantine: int = 0
    """How many validators are Byzantine. Must stay below 1/3 of the power unless `allow_unsafe`."""
    heights: int = 4
    """Heights every correct node must commit (at least one more after the heal)."""
    faults: frozenset[str] = field(default_factory=lambda: frozenset(FAULTS))
    """Enabled fault kinds (subset of FAULTS)."""
    behaviours: tuple[str, ...] = BEHAVIOURS
    """Byzantine behaviours to pick from (per Byzantine validator, by the seed)."""
    weighted: bool = False
    """Random voting powers 1..10 instead of equal powers."""
    chaos_ticks: int = DEFAULT_CHAOS_TICKS
    """Length of the phase in which faults happen; then everything heals."""
    liveness_bound_ticks: int = DEFAULT_LIVENESS_BOUND
    """After the heal every correct node must commit a new height within this many ticks."""
    max_events: int = 3_000_000
    """Hard bound on simulated events per run."""
    allow_unsafe: bool = False
    """Allow ≥ 1/3 Byzantine power (negative control): violations are then expected."""
    amnesia: bool = False
    """Restarted nodes lose their WAL and signer state too (negative control for the double-sign checker)."""
    timeouts: TimeoutConfig = SIM_TIMEOUTS
    """Consensus timeouts of every node (ticks)."""
    gossip_ticks: int = 300
    """Kept for replay commands of older runs (the shell's own periods are `qilian.sim.world.SIM_TIMING`)."""
    crash_every: int = 0
    """Crash sweep: besides the fault schedule, plan a crash (process or power loss, by the seed) on a random
    running correct node every 100..`crash_every` ticks of the chaos phase (0: only the schedule's crashes)."""
    trace_tail: int = 60
    """How many last trace lines a failure report shows."""
    valset_changes: bool = False
    """Governance changes the validator set during the run: the client (an admin) proposes, one after the other,
    adding a spare node that starts as an observer, doubling a correct validator's power and removing another
    correct validator; each signs from two blocks after the one that decided it (H+2)."""
    early_valsets: tuple[int, ...] = ()
    """Negative control: these node indices apply a validator-set change one height early (H+1) in the set their
    shell asks for; the checkers must catch it."""

    def __post_init__(self) -> None:
        assert 1 <= self.nodes <= MAX_NODES, f"nodes must be in 1..{MAX_NODES}"
        assert 0 <= self.byzantine <= self.nodes, "byzantine must be in 0..nodes"
        assert 1 <= self.heights <= MAX_HEIGHTS, f"heights must be in 1..{MAX_HEIGHTS}"
        unknown = set(self.faults) - set(FAULTS)
        assert not unknown, f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}"
        bad = set(self.behaviours) - set(BEHAVIOURS)
        assert not bad and self.behaviours, f"unknown behaviours {sorted(bad)}; known: {', '.join(BEHAVIOURS)}"
        assert self.chaos_ticks >= 0 and self.liveness_bound_ticks > 0 and self.max_events > 0
        assert self.gossip_ticks > 0 and self.trace_tail >= 0 and self.crash_every >= 0
        assert not self.valset_changes or (self.nodes >= 4 and not self.weighted), \
            "validator-set changes need at least 4 equal-power validators (the rails: at most 1/3 of the power moved)"


def parse_faults(text: str) -> frozenset[str]:
    """`all`, `none` or a comma-separated subset of FAULTS."""
    text = text.strip()
    if text in ("all", ""):
        return frozenset(FAULTS)
    if text == "none":
        return frozenset()
    items = frozenset(t.strip() for t in text.split(",") if t.strip())
    unknown = items - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    return items


def parse_behaviours(text: str) -> tuple[str, ...]:
    """`mix` (all) or a comma-separated subset of BEHAVIOURS."""
    text = text.strip()
    if text in ("mix", "all", ""):
        return BEHAVIOURS
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = set(items) - set(BEHAVIOURS)
    if unknown:
        raise ValueError(f"unknown behaviour {', '.join(sorted(unknown))}; known: {', '.join(BEHAVIOURS)}")
    return items
