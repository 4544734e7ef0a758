"""The node shell's order of durability (docs/spec/consensus.md, "Order of durability"), on the real driver, node,
LMDB store, WAL and signer state of a one-validator chain, in process.

Crash points: every durable operation (WAL write, WAL fsync, signer-state save, block store) is numbered; for each
number N the node runs until operation N, which — like everything after it — never happens (SIGKILL), optionally
also losing the WAL bytes written since its last fsync (power loss). A fresh node then restarts on the same disk.
After every crash point the restarted node must keep deciding, its signer guard must never refuse, and every stored
block must carry a commit that passes ``check_commit``: the exact symptoms of issue 11 ("replaying 0 WAL records",
"signer guard: refusing to sign", "commit carries 0 of 1 voting power")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from qilian.consensus.signer import SignerState
from qilian.consensus.timeouts import TimeoutConfig
from qilian.consensus.types import Vote, VoteType
from qilian.execution.block import check_commit
from qilian.node.config import NodeConfig, init_home
from qilian.node.consensus import ConsensusDriver, FileSignerStore
from qilian.node.node import Node
from qilian.node.signer_store import save_signer_state
from qilian.node.wal import Wal
from qilian.shell.wal import WalRecord
from qilian.types.core import Block, ChainParams, Commit, Receipt

TIMEOUTS = TimeoutConfig(propose_base_ms=200, propose_delta_ms=100, prevote_base_ms=100, prevote_delta_ms=100,
                         precommit_base_ms=100, precommit_delta_ms=100)


class Crash(Exception):
    """The simulated process death: this operation and every later one never happen."""


class Plan:
    """Counts durable operations and kills the 'process' at operation number ``at``."""

    def __init__(self, at: int | None):
        self.at = at
        self.count = 0
        self.crashed = False

    def tick(self) -> None:
        if self.crashed or (self.at is not None and self.count >= self.at):
            self.crashed = True
            raise Crash(f"crash at durable operation {self.count}")
        self.count += 1


class CrashWal(Wal):
    def __init__(self, path: Path, plan: Plan):
        super().__init__(path)
        self.plan = plan
        self.synced_size = path.stat().st_size

    def append(self, record: WalRecord) -> None:
        self.plan.tick()
        super().append(record)

    def sync(self) -> None:
        if self.is_dirty:
            self.plan.tick()
        super().sync()
        self.synced_size = self.path.stat().st_size

    def reset(self, height: int) -> None:
        self.plan.tick()
        super().reset(height)
        self.synced_size = self.path.stat().st_size


class CrashNode(Node):
    plan: Plan

    def process_execute_and_store(self, block: Block, commit: Commit, hashes: list[bytes]) -> list[Receipt]:
        self.plan.tick()
        return super().process_execute_and_store(block, commit, hashes)


class CrashSignerStore(FileSignerStore):
    def __init__(self, path: Path, plan: Plan):
        super().__init__(path)
        self.plan = plan

    def save(self, state: SignerState) -> None:
        self.plan.tick()
        super().save(state)


def _home(tmp_path: Path) -> NodeConfig:
    home = tmp_path / "home"
    init_home(home, chain_id="wal-chain", suite_name="ed25519", organisations=("org1",),
              params=ChainParams(block_interval_ms=5, create_empty_blocks=True))
    return NodeConfig(home=home)


async def _run_until(driver: ConsensusDriver, node: Node, height: int, timeout: float,
                     plan: Plan | None = None) -> None:
    task = asyncio.get_running_loop().create_task(driver.run())
    deadline = time.monotonic() + timeout
    try:
        while node.get_tip().height < height and time.monotonic() < deadline:
            if (plan is not None and plan.crashed) or task.done():
                break
            await asyncio.sleep(0.005)
    finally:
        driver.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _run_node(cfg: NodeConfig, height: int, plan: Plan | None = None, power_loss: bool = False) -> tuple[int, int]:
    """Run a node on ``cfg``'s home until ``height`` (or the crash); returns (tip height, guard refusals)."""
    if plan is None:
        node = Node(cfg)
        driver = ConsensusDriver(node, None, TIMEOUTS, cfg.wal_path, cfg.signer_state_path)
    else:
        node = CrashNode(cfg)
        node.plan = plan
        driver = ConsensusDriver(node, None, TIMEOUTS, cfg.wal_path, cfg.signer_state_path,
                                 wal=CrashWal(cfg.wal_path, plan),
                                 signer_store=CrashSignerStore(cfg.signer_state_path, plan))
    node.consensus = driver
    try:
        asyncio.run(_run_until(driver, node, height, 20, plan))
    finally:
        driver.close()
        if power_loss and isinstance(driver.wal, CrashWal):
            with open(cfg.wal_path, "r+b") as f:  # the page cache dies with the machine
                f.truncate(driver.wal.synced_size)
        tip = node.get_tip().height
        node.close()
    return tip, driver.sign_refusals


def _assert_ledger_sound(cfg: NodeConfig) -> None:
    node = Node(cfg)
    try:
        tip = node.get_tip().height
        for h in range(1, tip + 1):
            block, commit = node.store.get_block(h), node.store.get_commit(h)
            assert block is not None and commit is not None
            check_commit(node.suite, node.rules.chain_id, node.genesis.validators, commit,
                         node.suite.hash(block.header.encode()), h)
    finally:
        node.close()


def _count_ops(tmp_path: Path, height: int) -> int:
    cfg = _home(tmp_path / "count")
    plan = Plan(None)
    tip, refusals = _run_node(cfg, height, plan)
    assert tip >= height and refusals == 0
    return plan.count


@pytest.mark.parametrize("power_loss", [False, True], ids=["sigkill", "power-loss"])
def test_no_crash_point_stores_an_unsigned_commit_or_makes_the_guard_refuse(tmp_path: Path, power_loss: bool) -> None:
    ops = _count_ops(tmp_path, 2)
    assert ops >= 20  # reset, value, proposal, prevote, precommit, store… per height
    for at in range(ops):
        cfg = _home(tmp_path / f"{'p' if power_loss else 'k'}{at}")
        crash = Plan(at)
        _run_node(cfg, 3, crash, power_loss)  # counted to height 2: the crash comes before height 3
        assert crash.crashed, f"crash point {at} was never reached"
        tip, refusals = _run_node(cfg, 4)
        assert refusals == 0, f"crash point {at}: the signer guard refused a message of the replayed core"
        assert tip >= 4, f"crash point {at}: the restarted node stopped deciding at height {tip}"
        _assert_ledger_sound(cfg)


def test_refused_own_vote_is_never_counted_nor_stored_in_a_commit(tmp_path: Path) -> None:
    """The guard already signed something else at height 1 (a lost data directory, an old key copy): the core
    must not count the votes the guard refuses, so the lone validator decides nothing — in particular no block is
    stored with a commit that carries none of the power."""
    cfg = _home(tmp_path)
    node = Node(cfg)
    me = node.key.address
    node.close()
    save_signer_state(cfg.signer_state_path, SignerState(1, 0, 2, Vote(VoteType.PRECOMMIT, 1, 0, b"\x01" * 32, me)))
    tip, refusals = _run_node_for(cfg, 1.0)
    assert refusals >= 1
    assert tip == 0, "a block was stored although this validator's only precommit was refused"


def _run_node_for(cfg: NodeConfig, seconds: float) -> tuple[int, int]:
    node = Node(cfg)
    driver = ConsensusDriver(node, None, TIMEOUTS, cfg.wal_path, cfg.signer_state_path)

    async def go() -> None:
        task = asyncio.get_running_loop().create_task(driver.run())
        await asyncio.sleep(seconds)
        driver.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(go())
    finally:
        driver.close()
        tip = node.get_tip().height
        node.close()
    return tip, driver.sign_refusals
