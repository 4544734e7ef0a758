"""HTTP endpoints of governance: policies and proposals, each with a state proof against the latest header.

Proposals and votes themselves are transactions (POST /txs to ``gov``). A proof here has the same shape as
``GET /state/{namespace}/{key}``, so the SDK's :func:`qilian.sdk.verify.verify_state_response` checks it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query

from qilian.api.readside import ReadSide
from qilian.execution.members import (
    CURRENT_KEY,
    NEXT_KEY,
    ORG_NAMESPACE,
    PARAM_NAMESPACE,
    REVOKED_NAMESPACE,
    VALIDATOR_NAMESPACE,
    get_org,
    get_org_names,
    get_revoked,
)
from qilian.execution.modules import get_registry
from qilian.execution.modules.gov import GOV_NAMESPACE, Proposal, compute_proposal_key, get_proposal_count
from qilian.execution.modules.regulator import REGULATOR_NAMESPACE, get_regulation
from qilian.execution.nodes import ENDPOINT_NAMESPACE
from qilian.execution.params import PENDING_KEY, get_chain_limits, get_param_specs, get_pending_changes
from qilian.execution.policy import MEMBER_NAMESPACE, POLICY_NAMESPACE, RESOURCES, decode_policy
from qilian.types.codec import decode_raw, to_json_value
from qilian.types.core import ValidatorSet, compute_tx_hash

if TYPE_CHECKING:
    from qilian.node.node import Node

MAX_LISTED = 200
"""Most proposals one list answer carries (newest first)."""


def make_gov_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /gov; ``api_error(status, code, message)`` is the API's error type."""
    router = APIRouter()

    reads = ReadSide(node.store, node.suite, node.genesis)

    def proven(namespace: str, key: bytes) -> dict[str, Any]:
        """The value at (namespace, key) in the state committed by the latest header, with its proof (the read
        side's one-snapshot ``GET /state`` document)."""
        return reads.get_state(namespace, key)

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

    # -- membership and validators (chain state; docs/governance.md) ------------------------------------

    def member_doc(public_key: bytes) -> dict[str, Any]:
        raw = node.store.get_state(MEMBER_NAMESPACE, public_key)
        doc: dict[str, Any] = {"public_key": public_key.hex(), "address": node.suite.compute_address(public_key).hex()}
        if raw is not None:
            org, name, roles = decode_raw(raw)
            doc.update(org=org, name=name, roles=list(roles))
        revoked = get_revoked(node.store.get_state, public_key)
        if revoked is not None:
            doc.update(org=revoked[0], name=revoked[1], revoked_at=revoked[2], reason=revoked[3])
        return doc

    @router.get("/gov/orgs", summary="Organisations and their keys (latest executed state)")
    async def orgs() -> list[dict[str, Any]]:
        out = []
        for name in get_org_names(node.rules, node.store.get_state):
            rec = get_org(node.store.get_state, name)
            if rec is None:
                continue
            out.append({"name": name, "added": rec[0], "info": rec[1], "members": [member_doc(k) for k in rec[2]]})
        return out

    @router.get("/gov/orgs/{name}", summary="One organisation with a state proof of its record")
    async def org(name: str) -> dict[str, Any]:
        rec = get_org(node.store.get_state, name)
        if rec is None:
            raise api_error(404, "not_found", f"no organisation {name[:64]!r}")
        return {"name": name, "added": rec[0], "info": rec[1], "members": [member_doc(k) for k in rec[2]],
                "state": proven(ORG_NAMESPACE, name.encode())}

    @router.get("/gov/members/{public_key}", summary="A key's membership (or revocation) with state proofs")
    async def member(public_key: str) -> dict[str, Any]:
        try:
            key = bytes.fromhex(public_key)
        except ValueError:
            raise api_error(400, "bad_key", "a public key is hex") from None
        if not key or len(key) > 65:
            raise api_error(400, "bad_key", "a public key is 1..65 bytes")
        return {**member_doc(key), "state": proven(MEMBER_NAMESPACE, key),
                "revoked_state": proven(REVOKED_NAMESPACE, key)}

    @router.get("/gov/params", summary="Chain parameters in force at the next height, bounds, schedule, proofs")
    async def params() -> dict[str, Any]:
        """Fuel prices and block limits in force at the next height (execution/params.py), each with its hard
        bounds and a state proof of its stored entry (absent: genesis's value applies) and of the schedule."""
        tip = node.get_tip()
        specs = get_param_specs(node.genesis.params)
        limits = get_chain_limits(node.genesis.params, node.store.get_state, tip.height + 1).to_value()
        doc: dict[str, Any] = {
            "tip": tip.height, "height": tip.height + 1,
            "params": [{"name": n, "value": limits[n], "low": s.low, "high": s.high, "doc": s.doc}
                       for n, s in specs.items()],
            "scheduled": [{"height": h, "changes": c} for h, c in get_pending_changes(node.store.get_state)]}
        if tip.height:
            names = list(specs)
            docs = reads.get_states([(PARAM_NAMESPACE, n.encode()) for n in names] + [(PARAM_NAMESPACE, PENDING_KEY)])
            doc["state"] = dict(zip(names, docs[:-1], strict=True))  # one snapshot: every proof of one header
            doc["scheduled_state"] = docs[-1]
        return doc

    @router.get("/gov/nodes", summary="Nodes registered in chain state (P2P admission) and their endpoints")
    async def nodes() -> dict[str, Any]:
        """Every node key chain state registers (a member with role validator or observer) with its endpoint;
        these are the keys this node admits as peers. ``connected`` says whether this node is linked to it."""
        t = node.consensus.transport if node.consensus is not None else None
        connected = set(t.peers) if t is not None else set()
        out = []
        for reg in node.get_registered_nodes():
            address = node.suite.compute_address(reg.public_key)
            out.append({"org": reg.org, "name": reg.name, "roles": sorted(reg.roles),
                        "public_key": reg.public_key.hex(), "address": address.hex(), "endpoint": reg.endpoint,
                        "connected": address in connected, "self": reg.public_key == node.key.public_key})
        return {"tip": node.get_tip().height, "nodes": out}

    @router.get("/gov/nodes/{public_key}", summary="A node key's endpoint with a state proof")
    async def node_endpoint(public_key: str) -> dict[str, Any]:
        try:
            key = bytes.fromhex(public_key)
        except ValueError:
            raise api_error(400, "bad_key", "a public key is hex") from None
        if not key or len(key) > 65:
            raise api_error(400, "bad_key", "a public key is 1..65 bytes")
        reg = node.get_registered_node(key)
        return {**member_doc(key), "registered": reg is not None, "endpoint": reg.endpoint if reg else "",
                "state": proven(ENDPOINT_NAMESPACE, key), "member_state": proven(MEMBER_NAMESPACE, key)}

    def set_doc(vset: ValidatorSet) -> dict[str, Any]:
        return {"hash": vset.compute_hash(node.suite).hex(), "total_power": vset.total_power,
                "validators": [{"address": v.address.hex(), "public_key": v.public_key.hex(), "power": v.power,
                                "member": member_doc(v.public_key)} for v in vset.validators]}

    @router.get("/gov/validators", summary="The validator sets of the next two heights, with state proofs")
    async def validators() -> dict[str, Any]:
        tip = node.get_tip()
        current, nxt = node.valsets.get_sets_at_root(tip.state_root)
        doc: dict[str, Any] = {"tip": tip.height, "current": {"height": tip.height + 1, **set_doc(current)},
                               "next": {"height": tip.height + 2, **set_doc(nxt)}}
        if tip.height:
            doc["state"] = proven(VALIDATOR_NAMESPACE, CURRENT_KEY)
            doc["next_state"] = proven(VALIDATOR_NAMESPACE, NEXT_KEY)
        return doc

    @router.get("/gov/validators/path", summary="Validator-set changes from genesis to a height (light clients)")
    async def validator_path(to: int | None = None) -> dict[str, Any]:
        tip = node.get_tip().height
        target = tip if to is None else to
        if not 1 <= target <= tip:
            raise api_error(400, "bad_height", f"to is a committed height 1..{tip}")
        return get_validator_path(target)

    def get_validator_path(target: int) -> dict[str, Any]:
        return reads.get_validator_path(target)

    # -- regulation and the audit trail -----------------------------------------------------------------

    @router.get("/gov/regulation/{address}", summary="Whether an address is frozen or abolished, with a state proof")
    async def regulation(address: str) -> dict[str, Any]:
        if len(address) > 64:
            raise api_error(400, "bad_address", "an address is 40 hex digits or a system contract name")
        reg = get_regulation(node.store.get_state, address)
        next_height = node.get_tip().height + 1
        doc: dict[str, Any] = {"address": address, "regulation": None if reg is None else reg.to_value(),
                               "in_force_at_next_height": reg is not None and reg.is_in_force(next_height),
                               "next_height": next_height}
        if node.get_tip().height:
            doc["state"] = proven(REGULATOR_NAMESPACE, address.encode())
        return doc

    @router.get("/gov/history", summary="Governance transactions of a range of heights, with their proofs")
    async def history(from_: Annotated[int, Query(alias="from")], to: int, index: int = 0) -> dict[str, Any]:
        """The ``gov`` and ``regulator`` transactions of blocks ``from``..``to`` (at most MAX_HISTORY_RANGE
        heights; ``to`` below the tip, whose receipts the next block commits), found through the governance
        index (only the blocks that hold one are read); at most MAX_HISTORY_PAGE entries, then ``next`` names
        where to continue (``from`` and ``index`` within that block)."""
        from qilian.sdk.history import MAX_HISTORY_PAGE, MAX_HISTORY_RANGE, get_history_entry_doc, is_governance_tx

        tip = node.get_tip().height
        if not 1 <= from_ <= to < tip:
            raise api_error(400, "bad_range", f"from and to are heights with 1 <= from <= to <= {tip - 1} (a "
                                              f"receipt is proven by the next block's header)")
        if to - from_ >= MAX_HISTORY_RANGE:
            raise api_error(400, "bad_range", f"at most {MAX_HISTORY_RANGE} heights per request; page by range")
        if not 0 <= index <= 2**31:
            raise api_error(400, "bad_index", "index is a transaction position in the block of `from`")
        rec = node.sync_record
        if rec is not None and from_ <= rec.height:
            # A state-synced node holds no receipts (and below its window no blocks) up to its snapshot: the
            # history entries there cannot be proven here; say so rather than answer with a gap.
            from qilian.node.snapshots import describe_missing

            raise api_error(404, "not_on_this_node", describe_missing(rec, from_, "block")
                            or describe_missing(rec, from_, "receipts") or "")
        entries: list[dict[str, Any]] = []
        next_doc: dict[str, int] | None = None
        with node.store.begin_snapshot() as snap:
            by_height: dict[int, list[int]] = {}
            found = 0
            for h, i in snap.iter_gov_positions(from_, index, to):  # the governance index: no block scan
                if found > MAX_HISTORY_PAGE:  # one past the page: where `next` continues
                    break
                by_height.setdefault(h, []).append(i)
                found += 1
            for h, positions in by_height.items():
                block = snap.get_block(h)
                if block is None:
                    raise api_error(503, "unavailable", f"block {h} is not stored")
                if any(i >= len(block.txs) or not is_governance_tx(block.txs[i]) for i in positions):
                    raise api_error(503, "unavailable", f"the governance index disagrees with block {h}")
                commit, receipts = snap.get_commit(h), snap.get_receipts(h)
                child, child_commit = snap.get_block(h + 1), snap.get_commit(h + 1)
                if commit is None or receipts is None or child is None or child_commit is None:
                    raise api_error(503, "unavailable", f"block {h} or its child is not fully stored")
                hashes = [compute_tx_hash(node.suite, tx.body) for tx in block.txs]
                for i in positions:
                    if len(entries) >= MAX_HISTORY_PAGE:
                        next_doc = {"from": h, "index": i}
                        break
                    entries.append(get_history_entry_doc(node.suite, block, commit, hashes, i, receipts, child,
                                                         child_commit))
                if next_doc is not None:
                    break
        return {"from": from_, "to": to, "tip": tip, "entries": entries, "next": next_doc}

    return router
