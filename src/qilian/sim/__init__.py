"""Deterministic simulator of the consensus core: fake clock, hostile network, crashes, Byzantine validators and
invariant checkers, all from one seed. Pure: no IO, clock or `random` (see docs/spec/consensus.md, "Simulator")."""

from qilian.sim.checkers import Checker, Violation
from qilian.sim.config import BEHAVIOURS, FAULTS, SimConfig, parse_behaviours, parse_faults
from qilian.sim.rng import Rng
from qilian.sim.world import SimResult, World, run_simulation

__all__ = ["BEHAVIOURS", "FAULTS", "Checker", "Rng", "SimConfig", "SimResult", "Violation", "World",
           "parse_behaviours", "parse_faults", "run_simulation"]
