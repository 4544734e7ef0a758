"""The validator set of a height, for every part of the node that checks or casts votes.

Validator sets are chain state (``sys:validators``, see :mod:`qilian.execution.members`): after executing block h
the state holds ``current`` (signs h+1) and ``next`` (signs h+2). So the set of any height the node can be asked
about is read from an immutable state root — the tip's for tip+1 and tip+2, a stored header's for older heights —
and never from genesis. Reading by root (not the flat tip state) keeps the answer exact while the execution
thread commits the next block.

This is the one lookup the consensus shell, block sync and commit checks go through (``node.valsets``), so a
refactored shell adopts it by moving call sites, not logic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.crypto.suite import Suite
from qilian.execution.members import CURRENT_KEY, NEXT_KEY, VALIDATOR_NAMESPACE
from qilian.execution.rules import ChainRules
from qilian.state import StateTree
from qilian.storage.store import ChainStore
from qilian.types.core import ValidatorSet

MAX_CACHED: Final = 256
"""State roots and heights whose sets are kept in memory."""


def to_consensus_validators(vset: ValidatorSet) -> ConsensusValidators:
    """The consensus core's view of a validator set: address → power."""
    return ConsensusValidators({v.address: v.power for v in vset.validators})


class ValidatorSets:
    """Validator sets by height, read from the state of that height."""

    def __init__(self, store: ChainStore, suite: Suite, rules: ChainRules):
        self.store = store
        self.suite = suite
        self.rules = rules
        self.tree = StateTree(suite.hash, store)
        self._by_root: OrderedDict[bytes, tuple[ValidatorSet, ValidatorSet]] = OrderedDict()
        self._by_height: OrderedDict[int, ValidatorSet] = OrderedDict()
        self._consensus: OrderedDict[bytes, ConsensusValidators] = OrderedDict()

    def get_sets_at_root(self, state_root: bytes) -> tuple[ValidatorSet, ValidatorSet]:
        """(current, next) in the state with this root."""
        sets = self._by_root.get(state_root)
        if sets is None:
            cur = self.tree.get_value(state_root, VALIDATOR_NAMESPACE, CURRENT_KEY)
            nxt = self.tree.get_value(state_root, VALIDATOR_NAMESPACE, NEXT_KEY)
            if cur is None:  # a chain made before validator sets were state: genesis's, unchanged
                sets = (self.rules.genesis.validators, self.rules.genesis.validators)
            else:
                current = ValidatorSet.decode(cur)
                sets = (current, current if nxt is None else ValidatorSet.decode(nxt))
            self._by_root[state_root] = sets
            if len(self._by_root) > MAX_CACHED:
                self._by_root.popitem(last=False)
        return sets

    def get(self, height: int) -> ValidatorSet | None:
        """The set that signs block ``height``; None when it is not known yet (beyond tip + 2)."""
        if height < 1:
            return None
        tip = self.store.get_tip()
        if height == tip.height + 1:
            return self.get_sets_at_root(tip.state_root)[0]
        if height == tip.height + 2:
            return self.get_sets_at_root(tip.state_root)[1]
        if height > tip.height:
            return None
        vset = self._by_height.get(height)
        if vset is None:
            block = self.store.get_block(height)
            if block is None:
                return None
            vset = self.get_sets_at_root(block.header.state_root)[0]
            self._by_height[height] = vset
            if len(self._by_height) > MAX_CACHED:
                self._by_height.popitem(last=False)
        return vset

    def get_consensus(self, height: int) -> ConsensusValidators | None:
        """The consensus core's view of the set of ``height`` (built once per distinct set)."""
        vset = self.get(height)
        if vset is None:
            return None
        key = vset.compute_hash(self.suite)
        cv = self._consensus.get(key)
        if cv is None:
            cv = self._consensus[key] = to_consensus_validators(vset)
            if len(self._consensus) > 16:
                self._consensus.popitem(last=False)
        return cv

    def get_public_key(self, height: int, address: bytes) -> bytes | None:
        """The public key of a validator of ``height``, or None (not a validator, or the set is unknown)."""
        vset = self.get(height)
        v = vset.get_by_address(address) if vset is not None else None
        return None if v is None else v.public_key

    def is_known(self, height: int) -> bool:
        """Whether the set of ``height`` is known (messages for a later height cannot be checked yet)."""
        return self.get(height) is not None


__all__ = ["ValidatorSets", "to_consensus_validators"]
