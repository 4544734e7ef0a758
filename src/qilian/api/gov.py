"""HTTP endpoints of governance: policies and proposals, each with a state proof against the latest header.

Proposals and votes themselves are transactions (POST /txs to ``gov``). A proof here has the same shape as
``GET /state/{namespace}/{key}``, so the SDK's :func:`qilian.sdk.verify.verify_state_response` checks it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from qilian.api.views import commit_view, header_view
from qilian.execution.modules import get_registry
from qilian.execution.modules.gov import GOV_NAMESPACE, Proposal, compute_proposal_key, get_proposal_count
from qilian.execution.policy import POLICY_NAMESPACE, RESOURCES, decode_policy
from qilian.types.codec import decode_raw, to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node

MAX_LISTED = 200
"""Most proposals one list answer carries (newest first)."""


def make_gov_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /gov; ``api_error(status, code, message)`` is the API's error type."""
    router = APIRouter()

    def proven(namespace: str, key: bytes) -> dict[str, Any]:
        """The value at (namespace, key) in the state committed by the latest header, with its proof."""
        tip = node.get_tip()
        if tip.height == 0:
            raise api_error(404, "not_found", "no blocks yet: no state is committed in a header")
        block = node.store.get_block(tip.height)
        commit = node.store.get_commit(tip.height)
        if block is None or commit is None:
            raise api_error(503, "unavailable", "tip block is not stored")
        root = block.header.state_root
        value = node.tree.get_value(root, namespace, key)
        return {
            "namespace": namespace,
            "key": key.hex(),
            "value": None if value is None else value.hex(),
            "state_height": tip.height - 1,
            "proof": to_json_value(node.tree.get_proof(root, namespace, key).to_wire()),
            "header": header_view(node.suite, block.header),
            "commit": commit_view(commit),
        }

    def policy_doc(resource: str, with_proof: bool) -> dict[str, Any]:
        if with_proof:
            state = proven(POLICY_NAMESPACE, resource.encode())
            raw = None if state["value"] is None else bytes.fromhex(state["value"])
        else:
            state, raw = None, node.store.get_state(POLICY_NAMESPACE, resource.encode())
        doc: dict[str, Any] = {"resource": resource}
        if raw is not None:
            p = decode_policy(raw)
            doc.update(rule=p.rule, orgs=list(p.orgs), roles=list(p.roles), text=p.describe())
        if state is not None:
            doc["state"] = state
        return doc

    @router.get("/gov/modules", summary="The module registry: name, version, method → policy resource")
    async def modules() -> list[dict[str, Any]]:
        return [{"name": n, "version": v, "methods": m} for n, v, m in get_registry()]

    @router.get("/gov/policies", summary="Every policy in force (latest executed state)")
    async def policies() -> list[dict[str, Any]]:
        return [policy_doc(r, False) for r in RESOURCES]

    @router.get("/gov/policies/{resource}", summary="One policy with its state proof")
    async def policy(resource: str) -> dict[str, Any]:
        if resource not in RESOURCES:
            raise api_error(404, "not_found", f"no resource {resource!r}; resources: {', '.join(RESOURCES)}")
        return policy_doc(resource, True)

    @router.get("/gov/proposals", summary="Proposals, newest first (latest executed state)")
    async def proposals(status: str | None = None) -> list[dict[str, Any]]:
        count = get_proposal_count(node.store.get_state)
        out: list[dict[str, Any]] = []
        for pid in range(count, 0, -1):
            raw = node.store.get_state(GOV_NAMESPACE, compute_proposal_key(pid))
            if raw is None:
                continue
            p = Proposal.from_value(decode_raw(raw))
            if status is None or p.status == status:
                out.append({**p.summary(), "kind": p.action[0], "proposer_org": p.proposer_org,
                            "created": p.created})
            if len(out) >= MAX_LISTED:
                break
        return out

    @router.get("/gov/proposals/{proposal_id}", summary="One proposal with its state proof")
    async def proposal(proposal_id: int) -> dict[str, Any]:
        if not 1 <= proposal_id < 2**63:
            raise api_error(400, "bad_id", "a proposal id is a positive integer")
        state = proven(GOV_NAMESPACE, compute_proposal_key(proposal_id))
        raw = node.store.get_state(GOV_NAMESPACE, compute_proposal_key(proposal_id))
        if raw is None:
            raise api_error(404, "not_found", f"no proposal {proposal_id}")
        # ``proposal`` is the latest executed state; ``state`` proves the value committed by the latest header
        # (one block behind, execution being deferred).
        return {"proposal": to_json_value(decode_raw(raw)), "state": state}

    return router
