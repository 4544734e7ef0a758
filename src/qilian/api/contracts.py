"""HTTP endpoints of contracts: code and read-only queries. Deployments and calls are transactions (POST /txs)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from qilian.api.openapi import QUERY_BODY
from qilian.contracts import ContractRejected, compile_contract
from qilian.execution.block import query_contract
from qilian.execution.contracts import get_code, is_contract_target
from qilian.types.codec import CodecError, from_json_value, to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node

MAX_QUERY_FUEL = 5_000_000
"""Most fuel a read-only query may ask for (what a transaction gets)."""
QUERY_THREADS = 2
"""Queries run on worker threads, this many at a time, so a costly query never stalls consensus on the event
loop (the interpreter switches threads every few milliseconds)."""
MAX_QUERIES_WAITING = 32
"""Queries queued beyond the running ones; more are answered 429."""
MAX_QUERY_BODY = 256 * 1024
"""Largest query request body."""


ADDRESS_BYTES = 20
"""An account address is 20 bytes (Suite.compute_address)."""


def is_address_hex(text: str) -> bool:
    """Whether ``text`` is an account address as contracts see ``ctx.sender``: 40 lowercase hex digits."""
    return len(text) == 2 * ADDRESS_BYTES and all(c in "0123456789abcdef" for c in text)


def make_router(node: Node, api_error: type[Exception], read_body: Any) -> APIRouter:
    """Routes under /contracts; ``api_error(status, code, message)`` is the API's error type."""
    router = APIRouter()
    running = asyncio.Semaphore(QUERY_THREADS)
    waiting = 0

    def code_of(address: str) -> tuple[str, str, int]:
        if not is_contract_target(address):
            raise api_error(400, "bad_address", "a contract is named by 40 hex digits or a system contract name")
        code = get_code(node.store.get_state, address)
        if code is None:
            raise api_error(404, "not_found", f"no contract at {address}")
        return code

    @router.get("/contracts/{address}", summary="A contract's source, deployer, version and exports")
    async def get_contract(address: str) -> dict[str, Any]:
        source, deployer, version = code_of(address)
        try:
            exports = list(compile_contract(source).exports)
        except ContractRejected as exc:  # pragma: no cover - stored code was validated at deploy
            exports = [f"unavailable: {exc}"]
        return {"address": address, "deployer": deployer, "version": version, "exports": exports,
                "source": source}

    @router.post(
        "/contracts/{address}/query",
        summary="Call a contract function read-only (no transaction; writes fail the query)",
        openapi_extra={"requestBody": QUERY_BODY},
        description='Body: {"method": "get", "args": [...], "fuel": 1000000, "sender": "<address hex>"}; args in '
                    'the JSON form of codec values (bytes as {"hex": …}). Runs against the state after the latest '
                    "block.",
    )
    async def query(address: str, request: Request) -> dict[str, Any]:
        code_of(address)
        body = await read_body(request, MAX_QUERY_BODY)
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise api_error(400, "malformed", f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("method"), str):
            raise api_error(400, "malformed", 'body must be {"method": …, "args": [...]}')
        try:
            args = from_json_value(doc.get("args", []))
        except CodecError as exc:
            raise api_error(400, "malformed", f"args: {exc}") from None
        if not isinstance(args, list):
            raise api_error(400, "malformed", "args must be a list")
        fuel = doc.get("fuel", 5_000_000)
        if not isinstance(fuel, int) or not 0 < fuel <= MAX_QUERY_FUEL:
            raise api_error(400, "bad_fuel", f"fuel must be 1..{MAX_QUERY_FUEL}")
        sender = doc.get("sender", "")
        if not isinstance(sender, str) or (sender and not is_address_hex(sender)):
            raise api_error(400, "bad_address", f"sender must be an address: {2 * ADDRESS_BYTES} lowercase hex "
                                                f"digits")
        nonlocal waiting
        if waiting >= MAX_QUERIES_WAITING:
            raise api_error(429, "busy", f"more than {MAX_QUERIES_WAITING} queries are waiting; retry shortly")
        tip = node.get_tip()
        waiting += 1
        try:
            async with running:
                out = await asyncio.to_thread(query_contract, node.rules, node.store, address, doc["method"], args,
                                              tip.height + 1, tip.time_ms, sender, fuel)
        finally:
            waiting -= 1
        return {"ok": out.ok, "result": to_json_value(out.value), "error": out.error, "fuel_used": out.fuel_used,
                "out_of_fuel": out.out_of_fuel, "height": tip.height}

    return router
