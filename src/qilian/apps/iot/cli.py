"""``qilian iot …``: register and retire devices, sign readings (a device simulator), anchor a batch of signed
readings as a gateway, prove one reading and check the proof offline (docs/apps/iot.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from qilian.apps.appcli import process_send, read_json, write_json
from qilian.cli.contract_cmd import KeyOpt
from qilian.cli.main import (
    DEFAULT_HOME,
    DEFAULT_NODE,
    GenesisOpt,
    HomeOpt,
    NodeOpt,
    PasswordEnvOpt,
    _client_key,
    _fail,
    _load_trusted_genesis,
    console,
    get_key_path,
    load_signing_key,
)

iot_app = typer.Typer(help="IoT data attestation (物联网): devices, signed readings, anchored batches, proofs.",
                      no_args_is_help=True)
device_app = typer.Typer(help="Register and retire devices.", no_args_is_help=True)
iot_app.add_typer(device_app, name="device")

StoreOpt = Annotated[Path, typer.Option("--store", help="The gateway's batch store (anchored readings).")]
DEFAULT_STORE = Path("iot-store")


@device_app.command("add")
def device_add(device_id: Annotated[str, typer.Argument(help="Device identifier (no spaces or colons).")],
               device_key: Annotated[Path | None, typer.Option(help="The device's key file (PEM); only its public "
                                                                   "key is sent.")] = None,
               pubkey: Annotated[str | None, typer.Option(help="Or the raw public key in hex.")] = None,
               suite: Annotated[str | None, typer.Option(help="sm2 or ed25519 (with --pubkey).")] = None,
               key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
               node: NodeOpt = DEFAULT_NODE) -> None:
    """Register a device's public key for your organisation (an admin, by default policy)."""
    if (device_key is None) == (pubkey is None):
        _fail("give the device's --device-key FILE or its --pubkey HEX with --suite")
    if device_key is not None:
        dk = load_signing_key(device_key, password_env)
        suite_name, public_key = dk.suite.name, dk.public_key
    else:
        if suite is None:
            _fail("--pubkey needs --suite sm2 or ed25519")
        try:
            public_key = bytes.fromhex(str(pubkey).removeprefix("0x"))
        except ValueError:
            _fail("--pubkey is not hex")
            return
        suite_name = str(suite)
    kp = load_signing_key(get_key_path(home, key, "admin"), password_env)
    res = process_send(node, kp, "iot", "add_device", [device_id, suite_name, public_key])
    console.print(f"[green]device {escape(device_id)}[/green] registered ({suite_name}) at height {res['height']}")


@device_app.command("retire")
def device_retire(device_id: Annotated[str, typer.Argument(help="Device identifier.")], key: KeyOpt = None,
                  password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
                  node: NodeOpt = DEFAULT_NODE) -> None:
    """Retire a device: readings it signs from now on are refused when proven."""
    kp = load_signing_key(get_key_path(home, key, "admin"), password_env)
    res = process_send(node, kp, "iot", "retire_device", [device_id])
    console.print(f"[yellow]device {escape(device_id)} retired[/yellow] at height {res['height']} "
                  f"({res['result']['retired_ms']} ms)")


def _read_lines(path: Path) -> list[Any]:
    out = []
    try:
        with path.open() as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        _fail(f"{path}:{n}: not JSON ({exc.msg})")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc}")
    return out


@iot_app.command("sign")
def sign(device_id: Annotated[str, typer.Argument(help="Device identifier.")],
         device_key: Annotated[Path, typer.Option(help="The device's key (PEM).")],
         readings: Annotated[Path, typer.Option("--in", help="JSONL of {\"seq\", \"t\", \"values\"}.")],
         out: Annotated[Path, typer.Option("--out", help="JSONL of signed readings (appended).")],
         password_env: PasswordEnvOpt = None) -> None:
    """Sign readings as a device would (a simulator; real devices sign in firmware)."""
    from qilian.apps.iot.sdk import ReadingInvalid, sign_reading

    dk = load_signing_key(device_key, password_env)
    lines = []
    for n, doc in enumerate(_read_lines(readings), 1):
        reading = {"device": device_id, **{k: doc.get(k) for k in ("seq", "t", "values")}}
        try:
            sig = sign_reading(dk.suite.name, dk.private_key, reading)
        except ReadingInvalid as exc:
            _fail(f"{readings}:{n}: {exc}")
            return
        lines.append(json.dumps({"reading": reading, "sig": sig.hex()}, separators=(",", ":")))
    with out.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    console.print(f"signed {len(lines)} reading(s) of {escape(device_id)} into {out}")


@iot_app.command("anchor")
def anchor(readings: Annotated[Path, typer.Argument(help="JSONL of signed readings ({\"reading\", \"sig\"}).")],
           meta: Annotated[str, typer.Option(help="Batch metadata (free text).")] = "",
           batch: Annotated[int, typer.Option(help="Readings per anchored batch (a longer file is anchored as "
                                                   "several batches, in order).")] = 1_000_000,
           workers: Annotated[int | None, typer.Option(help="Checking processes (default: one per core for "
                                                            "16,384 readings or more, else none; 0: none).")]
           = None,
           store: StoreOpt = DEFAULT_STORE, key: KeyOpt = None, password_env: PasswordEnvOpt = None,
           home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """As a gateway: check every reading (device registered to your organisation, not retired, signature by its
    registered key) in parallel processes, build the Merkle tree, anchor its root in one transaction per batch and
    keep each batch in --store for later proofs. The first refused reading stops the run, naming it: its batch
    and those after it are not anchored."""
    from qilian.apps.iot.gateway import (
        AnchorFailed,
        AnchorReceipt,
        Gateway,
        GatewayRefused,
        GatewayRules,
        compute_line_number,
        compute_worker_count,
        get_device_ids_in_text,
        get_gateway_org,
        get_registry,
        get_signed_lines,
        process_anchor_batches,
    )
    from qilian.apps.iot.module import MAX_BATCH_READINGS
    from qilian.sdk.client import ApiFailure, Client

    if not 1 <= batch <= MAX_BATCH_READINGS:
        _fail(f"--batch is 1..{MAX_BATCH_READINGS:,} readings (the module's limit per anchored batch)")
    try:
        data = readings.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {readings}: {exc}")
        return
    lines = get_signed_lines(data)
    if not lines:
        _fail(f"{readings}: a batch needs at least one reading")
    try:
        n_workers = compute_worker_count(len(lines), workers)
    except ValueError as exc:
        _fail(str(exc))
        return
    kp = _client_key(home, key, password_env)
    try:
        with Client(node) as c:
            org = get_gateway_org(c, kp.public_key)
            if org is None:
                _fail(f"the key {kp.public_key.hex()[:16]}… is not a member of the chain; a gateway anchors with a "
                      f"key of its organisation")
                return
            rules = GatewayRules(org, c.get_status()["suite"], get_registry(c, get_device_ids_in_text(data)),
                                 int(time.time() * 1000))
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
        return
    store.mkdir(parents=True, exist_ok=True)
    anchored: list[AnchorReceipt] = []

    def keep(receipt: AnchorReceipt) -> None:
        b = receipt.batch
        name = f"batch-{receipt.number}.jsonl"
        (store / name).write_bytes(b"\n".join(lines[b.first:b.first + b.count]) + b"\n")
        write_json(store / f"batch-{receipt.number}.json", {
            "batch": receipt.number, "tx_hash": receipt.tx_hash, "root": b.root.hex(), "count": b.count,
            "readings_file": name})
        anchored.append(receipt)
        console.print(f"[green]anchored[/green] batch {receipt.number}: {b.count} reading(s) of {len(b.devices)} "
                      f"device(s), root {b.root.hex()} in tx {receipt.tx_hash} at height {receipt.height}")

    try:
        with Gateway(n_workers) as gw:
            process_anchor_batches(node, kp, gw.check_batches(rules, lines, batch), meta, keep)
    except GatewayRefused as exc:
        r = exc.refusal
        where = f"{readings}:{compute_line_number(data, r.position)}" if r.position is not None else str(readings)
        done = (f"; batch(es) {', '.join(str(a.number) for a in anchored)} before it were anchored" if anchored
                else "; nothing was anchored")
        _fail(f"{where}: {r.describe()}{done}")
    except AnchorFailed as exc:
        _fail(str(exc))


def get_stored_readings(store: Path, doc: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """A stored batch's signed readings (reading, signature hex): inline in older stores, else in the batch's
    JSONL file (the gateway's input lines, kept as they came)."""
    if "readings" in doc:
        return [(r, s) for r, s in doc["readings"]]
    out = []
    with (store / doc["readings_file"]).open("rb") as f:
        for line in f:
            if line.strip():
                signed = json.loads(line)
                out.append((signed["reading"], signed["sig"]))
    return out


def find_reading(store: Path, reading_id: str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str]], int]:
    """The stored batch holding a reading, its signed readings, and the reading's position in it."""
    from qilian.apps.iot.sdk import get_reading_id

    for path in sorted(store.glob("batch-*.json"), key=lambda p: -p.stat().st_mtime):
        doc = read_json(path)
        signed = get_stored_readings(store, doc)
        for i, (reading, _) in enumerate(signed):
            if get_reading_id(reading) == reading_id:
                return doc, signed, i
    _fail(f"reading {reading_id} is in no anchored batch of {store}")
    raise AssertionError("unreachable")


@iot_app.command("prove")
def prove(reading_id: Annotated[str, typer.Argument(help="device:seq")],
          out: Annotated[Path, typer.Option("--out", help="Where to write the proof.")] = Path("reading-proof.json"),
          store: StoreOpt = DEFAULT_STORE, wait_s: Annotated[float, typer.Option(help="Wait for the block that "
                                                                              "proves the anchor.")] = 30.0,
          node: NodeOpt = DEFAULT_NODE) -> None:
    """Write an offline proof of one anchored reading."""
    from qilian.apps.iot.module import IOT_NAMESPACE, compute_device_key
    from qilian.apps.iot.sdk import check_proof, compute_leaf, make_proof
    from qilian.crypto import get_suite, merkle
    from qilian.execution.policy import MEMBER_NAMESPACE
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid
    from qilian.types.core import Transaction

    batch, signed, index = find_reading(store, reading_id)
    reading, sig_hex = signed[index]
    with Client(node) as c:
        suite = get_suite(c.get_status()["suite"])
        leaves = [compute_leaf(r, bytes.fromhex(s)) for r, s in signed]
        path = merkle.compute_proof(suite.hash, leaves, index)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                tx = c.get_tx(batch["tx_hash"])
                if tx["proof"]["receipt"] is not None:
                    break
            except ApiFailure as exc:
                if exc.code not in ("pending", "not_found"):
                    _fail(f"{exc.code}: {exc.message}")
            if time.monotonic() > deadline:
                _fail("the block that proves the anchor is not committed yet; try again shortly")
            time.sleep(0.2)
        sender = Transaction.decode(bytes.fromhex(tx["tx"]["encoded"])).body.sender
        device = c.get_state(IOT_NAMESPACE, compute_device_key(reading["device"]))
        member = c.get_state(MEMBER_NAMESPACE, sender)
        genesis = c.get_genesis_json()
    doc = make_proof(genesis, reading, bytes.fromhex(sig_hex), path, tx, device, member)
    try:
        check_proof(doc)
    except ProofInvalid as exc:
        _fail(f"reading {reading_id} does not prove: {exc}")
    write_json(out, doc)
    console.print(f"[green]proof[/green] of reading {escape(reading_id)} (batch {batch['batch']}, leaf {index} of "
                  f"{len(leaves)}) written to {out}")


@iot_app.command("check")
def check(proof: Annotated[Path, typer.Argument(help="Proof from `qilian iot prove`.")],
          genesis: GenesisOpt = None) -> None:
    """Verify a reading proof offline, trusting only the chain's genesis validator keys."""
    from qilian.apps.iot.sdk import check_proof
    from qilian.sdk.verify import ProofInvalid

    pinned = _load_trusted_genesis(Path("/nonexistent"), genesis) if genesis is not None else None
    try:
        cr = check_proof(read_json(proof), pinned)
    except ProofInvalid as exc:
        console.print(f"[red]INVALID[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    r = cr.reading
    console.print(f"[green]VALID[/green]: reading {escape(r['device'])}:{r['seq']} at {r['t']} ms = "
                  f"{escape(json.dumps(r['values']))}, signed by device {escape(r['device'])} of "
                  f"{escape(cr.device_org)}; anchored by {escape(cr.anchored_by)} at height {cr.height} (batch of "
                  f"{cr.count}, root {cr.root.hex()[:16]}…) on chain {escape(cr.chain_id)}")
    if genesis is None:
        console.print("  (trusting the genesis inside the proof; pass --genesis to pin your own copy)")


def bench_iot(devices: Annotated[int, typer.Option(help="Simulated devices.")] = 1000,
              readings: Annotated[int, typer.Option(help="Readings in all.")] = 1_000_000,
              batch: Annotated[int, typer.Option(help="Readings per anchored batch.")] = 100_000,
              workers: Annotated[int | None, typer.Option(help="Gateway checking processes (default: one per "
                                                               "core; 0: check in this process).")] = None,
              home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
              password_env: PasswordEnvOpt = None) -> None:
    """Anchor readings of many simulated devices through one gateway on a running chain (e.g. `qilian up`);
    reports readings/min and the chain load (docs/apps/iot.md). The devices sign before the gateway clock starts."""
    from rich.table import Table

    from qilian.apps.iot.bench import run_iot_bench
    from qilian.apps.iot.gateway import compute_worker_count
    from qilian.apps.iot.module import MAX_BATCH_DEVICES, MAX_BATCH_READINGS

    if not 1 <= devices <= MAX_BATCH_DEVICES or readings < devices or not 1 <= batch <= MAX_BATCH_READINGS:
        _fail(f"--devices is 1..{MAX_BATCH_DEVICES} (the batch device-set limit), --readings at least --devices, "
              f"--batch 1..{MAX_BATCH_READINGS:,}")
    try:
        n_workers = compute_worker_count(readings, workers)
    except ValueError as exc:
        _fail(str(exc))
        return
    admin = load_signing_key(get_key_path(home, None, "admin"), password_env)
    gateway = _client_key(home, None, password_env)
    r = run_iot_bench(node, admin, gateway, devices, readings, batch, n_workers,
                      lambda m: console.print(f"[dim]{m}[/dim]"))
    table = Table("metric", "value", title=f"qilian bench iot: {devices:,} devices, {readings:,} readings, batches "
                                          f"of {batch:,}, {r.workers} gateway worker(s) on {r.cores} core(s)")
    table.add_row("gateway readings/min (lookup + parse + checks + signatures + Merkle + anchor + commit)",
                  f"{r.gateway_readings_per_min:,.0f}")
    table.add_row("  gateway wall s / tail after the last check s", f"{r.gateway_s:.1f} / {r.tail_s:.2f}")
    table.add_row("  per core: readings/min of one busy checking process",
                  f"{r.core_readings_per_min:,.0f} ({r.check_cpu_s:.1f} CPU s; main process "
                  f"{r.main_cpu_s:.1f} CPU s)")
    table.add_row("  ceiling: Ed25519 verifications/min of one core, this run",
                  f"{r.verify_per_s_core * 60:,.0f} (gateway at "
                  f"{r.gateway_readings_per_min / (r.verify_per_s_core * 60 * max(1, min(r.workers, r.cores))):.0%}"
                  f" of {max(1, min(r.workers, r.cores))} core(s))")
    table.add_row("  mean anchor latency (submit to commit) s", f"{r.anchor_latency_s:.2f}")
    table.add_row("device signatures/s (before the gateway clock)",
                  f"{r.sign_per_s:,.0f} in {r.sign_processes} process(es)")
    table.add_row("anchoring transactions", f"{r.batches:,} ({r.txs_per_reading:.6f} per reading)")
    table.add_row("transaction bytes per reading", f"{r.tx_bytes_per_reading:.3f}")
    table.add_row("state bytes per reading", f"{r.state_bytes_per_reading:.3f}")
    console.print(table)
