"""What the scenario apps' commands share: pre-check a call on the node, sign and send it and fail with the
receipt's error, read a state entry with its proof checked against the trusted genesis, read and write JSON files,
print a result. Every problem is a :class:`UserError` naming it (the CLI's one error layer reports it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from qilian.cli.errors import UserError

KeyOpt = Annotated[Path | None, typer.Option("--key", help="Signing key: a PEM file, or admin|client for the home's "
                                                           "key of that role.")]


def get_signing_key(home: Path, key: Path | None, default_role: str = "client") -> Any:
    """The key a command signs with (``--key FILE``, ``--key admin|client``, or the home's key of the role)."""
    from qilian.cli.main import get_key_path, load_signing_key

    return load_signing_key(get_key_path(home, key, default_role), None)


def process_check(node: str, key: Any, module: str, method: str, args: list[Any]) -> Any:
    """Pre-check ``module.method(args)`` on the node (``POST /<module>/check``) and return the result it would
    have; a call the latest state already refuses (insufficient balance, unknown DID, a department outside the
    policy …) is a UserError naming the problem, before anything is signed or sent — so it never becomes a failed
    receipt on the chain."""
    import httpx

    from qilian.sdk.client import ApiFailure, Client
    from qilian.types.codec import to_json_value

    try:
        with Client(node) as c:
            doc = c._json(c.http.post(f"/{module}/check", json={"method": method, "args": to_json_value(args),
                                                                "sender": key.public_key.hex()}))
    except ApiFailure as exc:
        raise UserError(f"refused: {exc.message}" if exc.code == "refused" else f"{exc.code}: {exc.message}"
                        ) from None
    except (OSError, httpx.HTTPError) as exc:
        raise UserError(f"cannot reach {node}: {exc}") from None
    return doc.get("result")


def process_send(node: str, key: Any, module: str, method: str, args: list[Any]) -> dict[str, Any]:
    """Pre-check a call, submit it, wait for its commit and return the receipt with the transaction's ``hash`` and
    ``height``; a refusal or failed receipt is a UserError naming the problem (the command exits 1, nothing was
    written)."""
    from qilian.sdk.client import ApiFailure, Client

    process_check(node, key, module, method, args)
    try:
        with Client(node) as c:
            res = c.call(key, module, method, args, wait="commit")
    except ApiFailure as exc:
        raise UserError(f"node refused the transaction: {exc.code}: {exc.message}") from None
    if res.get("status") != "committed":
        raise UserError(f"not committed yet ({res.get('status')}); check later with: qilian tx get {res.get('hash')}")
    receipt = res.get("receipt") or {}
    if receipt.get("status") != "ok":
        raise UserError(f"refused: {receipt.get('error')}")
    return dict(receipt, hash=res.get("hash"), height=res.get("height"))


def get_result(receipt: dict[str, Any]) -> Any:
    """A receipt's result as codec values (bytes back from their JSON form)."""
    from qilian.types.codec import from_json_value

    return from_json_value(receipt.get("result"))


def get_proven(node: str, home: Path, genesis: Path | None, namespace: str, key: bytes) -> tuple[bytes | None, int]:
    """The value at (namespace, key) and the state height, proven against the trusted genesis's validators."""
    from qilian.cli.main import _load_trusted_genesis
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid, verify_state_response

    g = _load_trusted_genesis(home, genesis)
    try:
        with Client(node) as c:
            res = c.get_state(namespace, key)
    except ApiFailure as exc:
        raise UserError(f"{exc.code}: {exc.message}") from None
    try:
        value = verify_state_response(g, res)
    except ProofInvalid as exc:
        raise UserError(f"PROOF INVALID: {exc}") from None
    return value, int(res["state_height"])


def get_json(node: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET a JSON document from the node; a 4xx is a UserError with the node's message (a node that does not
    answer is reported by the CLI's error layer, as for every command)."""
    import httpx

    r = httpx.get(node.rstrip("/") + path, params=params, timeout=30)
    try:
        doc = r.json()
    except ValueError:
        raise UserError(f"{node}{path} answered {r.status_code} with a body that is not JSON") from None
    if r.status_code >= 400:
        raise UserError(f"{doc.get('error')}: {doc.get('message')}")
    return doc


def read_json(path: Path) -> Any:
    """A JSON file, or a UserError naming what is wrong with it."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def write_json(path: Path, doc: Any) -> None:
    """Write a JSON document (certificates and proofs: readable, non-ASCII kept)."""
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def get_no_floats(value: Any, what: str) -> Any:
    """``value`` from JSON, refusing floats with a message that says what to use instead (a float could round
    differently on another node)."""
    if isinstance(value, float):
        raise UserError(f"{what}: floats are not allowed; write sensor values and amounts as integers or decimal "
                        f"strings like \"4.5\"")
    if isinstance(value, list):
        return [get_no_floats(v, what) for v in value]
    if isinstance(value, dict):
        return {str(k): get_no_floats(v, what) for k, v in value.items()}
    return value


def print_doc(doc: Any) -> None:
    """A JSON result, bytes shown as hex."""
    from qilian.cli.main import _print_json
    from qilian.types.codec import to_json_value

    _print_json(to_json_value(doc))


def get_account(text: str, home: Path) -> str:
    """An account from the command line: 40 hex digits, or a key file / home key role whose address it is."""
    from qilian.cli.main import get_key_path

    t = text.lower().removeprefix("0x")
    if len(t) == 40 and all(c in "0123456789abcdef" for c in t):
        return t
    path = Path(text)
    if not path.exists() and text not in ("admin", "client"):
        raise UserError(f"{text!r} is neither an account (40 hex digits) nor a key file")
    from qilian.sdk.keys import load_key

    return load_key(get_key_path(home, path, "client")).address.hex()
