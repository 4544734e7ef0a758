"""``qilian freeze|unfreeze|abolish|appeal``: the regulator's commands (docs/governance.md, "Regulator").

Each sends one ``regulator.*`` transaction signed by a key with the ``regulator`` role (the default policies count
one supervising organisation). When the consortium has made a policy stricter, ``--out FILE`` writes the same
action as a governance action file instead, for ``qilian gov endorse`` / ``gov execute`` or ``gov propose``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from qilian.cli.gov_cmd import KeyOpt, _write_action
from qilian.cli.main import (
    DEFAULT_HOME,
    DEFAULT_NODE,
    HomeOpt,
    NodeOpt,
    _fail,
    console,
    get_key_path,
    load_signing_key,
)

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded on chain; 1..256 characters).")]
AddressArg = Annotated[str, typer.Argument(help="Account or contract address (40 hex), a system contract name, or "
                                                "a key file (its address).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write a governance action file instead of "
                                                                 "sending (for a policy stricter than one regulator).")]


def _address(text: str) -> str:
    """An address given as text, or the address of a key file's public key."""
    path = Path(text)
    if path.is_file():
        from qilian.sdk.keys import get_password_from_env, load_key

        try:
            return load_key(path, get_password_from_env()).address.hex()
        except Exception as exc:
            _fail(f"cannot read key {path}: {exc}")
    return text.lower() if len(text) == 40 else text


def _send(node: str, home: Path, key: Path | None, method: str, args: list[Any]) -> dict[str, Any]:
    """Sign and send one ``regulator`` call and wait for its receipt; exit 1 naming the refusal."""
    from qilian.sdk.client import ApiFailure, Client

    kp = load_signing_key(get_key_path(home, key, "admin"), None)
    try:
        with Client(node) as c:
            res = c.call(kp, "regulator", method, args, wait="commit")
    except ApiFailure as exc:
        _fail(f"node refused the transaction: {exc.code}: {exc.message}")
        raise AssertionError("unreachable") from None
    except (OSError, httpx.HTTPError) as exc:
        _fail(f"cannot reach {node}: {exc}")
        raise AssertionError("unreachable") from None
    r = res.get("receipt") or {}
    if res.get("status") != "committed":
        _fail(f"not committed yet ({res.get('status')}); check later with: qilian tx get {res.get('hash')}")
    if r.get("status") != "ok":
        _fail(f"refused: {r.get('error')}")
    return res


def _report(res: dict[str, Any]) -> None:
    for e in res["receipt"].get("events") or []:
        d = e["data"]
        until = d.get("until")
        console.print(f"[green]{e['name'].lower()}[/green] {d.get('kind', 'account')} {d.get('address')} at height "
                      f"{res['height']}" + (f" until height {until}" if until else "")
                      + (f" (approved by {', '.join(d['approvers'])})" if d.get("approvers") else "")
                      + f" — {escape(str(d.get('reason', '')))}")


def freeze(
    address: AddressArg, reason: ReasonOpt,
    until: Annotated[int, typer.Option(help="First height at which the freeze no longer applies (0: until "
                                            "unfrozen).")] = 0,
    blocks: Annotated[int | None, typer.Option(help="Freeze for this many blocks from the chain's height (instead "
                                                    "of --until).")] = None,
    out: OutOpt = None, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Freeze an account (its transactions fail, except governance and its appeal) or a contract (every call
    fails; queries still work)."""
    target = _address(address)
    if blocks is not None:
        try:
            until = int(httpx.get(node.rstrip("/") + "/status", timeout=10).json()["height"]) + 1 + blocks
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            _fail(f"cannot read the chain's height from {node}: {exc}")
    if out is not None:
        _write_action(out, ["regulator.freeze", target, reason, until])
        return
    _report(_send(node, home, key, "freeze", [target, reason, until]))


def unfreeze(address: AddressArg, reason: ReasonOpt, out: OutOpt = None, key: KeyOpt = None,
             home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Lift a freeze early (an abolished account is never unfrozen)."""
    target = _address(address)
    if out is not None:
        _write_action(out, ["regulator.unfreeze", target, reason])
        return
    _report(_send(node, home, key, "unfreeze", [target, reason]))


def abolish(address: AddressArg, reason: ReasonOpt, out: OutOpt = None, key: KeyOpt = None,
            home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Abolish an account for good: its key is revoked and never returns (not for admin or validator keys)."""
    target = _address(address)
    if out is not None:
        _write_action(out, ["regulator.abolish", target, reason])
        return
    _report(_send(node, home, key, "abolish", [target, reason]))


def appeal(reason: ReasonOpt, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Appeal against the freeze of your own account (once per freeze; recorded as an event)."""
    res = _send(node, home, key, "appeal", [reason])
    console.print(f"[green]appealed[/green] at height {res['height']}: {escape(reason)}")
