"""The validator set of a height, read from chain state: the one lookup behind the shell's Ledger port.

Validator sets are chain state (``sys:validators``, :mod:`qilian.execution.members`): after executing block h the
state holds ``current`` (signs h+1) and ``next`` (signs h+2). So the set of any height a node can be asked about
is read from an immutable state root — the tip's for tip+1 and tip+2, the root named by a stored header for older
heights (header h names the state after h-1, whose ``current`` signs h) — and never from genesis. Reading by root
(not the flat tip state) keeps the answer exact while the node's execution thread commits the next block. A
state-synced node never held the states of its window below the snapshot: those sets come from its sync record.

Pure: the chain comes in as three readers, so the node (its store, :mod:`qilian.node.valsets`) and the simulator (its
in-memory ledger, :mod:`qilian.sim.disk`) run this very lookup and the simulator checks the node's rule."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.crypto.suite import Suite
from qilian.execution.chain import ChainRules
from qilian.execution.members import CURRENT_KEY, NEXT_KEY, VALIDATOR_NAMESPACE
from qilian.types.core import ValidatorSet

MAX_CACHED: Final = 256
"""State roots and heights whose sets are kept in memory."""
MAX_CONSENSUS_VIEWS: Final = 16
"""Distinct sets whose consensus view (address → power) is kept."""

GetTip = Callable[[], tuple[int, bytes]]
"""(height, state root) of the committed tip."""
GetHeaderRoot = Callable[[int], bytes | None]
"""The state root named by the stored header of a height (the state after the height before), or None."""
GetValueAt = Callable[[bytes, str, bytes], bytes | None]
"""A value of the state with a given root."""
GetRecordedSet = Callable[[int], ValidatorSet | None]
"""The set of a height whose state this node never held (a state-synced node's window below its snapshot; the
sets were checked against the window headers' ``validators_hash`` at sync), or None for any other height."""


def to_consensus_validators(vset: ValidatorSet) -> ConsensusValidators:
    """The consensus core's view of a validator set: address → power."""
    return ConsensusValidators({v.address: v.power for v in vset.validators})


class ValidatorSetBook:
    """Validator sets by height, read from the state of that height (bounded caches; answers never change
    because every root read is immutable)."""

    def __init__(self, suite: Suite, rules: ChainRules, get_tip: GetTip, get_header_root: GetHeaderRoot,
                 get_value_at: GetValueAt, get_recorded_set: GetRecordedSet | None = None):
        self.suite = suite
        self.rules = rules
        self._get_tip = get_tip
        self._get_header_root = get_header_root
        self._get_value_at = get_value_at
        self._get_recorded_set = get_recorded_set
        self._by_root: OrderedDict[bytes, tuple[ValidatorSet, ValidatorSet]] = OrderedDict()
        self._by_height: OrderedDict[int, ValidatorSet] = OrderedDict()
        self._consensus: OrderedDict[bytes, ConsensusValidators] = OrderedDict()

    def get_sets_at_root(self, state_root: bytes) -> tuple[ValidatorSet, ValidatorSet]:
        """(current, next) in the state with this root."""
        sets = self._by_root.get(state_root)
        if sets is None:
            cur = self._get_value_at(state_root, VALIDATOR_NAMESPACE, CURRENT_KEY)
            nxt = self._get_value_at(state_root, VALIDATOR_NAMESPACE, NEXT_KEY)
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
        tip_height, tip_root = self._get_tip()
        if height == tip_height + 1:
            return self.get_sets_at_root(tip_root)[0]
        if height == tip_height + 2:
            return self.get_sets_at_root(tip_root)[1]
        if height > tip_height:
            return None
        vset = self._by_height.get(height)
        if vset is None and self._get_recorded_set is not None:
            vset = self._get_recorded_set(height)
        if vset is None:
            root = self._get_header_root(height)
            if root is None:
                return None
            vset = self.get_sets_at_root(root)[0]
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
            if len(self._consensus) > MAX_CONSENSUS_VIEWS:
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


__all__ = ["ValidatorSetBook", "to_consensus_validators"]
