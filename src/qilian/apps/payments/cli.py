"""``qilian asset …`` and ``qilian settle …``: the multi-asset ledger and settlement from the command line.

Amounts are whole minor units (``150`` of a 2-decimal asset is 1.50): the CLI never parses decimals, so nothing is
rounded on the way in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from qilian.apps.appcli import KeyOpt, get_account, get_json, get_proven, get_signing_key, print_doc, process_send
from qilian.cli.errors import UserError
from qilian.cli.main import DEFAULT_HOME, DEFAULT_NODE, GenesisOpt, HomeOpt, NodeOpt, console

asset_app = typer.Typer(help="Assets: create, mint, burn, transfer, balances (with proofs).", no_args_is_help=True)
settle_app = typer.Typer(help="Settlement: delivery versus payment, escrow, FX quotes and payments, netting.",
                         no_args_is_help=True)

OFFER_TYPE = "qilian-settle-offer"


def _amount(text: str) -> int:
    if not text.isdigit():
        raise UserError(f"amount {text!r} must be a whole number of minor units (1.50 of a 2-decimal asset is 150)")
    return int(text)


@asset_app.command("create")
def asset_create(symbol: str, name: str, decimals: int,
                 max_supply: Annotated[int | None, typer.Option(help="Cap on the supply (minor units).")] = None,
                 key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Create an asset; your organisation becomes its issuer (needs an admin key)."""
    args: list[Any] = [symbol, name, decimals] + ([max_supply] if max_supply is not None else [])
    r = process_send(node, get_signing_key(home, key, "admin"), "asset", "create", args)
    console.print(f"asset {symbol} created, issuer {r['result']['issuer_org']}")


@asset_app.command("mint")
def asset_mint(symbol: str, to: str, amount: str, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME,
               node: NodeOpt = DEFAULT_NODE) -> None:
    """Mint to an account (issuer organisation's admin)."""
    r = process_send(node, get_signing_key(home, key, "admin"), "asset", "mint",
                     [symbol, get_account(to, home), _amount(amount)])
    console.print(f"minted {amount} {symbol}; supply {r['result']['supply']}")


@asset_app.command("burn")
def asset_burn(symbol: str, amount: str, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME,
               node: NodeOpt = DEFAULT_NODE) -> None:
    """Burn from your own balance (issuer organisation's admin)."""
    r = process_send(node, get_signing_key(home, key, "admin"), "asset", "burn", [symbol, _amount(amount)])
    console.print(f"burned {amount} {symbol}; supply {r['result']['supply']}")


@asset_app.command("transfer")
def asset_transfer(symbol: str, to: str, amount: str,
                   memo: Annotated[str, typer.Option(help="Memo recorded in the Transfer event.")] = "",
                   key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Transfer to an account (an address, or a key file whose address it is)."""
    r = process_send(node, get_signing_key(home, key), "asset", "transfer",
                     [symbol, get_account(to, home), _amount(amount), memo])
    console.print(f"transferred {amount} {symbol}; your balance {r['result']['balance']} (tx {r['hash']})")


@asset_app.command("balance")
def asset_balance(symbol: str, account: Annotated[str, typer.Argument(help="Account or key file.")] = "client",
                  home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """An account's balance, proven against the genesis validators (state of the latest header)."""
    from qilian.apps.payments.module import ASSET_NAMESPACE, compute_balance_key, is_symbol
    from qilian.types.codec import decode_raw

    if not is_symbol(symbol):
        raise UserError(f"{symbol!r} is not an asset symbol")
    acct = get_account(account, home)
    value, height = get_proven(node, home, genesis, ASSET_NAMESPACE, compute_balance_key(symbol, acct))
    print_doc({"symbol": symbol, "account": acct, "balance": 0 if value is None else decode_raw(value),
               "proven_at_state_height": height})


@asset_app.command("holders")
def asset_holders(symbol: str,
                  after: Annotated[str, typer.Option(help="Start after this account (the previous page's next).")]
                  = "",
                  limit: Annotated[int, typer.Option(help="Holders per page (at most 200).")] = 50,
                  verify: Annotated[bool, typer.Option("--verify", help="Fetch each balance's state proof and check "
                                                       "it against the trusted genesis.")] = False,
                  home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE, genesis: GenesisOpt = None) -> None:
    """Who holds an asset: one page of accounts and balances, in account order; ``next`` starts the next page."""
    from urllib.parse import urlencode

    from qilian.apps.payments.module import ASSET_NAMESPACE, compute_balance_key, is_symbol

    if not is_symbol(symbol):
        raise UserError(f"{symbol!r} is not an asset symbol")
    query = {"limit": limit, "proofs": "true" if verify else "false"} | ({"after": get_account(after, home)}
                                                                         if after else {})
    doc = get_json(node, f"/apps/assets/{symbol}/holders?{urlencode(query)}")
    if verify:
        proven = get_verified_balances(home, genesis, symbol, doc)
        for row in doc["holders"]:
            if row["state"]["key"] != compute_balance_key(symbol, row["account"]).hex() or \
                    row["state"]["namespace"] != ASSET_NAMESPACE:
                raise UserError(f"PROOF INVALID: the proof of {row['account']} is about another key")
            row["proven_balance"] = proven[row["account"]]
            row["proven_at_state_height"] = row.pop("state")["state_height"]
    print_doc(doc)


def get_verified_balances(home: Path, genesis: Path | None, symbol: str, doc: dict[str, Any]) -> dict[str, int]:
    """Each listed holder's balance as proven by its state document against the trusted genesis (0: proven
    absent at the header's height, e.g. an account first credited in the newest block)."""
    from qilian.cli.main import _load_trusted_genesis
    from qilian.sdk.verify import ProofInvalid, verify_state_response
    from qilian.types.codec import decode_raw

    g = _load_trusted_genesis(home, genesis)
    out: dict[str, int] = {}
    for row in doc["holders"]:
        try:
            value = verify_state_response(g, row["state"])
        except (ProofInvalid, KeyError) as exc:
            raise UserError(f"PROOF INVALID for {row.get('account')}: {exc}") from None
        out[row["account"]] = 0 if value is None else int(decode_raw(value))
    return out


@asset_app.command("show")
def asset_show(symbol: str, node: NodeOpt = DEFAULT_NODE, home: HomeOpt = DEFAULT_HOME) -> None:
    """An asset: issuer, decimals, supply."""
    print_doc(get_json(node, f"/apps/assets/{symbol}"))


@settle_app.command("offer")
def settle_offer(give_symbol: str, give_amount: str, want_symbol: str, want_amount: str,
                 taker: Annotated[str, typer.Option(help="Only this account may take it (default: anyone).")] = "",
                 blocks: Annotated[int, typer.Option(help="Good for this many blocks.")] = 100,
                 out: Annotated[Path, typer.Option("--out", "-o")] = Path("offer.json"),
                 key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Sign a swap offer (you deliver GIVE and want WANT in return); hand the file to the taker."""
    import secrets

    from qilian.apps.payments.module import compute_offer, compute_signed_offer
    from qilian.execution.env import CallFailed
    from qilian.sdk.client import Client
    from qilian.types.codec import to_json_value

    kp = get_signing_key(home, key)
    with Client(node) as c:
        st = c.get_status()
    value = [give_symbol, _amount(give_amount), want_symbol, _amount(want_amount),
             get_account(taker, home) if taker else "", st["height"] + blocks, secrets.randbits(63)]
    try:
        compute_offer(value)
    except CallFailed as exc:
        raise UserError(str(exc)) from None
    signed = compute_signed_offer(kp.suite, kp.private_key, kp.public_key, st["chain_id"], value)
    out.write_text(json.dumps({"type": OFFER_TYPE, "signed": to_json_value(signed)}, indent=1))
    console.print(f"offer written to {out}: {give_amount} {give_symbol} for {want_amount} {want_symbol}, good "
                  f"until height {value[5]}")


@settle_app.command("swap")
def settle_swap(offer: Path, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Take a signed offer: both legs settle in this one transaction, or neither."""
    from qilian.types.codec import from_json_value

    doc = json.loads(offer.read_text())
    if not isinstance(doc, dict) or doc.get("type") != OFFER_TYPE:
        raise UserError(f"{offer} is not an offer file (write one with `qilian settle offer`)")
    r = process_send(node, get_signing_key(home, key), "settle", "swap", list(from_json_value(doc["signed"])))
    console.print(f"swapped: maker {r['result']['maker']}, taker {r['result']['taker']} (tx {r['hash']})")


@settle_app.command("escrow")
def settle_escrow(symbol: str, amount: str, payee: str,
                  timeout: Annotated[int, typer.Option(help="Blocks until the payer may be refunded.")] = 100,
                  condition: Annotated[str, typer.Option(help="What release means (text or a digest).")] = "",
                  arbiter: Annotated[str, typer.Option(help="Account that may release or refund.")] = "",
                  key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Deposit into escrow for a payee."""
    args: list[Any] = [symbol, _amount(amount), get_account(payee, home), timeout, condition]
    if arbiter:
        args.append(get_account(arbiter, home))
    r = process_send(node, get_signing_key(home, key), "settle", "escrow", args)
    e = r["result"]
    console.print(f"escrow {e['id']}: {amount} {symbol} held until height {e['expires']}")


@settle_app.command("release")
def settle_release(escrow_id: int, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME,
                   node: NodeOpt = DEFAULT_NODE) -> None:
    """Release an escrow to its payee (payer or arbiter)."""
    r = process_send(node, get_signing_key(home, key), "settle", "release", [escrow_id])
    console.print(f"escrow {escrow_id}: {r['result']['status']}")


@settle_app.command("refund")
def settle_refund(escrow_id: int, key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME,
                  node: NodeOpt = DEFAULT_NODE) -> None:
    """Refund an escrow to its payer (anyone after the timeout; payee or arbiter before)."""
    r = process_send(node, get_signing_key(home, key), "settle", "refund", [escrow_id])
    console.print(f"escrow {escrow_id}: {r['result']['status']}")


@settle_app.command("quote")
def settle_quote(base: str, counter: str, num: int, den: int,
                 blocks: Annotated[int, typer.Option(help="Validity window in blocks.")] = 100,
                 key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Publish an FX rate: 1 minor unit of BASE buys NUM/DEN minor units of COUNTER (policy fx.quote)."""
    r = process_send(node, get_signing_key(home, key, "admin"), "settle", "quote", [base, counter, num, den, blocks])
    q = r["result"]
    console.print(f"quote {q['id']}: {base}->{counter} {num}/{den}, heights {q['valid_from']}..{q['valid_until']}")


@settle_app.command("pay")
def settle_pay(quote_id: int, amount: str, to: str,
               min_out: Annotated[int, typer.Option(help="Refuse if the payee would get less.")] = 0,
               memo: str = "", key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Cross-border payment at a quote: pay AMOUNT of its base, the payee receives the converted counter asset."""
    r = process_send(node, get_signing_key(home, key), "settle", "fx_pay",
                     [quote_id, _amount(amount), get_account(to, home), min_out, memo])
    res = r["result"]
    console.print(f"paid {res['paid']}, payee received {res['received']} (quote {quote_id}, cycle {res['cycle']})")


@settle_app.command("net")
def settle_net(key: KeyOpt = None, home: HomeOpt = DEFAULT_HOME, node: NodeOpt = DEFAULT_NODE) -> None:
    """Close the open netting cycle: its obligations become bilateral settlement instructions."""
    r = process_send(node, get_signing_key(home, key, "admin"), "settle", "net", [])
    res = r["result"]
    console.print(f"cycle {res['cycle']} closed at height {res['closed']}: {len(res['instructions'])} instruction(s)")
    for i in res["instructions"]:
        console.print(f"  {i['from']} pays {i['to']} {i['amount']} {i['symbol']}")


def bench_ledger(
    duration: Annotated[float, typer.Option(help="Seconds of submission (600 for issue 17's acceptance run).")]
    = 60.0,
    validators: Annotated[int, typer.Option(help="Validators of the network started for the run.")] = 4,
    kill: Annotated[bool, typer.Option("--kill/--no-kill", help="SIGKILL a validator a third of the way in and "
                                                                "restart it.")] = True,
    down: Annotated[float, typer.Option(help="Seconds the killed validator stays down (0: a sixth of the "
                                             "duration, at least 5).")] = 0.0,
    threads: Annotated[int, typer.Option(help="Client threads.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the random work (the same seed draws the same work).")] = 1,
    out: Annotated[Path, typer.Option(help="Where the report goes.")] = Path("bench-results"),
) -> None:
    """The ledger's invariants over a real network run with conflicting transfers, swaps and escrows and a
    validator killed midway: supply = minted − burned = sum of balances per asset, no negative balance, one state
    root on every node, every acknowledged transaction committed (docs/apps/payments.md). Exits 1 on a violation."""
    import datetime

    from qilian.apps.payments.soak import SoakConfig, format_report, run_ledger_soak
    from qilian.cli.main import err

    cfg = SoakConfig(validators=validators, duration_s=duration, kill=kill, down_s=down, threads=threads, seed=seed)
    try:
        report = run_ledger_soak(cfg, lambda m: err.print(f"[dim]{m}[/dim]"))
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    text = format_report(report)
    console.print(text, soft_wrap=True, markup=False)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"{stamp}-ledger-{duration:.0f}s.json"
    from dataclasses import asdict

    path.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=1))
    console.print(f"wrote {path}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
