"""Node-side proof documents for the apps' API routers: the same shapes as ``GET /txs/{hash}`` and
``GET /state/{namespace}/{key}``, so :mod:`qilian.sdk.verify` checks them and a certificate can carry them as they
are. Also the generic "record with its history" bundle the trace and copyright certificates are made of."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.types.codec import CodecError, decode_raw, from_json_value, to_json_value
from qilian.types.core import Transaction, compute_tx_hash
from qilian.types.genesis_json import genesis_to_json

if TYPE_CHECKING:
    from qilian.node.node import Node


class ProofUnavailable(Exception):
    """The node cannot (yet) build a proof: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def get_tx_doc(node: Node, tx_hash: bytes, require_receipt: bool = True) -> dict[str, Any]:
    """A committed transaction with its inclusion and receipt proofs: the read side's one-snapshot
    ``GET /txs/{hash}`` document; with ``require_receipt``, 409 until the block that proves the receipt exists."""
    from qilian.api.errors import ApiError
    from qilian.api.readside import ReadSide

    try:
        doc = ReadSide(node.store, node.suite, node.genesis).get_tx(tx_hash)
    except ApiError as exc:
        raise ProofUnavailable(exc.status, exc.code, exc.message) from None
    if doc is None:
        raise ProofUnavailable(404, "not_found", f"no committed transaction {tx_hash.hex()}")
    if require_receipt and doc["proof"]["receipt"] is None:
        raise ProofUnavailable(409, "not_yet", f"the receipt of {tx_hash.hex()} is proven by block "
                                               f"{doc['height'] + 1}, not committed yet; ask again after the next "
                                               f"block")
    return doc


def get_state_doc(node: Node, namespace: str, key: bytes, height: int | None = None) -> dict[str, Any]:
    """A state value (or its absence) with its proof against the header of ``height`` (None: the latest) — the
    read side's one-snapshot ``GET /state`` document."""
    from qilian.api.errors import ApiError
    from qilian.api.readside import ReadSide

    try:
        return ReadSide(node.store, node.suite, node.genesis).get_state(namespace, key, height)
    except ApiError as exc:
        raise ProofUnavailable(exc.status, exc.code, exc.message) from None


def get_proven_record(state_doc: dict[str, Any]) -> Any:
    """The decoded value of a state document (None when absent); the verifier re-checks it."""
    return None if state_doc["value"] is None else decode_raw(bytes.fromhex(state_doc["value"]))


def make_bundle(node: Node, namespace: str, key: bytes, tx_hashes: Iterable[bytes], txs: dict[str, Any],
                members: dict[str, Any]) -> dict[str, Any]:
    """One record's part of a certificate: its state proof and the hashes of its history's transactions, whose
    documents go into ``txs`` and whose signers' membership proofs go into ``members`` (shared by all records).

    A signer's membership is proven at its transaction's height, under ``members["KEY@HEIGHT"]`` (the header of
    that height commits the state the transaction was checked against): who acted is who the key belonged to
    *then*, and a key revoked or moved since still shows its organisation at the time (certificate versions
    before this proved membership at the tip, under ``members["KEY"]``)."""
    hashes = []
    for th in tx_hashes:
        h = th.hex()
        if h not in txs:
            doc = get_tx_doc(node, th)
            txs[h] = doc
            sender = Transaction.decode(bytes.fromhex(doc["tx"]["encoded"])).body.sender
            member_key = f"{sender.hex()}@{doc['height']}"
            if member_key not in members:
                members[member_key] = get_state_doc(node, MEMBER_NAMESPACE, sender, int(doc["height"]))
        hashes.append(h)
    return {"state": get_state_doc(node, namespace, key), "events": hashes}


def get_genesis_doc(node: Node) -> Any:
    """The chain's genesis as JSON (what a certificate's verifier trusts, unless it pins its own)."""
    import json

    return json.loads(genesis_to_json(node.genesis))


def simulate_call(node: Node, to: str, method: str, args: list[Any], sender: bytes) -> tuple[bool, Any]:
    """Run a module call against the latest executed state without a transaction: (True, result) or (False,
    the refusal). Lets the CLI and API name a problem (wrong custodian, unknown item …) before anything is sent;
    nothing is written. The chain decides again when the real transaction executes."""
    from qilian.execution.chain import TxRejected
    from qilian.execution.contracts import ContractExecutor
    from qilian.execution.env import BlockEnv, CallFailed, Overlay, TxCall
    from qilian.execution.modules import get_module
    from qilian.execution.rules import check_tx_static
    from qilian.types.core import TxBody

    tip = node.get_tip()
    body = TxBody(node.genesis.chain_id, sender, 0, tip.height + 1, to, method, tuple(args))
    tx = Transaction(body, b"")
    try:
        member = check_tx_static(node.rules, tx, len(tx.encode()))
    except TxRejected as exc:
        return False, exc.message
    module = get_module(to)
    assert module is not None  # check_tx_static refuses unknown targets
    overlay = Overlay(node.store, {})
    env = BlockEnv(node.rules, overlay, ContractExecutor(node.suite, overlay), tip.height + 1, tip.time_ms)
    call = TxCall(tx, compute_tx_hash(node.suite, body), member, node.suite.compute_address(sender).hex())
    try:
        out = module.execute(env, call)
    except CallFailed as exc:
        return False, str(exc)
    if out.status != 0:
        return False, out.error
    return True, out.result


def run_check(node: Node, api_error: type[Exception], module: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The body of every app's ``POST /<app>/check``."""
    method, args, sender = doc.get("method"), doc.get("args"), doc.get("sender")
    if type(method) is not str or type(args) is not list or type(sender) is not str:
        raise api_error(400, "malformed", 'body must be {"method": text, "args": [...], "sender": hex}')
    try:
        values = from_json_value(args)
        key = bytes.fromhex(sender)
    except (CodecError, ValueError) as exc:
        raise api_error(400, "malformed", str(exc)) from None
    ok, result = simulate_call(node, module, method, values, key)
    if not ok:
        prefix = f"{module}.{method}: "
        raise api_error(422, "refused", str(result) if str(result).startswith(prefix) else prefix + str(result))
    return {"ok": True, "result": to_json_value(result)}


def add_check_route(router: APIRouter, node: Node, api_error: type[Exception], module: str) -> None:
    """Register ``POST /<module>/check`` on an app's router: every app module is pre-checked at the same kind of
    path, so a client (the CLI's :func:`qilian.apps.appcli.process_check`) needs only the module name."""

    async def check(doc: dict[str, Any]) -> dict[str, Any]:
        return run_check(node, api_error, module, doc)

    router.add_api_route(
        f"/{module}/check", check, methods=["POST"], name=f"check_{module}",
        summary=f"Pre-check a {module} call against the latest state (nothing is written)",
        description='Body: {"method": …, "args": [...], "sender": public key hex}. 200 with the result the call '
                    "would return, or 422 naming why the chain would refuse it (insufficient balance, unknown "
                    "DID, a department outside the policy, an expired quote …). The chain decides again when the "
                    "transaction executes.")


__all__ = ["ProofUnavailable", "add_check_route", "get_genesis_doc", "get_proven_record", "get_state_doc",
           "get_tx_doc", "make_bundle", "run_check", "simulate_call"]
