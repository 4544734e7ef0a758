"""HTTP endpoints of IoT attestation (under /iot): devices and anchored batches. Registration and anchoring are
transactions (POST /txs to ``iot``); proofs of single readings are made by the gateway that holds the readings
(``qilian iot prove``) from ``GET /txs/{hash}`` and ``GET /state/app:iot/…``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from qilian.apps.iot.module import IOT_MODULE, MAX_BATCH_DEVICES, get_batch, get_device
from qilian.apps.proofs import add_check_route
from qilian.types.codec import to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node


def make_iot_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /iot; ``api_error(status, code, message)`` is the API's error type."""
    router = APIRouter(tags=["iot"])
    get = node.store.get_state

    @router.get("/iot/devices/{device_id}", summary="A device's registration (latest executed state)")
    async def device(device_id: str) -> dict[str, Any]:
        rec = get_device(get, device_id)
        if rec is None:
            raise api_error(404, "not_found", f"unknown device {device_id!r}")
        return {"device": device_id, **to_json_value(rec)}

    @router.post("/iot/devices/lookup", summary="Several devices' registrations at once (unknown ones: null)")
    async def lookup(ids: list[str]) -> dict[str, Any]:
        if len(ids) > MAX_BATCH_DEVICES:
            raise api_error(413, "too_large", f"at most {MAX_BATCH_DEVICES} devices per lookup")
        out: dict[str, Any] = {}
        for d in ids:
            rec = get_device(get, d)
            out[d] = None if rec is None else to_json_value(rec)
        return out

    @router.get("/iot/batches/{number}", summary="An anchored batch: root, count, device set, window")
    async def batch(number: int) -> dict[str, Any]:
        if not 1 <= number < 2**63:
            raise api_error(400, "bad_id", "a batch number is a positive integer")
        rec = get_batch(get, number)
        if rec is None:
            raise api_error(404, "not_found", f"no batch {number}")
        return {"batch": number, **to_json_value(rec)}

    add_check_route(router, node, api_error, IOT_MODULE)
    return router
