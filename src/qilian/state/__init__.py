"""Authenticated world state: a sparse Merkle tree committing every key to the header's ``state_root``.

Pure code over a :class:`NodeStore`; see :mod:`qilian.state.tree` for the design and its reasons.
"""

from qilian.state.tree import (
    EMPTY_ROOT,
    MAX_KEY_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_VALUE_BYTES,
    ZERO_HASH,
    ZERO_REF,
    CorruptNodeError,
    MemoryNodeStore,
    MissingNodeError,
    NodeStore,
    StateCommit,
    StateError,
    StateLimitError,
    StateOverlay,
    StateProof,
    StateTree,
    compute_leaf_hash,
    compute_node_hash,
    compute_state_path,
    validate_write,
    verify_state_proof,
)

__all__ = [
    "EMPTY_ROOT",
    "MAX_KEY_BYTES",
    "MAX_NAMESPACE_BYTES",
    "MAX_VALUE_BYTES",
    "ZERO_HASH",
    "ZERO_REF",
    "CorruptNodeError",
    "MemoryNodeStore",
    "MissingNodeError",
    "NodeStore",
    "StateCommit",
    "StateError",
    "StateLimitError",
    "StateOverlay",
    "StateProof",
    "StateTree",
    "compute_leaf_hash",
    "compute_node_hash",
    "compute_state_path",
    "validate_write",
    "verify_state_proof",
]
