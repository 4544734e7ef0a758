"""``qilian iot …``: register and retire devices, sign readings (a device simulator), anchor a batch of signed
readings as a gateway, prove one reading and check the proof offline (docs/apps/iot.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from qilian.apps.appcli import get_json, process_send, read_json, write_json
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


def load_signed(path: Path) -> list[tuple[dict[str, Any], bytes]]:
    """Signed readings from a JSONL file, each checked for form."""
    from qilian.apps.iot.sdk import ReadingInvalid, check_reading

    out = []
    for n, doc in enumerate(_read_lines(path), 1):
        try:
            if not isinstance(doc, dict) or set(doc) != {"reading", "sig"}:
                raise ReadingInvalid('each line is {"reading": {...}, "sig": hex}')
            out.append((check_reading(doc["reading"]), bytes.fromhex(doc["sig"])))
        except (ReadingInvalid, ValueError, TypeError) as exc:
            _fail(f"{path}:{n}: {exc}")
    return out


def verify_signed(node: str, signed: list[tuple[dict[str, Any], bytes]]) -> None:
    """Refuse the batch unless every reading is signed by its device's registered, active key."""
    from qilian.apps.iot.sdk import get_reading_id, is_valid_reading_signature
    from qilian.sdk.client import ApiFailure, Client
    from qilian.types.codec import from_json_value

    ids = sorted({r["device"] for r, _ in signed})
    try:
        with Client(node) as c:
            devices = {k: from_json_value(v) if v else None
                       for k, v in c._json(c.http.post("/iot/devices/lookup", json=ids)).items()}
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
        return
    for reading, sig in signed:
        d = devices.get(reading["device"])
        rid = get_reading_id(reading)
        if d is None:
            _fail(f"reading {rid}: device {reading['device']} is not registered (qilian iot device add)")
            return
        if d["status"] == "retired" and reading["t"] >= d["retired_ms"]:
            _fail(f"reading {rid}: device {reading['device']} was retired at {d['retired_ms']} ms, before the "
                  f"reading ({reading['t']} ms)")
        if not is_valid_reading_signature(d["suite"], d["public_key"], reading, sig):
            _fail(f"reading {rid}: the signature is not by device {reading['device']}'s registered key (forged or "
                  f"altered); nothing was anchored")


@iot_app.command("anchor")
def anchor(readings: Annotated[Path, typer.Argument(help="JSONL of signed readings ({\"reading\", \"sig\"}).")],
           meta: Annotated[str, typer.Option(help="Batch metadata (free text).")] = "",
           store: StoreOpt = DEFAULT_STORE, key: KeyOpt = None, password_env: PasswordEnvOpt = None,
           home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """As a gateway: verify every reading's signature, build the Merkle tree, anchor its root in one transaction
    and keep the batch in --store for later proofs."""
    from qilian.apps.iot.sdk import ReadingInvalid, make_batch
    from qilian.crypto import get_suite

    signed = load_signed(readings)
    suite = get_suite(get_json(node, "/status")["suite"])
    try:
        batch = make_batch(suite.hash, signed)
    except ReadingInvalid as exc:
        _fail(f"{readings}: {exc}")
        return
    verify_signed(node, signed)
    res = process_send(node, _client_key(home, key, password_env), "iot", "anchor", batch.to_anchor_args(meta))
    number = res["result"]["batch"]
    store.mkdir(parents=True, exist_ok=True)
    write_json(store / f"batch-{number}.json", {
        "batch": number, "tx_hash": res["hash"], "root": batch.root.hex(),
        "readings": [[r, s.hex()] for r, s in signed]})
    console.print(f"[green]anchored[/green] batch {number}: {len(signed)} reading(s) of {len(batch.devices)} "
                  f"device(s), root {batch.root.hex()} in tx {res['hash']} at height {res['height']}")


def find_reading(store: Path, reading_id: str) -> tuple[dict[str, Any], int]:
    """The stored batch holding a reading, and the reading's position in it."""
    from qilian.apps.iot.sdk import get_reading_id

    for path in sorted(store.glob("batch-*.json"), key=lambda p: -p.stat().st_mtime):
        doc = read_json(path)
        for i, (reading, _) in enumerate(doc["readings"]):
            if get_reading_id(reading) == reading_id:
                return doc, i
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

    batch, index = find_reading(store, reading_id)
    reading, sig_hex = batch["readings"][index]
    with Client(node) as c:
        suite = get_suite(c.get_status()["suite"])
        leaves = [compute_leaf(r, bytes.fromhex(s)) for r, s in batch["readings"]]
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
              readings: Annotated[int, typer.Option(help="Readings in all.")] = 100_000,
              batch: Annotated[int, typer.Option(help="Readings per anchored batch.")] = 10_000,
              home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
              password_env: PasswordEnvOpt = None) -> None:
    """Anchor readings of many simulated devices through one gateway on a running chain (e.g. `qilian up`);
    reports readings/min and the chain load (docs/apps/iot.md)."""
    from rich.table import Table

    from qilian.apps.iot.bench import run_iot_bench

    if not 1 <= devices <= 2000 or readings < devices or batch < 1:
        _fail("--devices is 1..2000 (the batch device-set limit), --readings at least --devices, --batch at least 1")
    admin = load_signing_key(get_key_path(home, None, "admin"), password_env)
    gateway = _client_key(home, None, password_env)
    r = run_iot_bench(node, admin, gateway, devices, readings, batch, lambda m: console.print(f"[dim]{m}[/dim]"))
    table = Table("metric", "value", title=f"qilian bench iot: {devices:,} devices, {readings:,} readings, batches "
                                          f"of {batch:,}")
    table.add_row("gateway readings/min (verify + Merkle + anchor + commit)", f"{r.gateway_readings_per_min:,.0f}")
    table.add_row("  of which verify / tree / anchor s", f"{r.verify_s:.1f} / {r.tree_s:.1f} / {r.anchor_s:.1f}")
    table.add_row("device signatures/s (one core, reference)", f"{r.sign_per_s:,.0f}")
    table.add_row("anchoring transactions", f"{r.batches:,} ({r.txs_per_reading:.6f} per reading)")
    table.add_row("transaction bytes per reading", f"{r.tx_bytes_per_reading:.2f}")
    table.add_row("state bytes per reading (approx.)", f"{r.state_bytes_per_reading:.2f}")
    console.print(table)
