"""Membership and validator sets as chain state: organisations, members and validators changed by governance on
real blocks over a real (genesis-seeded) state; revocation from the height of revocation; the H+2 rule; the
safety rails; and G6 — the order of the updates in an action never changes the set or the proposer sequence."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qilian.consensus.validators import compute_proposer_sequence
from qilian.crypto import get_suite
from qilian.execution.block import BlockInvalid, ParentInfo, check_block, compute_empty_root, make_header
from qilian.execution.members import (
    ValidatorUpdate,
    compute_updated_set,
    get_member,
    get_org_names,
    get_revoked,
    get_validator_sets,
)
from qilian.execution.rules import ChainRules, TxRejected, check_tx_static
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.core import (
    STATUS_FAILED,
    STATUS_OK,
    Block,
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Receipt,
    Validator,
    ValidatorSet,
    compute_signed_tx_hash,
    compute_tx_hash,
)
from tests.unit.blockrunner import BlockRunner, ok

SUITE = get_suite("ed25519")
CHAIN = "member-chain"


def _key(seed: int) -> KeyPair:
    sk = SUITE.private_key_from_seed(bytes([seed]) * 32)
    return KeyPair(SUITE, sk, SUITE.get_public_key(sk))


ADMINS = [_key(i) for i in range(20, 24)]
CLIENTS = [_key(i) for i in range(30, 34)]
VALS = [_key(i) for i in range(40, 44)]
NEW_ADMIN, NEW_CLIENT, NEW_VAL, SPARE = (_key(i) for i in range(50, 54))
ORGS = ("alpha", "beta", "gamma", "delta")
GENESIS = Genesis(CHAIN, "ed25519", 0, tuple(
    Organisation(o, (Member("admin", ADMINS[i].public_key, ("admin", "member")),
                     Member("client", CLIENTS[i].public_key, ("member",)),
                     Member("node", VALS[i].public_key, ("validator",))))
    for i, o in enumerate(ORGS)),
    ValidatorSet(tuple(sorted((Validator(v.address, v.public_key, 1) for v in VALS), key=lambda v: v.address))),
    ChainParams())
RULES = ChainRules.from_genesis(GENESIS, SUITE)


class Chain(BlockRunner):
    """This file's genesis under the shared block runner."""

    def __init__(self) -> None:
        super().__init__(GENESIS, RULES, SUITE)

    def member(self, key: KeyPair) -> Any:
        return get_member(RULES, self.get_state, key.public_key)

    def sets(self) -> tuple[ValidatorSet, ValidatorSet]:
        return get_validator_sets(RULES, self.get_state)

    def vote_through(self, action: list[Any], voters: list[KeyPair]) -> Receipt:
        """Propose with the first admin, vote yes with the rest; the receipt of the last step."""
        r = self.one(voters[0], "gov", "propose", [action])
        assert r.status == STATUS_OK, r.error
        pid = r.result["id"]
        for v in voters[1:]:
            r = self.one(v, "gov", "vote", [pid, "yes"])
            assert r.status == STATUS_OK, r.error
        return r



def org_add_action() -> list[Any]:
    return ["org.add", "epsilon", [["admin", NEW_ADMIN.public_key, ["admin", "member"]],
                                   ["client", NEW_CLIENT.public_key, ["member"]],
                                   ["node", NEW_VAL.public_key, ["validator"]]], {"title": "Epsilon Bank"}]


def tx_of(key: KeyPair) -> Any:
    return build_tx(key, CHAIN, "kv", "put", ["k", "v"], 50)


# -- organisations ---------------------------------------------------------------------------------------------


def test_org_add_needs_a_majority_and_admits_the_new_keys_from_the_next_block() -> None:
    c = Chain()
    with pytest.raises(TxRejected) as exc:
        check_tx_static(RULES, tx_of(NEW_CLIENT), 200, lambda k: get_member(RULES, c.get_state, k))
    assert exc.value.code == "not_member"
    r = c.vote_through(org_add_action(), ADMINS[:2])
    assert r.result["status"] == "pending" and r.result["yes"] == ["alpha", "beta"]  # 2 of 4: MAJORITY needs 3
    assert c.member(NEW_CLIENT) is None
    r = c.one(ADMINS[2], "gov", "vote", [r.result["id"], "yes"])
    assert ok(r)["status"] == "executed"
    assert c.member(NEW_CLIENT).organisation == "epsilon"
    assert get_org_names(RULES, c.get_state) == ("alpha", "beta", "delta", "epsilon", "gamma")
    check_tx_static(RULES, tx_of(NEW_CLIENT), 200, lambda k: get_member(RULES, c.get_state, k))
    assert ok(c.one(NEW_CLIENT, "kv", "put", ["k", "v"])) is None or True
    # the new organisation counts in policies at once: MAJORITY of 5 now needs 3
    r = c.one(NEW_ADMIN, "gov", "propose", [["gov.set_policy", "contract.deploy", "MAJORITY", [], ["admin"]]])
    assert ok(r)["status"] == "pending"


def test_org_add_by_endorsements_and_too_few_named() -> None:
    from qilian.execution.modules.gov import compute_endorsement

    c = Chain()
    action = org_add_action()
    ends = [compute_endorsement(SUITE, k.private_key, k.public_key, CHAIN, action, 100) for k in ADMINS[1:2]]
    r = c.one(ADMINS[0], "gov", "execute", [action, 100, ends])
    assert r.status == STATUS_FAILED
    assert "policy org.add is MAJORITY of admin in all organisations: needs approval of 3 of 4" in r.error
    ends = [compute_endorsement(SUITE, k.private_key, k.public_key, CHAIN, action, 100) for k in ADMINS[1:3]]
    ok(c.one(ADMINS[0], "gov", "execute", [action, 100, ends]))
    assert c.member(NEW_ADMIN).organisation == "epsilon"


def test_org_remove_revokes_every_key_and_refuses_a_validating_org() -> None:
    c = Chain()
    r = c.vote_through(["org.remove", "delta"], ADMINS[:3])
    assert "validator set" in r.result["result"] and r.result["status"] == "failed"
    ok(c.vote_through(["gov.set_param", "validators.min", 3], ADMINS[:3]))
    ok(c.vote_through(["validator.update", [[VALS[3].public_key, 0]]], ADMINS[:3]))
    c.run()
    c.run()
    r = c.vote_through(["org.remove", "delta"], ADMINS[:3])
    assert r.result["status"] == "executed"
    assert c.member(CLIENTS[3]) is None and get_revoked(c.get_state, CLIENTS[3].public_key)[3] == \
        "organisation removed"
    assert "delta" not in get_org_names(RULES, c.get_state)


# -- members ---------------------------------------------------------------------------------------------------


def test_member_add_is_self_governed() -> None:
    c = Chain()
    r = c.one(ADMINS[0], "gov", "propose", [["member.add", "alpha", "ops", SPARE.public_key, ["member"]]])
    assert ok(r)["status"] == "executed"  # SELF: alpha's own admin suffices
    assert c.member(SPARE).name == "ops"
    # another organisation's admin cannot add keys to alpha
    r = c.one(ADMINS[1], "gov", "propose", [["member.add", "alpha", "x", NEW_CLIENT.public_key, ["member"]]])
    assert ok(r)["status"] == "pending"
    r = c.one(ADMINS[2], "gov", "vote", [r.result["id"], "yes"])
    assert r.status == STATUS_FAILED and "would not count" in r.error


def test_revocation_applies_from_its_height_within_the_block_too() -> None:
    c = Chain()
    ok(c.one(CLIENTS[0], "kv", "put", ["a", "1"]))
    receipts = c.run((ADMINS[0], "gov", "propose", [["member.revoke", CLIENTS[0].public_key, "laptop lost"]]),
                     (CLIENTS[0], "kv", "put", ["a", "2"]))
    assert ok(receipts[0])["status"] == "executed"
    assert receipts[1].status == STATUS_FAILED and "not a member" in receipts[1].error
    with pytest.raises(TxRejected) as exc:
        check_tx_static(RULES, tx_of(CLIENTS[0]), 200, lambda k: get_member(RULES, c.get_state, k))
    assert exc.value.code == "not_member"
    assert get_revoked(c.get_state, CLIENTS[0].public_key) == ("alpha", "client", 2, "laptop lost")
    # a revoked key never returns
    r = c.one(ADMINS[0], "gov", "propose", [["member.add", "alpha", "c2", CLIENTS[0].public_key, ["member"]]])
    assert r.status == STATUS_FAILED and "revoked at height 2" in r.error


def test_revoking_the_last_admin_or_a_validator_is_refused() -> None:
    c = Chain()
    r = c.one(ADMINS[0], "gov", "propose", [["member.revoke", ADMINS[0].public_key, "x"]])
    assert r.status == STATUS_FAILED and "last admin key of alpha" in r.error
    r = c.one(ADMINS[0], "gov", "propose", [["member.revoke", VALS[0].public_key, "x"]])
    assert r.status == STATUS_FAILED and "validator set" in r.error


def test_rotate_keeps_name_roles_and_contract_ownership() -> None:
    c = Chain()
    r = c.one(ADMINS[0], "gov", "propose", [["member.rotate", CLIENTS[0].public_key, SPARE.public_key]])
    assert ok(r)["status"] == "executed"
    m = c.member(SPARE)
    assert (m.organisation, m.name, m.roles) == ("alpha", "client", frozenset({"member"}))
    assert c.member(CLIENTS[0]) is None
    assert get_revoked(c.get_state, CLIENTS[0].public_key)[3].startswith("rotated to ")
    ok(c.one(SPARE, "kv", "put", ["k", "v"]))


def test_block_with_a_revoked_sender_is_invalid() -> None:
    c = Chain()
    ok(c.one(ADMINS[0], "gov", "propose", [["member.revoke", CLIENTS[0].public_key, "gone"]]))
    current, nxt = c.sets()
    parent = ParentInfo(0, b"", 0, b"\x00" * 32, compute_empty_root(SUITE), current, nxt, current,
                        lambda k: get_member(RULES, c.get_state, k))
    t = tx_of(CLIENTS[0])
    hashes = [compute_tx_hash(SUITE, t.body)]
    header = make_header(RULES, parent, 5, [compute_signed_tx_hash(SUITE, t)], None, current.validators[0].address)
    with pytest.raises(BlockInvalid, match="not a member"):
        check_block(RULES, parent, Block(header, (t,), None), hashes, lambda h: False)


# -- validator sets --------------------------------------------------------------------------------------------


def test_validator_change_in_block_h_signs_from_h_plus_2() -> None:
    c = Chain()
    ok(c.vote_through(org_add_action(), ADMINS[:3]))
    before = c.sets()[0]
    r = c.vote_through(["validator.update", [[NEW_VAL.public_key, 1]]], ADMINS[:3])
    h = c.height
    assert r.result["status"] == "executed"
    current, nxt = c.sets()  # state after h: current signs h+1, next signs h+2
    assert current == before and len(nxt.validators) == 5
    c.run()
    current2, nxt2 = c.sets()  # state after h+1: current signs h+2
    assert current2 == nxt and nxt2 == nxt
    assert h + 2 == c.height + 1


def test_rails_refuse_too_few_validators_and_too_much_power_and_are_governed() -> None:
    c = Chain()
    r = c.one(ADMINS[0], "gov", "propose", [["validator.update", [[VALS[0].public_key, 0]]]])
    assert r.status == STATUS_FAILED and "validators.min requires at least 4" in r.error
    ok(c.vote_through(org_add_action(), ADMINS[:3]))
    r = c.one(ADMINS[0], "gov", "propose", [["validator.update", [[NEW_VAL.public_key, 2]]]])
    assert r.status == STATUS_FAILED and "moves 2 of 4 voting power" in r.error
    assert "validators.max_change allows at most 1/3" in r.error
    ok(c.vote_through(["gov.set_param", "validators.max_change", "1/2"], ADMINS[:3]))
    r = c.vote_through(["validator.update", [[NEW_VAL.public_key, 2]]], ADMINS[:3])
    assert r.result["status"] == "executed"


def test_adding_a_non_validator_member_is_refused() -> None:
    c = Chain()
    r = c.one(ADMINS[0], "gov", "propose", [["validator.update", [[CLIENTS[0].public_key, 1]]]])
    assert r.status == STATUS_FAILED and "validator role" in r.error


# -- G6: update order --------------------------------------------------------------------------------------------

POOL = [_key(i) for i in range(60, 72)]
BASE = ValidatorSet(tuple(sorted((Validator(k.address, k.public_key, 3) for k in POOL[:6]),
                                 key=lambda v: v.address)))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, len(POOL) - 1), st.integers(0, 9), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_g6_update_order_changes_neither_the_set_nor_the_proposer_sequence(changes: dict[int, int], rnd: Any) -> None:
    updates = [ValidatorUpdate(POOL[i].public_key, p) for i, p in changes.items()
               if p > 0 or any(v.public_key == POOL[i].public_key for v in BASE.validators)]
    if not updates:
        return
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    a = compute_updated_set(BASE, updates, SUITE.compute_address)
    b = compute_updated_set(BASE, shuffled, SUITE.compute_address)
    assert a == b and a.encode() == b.encode()
    if a.validators:
        pa = compute_proposer_sequence({v.address: v.power for v in a.validators})
        pb = compute_proposer_sequence({v.address: v.power for v in b.validators})
        assert pa == pb


def test_g6_order_in_a_governance_action_gives_the_same_state() -> None:
    roots = set()
    updates = [[NEW_VAL.public_key, 1], [VALS[1].public_key, 2]]
    for order in (updates, updates[::-1]):
        c = Chain()
        ok(c.vote_through(org_add_action(), ADMINS[:3]))
        ok(c.vote_through(["gov.set_param", "validators.max_change", "1/1"], ADMINS[:3]))
        r = c.vote_through(["validator.update", order], ADMINS[:3])
        assert r.result["status"] == "executed", r.result
        roots.add(c.sets()[1].encode())
    assert len(roots) == 1


def test_duplicate_key_in_one_action_is_refused() -> None:
    c = Chain()
    r = c.one(ADMINS[0], "gov", "propose", [["validator.update", [[VALS[0].public_key, 2], [VALS[0].public_key, 1]]]])
    assert r.status == STATUS_FAILED and "updated twice" in r.error
