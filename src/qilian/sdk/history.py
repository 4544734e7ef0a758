"""The governance history export (``qilian gov history``), built by the node and checked offline from genesis.

Every governance transaction in a range of heights — proposals, votes, revocations, endorsement executions
(``gov.*``: which also carry the membership, validator and policy changes) and the regulator's actions
(``regulator.*``) — with what an auditor reads (sender, action, proposal, vote, outcome, events, approving
organisations) and the proofs ``GET /txs/{hash}`` gives: the transaction under its block's header and commit, its
receipt under the child's. The readable fields are computed from the proven transaction and receipt by
:func:`compute_history_summary`, the one function both ends use, so the verifier recomputes every field of every
entry — proofs' readable header and commit fields included — and refuses any difference: a one-byte edit of an
export fails, whitespace too (the file is canonical JSON, :func:`compute_history_text`).

What it does not prove: that the list is complete (that no governance transaction of the range was left out);
that needs every block body of the range. Proposals that expire at the end of a block are no transaction; their
status is in the proposal's state (``GET /gov/proposals/{id}``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from qilian.crypto import get_suite
from qilian.crypto.suite import Suite
from qilian.sdk.proofs import get_commit_doc, get_header_doc, get_merkle_doc, get_tx_proof_doc, parse_merkle_doc
from qilian.sdk.verify import ProofInvalid, VerifiedTx, verify_tx_response, verify_validator_path
from qilian.types.codec import CodecError, to_json_value
from qilian.types.core import STATUS_OK, Block, BlockHeader, Commit, Genesis, Receipt, Transaction, ValidatorSet

HISTORY_TYPE: Final = "qilian-gov-history"
"""Type tag of an export (docs/governance.md, "History export")."""
HISTORY_VERSION: Final = 1
GOVERNANCE_TARGETS: Final = ("gov", "regulator")
"""Transaction targets that are governance actions."""
MAX_HISTORY_RANGE: Final = 10_000
"""Most heights one ``GET /gov/history`` request scans."""
MAX_HISTORY_PAGE: Final = 100
"""Most entries one ``GET /gov/history`` answer carries (then it names where to continue)."""
STATUS_TEXT: Final = {0: "ok", 1: "failed", 2: "out_of_fuel"}


def is_governance_tx(tx: Transaction) -> bool:
    """Whether a transaction is a governance action (its target is ``gov`` or ``regulator``)."""
    return tx.body.to in GOVERNANCE_TARGETS


def compute_history_summary(suite: Suite, tx: Transaction, tx_hash: bytes, height: int, index: int,
                            receipt: Receipt) -> dict[str, Any]:
    """The readable part of an entry, from the transaction and its receipt only (so a verifier recomputes it)."""
    body = tx.body
    args = list(body.args)
    action: str | None = None
    proposal: int | None = None
    vote: Any = None
    if body.to == "gov":
        if body.method in ("propose", "execute") and args and type(args[0]) in (list, tuple) and args[0] \
                and type(args[0][0]) is str:
            action = args[0][0]
        if body.method in ("vote", "revoke") and args and type(args[0]) is int:
            proposal = args[0]
        if body.method == "vote" and len(args) == 2:
            vote = to_json_value(args[1])
    else:
        action = f"{body.to}.{body.method}"
    result = receipt.result if receipt.status == STATUS_OK else None
    proposal_status = None
    if body.to == "gov" and type(result) is dict and type(result.get("id")) is int:
        proposal, proposal_status = result["id"], result.get("status")
    orgs: set[str] = set()
    approvers: list[str] = []
    for e in receipt.events:
        if type(e.data) is not dict:
            continue
        for k in ("org", "proposer_org"):
            if type(e.data.get(k)) is str:
                orgs.add(e.data[k])
        if type(e.data.get("approvers")) is list and e.name in ("Executed", "Frozen", "Unfrozen", "Abolished"):
            approvers = sorted(str(a) for a in e.data["approvers"])
    return {
        "height": height, "index": index, "hash": tx_hash.hex(),
        "sender": suite.compute_address(body.sender).hex(), "sender_orgs": sorted(orgs),
        "module": body.to, "method": body.method, "action": action, "proposal": proposal, "vote": vote,
        "outcome": STATUS_TEXT.get(receipt.status, str(receipt.status)), "error": receipt.error,
        "proposal_status": proposal_status, "approvers": approvers,
        "events": [{"source": e.source, "name": e.name, "data": to_json_value(e.data)} for e in receipt.events],
    }


def get_history_entry_doc(suite: Suite, block: Block, commit: Commit, tx_hashes: Sequence[bytes], index: int,
                          receipts: Sequence[Receipt], child: Block, child_commit: Commit) -> dict[str, Any]:
    """One entry of an export: the summary, the canonical bytes of transaction and receipt, and the proofs of
    ``GET /txs/{hash}`` (the shape :func:`qilian.sdk.verify.verify_tx_response` reads)."""
    tx, receipt = block.txs[index], receipts[index]
    return {
        **compute_history_summary(suite, tx, tx_hashes[index], block.header.height, index, receipt),
        "tx": {"encoded": tx.encode().hex()},
        "receipt": {"encoded": receipt.encode().hex()},
        "proof": get_tx_proof_doc(suite, block, commit, index, receipts, child, child_commit),
    }


def compute_history_text(doc: dict[str, Any]) -> str:
    """The canonical text of an export: sorted keys, one-space indent, ASCII, a final newline. The verifier
    refuses any other form, so no byte of an export can change unnoticed."""
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


@dataclass(frozen=True)
class VerifiedHistory:
    """An export proven from genesis."""

    chain_id: str
    """The chain."""
    first: int
    """First height of the range."""
    last: int
    """Last height of the range."""
    entries: tuple[VerifiedTx, ...]
    """Each governance transaction, proven with its receipt."""
    summaries: tuple[dict[str, Any], ...]
    """Their readable summaries (recomputed from the proven bytes)."""


def _rebuild_signed(suite: Suite, doc: Any, where: str) -> dict[str, Any]:
    """A proof's ``{header, commit[, merkle]}`` rebuilt from its canonical bytes (every readable field is
    recomputed, so an edited one shows)."""
    if not isinstance(doc, dict):
        raise ProofInvalid(f"{where} is malformed")
    try:
        header = BlockHeader.decode(bytes.fromhex(doc["header"]["encoded"]))
        commit = Commit.decode(bytes.fromhex(doc["commit"]["encoded"]))
        out: dict[str, Any] = {"header": get_header_doc(suite, header),
                               "commit": get_commit_doc(commit)}
        if "merkle" in doc:
            out["merkle"] = get_merkle_doc(parse_merkle_doc(doc["merkle"]))
    except (KeyError, TypeError, ValueError, CodecError) as exc:
        raise ProofInvalid(f"{where} is malformed: {exc}") from None
    return out


def _check_path_doc(suite: Suite, path: Any) -> None:
    """Every readable field of a validator path must be what its canonical bytes say."""
    if path is None:
        return
    entries = path.get("entries") if isinstance(path, dict) else None
    if not isinstance(entries, list) or set(path) != {"type", "version", "entries"}:
        raise ProofInvalid("validator path is malformed")
    for i, e in enumerate(entries):
        where = f"validator path entry {i}"
        if not isinstance(e, dict):
            raise ProofInvalid(f"{where} is malformed")
        try:
            validators = ValidatorSet.decode(bytes.fromhex(e["validators"])).encode().hex()
        except (KeyError, TypeError, ValueError, CodecError) as exc:
            raise ProofInvalid(f"{where}: malformed validator set: {exc}") from None
        rebuilt: dict[str, Any] = {**_rebuild_signed(suite, e, where), "validators": validators}
        rebuilt["height"] = rebuilt["header"]["height"]
        if "parent" in e:
            rebuilt["parent"] = _rebuild_signed(suite, e["parent"], f"{where} parent")
        if rebuilt != e:
            raise ProofInvalid(f"{where}: its readable fields differ from its canonical bytes (edited?)")


def verify_history(genesis: Genesis, doc: Any) -> VerifiedHistory:
    """Verify an export offline from genesis; raises ProofInvalid naming the entry and the step that failed.

    The validator path (when the set changed) is followed from genesis; each entry's transaction and receipt are
    proven under headers signed by the set of their height; each entry must equal what is rebuilt from the
    proven bytes (summary, canonical bytes, proofs' readable fields); entries are in chain order, once each,
    inside the range, and all are governance transactions."""
    suite = get_suite(genesis.suite)
    if not isinstance(doc, dict) or doc.get("type") != HISTORY_TYPE or doc.get("version") != HISTORY_VERSION:
        raise ProofInvalid(f"not a governance history export ({HISTORY_TYPE} version {HISTORY_VERSION})")
    if set(doc) != {"type", "version", "chain_id", "from", "to", "entries", "validator_path"}:
        raise ProofInvalid("the export has missing or unknown fields")
    if doc["chain_id"] != genesis.chain_id:
        raise ProofInvalid(f"the export is of chain {doc['chain_id']!r}; the genesis is of {genesis.chain_id!r}")
    first, last, entries = doc["from"], doc["to"], doc["entries"]
    if type(first) is not int or type(last) is not int or not 1 <= first <= last or not isinstance(entries, list):
        raise ProofInvalid("the export's range or entries are malformed")
    _check_path_doc(suite, doc["validator_path"])
    trusted = verify_validator_path(genesis, doc["validator_path"])
    proven: list[VerifiedTx] = []
    summaries: list[dict[str, Any]] = []
    previous = (first, -1)
    for i, e in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(e, dict):
            raise ProofInvalid(f"{where} is malformed")
        try:
            vt = verify_tx_response(genesis, e, require_receipt=True, trusted=trusted)
        except ProofInvalid as exc:
            raise ProofInvalid(f"{where}: {exc}") from None
        if vt.receipt is None:  # pragma: no cover - require_receipt=True
            raise ProofInvalid(f"{where}: no receipt")
        proof = e.get("proof") or {}
        index = parse_merkle_doc(proof["tx"]["merkle"]).index  # verify_tx_response parsed it already
        summary = compute_history_summary(suite, vt.tx, vt.tx_hash, vt.height, index, vt.receipt)
        rebuilt = {**summary, "tx": {"encoded": vt.tx.encode().hex()},
                   "receipt": {"encoded": vt.receipt.encode().hex()},
                   "proof": {"tx": _rebuild_signed(suite, proof.get("tx"), f"{where} transaction proof"),
                             "receipt": _rebuild_signed(suite, proof.get("receipt"), f"{where} receipt proof")}}
        if rebuilt != e:
            diff = sorted(k for k in set(rebuilt) | set(e) if rebuilt.get(k) != e.get(k))
            raise ProofInvalid(f"{where} (height {vt.height}): field(s) {', '.join(diff)} differ from what the "
                               f"proven transaction and receipt say (edited?)")
        if not is_governance_tx(vt.tx):
            raise ProofInvalid(f"{where}: transaction {vt.tx_hash.hex()[:16]}… is no governance action "
                               f"(sent to {vt.tx.body.to!r})")
        if not first <= vt.height <= last:
            raise ProofInvalid(f"{where}: height {vt.height} is outside the range {first}..{last}")
        if (vt.height, index) <= previous:
            raise ProofInvalid(f"{where}: entries are not in chain order, or one repeats")
        previous = (vt.height, index)
        proven.append(vt)
        summaries.append(summary)
    return VerifiedHistory(genesis.chain_id, first, last, tuple(proven), tuple(summaries))


def verify_history_text(genesis: Genesis, text: str) -> VerifiedHistory:
    """Verify an export file's text: canonical JSON (:func:`compute_history_text`), then :func:`verify_history`."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ProofInvalid(f"the export is not JSON: {exc}") from None
    if compute_history_text(doc) != text:
        raise ProofInvalid("the export is not in canonical form (sorted keys, one-space indent): it was edited")
    return verify_history(genesis, doc)


__all__ = [
    "GOVERNANCE_TARGETS",
    "HISTORY_TYPE",
    "HISTORY_VERSION",
    "MAX_HISTORY_PAGE",
    "MAX_HISTORY_RANGE",
    "VerifiedHistory",
    "compute_history_summary",
    "compute_history_text",
    "get_history_entry_doc",
    "is_governance_tx",
    "verify_history",
    "verify_history_text",
]
