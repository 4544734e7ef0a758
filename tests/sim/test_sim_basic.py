"""The simulator itself: its PRNG is the one specified, a seed replays to the same trace hash (with the production
shell inside), and the checkers find planted violations (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import qilian.sim.world as world_module
from qilian.consensus import Vote, VoteType
from qilian.crypto import get_suite
from qilian.sim import Checker, Rng, SimConfig, run_simulation
from qilian.types.core import Block, ValidatorSet


def test_splitmix64_reference_values() -> None:
    # SplitMix64 seeded with 0: the published first outputs (e.g. the reference in Vigna's xoshiro seeding code)
    r = Rng(0)
    assert [r.next_u64() for _ in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    a, b = Rng(7).fork("net"), Rng(7).fork("net")
    assert [a.below(1000) for _ in range(50)] == [b.below(1000) for _ in range(50)]
    assert Rng(7).fork("net").next_u64() != Rng(7).fork("faults").next_u64()
    assert all(0 <= Rng(s).below(7) < 7 for s in range(200))
    assert sorted(Rng(3).shuffled(list(range(10)))) == list(range(10))


def test_same_seed_same_trace_hash_different_seed_different_hash() -> None:
    cfg = SimConfig(seed=12345, nodes=4, byzantine=1, heights=3)
    first, second = run_simulation(cfg), run_simulation(cfg)
    assert first.trace_hash == second.trace_hash and first.events == second.events > 100
    assert run_simulation(SimConfig(seed=12346, nodes=4, byzantine=1, heights=3)).trace_hash != first.trace_hash


def test_trace_hash_does_not_depend_on_python_hash_seed() -> None:
    """Set and dict order of bytes depends on PYTHONHASHSEED; the trace must not."""
    code = ("from qilian.sim import SimConfig, run_simulation;"
            "print(run_simulation(SimConfig(seed=99, nodes=4, byzantine=1, heights=3)).trace_hash)")
    hashes = set()
    for hash_seed in ("0", "1", "4242"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": ""})
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1 and len(hashes.pop()) == 64


def _stored_world() -> tuple[world_module.World, world_module.SimNode]:
    w = world_module.World(SimConfig(seed=3, nodes=4, heights=3, faults=frozenset(), chaos_ticks=0))
    r = w.run()
    assert r.ok, r.violations
    return w, w.nodes[0]


def test_checker_flags_disagreement_and_a_commit_that_fails_check_commit() -> None:
    """The storage checks are real: a block another correct node did not store, or a commit stripped of
    signatures, is a violation (a checker that cannot fail proves nothing)."""
    w, node = _stored_world()
    ledger = node.disk.ledger
    block = Block.decode(ledger.blocks[2])
    commit = ledger.commits[2]
    c = Checker({v.address: v.power for v in w.genesis.validators.validators}, w.suite, world_module.CHAIN_ID,
                w.genesis.validators)
    c.on_store(0, block, commit, [])
    assert c.violations == []
    other = dataclasses.replace(block, header=dataclasses.replace(block.header, time_ms=block.header.time_ms + 1))
    c.on_store(1, other, commit, [])
    assert [v.kind for v in c.violations][:1] == ["agreement"]
    c2 = Checker({v.address: v.power for v in w.genesis.validators.validators}, w.suite, world_module.CHAIN_ID,
                 w.genesis.validators)
    c2.on_store(0, block, dataclasses.replace(commit, signatures=commit.signatures[:2]), [])
    assert [v.kind for v in c2.violations] == ["certificate"]


def test_checker_flags_a_correct_double_sign_but_not_a_byzantine_one() -> None:
    keys = [bytes([i]) * 20 for i in range(4)]
    c = Checker(dict.fromkeys(keys, 1), get_suite("ed25519"), "x", ValidatorSet(()))
    c.on_sign(0, Vote(VoteType.PREVOTE, 1, 0, b"x" * 32, keys[0]), True)
    c.on_sign(0, Vote(VoteType.PREVOTE, 1, 0, b"x" * 32, keys[0]), True)  # identical: fine
    c.on_sign(1, Vote(VoteType.PREVOTE, 1, 0, b"x" * 32, keys[1]), False)
    c.on_sign(1, Vote(VoteType.PREVOTE, 1, 0, None, keys[1]), False)
    assert c.violations == []
    c.on_sign(0, Vote(VoteType.PREVOTE, 1, 0, None, keys[0]), True)
    assert [v.kind for v in c.violations] == ["double-sign"]


def test_a_fault_free_run_decides_every_height_in_round_zero() -> None:
    r = run_simulation(SimConfig(seed=1, nodes=4, heights=5, faults=frozenset(), chaos_ticks=0))
    assert r.ok, r.violations
    assert r.heights >= 5 and r.max_round == 0 and r.probes["crash points"] == 0
    assert r.probes["txs acknowledged"] > 0


def test_sim_package_is_pure() -> None:
    """The simulator is deterministic only if nothing in it reads a clock, `random` or the OS (import-linter checks
    the same in CI; this names the offending line)."""
    import ast
    from pathlib import Path

    import qilian.sim

    forbidden = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "secrets", "datetime",
                 "logging", "signal", "multiprocessing"}
    root = Path(qilian.sim.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name}:{node.lineno} imports {name}"
                assert not name.startswith(("qilian.node", "qilian.storage", "qilian.p2p.transport", "qilian.p2p.tls",
                                            "qilian.cli")), name
