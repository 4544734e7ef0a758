"""The read side: every query answered from ONE store snapshot, so no answer mixes two heights.

A block, its commit, its child (for the receipt proof) and the state nodes of a proof are read in one store
snapshot (:class:`qilian.storage.store.StoreSnapshot`); the proof documents come from the pure builders in
:mod:`qilian.sdk.proofs`, the same module the light client parses them with. The HTTP handlers are thin adapters
over these methods. Methods raise :class:`ApiError` (404 not found, 503 not fully stored) and never write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from qilian.api.errors import ApiError
from qilian.api.views import STATUS_NAMES, block_view, evidence_record_view, receipt_view, tx_view
from qilian.crypto.suite import Suite
from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.node.snapshots import describe_missing, get_state_sync_record
from qilian.sdk.proofs import get_state_doc, get_tx_proof_doc
from qilian.state import StateTree
from qilian.storage.store import ChainStore
from qilian.types.core import Block, Commit, compute_block_id, compute_tx_hash

MAX_BLOCKS_PAGE: Final = 100
"""Most block summaries in one page of ``GET /blocks``."""
MAX_EVIDENCE_PAGE: Final = 100
"""Most committed evidence records in one answer of ``GET /evidence``."""
MAX_EVIDENCE_SCAN: Final = 10_000
"""Most evidence records read to pick the newest (records are few: at most MAX_BLOCK_EVIDENCE a block)."""
MAX_SIGNATURE_WINDOW: Final = 100
"""Most recent commits scanned for validators' last signatures."""


class ReadSide:
    """Queries over a node's store; holds no state besides the store and the suite."""

    def __init__(self, store: ChainStore, suite: Suite):
        self.store = store
        self.suite = suite
        self.sync_record = get_state_sync_record(store)
        """A state-synced node's record (None: the node holds the chain from genesis): which heights it lacks."""

    def _check_held(self, height: int, what: str) -> None:
        """Raise 404 ``not_on_this_node`` when a state-synced node lacks ``what`` at ``height`` by design."""
        reason = describe_missing(self.sync_record, height, what)
        if reason is not None:
            raise ApiError(404, "not_on_this_node", reason)

    def _tx_hashes(self, block: Block) -> list[bytes]:
        return [compute_tx_hash(self.suite, tx.body) for tx in block.txs]

    # -- transactions ------------------------------------------------------------------------------------

    def get_tx(self, tx_hash: bytes) -> dict[str, Any] | None:
        """A committed transaction with its receipt and proofs, or None when not committed."""
        with self.store.begin_snapshot() as snap:
            loc = snap.get_tx_location(tx_hash)
            if loc is None:
                return None
            height, index = loc
            block, commit, receipts = snap.get_block(height), snap.get_commit(height), snap.get_receipts(height)
            if receipts is None:
                self._check_held(height, "receipts")
            if block is None or commit is None or receipts is None:
                raise ApiError(503, "unavailable", f"block {height} is not fully stored")
            child, child_commit = snap.get_block(height + 1), snap.get_commit(height + 1)
        return {
            "hash": tx_hash.hex(),
            "height": height,
            "index": index,
            "tx": tx_view(self.suite, block.txs[index], tx_hash),
            "receipt": receipt_view(receipts[index]),
            "proof": get_tx_proof_doc(self.suite, block, commit, index, receipts, child, child_commit),
        }

    # -- blocks ------------------------------------------------------------------------------------------

    def get_block(self, height: int | None) -> dict[str, Any]:
        """A block by height (None: the latest) with its transactions, last commit and own commit."""
        with self.store.begin_snapshot() as snap:
            tip = snap.get_tip().height
            if height is None:
                if tip == 0:
                    raise ApiError(404, "not_found", "no blocks yet")
                height = tip
            block = snap.get_block(height)
            if block is None:
                self._check_held(height, "block")
                raise ApiError(404, "not_found", f"no block at height {height} (the chain is at {tip})")
            commit = snap.get_commit(height)
        return block_view(self.suite, block, self._tx_hashes(block), commit)

    def get_block_tx_hashes(self, height: int) -> dict[str, Any]:
        """A block's transaction hashes and receipt statuses, in order."""
        with self.store.begin_snapshot() as snap:
            block = snap.get_block(height)
            if block is None:
                self._check_held(height, "block")
                raise ApiError(404, "not_found",
                               f"no block at height {height} (the chain is at {snap.get_tip().height})")
            receipts = snap.get_receipts(height) or []
        return {"height": height, "time_ms": block.header.time_ms,
                "tx_hashes": [h.hex() for h in self._tx_hashes(block)],
                "statuses": [STATUS_NAMES.get(r.status, str(r.status)) for r in receipts]}

    def get_block_summaries(self, before: int | None, limit: int) -> dict[str, Any]:
        """Newest-first block summaries below ``before`` (exclusive; None: from the tip), at most ``limit``."""
        limit = max(1, min(limit, MAX_BLOCKS_PAGE))
        items: list[dict[str, Any]] = []
        with self.store.begin_snapshot() as snap:
            tip = snap.get_tip().height
            top = tip if before is None else min(before - 1, tip)
            h = top
            bottom = 1 if self.sync_record is None else self.sync_record.window_start
            while h >= bottom and len(items) < limit:
                block, commit = snap.get_block(h), snap.get_commit(h)
                if block is not None:
                    items.append(_summary(self.suite, block, commit))
                h -= 1
        return {"tip": tip, "items": items, "next_before": h + 1 if h >= bottom else None}

    def get_signing_activity(self, window: int = MAX_SIGNATURE_WINDOW) -> dict[str, Any]:
        """For each validator address: the last height (within ``window`` recent blocks) whose commit carries its
        signature, and how many of those commits it signed."""
        window = max(1, min(window, MAX_SIGNATURE_WINDOW))
        last: dict[str, int] = {}
        counts: dict[str, int] = {}
        with self.store.begin_snapshot() as snap:
            tip = snap.get_tip().height
            for h in range(tip, max(0, tip - window), -1):
                commit = snap.get_commit(h)
                if commit is None:
                    continue
                for s in commit.signatures:
                    a = s.validator.hex()
                    last.setdefault(a, h)
                    counts[a] = counts.get(a, 0) + 1
        return {"tip": tip, "window": min(window, tip), "last_signed": last, "signed": counts}

    # -- evidence ----------------------------------------------------------------------------------------

    def get_evidence(self, limit: int, validator: bytes | None = None) -> dict[str, Any]:
        """Committed equivocation evidence, newest first (optionally of one validator); each record is provable
        with ``GET /state/sys:evidence/{hash}?encoding=hex`` and its block carries the signed votes."""
        limit = max(1, min(limit, MAX_EVIDENCE_PAGE))
        with self.store.begin_snapshot() as snap:
            tip = snap.get_tip().height
            items = [evidence_record_view(k, v) for k, v in snap.iter_namespace(EVIDENCE_NAMESPACE, MAX_EVIDENCE_SCAN)]
        if validator is not None:
            items = [i for i in items if i["validator"] == validator.hex()]
        items.sort(key=lambda i: (-i["committed_at"], i["hash"]))
        return {"tip": tip, "total": len(items), "items": items[:limit]}

    # -- state -------------------------------------------------------------------------------------------

    def get_state(self, namespace: str, key: bytes, height: int | None = None) -> dict[str, Any]:
        """A state value (or its absence) with a proof against the state root in the header of ``height`` (None:
        the latest). Header h commits the state *after block h − 1* — the state block h's transactions were
        checked and executed against — so ``height = h`` proves what held when a transaction of block h ran
        (a key's membership when it registered a document, say), however the state changed since."""
        return self.get_states([(namespace, key)], height)[0]

    def get_states(self, keys: Sequence[tuple[str, bytes]], height: int | None = None) -> list[dict[str, Any]]:
        """:meth:`get_state` for several (namespace, key) pairs, all proven from one snapshot against one header,
        so a document that lists several proven entries (``GET /gov/params``) never mixes two heights."""
        with self.store.begin_snapshot() as snap:
            tip = snap.get_tip()
            if tip.height == 0:
                raise ApiError(404, "not_found", "no blocks yet: no state is committed in a header")
            at = tip.height if height is None else height
            if not 1 <= at <= tip.height:
                raise ApiError(404, "not_found", f"no header at height {at} (the chain is at {tip.height})")
            self._check_held(at, "state")
            block, commit = snap.get_block(at), snap.get_commit(at)
            if block is None or commit is None:
                raise ApiError(503, "unavailable", f"block {at} is not stored")
            tree = StateTree(self.suite.hash, snap)
            root = block.header.state_root
            return [get_state_doc(self.suite, namespace, key, tree.get_value(root, namespace, key),
                                  tree.get_proof(root, namespace, key), block, commit) for namespace, key in keys]

    def get_state_page(self, namespace: str, prefix: bytes, after: bytes, limit: int, proofs: bool
                       ) -> dict[str, Any]:
        """A page of the state entries under ``prefix`` (latest executed state), each with — when ``proofs`` —
        its state document against the latest header, all from one snapshot so every proof is of one height.
        ``next`` is the key to pass as ``after`` for the following page (None on the last)."""
        with self.store.begin_snapshot() as snap:
            tip = snap.get_tip()
            if tip.height == 0:
                raise ApiError(404, "not_found", "no blocks yet: no state is committed in a header")
            rows = snap.get_state_page(namespace, prefix, after, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            entries: list[dict[str, Any]] = [{"key": k.hex(), "value": v.hex()} for k, v in rows]
            if proofs and rows:
                self._check_held(tip.height, "state")
                block, commit = snap.get_block(tip.height), snap.get_commit(tip.height)
                if block is None or commit is None:
                    raise ApiError(503, "unavailable", "tip block is not stored")
                tree = StateTree(self.suite.hash, snap)
                root = block.header.state_root
                for entry, (k, _) in zip(entries, rows, strict=True):
                    entry["state"] = get_state_doc(self.suite, namespace, k, tree.get_value(root, namespace, k),
                                                   tree.get_proof(root, namespace, k), block, commit)
        return {"height": tip.height, "entries": entries, "next": rows[-1][0].hex() if more else None}

def _summary(suite: Suite, block: Block, commit: Commit | None) -> dict[str, Any]:
    h = block.header
    return {"height": h.height, "block_id": compute_block_id(suite, h).hex(), "time_ms": h.time_ms,
            "tx_count": h.tx_count, "proposer": h.proposer.hex(),
            "round": None if commit is None else commit.round,
            "signatures": 0 if commit is None else len(commit.signatures)}

