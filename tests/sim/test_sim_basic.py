"""The simulator itself: its PRNG is the one specified, a seed replays to the same trace hash, and the checkers find
planted violations (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import subprocess
import sys

from qilian.consensus import ValidatorSet, Vote, VoteType, compute_value_id
from qilian.sim import Checker, Rng, SimConfig, run_simulation
from qilian.sim.app import GENESIS_ID, make_value
from qilian.sim.world import compute_validator_address


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


def _checker() -> tuple[Checker, list[bytes]]:
    keys = [compute_validator_address(i) for i in range(4)]
    return Checker(ValidatorSet.equal(keys), compute_value_id), keys


def _commit(checker: Checker, keys: list[bytes], value: bytes, height: int = 1, round: int = 0,
            signers: int = 3) -> tuple[Vote, ...]:
    votes = tuple(Vote(VoteType.PRECOMMIT, height, round, compute_value_id(value), k) for k in keys[:signers])
    for v in votes:
        checker.on_sign(0, v, True)
    return votes


def test_checker_flags_disagreement_invalid_value_and_weak_certificate() -> None:
    c, keys = _checker()
    a, b = make_value(1, GENESIS_ID, 0, 1), make_value(1, GENESIS_ID, 1, 2)
    c.on_decide(0, 1, 0, a, _commit(c, keys, a), "core")
    assert c.violations == []
    c.on_decide(1, 1, 1, b, _commit(c, keys, b, round=1), "core")
    assert [v.kind for v in c.violations] == ["agreement"]
    bad = make_value(2, b"\x01" * 32, 0, 3)  # wrong parent
    c.on_decide(0, 2, 0, bad, _commit(c, keys, bad, height=2), "core")
    assert [v.kind for v in c.violations][-1] == "validity"
    weak = make_value(3, compute_value_id(a), 0, 4)
    c2, _ = _checker()
    c2.on_decide(0, 1, 0, a, _commit(c2, keys, a), "core")
    c2.on_decide(0, 2, 0, weak, _commit(c2, keys, weak, height=2, signers=2), "core")
    assert [v.kind for v in c2.violations] == ["validity", "certificate"]
    forged = (Vote(VoteType.PRECOMMIT, 1, 0, compute_value_id(a), keys[3]),)  # never signed
    assert not c2.check_certificate(0, 1, 0, a, forged)


def test_checker_flags_a_correct_double_sign_but_not_a_byzantine_one() -> None:
    c, keys = _checker()
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
    assert r.heights >= 5 and r.max_round == 0 and r.probes["catch-up commits"] == 0


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
                assert not name.startswith(("qilian.node", "qilian.storage", "qilian.p2p", "qilian.cli")), name
