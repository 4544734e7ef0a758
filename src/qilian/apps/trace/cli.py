"""``qilian trace …``: record supply-chain events, read an item's history and location, make and check its
certificate and QR code (docs/apps/trace.md)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from qilian.apps.appcli import get_json, get_no_floats, process_send, read_json, write_json
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
    _print_json,
    console,
    get_key_path,
    get_output_mode,
    load_signing_key,
)

trace_app = typer.Typer(help="Supply-chain traceability (溯源): EPCIS events, custody, recalls, certificates.",
                        no_args_is_help=True)

TimeOpt = Annotated[str | None, typer.Option("--time", help="eventTime, RFC 3339 (default: now, UTC).")]
WhereOpt = Annotated[str | None, typer.Option("--where", help="readPoint identifier, e.g. urn:epc:id:sgln:….")]
SensorOpt = Annotated[list[str] | None, typer.Option("--sensor", help="A sensor report TYPE=VALUE[:UOM], e.g. "
                                                                      "Temperature=4.5:CEL (repeat).")]
IdsArg = Annotated[list[str], typer.Argument(help="Item identifiers (URIs: urn:epc:id:sgtin:…, or your own).")]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sensors(specs: list[str] | None) -> list[dict[str, Any]] | None:
    if not specs:
        return None
    reports = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if not sep or not name:
            _fail(f"--sensor {spec!r}: write TYPE=VALUE[:UOM], e.g. Temperature=4.5:CEL")
        value, _, uom = rest.partition(":")
        report: dict[str, Any] = {"type": name, "value": int(value) if value.lstrip("-").isdigit() else value}
        if uom:
            report["uom"] = uom
        reports.append(report)
    return [{"sensorReport": reports}]


def _event(kind: str, time: str | None, where: str | None, sensors: list[str] | None, ids: list[str] | None,
           **fields: Any) -> dict[str, Any]:
    from qilian.apps.trace.sdk import make_event

    return make_event(kind, time or _now(), ids, readPoint={"id": where} if where else None,
                      sensorElementList=_sensors(sensors), **fields)


def _record(method: str, event: Any, key: Path | None, password_env: str | None, home: Path, node: str) -> None:
    res = process_send(node, _client_key(home, key, password_env), "trace", method, [event])
    result = res["result"]
    ev_hash = result.get("event_hash", {}).get("hex", "") if isinstance(result, dict) else ""
    console.print(f"[green]recorded[/green] {method} event {ev_hash} in tx {res['hash']} at height {res['height']}")


@trace_app.command("commission")
def commission(ids: IdsArg, lot: Annotated[str | None, typer.Option(help="Lot (ilmd lotNumber), e.g. "
                                                                    "urn:epc:class:lgtin:….")] = None,
               time: TimeOpt = None, where: WhereOpt = None, sensor: SensorOpt = None, key: KeyOpt = None,
               password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE,
               ) -> None:
    """Bring new items into existence (ObjectEvent ADD, commissioning); your organisation is their custodian."""
    _record("commission", _event("commission", time, where, sensor, ids,
                                 ilmd={"lotNumber": lot} if lot else None), key, password_env, home, node)


@trace_app.command("observe")
def observe(ids: IdsArg, step: Annotated[str, typer.Option(help="bizStep (a CBV word).")] = "inspecting",
            time: TimeOpt = None, where: WhereOpt = None, sensor: SensorOpt = None, key: KeyOpt = None,
            password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Record an observation (inspection, storage, sensor readings) of items."""
    _record("observe", _event("observe", time, where, sensor, ids, bizStep=step), key, password_env, home, node)


@trace_app.command("ship")
def ship(ids: IdsArg, to: Annotated[str, typer.Option("--to", help="Receiving organisation.")],
         time: TimeOpt = None, where: WhereOpt = None, sensor: SensorOpt = None, key: KeyOpt = None,
         password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Ship items (or aggregates) you hold to another organisation; they are in transit until it receives them."""
    _record("ship", _event("ship", time, where, sensor, ids,
                           destinationList=[{"type": "owning_party", "destination": to}]),
            key, password_env, home, node)


@trace_app.command("receive")
def receive(ids: IdsArg, time: TimeOpt = None, where: WhereOpt = None, sensor: SensorOpt = None,
            key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
            node: NodeOpt = DEFAULT_NODE) -> None:
    """Receive items shipped to your organisation: you become their custodian."""
    _record("receive", _event("receive", time, where, sensor, ids), key, password_env, home, node)


@trace_app.command("decommission")
def decommission(ids: IdsArg, time: TimeOpt = None, where: WhereOpt = None, key: KeyOpt = None,
                 password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
                 node: NodeOpt = DEFAULT_NODE) -> None:
    """End items' life (sold, consumed, destroyed)."""
    _record("decommission", _event("decommission", time, where, None, ids), key, password_env, home, node)


@trace_app.command("aggregate")
def aggregate(parent: Annotated[str, typer.Argument(help="The aggregate (case, pallet: e.g. an SSCC).")],
              children: IdsArg, unpack: Annotated[bool, typer.Option(help="Unpack instead of pack.")] = False,
              time: TimeOpt = None, where: WhereOpt = None, key: KeyOpt = None, password_env: PasswordEnvOpt = None,
              home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Pack items into an aggregate (created on first packing) or unpack them; packed items move with it."""
    _record("aggregate", _event("unpack" if unpack else "pack", time, where, None, None, parentID=parent,
                                childEPCs=children), key, password_env, home, node)


@trace_app.command("transform")
def transform(inputs: Annotated[list[str], typer.Option("--in", help="Input item (repeat).")],
              outputs: Annotated[list[str], typer.Option("--out", help="New output item (repeat).")],
              lot: Annotated[str | None, typer.Option(help="Lot of the outputs.")] = None,
              time: TimeOpt = None, where: WhereOpt = None, key: KeyOpt = None, password_env: PasswordEnvOpt = None,
              home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Make new items from items you hold (the inputs are consumed)."""
    _record("transform", _event("transform", time, where, None, None, inputEPCList=inputs, outputEPCList=outputs,
                                ilmd={"lotNumber": lot} if lot else None), key, password_env, home, node)


METHOD_OF_STEP = {"commissioning": "commission", "shipping": "ship", "receiving": "receive",
                  "decommissioning": "decommission"}


@trace_app.command("event")
def event(file: Annotated[Path, typer.Argument(help="An EPCIS event as JSON.")], key: KeyOpt = None,
          password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Record any supported EPCIS event given as JSON (the method follows from its type and bizStep)."""
    doc = get_no_floats(read_json(file), str(file))
    if not isinstance(doc, dict):
        _fail(f"{file}: an event is a JSON object")
    etype = doc.get("type")
    method = {"AggregationEvent": "aggregate", "TransformationEvent": "transform",
              "TransactionEvent": "transact"}.get(str(etype)) or METHOD_OF_STEP.get(str(doc.get("bizStep")),
                                                                                    "observe")
    _record(method, doc, key, password_env, home, node)


@trace_app.command("recall")
def recall(lot: Annotated[str, typer.Argument(help="The lot to recall.")],
           reason: Annotated[str, typer.Option(help="Why (kept on chain).")],
           key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
           node: NodeOpt = DEFAULT_NODE) -> None:
    """Recall a lot (an admin of the lot's organisation, by default policy): marks its items, the aggregates
    holding them and everything made from them."""
    kp = load_signing_key(get_key_path(home, key, "admin"), password_env)
    res = process_send(node, kp, "trace", "recall", [lot, reason])
    r = res["result"]
    console.print(f"[yellow]recall {r['recall']}[/yellow] of {escape(lot)}: {r['marked']} item(s) and "
                  f"aggregate(s) marked (height {res['height']})")
    if r.get("sources"):
        console.print("sources to investigate (inputs made into recalled items): " +
                      ", ".join(escape(str(s)) for s in r["sources"]))


@trace_app.command("history")
def history(item: Annotated[str, typer.Argument(help="Item identifier.")], node: NodeOpt = DEFAULT_NODE) -> None:
    """An item's full history (with the aggregates it was packed into and the inputs it was made from) and where
    it is now. `qilian trace certificate` proves it."""
    doc = get_json(node, "/trace/history", {"id": item})
    if get_output_mode() == "json":
        _print_json(doc)
        return
    loc = doc["location"]
    console.print(f"{escape(item)}: custodian [bold]{escape(loc['custodian'])}[/bold], {loc['status']}"
                  + (f" to {escape(loc['to'])}" if loc["to"] else "")
                  + (f", in {escape(loc['container'])}" if loc["container"] else "")
                  + (f", [red]RECALLED (recall {loc['recalled']})[/red]" if loc["recalled"] else ""))
    table = Table("item", "relation", "#", "height", "tx")
    for e in doc["events"]:
        table.add_row(escape(e["item"]), e["relation"], str(e["index"]), str(e["height"]), e["tx_hash"][:16])
    console.print(table)


@trace_app.command("lot")
def lot_cmd(lot: Annotated[str, typer.Argument(help="Lot identifier.")], node: NodeOpt = DEFAULT_NODE) -> None:
    """Where every item of a lot is now."""
    doc = get_json(node, "/trace/lot", {"id": lot})
    if get_output_mode() == "json":
        _print_json(doc)
        return
    console.print(f"lot {escape(lot)} of {escape(doc['owner'])}: {doc['count']} item(s)"
                  + (f", [red]RECALLED (recall {doc['recalled']})[/red]" if doc["recalled"] else ""))
    table = Table("item", "custodian", "status", "container", "recalled")
    for i in doc["items"]:
        table.add_row(escape(i["id"]), escape(i["custodian"]), i["status"] + (f" → {i['to']}" if i["to"] else ""),
                      escape(i["container"]), str(i["recalled"] or ""))
    console.print(table)


@trace_app.command("certificate")
def certificate(item: Annotated[str, typer.Argument(help="Item identifier.")],
                out: Annotated[Path, typer.Option("--out", help="Where to write the certificate.")]
                = Path("trace-cert.json"),
                wait_s: Annotated[float, typer.Option(help="Wait this long for the blocks that prove the latest "
                                                           "events.")] = 30.0,
                node: NodeOpt = DEFAULT_NODE) -> None:
    """Fetch the item's certificate, check it here, and write it (checkable offline with `qilian trace check`)."""
    import time

    from qilian.apps.trace.sdk import check_certificate
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid

    deadline = time.monotonic() + wait_s
    with Client(node) as c:
        while True:
            try:
                doc = c._json(c.http.get("/trace/certificate", params={"id": item}))
                break
            except ApiFailure as exc:
                if exc.code != "not_yet" or time.monotonic() > deadline:
                    _fail(f"{exc.code}: {exc.message}")
            time.sleep(0.3)
    try:
        checked = check_certificate(doc)
    except ProofInvalid as exc:
        _fail(f"the node's certificate does not check out: {exc}")
        return
    write_json(out, doc)
    console.print(f"[green]certificate[/green] of {escape(item)} written to {out}: {len(checked.steps)} event(s), "
                  f"{len(checked.related)} related item(s), custodian {escape(checked.record['custodian'])}")


@trace_app.command("check")
def check(cert_file: Annotated[Path, typer.Argument(help="Certificate from `qilian trace certificate`.")],
          genesis: GenesisOpt = None) -> None:
    """Verify a trace certificate offline, trusting only the chain's genesis validator keys."""
    from qilian.apps.trace.sdk import check_certificate
    from qilian.sdk.verify import ProofInvalid

    pinned = _load_trusted_genesis(Path("/nonexistent"), genesis) if genesis is not None else None
    try:
        ct = check_certificate(read_json(cert_file), pinned)
    except ProofInvalid as exc:
        console.print(f"[red]INVALID[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    rec = ct.record
    console.print(f"[green]VALID[/green]: {escape(ct.item)} on chain {escape(ct.chain_id)} (genesis "
                  f"{ct.genesis_hash.hex()[:16]}…): owner {escape(rec['owner'])}, custodian "
                  f"{escape(rec['custodian'])}, {rec['status']}"
                  + (f" to {escape(rec['to'])}" if rec["to"] else "")
                  + (f", lot {escape(rec['lot'])}" if rec["lot"] else "")
                  + (f", [red]RECALLED (recall {rec['recalled']})[/red]" if rec["recalled"] else ""))
    table = Table("item", "height", "step", "by", "event time", "event hash")
    for item_id, steps in [(ct.item, ct.steps), *((k, v[1]) for k, v in ct.related.items())]:
        for s in steps:
            table.add_row(escape(item_id), str(s.height), s.biz_step, escape(s.org), escape(s.event_time),
                          s.entry_hash.hex()[:16])
    console.print(table)
    if genesis is None:
        console.print("  (trusting the genesis inside the certificate; pass --genesis to pin your own copy)")


@trace_app.command("qr")
def qr(item: Annotated[str, typer.Argument(help="Item identifier.")],
       out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("item-qr.png"),
       node: NodeOpt = DEFAULT_NODE) -> None:
    """A QR code (PNG) pointing to the item's explorer page on the node."""
    from qilian.apps.trace.sdk import compute_explorer_url, make_qr_png

    get_json(node, "/trace/item", {"id": item})  # refuses unknown items
    url = compute_explorer_url(node, item)
    out.write_bytes(make_qr_png(url))
    console.print(f"[green]QR code[/green] of {escape(url)} written to {out}")
