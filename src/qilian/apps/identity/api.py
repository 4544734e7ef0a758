"""HTTP endpoints of digital identity: DID resolution (with the state proof of the record) and status list
credentials built from the on-chain bits. Writes are transactions to ``did``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from qilian.apps.appapi import make_proven
from qilian.apps.identity.module import (
    DID_MODULE,
    DID_NAMESPACE,
    STATUS_CHUNK_BYTES,
    STATUS_LIST_BITS,
    DidRecord,
    compute_did_key,
    compute_status_key,
    is_did,
    is_fragment,
)
from qilian.apps.identity.vc import VC_CONTEXT, compute_encoded_list, compute_resolution
from qilian.apps.proofs import add_check_route
from qilian.types.codec import decode_raw

if TYPE_CHECKING:
    from qilian.node.node import Node


def make_identity_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /apps/identity."""
    router = APIRouter()
    proven = make_proven(node, api_error)

    def check_did(did: str) -> None:
        if not is_did(did):
            raise api_error(400, "bad_did", f"{did[:80]!r} is not a did:qilian DID (did:qilian: + 40 hex digits)")

    @router.get("/apps/identity/dids/{did}", summary="Resolve a DID, with the state proof of its record")
    async def resolve(did: str) -> dict[str, Any]:
        check_did(did)
        state = proven(DID_NAMESPACE, compute_did_key(did))
        raw = None if state["value"] is None else bytes.fromhex(state["value"])
        record = None if raw is None else DidRecord.from_value(decode_raw(raw))
        if record is None:
            raise api_error(404, "not_found", f"unknown DID {did} (as of state height {state['state_height']})")
        return {**compute_resolution(record, did, state["state_height"]), "state": state}

    @router.get("/apps/identity/status/{did}/{list_name}", summary="A Bitstring Status List credential of a DID")
    async def status_list(did: str, list_name: str) -> dict[str, Any]:
        check_did(did)
        if not is_fragment(list_name):
            raise api_error(400, "bad_list", "a list name is 1..32 letters, digits, - and _")
        if node.store.get_state(DID_NAMESPACE, compute_did_key(did)) is None:
            raise api_error(404, "not_found", f"unknown DID {did}")
        chunks = []
        for i in range(STATUS_LIST_BITS // (STATUS_CHUNK_BYTES * 8)):
            raw = node.store.get_state(DID_NAMESPACE, compute_status_key(did, list_name, i))
            chunks.append(raw or bytes(STATUS_CHUNK_BYTES))
        url = f"{did}/status/{list_name}"
        return {"@context": [VC_CONTEXT], "id": url, "type": ["VerifiableCredential", "BitstringStatusListCredential"],
                "issuer": did, "credentialSubject": {"id": f"{url}#list", "type": "BitstringStatusList",
                                                     "statusPurpose": list_name if list_name in (
                                                         "revocation", "suspension") else "revocation",
                                                     "encodedList": compute_encoded_list(b"".join(chunks))}}

    add_check_route(router, node, api_error, DID_MODULE)
    return router
