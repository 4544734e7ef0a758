"""HTTP endpoints of government registries: a record with its state proof, its full history, applications, and
the pending applications a department still has to decide. Writes are transactions to ``registry``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from qilian.apps.appapi import make_proven
from qilian.apps.proofs import add_check_route
from qilian.apps.registry.module import (
    REGISTRY_MODULE,
    REGISTRY_NAMESPACE,
    compute_record_key,
    get_application,
    get_pending,
    get_policy_of,
    get_record,
    get_registry,
    get_version,
    is_name,
)
from qilian.types.codec import to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node


def make_registry_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /apps/registry."""
    router = APIRouter()
    proven = make_proven(node, api_error)
    state = node.store.get_state

    def registry(name: str) -> dict[str, Any]:
        reg = get_registry(state, name) if is_name(name) else None
        if reg is None:
            raise api_error(404, "not_found", f"no registry {name[:40]!r}")
        return reg

    @router.get("/apps/registry/applications/{app_id}", summary="An application with every department's vote")
    async def application(app_id: int) -> Any:
        a = get_application(state, app_id) if 1 <= app_id < 2**63 else None
        if a is None:
            raise api_error(404, "not_found", f"no application {app_id}")
        return to_json_value(a)

    @router.get("/apps/registry/{name}", summary="A registry and its approval policy")
    async def show_registry(name: str) -> Any:
        return to_json_value(registry(name))

    @router.get("/apps/registry/{name}/pending", summary="Pending applications (for one department: those it has "
                                                         "not decided yet)")
    async def pending(name: str, department: str | None = None) -> list[Any]:
        reg = registry(name)
        if department is not None and department not in get_policy_of(reg).orgs:
            raise api_error(400, "not_a_department", f"{department[:40]!r} is not a department of registry {name} "
                                                     f"({', '.join(get_policy_of(reg).orgs)})")
        out = []
        for app_id in get_pending(state, name):
            a = get_application(state, app_id)
            if a is None or (department and any(v["org"] == department for v in a["votes"])):
                continue
            out.append(to_json_value(a))
        return out

    @router.get("/apps/registry/{name}/records/{record_id}", summary="A record's current version with its proof")
    async def record(name: str, record_id: str) -> Any:
        registry(name)
        if not is_name(record_id):
            raise api_error(400, "bad_record", "a record id is 1..32 letters, digits, - _ .")
        current = get_record(state, name, record_id)
        if current is None:
            raise api_error(404, "not_found", f"no record {record_id} in registry {name}")
        return {"record": to_json_value(current), "state": proven(REGISTRY_NAMESPACE,
                                                                  compute_record_key(name, record_id))}

    @router.get("/apps/registry/{name}/records/{record_id}/history", summary="Every version with its approvals")
    async def history(name: str, record_id: str) -> list[Any]:
        registry(name)
        current = get_record(state, name, record_id) if is_name(record_id) else None
        if current is None:
            raise api_error(404, "not_found", f"no record {record_id[:40]} in registry {name}")
        return [to_json_value(get_version(state, name, record_id, v)) for v in range(1, current["version"] + 1)]

    add_check_route(router, node, api_error, REGISTRY_MODULE)
    return router
