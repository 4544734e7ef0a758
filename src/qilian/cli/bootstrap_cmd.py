"""``qilian org keygen``, ``qilian genesis assemble`` and ``qilian node configure``: a network of several
organisations bootstrapped from public files only (docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qilian.cli.main import PasswordEnvOpt, _fail, _password, err, node_app, print_facts

org_app = typer.Typer(help="An organisation's own keys and its public org.json.", no_args_is_help=True)
genesis_app = typer.Typer(help="Assemble a genesis from the organisations' org.json files.", no_args_is_help=True)


@org_app.command("keygen")
def org_keygen(
    org: Annotated[str, typer.Option("--org", help="This organisation's name.")],
    home: Annotated[Path, typer.Option("--home", help="Where this organisation's keys go (stays on this "
                                                      "machine).")],
    host: Annotated[str, typer.Option(help="Address the other organisations reach this machine's nodes at.")],
    nodes: Annotated[int, typer.Option(help="Validator nodes this organisation runs.")] = 1,
    suite: Annotated[str, typer.Option(help="Crypto suite (every organisation must choose the same).")] = "sm2",
    p2p_port: Annotated[int, typer.Option(help="P2P port of the first node (node i: + i).", min=1, max=65535)]
    = 26656,
    api_port: Annotated[int, typer.Option(help="API port of the first node (node i: + i).", min=1, max=65535)]
    = 8545,
    password_env: PasswordEnvOpt = None,
) -> None:
    """Make this organisation's node keys, TLS identities, admin and client keys, and a public org.json."""
    from qilian.node.bootstrap import BootstrapError, process_org_keygen

    try:
        res = process_org_keygen(home, org, suite, nodes, host, p2p_port, api_port, _password(password_env))
    except BootstrapError as exc:
        _fail(str(exc))
        return
    print_facts({"org.json (public: send it to whoever assembles the genesis)": str(res.org_json),
                 **{f"node home {h.name}": str(h) for h in res.node_homes},
                 **{f"key {k}": str(v) for k, v in res.key_files.items()}})


@genesis_app.command("assemble")
def genesis_assemble(
    org_files: Annotated[list[Path], typer.Argument(help="Every organisation's org.json.")],
    chain_id: Annotated[str, typer.Option(help="Chain ID.")],
    out: Annotated[Path, typer.Option(help="Where genesis.json and peers.json go.")] = Path("."),
    block_interval_ms: Annotated[int, typer.Option(help="Block interval in ms.", min=1)] = 1000,
) -> None:
    """Compute the validator set from the organisations' public keys and write genesis.json and the peer list
    (peers.json) — hand both files to every organisation. (No TLS trust bundle: peers are admitted by node key
    in chain state.)"""
    from qilian.crypto import get_suite
    from qilian.node.bootstrap import BootstrapError, process_genesis_assemble
    from qilian.types.core import ChainParams

    try:
        g = process_genesis_assemble(org_files, out, chain_id, ChainParams(block_interval_ms=block_interval_ms))
    except BootstrapError as exc:
        _fail(str(exc))
        return
    print_facts({"chain": chain_id, "suite": g.suite, "organisations": ", ".join(o.name for o in g.organisations),
                 "validators": len(g.validators.validators),
                 "genesis hash": g.compute_hash(get_suite(g.suite)).hex(),
                 "files": f"{out / 'genesis.json'}, {out / 'peers.json'}"})
    err.print("every organisation checks the genesis hash above, then runs `qilian node configure` per node",
                  soft_wrap=True)


@node_app.command("configure")
def node_configure(
    home: Annotated[Path, typer.Option("--home", help="A node home made by `qilian org keygen`.")],
    genesis: Annotated[Path, typer.Option(help="genesis.json from `qilian genesis assemble`.")],
    peers: Annotated[Path, typer.Option(help="peers.json from `qilian genesis assemble`.")],
    listen: Annotated[str | None, typer.Option(help="P2P listen address (default: the advertised host; "
                                                     "0.0.0.0 for all interfaces).")] = None,
    api_host: Annotated[str | None, typer.Option(help="API listen address (default: the advertised host).")]
    = None,
    lan: Annotated[bool, typer.Option(help="Short consensus timers for nodes on one LAN (default: WAN).")]
    = False,
) -> None:
    """Make a node home ready to start: genesis and node.toml listing every peer (its address book)."""
    from qilian.node.bootstrap import BootstrapError, process_node_configure
    from qilian.node.config import LOCAL_TIMEOUTS

    try:
        cfg = process_node_configure(home, genesis, peers, listen, api_host,
                                     dict(LOCAL_TIMEOUTS) if lan else None)
    except (BootstrapError, ValueError) as exc:
        _fail(str(exc))
        return
    print_facts({"node": cfg.name, "p2p": f"{cfg.p2p_host}:{cfg.p2p_port}", "api": f"{cfg.api_host}:{cfg.api_port}",
                 "peers": len(cfg.peers) - 1, "start": f"qilian node start --home {home}"})


@node_app.command("join")
def node_join(
    home: Annotated[Path, typer.Option("--home", help="A node home made by `qilian org keygen`.")],
    genesis: Annotated[Path, typer.Option(help="The running chain's genesis.json.")],
    seed: Annotated[list[str], typer.Option(help="host:port of a running node's P2P listener (repeatable).")],
    listen: Annotated[str | None, typer.Option(help="P2P listen address (default: the advertised host; "
                                                     "0.0.0.0 for all interfaces).")] = None,
    api_host: Annotated[str | None, typer.Option(help="API listen address (default: the advertised host).")]
    = None,
    lan: Annotated[bool, typer.Option(help="Short consensus timers for nodes on one LAN (default: WAN).")]
    = False,
    state_sync: Annotated[bool, typer.Option("--state-sync", help="Join from a verified snapshot of a recent "
                                                                  "height, then block-sync the rest (instead of "
                                                                  "re-executing the chain from genesis).")] = False,
) -> None:
    """Make a new organisation's node home ready to join a running chain with its genesis and a seed address
    (no peer list, no trust bundle: who is admitted and where to dial is chain state)."""
    from qilian.node.bootstrap import BootstrapError, process_node_join
    from qilian.node.config import LOCAL_TIMEOUTS

    try:
        cfg = process_node_join(home, genesis, seed, listen, api_host, dict(LOCAL_TIMEOUTS) if lan else None,
                                state_sync)
    except (BootstrapError, ValueError, OSError) as exc:
        _fail(str(exc))
        return
    print_facts({"node": cfg.name, "p2p": f"{cfg.p2p_host}:{cfg.p2p_port}", "api": f"{cfg.api_host}:{cfg.api_port}",
                 "seeds": ", ".join(cfg.seeds), "sync": "state sync" if cfg.state_sync else "from genesis",
                 "start": f"qilian node start --home {home}",
                 "then": "qilian org add ORG/org.json --propose (the others admit the node once it is a member), "
                         f"and qilian node endpoint KEY {cfg.p2p_host}:{cfg.p2p_port} --execute"})
