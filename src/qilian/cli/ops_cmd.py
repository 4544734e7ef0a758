"""Everyday operator commands: ``qilian status``, ``qilian events``, ``qilian keys list``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from qilian.cli.main import (
    DEFAULT_HOME,
    DEFAULT_NODE,
    HomeOpt,
    NodeOpt,
    _fail,
    _print_json,
    console,
    get_output_mode,
    is_encrypted_key,
    keys_app,
)


def get_node_apis(home: Path, node: str | None) -> list[tuple[str, str]]:
    """(name, API URL) of the nodes to ask: ``--node`` if given, else every node of the network at ``home``."""
    from qilian.node.config import load_config
    from qilian.node.launcher import get_node_homes

    if node is not None:
        return [(node, node)]
    if not (home / "network.toml").exists() and not (home / "node.toml").exists():
        return [(DEFAULT_NODE, DEFAULT_NODE)]
    out = []
    for h in get_node_homes(home):
        cfg = load_config(h)
        host = "127.0.0.1" if cfg.api_host in ("0.0.0.0", "") else cfg.api_host
        out.append((cfg.name, f"http://{host}:{cfg.api_port}"))
    return out


def status(
    home: HomeOpt = DEFAULT_HOME,
    node: Annotated[str | None, typer.Option("--node", help="Ask this node only (default: every node of the "
                                                            "network at --home).")] = None,
) -> None:
    """Height, round, peers, role and sync state of each node (exit 1 if a node does not answer)."""
    from qilian.node.launcher import get_status

    rows = []
    for name, api in get_node_apis(home, node):
        st: Any = get_status(api)
        rows.append({"node": name, "api": api, "up": st is not None, **({} if st is None else {
            "height": st["height"], "round": (st.get("consensus") or {}).get("round"),
            "peers": len(st.get("peers") or []), "validator": st.get("is_validator"),
            "mempool": st.get("mempool_size"), "p2p_violations": st.get("p2p_violations", 0),
            "chain_id": st.get("chain_id")})})
    top = max((int(r["height"]) for r in rows if r["up"]), default=0)
    for r in rows:
        if r["up"]:
            r["behind"] = top - int(r["height"])
    if get_output_mode() == "json":
        _print_json(rows)
    else:
        table = Table("node", "api", "height", "round", "peers", "validator", "mempool", "sync")
        for r in rows:
            if not r["up"]:
                table.add_row(r["node"], r["api"], "[red]down[/red]", "", "", "", "", "")
                continue
            rnd = r["round"]
            table.add_row(r["node"], r["api"], str(r["height"]), "" if rnd is None or rnd < 0 else str(rnd),
                          str(r["peers"]), "yes" if r["validator"] else "no", str(r["mempool"]),
                          "synced" if r["behind"] == 0 else f"{r['behind']} behind")
        console.print(table, soft_wrap=True)
    if not all(r["up"] for r in rows):
        raise typer.Exit(1)


def events(
    node: NodeOpt = DEFAULT_NODE,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following new blocks.")] = False,
    from_height: Annotated[int | None, typer.Option(help="Replay from this height first (resume where you "
                                                         "stopped).", min=1)] = None,
    source: Annotated[str | None, typer.Option(help="Only events of this contract or module.")] = None,
) -> None:
    """Print block and event notifications as JSON lines: the stored ones from --from-height, then (with
    --follow) live ones, with no gap between the two."""
    import websockets

    from qilian.cli.errors import UserError

    if not node.startswith(("http://", "https://")):
        raise UserError("the node URL must look like http://127.0.0.1:8545 (with the scheme); check --node")
    params = []
    if source:
        params.append(f"source={source}")
    if from_height is not None:
        params.append(f"from_height={from_height}")
    elif not follow:
        _fail("give --from-height H (stored events) and/or --follow (live events)")
    url = "ws" + node.removeprefix("http") + "/events" + ("?" + "&".join(params) if params else "")

    async def run() -> None:
        try:
            async with websockets.connect(url, max_size=1 << 20) as ws:
                async for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                    if kind == "caught_up":
                        if not follow:
                            return
                        continue
                    if kind in ("error", "overflow"):
                        raise UserError(f"the node ended the feed: {msg.get('message', kind)}; resume with "
                                        f"--from-height")
                    sys.stdout.write(json.dumps(msg, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
        except OSError as exc:
            raise UserError(f"cannot reach the node at {node}: {exc.strerror or exc}") from None
        except websockets.exceptions.InvalidURI:
            raise UserError(f"not a node URL: {node}") from None

    asyncio.run(run())


@keys_app.command("list")
def keys_list(home: HomeOpt = DEFAULT_HOME) -> None:
    """The key files of a home (or a network root and its nodes): who each belongs to, per the genesis."""
    import contextlib

    from qilian.sdk.keys import load_key
    from qilian.types.genesis_json import genesis_from_json

    files = sorted(home.glob("keys/*.pem")) + sorted(home.glob("*/keys/*.pem"))
    if not files:
        _fail(f"no key files under {home}/keys or {home}/*/keys")
    genesis = None
    if (home / "genesis.json").is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            genesis = genesis_from_json((home / "genesis.json").read_text())
    rows = []
    for f in files:
        row: dict[str, Any] = {"file": str(f), "encrypted": is_encrypted_key(f)}
        if not row["encrypted"]:
            with contextlib.suppress(Exception):
                kp = load_key(f)
                row.update(suite=kp.suite.name, address=kp.address.hex())
                if genesis is not None:
                    found = genesis.get_member(kp.public_key)
                    if found is not None:
                        row.update(org=found[0].name, member=found[1].name, roles=",".join(found[1].roles))
        rows.append(row)
    if get_output_mode() == "json":
        _print_json(rows)
        return
    table = Table("file", "suite", "address", "org", "member", "roles")
    for r in rows:
        table.add_row(r["file"], r.get("suite", "encrypted" if r["encrypted"] else "?"), r.get("address", ""),
                      r.get("org", ""), r.get("member", ""), r.get("roles", ""))
    console.print(table, soft_wrap=True)
