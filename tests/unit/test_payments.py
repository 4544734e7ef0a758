"""Payments and settlement on real blocks: the ledger, allowances, delivery versus payment, escrow, FX payments at a
quoted rate and netting — and the invariants users rely on (supply = sum of balances, no negative balance, a swap
settles both legs or neither), also as hypothesis properties over random operation sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qilian.apps.payments.module import (
    ASSET_NAMESPACE,
    ESCROW_ACCOUNT,
    compute_org_account,
    compute_signed_offer,
    get_asset,
    get_balance,
    get_netting,
)
from qilian.types.codec import decode_raw
from qilian.types.core import STATUS_OK

from .appchain import AppChain

ORGS = ("bank-a", "bank-b", "fxdesk")


def balances(c: AppChain, symbol: str) -> dict[bytes, int]:
    prefix = b"b" + symbol.encode() + b"\x00"
    return {k[len(prefix):]: decode_raw(v) for (ns, k), v in c.values.items()
            if ns == ASSET_NAMESPACE and k.startswith(prefix)}


def check_invariants(c: AppChain, *symbols: str) -> None:
    for s in symbols:
        asset = get_asset(c.get_state, s)
        assert asset is not None
        b = balances(c, s)
        assert all(v > 0 for v in b.values()), "no negative (or stored zero) balance"
        assert sum(b.values()) == asset.supply, f"supply of {s} is not the sum of its balances"


def setup() -> AppChain:
    c = AppChain(ORGS)
    c.ok("bank-a-admin", "asset", "create", ["CNY", "Renminbi", 2])
    c.ok("bank-b-admin", "asset", "create", ["HKD", "Hong Kong dollar", 2, 10**12])
    c.ok("bank-a-admin", "asset", "mint", ["CNY", c.addr("bank-a-client"), 100_000])
    c.ok("bank-b-admin", "asset", "mint", ["HKD", c.addr("bank-b-client"), 50_000])
    return c


def test_ledger_create_mint_transfer_burn_and_refusals() -> None:
    c = setup()
    a, b = c.addr("bank-a-client"), c.addr("bank-b-client")
    res = c.ok("bank-a-client", "asset", "transfer", ["CNY", b, 2_500, "invoice 42"])
    assert res == {"balance": 97_500}
    assert get_balance(c.get_state, "CNY", b) == 2_500
    # the issuer organisation alone mints: bank-b's admin is refused, naming the policy and the owner
    err = c.fails("bank-b-admin", "asset", "mint", ["CNY", b, 1])
    assert "policy asset.issue is SELF of admin" in err and "(owner bank-a)" in err
    assert "no asset 'XYZ'" in c.fails("bank-a-client", "asset", "transfer", ["XYZ", b, 1])
    err = c.fails("bank-b-client", "asset", "transfer", ["CNY", a, 2_501])
    assert err == "insufficient balance: the sender holds 2500 CNY, needs 2501"
    assert "whole number of minor units" in c.fails("bank-a-client", "asset", "transfer", ["CNY", b, 0])
    assert "not an account" in c.fails("bank-a-client", "asset", "transfer", ["CNY", "alice", 1])
    assert "exists already" in c.fails("bank-a-admin", "asset", "create", ["CNY", "again", 2])
    assert "upper-case" in c.fails("bank-a-admin", "asset", "create", ["cny", "lower", 2])
    assert "policy asset.create is ANY of admin" in c.fails("bank-a-client", "asset", "create", ["EUR", "e", 2])
    assert "over its cap" in c.fails("bank-b-admin", "asset", "mint", ["HKD", b, 10**12])
    c.ok("bank-a-client", "asset", "transfer", ["CNY", c.addr("bank-a-admin"), 1_000])
    assert c.ok("bank-a-admin", "asset", "burn", ["CNY", 400]) == {"supply": 99_600, "balance": 600}
    check_invariants(c, "CNY", "HKD")


def test_allowances_bound_what_a_spender_moves() -> None:
    c = setup()
    a, spender, dst = c.addr("bank-a-client"), c.addr("bank-a-admin"), c.addr("fxdesk-client")
    c.ok("bank-a-client", "asset", "approve", ["CNY", spender, 300])
    assert c.ok("bank-a-admin", "asset", "transfer_from", ["CNY", a, dst, 200]) == 100
    err = c.fails("bank-a-admin", "asset", "transfer_from", ["CNY", a, dst, 101])
    assert "allowance exceeded" in err and "allows" in err
    assert "allowance exceeded" in c.fails("fxdesk-admin", "asset", "transfer_from", ["CNY", a, dst, 1])
    check_invariants(c, "CNY")


def offer(c: AppChain, maker: str, give: tuple[str, int], want: tuple[str, int], taker: str = "",
          deadline: int = 1000, nonce: int = 1) -> list[Any]:
    k = c.keys[maker]
    return compute_signed_offer(c.suite, k.private_key, k.public_key, c.chain_id,
                                [give[0], give[1], want[0], want[1], taker, deadline, nonce])


def test_swap_settles_both_legs_in_one_transaction() -> None:
    c = setup()
    a, b = c.addr("bank-a-client"), c.addr("bank-b-client")
    signed = offer(c, "bank-b-client", ("HKD", 1_000), ("CNY", 900), taker=a)
    res = c.ok("bank-a-client", "settle", "swap", signed)
    assert res["maker"] == b and res["taker"] == a
    assert get_balance(c.get_state, "HKD", a) == 1_000 and get_balance(c.get_state, "CNY", b) == 900
    assert "already taken" in c.fails("bank-a-client", "settle", "swap", signed)
    check_invariants(c, "CNY", "HKD")


def test_swap_refusals_leave_nothing_written() -> None:
    c = setup()
    a = c.addr("bank-a-client")
    # the taker cannot pay: neither leg moves (the maker's HKD would have moved first)
    signed = offer(c, "bank-b-client", ("HKD", 1_000), ("CNY", 100_001))
    assert "insufficient balance: the taker holds 100000 CNY" in c.fails("bank-a-client", "settle", "swap", signed)
    # a missing leg, a forged amount, the wrong taker, a passed deadline, another chain
    bad = offer(c, "bank-b-client", ("HKD", 1_000), ("CNY", 900))
    missing = [["HKD", 1_000, None, None, "", 1000, 1], *bad[1:]]
    assert "no payment leg" in c.fails("bank-a-client", "settle", "swap", missing)
    forged = [["HKD", 1, "CNY", 900, "", 1000, 1], *bad[1:]]
    assert "signature does not verify" in c.fails("bank-a-client", "settle", "swap", forged)
    only_admin = offer(c, "bank-b-client", ("HKD", 10), ("CNY", 9), taker=c.addr("bank-a-admin"))
    assert "may be taken only by" in c.fails("bank-a-client", "settle", "swap", only_admin)
    late = offer(c, "bank-b-client", ("HKD", 10), ("CNY", 9), deadline=1)
    assert "good until height 1" in c.fails("bank-a-client", "settle", "swap", late)
    k = c.keys["bank-b-client"]
    other = compute_signed_offer(c.suite, k.private_key, k.public_key, "other-chain", bad[0])
    assert "signature does not verify" in c.fails("bank-a-client", "settle", "swap", other)
    assert "cannot take their own offer" in c.fails("bank-b-client", "settle", "swap", bad)
    assert get_balance(c.get_state, "HKD", a) == 0
    check_invariants(c, "CNY", "HKD")


def test_concurrent_conflicting_swaps_in_one_block_settle_at_most_what_the_maker_holds() -> None:
    c = setup()
    # the maker holds 50_000 HKD and signs three offers of 20_000 each to three takers: two can settle
    takers = ["bank-a-client", "bank-a-admin", "fxdesk-client"]
    for t in takers[1:]:
        c.ok("bank-a-client", "asset", "transfer", ["CNY", c.addr(t), 10_000])
    offers = [offer(c, "bank-b-client", ("HKD", 20_000), ("CNY", 5_000), nonce=i) for i in range(3)]
    same = offer(c, "bank-b-client", ("HKD", 1), ("CNY", 1), nonce=99)
    receipts = c.run(*[(t, "settle", "swap", o) for t, o in zip(takers, offers, strict=True)],
                     ("bank-a-client", "settle", "swap", same), ("bank-a-admin", "settle", "swap", same))
    assert [r.status == STATUS_OK for r in receipts] == [True, True, False, True, False]
    assert "insufficient balance: the maker holds 10000 HKD, needs 20000" in receipts[2].error
    assert "already taken" in receipts[4].error
    assert get_balance(c.get_state, "HKD", c.addr("fxdesk-client")) == 0
    assert get_balance(c.get_state, "CNY", c.addr("fxdesk-client")) == 10_000  # its leg did not move either
    assert get_balance(c.get_state, "CNY", c.addr("bank-b-client")) == 10_001
    check_invariants(c, "CNY", "HKD")


def test_escrow_release_refund_and_timeout() -> None:
    c = setup()
    a, b, arb = c.addr("bank-a-client"), c.addr("bank-b-client"), c.addr("fxdesk-admin")
    e1 = c.ok("bank-a-client", "settle", "escrow", ["CNY", 5_000, b, 3, "bill of lading 0xabc", arb])
    assert e1["status"] == "held" and get_balance(c.get_state, "CNY", ESCROW_ACCOUNT) == 5_000
    assert "only the payer" in c.fails("bank-b-client", "settle", "release", [e1["id"]])
    assert "only the payee or the arbiter" in c.fails("bank-a-client", "settle", "refund", [e1["id"]])
    assert c.ok("fxdesk-admin", "settle", "release", [e1["id"]])["status"] == "released"
    assert get_balance(c.get_state, "CNY", b) == 5_000
    assert "released already" in c.fails("bank-a-client", "settle", "release", [e1["id"]])
    e2 = c.ok("bank-a-client", "settle", "escrow", ["CNY", 1_000, b, 1, "service"])
    c.run()  # the timeout passes
    assert "timed out" in c.fails("bank-a-client", "settle", "release", [e2["id"]])
    assert c.ok("fxdesk-client", "settle", "refund", [e2["id"]])["status"] == "refunded"  # anyone, after timeout
    assert get_balance(c.get_state, "CNY", a) == 100_000 - 5_000
    assert "no escrow 9" in c.fails("bank-a-client", "settle", "release", [9])
    assert "insufficient balance" in c.fails("bank-b-client", "settle", "escrow", ["CNY", 10**6, a, 5, ""])
    check_invariants(c, "CNY", "HKD")


def test_fx_payment_at_the_quoted_rate_and_netting() -> None:
    c = setup()
    a, b = c.addr("bank-a-client"), c.addr("bank-b-client")
    # treasuries hold the liquidity each bank pays out with
    c.ok("bank-b-admin", "asset", "mint", ["HKD", compute_org_account(c.suite, "bank-b"), 1_000_000])
    c.ok("bank-a-admin", "asset", "mint", ["CNY", compute_org_account(c.suite, "bank-a"), 1_000_000])
    q = c.ok("fxdesk-admin", "settle", "quote", ["CNY", "HKD", 1087, 1000, 5])  # 1 CNY = 1.087 HKD
    qr = c.ok("fxdesk-admin", "settle", "quote", ["HKD", "CNY", 920, 1000, 100])
    res = c.ok("bank-a-client", "settle", "fx_pay", [q["id"], 10_000, b, 10_870, "tuition"])
    assert res == {"paid": 10_000, "received": 10_870, "quote": q["id"], "cycle": 1}
    assert "below the minimum" in c.fails("bank-a-client", "settle", "fx_pay", [q["id"], 100, b, 200])
    c.ok("bank-b-client", "settle", "fx_pay", [qr["id"], 1_001, a])  # 1001 * 0.92 = 920.92 -> 920
    assert get_balance(c.get_state, "CNY", a) == 100_000 - 10_000 + 920
    c.run()
    err = c.fails("bank-a-client", "settle", "fx_pay", [q["id"], 100, b])
    assert f"quote {q['id']} expired: it was valid for heights" in err
    assert "no quote 77" in c.fails("bank-a-client", "settle", "fx_pay", [77, 100, b])
    assert "policy settle.net is ANY of admin" in c.fails("bank-a-client", "settle", "net", [])
    net = c.ok("bank-a-admin", "settle", "net", [])
    assert net["instructions"] == [{"from": "bank-b", "to": "bank-a", "symbol": "CNY", "amount": 920},
                                   {"from": "bank-a", "to": "bank-b", "symbol": "HKD", "amount": 10_870}]
    assert get_netting(c.get_state, 1) == net
    assert c.ok("bank-a-admin", "settle", "net", [])["cycle"] == 2  # a new day starts empty
    check_invariants(c, "CNY", "HKD")


def test_fx_quotes_only_from_the_fx_policy_organisations() -> None:
    c = setup()
    # governance narrows fx.quote to the FX desk (here directly in state, as gov.set_policy would)
    from qilian.execution.policy import POLICY_NAMESPACE, Policy, encode_policy

    c.values[(POLICY_NAMESPACE, b"fx.quote")] = encode_policy(Policy("ANY", ("fxdesk",), ("admin",)))
    err = c.fails("bank-a-admin", "settle", "quote", ["CNY", "HKD", 1, 1, 10])
    assert "policy fx.quote is ANY of admin in fxdesk" in err
    c.ok("fxdesk-admin", "settle", "quote", ["CNY", "HKD", 1, 1, 10])


def test_netting_is_bilateral_per_asset() -> None:
    from qilian.apps.payments.module import compute_instructions

    obligations = {"a/b/HKD": 100, "b/a/HKD": 30, "b/a/CNY": 5, "c/a/HKD": 7, "a/c/HKD": 7}
    assert compute_instructions(obligations) == [
        {"from": "b", "to": "a", "symbol": "CNY", "amount": 5},
        {"from": "a", "to": "b", "symbol": "HKD", "amount": 70},
    ]


OPS = st.lists(st.tuples(st.sampled_from(["transfer", "mint", "burn", "swap", "escrow", "release", "refund"]),
                         st.integers(0, 3), st.integers(0, 3), st.integers(1, 60_000)), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(OPS)
def test_invariants_hold_over_random_operations(ops: list[tuple[str, int, int, int]]) -> None:
    c = setup()
    people = ["bank-a-client", "bank-b-client", "bank-a-admin", "bank-b-admin"]
    escrows: list[int] = []
    calls: list[tuple[str, str, str, list[Any]]] = []
    for i, (op, x, y, amount) in enumerate(ops):
        sym = "CNY" if x % 2 == 0 else "HKD"
        issuer = "bank-a-admin" if sym == "CNY" else "bank-b-admin"
        src, dst = people[x], people[y]
        if op == "transfer":
            calls.append((src, "asset", "transfer", [sym, c.addr(dst), amount]))
        elif op == "mint":
            calls.append((issuer, "asset", "mint", [sym, c.addr(dst), amount]))
        elif op == "burn":
            calls.append((issuer, "asset", "burn", [sym, amount]))
        elif op == "swap":
            other = "HKD" if sym == "CNY" else "CNY"
            calls.append((dst, "settle", "swap", offer(c, src, (sym, amount), (other, amount // 2 + 1), nonce=i)))
        elif op == "escrow":
            calls.append((src, "settle", "escrow", [sym, amount, c.addr(dst), 2, "c"]))
        else:
            calls.append((src, "settle", op, [escrows[-1] if escrows else 1]))
        # half the calls share a block with the previous one: conflicts inside a block too
        if i % 2 == 1 or i == len(ops) - 1:
            for r in c.run(*calls):
                if r.status == STATUS_OK and isinstance(r.result, dict) and r.result.get("status") == "held":
                    escrows.append(r.result["id"])
            calls = []
            check_invariants(c, "CNY", "HKD")
