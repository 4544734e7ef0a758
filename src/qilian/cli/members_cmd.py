"""``qilian org list|add``, ``qilian validator list|add|remove``, ``qilian member add|revoke|rotate``.

Each change builds a governance action. By default it is written to an action file (``--out``) for the usual
``qilian gov propose`` / ``gov endorse`` / ``gov execute`` plumbing; ``--propose`` proposes it at once with
``--key`` (the proposer's vote counts as yes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from qilian.cli.bootstrap_cmd import org_app
from qilian.cli.gov_cmd import KeyOpt, _admin_key, _get, _print_summary, _send, _write_action
from qilian.cli.main import DEFAULT_HOME, DEFAULT_NODE, HomeOpt, NodeOpt, _fail, console, node_app

validator_app = typer.Typer(help="The validator set: list, add (after the node caught up) and remove, by governance.",
                            no_args_is_help=True)
member_app = typer.Typer(help="An organisation's keys: add, revoke and rotate (SELF policy: the organisation's own "
                              "admin).", no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Action file to write.")]
ProposeOpt = Annotated[bool, typer.Option("--propose", help="Propose the action now with --key.")]
CAUGHT_UP_BLOCKS = 2
"""A candidate validator within this many blocks of the network's tip counts as caught up."""


def _public_key(text: str) -> bytes:
    """A public key given as hex, or as a key file (PEM: its public key is read; no password needed for that)."""
    path = Path(text)
    if path.exists():
        from qilian.sdk.keys import get_password_from_env, load_key

        try:
            return load_key(path, get_password_from_env()).public_key
        except Exception as exc:
            _fail(f"cannot read key {path}: {exc}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        _fail(f"{text!r} is neither a key file nor a hex public key")
        raise AssertionError("unreachable") from None


def _finish(action: list[Any], out: Path, propose: bool, key: Path | None, home: Path, node: str) -> None:
    _write_action(out, action)
    if propose:
        _print_summary(_send(node, _admin_key(home, key), "propose", [action, 1000]))
    else:
        console.print(f"next: qilian gov propose {out}   (or collect endorsements: qilian gov endorse {out})")


# -- organisations ------------------------------------------------------------------------------------------

@org_app.command("list")
def org_list(node: NodeOpt = DEFAULT_NODE) -> None:
    """Organisations of the chain and their keys (revoked keys are gone from the list)."""
    table = Table("organisation", "added", "member", "roles", "address")
    for o in _get(node, "/gov/orgs"):
        for m in o["members"]:
            table.add_row(o["name"], str(o["added"]), m.get("name", "?"), ", ".join(m.get("roles", [])),
                          m["address"])
    console.print(table)


@org_app.command("add")
def org_add(
    org_json: Annotated[Path, typer.Argument(help="The new organisation's org.json from `qilian org keygen`.")],
    title: Annotated[str, typer.Option(help="Display title of the organisation.")] = "",
    out: OutOpt = Path("org-add.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Admit an organisation (policy org.add: MAJORITY of admins): its admin/client keys and its node keys (role
    validator; they become validators only by `qilian validator add`)."""
    try:
        doc = json.loads(org_json.read_text())
        members = [[m["name"], bytes.fromhex(m["public_key"]), list(m["roles"])] for m in doc["members"]]
        members += [[n["name"], bytes.fromhex(n["public_key"]), ["validator"]] for n in doc.get("nodes", [])]
        name = str(doc["org"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _fail(f"{org_json} is not an org.json from `qilian org keygen`: {exc}")
        raise AssertionError("unreachable") from None
    _finish(["org.add", name, members, {"title": title} if title else {}], out, propose, key, home, node)


@org_app.command("remove")
def org_remove(name: Annotated[str, typer.Argument(help="Organisation.")], out: OutOpt = Path("org-remove.json"),
               propose: ProposeOpt = False, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME,
               node: NodeOpt = DEFAULT_NODE) -> None:
    """Remove an organisation (its keys are revoked; remove its validators first)."""
    _finish(["org.remove", name], out, propose, key, home, node)


# -- members ------------------------------------------------------------------------------------------------

@member_app.command("add")
def member_add(
    org: Annotated[str, typer.Argument(help="Organisation.")],
    name: Annotated[str, typer.Argument(help="Member name.")],
    public_key: Annotated[str, typer.Argument(help="Hex public key or key file.")],
    roles: Annotated[str, typer.Option(help="Comma-separated roles.")] = "member",
    out: OutOpt = Path("member-add.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Add a key to an organisation (policy member.add: SELF)."""
    _finish(["member.add", org, name, _public_key(public_key), [r for r in roles.split(",") if r]], out, propose,
            key, home, node)


@member_app.command("revoke")
def member_revoke(
    public_key: Annotated[str, typer.Argument(help="Hex public key or key file.")],
    reason: Annotated[str, typer.Option(help="Why (recorded on chain).")] = "",
    out: OutOpt = Path("member-revoke.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Revoke a key: its waiting transactions are evicted and it is refused from the height of revocation."""
    _finish(["member.revoke", _public_key(public_key), reason], out, propose, key, home, node)


@member_app.command("rotate")
def member_rotate(
    old: Annotated[str, typer.Argument(help="Current key (hex or key file).")],
    new: Annotated[str, typer.Argument(help="New key (hex or key file).")],
    out: OutOpt = Path("member-rotate.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Replace a key by a new one with the same name and roles (the old one is revoked)."""
    _finish(["member.rotate", _public_key(old), _public_key(new)], out, propose, key, home, node)


# -- validators ---------------------------------------------------------------------------------------------

@validator_app.command("list")
def validator_list(node: NodeOpt = DEFAULT_NODE) -> None:
    """The sets that sign the next two heights."""
    doc = _get(node, "/gov/validators")
    for label in ("current", "next"):
        s = doc[label]
        table = Table("address", "power", "organisation", "member", title=f"{label}: signs height {s['height']} "
                                                                          f"(total power {s['total_power']})")
        for v in s["validators"]:
            table.add_row(v["address"], str(v["power"]), v["member"].get("org", "?"), v["member"].get("name", "?"))
        console.print(table)


def check_caught_up(node: str, candidate: str, wait_s: float = 0.0) -> str:
    """Empty when the candidate's API answers and its tip is within CAUGHT_UP_BLOCKS of the network's; else why
    not. ``wait_s`` keeps trying that long (a syncing node gets there)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            theirs = int(httpx.get(candidate.rstrip("/") + "/status", timeout=5).json()["height"])
            ours = int(_get(node, "/status")["height"])
            problem = "" if theirs >= ours - CAUGHT_UP_BLOCKS else \
                f"the candidate is at height {theirs}, the network at {ours}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            problem = f"the candidate's API at {candidate} does not answer ({type(exc).__name__})"
        if not problem or time.monotonic() >= deadline:
            return problem
        time.sleep(0.5)


@validator_app.command("add")
def validator_add(
    public_key: Annotated[str, typer.Argument(help="Node key (hex or key file); a member with the validator role.")],
    power: Annotated[int, typer.Option(help="Voting power.")] = 1,
    candidate: Annotated[str, typer.Option(help="The candidate node's API URL (checked: reachable and caught up).")]
    = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the candidate to catch up.")] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Skip the reachable-and-caught-up check.")] = False,
    out: OutOpt = Path("validator-add.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Propose a node as validator (policy validator.update). It signs from two blocks after the deciding one; a
    validator that is down or behind only lowers the network's fault tolerance, so this refuses unless the
    candidate answers and has caught up (or --force)."""
    pub = _public_key(public_key)
    if not force:
        if not candidate:
            _fail("give --candidate URL of the new node's API (it must be reachable and caught up), or --force")
        problem = check_caught_up(node, candidate, wait)
        if problem:
            _fail(f"refusing to add a validator that is not caught up: {problem} (use --force to add it anyway)")
    else:
        warning = get_force_prediction(node, pub, power)
        if warning:
            console.print(f"[yellow]--force:[/yellow] {warning}")
    _finish(["validator.update", [[pub, power]]], out, propose, key, home, node)


def get_force_prediction(node: str, public_key: bytes, power: int) -> str:
    """What a forced addition does if the candidate stays down (docs/governance.md, "Forcing a change"): the
    validators that signed the latest commit keep the chain going only if they hold more than 2/3 of the new
    set's power. Empty when they do (or the network cannot be asked)."""
    try:
        sets = _get(node, "/gov/validators")
        tip = int(sets["tip"])
        commit = _get(node, f"/blocks/{tip}").get("commit") or {}
    except (KeyError, ValueError, TypeError):
        return ""
    signers = {s["validator"] for s in commit.get("signatures", [])}
    powers = {v["public_key"]: v["power"] for v in sets["next"]["validators"]}
    powers[public_key.hex()] = power
    addresses = {v["public_key"]: v["address"] for v in sets["next"]["validators"]}
    total = sum(powers.values())
    live = sum(p for k, p in powers.items() if addresses.get(k) in signers)
    if 3 * live > 2 * total:
        return ""
    return (f"the validators that signed block {tip} hold {live} of the new set's {total} voting power, not more "
            f"than 2/3: if the candidate stays down, the chain stalls two blocks after the change is decided and "
            f"resumes when the candidate (or enough of the others) is up and caught up")


@validator_app.command("remove")
def validator_remove(
    public_key: Annotated[str, typer.Argument(help="Validator key (hex or key file).")],
    out: OutOpt = Path("validator-remove.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Propose removing a validator (power 0); refused below the minimum set size (parameter validators.min)."""
    _finish(["validator.update", [[_public_key(public_key), 0]]], out, propose, key, home, node)


# -- node endpoints (P2P admission and dialing follow chain state: execution/nodes.py) ----------------------

@node_app.command("endpoint")
def node_endpoint(
    public_key: Annotated[str, typer.Argument(help="Node key (hex or key file) of your organisation.")],
    endpoint: Annotated[str, typer.Argument(help="host:port of its P2P listener; \"\" removes it.")],
    execute: Annotated[bool, typer.Option("--execute", help="Send it now with --key (SELF: your admin alone).")]
    = False,
    out: OutOpt = Path("node-endpoint.json"), propose: ProposeOpt = False, key: KeyOpt = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Register where a node of your organisation listens (policy node.endpoint: SELF). Every node dials the
    registered endpoints of the chain state at its height, so a joining node needs only genesis and a seed."""
    from qilian.execution.nodes import EndpointError, compute_endpoint

    if endpoint:
        try:
            compute_endpoint(endpoint)
        except EndpointError as exc:
            _fail(str(exc))
    action = ["node.endpoint", _public_key(public_key), endpoint]
    if not execute:
        _finish(action, out, propose, key, home, node)
        return
    from qilian.cli.gov_cmd import DEFAULT_DEADLINE_BLOCKS

    height = int(_get(node, "/status")["height"])
    res = _send(node, _admin_key(home, key), "execute", [action, height + DEFAULT_DEADLINE_BLOCKS, []])
    console.print(f"[green]endpoint[/green] {endpoint or '(removed)'} registered at height {res.get('height')}")


@node_app.command("peers")
def node_peers(node: NodeOpt = DEFAULT_NODE) -> None:
    """The nodes chain state registers (the keys this node admits), their endpoints and whether it is linked."""
    doc = _get(node, "/gov/nodes")
    table = Table("organisation", "node", "roles", "endpoint", "connected", "address",
                  title=f"registered nodes at height {doc['tip']}")
    for n in doc["nodes"]:
        table.add_row(n["org"], n["name"], ", ".join(n["roles"]), n["endpoint"] or "-",
                      "self" if n["self"] else ("yes" if n["connected"] else "no"), n["address"])
    console.print(table)


__all__ = ["member_app", "validator_app"]
