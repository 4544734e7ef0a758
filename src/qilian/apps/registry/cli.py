"""``qilian registry …``: government registries with multi-department approval, from the command line.

``show`` and ``history`` check state proofs against the trusted genesis; ``history`` also proves every
department's decision by its signed transaction (``GET /txs/{hash}`` with inclusion proof)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from qilian.apps.appcli import KeyOpt, get_json, get_proven, get_signing_key, print_doc, process_send
from qilian.cli.errors import UserError
from qilian.cli.main import DEFAULT_HOME, DEFAULT_NODE, GenesisOpt, HomeOpt, NodeOpt, console

registry_app = typer.Typer(help="Government registries: create, submit changes, approve/reject per department, "
                                "show records and their history with proofs.", no_args_is_help=True)


@registry_app.command("create")
def registry_create(name: str, rule: Annotated[str, typer.Argument(help="ANY, ALL, MAJORITY, n or a/b.")],
                    dept: Annotated[list[str], typer.Option(help="An approving department (organisation); "
                                                                 "repeatable.")],
                    role: Annotated[list[str] | None, typer.Option(help="Roles that count (default admin, "
                                                                         "member).")] = None,
                    key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Create a registry whose changes need RULE of the departments (admin key)."""
    args: list[Any] = [name, rule, list(dept)] + ([list(role)] if role else [])
    r = process_send(node, get_signing_key(home, key, "admin"), "registry", "create", args)
    console.print(f"registry {name}: changes need {r['result']['text']}")


@registry_app.command("submit")
def registry_submit(name: str, record_id: str, holder: Annotated[str, typer.Option(help="The record's holder.")],
                    attr: Annotated[list[str] | None, typer.Option(help="key=value (value int:N for an integer); "
                                                                        "repeatable.")] = None,
                    doc: Annotated[list[Path] | None, typer.Option(help="A supporting document: only its SHA-256 "
                                                                        "goes on chain; repeatable.")] = None,
                    key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Apply for a new version of a record."""
    attributes: dict[str, Any] = {}
    for a in attr or []:
        k, sep, v = a.partition("=")
        if not sep:
            raise UserError(f"attribute {a!r} must be key=value")
        attributes[k] = int(v[4:]) if v.startswith("int:") and v[4:].lstrip("-").isdigit() else v
    digests = [hashlib.sha256(p.read_bytes()).digest() for p in doc or []]
    r = process_send(node, get_signing_key(home, key), "registry", "submit",
                     [name, record_id, {"holder": holder, "attributes": attributes, "documents": digests}])
    console.print(f"application {r['result']['id']}: pending ({r['result']['policy']})")


def _vote(method: str, app_id: int, note: str, key: Path | None, home: Path, node: str) -> None:
    r = process_send(node, get_signing_key(home, key), "registry", method, [app_id, note])
    res = r["result"]
    console.print(f"application {app_id}: {res['status']} (approved by {', '.join(res['approved_by']) or 'none'}; "
                  f"rejected by {', '.join(res['rejected_by']) or 'none'})" + (
                      f" — {res['result']}" if res["result"] else ""))


@registry_app.command("approve")
def registry_approve(app_id: int, note: Annotated[str, typer.Option(help="Why.")] = "", key: KeyOpt = None,
                     home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Approve an application for your department."""
    _vote("approve", app_id, note, key, home, node)


@registry_app.command("reject")
def registry_reject(app_id: int, reason: Annotated[str, typer.Option(help="Why (recorded).")], key: KeyOpt = None,
                    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Reject an application for your department."""
    _vote("reject", app_id, reason, key, home, node)


@registry_app.command("pending")
def registry_pending(name: str, department: Annotated[str | None, typer.Option(help="Only those this department "
                                                                                   "has not decided.")] = None,
                     node: NodeOpt = DEFAULT_NODE, home: HomeOpt = DEFAULT_HOME) -> None:
    """Pending applications of a registry."""
    q = f"?department={department}" if department else ""
    print_doc(get_json(node, f"/apps/registry/{name}/pending{q}"))


@registry_app.command("show")
def registry_show(name: str, record_id: str, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
                  genesis: GenesisOpt = None) -> None:
    """A record's current version, proven against the genesis validators."""
    from qilian.apps.registry.module import REGISTRY_NAMESPACE, compute_record_key, is_name
    from qilian.types.codec import decode_raw

    if not is_name(name) or not is_name(record_id):
        raise UserError("registry names and record ids are 1..32 letters, digits, - _ .")
    raw, height = get_proven(node, home, genesis, REGISTRY_NAMESPACE, compute_record_key(name, record_id))
    if raw is None:
        raise UserError(f"no record {record_id} in registry {name} (proven absent at state height {height})")
    print_doc({"record": decode_raw(raw), "proven_at_state_height": height})


@registry_app.command("history")
def registry_history(name: str, record_id: str, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
                     genesis: GenesisOpt = None) -> None:
    """Every version of a record with its application and each department's decision — each version proven in
    state and each decision proven by its signed transaction, against the genesis validators."""
    from qilian.apps.registry.module import REGISTRY_NAMESPACE, compute_version_key, is_name
    from qilian.cli.main import _load_trusted_genesis
    from qilian.execution.chain import ChainRules
    from qilian.sdk.client import Client
    from qilian.sdk.verify import ProofInvalid, verify_tx_response
    from qilian.types.codec import decode_raw

    if not is_name(name) or not is_name(record_id):
        raise UserError("registry names and record ids are 1..32 letters, digits, - _ .")
    g = _load_trusted_genesis(home, genesis)
    from qilian.crypto import get_suite

    members = ChainRules.from_genesis(g, get_suite(g.suite)).members
    out = []
    version = 1
    with Client(node) as c:
        while True:
            raw, height = get_proven(node, home, genesis, REGISTRY_NAMESPACE,
                                     compute_version_key(name, record_id, version))
            if raw is None:
                break
            entry = decode_raw(raw)
            app = entry["application"]
            for v in app["votes"]:
                try:
                    vt = verify_tx_response(g, c.get_tx(v["tx_hash"].hex()), require_receipt=False,
                                            tx_hash=v["tx_hash"])
                except ProofInvalid as exc:
                    raise UserError(f"PROOF INVALID for the decision of {v['org']}: {exc}") from None
                body = vt.tx.body
                signer = members.get(body.sender)
                if body.to != "registry" or body.args[0] != app["id"] or signer is None \
                        or signer.organisation != v["org"]:
                    raise UserError(f"the decision recorded for {v['org']} is not its signed transaction")
                v["proven"] = f"signed by {signer.organisation}/{signer.name}, in block {vt.height}"
            out.append(entry)
            version += 1
    if not out:
        raise UserError(f"no record {record_id} in registry {name} (proven absent at state height {height})")
    print_doc(out)
