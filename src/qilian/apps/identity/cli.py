"""``qilian did …`` and ``qilian vc …``: DIDs in chain state and Verifiable Credentials checked offline.

Every read goes through a state proof checked against the trusted genesis (``--genesis``, default the home's):
``did resolve --proof`` and ``vc verify`` trust no node. ``vc verify --bundle FILE`` needs no node at all; make
the bundle with ``vc verify --save-bundle FILE`` while online."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from qilian.apps.appcli import KeyOpt, get_signing_key, print_doc, process_send
from qilian.cli.errors import UserError
from qilian.cli.main import DEFAULT_HOME, DEFAULT_NODE, GenesisOpt, HomeOpt, NodeOpt, console

did_app = typer.Typer(help="Decentralised identifiers (did:qilian): create, resolve with proofs, update, "
                           "deactivate.", no_args_is_help=True)
vc_app = typer.Typer(help="Verifiable Credentials: issue, verify offline, revoke, status.", no_args_is_help=True)

DidKeyOpt = Annotated[Path, typer.Option("--did-key", help="The DID's key (PEM, SM2 or Ed25519) that signs.")]
SignerOpt = Annotated[str | None, typer.Option("--signer", help="DID URL of the signing key when it is a "
                                                                "controller's (default: found in the DID).")]


def _load(path: Path) -> Any:
    from qilian.cli.main import load_signing_key

    return load_signing_key(path, None)


def _chain_id(node: str) -> str:
    from qilian.sdk.client import Client

    with Client(node) as c:
        return str(c.get_status()["chain_id"])


def get_record(node: str, home: Path, genesis: Path | None, did: str) -> tuple[Any, int, dict[str, Any]]:
    """(proven record or None, state height, the raw state response)."""
    from qilian.apps.identity.module import DID_NAMESPACE, compute_did_key, is_did
    from qilian.apps.identity.sdk import verify_did_response
    from qilian.cli.main import _load_trusted_genesis
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid

    if not is_did(did):
        raise UserError(f"{did!r} is not a did:qilian DID (did:qilian: followed by 40 hex digits)")
    g = _load_trusted_genesis(home, genesis)
    try:
        with Client(node) as c:
            resp = c.get_state(DID_NAMESPACE, compute_did_key(did))
    except ApiFailure as exc:
        raise UserError(f"{exc.code}: {exc.message}") from None
    try:
        return verify_did_response(g, did, resp), int(resp["state_height"]), resp
    except ProofInvalid as exc:
        raise UserError(f"PROOF INVALID: {exc}") from None


def _existing(node: str, home: Path, genesis: Path | None, did: str) -> Any:
    record, height, _ = get_record(node, home, genesis, did)
    if record is None:
        raise UserError(f"unknown DID {did} (proven absent at state height {height}; a DID created in the last "
                        f"block shows after the next one)")
    return record


def _signer(record: Any, key: Any, signer: str | None) -> str:
    from qilian.apps.identity.sdk import get_fragment

    if signer:
        return signer
    try:
        return f"{record.did}#{get_fragment(record, key, 'capabilityInvocation')}"
    except ValueError:
        raise UserError(f"the --did-key is not a capabilityInvocation key of {record.did}; pass --signer with a "
                        f"controller's DID URL if it is a controller's key") from None


@did_app.command("create")
def did_create(did_key: DidKeyOpt,
               controller: Annotated[list[str] | None, typer.Option(help="Controller DID (repeatable).")] = None,
               key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Create a DID whose first key (key-1) is --did-key; any member key (--key) relays the transaction."""
    from qilian.apps.identity.sdk import compute_create_args

    dk = _load(did_key)
    did, args = compute_create_args(dk, _chain_id(node), list(controller or []))
    process_send(node, get_signing_key(home, key), "did", "create", args)
    console.print(did)


@did_app.command("resolve")
def did_resolve(did: str, proof: Annotated[bool, typer.Option(help="Check the state proof against genesis.")] = True,
                home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Resolve a DID to its W3C DID document (proven against the genesis validators by default)."""
    from qilian.apps.appcli import get_json
    from qilian.apps.identity.vc import compute_resolution

    if not proof:
        print_doc({k: v for k, v in get_json(node, f"/apps/identity/dids/{did}").items() if k != "state"})
        return
    record, height, _ = get_record(node, home, genesis, did)
    if record is None:
        raise UserError(f"unknown DID {did} (proven absent at state height {height})")
    print_doc(dict(compute_resolution(record, did, height), proven=True))


@did_app.command("update")
def did_update(did: str, did_key: DidKeyOpt,
               add_key: Annotated[list[Path] | None, typer.Option(help="Add this key (PEM) (repeatable).")] = None,
               remove_key: Annotated[list[str] | None, typer.Option(help="Remove this fragment (repeatable).")] = None,
               controller: Annotated[list[str] | None, typer.Option(help="Set the controllers (repeatable).")] = None,
               signer: SignerOpt = None, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME,
               node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Change a DID's keys or controllers; a rotation is --add-key NEW --remove-key key-1 signed by the old key."""
    from qilian.apps.identity.sdk import compute_new_document, compute_op_args

    record = _existing(node, home, genesis, did)
    dk = _load(did_key)
    keys: list[tuple[str, Any]] = [(f, (t, pk)) for f, t, pk in record.keys if f not in (remove_key or [])]
    n = max([int(f[4:]) for f, _, _ in record.keys if f.startswith("key-") and f[4:].isdigit()] or [0])
    for p in add_key or []:
        n += 1
        keys.append((f"key-{n}", _load(p)))
    doc = compute_new_document(keys, list(controller) if controller is not None else list(record.controllers))
    args = compute_op_args(dk, _signer(record, dk, signer), _chain_id(node), record, "update", doc, doc)
    r = process_send(node, get_signing_key(home, key), "did", "update", args)
    console.print(f"{did} updated (version {r['result']['seq']}); keys: {', '.join(f for f, _ in keys)}")


@did_app.command("deactivate")
def did_deactivate(did: str, did_key: DidKeyOpt, signer: SignerOpt = None, key: KeyOpt = None,
                   home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Deactivate a DID for good (its keys are dropped; it resolves as deactivated)."""
    from qilian.apps.identity.sdk import compute_op_args

    record = _existing(node, home, genesis, did)
    dk = _load(did_key)
    args = compute_op_args(dk, _signer(record, dk, signer), _chain_id(node), record, "deactivate", None)
    process_send(node, get_signing_key(home, key), "did", "deactivate", args)
    console.print(f"{did} deactivated")


@vc_app.command("issue")
def vc_issue(body: Annotated[Path, typer.Argument(help="JSON with type, credentialSubject, validFrom… (the rest is "
                                                       "added).")],
             issuer: Annotated[str, typer.Option(help="Issuer DID.")], did_key: DidKeyOpt,
             status_index: Annotated[int | None, typer.Option(help="Entry in the issuer's revocation list.")] = None,
             status_list: Annotated[str, typer.Option(help="Status list name.")] = "revocation",
             created: Annotated[str, typer.Option(help="Proof time (XML dateTime, UTC).")] = "",
             out: Annotated[Path, typer.Option("--out", "-o")] = Path("credential.json"),
             home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Issue (sign) a credential off-chain with the issuer DID's assertionMethod key."""
    import datetime

    from qilian.apps.identity.sdk import get_fragment, get_key_type
    from qilian.apps.identity.vc import VC_CONTEXT, compute_secured, compute_status_entry

    record = _existing(node, home, genesis, issuer)
    dk = _load(did_key)
    try:
        frag = get_fragment(record, dk, "assertionMethod")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    doc = json.loads(body.read_text())
    if not isinstance(doc, dict):
        raise UserError(f"{body} must hold a JSON object")
    ctx = doc.get("@context") or [VC_CONTEXT]
    doc = {"@context": ctx if ctx[0] == VC_CONTEXT else [VC_CONTEXT, *ctx], **{k: v for k, v in doc.items()
                                                                              if k != "@context"}}
    doc["issuer"] = issuer
    types = doc.get("type") or []
    doc["type"] = ["VerifiableCredential", *[t for t in types if t != "VerifiableCredential"]]
    if status_index is not None:
        doc["credentialStatus"] = compute_status_entry(issuer, status_list, status_index)
    when = created or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    suite = "sm2-jcs-2025" if get_key_type(dk) == "SM2" else "eddsa-jcs-2022"
    out.write_text(json.dumps(compute_secured(doc, suite, f"{issuer}#{frag}", dk.private_key, when), indent=2,
                              ensure_ascii=False))
    console.print(f"credential issued by {issuer} ({suite}) written to {out}")


def _status_entries(vc: Any) -> list[Any]:
    from qilian.apps.identity.vc import get_status_entry

    entries = vc.get("credentialStatus", []) if isinstance(vc, dict) else []
    return [get_status_entry(e) for e in (entries if isinstance(entries, list) else [entries])]


@vc_app.command("verify")
def vc_verify(credential: Path,
              bundle: Annotated[Path | None, typer.Option(help="Verify offline from this proof bundle.")] = None,
              save_bundle: Annotated[Path | None, typer.Option(help="Also save the proofs used, for offline "
                                                                    "checks.")] = None,
              home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Verify a credential: signature, issuer DID and key, validity, revocation — each fact from a state proof
    checked against the genesis validators. Exit 2 when it does not verify."""
    import datetime

    from qilian.apps.identity.module import DID_NAMESPACE, compute_did_key, is_did
    from qilian.apps.identity.sdk import compute_status_chunk_key, verify_did_response, verify_status_response
    from qilian.apps.identity.vc import CredentialInvalid, get_issuer, verify_credential
    from qilian.cli.main import _load_trusted_genesis
    from qilian.sdk.client import Client
    from qilian.sdk.verify import ProofInvalid

    g = _load_trusted_genesis(home, genesis)
    vc = json.loads(credential.read_text())
    proofs: dict[str, Any] = json.loads(bundle.read_text()) if bundle else {}
    try:
        if not bundle:
            with Client(node) as c:
                issuer = get_issuer(vc)
                if is_did(issuer):
                    proofs[issuer] = c.get_state(DID_NAMESPACE, compute_did_key(issuer))
                for did, name, index in _status_entries(vc):
                    proofs[f"{did}/status/{name}#{index}"] = c.get_state(
                        DID_NAMESPACE, compute_status_chunk_key(did, name, index))
        if save_bundle:
            save_bundle.write_text(json.dumps(proofs))

        def resolve(did: str) -> Any:
            if did not in proofs:
                raise CredentialInvalid(f"no proof for {did} in the bundle")
            return verify_did_response(g, did, proofs[did])

        def bit(did: str, name: str, index: int) -> int:
            key = f"{did}/status/{name}#{index}"
            if key not in proofs:
                raise CredentialInvalid(f"no proof for status entry {key} in the bundle")
            return verify_status_response(g, did, name, index, proofs[key])

        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        v = verify_credential(vc, resolve, bit, now)
    except (CredentialInvalid, ProofInvalid) as exc:
        console.print(f"INVALID: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    heights = sorted({int(p["state_height"]) for p in proofs.values()})
    console.print(f"VALID: issued by {v.issuer} ({v.cryptosuite}, key {v.verification_method}); not revoked; "
                  f"proven against genesis {g.chain_id} at state height {', '.join(map(str, heights))}",
                  soft_wrap=True)


@vc_app.command("revoke")
def vc_revoke(credential: Path, did_key: DidKeyOpt, signer: SignerOpt = None, key: KeyOpt = None,
              home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Revoke a credential: its issuer's key sets its status bit on chain."""
    from qilian.apps.identity.sdk import compute_op_args

    vc = json.loads(credential.read_text())
    entries = _status_entries(vc)
    if not entries:
        raise UserError(f"{credential} has no credentialStatus entry: it cannot be revoked")
    did, name, index = entries[0]
    record = _existing(node, home, genesis, did)
    dk = _load(did_key)
    args = compute_op_args(dk, _signer(record, dk, signer), _chain_id(node), record, "set_status",
                           [name, index, 1], name, index, 1)
    process_send(node, get_signing_key(home, key), "did", "set_status", args)
    console.print(f"revoked: {did}/status/{name} entry {index} set")


@vc_app.command("status")
def vc_status(credential: Path, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
              genesis: GenesisOpt = None) -> None:
    """A credential's status bits, each proven against genesis."""
    from qilian.apps.appcli import get_proven
    from qilian.apps.identity.module import DID_NAMESPACE, get_status_bit
    from qilian.apps.identity.sdk import compute_status_chunk_key

    vc = json.loads(credential.read_text())
    out = []
    for did, name, index in _status_entries(vc):
        raw, height = get_proven(node, home, genesis, DID_NAMESPACE, compute_status_chunk_key(did, name, index))
        out.append({"list": f"{did}/status/{name}", "index": index, "bit": get_status_bit(raw, index),
                    "revoked": bool(get_status_bit(raw, index)), "proven_at_state_height": height})
    print_doc(out)
