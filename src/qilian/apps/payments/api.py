"""HTTP endpoints of payments and settlement (reads; writes are transactions to ``asset`` and ``settle``).

Balances come with a state proof; the others are the latest executed state. Unknown things are 404s naming them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Query

from qilian.apps.appapi import make_proven
from qilian.apps.payments.module import (
    ASSET_MODULE,
    ASSET_NAMESPACE,
    ESCROW_ACCOUNT,
    SETTLE_MODULE,
    compute_balance_key,
    compute_holders_prefix,
    compute_org_account,
    get_asset,
    get_balance,
    get_cycle,
    get_escrow,
    get_netting,
    get_obligations,
    get_quote,
    is_account,
    is_symbol,
)
from qilian.apps.proofs import add_check_route
from qilian.types.codec import decode_raw, to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node

MAX_HOLDERS_PAGE: Final = 200
"""Most holders in one page of ``GET /apps/assets/{symbol}/holders`` (each may carry a state proof)."""


def make_payments_router(node: Node, api_error: type[Exception]) -> APIRouter:
    """Routes under /apps/assets and /apps/settle."""
    router = APIRouter()
    proven = make_proven(node, api_error)
    state = node.store.get_state

    def check_symbol(symbol: str) -> None:
        if not is_symbol(symbol):
            raise api_error(400, "bad_symbol", f"{symbol[:20]!r} is not an asset symbol (upper-case letters/digits)")

    @router.get("/apps/assets/{symbol}", summary="An asset: issuer, decimals, supply")
    async def asset(symbol: str) -> dict[str, Any]:
        check_symbol(symbol)
        a = get_asset(state, symbol)
        if a is None:
            raise api_error(404, "not_found", f"no asset {symbol}")
        return a.to_value()

    @router.get("/apps/assets/{symbol}/balances/{account}", summary="A balance, with its state proof")
    async def balance(symbol: str, account: str) -> dict[str, Any]:
        check_symbol(symbol)
        if not is_account(account):
            raise api_error(400, "bad_account", "an account is 40 lower-case hex digits")
        if get_asset(state, symbol) is None:
            raise api_error(404, "not_found", f"no asset {symbol}")
        doc = proven(ASSET_NAMESPACE, compute_balance_key(symbol, account))
        value = doc["value"]
        return {"symbol": symbol, "account": account, "balance": get_balance(state, symbol, account),
                "proven_balance": 0 if value is None else decode_raw(bytes.fromhex(value)), "state": doc}

    @router.get("/apps/assets/{symbol}/holders",
                summary="Who holds an asset: balances in account order, paginated, state proofs on request")
    async def holders(symbol: str,
                      after: Annotated[str, Query(description="Last account of the previous page.")] = "",
                      limit: Annotated[int, Query(ge=1, le=MAX_HOLDERS_PAGE)] = 50,
                      proofs: Annotated[bool, Query(description="Add each balance's state proof.")] = False
                      ) -> dict[str, Any]:
        from qilian.api.readside import ReadSide

        check_symbol(symbol)
        if after and not is_account(after):
            raise api_error(400, "bad_account", "after is an account: 40 lower-case hex digits")
        asset = get_asset(state, symbol)
        if asset is None:
            raise api_error(404, "not_found", f"no asset {symbol}")
        prefix = compute_holders_prefix(symbol)
        page = ReadSide(node.store, node.suite, node.genesis).get_state_page(
            ASSET_NAMESPACE, prefix, prefix + bytes.fromhex(after) if after else b"", limit, proofs)
        rows = []
        for e in page["entries"]:
            account = e["key"][2 * len(prefix):]
            row: dict[str, Any] = {"account": account, "balance": decode_raw(bytes.fromhex(e["value"]))}
            if account == ESCROW_ACCOUNT:
                row["escrow"] = True
            if "state" in e:
                value = e["state"]["value"]
                row["proven_balance"] = 0 if value is None else decode_raw(bytes.fromhex(value))
                row["state"] = e["state"]
            rows.append(row)
        nxt = page["next"]
        return {"symbol": symbol, "supply": asset.supply, "height": page["height"], "holders": rows,
                "next": None if nxt is None else nxt[2 * len(prefix):]}

    @router.get("/apps/settle/treasury/{org}", summary="An organisation's treasury account (FX payments)")
    async def treasury(org: str) -> dict[str, Any]:
        if org not in {o.name for o in node.genesis.organisations}:
            raise api_error(404, "not_found", f"no organisation {org[:64]!r}")
        return {"org": org, "account": compute_org_account(node.suite, org)}

    @router.get("/apps/settle/escrows/{escrow_id}", summary="An escrow")
    async def escrow(escrow_id: int) -> dict[str, Any]:
        e = get_escrow(state, escrow_id) if 1 <= escrow_id < 2**63 else None
        if e is None:
            raise api_error(404, "not_found", f"no escrow {escrow_id}")
        return e.to_value()

    @router.get("/apps/settle/quotes/{quote_id}", summary="An FX quote")
    async def fx_quote(quote_id: int) -> dict[str, Any]:
        q = get_quote(state, quote_id) if 1 <= quote_id < 2**63 else None
        if q is None:
            raise api_error(404, "not_found", f"no quote {quote_id}")
        return q.to_value()

    @router.get("/apps/settle/netting", summary="The open cycle's obligations")
    async def open_cycle() -> dict[str, Any]:
        cycle = get_cycle(state)
        return {"cycle": cycle, "obligations": get_obligations(state, cycle)}

    @router.get("/apps/settle/netting/{cycle}", summary="A closed cycle's settlement instructions")
    async def netting(cycle: int) -> dict[str, Any]:
        n = get_netting(state, cycle) if 1 <= cycle < 2**63 else None
        if n is None:
            raise api_error(404, "not_found", f"cycle {cycle} is not closed (open cycle: {get_cycle(state)})")
        return dict(to_json_value(n))

    add_check_route(router, node, api_error, ASSET_MODULE)
    add_check_route(router, node, api_error, SETTLE_MODULE)
    return router
