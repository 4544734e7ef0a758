"""Client side of traceability: build EPCIS events, check a trace certificate offline, make the QR code.

A trace certificate (``qilian-trace-certificate`` v1) holds the genesis, and for the item and every item it is
related to (the aggregates it was packed into, the inputs it was made from, recursively, at most
MAX_CERT_ITEMS) a state proof of its record and the transactions of its whole history, each with its Merkle proof,
header, commit and receipt proof; plus the membership proof of every key that signed one. Checking it trusts only
the genesis validator keys: see :func:`check_certificate`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote as url_quote

from qilian.apps.certs import ProvenStep, check_bundle, get_genesis, is_malformed
from qilian.apps.trace.epcis import check_event, compute_event_hash, get_event_ids
from qilian.apps.trace.module import TRACE_MODULE, TRACE_NAMESPACE, compute_item_key, compute_recall_hash
from qilian.execution.env import CallFailed
from qilian.sdk.verify import ProofInvalid, VerifiedTx
from qilian.types.core import Genesis

CERT_TYPE: Final = "qilian-trace-certificate"
CERT_VERSION: Final = 2
"""2: each signer's membership proven at its transaction's height, and every proof carries the validator path it
needs; version 1 (membership at the tip) is still checked."""
MAX_CERT_ITEMS: Final = 32
"""Most records (the item and its related items) one certificate carries."""


def make_event(kind: str, event_time: str, ids: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """An EPCIS event for ``trace.<kind>`` (kind: commission, observe, ship, receive, decommission, pack, unpack,
    transform, transact); ``fields`` adds or overrides EPCIS fields."""
    shapes = {"commission": ("ObjectEvent", "ADD", "commissioning"),
              "observe": ("ObjectEvent", "OBSERVE", "inspecting"),
              "ship": ("ObjectEvent", "OBSERVE", "shipping"), "receive": ("ObjectEvent", "OBSERVE", "receiving"),
              "decommission": ("ObjectEvent", "DELETE", "decommissioning"),
              "pack": ("AggregationEvent", "ADD", "packing"), "unpack": ("AggregationEvent", "DELETE", "unpacking"),
              "transform": ("TransformationEvent", "", "transforming"),
              "transact": ("TransactionEvent", "ADD", "")}
    etype, action, step = shapes[kind]
    event: dict[str, Any] = {"type": etype, "eventTime": event_time}
    if action:
        event["action"] = action
    if step:
        event["bizStep"] = step
    if ids is not None:
        event["epcList"] = list(ids)
    event.update({k: v for k, v in fields.items() if v is not None})
    return event


def get_method(kind: str) -> str:
    """The ``trace`` method that records an event of ``kind`` (pack and unpack are both ``aggregate``)."""
    return "aggregate" if kind in ("pack", "unpack") else kind


def compute_explorer_url(node_url: str, item_id: str) -> str:
    """The item's page in the node's explorer (what the QR code points to)."""
    return f"{node_url.rstrip('/')}/explorer/#/trace/{url_quote(item_id, safe='')}"


def make_qr_png(url: str, scale: int = 8) -> bytes:
    """A QR code (error correction M) of ``url`` as PNG bytes."""
    import io

    import segno

    buf = io.BytesIO()
    segno.make_qr(url, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


@dataclass(frozen=True)
class TraceStep:
    """One proven step of an item's history."""

    item: str
    """The item whose history it belongs to."""
    method: str
    """``trace`` method (commission, ship, receive, aggregate, transform, observe, recall …)."""
    biz_step: str
    """The event's bizStep (``recall`` for a recall)."""
    org: str
    """Organisation that recorded it (proven signer)."""
    height: int
    """Block height (signed header)."""
    time_ms: int
    """Block time (signed header)."""
    event_time: str
    """The event time its recorder claimed."""
    entry_hash: bytes
    """Event hash (or recall entry hash)."""
    tx_hash: bytes
    """Transaction hash."""
    event: Any
    """The signed event (or ``[lot, reason]`` of a recall)."""


@dataclass(frozen=True)
class CheckedTrace:
    """What a trace certificate proves; every field comes from verified bytes."""

    item: str
    """The certified item."""
    record: dict[str, Any]
    """Its proven record (custodian, status, lot, recall …)."""
    steps: tuple[TraceStep, ...]
    """Its history, complete and in order."""
    related: dict[str, tuple[dict[str, Any], tuple[TraceStep, ...]]]
    """Related items (containers, inputs): their proven records and histories."""
    chain_id: str
    """The chain."""
    genesis_hash: bytes
    """Hash of the genesis it was checked against."""
    state_height: int
    """Height whose state the record proof shows."""


def _entry_getter(item_id: str, hash_fn: Any) -> Any:
    def get_entry(v: VerifiedTx) -> bytes:
        body = v.tx.body
        if body.to != TRACE_MODULE:
            raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… is not a trace transaction")
        if body.method == "recall":
            if len(body.args) != 2 or type(body.args[0]) is not str or type(body.args[1]) is not str:
                raise ProofInvalid("a recall transaction is malformed")
            return compute_recall_hash(hash_fn, body.args[0], body.args[1])
        try:
            event = check_event(body.method, body.args[0] if len(body.args) == 1 else None)
        except CallFailed as exc:
            raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… does not carry a valid event: {exc}") from None
        if item_id not in get_event_ids(event):
            raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… does not touch {item_id}")
        return compute_event_hash(hash_fn, event)
    return get_entry


def _steps(item_id: str, proven: list[ProvenStep]) -> tuple[TraceStep, ...]:
    out = []
    for p in proven:
        body = p.tx.tx.body
        if body.method == "recall":
            step, etime, event = "recall", "", list(body.args)
        else:
            event = body.args[0]
            step, etime = str(event.get("bizStep", "")), str(event.get("eventTime", ""))
        out.append(TraceStep(item_id, body.method, step, p.org, p.tx.height, p.tx.header.time_ms, etime,
                             p.entry_hash, p.tx.tx_hash, event))
    return tuple(out)


def check_certificate(cert: dict[str, Any], pinned: Genesis | None = None) -> CheckedTrace:
    """Verify a trace certificate offline; raises ProofInvalid naming what does not hold."""
    try:
        if cert.get("type") != CERT_TYPE or cert.get("version") not in (1, CERT_VERSION):
            raise ProofInvalid("not a Qilian trace certificate of a known version")
        genesis, suite, ghash = get_genesis(cert, pinned)
        root = cert["item"]
        items, txs, members = cert["items"], cert["txs"], cert["members"]
        if type(root) is not str or root not in items:
            raise ProofInvalid("the certificate does not carry its item's record")
        if len(items) > MAX_CERT_ITEMS:
            raise ProofInvalid(f"more than {MAX_CERT_ITEMS} records")
        checked: dict[str, tuple[dict[str, Any], tuple[TraceStep, ...]]] = {}
        for item_id, bundle in items.items():
            record, proven = check_bundle(genesis, suite, bundle, TRACE_NAMESPACE, compute_item_key(item_id), txs,
                                          members, _entry_getter(item_id, suite.hash))
            checked[item_id] = (record, _steps(item_id, proven))
        record, steps = checked.pop(root)
        height = int(items[root]["state"]["state_height"])
        return CheckedTrace(root, record, steps, checked, genesis.chain_id, ghash, height)
    except ProofInvalid:
        raise
    except Exception as exc:
        if is_malformed(exc):
            raise ProofInvalid(f"malformed certificate: {type(exc).__name__}: {exc}") from None
        raise


__all__ = ["CERT_TYPE", "CheckedTrace", "TraceStep", "check_certificate", "compute_explorer_url", "get_method",
           "make_event", "make_qr_png"]
