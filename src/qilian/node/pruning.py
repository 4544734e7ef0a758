"""State pruning on a node: how many recent states it must keep (the floor), and how much it deletes per block.

A node configured with ``[store] keep_states = N`` keeps the state tree of its last N versions (version v is the
state after block v; header v + 1 commits it) and deletes older nodes after each commit, in bounded batches, on
the execution thread — the store's one writer — never inside a consensus decision (the work is queued behind the
block's commit; the consensus shell reads through its own snapshot meanwhile). ``keep_states = 0`` (the default)
is an archive node: it keeps every state. The store does the deleting (:meth:`ChainStore.process_prune`); the
tree only reports what each commit replaced (:meth:`qilian.state.StateTree.compute_commit`).

Every read of a past state the node makes, and what each needs at tip t (the node checking block t + 1):

* **Validator set of tip + 1 and tip + 2** (proposals, votes, the commit of the block being decided, block sync,
  WAL replay): ``current`` / ``next`` of the tip's state — version t.
* **Validator set of the tip** (``ParentInfo.last_validators``: the last commit that block t + 1 carries; late
  precommits for height t): the state header t commits — version t − 1.
* **Validator set of an evidence height e** (``check_evidence`` on a block, on gossiped evidence): the state
  header e commits, version e − 1; evidence may be at most ``MAX_EVIDENCE_AGE_BLOCKS`` (1,000) old, so
  e ≥ t + 1 − 1000 and the version read is ≥ t − 1000. **This is the oldest state consensus reads.**
* **Governed chain params** (block limits, fuel prices): a pure function of any state from h − 2 on
  (:mod:`qilian.execution.params`); the node reads the tip's state — version t.
* **Membership, regulation, committed evidence, node endpoints** (admission, block checks, P2P): the tip's
  state (the flat table, and version t).
* **Transaction replay window** (``tx_validity_blocks``): the "committed before?" check reads the transaction
  index, never the state, and pruning never touches the index — so it sets no floor, whatever its value.
* **Executing a block** reads the flat current values and the tip's tree nodes — version t.

Reads the node *serves* but does not itself need: ``GET /state/…?height=H`` (version H − 1) and the proofs built
on it (``qilian evidence verify FILE --out CERT`` proves the registering key's membership at the registering
height), refused with 410 ``state_pruned`` below the window — an archive node answers them; the validator path
of light clients (``GET /gov/validators/path``) reads the sets the governance index keeps (``ChainStore``'s ``g``
table), so it does not depend on old states (entries written before the index kept sets fall back to the state).

Hence :data:`MIN_KEEP_STATES` = 1,001 (versions t − 1000 … t). A node restored by state sync has no older states
at all; that is the state-sync path's concern, not this floor's.
"""

from __future__ import annotations

from typing import Final

from qilian.execution.evidence import MAX_EVIDENCE_AGE_BLOCKS

MIN_KEEP_STATES: Final = MAX_EVIDENCE_AGE_BLOCKS + 1
"""The fewest state versions a pruning node may keep: the evidence of the oldest height a block may still carry
is checked against the validator set of the state ``MAX_EVIDENCE_AGE_BLOCKS`` versions below the tip (see the
module docstring for every historical read)."""
PRUNE_BATCH_ENTRIES: Final = 10_000
"""Stale entries one prune batch deletes (one synced write): bounds a batch's size, so a reader or the next
block's commit never waits behind a long delete (RocksDB's binding holds the GIL through a write)."""
PRUNE_MIN_ENTRIES_PER_BLOCK: Final = 10_000
"""Entries the pruner may delete after any block, however small, so a backlog (a node that was stopped, a larger
N made smaller) drains even on a quiet chain."""
PRUNE_CATCH_UP_FACTOR: Final = 2
"""After a block the pruner may delete this many times the entries that block recorded (plus the minimum above):
in a steady state each block makes about as many nodes stale as the block N versions earlier made prunable, so
twice that keeps up and a backlog shrinks by at least one block's worth per block."""


class KeepStatesTooSmall(ValueError):
    """A ``keep_states`` below the floor: the node would delete states its own consensus still reads."""


def check_keep_states(keep_states: int) -> None:
    """Raise unless ``keep_states`` is 0 (archive) or at least :data:`MIN_KEEP_STATES`; the message names the
    floor and why."""
    if type(keep_states) is not int or keep_states < 0:
        raise KeepStatesTooSmall(f"[store] keep_states must be an integer ≥ 0 (0: archive, keep every state), "
                                 f"not {keep_states!r}")
    if 0 < keep_states < MIN_KEEP_STATES:
        raise KeepStatesTooSmall(
            f"[store] keep_states = {keep_states} is below the floor of {MIN_KEEP_STATES}: consensus checks "
            f"evidence up to {MAX_EVIDENCE_AGE_BLOCKS} blocks old against the validator set of that height's "
            f"state, so a pruning node keeps at least the last {MIN_KEEP_STATES} states (0 keeps all: archive)")


def compute_prune_budget(stale_recorded: int) -> int:
    """Stale entries the pruner may delete after a block that recorded ``stale_recorded`` of them."""
    return PRUNE_MIN_ENTRIES_PER_BLOCK + PRUNE_CATCH_UP_FACTOR * max(0, stale_recorded)


__all__ = [
    "MIN_KEEP_STATES",
    "PRUNE_BATCH_ENTRIES",
    "PRUNE_CATCH_UP_FACTOR",
    "PRUNE_MIN_ENTRIES_PER_BLOCK",
    "KeepStatesTooSmall",
    "check_keep_states",
    "compute_prune_budget",
]
