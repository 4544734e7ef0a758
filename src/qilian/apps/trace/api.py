"""HTTP endpoints of traceability (under /trace). Events themselves are transactions (POST /txs to ``trace``);
these routes read, prove and pre-check. Identifiers are URIs, so they travel as the ``id`` query parameter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from qilian.apps.proofs import (
    ProofUnavailable,
    add_check_route,
    get_genesis_doc,
    get_proven_record,
    get_state_doc,
    make_bundle,
)
from qilian.apps.trace.module import (
    TRACE_MODULE,
    TRACE_NAMESPACE,
    compute_item_key,
    compute_lot_item_key,
    compute_recall_key,
    get_entries,
    get_item,
    get_location,
    get_lot_record,
)
from qilian.apps.trace.sdk import CERT_TYPE, CERT_VERSION, MAX_CERT_ITEMS, compute_explorer_url, make_qr_png
from qilian.types.codec import decode_raw, to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node

MAX_LOT_LISTED = 10_000
"""Most items one ``GET /trace/lot`` answer lists (a lot holds at most MAX_LOT_ITEMS anyway)."""
IdQuery = Annotated[str, Query(min_length=1, max_length=256, description="The identifier (URI).")]


def get_related(get: Any, item_id: str, limit: int = MAX_CERT_ITEMS) -> list[str]:
    """The item, then the aggregates it was packed into and the inputs it was made from, recursively (breadth
    first, at most ``limit``)."""
    out, queue = [item_id], [item_id]
    while queue and len(out) < limit:
        rec = get_item(get, queue.pop(0))
        if rec is None:
            continue
        for other in [*rec["containers"], *rec["from"]]:
            if other not in out and len(out) < limit:
                out.append(other)
                queue.append(other)
    return out


def make_certificate(node: Node, item_id: str, node_url: str) -> dict[str, Any]:
    """The certificate of an item as this node can prove it now (records as of the latest header)."""
    txs: dict[str, Any] = {}
    members: dict[str, Any] = {}
    items = {}
    for other in get_related(node.store.get_state, item_id):
        key = compute_item_key(other)
        proven = get_proven_record(get_state_doc(node, TRACE_NAMESPACE, key))
        if proven is None:
            if other == item_id:
                raise ProofUnavailable(409, "not_yet", f"item {item_id} is not yet in the state the latest header "
                                                       f"proves; ask again after the next block")
            continue
        entries = get_entries(node.store.get_state, other, proven["n"])
        items[other] = make_bundle(node, TRACE_NAMESPACE, key, (e[1] for e in entries), txs, members)
    return {"type": CERT_TYPE, "version": CERT_VERSION, "chain_id": node.genesis.chain_id, "item": item_id,
            "url": compute_explorer_url(node_url, item_id), "genesis": get_genesis_doc(node), "items": items,
            "txs": txs, "members": members}


def make_trace_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /trace; ``api_error(status, code, message)`` is the API's error type."""
    router = APIRouter(tags=["trace"])
    get = node.store.get_state

    def need_item(item_id: str) -> dict[str, Any]:
        rec = get_item(get, item_id)
        if rec is None:
            raise api_error(404, "not_found", f"unknown item {item_id!r}: it was never commissioned")
        return rec

    @router.get("/trace/item", summary="An item's record and where it is now (latest executed state)")
    async def item(id: IdQuery) -> dict[str, Any]:
        rec = need_item(id)
        return {"id": id, "record": to_json_value(rec), "location": get_location(get, id)}

    @router.get("/trace/history", summary="An item's full history: its events, and those of the aggregates it "
                                          "was packed into and the inputs it was made from")
    async def history(id: IdQuery) -> dict[str, Any]:
        need_item(id)
        out = []
        for other in get_related(get, id):
            rec = get_item(get, other)
            if rec is None:
                continue
            for k, (entry, tx_hash, height) in enumerate(get_entries(get, other, rec["n"])):
                out.append({"item": other, "index": k, "entry_hash": entry.hex(), "tx_hash": tx_hash.hex(),
                            "height": height, "relation": "self" if other == id else
                            ("container" if rec["kind"] == "aggregate" else "input")})
        return {"id": id, "location": get_location(get, id), "events": out,
                "proof": f"/trace/certificate?id={id}", "tx_proof": "/txs/{tx_hash}"}

    @router.get("/trace/certificate", summary="A certificate of the item's history, checkable offline")
    async def certificate(request: Request, id: IdQuery) -> dict[str, Any]:
        need_item(id)
        try:
            return make_certificate(node, id, str(request.base_url))
        except ProofUnavailable as exc:
            raise api_error(exc.status, exc.code, exc.message) from None

    @router.get("/trace/qr", summary="PNG QR code of the item's explorer page",
                response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def qr(request: Request, id: IdQuery) -> Response:
        need_item(id)
        return Response(make_qr_png(compute_explorer_url(str(request.base_url), id)), media_type="image/png")

    @router.get("/trace/lot", summary="Where every item of a lot is now")
    async def lot(id: IdQuery) -> dict[str, Any]:
        rec = get_lot_record(get, id)
        if rec is None:
            raise api_error(404, "not_found", f"unknown lot {id!r}: no item was commissioned into it")
        items = []
        for k in range(min(rec["count"], MAX_LOT_LISTED)):
            raw = get(TRACE_NAMESPACE, compute_lot_item_key(id, k))
            if raw is not None:
                items.append(get_location(get, raw.decode()))
        return {"lot": id, "owner": rec["owner"], "count": rec["count"], "recalled": rec["recalled"],
                "items": items}

    @router.get("/trace/recalls/{number}", summary="A recall: its lot, reason and everything it marked")
    async def recall(number: int) -> dict[str, Any]:
        if not 1 <= number < 2**63:
            raise api_error(400, "bad_id", "a recall number is a positive integer")
        raw = get(TRACE_NAMESPACE, compute_recall_key(number))
        if raw is None:
            raise api_error(404, "not_found", f"no recall {number}")
        return {"recall": number, **to_json_value(decode_raw(raw))}

    add_check_route(router, node, api_error, TRACE_MODULE)
    return router


__all__ = ["get_related", "make_certificate", "make_trace_router"]
