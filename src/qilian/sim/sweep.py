"""Many seeds, one summary: what `qilian sim --sweep` and the CI sweep report.

Pure like the rest of the package: the caller owns the clock (a time box is a `should_stop` callback)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qilian.sim.config import BEHAVIOURS, DEFAULT_CHAOS_TICKS, DEFAULT_LIVENESS_BOUND, FAULTS, SimConfig
from qilian.sim.world import SimResult, run_simulation

PROBES = ("decisions in round > 0", "L28 unlocks", "L55 round skips", "L49 past-round decisions",
          "proposer rotations")
"""Coverage probes that must all fire across a sweep (the rest of `SimResult.probes` is informational)."""


@dataclass(slots=True)
class SweepSummary:
    """Totals over the seeds run so far."""

    seeds: int = 0
    """Seeds run."""
    failed: list[SimResult] = field(default_factory=list)
    """Runs with at least one violation."""
    violations: dict[str, int] = field(default_factory=dict)
    """Violation kind → count."""
    heights: int = 0
    """Heights committed by all correct nodes, summed over runs."""
    max_round: int = 0
    """Highest decision round seen."""
    messages: int = 0
    """Messages sent, summed."""
    events: int = 0
    """Events processed, summed."""
    max_liveness_ticks: int = 0
    """Worst heal-to-commit time among runs that met the bound."""
    probes: dict[str, int] = field(default_factory=dict)
    """Probe totals."""
    crash_points: int = 0
    """Crashes taken at a durable operation, summed."""

    def add(self, r: SimResult) -> None:
        """Fold one run in."""
        self.seeds += 1
        if r.violations:
            self.failed.append(r)
        for v in r.violations:
            self.violations[v.kind] = self.violations.get(v.kind, 0) + 1
        self.heights += r.heights
        self.max_round = max(self.max_round, r.max_round)
        self.messages += r.messages
        self.events += r.events
        if r.liveness_ticks is not None:
            self.max_liveness_ticks = max(self.max_liveness_ticks, r.liveness_ticks)
        self.crash_points += r.probes.get("crash points", 0)
        for k, c in r.probes.items():
            self.probes[k] = self.probes.get(k, 0) + c

    def get_silent_probes(self) -> list[str]:
        """Probes that never fired."""
        return [p for p in PROBES if not self.probes.get(p)]


def run_sweep(base: SimConfig, seeds: Iterable[int], on_result: Callable[[SimResult], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> SweepSummary:
    """Run `base` with each seed (only the seed changes) until the seeds run out or `should_stop()`."""
    summary = SweepSummary()
    for seed in seeds:
        if should_stop is not None and should_stop():
            break
        r = run_simulation(dataclasses.replace(base, seed=seed))
        summary.add(r)
        if on_result is not None:
            on_result(r)
    return summary


def format_replay_command(cfg: SimConfig) -> str:
    """The `qilian sim` command line that replays exactly this run."""
    parts = [f"qilian sim --seed {cfg.seed} --nodes {cfg.nodes} --byzantine {cfg.byzantine} --heights {cfg.heights}"]
    faults = "all" if set(cfg.faults) == set(FAULTS) else ("none" if not cfg.faults else
                                                           ",".join(f for f in FAULTS if f in cfg.faults))
    parts.append(f"--faults {faults}")
    if cfg.behaviours != BEHAVIOURS:
        parts.append(f"--behaviours {','.join(cfg.behaviours)}")
    if cfg.weighted:
        parts.append("--weighted")
    if cfg.chaos_ticks != DEFAULT_CHAOS_TICKS:
        parts.append(f"--chaos-ticks {cfg.chaos_ticks}")
    if cfg.liveness_bound_ticks != DEFAULT_LIVENESS_BOUND:
        parts.append(f"--liveness-bound {cfg.liveness_bound_ticks}")
    if cfg.allow_unsafe:
        parts.append("--allow-unsafe")
    if cfg.amnesia:
        parts.append("--amnesia")
    if cfg.crash_every:
        parts.append(f"--crash-every {cfg.crash_every}")
    if cfg.valset_changes:
        parts.append("--valset-changes")
    if cfg.early_valsets:
        parts.append(f"--early-valsets {','.join(str(i) for i in cfg.early_valsets)}")
    return " ".join(parts)
