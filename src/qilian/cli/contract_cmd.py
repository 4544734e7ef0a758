"""``qilian contract …`` and ``qilian evidence …``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from qilian.cli.main import (
    DEFAULT_HOME,
    DEFAULT_NODE,
    GenesisOpt,
    HomeOpt,
    NodeOpt,
    PasswordEnvOpt,
    QuietOpt,
    _client_key,
    _fail,
    _load_trusted_genesis,
    _print_json,
    console,
    get_key_path,
    load_signing_key,
    parse_arg,
    print_tx_result,
)

contract_app = typer.Typer(help="Deploy, call and query Python contracts.", no_args_is_help=True)
evidence_app = typer.Typer(help="Evidence storage (存证): register file digests, make and check certificates.",
                           no_args_is_help=True)

KeyOpt = Annotated[Path | None, typer.Option(help="Signing key: a PEM file, or `admin` / `client` for the home's "
                                                  "key of that role (default: admin for deploy and upgrade, client "
                                                  "otherwise).")]


def _admin_key(home: Path, key: Path | None, password_env: str | None) -> Any:
    return load_signing_key(get_key_path(home, key, "admin"), password_env)


ARGS_HELP = ("Arguments, read by the function's annotations (`amount: int` takes 250); otherwise text, 0xHEX, "
             "int:N, json:….")


def get_param_types(source: str, method: str) -> list[str | None]:
    """The annotation name of each parameter of ``method`` in a contract's source (None where absent)."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return []
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == method:
            return [a.annotation.id if isinstance(a.annotation, ast.Name) else None for a in fn.args.args]
    return []


def parse_typed_arg(text: str, annotation: str | None, position: int) -> Any:
    """A CLI argument read by the parameter's annotation, so `250` is an int for `amount: int` and `0b0b…` stays
    text for `to: str`; the explicit forms `int:N` and `json:…` always win; without an annotation the general
    rules of :func:`parse_arg` apply."""
    from qilian.cli.errors import UserError

    if annotation is None or annotation == "Any" or text.startswith(("int:", "json:")):
        return parse_arg(text)
    if annotation == "str":
        return text
    if annotation == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise UserError(f"argument {position + 1} ({text[:40]!r}) must be a whole number") from None
    if annotation == "bool":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise UserError(f"argument {position + 1} ({text[:40]!r}) must be true or false")
    if annotation == "bytes":
        try:
            return bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            raise UserError(f"argument {position + 1} ({text[:40]!r}) must be hex bytes") from None
    if annotation in ("list", "dict"):
        return parse_arg("json:" + text)
    return parse_arg(text)


def get_typed_args(node: str, address: str, method: str, args: list[str]) -> list[Any]:
    """Arguments converted by the called function's own signature (read from the chain); the general rules when
    the source cannot be read."""
    from qilian.sdk.client import ApiFailure, Client

    types: list[str | None] = []
    if args:
        try:
            with Client(node) as c:
                types = get_param_types(str(c.get_contract(address).get("source", "")), method)
        except (ApiFailure, OSError, httpx.HTTPError, ValueError):
            types = []
    return [parse_typed_arg(a, types[i] if i < len(types) else None, i) for i, a in enumerate(args)]


def _send(node: str, kp: Any, to: str, method: str, args: list[Any]) -> dict[str, Any]:
    from qilian.sdk.client import ApiFailure, Client

    try:
        with Client(node) as c:
            return c.call(kp, to, method, args, wait="commit")
    except ApiFailure as exc:
        _fail(f"node refused the transaction: {exc.code}: {exc.message}")
    except (OSError, httpx.HTTPError) as exc:
        _fail(f"cannot reach {node}: {exc}")
    raise AssertionError("unreachable")


def _check_receipt(res: dict[str, Any]) -> None:
    r = res.get("receipt") or {}
    if res.get("status") != "committed":
        _fail(f"not committed yet ({res.get('status')}); check later with: qilian tx get {res.get('hash')}")
    if r.get("status") != "ok":
        _print_json(res)
        _fail(f"the call failed: {r.get('error')}")


@contract_app.command("deploy")
def contract_deploy(
    file: Annotated[Path, typer.Argument(help="Contract source (.py).")],
    name: Annotated[str | None, typer.Option(help="Contract name (default: the file name).")] = None,
    init: Annotated[list[str] | None, typer.Option(help="Argument of init() (repeat); text, 0xHEX, int:N, json:…")]
    = None,
    key: KeyOpt = None,
    password_env: PasswordEnvOpt = None,
    home: HomeOpt = DEFAULT_HOME,
    node: NodeOpt = DEFAULT_NODE,
    quiet: QuietOpt = False,
) -> None:
    """Deploy a contract (a transaction by an admin key); prints its address."""
    from qilian.contracts import ContractRejected, compile_contract

    source = file.read_text()
    try:
        compile_contract(source)  # the same check the chain makes, before paying for a transaction
    except ContractRejected as exc:
        _fail(f"{file}: {exc}" + (f" — {exc.detail}" if exc.detail else ""))
    args: list[Any] = [name or file.stem, source]
    if init is not None:
        types = get_param_types(source, "init")
        args.append([parse_typed_arg(a, types[i] if i < len(types) else None, i) for i, a in enumerate(init)])
    res = _send(node, _admin_key(home, key, password_env), "contracts", "deploy", args)
    _check_receipt(res)
    if quiet:
        sys.stdout.write(str(res["receipt"]["result"]) + "\n")
        return
    console.print(f"[green]deployed[/green] {args[0]} at [bold]{res['receipt']['result']}[/bold] "
                  f"(height {res['height']})")


@contract_app.command("upgrade")
def contract_upgrade(
    address: Annotated[str, typer.Argument(help="Contract address.")],
    file: Annotated[Path, typer.Argument(help="New source.")],
    key: KeyOpt = None,
    password_env: PasswordEnvOpt = None,
    home: HomeOpt = DEFAULT_HOME,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Replace a contract's code (its storage stays)."""
    res = _send(node, _admin_key(home, key, password_env), "contracts", "upgrade", [address, file.read_text()])
    _check_receipt(res)
    console.print(f"[green]upgraded[/green] {address} (height {res['height']})")


@contract_app.command("call")
def contract_call(
    address: Annotated[str, typer.Argument(help="Contract address (or system contract name).")],
    method: Annotated[str, typer.Argument(help="Exported function.")],
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP)] = None,
    key: KeyOpt = None,
    password_env: PasswordEnvOpt = None,
    home: HomeOpt = DEFAULT_HOME,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Call a contract function in a transaction; prints the receipt (result, fuel, events)."""
    kp = _client_key(home, key, password_env)
    res = _send(node, kp, address, method, get_typed_args(node, address, method, args or []))
    print_tx_result(res)
    if (res.get("receipt") or {}).get("status") != "ok":
        raise typer.Exit(1)


@contract_app.command("query")
def contract_query(
    address: Annotated[str, typer.Argument(help="Contract address (or system contract name).")],
    method: Annotated[str, typer.Argument(help="Exported function.")],
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP)] = None,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Call a contract function read-only (no transaction)."""
    from qilian.sdk.client import ApiFailure, Client

    try:
        with Client(node) as c:
            res = c.query_contract(address, method, get_typed_args(node, address, method, args or []))
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
        return
    _print_json(res)
    if not res.get("ok"):
        raise typer.Exit(1)


def get_contract_doc(node: str, address: str) -> dict[str, Any]:
    """GET /contracts/{address}; a refusal is reported by the CLI's error layer."""
    from qilian.sdk.client import Client

    with Client(node) as c:
        return c.get_contract(address)


@contract_app.command("list")
def contract_list(
    limit: Annotated[int, typer.Option(help="Contracts per page (1..100).", min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after this page (the previous next_cursor).")] = None,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Deployed contracts, newest first (from the node's index): name, address, version, deployer."""
    from rich.table import Table

    from qilian.cli.main import get_output_mode

    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    r = httpx.get(f"{node.rstrip('/')}/contracts", params=params, timeout=30)
    doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200:
        _fail(f"the node answered {r.status_code} {doc.get('error', '')}: {doc.get('message', r.text[:200])}")
    if get_output_mode() == "json":
        _print_json(doc)
        return
    table = Table("name", "address", "version", "deployer", "height",
                  title=f"contracts (indexed to height {doc.get('indexed_height')})")
    for c in doc.get("items", []):
        table.add_row(str(c.get("name", "")), str(c.get("address", "")), str(c.get("version", "")),
                      str(c.get("deployer", "") or "(system)"), str(c.get("height", "")))
    console.print(table, soft_wrap=True)
    if doc.get("next_cursor"):
        console.print(f"more: qilian contract list --cursor {doc['next_cursor']}", soft_wrap=True)


@contract_app.command("show")
def contract_show(
    address: Annotated[str, typer.Argument(help="Contract address (or system contract name).")],
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """A contract's deployer, version and exported functions."""
    from qilian.cli.main import print_facts

    doc = get_contract_doc(node, address)
    print_facts({"address": doc["address"], "deployer": doc["deployer"] or "(system contract)",
                 "version": doc["version"], "exports": ", ".join(doc["exports"]),
                 "source lines": len(str(doc["source"]).splitlines())})


@contract_app.command("source")
def contract_source(
    address: Annotated[str, typer.Argument(help="Contract address (or system contract name).")],
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Print a contract's Python source exactly as stored on chain."""
    sys.stdout.write(str(get_contract_doc(node, address)["source"]))


def _digest(node: str, file: Path) -> tuple[bytes, str]:
    """The file's digest with the chain's hash (asked of the node: SM3 or SHA-256), computed locally."""
    from qilian.crypto import get_suite
    from qilian.sdk.client import Client

    with Client(node) as c:
        suite_name = c.get_status()["suite"]
    return get_suite(suite_name).hash(file.read_bytes()), suite_name


@evidence_app.command("put")
def evidence_put(
    file: Annotated[Path, typer.Argument(help="The document (it never leaves this machine; only its digest does).")],
    title: Annotated[str | None, typer.Option(help="Title (default: the file name).")] = None,
    doc_type: Annotated[str, typer.Option("--type", help="Document type.")] = "document",
    uri: Annotated[str, typer.Option(help="Optional external URI of the document.")] = "",
    key: KeyOpt = None,
    password_env: PasswordEnvOpt = None,
    home: HomeOpt = DEFAULT_HOME,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Register a file's digest in the evidence contract."""
    digest, suite = _digest(node, file)
    res = _send(node, _client_key(home, key, password_env), "evidence", "register",
                [digest, title or file.name, doc_type, uri])
    _check_receipt(res)
    console.print(f"[green]registered[/green] {file.name}: {suite} digest {digest.hex()} in tx {res['hash']} at "
                  f"height {res['height']}")


@evidence_app.command("verify")
def evidence_verify(
    file: Annotated[Path, typer.Argument(help="The document.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the certificate (JSON).")] = Path("cert.json"),
    wait_s: Annotated[float, typer.Option(help="Wait this long for the block that proves the receipt.")] = 30.0,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Find a file's record and write a certificate that proves it offline."""
    import time

    from qilian.execution.policy import MEMBER_NAMESPACE
    from qilian.sdk.certificate import (
        EVIDENCE_CONTRACT,
        check_certificate,
        compute_member_key,
        compute_record_key,
        make_certificate,
    )
    from qilian.sdk.client import ApiFailure, Client, StatePruned
    from qilian.sdk.verify import ProofInvalid
    from qilian.types.codec import from_json_value
    from qilian.types.core import Transaction
    from qilian.types.genesis_json import genesis_from_json

    digest, _ = _digest(node, file)
    with Client(node) as c:
        q = c.query_contract(EVIDENCE_CONTRACT, "get", [digest])
        record = from_json_value(q.get("result"))
        if not q.get("ok") or record is None:
            _fail(f"{file.name} (digest {digest.hex()}) is not registered on this chain")
        tx_hash = record["tx_hash"]
        genesis = genesis_from_json(json.dumps(c.get_genesis_json()))
        deadline = time.monotonic() + wait_s
        while True:
            try:
                tx = c.get_tx(tx_hash)
                state = c.get_state(f"c:{EVIDENCE_CONTRACT}", compute_record_key(digest))
                if tx["proof"]["receipt"] is not None and state.get("value") is not None:
                    sender = Transaction.decode(bytes.fromhex(tx["tx"]["encoded"])).body.sender
                    # membership at the registering height: what held when the registration ran
                    member = c.get_state(MEMBER_NAMESPACE, compute_member_key(sender), int(tx["height"]))
                    top = max(int(d["header"]["height"]) for d in (state, member, tx["proof"]["receipt"]))
                    path = c.get_validator_path(top)
                    break
            except StatePruned as exc:  # waiting cannot help: this node no longer keeps that height's state
                _fail(f"cannot certify {file.name} from this node: {exc.message}")
            except ApiFailure:
                pass
            if time.monotonic() > deadline:
                _fail("the block that proves the receipt has not been committed yet; try again shortly")
            time.sleep(0.2)
    try:
        cert = make_certificate(genesis, tx, state, digest, member,
                                validator_path=path if path["entries"] else None)
    except ProofInvalid as exc:
        _fail(f"the node's proofs do not check out: {exc}")
        return
    out.write_text(json.dumps(cert, indent=1))
    ev = check_certificate(cert)
    console.print(f"[green]certificate[/green] for {file.name} written to {out} (registered at height "
                  f"{ev.height} by {escape(ev.owner_org)})")


@evidence_app.command("check")
def evidence_check(
    cert_file: Annotated[Path, typer.Argument(help="Certificate (JSON) from `qilian evidence verify`.")],
    file: Annotated[Path | None, typer.Argument(help="The document, to check it is the one certified.")] = None,
    genesis: GenesisOpt = None,
) -> None:
    """Verify a certificate offline, trusting only the chain's genesis validator keys."""
    from qilian.sdk.certificate import check_certificate
    from qilian.sdk.verify import ProofInvalid

    try:
        cert = json.loads(cert_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read {cert_file}: {exc}")
        return
    pinned = _load_trusted_genesis(Path("/nonexistent"), genesis) if genesis is not None else None
    try:
        ev = check_certificate(cert, pinned, file.read_bytes() if file is not None else None)
    except ProofInvalid as exc:
        console.print(f"[red]INVALID[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    # Every line below comes from proven bytes (CheckedEvidence), never from the certificate's readable fields.
    console.print(f"[green]VALID[/green]: digest {ev.digest.hex()} registered on chain {escape(ev.chain_id)} "
                  f"(genesis {ev.genesis_hash.hex()[:16]}…) at height {ev.height}, tx {ev.tx_hash.hex()}")
    console.print(f"  title {escape(repr(ev.title))}, type {escape(repr(ev.doc_type))}, owner "
                  f"{escape(ev.owner_org)} ({escape(ev.owner_member)}, key {ev.owner_address}), "
                  f"time_ms {ev.time_ms}; commit signed by {ev.signers} validator(s)"
                  + ("; the file matches" if file is not None else "; pinned genesis" if pinned else ""))
    if genesis is None:
        console.print("  (trusting the genesis inside the certificate; pass --genesis to pin your own copy)")
