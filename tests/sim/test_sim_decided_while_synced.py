"""A height decided by the core after block sync already stored it (the false "STATE DIVERGED" of the storage
branch's sigstop run, docs/spec/consensus.md "One view of the chain"), on the production shell in the simulator.

A lagging validator fetches block h from a peer while precommits of h keep arriving from the others; block sync
tells consensus only at the end of its batch, so the core can decide h with the tip already at h. The decided
block must then be compared with the stored block h — not its header's state root with the state after h."""

from __future__ import annotations

import dataclasses

import qilian.sim.world as world_module
from qilian.sim import SimConfig
from qilian.types.core import Block, Commit


def _stored_world() -> tuple[world_module.World, world_module.SimNode]:
    w = world_module.World(SimConfig(seed=3, nodes=4, heights=3, faults=frozenset(), chaos_ticks=0))
    r = w.run()
    assert r.ok, r.violations
    return w, w.nodes[0]


def test_a_height_decided_after_block_sync_stored_it_is_not_a_divergence() -> None:
    w, node = _stored_world()
    assert node.shell is not None
    ledger = node.disk.ledger
    tip = ledger.tip.height
    block, commit = Block.decode(ledger.blocks[tip]), ledger.commits[tip]
    # The shell's decide-then-commit path, entered for the stored tip as after block sync stored it.
    node.shell.consensus._commit_decided(block, commit)
    assert not w.checker.violations, w.checker.violations
    assert ledger.tip.height == tip and node.shell.consensus.applying is None


def test_a_different_block_decided_at_a_stored_height_is_a_divergence() -> None:
    """The guard above is not a hole: if the network decided another block at a height this node stored, the
    node halts loudly."""
    w, node = _stored_world()
    assert node.shell is not None
    ledger = node.disk.ledger
    tip = ledger.tip.height
    block = Block.decode(ledger.blocks[tip])
    other = dataclasses.replace(block, header=dataclasses.replace(block.header, time_ms=block.header.time_ms + 1))
    other_id = w.suite.hash(other.header.encode())
    node.shell.consensus._commit_decided(other, Commit(tip, 0, other_id, ledger.commits[tip].signatures))
    assert [v.kind for v in w.checker.violations] == ["divergence"]
    assert f"block {tip} decided by the network is not the one block sync stored" in w.checker.violations[0].detail
