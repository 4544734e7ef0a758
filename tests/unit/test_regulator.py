"""The regulator (监管) on real blocks over a genesis-seeded dict state: freeze / unfreeze / abolish of accounts,
freezes of contracts, expiry against the block height, the exempt paths (governance, the appeal), the policies
(the refusal names the rule), abolition is permanent, and the same actions through governance."""

from __future__ import annotations

from typing import Any

import pytest

from qilian.crypto import get_suite
from qilian.execution.block import query_contract
from qilian.execution.members import get_member, get_revoked
from qilian.execution.modules.gov import compute_endorsement
from qilian.execution.modules.regulator import Regulation, get_regulation, get_regulation_in_force
from qilian.execution.rules import ChainRules, TxRejected, check_tx_static
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import CodecError
from qilian.types.core import (
    STATUS_FAILED,
    STATUS_OK,
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Validator,
    ValidatorSet,
)
from qilian.types.genesis_json import genesis_from_json, genesis_to_json
from tests.unit.blockrunner import BlockRunner, failed, ok

SUITE = get_suite("ed25519")
CHAIN = "reg-chain"


def _key(seed: int) -> KeyPair:
    sk = SUITE.private_key_from_seed(bytes([seed]) * 32)
    return KeyPair(SUITE, sk, SUITE.get_public_key(sk))


A_ADMIN, A_CLIENT, A_NODE, B_ADMIN, B_CLIENT, B_NODE, SUPERVISOR, OTHER_SUP, SPARE = (_key(i) for i in range(60, 69))
GENESIS = Genesis(CHAIN, "ed25519", 0, (
    Organisation("alpha", (Member("admin", A_ADMIN.public_key, ("admin", "member")),
                           Member("client", A_CLIENT.public_key, ("member",)),
                           Member("node", A_NODE.public_key, ("validator",)))),
    Organisation("beta", (Member("admin", B_ADMIN.public_key, ("admin", "member")),
                          Member("client", B_CLIENT.public_key, ("member",)),
                          Member("node", B_NODE.public_key, ("validator",)))),
    Organisation("csrc", (Member("admin", OTHER_SUP.public_key, ("admin",)),
                          Member("supervisor", SUPERVISOR.public_key, ("regulator",)))),
), ValidatorSet(tuple(sorted((Validator(v.address, v.public_key, 1) for v in (A_NODE, B_NODE)),
                             key=lambda v: v.address))), ChainParams())
RULES = ChainRules.from_genesis(GENESIS, SUITE)
COUNTER = '''
n = Variable(default=0)

@export
def bump():
    n.set(n.get() + 1)
    return n.get()

@export
def get():
    return n.get()
'''
CALLER = '''
@export
def poke(target: str):
    return call(target, "bump")
'''


class Chain(BlockRunner):
    """This file's genesis under the shared block runner."""

    def __init__(self) -> None:
        super().__init__(GENESIS, RULES, SUITE)




def addr(k: KeyPair) -> str:
    return k.address.hex()


def test_regulator_is_a_role_genesis_accepts_and_that_may_transact() -> None:
    assert genesis_from_json(genesis_to_json(GENESIS)) == GENESIS
    doc = genesis_to_json(GENESIS).replace('"regulator"', '"overlord"')
    with pytest.raises(CodecError, match="unknown role"):
        genesis_from_json(doc)
    check_tx_static(RULES, build_tx(SUPERVISOR, CHAIN, "regulator", "freeze", [addr(A_CLIENT), "x"], 10), 300)
    with pytest.raises(TxRejected) as exc:
        check_tx_static(RULES, build_tx(SUPERVISOR, CHAIN, "regulator", "freeze", [addr(A_CLIENT)], 10), 300)
    assert exc.value.code == "bad_args"
    # a regulator key does regulation only: kv is for admin/member/validator
    assert "policy kv.put is ANY of admin/member/validator" in failed(Chain().one(SUPERVISOR, "kv", "put", ["k", "v"]))


def test_freeze_refuses_the_accounts_writes_with_the_code_reads_and_governance_still_work() -> None:
    c = Chain()
    ok(c.one(A_CLIENT, "kv", "put", ["k", "1"]))
    res = ok(c.one(SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "suspected fraud, case 7", 100]))
    assert res["state"] == "frozen" and res["until"] == 100 and res["by"] == ["csrc"]
    err = failed(c.one(A_CLIENT, "kv", "put", ["k", "2"]))
    assert err.startswith(f"[frozen] account {addr(A_CLIENT)} is frozen until height 100 (by csrc at height 2: "
                          f"'suspected fraud, case 7')")
    assert "appeal with regulator.appeal" in err
    assert c.get_state("kv", b"k") == b"1"  # reads: the state is there
    # a frozen admin keeps its governance voice (gov.* is exempt), but not its business transactions
    ok(c.one(SUPERVISOR, "regulator", "freeze", [addr(A_ADMIN), "audit", 0]))
    assert failed(c.one(A_ADMIN, "kv", "put", ["x", "y"])).startswith("[frozen] account")
    r = ok(c.one(A_ADMIN, "gov", "propose", [["gov.set_policy", "contract.deploy", "MAJORITY", [], ["admin"]]]))
    assert r["status"] == "pending"
    # the appeal: once per freeze
    ev = c.one(A_CLIENT, "regulator", "appeal", ["the transfer was a refund"])
    assert ok(ev) == addr(A_CLIENT) and ev.events[0].name == "Appealed"
    assert "appealed this freeze at height" in failed(c.one(A_CLIENT, "regulator", "appeal", ["again"]))
    assert "is not frozen; nothing to appeal" in failed(c.one(B_CLIENT, "regulator", "appeal", ["me?"]))
    # frozen twice is refused; the event carries reason and approvers
    assert "already frozen" in failed(c.one(SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "again", 0]))


def test_a_freeze_lapses_at_its_expiry_height_without_any_scan() -> None:
    c = Chain()
    ok(c.one(SUPERVISOR, "regulator", "freeze", [addr(B_CLIENT), "48 hours", 4]))  # height 1: frozen for 2..3
    assert failed(c.one(B_CLIENT, "kv", "put", ["a", "b"])).startswith("[frozen]")  # height 2
    assert failed(c.one(B_CLIENT, "kv", "put", ["a", "b"])).startswith("[frozen]")  # height 3
    ok(c.one(B_CLIENT, "kv", "put", ["a", "b"]))  # height 4: lapsed
    reg = get_regulation(c.get_state, addr(B_CLIENT))
    assert isinstance(reg, Regulation) and get_regulation_in_force(c.get_state, addr(B_CLIENT), 4) is None
    assert "is not frozen" in failed(c.one(SUPERVISOR, "regulator", "unfreeze", [addr(B_CLIENT), "done"]))
    # a lapsed freeze may be replaced; until must lie ahead
    assert "until is 0 (until unfrozen) or a height after" in failed(
        c.one(SUPERVISOR, "regulator", "freeze", [addr(B_CLIENT), "x", 3]))
    ok(c.one(SUPERVISOR, "regulator", "freeze", [addr(B_CLIENT), "again"]))
    assert "until unfrozen" in failed(c.one(B_CLIENT, "kv", "put", ["a", "b"]))


def test_unfreeze_restores_the_account_in_the_same_block_order() -> None:
    c = Chain()
    receipts = c.run((SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "check", 0]),
                     (A_CLIENT, "kv", "put", ["a", "1"]),
                     (SUPERVISOR, "regulator", "unfreeze", [addr(A_CLIENT), "cleared"]),
                     (A_CLIENT, "kv", "put", ["a", "2"]))
    assert [r.status for r in receipts] == [STATUS_OK, STATUS_FAILED, STATUS_OK, STATUS_OK]
    assert receipts[2].events[0].name == "Unfrozen" and receipts[2].events[0].data["reason"] == "cleared"
    assert get_regulation(c.get_state, addr(A_CLIENT)) is None


def test_only_regulators_regulate_and_the_refusal_names_the_rule() -> None:
    c = Chain()
    for k in (A_ADMIN, A_CLIENT, OTHER_SUP):
        err = failed(c.one(k, "regulator", "freeze", [addr(B_CLIENT), "not my job", 0]))
        assert "policy regulator.freeze is ANY of regulator in all organisations: needs approval of 1 of 3 " \
               "organisation(s), found 0 (none)" in err
    assert "policy regulator.abolish is ANY of regulator" in failed(
        c.one(B_ADMIN, "regulator", "abolish", [addr(A_CLIENT), "no"]))
    assert "the target is an address" in failed(c.one(SUPERVISOR, "regulator", "freeze", ["gov", "x", 0]))
    assert "the reason is a text" in failed(c.one(SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "", 0]))


def test_abolish_is_permanent_and_the_key_never_returns() -> None:
    c = Chain()
    ok(c.one(SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "first", 0]))
    r = c.one(SUPERVISOR, "regulator", "abolish", [addr(A_CLIENT), "licence withdrawn"])
    assert ok(r)["state"] == "abolished" and r.events[0].data["revoked_org"] == "alpha"
    assert get_member(RULES, c.get_state, A_CLIENT.public_key) is None  # the mempool refuses it: not_member
    assert get_revoked(c.get_state, A_CLIENT.public_key)[3] == "abolished: licence withdrawn"  # type: ignore[index]
    with pytest.raises(TxRejected) as exc:
        check_tx_static(RULES, build_tx(A_CLIENT, CHAIN, "kv", "put", ["a", "b"], 10), 300,
                        lambda k: get_member(RULES, c.get_state, k))
    assert exc.value.code == "not_member"
    err = failed(c.one(SUPERVISOR, "regulator", "unfreeze", [addr(A_CLIENT), "mercy"]))
    assert f"[abolished] account {addr(A_CLIENT)} was abolished" in err and "permanent" in err
    assert "[abolished]" in failed(c.one(SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "x", 0]))
    # membership re-add of that key is refused (revoked), and of a never-member abolished address too
    r = c.one(A_ADMIN, "gov", "propose", [["member.add", "alpha", "again", A_CLIENT.public_key, ["member"]]])
    assert "[abolished] account" in failed(r) and "can never become a member" in r.error
    ok(c.one(SUPERVISOR, "regulator", "abolish", [addr(SPARE), "known fraudster"]))
    r = c.one(A_ADMIN, "gov", "propose", [["member.add", "alpha", "new", SPARE.public_key, ["member"]]])
    assert "[abolished] account" in failed(r) and "can never become a member" in r.error
    # admins and validators are not abolished by a regulator
    assert "governance keys leave only by governance" in failed(
        c.one(SUPERVISOR, "regulator", "abolish", [addr(B_ADMIN), "no"]))
    assert "validator set" in failed(c.one(SUPERVISOR, "regulator", "abolish", [addr(B_NODE), "no"]))


def test_a_frozen_contract_refuses_calls_also_from_contracts_and_queries_still_work() -> None:
    c = Chain()
    counter = ok(c.one(A_ADMIN, "contracts", "deploy", ["counter", COUNTER]))
    caller = ok(c.one(B_ADMIN, "contracts", "deploy", ["caller", CALLER]))
    assert ok(c.one(B_CLIENT, counter, "bump", [])) == 1
    assert ok(c.one(B_CLIENT, caller, "poke", [counter])) == 2
    res = ok(c.one(SUPERVISOR, "regulator", "freeze", [counter, "mis-selling", 0]))
    assert res["kind"] == "contract"
    assert failed(c.one(B_CLIENT, counter, "bump", [])).startswith(f"[frozen] contract {counter} is frozen until "
                                                                   f"unfrozen (by csrc")
    assert c.one(B_CLIENT, caller, "poke", [counter]).status == STATUS_FAILED
    out = query_contract(RULES, c, counter, "get", [], c.height, 0)
    assert out.ok and out.value == 2
    assert "abolition is for accounts" in failed(c.one(SUPERVISOR, "regulator", "abolish", [counter, "x"]))
    ok(c.one(SUPERVISOR, "regulator", "unfreeze", [counter, "remedied"]))
    assert ok(c.one(B_CLIENT, counter, "bump", [])) == 3


def test_regulator_actions_through_governance_meet_a_stricter_policy() -> None:
    c = Chain()
    # alpha adds a regulator key of its own (SELF); the consortium then requires two supervising organisations
    ok(c.one(A_ADMIN, "gov", "propose", [["member.add", "alpha", "compliance", SPARE.public_key, ["regulator"]]]))
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["gov.set_policy", "regulator.freeze", "2", [], ["regulator"]]]))["id"]
    ok(c.one(B_ADMIN, "gov", "vote", [pid, "yes"]))
    err = failed(c.one(SUPERVISOR, "regulator", "freeze", [addr(B_CLIENT), "one is not enough", 0]))
    assert "policy regulator.freeze is 2 of regulator in all organisations: needs approval of 2 of 3" in err
    action = ["regulator.freeze", addr(B_CLIENT), "joint decision", 0]
    ends = [compute_endorsement(SUITE, SPARE.private_key, SPARE.public_key, CHAIN, action, 100)]
    r = c.one(SUPERVISOR, "gov", "execute", [action, 100, ends])
    assert ok(r)["by"] == ["alpha", "csrc"] and ok(r)["via"] == "endorsements"
    assert failed(c.one(B_CLIENT, "kv", "put", ["a", "b"])).startswith("[frozen] account")
    # by proposal: an admin proposes (its vote does not count), the regulators vote
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["regulator.unfreeze", addr(B_CLIENT), "cleared"]]))["id"]
    assert ok(c.one(SUPERVISOR, "gov", "vote", [pid, "yes"]))["status"] == "executed"  # unfreeze: ANY
    ok(c.one(B_CLIENT, "kv", "put", ["a", "b"]))


def test_regulation_is_deterministic() -> None:
    def run() -> dict[Any, Any]:
        c = Chain()
        c.one(SUPERVISOR, "regulator", "freeze", [addr(A_CLIENT), "x", 5])
        c.one(A_CLIENT, "kv", "put", ["a", "b"])
        c.one(SUPERVISOR, "regulator", "abolish", [addr(B_CLIENT), "y"])
        return dict(c.values)

    assert run() == run()
