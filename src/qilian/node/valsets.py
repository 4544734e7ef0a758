"""The validator set of a height, for every part of the node that checks or casts votes (``node.valsets``).

The lookup itself is pure (:class:`qilian.execution.valsets.ValidatorSetBook`: ``current``/``next`` of the tip's
state for tip+1 and tip+2, a stored header's state for older heights, never genesis); this module plugs in the
node's chain store. The consensus shell reaches it through its Ledger port (``NodeLedger`` in
:mod:`qilian.node.consensus`); block checks, the API and the light-client paths call it directly.
"""

from __future__ import annotations

from qilian.crypto.suite import Suite
from qilian.execution.rules import ChainRules
from qilian.execution.valsets import GetRecordedSet, ValidatorSetBook, to_consensus_validators
from qilian.state import StateTree
from qilian.storage.store import ChainStore


class ValidatorSets(ValidatorSetBook):
    """Validator sets by height, read from the state of that height in the node's store."""

    def __init__(self, store: ChainStore, suite: Suite, rules: ChainRules,
                 get_recorded_set: GetRecordedSet | None = None):
        """``get_recorded_set``: a state-synced node's window sets (its record), else None."""
        self.store = store
        self.tree = StateTree(suite.hash, store)
        super().__init__(suite, rules, self._get_tip, self._get_header_root, self.tree.get_value, get_recorded_set)

    def _get_tip(self) -> tuple[int, bytes]:
        tip = self.store.get_tip()
        return tip.height, tip.state_root

    def _get_header_root(self, height: int) -> bytes | None:
        header = self.store.get_block_header(height)
        return None if header is None else header.state_root


__all__ = ["ValidatorSets", "to_consensus_validators"]
