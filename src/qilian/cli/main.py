"""The ``qilian`` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from qilian import __version__
from qilian.cli import sim_cmd

app = typer.Typer(help="Qilian (齐链): a consortium blockchain. Start with `qilian up`.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
keys_app = typer.Typer(help="Create and inspect keys.", no_args_is_help=True)
node_app = typer.Typer(help="Run a node.", no_args_is_help=True)
tx_app = typer.Typer(help="Send and read transactions.", no_args_is_help=True)
block_app = typer.Typer(help="Read blocks.", no_args_is_help=True)
state_app = typer.Typer(help="Read state with proofs.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(node_app, name="node")
app.add_typer(tx_app, name="tx")
app.add_typer(block_app, name="block")
app.add_typer(state_app, name="state")
app.add_typer(bench_app, name="bench")
app.command("sim")(sim_cmd.sim)

console = Console()
err = Console(stderr=True)

DEFAULT_HOME = Path(os.environ.get("QILIAN_HOME", str(Path.home() / ".qilian" / "devnet")))
DEFAULT_NODE = os.environ.get("QILIAN_NODE", "http://127.0.0.1:8545")

HomeOpt = Annotated[Path, typer.Option("--home", help="Node home directory (env QILIAN_HOME).")]
NodeOpt = Annotated[str, typer.Option("--node", help="Node API URL (env QILIAN_NODE).")]


def _fail(msg: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(msg)}")
    raise typer.Exit(code)


KEY_PASSWORD_ENV = "QILIAN_KEY_PASSWORD"
"""Where every command (and the node) looks for the password of an encrypted key when no --password-env is given."""

PasswordEnvOpt = Annotated[str | None, typer.Option(
    "--password-env", help=f"Env var holding the password of an encrypted key (default: {KEY_PASSWORD_ENV}; "
                           f"on a terminal you are asked).")]


def _password(password_env: str | None) -> bytes | None:
    """The password named by --password-env (for writing new keys: unset means unencrypted)."""
    if not password_env:
        return None
    v = os.environ.get(password_env)
    if not v:
        _fail(f"environment variable {password_env} is empty or unset")
    return v.encode() if v else None


def is_encrypted_key(path: Path) -> bool:
    """Whether a PEM key file is password-protected (PKCS#8 EncryptedPrivateKeyInfo)."""
    return b"ENCRYPTED" in path.read_bytes()[:200]


def get_key_password(path: Path, password_env: str | None) -> bytes | None:
    """The one way every command gets a key's password: --password-env VAR, else $QILIAN_KEY_PASSWORD, else a
    prompt on a terminal; an encrypted key with none of these is a clear error, never a traceback."""
    if password_env:
        return _password(password_env)
    if not is_encrypted_key(path):
        return None
    v = os.environ.get(KEY_PASSWORD_ENV)
    if v:
        return v.encode()
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"password of {path}: ").encode()
    _fail(f"{path} is encrypted: set {KEY_PASSWORD_ENV}, pass --password-env VAR naming the variable that holds "
          f"its password, or run on a terminal to be asked")
    return None


def load_signing_key(path: Path, password_env: str | None) -> Any:
    """Load a key for signing with the password from :func:`get_key_password`."""
    from qilian.crypto import CryptoError
    from qilian.sdk.keys import load_key

    if not path.is_file():
        _fail(f"no key file {path}")
    password = get_key_password(path, password_env)
    try:
        return load_key(path, password)
    except CryptoError as exc:
        hint = " (wrong password?)" if password is not None else ""
        _fail(f"cannot use the key {path}{hint}: {exc}")


OUTPUT_ENV = "QILIAN_OUTPUT"
"""table or json; the default is table on a terminal and json when piped (``--output`` sets it per call)."""


def get_output_mode() -> str:
    """``json`` or ``table`` for this invocation."""
    mode = os.environ.get(OUTPUT_ENV, "")
    if mode in ("json", "table"):
        return mode
    return "table" if console.is_terminal else "json"


def _print_json(doc: Any) -> None:
    """A JSON document: highlighted on a terminal, plain and never wrapped when piped (hex stays whole)."""
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    if console.is_terminal:
        console.print_json(text)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def compute_without_encoded(doc: Any) -> Any:
    """A response without its ``encoded`` hex fields (the canonical bytes verifiers need, noise for people)."""
    if isinstance(doc, dict):
        return {k: compute_without_encoded(v) for k, v in doc.items() if k != "encoded"}
    if isinstance(doc, list):
        return [compute_without_encoded(v) for v in doc]
    return doc


def print_tx_result(res: dict[str, Any]) -> None:
    """A submitted transaction's answer: JSON as the node gave it when piped (or --output json); on a terminal a
    one-line summary, then the answer without the canonical-bytes hex."""
    if get_output_mode() == "json":
        _print_json(res)
        return
    r = res.get("receipt") or {}
    if res.get("status") == "committed":
        outcome = r.get("status", "?")
        colour = "green" if outcome == "ok" else "red"
        line = (f"[{colour}]{outcome}[/{colour}]: committed at height {res.get('height')}, index {res.get('index')}"
                f", fuel {r.get('fuel_used', 0)}, {len(r.get('events') or [])} event(s)")
        if r.get("error"):
            line += f" — {escape(str(r['error']))}"
    else:
        line = f"{res.get('status')}: not committed yet; check with qilian tx get {res.get('hash')}"
    console.print(line, soft_wrap=True)
    _print_json(compute_without_encoded(res))


def print_facts(facts: dict[str, Any], title: str | None = None) -> None:
    """Facts about one thing: a two-column table on a terminal (or with --output table), JSON otherwise."""
    if get_output_mode() == "json":
        _print_json(facts)
        return
    table = Table(show_header=False, title=title, box=None)
    for k, v in facts.items():
        table.add_row(str(k), escape(str(v)))
    console.print(table, soft_wrap=True)


@app.callback()
def _global_options(
    output: Annotated[str | None, typer.Option("--output", help="table or json (default: table on a terminal, "
                                                              "json when piped).")] = None,
) -> None:
    if output is not None:
        if output not in ("table", "json"):
            _fail("--output is table or json")
        os.environ[OUTPUT_ENV] = output


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"qilian {__version__}")


# -- keys ------------------------------------------------------------------------------------------------


@keys_app.command("new")
def keys_new(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the PEM key.")],
    suite: Annotated[str, typer.Option(help="sm2 or ed25519.")] = "sm2",
    password_env: Annotated[str | None, typer.Option(help="Encrypt with the password in this env var.")] = None,
) -> None:
    """Create a key (PKCS#8 PEM, mode 0600)."""
    from qilian.crypto import SUITES
    from qilian.sdk.keys import generate_key, save_key

    if suite not in SUITES:
        _fail(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if out.exists():
        _fail(f"{out} exists; refusing to overwrite a key")
    key = generate_key(suite)
    save_key(key, out, _password(password_env))
    print_facts({"suite": suite, "public_key": key.public_key.hex(), "address": key.address.hex(),
                 "file": str(out)})


@keys_app.command("show")
def keys_show(
    path: Annotated[Path, typer.Argument(help="PEM key file.")],
    password_env: PasswordEnvOpt = None,
) -> None:
    """Show a key's suite, public key and address."""
    key = load_signing_key(path, password_env)
    print_facts({"suite": key.suite.name, "public_key": key.public_key.hex(), "address": key.address.hex(),
                 "public_key_pem": key.suite.public_key_to_pem(key.public_key).decode()})


# -- chain set-up and node --------------------------------------------------------------------------------


@app.command()
def init(
    home: HomeOpt = DEFAULT_HOME,
    chain_id: Annotated[str, typer.Option(help="Chain ID.")] = "qilian-dev",
    suite: Annotated[str, typer.Option(help="Crypto suite: sm2 or ed25519.")] = "sm2",
    orgs: Annotated[str, typer.Option(help="Comma-separated organisation names.")] = "org1",
    port: Annotated[int, typer.Option(help="HTTP API port (first node's).", min=1, max=65535)] = 8545,
    p2p_port: Annotated[int, typer.Option(help="P2P port (first node's).", min=1, max=65535)] = 26656,
    block_interval_ms: Annotated[int, typer.Option(help="Block interval in ms.")] = 1000,
    empty_blocks: Annotated[bool, typer.Option(help="Produce empty blocks on every interval.")] = False,
    validators: Annotated[int, typer.Option(help="Number of validators; with more than one, a directory per "
                                                 "node is written under --home.")] = 1,
    hosts: Annotated[str | None, typer.Option(help="Comma-separated host of each validator (default: all on "
                                                   "127.0.0.1).")] = None,
    password_env: Annotated[str | None, typer.Option(help="Encrypt keys with the password in this env var.")]
    = None,
) -> None:
    """Write a genesis, node configs and keys for a new chain."""
    from qilian.crypto import SUITES
    from qilian.node.config import init_home, init_network
    from qilian.types.core import ChainParams

    if suite not in SUITES:
        _fail(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if validators < 1:
        _fail("--validators must be at least 1")
    org_names = tuple(o.strip() for o in orgs.split(",") if o.strip())
    if not org_names:
        _fail("at least one organisation is needed")
    host_list = tuple(h.strip() for h in hosts.split(",") if h.strip()) if hosts else ()
    params = ChainParams(block_interval_ms=block_interval_ms, create_empty_blocks=empty_blocks)
    try:
        if validators == 1 and not host_list:
            res = init_home(home, chain_id, suite, org_names, port, params, _password(password_env))
            key_files = res.key_files
            start = f"qilian node start --home {home}"
        else:
            net = init_network(home, validators, chain_id, suite, org_names, host_list, port, p2p_port, params,
                               _password(password_env))
            key_files = net.key_files
            start = (f"qilian up --home {home}   (all on this machine), or on each host: "
                     f"qilian node start --home <copy of {home}/nodeI>")
    except (FileExistsError, ValueError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]initialised[/green] chain [bold]{chain_id}[/bold] ({suite}, {validators} "
                  f"validator{'s' if validators > 1 else ''}) in {home}")
    table = Table("key", "file")
    for label, path in key_files.items():
        table.add_row(label, str(path))
    console.print(table)
    console.print(f"start it with: {start}")


@node_app.command("start")
def node_start(
    home: HomeOpt = DEFAULT_HOME,
    port: Annotated[int | None, typer.Option(help="Override the API port.", min=1, max=65535)] = None,
) -> None:
    """Run the node of a home directory until Ctrl-C."""
    from qilian.crypto import CryptoError
    from qilian.node.config import load_config
    from qilian.node.run import HomeInUse, run_node
    from qilian.sdk.keys import load_key

    if not (home / "node.toml").exists():
        _fail(f"{home} has no node.toml: run `qilian init --home {home}` first")
    cfg = load_config(home)
    if is_encrypted_key(cfg.key_path) and not os.environ.get(KEY_PASSWORD_ENV):
        _fail(f"the node key {cfg.key_path} is encrypted and {KEY_PASSWORD_ENV} is not set: export "
              f"{KEY_PASSWORD_ENV}=… (docs/deploy.md keeps it in /etc/qilian/env)")
    try:
        load_key(cfg.key_path, os.environ.get(KEY_PASSWORD_ENV, "").encode() or None)
    except CryptoError:
        _fail(f"cannot open the node key {cfg.key_path}: wrong {KEY_PASSWORD_ENV}?")
    try:
        run_node(home, port)
    except HomeInUse as exc:
        _fail(str(exc))


@node_app.command("prune")
def node_prune(
    home: HomeOpt = DEFAULT_HOME,
    compact: Annotated[bool, typer.Option(help="Then give the freed space back to the file system (LMDB: rewrite "
                                               "the file with full pages; RocksDB: a full compaction).")] = False,
) -> None:
    """Delete now, with the node stopped, the states older than [store] keep_states (a running pruning node does
    this after each block by itself); --compact also shrinks the files."""
    from qilian.node.config import load_config
    from qilian.node.pruning import PRUNE_BATCH_ENTRIES
    from qilian.node.run import HomeInUse, acquire_home_lock
    from qilian.storage.store import ChainStore, get_store_engine

    if not (home / "node.toml").exists():
        _fail(f"{home} has no node.toml: run `qilian init --home {home}` first")
    cfg = load_config(home)
    if not cfg.store_keep_states:
        _fail(f"{home} is an archive node ([store] keep_states = 0 keeps every state): set keep_states in "
              f"{home / 'node.toml'} first (at least 1001)")
    if get_store_engine(cfg.data_path) is None:
        _fail(f"{cfg.data_path} holds no chain store yet: start the node once")
    try:
        lock_fd = acquire_home_lock(home)
    except HomeInUse as exc:
        _fail(str(exc))
        return
    try:
        store = ChainStore(cfg.data_path, keep_states=cfg.store_keep_states)
        try:
            since = store.process_enable_stale_index()
            before = store.get_disk_bytes()
            entries = 0
            with Progress(TextColumn("{task.description}"), console=err, transient=True) as prog:
                task = prog.add_task("pruning", total=None)
                while True:
                    step = store.process_prune(PRUNE_BATCH_ENTRIES)
                    entries += step.entries
                    prog.update(task, description=f"pruning: {entries:,} stale entries deleted")
                    if not step.more:
                        break
                if compact:
                    prog.update(task, description="compacting")
                    store.process_compact()
            after = store.get_disk_bytes()
            console.print(f"pruned {entries:,} stale entries; states kept from height "
                          f"{store.get_oldest_state_version() + 1} (last {cfg.store_keep_states}); store "
                          f"{before / 2**20:,.0f} MiB → {after / 2**20:,.0f} MiB"
                          + ("" if compact else " (add --compact to give the freed space back)"))
            if since > 1:
                console.print(f"[dim]the stale index starts at height {since} (pruning was enabled then): nodes "
                              f"replaced before it stay until the node is resynced[/dim]")
        finally:
            store.close()
    finally:
        os.close(lock_fd)


@app.command()
def up(
    home: HomeOpt = DEFAULT_HOME,
    suite: Annotated[str, typer.Option(help="Crypto suite for a new chain: sm2 or ed25519.")] = "sm2",
    validators: Annotated[int, typer.Option(help="Validators of a new local network.")] = 4,
    port: Annotated[int, typer.Option(help="HTTP API port of the first node (node i: port + i).", min=1,
                                      max=65535)] = 8545,
    p2p_port: Annotated[int, typer.Option(help="P2P port of the first node of a new network (node i: + i).", min=1,
                                   max=65535)]
    = 26656,
    detach: Annotated[bool, typer.Option(help="Start in the background and return; stop with `qilian down`.")]
    = False,
    wait_s: Annotated[float, typer.Option(help="How long to wait for the first blocks.")] = 60.0,
) -> None:
    """Create (if needed) and start a local network of validator processes; Ctrl-C stops them all."""
    import time

    from rich.live import Live

    from qilian.crypto import SUITES
    from qilian.node.config import init_network
    from qilian.node.launcher import (
        get_log_tail,
        get_running_nodes,
        get_status,
        start_network,
        stop_network,
        wait_for_blocks,
    )

    if suite not in SUITES:
        _fail(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    running = get_running_nodes(home)
    if running:
        _fail(f"the network in {home} is already running ({', '.join(running)}); stop it first with "
              f"`qilian down --home {home}`")
    (home / "pids").unlink(missing_ok=True)  # left by an interrupted run whose processes are gone
    if not (home / "network.toml").exists() and not (home / "node.toml").exists():
        if validators < 1:
            _fail("--validators must be at least 1")
        init_network(home, validators, suite_name=suite, api_port=port, p2p_port=p2p_port)
        console.print(f"[green]created[/green] a {suite} network of {validators} validators in {home}")
    t0 = time.monotonic()
    launched = start_network(home, detach)
    apis = [lch.api for lch, _ in launched]
    procs = [p for _, p in launched]
    try:
        with console.status(f"starting {len(apis)} node(s) and waiting for the first block (up to {wait_s:.0f} s)…"):
            started = wait_for_blocks(apis, procs, wait_s)
    except BaseException:
        stop_network(home)  # Ctrl-C while waiting: never leave processes or a pids file behind
        raise
    if not started:
        dead = [lch for lch, p in launched if p.poll() is not None]
        stop_network(home)
        if dead:
            lch = dead[0]
            _fail(f"node {lch.name} exited while starting; the end of {lch.home / 'node.log'}:\n"
                  f"{get_log_tail(lch.home)}")
        logs = "\n".join(f"  {lch.home / 'node.log'}" for lch, _ in launched)
        _fail(f"the network did not start committing blocks within {wait_s:.0f} s; see the logs:\n{logs}")
    console.print(f"[green]up[/green]: {len(apis)} validator(s) committing blocks after "
                  f"{time.monotonic() - t0:.1f} s")
    for lch, _ in launched:
        console.print(f"  {lch.name}  API {lch.api}   docs {lch.api}/docs   log {lch.home / 'node.log'}",
                      soft_wrap=True)
    console.print(f"explorer: {apis[0]}/explorer/   metrics: {apis[0]}/metrics", soft_wrap=True)
    console.print(f"try: qilian tx send kv put hello world --home {home} --node {apis[0]}", soft_wrap=True)
    if detach:
        console.print(f"running in the background; stop with: qilian down --home {home}")
        return

    def render() -> Table:
        table = Table("node", "height", "round", "peers", "mempool", "TPS")
        for lch in [lch for lch, _ in launched]:
            st = get_status(lch.api)
            if st is None:
                table.add_row(lch.name, "[red]down[/red]", "", "", "", "")
                continue
            cs: Any = st.get("consensus", {})
            peers: Any = st.get("peers") or []
            n_tx = int(st.get("txs_committed", 0))  # type: ignore[call-overload]
            prev = last.get(lch.name)
            now = time.monotonic()
            tps = (n_tx - prev[0]) / (now - prev[1]) if prev and now > prev[1] else 0.0
            last[lch.name] = (n_tx, now)
            rnd = cs.get("round")
            table.add_row(lch.name, str(st["height"]), "" if not isinstance(rnd, int) or rnd < 0 else str(rnd),
                          str(len(peers)),
                          str(st.get("mempool_size", "")), f"{tps:,.0f}")
        return table

    last: dict[str, tuple[int, float]] = {}
    try:
        with Live(render(), console=console, refresh_per_second=1) as live:
            while all(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(render())
        console.print("[red]a node exited[/red]; stopping the network")
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        stop_network(home)


@app.command()
def down(home: HomeOpt = DEFAULT_HOME) -> None:
    """Stop a network started with `qilian up --detach`."""
    from qilian.node.launcher import stop_network

    stopped = stop_network(home)
    if not stopped:
        _fail(f"no running network recorded in {home}/pids")
    console.print(f"stopped {', '.join(stopped)}")


@app.command("verify-ledger")
def verify_ledger_cmd(home: HomeOpt = DEFAULT_HOME) -> None:
    """Re-check every stored block from genesis (with the node stopped); name the first one that does not check
    out. ``--home`` is a node's home or a network's root (then every node of it is checked)."""
    from qilian.node.config import load_config
    from qilian.node.launcher import get_node_homes
    from qilian.node.ledger import verify_ledger

    if not (home / "node.toml").exists() and not (home / "network.toml").exists():
        _fail(f"{home} is neither a node home (node.toml) nor a network root (network.toml); pass --home")
    failed = False
    for node_home in get_node_homes(home):
        cfg = load_config(node_home)
        with Progress(TextColumn(f"verifying {cfg.name}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as prog:
            task = prog.add_task("blocks", total=None)

            def on_block(h: int, total: int, task: Any = task, prog: Any = prog) -> None:
                prog.update(task, completed=h, total=total)

            report = verify_ledger(cfg.data_path, on_block)
        if report.ok:
            console.print(f"[green]ok[/green] {cfg.name}: {report.checked} blocks verified (hashes, roots, "
                          f"signatures, re-execution)")
        else:
            failed = True
            err.print(f"[red]FAILED[/red] {cfg.name} at block {report.bad_height}: {escape(str(report.reason))}")
    if failed:
        raise typer.Exit(2)


# -- transactions, blocks, state ----------------------------------------------------------------------------


def parse_arg(text: str) -> Any:
    """CLI argument → codec value: ``0x…`` bytes, ``int:N`` integer, ``true``/``false``/``null``,
    ``json:…`` any JSON value, otherwise text. A malformed typed argument is a UserError naming it."""
    from qilian.cli.errors import UserError
    from qilian.types.codec import CodecError, from_json_value

    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise UserError(f"argument {text[:40]!r}: after 0x come pairs of hex digits") from None
    if text.startswith("int:"):
        try:
            return int(text[4:], 10)
        except ValueError:
            raise UserError(f"argument {text[:40]!r}: after int: comes a whole number like int:42") from None
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if text.startswith("json:"):
        try:
            return from_json_value(json.loads(text[5:]))
        except json.JSONDecodeError as exc:
            raise UserError(f"argument {text[:40]!r}: not JSON ({exc.msg} at column {exc.colno - 5})") from None
        except (CodecError, RecursionError) as exc:
            raise UserError(f"argument {text[:40]!r}: {exc}") from None
    return text


def get_home_key(home: Path, role: str) -> Path:
    """The home's key of ``role`` (client or admin); several organisations' keys and none chosen is an error that
    lists them, never a silent pick."""
    cands = sorted((home / "keys").glob(f"*-{role}.pem")) if (home / "keys").is_dir() else []
    if not cands:
        _fail(f"no --key given and no {role} key in {home}/keys (pass --key FILE or --home of a chain)")
    if len(cands) > 1:
        _fail(f"several {role} keys in {home}/keys ({', '.join(c.name for c in cands)}): choose one with --key")
    return cands[0]


HOME_KEY_ROLES = ("admin", "client")
"""``--key admin`` / ``--key client`` name the home's key of that role (when no such file exists here)."""


def get_key_path(home: Path, key: Path | None, default_role: str) -> Path:
    """The key file a command signs with: ``--key FILE``, ``--key admin|client`` (the home's key of that role), or
    the home's key of ``default_role``."""
    if key is None:
        return get_home_key(home, default_role)
    if str(key) in HOME_KEY_ROLES and not key.exists():
        return get_home_key(home, str(key))
    return key


def _client_key(home: Path, key: Path | None, password_env: str | None) -> Any:
    return load_signing_key(get_key_path(home, key, "client"), password_env)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the hash / address (for scripts).")]


@tx_app.command("send")
def tx_send(
    to: Annotated[str, typer.Argument(help="Target module or contract (e.g. kv).")],
    method: Annotated[str, typer.Argument(help="Method (e.g. put).")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments: text, 0xHEX, int:N, json:….")] = None,
    key: Annotated[Path | None, typer.Option(help="Sender key (default: the home's client key).")] = None,
    home: HomeOpt = DEFAULT_HOME,
    node: NodeOpt = DEFAULT_NODE,
    wait: Annotated[bool, typer.Option(help="Wait until committed.")] = True,
    password_env: PasswordEnvOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Sign and send a transaction."""
    from qilian.sdk.client import ApiFailure, Client

    kp = _client_key(home, key, password_env)
    try:
        values = [parse_arg(a) for a in (args or [])]
    except ValueError as exc:
        _fail(f"bad argument: {exc}")
        return
    try:
        with Client(node) as c:
            res = c.call(kp, to, method, values, wait="commit" if wait else "none")
    except ApiFailure as exc:
        _fail(f"node refused the transaction: {exc.code}: {exc.message}")
        return
    except OSError as exc:
        _fail(f"cannot reach {node}: {exc}")
        return
    if quiet:
        if wait and res.get("status") != "committed":
            _fail(f"not committed yet ({res.get('status')}); check later with: qilian tx get {res.get('hash')}")
        sys.stdout.write(res["hash"] + "\n")
        return
    print_tx_result(res)


def _load_trusted_genesis(home: Path, genesis_file: Path | None) -> Any:
    from qilian.node.config import load_genesis

    path = genesis_file or home / "genesis.json"
    if not path.is_file():
        _fail(f"no genesis to verify against: pass --genesis FILE (looked for {path})")
    try:
        return load_genesis(path)
    except (ValueError, KeyError, TypeError) as exc:
        _fail(f"{path} is not a Qilian genesis: {exc}")


GenesisOpt = Annotated[Path | None, typer.Option("--genesis", help="Trusted genesis.json (default: the home's).")]


@tx_app.command("get")
def tx_get(
    tx_hash: Annotated[str, typer.Argument(help="Transaction hash (hex).")],
    node: NodeOpt = DEFAULT_NODE,
    home: HomeOpt = DEFAULT_HOME,
    genesis: GenesisOpt = None,
    verify: Annotated[bool, typer.Option(help="Verify the proofs against the genesis validators.")] = True,
) -> None:
    """Read a committed transaction, its receipt and proofs (verified locally by default)."""
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid, verify_tx_response

    try:
        with Client(node) as c:
            res = c.get_tx(tx_hash)
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
        return
    if verify:
        g = _load_trusted_genesis(home, genesis)
        try:
            asked = bytes.fromhex(tx_hash.lower().removeprefix("0x"))  # the node accepted it, so it is hex
            v = verify_tx_response(g, res, require_receipt=False, tx_hash=asked)
        except ProofInvalid as exc:
            _fail(f"PROOF INVALID: {exc}")
            return
        res["verified"] = {"tx_in_block": v.height, "receipt_proven": v.receipt is not None}
    _print_json(res)


@tx_app.command("list")
def tx_list(
    account: Annotated[str, typer.Option("--account", help="Address (40 hex digits) or a contract/module name.")],
    limit: Annotated[int, typer.Option(help="Transactions per page (1..100).", min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after this page (the previous page's next_cursor).")]
    = None,
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Transactions sent by an account or targeting it, newest first (from the node's index; verify any of them
    with `qilian tx get HASH`)."""
    import httpx

    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    r = httpx.get(f"{node.rstrip('/')}/accounts/{account}/txs", params=params, timeout=30)
    doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200:
        _fail(f"the node answered {r.status_code} {doc.get('error', '')}: {doc.get('message', r.text[:200])}")
    if get_output_mode() == "json":
        _print_json(doc)
        return
    table = Table("height", "hash", "from", "to", "method", "status", "fuel",
                  title=f"{doc.get('address')} (indexed to height {doc.get('indexed_height')})")
    for t in doc.get("items", []):
        table.add_row(str(t["height"]), t["hash"], t["sender"], t["target"], t["method"], t["status"],
                      str(t["fuel_used"]))
    console.print(table, soft_wrap=True)
    if doc.get("next_cursor"):
        console.print(f"more: qilian tx list --account {account} --cursor {doc['next_cursor']}", soft_wrap=True)


@block_app.command("get")
def block_get(
    height: Annotated[str, typer.Argument(help="Height or 'latest'.")] = "latest",
    node: NodeOpt = DEFAULT_NODE,
) -> None:
    """Read a block."""
    from qilian.sdk.client import ApiFailure, Client

    try:
        with Client(node) as c:
            _print_json(c.get_block(height))
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")


@state_app.command("get")
def state_get(
    namespace: Annotated[str, typer.Argument(help="Namespace (e.g. kv).")],
    key: Annotated[str, typer.Argument(help="Key: text, or 0xHEX.")],
    node: NodeOpt = DEFAULT_NODE,
    home: HomeOpt = DEFAULT_HOME,
    genesis: GenesisOpt = None,
    verify: Annotated[bool, typer.Option(help="Verify the proof against the genesis validators.")] = True,
    height: Annotated[int | None, typer.Option(help="Prove against the header of this height (the state its "
                                                    "transactions ran against); default: the latest. A pruning "
                                                    "node answers only its recent heights.", min=1)] = None,
) -> None:
    """Read a state value with its proof (verified locally by default)."""
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid, verify_state_response

    kb = bytes.fromhex(key[2:]) if key.startswith("0x") else key.encode()
    try:
        with Client(node) as c:
            res = c.get_state(namespace, kb, height)
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
        return
    if verify:
        g = _load_trusted_genesis(home, genesis)
        try:
            verify_state_response(g, res)
        except ProofInvalid as exc:
            _fail(f"PROOF INVALID: {exc}")
            return
        res["verified"] = True
    _print_json(res)


# -- benchmarks ------------------------------------------------------------------------------------------


@bench_app.command("micro")
def bench_micro(
    quick: Annotated[bool, typer.Option(help="Fewer iterations (smoke run).")] = False,
    state_sizes: Annotated[str, typer.Option(help="State sizes for the commit benchmark, comma-separated.")]
    = "10000,100000",
) -> None:
    """µs per operation for the primitives every later performance decision starts from."""
    from qilian.bench.micro import run_micro

    sizes = tuple(int(s) for s in state_sizes.split(",") if s.strip())
    rows = run_micro(quick=quick, state_sizes=sizes, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    table = Table("operation", "suite", "µs/op", "ops/s", title=f"qilian bench micro (python {sys.version.split()[0]})")
    for r in rows:
        table.add_row(r["op"], r["suite"], f"{r['us']:.2f}", f"{1e6 / r['us']:,.0f}" if r["us"] else "-")
    console.print(table)


@bench_app.command("network")
def bench_network(
    validators: Annotated[int, typer.Option(help="Validators of the network started for the run.")] = 4,
    suite: Annotated[str, typer.Option(help="Crypto suite: ed25519 or sm2.")] = "ed25519",
    workload: Annotated[str, typer.Option(help="Transactions to send: evidence, transfer, kv, trace, "
                                               "trace-commission or transfer-asset; several, comma-separated "
                                               "(e.g. evidence,trace), run in turn on one network and are "
                                               "compared as ratios of evidence's TPS.")] = "evidence",
    rate: Annotated[int | None, typer.Option(help="Submissions per second (default: --max).")] = None,
    max_rate: Annotated[bool, typer.Option("--max", help="Submit as fast as the network admits.")] = False,
    duration: Annotated[float, typer.Option(help="Seconds of submission.")] = 30.0,
    clients: Annotated[int, typer.Option(help="Client threads.")] = 4,
    batch: Annotated[int, typer.Option(help="Transactions per POST /txs/batch.")] = 250,
    block_interval_ms: Annotated[int, typer.Option(help="Block interval of the network started.")] = 200,
    indexer: Annotated[str, typer.Option(help="[indexer] backend of the validators started: sqlite (the default "
                                              "config) or off (validators that serve no explorer).")] = "sqlite",
    attach: Annotated[Path | None, typer.Option(help="Attach to the running network of this home instead.")]
    = None,
    out: Annotated[Path, typer.Option(help="Where results go.")] = Path("bench-results"),
) -> None:
    """Committed TPS and submit→commit latency of a real local network, and the share of this machine's
    signature-checking ceiling it reaches (docs/benchmarks.md)."""
    from qilian.bench.network import NetBenchConfig, format_comparison, run_network_bench, write_outputs

    if rate is not None and max_rate:
        _fail("give --rate R or --max, not both")
    if indexer not in ("sqlite", "off"):
        _fail(f"--indexer is sqlite or off, not {indexer!r}")
    cfg = NetBenchConfig(validators=validators, suite=suite, workload=workload, rate=rate,
                         max_rate=rate is None, duration_s=duration, clients=clients, batch=batch,
                         block_interval_ms=block_interval_ms, home=attach, out_dir=out, indexer=indexer)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as prog:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        try:
            results = run_network_bench(cfg, lambda m: err.print(f"[dim]{m}[/dim]"), progress)
        except (RuntimeError, ValueError) as exc:
            _fail(str(exc))
            return
    for res in results:
        wl = res.config["workload"]
        table = Table("metric", "value", title=f"qilian bench network: {validators} validators, {suite}, {wl}, "
                                              f"{'rate ' + str(rate) + '/s' if rate else 'max'}"
                                              f"{', no explorer index' if indexer == 'off' else ''}")
        table.add_row("committed TPS", f"{res.tps:,.0f}")
        table.add_row("latency p50 / p95 / p99", f"{res.latency_ms['p50']:,.0f} / {res.latency_ms['p95']:,.0f} / "
                                                 f"{res.latency_ms['p99']:,.0f} ms")
        table.add_row("submitted / committed / rejected / failed receipts / uncommitted at the end",
                      f"{res.submitted:,} / {res.committed:,} / {res.rejected:,} / {res.failed:,} / "
                      f"{res.uncommitted:,}")
        table.add_row("blocks", str(res.blocks))
        table.add_row("ceiling (verify/s/core × cores ÷ validators)",
                      f"{res.verify_per_s_one_core:,.0f} × {res.machine['cores']} ÷ {validators} = "
                      f"{res.ceiling_tps:,.0f} TPS")
        table.add_row("achieved / ceiling", f"{res.fraction_of_ceiling:.1%}")
        table.add_row("validators' CPU per committed tx", f"{res.node_cpu_us_per_tx:,.0f} µs")
        console.print(table)
        if res.errors:
            console.print(f"errors: {res.errors}")
        paths = write_outputs(res, out)
        console.print("wrote " + ", ".join(str(p) for p in paths if p is not None), soft_wrap=True)
    if len(results) > 1:
        console.print(format_comparison(results), soft_wrap=True)


@bench_app.command("votes")
def bench_votes(
    validators: Annotated[int, typer.Option(help="Validators of the network started for the run.")] = 4,
    seconds: Annotated[float, typer.Option(help="Seconds of each phase (light, then full-fuel blocks).")] = 30.0,
    block_interval_ms: Annotated[int, typer.Option(help="Block interval of the network started.")] = 500,
    attach: Annotated[Path | None, typer.Option(help="Attach to the running network of this home instead.")]
    = None,
) -> None:
    """Whether full-fuel blocks delay the validators' votes: first-vote-to-quorum p50/p99 with light blocks and
    with blocks that spend MAX_BLOCK_FUEL, in one run (docs/benchmarks.md)."""
    from qilian.bench.votes_bench import VotesBenchConfig, format_rows, run_votes_bench, summarise

    cfg = VotesBenchConfig(validators=validators, seconds=seconds, block_interval_ms=block_interval_ms,
                           home=attach)
    try:
        res = run_votes_bench(cfg, lambda m: err.print(f"[dim]{m}[/dim]"))
    except RuntimeError as exc:
        _fail(str(exc))
        return
    table = Table("phase", "blocks", "execute ms/block", "vote", "quorums", "p50 ms", "p99 ms",
                  title=f"qilian bench votes: {res.validators} validators, block interval {res.block_interval_ms} ms")
    for row in format_rows(res):
        table.add_row(*row)
    console.print(table)
    console.print_json(data=summarise(res))


@bench_app.command("join")
def bench_join(
    validators: Annotated[int, typer.Option(help="Validators at the start (one organisation each).")] = 4,
    suite: Annotated[str, typer.Option(help="Crypto suite: ed25519 or sm2.")] = "ed25519",
    rate: Annotated[int, typer.Option(help="Offered load, kv.put transactions per second.", min=1, max=5000)]
    = 250,
    phase: Annotated[float, typer.Option(help="Seconds of load before and after the join.", min=1)] = 20.0,
    batch: Annotated[int, typer.Option(help="Transactions per POST /txs/batch.", min=1, max=5000)] = 25,
    block_interval_ms: Annotated[int, typer.Option(help="Block interval of the network.", min=1)] = 200,
    out: Annotated[Path, typer.Option(help="Where results go.")] = Path("bench-results"),
    state_sync: Annotated[bool, typer.Option("--state-sync", help="Instead: build a chain of --txs transactions "
                                                                  "and time a node joining it by state sync (and "
                                                                  "by block sync from genesis).")] = False,
    txs: Annotated[int, typer.Option(help="--state-sync: transactions in the built chain.", min=1)] = 1_000_000,
    txs_per_block: Annotated[int, typer.Option(help="--state-sync: transactions per built block.", min=1)] = 2000,
    baseline_s: Annotated[float, typer.Option(help="--state-sync: longest run of the block-sync baseline (0: "
                                                   "none).", min=0)] = 120.0,
    reuse: Annotated[Path | None, typer.Option(help="--state-sync: reuse the chain an earlier run built in this "
                                                    "directory.")] = None,
) -> None:
    """A new organisation's validator joins a loaded network (genesis + seed, org.add, catch-up from genesis,
    validator.update, first signature): TPS before / during / after and the catch-up time (docs/benchmarks.md).
    With --state-sync: the time a node takes to join a chain of --txs transactions by state sync, against block
    sync from genesis."""
    from qilian.bench.join import JoinBenchConfig, JoinError, format_join_markdown, run_join_bench, write_join_outputs

    if state_sync:
        from qilian.bench.statesync_bench import (
            StateSyncBenchConfig,
            format_statesync_markdown,
            run_statesync_bench,
            write_statesync_outputs,
        )

        scfg = StateSyncBenchConfig(txs=txs, txs_per_block=txs_per_block, suite=suite, baseline=baseline_s > 0,
                                    baseline_s=baseline_s, out_dir=out, reuse=reuse)
        try:
            sres = run_statesync_bench(scfg, lambda m: err.print(f"[dim]{m}[/dim]"))
        except (RuntimeError, ValueError) as exc:
            _fail(str(exc))
            return
        console.print(format_statesync_markdown(sres))
        console.print("wrote " + ", ".join(str(p) for p in write_statesync_outputs(sres, out)), soft_wrap=True)
        return

    cfg = JoinBenchConfig(validators=validators, suite=suite, rate=rate, batch=batch, phase_s=phase,
                          block_interval_ms=block_interval_ms, out_dir=out)
    try:
        res = run_join_bench(cfg, lambda m: err.print(f"[dim]{m}[/dim]"))
    except (JoinError, RuntimeError, ValueError) as exc:
        _fail(str(exc))
        return
    console.print(format_join_markdown(res))
    paths = write_join_outputs(res, out)
    console.print("wrote " + ", ".join(str(p) for p in paths), soft_wrap=True)
    if not (res.heights_contiguous and res.set_changed_at == res.decided_height + 2):
        _fail("a check failed: a height was skipped or the set did not change at decided + 2")


@bench_app.command("contracts")
def bench_contracts(
    calls: Annotated[int, typer.Option(help="Calls per workload.")] = 20_000,
    xian_python: Annotated[Path, typer.Option(help="Python of a venv with xian-contracting installed "
                                                   "(docs/benchmarks.md shows how to make one).")]
    = Path.home() / ".cache" / "qilian" / "xian-venv" / "bin" / "python",
) -> None:
    """Metered contract calls per second (token transfer, evidence registration), and xian-contracting's metered
    transfer for comparison when it runs here."""
    from qilian.bench.contracts_bench import run_contracts_bench, run_xian_bench

    rows = run_contracts_bench(calls)
    xian = run_xian_bench(xian_python, min(calls, 5_000))
    table = Table("engine", "workload", "calls/s", "µs/call", "fuel/call", title="qilian bench contracts (metered)")
    for r in rows + ([xian] if not isinstance(xian, str) else []):
        table.add_row(r.engine, r.workload, f"{r.calls_per_s:,.0f}", f"{r.us_per_call:.1f}",
                      str(r.fuel_per_call) if r.fuel_per_call else "")
    console.print(table)
    if isinstance(xian, str):
        console.print(f"xian-contracting not measured: {escape(xian)}")
    else:
        console.print(f"qilian / xian-contracting, metered token transfer: "
                      f"{rows[0].calls_per_s / xian.calls_per_s:.1f}×")


@bench_app.command("fuel")
def bench_fuel(
    quick: Annotated[bool, typer.Option(help="Only the largest size of each operation.")] = False,
) -> None:
    """CPU µs per fuel unit of every guarded contract operation (docs/contracts.md, "Fuel")."""
    from qilian.bench.fuel_bench import run_fuel_bench

    rep = run_fuel_bench(quick, lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    table = Table("operation", "n", "fuel/op", "µs/op", "µs/fuel", "× median",
                  title=f"qilian bench fuel (python {sys.version.split()[0]})")
    for r in sorted(rep.rows, key=lambda r: -r.us_per_fuel):
        table.add_row(r.name, str(r.size), f"{r.fuel_per_op:,.0f}", f"{r.us_per_op:,.2f}", f"{r.us_per_fuel:.3f}",
                      f"{r.us_per_fuel / rep.median:.2f}" if not r.error else escape(r.error))
    console.print(table)
    console.print(f"median {rep.median:.3f} µs/fuel; worst {escape(rep.worst.name)} (n={rep.worst.size}) "
                  f"{rep.worst.us_per_fuel / rep.median:.1f}× the median; a block of MAX_BLOCK_FUEL spent on it: "
                  f"{rep.block_cpu_s:.1f} CPU s")


@bench_app.command("state")
def bench_state(
    sizes: Annotated[str, typer.Option(help="State sizes, comma-separated.")] = "10000,100000,1000000",
    batch: Annotated[int, typer.Option(help="Writes per committed block.")] = 1000,
    rounds: Annotated[int, typer.Option(help="Commits timed per size.")] = 5,
    suite: Annotated[str, typer.Option(help="Hash of which suite.")] = "sm2",
) -> None:
    """Cost of committing a block's writes as the state grows (should grow with log(size), not size)."""
    from qilian.bench.state_bench import format_table, run_state_bench

    chosen = tuple(int(s) for s in sizes.split(",") if s.strip())
    with Progress(TextColumn("{task.description}"), console=err, transient=True) as prog:
        task = prog.add_task("state", total=None)
        rows = run_state_bench(chosen, batch, rounds, progress=lambda m: prog.update(task, description=m),
                               suite=suite)
    console.print(format_table(rows))


@bench_app.command("store")
def bench_store(
    txs: Annotated[int, typer.Option(help="Transactions committed per layout.")] = 1_000_000,
    block_txs: Annotated[int, typer.Option(help="Transactions per block.")] = 5_000,
    every: Annotated[int, typer.Option(help="Report a row every this many transactions.")] = 100_000,
    layouts: Annotated[str, typer.Option(help="Comma-separated: v1-lmdb, v2-lmdb, v2-rocksdb.")]
    = "v1-lmdb,v2-lmdb,v2-rocksdb",
    keep_states: Annotated[str, typer.Option(help="Comma-separated state windows to run the v2 layouts at, 0 = "
                                                  "archive (e.g. 0,1001: without and with pruning).")] = "0",
    compact: Annotated[bool, typer.Option(help="After each v2 run, compact the store and report its size.")]
    = False,
) -> None:
    """Synced commit of evidence blocks as the store grows: old layout against the new one on both engines, and
    with --keep-states the pruning a node runs after each commit (its time and the disk bytes it saves)."""
    from qilian.bench.store_bench import compute_table, run_store_bench
    from qilian.cli.errors import UserError

    try:
        keeps = tuple(int(k) for k in keep_states.split(",") if k.strip())
    except ValueError:
        raise UserError(f"--keep-states is a comma-separated list of integers, not {keep_states!r}") from None
    rows = run_store_bench(txs, block_txs, every, tuple(s.strip() for s in layouts.split(",") if s.strip()),
                           progress=lambda m: err.print(f"[dim]{escape(m)}[/dim]"), keep_states=keeps,
                           compact=compact)
    cols, lines = compute_table(rows)
    table = Table(*cols, title=f"qilian bench store: {block_txs:,}-tx evidence blocks (commit ms = mean per block "
                              f"over the preceding {every:,} txs)")
    for line in lines:
        table.add_row(*line)
    console.print(table)


@bench_app.command("reads")
def bench_reads(
    keys: Annotated[int, typer.Option(help="Random 32-byte keys (150-byte values) written before reading.")]
    = 8_000_000,
    engines: Annotated[str, typer.Option(help="Comma-separated: lmdb, rocksdb.")] = "lmdb,rocksdb",
) -> None:
    """Point reads of a reopened store engine: µs per get of absent and of present keys (docs/benchmarks.md,
    "RocksDB point reads")."""
    from qilian.bench.engine_reads import run_reads_bench

    rows = run_reads_bench([e.strip() for e in engines.split(",") if e.strip()], keys,
                           progress=lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    table = Table("engine", "keys", "disk MiB", "fill s", "absent get µs (per round)", "present get µs",
                  title="qilian bench reads: a filled store, closed and reopened, read one key at a time")
    for r in rows:
        table.add_row(r.engine, f"{r.keys:,}", f"{r.disk_bytes / 2**20:,.0f}", f"{r.fill_s:.1f}",
                      " / ".join(f"{x:.1f}" for x in r.absent_us), f"{r.present_us:.1f}")
    console.print(table)


@bench_app.command("execute")
def bench_execute(
    txs: Annotated[int, typer.Option(help="Evidence calls in the block.")] = 5_000,
    rounds: Annotated[int, typer.Option(help="Blocks executed (fresh digests each).")] = 4,
) -> None:
    """Execution alone: µs per evidence call of executing one block in this process (contract runtime, sandbox
    boundary, modules, receipts), no network, store or signatures (docs/benchmarks.md)."""
    from qilian.bench.store_bench import run_execute_bench

    per_tx = run_execute_bench(txs, rounds, progress=lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    console.print(f"execute_block, {txs:,} evidence calls: " + ", ".join(f"{x:.1f}" for x in per_tx)
                  + f" µs per call (best {min(per_tx):.1f})")


@bench_app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(help="Minutes of --max Ed25519 evidence load on 4 validators.")] = 30,
    engine: Annotated[str, typer.Option(help="Store engine of the nodes: rocksdb (the default) or lmdb.")] = "",
    keep_data: Annotated[bool, typer.Option(help="Keep the nodes' stores afterwards (~16 GB for 30 minutes); "
                                            "by default only their logs stay.")] = False,
) -> None:
    """Issue 18's soak: per-minute TPS, node RSS and the store's disk bytes per transaction."""
    from qilian.bench.soak import run_soak

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as prog:
        task = prog.add_task("soak", total=None)
        res = run_soak(minutes, lambda m: err.print(f"[dim]{escape(m)}[/dim]"),
                       lambda what, k, n: prog.update(task, description=what, completed=k, total=n), engine=engine,
                       keep_data=keep_data)
    table = Table("minute", "TPS", "node RSS MiB (each node)", "of which own (RssAnon)", "node0 memory MiB by part",
                  "CPU s in the minute", title=f"qilian bench soak: {minutes:g} min, {engine or 'rocksdb'} store")
    for m in res.minutes:
        parts = m.get("memory_mib_node0") or {}
        table.add_row(str(m["minute"]), f"{m['tps']:,.0f}", " ".join(str(x) for x in m["rss_mib"]),
                      " ".join(str(x) for x in m.get("anon_rss_mib", [])),
                      " ".join(f"{k} {v:,.0f}" for k, v in parts.items()),
                      " ".join(f"{k} {v:g}" for k, v in (m.get("cpu_s") or {}).items()))
    console.print(table)
    if len(res.minutes) < int(minutes):
        console.print(f"[yellow]only {len(res.minutes)} whole minutes of load: the run ended early (see the "
                      f"network bench's output above)[/yellow]")
    if res.net is not None and len(res.minutes) >= 2 and res.minutes[0]["tps"]:
        warm = res.minutes[min(4, len(res.minutes) - 1)]["tps"]
        after_warmup = f" (÷ minute 5: {res.minutes[-1]['tps'] / warm:.2f})" if warm else ""
        ratio = res.minutes[-1]["tps"] / res.minutes[0]["tps"]
        console.print(f"last ÷ first minute: {ratio:.2f}{after_warmup}; committed {res.net.committed:,}, rejected "
                      f"{res.net.rejected:,}, uncommitted {res.net.uncommitted:,}; "
                      f"node0 data dir {res.disk_bytes_node0 / 2**20:,.0f} MiB = {res.bytes_per_tx:,.0f} B/tx")


def _register_subcommands() -> None:
    """Command groups that live in their own modules (imported last: they use this module's helpers)."""
    from qilian.apps.copyright.cli import copyright_app
    from qilian.apps.iot.cli import bench_iot, iot_app
    from qilian.apps.trace.cli import trace_app
    from qilian.cli import ops_cmd
    from qilian.cli.bootstrap_cmd import genesis_app, org_app
    from qilian.cli.contract_cmd import contract_app, evidence_app
    from qilian.cli.gov_cmd import gov_app
    from qilian.cli.indexer_cmd import bench_explorer, indexer
    from qilian.cli.members_cmd import member_app, validator_app

    app.command("status")(ops_cmd.status)
    app.command("events")(ops_cmd.events)
    app.command("indexer")(indexer)
    bench_app.command("explorer")(bench_explorer)
    app.add_typer(contract_app, name="contract")
    app.add_typer(evidence_app, name="evidence")
    app.add_typer(org_app, name="org")
    app.add_typer(genesis_app, name="genesis")
    app.add_typer(gov_app, name="gov")
    app.add_typer(trace_app, name="trace")
    app.add_typer(iot_app, name="iot")
    app.add_typer(copyright_app, name="copyright")
    bench_app.command("iot")(bench_iot)
    from qilian.apps.payments.cli import asset_app, bench_ledger, settle_app

    app.add_typer(asset_app, name="asset")
    bench_app.command("ledger")(bench_ledger)
    app.add_typer(settle_app, name="settle")
    from qilian.apps.identity.cli import did_app, vc_app

    app.add_typer(did_app, name="did")
    app.add_typer(vc_app, name="vc")
    from qilian.apps.registry.cli import registry_app

    app.add_typer(registry_app, name="registry")
    app.add_typer(validator_app, name="validator")
    app.add_typer(member_app, name="member")
    from qilian.cli import regulator_cmd

    for name in ("freeze", "unfreeze", "abolish", "appeal"):
        app.command(name)(getattr(regulator_cmd, name))


if __name__ != "__main__":
    _register_subcommands()


def main() -> None:  # pragma: no cover - the console script; tests run it as a process
    """The ``qilian`` console script: every command behind the one error layer (cli/errors.py)."""
    from qilian.cli.errors import run_guarded

    sys.exit(run_guarded(app, lambda msg: err.print(f"[red]error:[/red] {escape(msg)}", soft_wrap=True)))


if __name__ == "__main__":  # pragma: no cover
    # Run as `python -m qilian.cli.main`: use the importable module, which has every command group registered.
    from qilian.cli.main import main as _main

    _main()

