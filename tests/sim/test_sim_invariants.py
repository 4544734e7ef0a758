"""The production shell under the simulator: pinned regression seeds, crash sweeps at numbered durable operations,
a time-boxed sweep of fresh seeds, the negative controls (the checkers do fail when the model's assumptions are
broken) and the coverage probes.

Every run here is the real `qilian.shell.Shell` (real core, WAL, signer guard, block building, execution, block
sync) per node over in-memory ports; a failure message carries the `qilian sim` command that replays it."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

import qilian.consensus.votes as votes_module
from qilian.sim import SimConfig, SimResult, World, run_simulation
from qilian.sim.config import FAULTS
from qilian.sim.sweep import PROBES, format_replay_command, run_sweep

SAFETY = {"agreement", "validity", "certificate", "double-sign", "guard-refused", "resend", "locking", "tx-twice",
          "tx-lost"}

MATRIX = [
    SimConfig(seed=0, nodes=4, byzantine=1),
    SimConfig(seed=0, nodes=4, byzantine=1, weighted=True),
    SimConfig(seed=0, nodes=7, byzantine=2, weighted=True),
    SimConfig(seed=0, nodes=10, byzantine=3),
    SimConfig(seed=0, nodes=4, byzantine=0, chaos_ticks=12_000),
    SimConfig(seed=0, nodes=4, byzantine=1, crash_every=600),
]
"""Shapes the pinned seeds and the sweep cycle through: 4, 7 and 10 validators, equal and weighted power, f
Byzantine, every fault kind."""

PINNED = {0: [1, 3], 1: [7], 2: [3], 3: [4], 4: [61], 5: [11, 26, 53, 59, 61, 62]}
"""Seeds per MATRIX row. Row 5 (the crash sweep) pins the seeds where the first crash sweep of the real shell found
violations — all of them in the checkers' model, not in the shell (docs/spec/consensus.md, "Simulator"): a message
signed and logged but not yet synced when the node died was re-sent after the restart (the checker counted a
signature only after the sync), and a lock taken (L36) by a core that died before signing its precommit was lost
(harmless: nothing of it had left the node; the checker now holds only signed locks)."""

CRASH_SWEEP = SimConfig(seed=0, nodes=4, byzantine=1, crash_every=600)
"""The crash scenario of issue 11: a crash (process or power loss, by the seed) planned every 100..600 ticks at a
seeded durable operation of a random correct node, on top of every other fault."""


def _explain(r: SimResult) -> str:
    lines = [f"{v.kind} at tick {v.tick} node {v.node}: {v.detail}" for v in r.violations[:5]]
    return "\n".join([f"replay: {format_replay_command(r.config)} --trace", *lines, *r.trace_tail[-20:]])


@pytest.mark.parametrize(("row", "seed"), [(row, s) for row, seeds in PINNED.items() for s in seeds])
def test_pinned_seed_is_safe_and_live(row: int, seed: int) -> None:
    r = run_simulation(dataclasses.replace(MATRIX[row], seed=seed))
    assert r.ok, _explain(r)
    assert r.heights >= r.config.heights and r.liveness_ticks is not None
    assert r.liveness_ticks <= r.config.liveness_bound_ticks


def test_sweep_of_fresh_seeds_time_boxed() -> None:
    """Fresh seeds every run (or QILIAN_SIM_SEED to replay a CI run); each seed is printed."""
    start = int(os.environ.get("QILIAN_SIM_SEED", int.from_bytes(os.urandom(4), "big")))
    budget = float(os.environ.get("QILIAN_SIM_SECONDS", "20"))
    deadline = time.monotonic() + budget
    print(f"\nsim sweep: QILIAN_SIM_SEED={start}")
    ran = 0
    seed = start
    while time.monotonic() < deadline and ran < 5000:
        cfg = dataclasses.replace(MATRIX[ran % len(MATRIX)], seed=seed)
        r = run_simulation(cfg)
        print(f"  seed {seed} nodes {cfg.nodes} byzantine {cfg.byzantine}{' weighted' if cfg.weighted else ''}: "
              f"{'ok' if r.ok else 'FAIL'} heights {r.heights} max round {r.max_round} {r.trace_hash[:12]}")
        assert r.ok, _explain(r)
        ran += 1
        seed += 1
    assert ran >= 5


def test_negative_control_duplicated_keys_with_half_the_power_break_agreement() -> None:
    """Two of four keys each on two nodes (1/2 of the power Byzantine, above the 1/3 the model allows): the
    checkers must find a fork within a bounded number of seeds — proof that they can fail."""
    base = SimConfig(seed=0, nodes=4, byzantine=2, behaviours=("dup-key",), allow_unsafe=True)
    summary = run_sweep(base, range(60), should_stop=lambda: False)
    kinds = {v.kind for r in summary.failed for v in r.violations}
    assert "agreement" in kinds, summary.violations
    first = min(r.config.seed for r in summary.failed if any(v.kind == "agreement" for v in r.violations))
    print(f"\nfirst fork at seed {first}")


def test_negative_control_equivocators_with_half_the_power_break_safety() -> None:
    base = SimConfig(seed=0, nodes=4, byzantine=2, behaviours=("equivocate", "double-vote", "spam"),
                     allow_unsafe=True)
    found = None
    for seed in range(150):
        r = run_simulation(dataclasses.replace(base, seed=seed))
        if {v.kind for v in r.violations} & {"agreement", "validity"}:
            found = seed
            break
    assert found is not None


def test_negative_control_restart_without_wal_double_signs() -> None:
    """Amnesia (no WAL, no signer state across a restart) must show up as a correct validator signing twice."""
    base = SimConfig(seed=0, nodes=4, faults=frozenset({"crash", "drop", "reorder"}), amnesia=True, crash_every=600)
    summary = run_sweep(base, range(10))
    assert summary.violations.get("double-sign", 0) > 0, summary.violations
    # and the same crashes with the WAL are safe
    safe = run_sweep(dataclasses.replace(base, amnesia=False), range(10))
    assert not safe.failed, _explain(safe.failed[0])


def test_negative_control_vote_keeper_that_drops_equivocations_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug the simulator found: counting only an equivocator's first vote lets one duplicated key stall a
    height forever. Put the old rule back and the liveness checker must say so."""
    monkeypatch.setattr(votes_module, "MAX_VALUES_PER_VALIDATOR", 1)
    base = SimConfig(seed=0, nodes=4, byzantine=1, behaviours=("dup-key", "double-vote"))
    kinds: set[str] = set()
    for seed in range(100):
        kinds |= {v.kind for v in run_simulation(dataclasses.replace(base, seed=seed)).violations}
        if "liveness" in kinds:
            break
    assert "liveness" in kinds and not kinds & SAFETY, kinds


CRASH_SWEEP_7 = dataclasses.replace(CRASH_SWEEP, nodes=7, byzantine=2)
"""The crash sweep with 7 validators, 2 of them Byzantine: L28 unlocks are rare everywhere, and more likely here."""


def test_coverage_probes_all_fire() -> None:
    """Decisions in round > 0, L28 unlocks, L55 round skips, L49 past-round decisions and proposer rotation all
    happen within a bounded sweep (seeds in order, so the result is reproducible). L28 unlocks are the rarest: in
    the 4-validator crash sweep the only one in seeds 20..79 was seed 26 until evidence gossip (which adds messages,
    so reshuffles every trace) moved it away; the 7-validator crash sweep has one at seed 17."""
    totals: dict[str, int] = {}
    runs = [dataclasses.replace(CRASH_SWEEP, seed=s) for s in range(20, 60)]
    runs += [dataclasses.replace(CRASH_SWEEP_7, seed=s) for s in range(0, 40)]
    for cfg in runs:
        r = run_simulation(cfg)
        assert r.ok, _explain(r)
        for k, v in r.probes.items():
            totals[k] = totals.get(k, 0) + v
        if all(totals.get(p) for p in PROBES):
            break
    print(f"\nprobes after {cfg}: {totals}")
    assert all(totals.get(p) for p in PROBES), totals


def test_every_fault_kind_and_behaviour_is_exercised() -> None:
    """The fault and Byzantine machinery really acts (a fault that never fires would make every seed vacuous)."""
    seen: dict[str, int] = {}
    roles: set[str] = set()
    for seed in range(12):
        r = run_simulation(SimConfig(seed=seed, nodes=7, byzantine=2))
        assert r.ok, _explain(r)
        for k, v in r.faults.items():
            seen[k] = seen.get(k, 0) + v
        roles |= set(r.roles)
    assert all(seen.get(f) for f in FAULTS), seen
    assert roles >= {"correct", "equivocate", "double-vote", "silent", "spam", "dup-key"}, roles


def test_crash_sweep_reaches_many_crash_points_without_a_violation() -> None:
    """A bounded slice of the issue's crash sweep in CI: 200 crash points (the full ≥ 2,000-point sweep is
    `qilian sim --crash-sweep 2000 --byzantine 1`, see docs/spec/consensus.md)."""
    crashes = 0
    seeds = 0
    stored = 0
    for seed in range(1000, 1200):
        r = run_simulation(dataclasses.replace(CRASH_SWEEP, seed=seed))
        assert r.ok, _explain(r)
        crashes += r.probes["crash points"]
        stored += r.heights
        seeds += 1
        if crashes >= 200:
            break
    print(f"\ncrash sweep: {seeds} seeds, {crashes} crash points, {stored} heights, 0 violations")
    assert crashes >= 200


def test_every_durable_operation_kind_is_a_crash_point() -> None:
    """The crash plans hit every kind of durable operation (WAL write, fsync, truncate, signer save, block
    store) — otherwise some crash point would never be tested."""
    ops: set[str] = set()
    for seed in range(40):
        w = World(dataclasses.replace(CRASH_SWEEP, seed=seed))
        w.run()
        ops |= {line.split(" at ")[1].split(" #")[0] for line in w._tail if " X crash " in line and " at " in line}
        for n in w.nodes:
            if n.disk.crashed_on:
                ops.add(n.disk.crashed_on)
        if ops >= {"wal-write", "wal-sync", "wal-truncate", "signer-save", "store"}:
            break
    assert ops >= {"wal-write", "wal-sync", "wal-truncate", "signer-save", "store"}, ops
