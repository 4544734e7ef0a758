"""The read side: every query answered from ONE store snapshot, so no answer mixes two heights.

A block, its commit, its child (for the receipt proof) and the state nodes of a proof are read in one store
snapshot (:class:`qilian.storage.store.StoreSnapshot`); the proof documents come from the pure builders in
:mod:`qilian.sdk.proofs`, the same module the light client parses them with. The HTTP handlers are thin adapters
over these methods. Methods raise :class:`ApiError` (404 not found, 410 state pruned on this node, 503 not fully
stored) and never write.

Proofs carry their own validator path. A proof's header is signed by the validator set of its height; a verifier
that trusts only genesis can check it only through the chain of set changes since genesis. So whenever the set
signing a header a document proves against is not genesis's, :meth:`ReadSide.get_tx` and :meth:`ReadSide.get_states`
attach ``validator_path`` (the ``GET /gov/validators/path`` document up to that height, read from the same
snapshot) and the SDK's verifiers use it. Every proof-carrying answer — and every certificate built from them —
therefore stays checkable offline after governance changes the validators; no caller has to remember to fetch
the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from qilian.api.errors import ApiError
from qilian.api.views import STATUS_NAMES, block_view, evidence_record_view, receipt_view, tx_view
from qilian.crypto.suite import Suite
from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.execution.members import CURRENT_KEY, VALIDATOR_NAMESPACE
from qilian.node.snapshots import compute_validator_path, describe_missing, get_state_sync_record
from qilian.sdk.proofs import get_state_doc, get_tx_proof_doc, get_validator_path_doc_from_encoded
from qilian.state import MissingNodeError, StateTree
from qilian.storage.store import ChainStore, StoreSnapshot
from qilian.types.core import Block, Commit, Genesis, ValidatorSet, compute_block_id, compute_tx_hash

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

    def __init__(self, store: ChainStore, suite: Suite, genesis: Genesis):
        """``genesis``: its validator set is where every validator path starts."""
        self.store = store
        self.suite = suite
        self.genesis = genesis
        self.sync_record = get_state_sync_record(store)
        """A state-synced node's record (None: the node holds the chain from genesis): which heights it lacks."""

    def _check_held(self, height: int, what: str) -> None:
        """Raise 404 ``not_on_this_node`` when a state-synced node lacks ``what`` at ``height`` by design."""
        reason = describe_missing(self.sync_record, height, what)
        if reason is not None:
            raise ApiError(404, "not_on_this_node", reason)

    # -- validator paths ---------------------------------------------------------------------------------

    def get_validator_path(self, target: int) -> dict[str, Any]:
        """The ``GET /gov/validators/path`` document up to ``target`` (a committed height), from one snapshot."""
        with self.store.begin_snapshot() as snap:
            return self._get_validator_path(snap, target)

    def _get_validator_path(self, snap: StoreSnapshot, target: int) -> dict[str, Any]:
        """The path from genesis to ``target`` (:func:`qilian.node.snapshots.compute_validator_path`: the
        governance index's change heights — on a state-synced node, those up to its snapshot from the path it
        verified then — each linked sequentially only when the 1/3 trust rule cannot)."""
        entries = self._get_path_entries(snap, target)
        return get_validator_path_doc_from_encoded(self.suite, [
            (e.validators, e.header, e.commit, e.parent_header, e.parent_commit) for e in entries])

    def _get_path_entries(self, snap: StoreSnapshot, target: int) -> list[Any]:
        tree = StateTree(self.suite.hash, snap)

        def get_set(h: int) -> ValidatorSet | None:
            # The set the index kept at the change (a pruning node has no state of old heights); an entry
            # written before the index kept sets is read from the state of that height.
            vset = snap.get_changed_validator_set(h)
            if vset is not None:
                return vset
            if h - 1 < snap.get_oldest_state_version():
                raise ApiError(410, "state_pruned",
                               f"the validator set of height {h} is neither in the governance index nor in a "
                               f"state this node still keeps; ask an archive node ([store] keep_states = 0)")
            block = snap.get_block(h)
            if block is None:
                return None
            raw = tree.get_value(block.header.state_root, VALIDATOR_NAMESPACE, CURRENT_KEY)
            return self.genesis.validators if raw is None else ValidatorSet.decode(raw)

        try:
            return compute_validator_path(self.genesis, snap, get_set, self.sync_record, target)
        except LookupError as exc:
            raise ApiError(503, "unavailable", str(exc)) from None

    def _get_needed_path(self, snap: StoreSnapshot, up_to: int) -> dict[str, Any] | None:
        """The validator path up to ``up_to`` when a set change lies at or below it; None when genesis's set signs
        every header up to there (documents then stay as they were)."""
        if self.sync_record is None and not snap.get_validator_change_heights(up_to):
            return None
        entries = self._get_path_entries(snap, up_to)
        if not entries:
            return None
        return get_validator_path_doc_from_encoded(self.suite, [
            (e.validators, e.header, e.commit, e.parent_header, e.parent_commit) for e in entries])

    @staticmethod
    def _with_path(doc: dict[str, Any], path: dict[str, Any] | None) -> dict[str, Any]:
        if path is not None:
            doc["validator_path"] = path
        return doc

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
            doc = {
                "hash": tx_hash.hex(),
                "height": height,
                "index": index,
                "tx": tx_view(self.suite, block.txs[index], tx_hash),
                "receipt": receipt_view(receipts[index]),
                "proof": get_tx_proof_doc(self.suite, block, commit, index, receipts, child, child_commit),
            }
            return self._with_path(doc, self._get_needed_path(snap, height if child is None else height + 1))

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
            header = snap.get_block_header(height)
            if header is None:
                self._check_held(height, "block")
                raise ApiError(404, "not_found",
                               f"no block at height {height} (the chain is at {snap.get_tip().height})")
            # From the height-ordered index, not by decoding the block and re-hashing every body: clients follow
            # the chain through this (the network bench's followers did, at ~9 % of a validator's time).
            hashes = snap.get_block_tx_hashes(height)
            if len(hashes) != header.tx_count:  # pragma: no cover - every stored block has its index entries
                block = snap.get_block(height)
                assert block is not None
                hashes = self._tx_hashes(block)
            statuses = snap.get_receipt_statuses(height) or []
        return {"height": height, "time_ms": header.time_ms, "tx_hashes": [h.hex() for h in hashes],
                "statuses": [STATUS_NAMES.get(s, str(s)) for s in statuses]}

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
            oldest = snap.get_oldest_state_version() + 1  # header h commits the state of version h - 1
            if at < oldest:
                raise make_pruned_error(at, oldest, self.store.keep_states)
            block, commit = snap.get_block(at), snap.get_commit(at)
            if block is None or commit is None:
                raise ApiError(503, "unavailable", f"block {at} is not stored")
            tree = StateTree(self.suite.hash, snap)
            root = block.header.state_root
            path = self._get_needed_path(snap, at)
            try:
                return [self._with_path(get_state_doc(
                    self.suite, namespace, key, tree.get_value(root, namespace, key),
                    tree.get_proof(root, namespace, key), block, commit), path) for namespace, key in keys]
            except MissingNodeError:  # a store pruned further than this node's setting says (another config)
                raise make_pruned_error(at, None, self.store.keep_states) from None

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
                path = self._get_needed_path(snap, tip.height)
                for entry, (k, _) in zip(entries, rows, strict=True):
                    doc = get_state_doc(self.suite, namespace, k, tree.get_value(root, namespace, k),
                                        tree.get_proof(root, namespace, k), block, commit)
                    entry["state"] = self._with_path(doc, path)
        return {"height": tip.height, "entries": entries, "next": rows[-1][0].hex() if more else None}

def make_pruned_error(height: int, oldest: int | None, keep_states: int) -> ApiError:
    """410 ``state_pruned``: the state a header of ``height`` commits is no longer kept on this node. Names the
    oldest height still proven (``oldest_height`` in the body too, for SDKs) and where older states are."""
    where = f"; the oldest height it proves is {oldest}" if oldest is not None else ""
    why = f"it keeps the last {keep_states} states" if keep_states else "it pruned them before it kept every state"
    return ApiError(410, "state_pruned",
                    f"the state at height {height} is pruned on this node ({why}{where}); an archive node "
                    f"([store] keep_states = 0 from the start) has every height",
                    {"oldest_height": oldest} if oldest is not None else None)


def _summary(suite: Suite, block: Block, commit: Commit | None) -> dict[str, Any]:
    h = block.header
    return {"height": h.height, "block_id": compute_block_id(suite, h).hex(), "time_ms": h.time_ms,
            "tx_count": h.tx_count, "proposer": h.proposer.hex(),
            "round": None if commit is None else commit.round,
            "signatures": 0 if commit is None else len(commit.signatures)}

