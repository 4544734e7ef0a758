"""``qilian gov …``: governed actions by online proposals or offline endorsements, and the policy table.

An action is written to a file first (``gov action …``), so that what is proposed, or what several admins endorse
offline, is exactly the same bytes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from qilian.cli.main import (
    DEFAULT_HOME,
    DEFAULT_NODE,
    HomeOpt,
    NodeOpt,
    _client_key,
    _fail,
    _print_json,
    console,
    get_key_path,
    load_signing_key,
)

gov_app = typer.Typer(help="Governance: propose, vote, endorse and execute governed actions; read policies.",
                      no_args_is_help=True)
action_app = typer.Typer(help="Write an action file (what a proposal or endorsements approve).", no_args_is_help=True)
gov_app.add_typer(action_app, name="action")

ACTION_TYPE = "qilian-gov-action"
BUNDLE_TYPE = "qilian-gov-endorsements"
DEFAULT_DEADLINE_BLOCKS = 1000
"""Endorsements are good for this many blocks past the chain's height when the first one is made."""

KeyOpt = Annotated[Path | None, typer.Option(help="Signing key: a PEM file, or `admin` for the home's admin key "
                                                  "(the default when the home holds one organisation's keys).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Action file to write.")]


def _admin_key(home: Path, key: Path | None) -> Any:
    """The admin key a governance command signs with: the one key-loading path of the CLI (``--key FILE``,
    ``--key admin``, or the home's only admin key; several organisations' keys and none chosen is an error)."""
    return load_signing_key(get_key_path(home, key, "admin"), None)


def _write_action(out: Path, action: list[Any]) -> None:
    from qilian.execution.env import CallFailed
    from qilian.execution.modules.gov import compute_action
    from qilian.types.codec import to_json_value

    try:
        compute_action(action)
    except CallFailed as exc:
        _fail(str(exc))
    out.write_text(json.dumps({"type": ACTION_TYPE, "action": to_json_value(action)}, indent=1))
    console.print(f"[green]action[/green] {action[0]} written to {out}")


def _read_action(path: Path) -> list[Any]:
    from qilian.types.codec import from_json_value

    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")
    if not isinstance(doc, dict) or doc.get("type") not in (ACTION_TYPE, BUNDLE_TYPE):
        _fail(f"{path} is not an action file (write one with `qilian gov action …`)")
    return list(from_json_value(doc["action"]))


def _send(node: str, kp: Any, method: str, args: list[Any]) -> dict[str, Any]:
    from qilian.sdk.client import ApiFailure, Client

    try:
        with Client(node) as c:
            res = c.call(kp, "gov", method, args, wait="commit")
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


def _get(node: str, path: str) -> Any:
    try:
        r = httpx.get(node.rstrip("/") + path, timeout=30)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {node}: {exc}")
        raise AssertionError("unreachable") from None
    doc = r.json()
    if r.status_code >= 400:
        _fail(f"{doc.get('error')}: {doc.get('message')}")
    return doc


def _print_summary(res: dict[str, Any]) -> None:
    s = res["receipt"]["result"]
    console.print(f"proposal [bold]{s['id']}[/bold]: {s['status']} ({s['resource']}; yes: "
                  f"{', '.join(s['yes']) or 'none'}; no: {', '.join(s['no']) or 'none'}; open until height "
                  f"{s['expires']})" + (f" — {escape(s['result'])}" if s.get("result") else ""))


# -- actions ------------------------------------------------------------------------------------------------

@action_app.command("upgrade")
def action_upgrade(address: Annotated[str, typer.Argument(help="Contract address or system contract name.")],
                   file: Annotated[Path, typer.Argument(help="New source.")], out: OutOpt = Path("action.json"),
                   ) -> None:
    """Upgrade a contract (the only way to upgrade a system contract such as evidence)."""
    _write_action(out, ["contract.upgrade", address, file.read_text()])


@action_app.command("set-policy")
def action_set_policy(
    resource: Annotated[str, typer.Argument(help="Resource, e.g. contract.deploy.")],
    rule: Annotated[str, typer.Argument(help="ALL, ANY, MAJORITY, SELF, FORBIDDEN, n or a/b.")],
    roles: Annotated[str, typer.Option(help="Comma-separated roles whose signatures count.")] = "admin",
    orgs: Annotated[str, typer.Option(help="Comma-separated organisations in scope (default: all).")] = "",
    out: OutOpt = Path("action.json"),
) -> None:
    """Change the policy of a resource."""
    _write_action(out, ["gov.set_policy", resource, rule, [o for o in orgs.split(",") if o],
                        [r for r in roles.split(",") if r]])


@action_app.command("freeze")
def action_freeze(address: Annotated[str, typer.Argument(help="Contract address.")],
                  out: OutOpt = Path("action.json")) -> None:
    """Freeze a contract: its functions refuse every call until unfrozen."""
    _write_action(out, ["contract.freeze", address])


@action_app.command("unfreeze")
def action_unfreeze(address: Annotated[str, typer.Argument(help="Contract address.")],
                    out: OutOpt = Path("action.json")) -> None:
    """Unfreeze a contract."""
    _write_action(out, ["contract.unfreeze", address])


@action_app.command("set-params")
def action_set_params(
    changes: Annotated[list[str], typer.Argument(help="NAME=VALUE, e.g. block.max_txs=2000 fuel.write=400.")],
    height: Annotated[int, typer.Option(help="Height the values apply from (0: two blocks after the deciding "
                                             "one).", min=0)] = 0,
    out: OutOpt = Path("action.json"),
) -> None:
    """Change fuel prices and block limits (policy chain.set_params), within the hard bounds (`qilian gov
    params` lists them)."""
    values: dict[str, int] = {}
    for c in changes:
        name, sep, value = c.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            _fail(f"{c!r} is not NAME=INTEGER")
        values[name.strip()] = int(value)
    _write_action(out, ["chain.set_params", values, height])


# -- online proposals ---------------------------------------------------------------------------------------

@gov_app.command("propose")
def gov_propose(
    action_file: Annotated[Path, typer.Argument(help="Action file from `qilian gov action …`.")],
    ttl: Annotated[int, typer.Option(help="Blocks the proposal stays open.")] = 1000,
    key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Propose an action; your vote counts as yes. It executes in the block whose vote meets its policy."""
    _print_summary(_send(node, _admin_key(home, key), "propose", [_read_action(action_file), ttl]))


@gov_app.command("vote")
def gov_vote(
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    choice: Annotated[str, typer.Argument(help="yes or no.")],
    key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Vote on a proposal (one vote per organisation)."""
    if choice not in ("yes", "no"):
        _fail("vote yes or no")
    _print_summary(_send(node, _admin_key(home, key), "vote", [proposal_id, choice]))


@gov_app.command("revoke")
def gov_revoke(
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Withdraw your own pending proposal."""
    _print_summary(_send(node, _admin_key(home, key), "revoke", [proposal_id]))


@gov_app.command("params")
def gov_params(node: NodeOpt = DEFAULT_NODE) -> None:
    """Chain parameters (fuel prices, block limits): in force at the next height, their hard bounds, and the
    scheduled changes."""
    doc = _get(node, "/gov/params")
    table = Table("parameter", f"at height {doc['height']}", "bounds", "what", title="chain parameters")
    for p in doc["params"]:
        table.add_row(p["name"], str(p["value"]), f"{p['low']}..{p['high']}", p["doc"])
    console.print(table)
    for s in doc["scheduled"]:
        console.print(f"scheduled from height {s['height']}: " + ", ".join(f"{k}={v}" for k, v in
                                                                          s["changes"].items()))


@gov_app.command("list")
def gov_list(status: Annotated[str | None, typer.Option(help="Only proposals with this status.")] = None,
             node: NodeOpt = DEFAULT_NODE) -> None:
    """List proposals, newest first."""
    rows = _get(node, "/gov/proposals" + (f"?status={status}" if status else ""))
    table = Table("id", "kind", "status", "resource", "yes", "no", "proposer", "expires")
    for p in rows:
        table.add_row(str(p["id"]), p["kind"], p["status"], p["resource"], ", ".join(p["yes"]), ", ".join(p["no"]),
                      p["proposer_org"], str(p["expires"]))
    console.print(table)


@gov_app.command("show")
def gov_show(proposal_id: Annotated[int, typer.Argument(help="Proposal id.")], node: NodeOpt = DEFAULT_NODE) -> None:
    """Show a proposal (with its state proof)."""
    _print_json(_get(node, f"/gov/proposals/{proposal_id}"))


@gov_app.command("policy")
def gov_policy(resource: Annotated[str | None, typer.Argument(help="One resource (with its state proof).")] = None,
               node: NodeOpt = DEFAULT_NODE) -> None:
    """Show the policy table, or one policy with its proof."""
    if resource is not None:
        _print_json(_get(node, f"/gov/policies/{resource}"))
        return
    table = Table("resource", "rule", "roles", "orgs")
    for p in _get(node, "/gov/policies"):
        table.add_row(p["resource"], p.get("rule", "-"), ", ".join(p.get("roles", [])),
                      ", ".join(p.get("orgs", [])) or "all")
    console.print(table)


# -- offline endorsements -----------------------------------------------------------------------------------

def _chain_id(home: Path, node: str) -> str:
    genesis = home / "genesis.json"
    if genesis.exists():
        return str(json.loads(genesis.read_text())["chain_id"])
    return str(_get(node, "/status")["chain_id"])


def _read_bundle(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")
    if not isinstance(doc, dict) or doc.get("type") != BUNDLE_TYPE:
        _fail(f"{path} is not an endorsement bundle (start one with `qilian gov endorse ACTION --out {path}`)")
    return doc


def _add_endorsement(bundle: dict[str, Any], kp: Any) -> None:
    from qilian.execution.modules.gov import compute_endorsement
    from qilian.types.codec import from_json_value

    pk, sig = compute_endorsement(kp.suite, kp.private_key, kp.public_key, bundle["chain_id"],
                                  list(from_json_value(bundle["action"])), bundle["deadline"])
    bundle["endorsements"] = [e for e in bundle["endorsements"] if e[0] != pk.hex()] + [[pk.hex(), sig.hex()]]


@gov_app.command("endorse")
def gov_endorse(
    action_file: Annotated[Path, typer.Argument(help="Action file, or an endorsement bundle to add to.")],
    key: Annotated[Path, typer.Option(help="Your member key.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Bundle to write (default: the input bundle).")]
    = None,
    deadline: Annotated[int | None, typer.Option(help="Last height the endorsements are good for (new bundles; "
                                                      "default: the chain's height + 1000).")] = None,
    home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Sign an action offline. Pass the bundle around; each admin adds an endorsement; one runs `gov execute`."""
    from qilian.types.codec import to_json_value

    doc = json.loads(action_file.read_text())
    if isinstance(doc, dict) and doc.get("type") == BUNDLE_TYPE:
        bundle = doc
        if deadline is not None and deadline != bundle["deadline"]:
            _fail(f"the bundle's deadline is {bundle['deadline']}; endorsements of one bundle share it")
        target = out or action_file
    else:
        action = _read_action(action_file)
        if deadline is None:
            deadline = int(_get(node, "/status")["height"]) + DEFAULT_DEADLINE_BLOCKS
        bundle = {"type": BUNDLE_TYPE, "chain_id": _chain_id(home, node), "action": to_json_value(action),
                  "deadline": deadline, "endorsements": []}
        target = out or action_file.with_suffix(".endorsed.json")
    _add_endorsement(bundle, _client_key(home, key, None))
    target.write_text(json.dumps(bundle, indent=1))
    console.print(f"[green]endorsed[/green] ({len(bundle['endorsements'])} endorsement(s), good until height "
                  f"{bundle['deadline']} on chain {bundle['chain_id']}) → {target}")


@gov_app.command("execute")
def gov_execute(
    bundle_file: Annotated[Path, typer.Argument(help="Endorsement bundle from `qilian gov endorse`.")],
    endorse: Annotated[list[Path] | None, typer.Option(help="Also endorse with this key (repeat).")] = None,
    key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Submit an action with its endorsements in one transaction (the submitter's key counts as one approval)."""
    from qilian.types.codec import from_json_value

    bundle = _read_bundle(bundle_file)
    for k in endorse or []:
        _add_endorsement(bundle, _client_key(home, k, None))
    endorsements = [[bytes.fromhex(pk), bytes.fromhex(sig)] for pk, sig in bundle["endorsements"]]
    res = _send(node, _admin_key(home, key), "execute",
                [list(from_json_value(bundle["action"])), bundle["deadline"], endorsements])
    events = res["receipt"].get("events") or []
    approvers: list[str] = next((e["data"].get("approvers") for e in events if e.get("name") == "Executed"), [])
    console.print(f"[green]executed[/green] {bundle_file} at height {res['height']} (approved by "
                  f"{', '.join(approvers)})")


# -- regulation and the audit trail ---------------------------------------------------------------------------

@gov_app.command("regulation")
def gov_regulation(address: Annotated[str, typer.Argument(help="Account or contract address.")],
                   node: NodeOpt = DEFAULT_NODE) -> None:
    """Whether an address is frozen or abolished (with the state proof)."""
    _print_json(_get(node, f"/gov/regulation/{address}"))


@gov_app.command("history")
def gov_history(
    first: Annotated[int, typer.Option("--from", help="First height.")],
    last: Annotated[int | None, typer.Option("--to", help="Last height (default: the last height whose receipts "
                                                          "are committed, the tip − 1).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, or json: the verifiable export.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the export here (default: stdout).")]
    = None,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Every governance action in a range of heights — proposals, votes, endorsement executions, membership and
    validator changes, the regulator's actions — with the proofs `qilian gov verify-history` checks offline."""
    from qilian.sdk.history import HISTORY_TYPE, HISTORY_VERSION, MAX_HISTORY_RANGE, compute_history_text

    if fmt not in ("table", "json"):
        _fail("--format is table or json")
    status = _get(node, "/status")
    if last is None:
        last = int(status["height"]) - 1
    if not 1 <= first <= last:
        _fail(f"--from and --to are heights with 1 <= from <= to (the chain is at {status['height']})")
    entries: list[dict[str, Any]] = []
    start = first
    while start <= last:  # the API scans at most MAX_HISTORY_RANGE heights per request
        stop = min(last, start + MAX_HISTORY_RANGE - 1)
        index = 0
        while True:
            page = _get(node, f"/gov/history?from={start}&to={stop}&index={index}")
            entries += page["entries"]
            if page["next"] is None:
                break
            start, index = page["next"]["from"], page["next"]["index"]
        start = stop + 1
    # receipts of `last` are proven by header last+1: the path covers the sets up to there
    path = _get(node, f"/gov/validators/path?to={last + 1}")
    doc = {"type": HISTORY_TYPE, "version": HISTORY_VERSION, "chain_id": status["chain_id"], "from": first,
           "to": last, "entries": entries, "validator_path": path if path.get("entries") else None}
    if fmt == "json":
        text = compute_history_text(doc)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text)
            console.print(f"[green]exported[/green] {len(entries)} governance transaction(s) of heights "
                          f"{first}..{last} → {out} (check it with: qilian gov verify-history {out})")
        return
    _print_history_table(entries)


def _print_history_table(entries: list[dict[str, Any]]) -> None:
    table = Table("height", "tx", "sender", "orgs", "call", "action", "proposal", "vote", "outcome", "approvers")
    for e in entries:
        outcome = e["outcome"] + (f" ({e['proposal_status']})" if e.get("proposal_status") else "")
        if e["error"]:
            outcome += f": {e['error'][:80]}"
        table.add_row(str(e["height"]), e["hash"][:12], e["sender"][:12], ", ".join(e["sender_orgs"]),
                      f"{e['module']}.{e['method']}", e["action"] or "", "" if e["proposal"] is None
                      else str(e["proposal"]), "" if e["vote"] is None else str(e["vote"]), escape(outcome),
                      ", ".join(e["approvers"]))
    console.print(table)


@gov_app.command("verify-history")
def gov_verify_history(
    file: Annotated[Path, typer.Argument(help="Export from `qilian gov history --format json`.")],
    genesis: Annotated[Path | None, typer.Option(help="The chain's genesis.json (default: the home's).")] = None,
    table: Annotated[bool, typer.Option("--table", help="Also print the proven actions.")] = False,
    home: HomeOpt = DEFAULT_HOME,
) -> None:
    """Verify an export offline, trusting only the genesis validators: every entry proven with its receipt, every
    readable field recomputed from the proven bytes. Exit 0 VALID, 2 INVALID."""
    from qilian.sdk.history import verify_history_text
    from qilian.sdk.verify import ProofInvalid
    from qilian.types.codec import CodecError
    from qilian.types.genesis_json import genesis_from_json

    gpath = genesis or home / "genesis.json"
    try:
        g = genesis_from_json(gpath.read_text())
        text = file.read_text()
    except (OSError, ValueError, CodecError) as exc:  # ValueError: not UTF-8
        _fail(f"cannot read {gpath} or {file}: {exc}")
        raise AssertionError("unreachable") from None
    try:
        verified = verify_history_text(g, text)
    except ProofInvalid as exc:
        console.print(f"[red]INVALID[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(f"[green]VALID[/green]: {len(verified.entries)} governance transaction(s) of heights "
                  f"{verified.first}..{verified.last} on chain {verified.chain_id}, each proven with its receipt "
                  f"from genesis (the list's completeness is not proven)")
    if table:
        _print_history_table(list(verified.summaries))
