"""``qilian copyright …``: register works, transfer rights, grant licences, raise and clear disputes, show a
registration, make and check its certificate (docs/apps/copyright.md)."""

from __future__ import annotations

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
    print_facts,
)

copyright_app = typer.Typer(help="Copyright (版权): register works, transfer rights, grant licences, disputes.",
                            no_args_is_help=True)
NumberArg = Annotated[str, typer.Argument(help="Registration number (42 or QC-00000042).")]


def _number(text: str) -> int | str:
    """A registration number as the chain takes it: 42, or the text QC-00000042."""
    return int(text) if text.isdigit() else text


@copyright_app.command("register")
def register(files: Annotated[list[Path], typer.Argument(help="The work's file(s); only their digests leave "
                                                               "this machine.")],
             title: Annotated[str, typer.Option(help="Title.")],
             author: Annotated[list[str], typer.Option("--author", help="Author (repeat).")],
             licence: Annotated[str, typer.Option(help="all-rights-reserved, cc-by, cc-by-sa, cc-by-nc, cc-by-nd, "
                                                       "cc0 or custom.")] = "all-rights-reserved",
             licence_text: Annotated[str, typer.Option(help="Licence text (free).")] = "",
             created: Annotated[str, typer.Option(help="Creation claim, e.g. a date.")] = "",
             claims: Annotated[str, typer.Option(help="Further claims (free text).")] = "",
             key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
             node: NodeOpt = DEFAULT_NODE) -> None:
    """Register a work for your organisation; prints its registration number (a later claim if the same content
    was registered before, naming the earlier registrations)."""
    from qilian.crypto import get_suite

    suite = get_suite(get_json(node, "/status")["suite"])
    digests = [suite.hash(f.read_bytes()) for f in files]
    work = {"title": title, "digests": digests, "authors": author, "created": created, "claims": claims,
            "licence": {"terms": licence, "text": licence_text}}
    res = process_send(node, _client_key(home, key, password_env), "copyright", "register", [work])
    r = res["result"]
    if r["status"] == "later_claim":
        console.print(f"[yellow]registered {r['id']} as a LATER CLAIM[/yellow]: the same content was registered "
                      f"before as {', '.join(r['prior'])} (height {res['height']})")
    else:
        console.print(f"[green]registered {r['id']}[/green] ({suite.name} digests "
                      f"{', '.join(d.hex()[:16] + '…' for d in digests)}) at height {res['height']}")


@copyright_app.command("transfer")
def transfer(number: NumberArg, to: Annotated[str, typer.Option("--to", help="New holder organisation.")],
             note: Annotated[str, typer.Option(help="Note (e.g. the contract reference).")] = "",
             key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
             node: NodeOpt = DEFAULT_NODE) -> None:
    """Transfer the rights to another organisation (signed by a key of the current holder)."""
    res = process_send(node, _client_key(home, key, password_env), "copyright", "transfer", [_number(number), to, note])
    console.print(f"[green]transferred[/green] {escape(number)} to {escape(to)} at height {res['height']}")


@copyright_app.command("license")
def license_cmd(number: NumberArg, to: Annotated[str, typer.Option("--to", help="Licensee organisation.")],
                exclusive: Annotated[bool, typer.Option("--exclusive/--non-exclusive", help="Kind of grant.")]
                = False,
                territory: Annotated[str, typer.Option(help="ISO 3166 country code or worldwide.")] = "worldwide",
                start: Annotated[int | None, typer.Option("--from", help="First height (default: now).")] = None,
                until: Annotated[int, typer.Option("--until", help="Last height.")] = 2**62,
                terms: Annotated[str, typer.Option(help="Terms (free text).")] = "",
                key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
                node: NodeOpt = DEFAULT_NODE) -> None:
    """Grant a licence (signed by a key of the holder); an exclusive grant may not overlap another grant."""
    first = start if start is not None else int(get_json(node, "/status")["height"])
    grant = {"licensee": to, "kind": "exclusive" if exclusive else "non-exclusive", "territory": territory,
             "from": first, "to": until, "terms": terms}
    res = process_send(node, _client_key(home, key, password_env), "copyright", "license", [_number(number), grant])
    console.print(f"[green]licensed[/green] {escape(number)} to {escape(to)} ({grant['kind']}, {escape(territory)}, "
                  f"heights {first}..{until}) at height {res['height']}")


@copyright_app.command("dispute")
def dispute(number: NumberArg, reason: Annotated[str | None, typer.Option(help="Raise a dispute, saying why.")]
            = None,
            clear: Annotated[str | None, typer.Option(help="Clear the dispute, with the resolution.")] = None,
            key: KeyOpt = None, password_env: PasswordEnvOpt = None, home: HomeOpt = DEFAULT_HOME,
            node: NodeOpt = DEFAULT_NODE) -> None:
    """Raise (--reason) or clear (--clear) the dispute flag (policy copyright.dispute; an admin by default)."""
    if (reason is None) == (clear is None):
        _fail("give --reason TEXT to raise a dispute or --clear TEXT to clear it")
    kp = load_signing_key(get_key_path(home, key, "admin"), password_env)
    method, text = ("dispute", reason) if reason is not None else ("clear", clear)
    res = process_send(node, kp, "copyright", method, [_number(number), text])
    console.print(f"{escape(number)}: dispute {'raised' if method == 'dispute' else 'cleared'} at height "
                  f"{res['height']}")


@copyright_app.command("show")
def show(number: NumberArg, node: NodeOpt = DEFAULT_NODE) -> None:
    """A registration: work, registrant, holder, grants, dispute."""
    doc = get_json(node, f"/copyright/works/{number}")
    w = doc["work"]
    print_facts({"id": doc["id"], "title": w["title"], "authors": ", ".join(w["authors"]),
                 "digests": ", ".join(d["hex"] for d in w["digests"]), "licence": w["licence"]["terms"],
                 "registrant": doc["registrant"], "holder": doc["holder"], "registered at": doc["registered"],
                 "status": doc["status"] + (f" (after {', '.join(doc['prior_ids'])})" if doc["prior_ids"] else ""),
                 "grants": len(doc["grants"]), "disputed": doc["dispute"] if doc["disputed"] else "no"})


@copyright_app.command("certificate")
def certificate(number: NumberArg, out: Annotated[Path, typer.Option("--out", help="Where to write it.")]
                = Path("copyright-cert.json"),
                wait_s: Annotated[float, typer.Option(help="Wait for the block that proves the latest entry.")]
                = 30.0, node: NodeOpt = DEFAULT_NODE) -> None:
    """Fetch the registration certificate, check it here and write it (`qilian copyright check` verifies it)."""
    import time

    from qilian.apps.copyright.sdk import check_certificate
    from qilian.sdk.client import ApiFailure, Client
    from qilian.sdk.verify import ProofInvalid

    deadline = time.monotonic() + wait_s
    doc: Any = None
    with Client(node) as c:
        while doc is None:
            try:
                doc = c._json(c.http.get(f"/copyright/works/{number}/certificate"))
            except ApiFailure as exc:
                if exc.code != "not_yet" or time.monotonic() > deadline:
                    _fail(f"{exc.code}: {exc.message}")
                time.sleep(0.3)
    try:
        cw = check_certificate(doc)
    except ProofInvalid as exc:
        _fail(f"the node's certificate does not check out: {exc}")
        return
    write_json(out, doc)
    console.print(f"[green]certificate[/green] of {doc['id']} written to {out}: holder {escape(cw.holder)}")


@copyright_app.command("check")
def check(cert_file: Annotated[Path, typer.Argument(help="Certificate from `qilian copyright certificate`.")],
          genesis: GenesisOpt = None) -> None:
    """Verify a registration certificate offline, trusting only the genesis validator keys."""
    from qilian.apps.copyright.module import format_number
    from qilian.apps.copyright.sdk import check_certificate
    from qilian.sdk.verify import ProofInvalid

    pinned = _load_trusted_genesis(Path("/nonexistent"), genesis) if genesis is not None else None
    try:
        cw = check_certificate(read_json(cert_file), pinned)
    except ProofInvalid as exc:
        console.print(f"[red]INVALID[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(f"[green]VALID[/green]: {format_number(cw.number)} {escape(repr(cw.work['title']))} by "
                  f"{escape(', '.join(cw.work['authors']))}: registered by {escape(cw.registrant)} at height "
                  f"{cw.height}; holder [bold]{escape(cw.holder)}[/bold]"
                  + (f"; LATER CLAIM after {', '.join(format_number(p) for p in cw.prior)}" if cw.prior else "")
                  + (f"; [red]DISPUTED[/red]: {escape(cw.dispute)}" if cw.disputed else "")
                  + f"; chain {escape(cw.chain_id)}")
    for frm, to, h in cw.transfers:
        console.print(f"  transfer {escape(frm)} → {escape(to)} at height {h}")
    for g in cw.grants:
        console.print(f"  grant: {g['kind']} to {escape(str(g['licensee']))} in {escape(str(g['territory']))}, "
                      f"heights {g['from']}..{g['to']}")
    if genesis is None:
        console.print("  (trusting the genesis inside the certificate; pass --genesis to pin your own copy)")
