"""Payments and settlement on a real chain of three organisations (two banks and an FX desk; one validator node),
through the real CLI and API: assets, transfers, balances proven against genesis, a DvP swap, escrow, a
cross-border payment at a quoted rate, netting — the refusals users meet, and the ledger invariant over the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.apps.payments.module import ESCROW_ACCOUNT, compute_org_account
from qilian.crypto import get_suite

from .apputil import OrgChain, out

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[OrgChain]:
    c = OrgChain(tmp_path, ("bank-a", "bank-b", "fxdesk"))
    c.node.start()
    try:
        yield c
    finally:
        c.node.stop()


def test_payments_walkthrough(chain: OrgChain, tmp_path: Path) -> None:
    c = chain
    a, b = c.addr("bank-a-client"), c.addr("bank-b-client")
    c.cli("asset", "create", "CNY", "Renminbi", "2", "--key", c.key("bank-a-admin"))
    c.cli("asset", "create", "HKD", "Hong Kong dollar", "2", "--key", c.key("bank-b-admin"))
    c.cli("asset", "mint", "CNY", a, "100000", "--key", c.key("bank-a-admin"))
    c.cli("asset", "mint", "HKD", b, "50000", "--key", c.key("bank-b-admin"))
    suite = get_suite("ed25519")
    ta, tb = compute_org_account(suite, "bank-a"), compute_org_account(suite, "bank-b")
    assert c.get("/apps/settle/treasury/bank-b")["account"] == tb
    c.cli("asset", "mint", "HKD", tb, "1000000", "--key", c.key("bank-b-admin"))
    c.cli("asset", "mint", "CNY", ta, "1000000", "--key", c.key("bank-a-admin"))

    # refusals name the problem and write nothing
    assert "policy asset.issue is SELF of admin" in c.refused("asset", "mint", "CNY", b, "5", "--key",
                                                              c.key("bank-b-admin"))
    assert "insufficient balance: the sender holds 50000 HKD, needs 50001" in c.refused(
        "asset", "transfer", "HKD", a, "50001", "--key", c.key("bank-b-client"))
    assert "whole number of minor units" in c.refused("asset", "transfer", "HKD", a, "1.5", "--key",
                                                      c.key("bank-b-client"))

    p = c.cli("asset", "transfer", "CNY", b, "2500", "--memo", "invoice 42", "--key", c.key("bank-a-client"))
    assert "your balance 97500" in out(p)

    # DvP: bank-b's client offers 1000 HKD for 900 CNY; bank-a's client takes it in one transaction
    offer = tmp_path / "offer.json"
    c.cli("settle", "offer", "HKD", "1000", "CNY", "900", "--taker", a, "--out", str(offer), "--key",
          c.key("bank-b-client"))
    p = c.cli("settle", "swap", str(offer), "--key", c.key("bank-a-client"))
    assert f"maker {b}, taker {a}" in out(p)
    assert "already taken" in c.refused("settle", "swap", str(offer), "--key", c.key("bank-a-client"))
    # a swap with a missing leg
    doc = json.loads(offer.read_text())
    doc["signed"][0][2] = None
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    assert "no payment leg" in c.refused("settle", "swap", str(broken), "--key", c.key("bank-a-client"))

    # conflicting swaps submitted at once: the maker's 49_000 HKD cover one 30_000 offer, not two
    from qilian.apps.payments.module import compute_signed_offer
    from qilian.sdk.client import Client, build_tx
    from qilian.sdk.keys import load_key

    maker, takers = load_key(Path(c.key("bank-b-client"))), [load_key(Path(c.key(k))) for k in
                                                            ("bank-a-client", "bank-a-admin")]
    c.cli("asset", "transfer", "CNY", c.addr("bank-a-admin"), "1000", "--key", c.key("bank-a-client"))
    with Client(c.node.url) as api:
        h = api.get_status()["height"]
        txs = [build_tx(t, "apps-chain", "settle", "swap", compute_signed_offer(
            suite, maker.private_key, maker.public_key, "apps-chain", ["HKD", 30_000, "CNY", 100, "", h + 50, i]),
            h + 50) for i, t in enumerate(takers)]
        hashes = [api.submit(tx)["hash"] for tx in txs]
        receipts = [api.submit(tx, wait="commit")["receipt"] for tx in txs]
    assert len(set(hashes)) == 2
    assert sorted(r["status"] for r in receipts) == ["failed", "ok"]
    failed = next(r for r in receipts if r["status"] == "failed")
    assert "insufficient balance: the maker holds 19000 HKD, needs 30000" in failed["error"]

    # escrow released by the payer on receipt of the goods
    p = c.cli("settle", "escrow", "CNY", "5000", b, "--timeout", "50", "--condition", "bill of lading 0xabc",
              "--key", c.key("bank-a-client"))
    assert "escrow 1: 5000 CNY held" in out(p)
    assert "only the payer" in c.refused("settle", "release", "1", "--key", c.key("bank-b-client"))
    c.cli("settle", "release", "1", "--key", c.key("bank-a-client"))
    assert c.get("/apps/settle/escrows/1")["status"] == "released"

    # FX: the desk quotes CNY->HKD 1.087 for 3 blocks; a payment converts at it; later it has expired
    p = c.cli("settle", "quote", "CNY", "HKD", "1087", "1000", "--blocks", "3", "--key", c.key("fxdesk-admin"))
    assert "quote 1: CNY->HKD 1087/1000" in out(p)
    p = c.cli("settle", "pay", "1", "10000", b, "--min-out", "10870", "--key", c.key("bank-a-client"))
    assert "payee received 10870" in out(p)
    for _ in range(4):
        c.cli("tx", "send", "kv", "put", "tick", "tock", "--key", c.key("fxdesk-client"))
    assert "quote 1 expired" in c.refused("settle", "pay", "1", "100", b, "--key", c.key("bank-a-client"))
    p = c.cli("settle", "net", "--key", c.key("fxdesk-admin"))
    assert "bank-a pays bank-b 10870 HKD" in out(p)
    assert c.get("/apps/settle/netting/1")["instructions"] == [
        {"from": "bank-a", "to": "bank-b", "symbol": "HKD", "amount": 10870}]
    assert httpx.get(c.node.url + "/apps/settle/netting/9").status_code == 404
    assert httpx.get(c.node.url + "/apps/assets/NOPE").status_code == 404

    # balances proven against genesis; the invariant over every account this run touched
    for _ in range(2):
        c.cli("tx", "send", "kv", "put", "tick", "tock", "--key", c.key("fxdesk-client"))
    p = c.cli("asset", "balance", "HKD", a)
    doc = json.loads(p.stdout)
    assert doc["balance"] in (1000, 31000)  # whichever taker won the race
    assert doc["balance"] == c.get(f"/apps/assets/HKD/balances/{a}")["proven_balance"]
    accounts = [a, b, ta, tb, ESCROW_ACCOUNT, *(c.addr(f"{o}-{r}") for o in ("bank-a", "bank-b", "fxdesk")
                                                    for r in ("admin",))]
    for sym, supply in (("CNY", 1_100_000), ("HKD", 1_050_000)):  # issued; nothing burned
        assert c.get(f"/apps/assets/{sym}")["supply"] == supply
        total = 0
        for acct in accounts:
            bal = c.get(f"/apps/assets/{sym}/balances/{acct}")
            assert bal["balance"] >= 0
            total += bal["balance"]
        assert total == supply, f"{sym}: balances sum to {total}, supply {supply}"
