"""HTTP endpoints of copyright (under /copyright): registrations, lookups by content digest, certificates.
Registrations, transfers, grants and disputes are transactions (POST /txs to ``copyright``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from qilian.apps.copyright.module import (
    COPYRIGHT_MODULE,
    COPYRIGHT_NAMESPACE,
    compute_work_key,
    format_number,
    get_entries,
    get_registrations,
    get_work,
    parse_number,
)
from qilian.apps.copyright.sdk import CERT_TYPE, CERT_VERSION
from qilian.apps.proofs import (
    ProofUnavailable,
    add_check_route,
    get_genesis_doc,
    get_proven_record,
    get_state_doc,
    make_bundle,
)
from qilian.execution.env import CallFailed
from qilian.types.codec import to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node


def make_certificate(node: Node, number: int) -> dict[str, Any]:
    """A registration's certificate as this node can prove it now."""
    key = compute_work_key(number)
    proven = get_proven_record(get_state_doc(node, COPYRIGHT_NAMESPACE, key))
    if proven is None:
        raise ProofUnavailable(409, "not_yet", f"{format_number(number)} is not yet in the state the latest header "
                                               f"proves; ask again after the next block")
    txs: dict[str, Any] = {}
    members: dict[str, Any] = {}
    entries = get_entries(node.store.get_state, number, proven["n"])
    bundle = make_bundle(node, COPYRIGHT_NAMESPACE, key, (e[1] for e in entries), txs, members)
    return {"type": CERT_TYPE, "version": CERT_VERSION, "chain_id": node.genesis.chain_id, "number": number,
            "id": format_number(number), "genesis": get_genesis_doc(node), "work": bundle, "txs": txs,
            "members": members}


def make_copyright_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /copyright; ``api_error(status, code, message)`` is the API's error type."""
    router = APIRouter(tags=["copyright"])
    get = node.store.get_state

    def need(number_text: str) -> tuple[int, dict[str, Any]]:
        try:
            number = parse_number(int(number_text) if number_text.isdigit() else number_text)
        except CallFailed as exc:
            raise api_error(400, "bad_id", f"{exc} (write 42 or QC-00000042)") from None
        rec = get_work(get, number)
        if rec is None:
            raise api_error(404, "not_found", f"no registration {format_number(number)}")
        return number, rec

    @router.get("/copyright/works/{number}", summary="A registration (latest executed state)")
    async def work(number: str) -> dict[str, Any]:
        n, rec = need(number)
        return {"id": format_number(n), **to_json_value(rec),
                "prior_ids": [format_number(p) for p in rec["prior"]]}

    @router.get("/copyright/works/{number}/certificate", summary="A registration certificate, checkable offline")
    async def certificate(number: str) -> dict[str, Any]:
        n, _ = need(number)
        try:
            return make_certificate(node, n)
        except ProofUnavailable as exc:
            raise api_error(exc.status, exc.code, exc.message) from None

    @router.get("/copyright/digests/{digest}", summary="Registrations of a content digest, oldest first")
    async def by_digest(digest: str) -> dict[str, Any]:
        try:
            d = bytes.fromhex(digest.removeprefix("0x"))
        except ValueError:
            raise api_error(400, "bad_digest", "the digest is hex") from None
        return {"digest": d.hex(), "registrations": [format_number(n) for n in get_registrations(get, d)]}

    add_check_route(router, node, api_error, COPYRIGHT_MODULE)
    return router
