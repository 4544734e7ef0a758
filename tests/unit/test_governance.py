"""Policies, proposals and endorsements: the policy language, thresholds per organisation, double votes, expiry,
revocation, replay on another chain, and the refusals that name the rule — on real blocks over a real state."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qilian.crypto import get_suite
from qilian.execution.contracts import compute_contract_address, get_code
from qilian.execution.modules.gov import (
    GOV_NAMESPACE,
    compute_endorsement,
    compute_proposal_key,
    get_proposal,
)
from qilian.execution.policy import (
    DEFAULT_POLICIES,
    MEMBER_NAMESPACE,
    Approver,
    Policy,
    PolicyError,
    compute_policy,
    compute_verdict,
    get_policy,
    is_valid_rule,
)
from qilian.execution.rules import ChainRules, TxRejected, check_tx_static
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import decode_raw
from qilian.types.core import (
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Validator,
    ValidatorSet,
)
from tests.unit.blockrunner import BlockRunner, failed, ok

SUITE = get_suite("ed25519")
CHAIN = "gov-chain"


def _key(seed: int) -> KeyPair:
    sk = SUITE.private_key_from_seed(bytes([seed]) * 32)
    return KeyPair(SUITE, sk, SUITE.get_public_key(sk))


A_ADMIN, A_ADMIN2, A_CLIENT, B_ADMIN, B_CLIENT, C_ADMIN, VAL, OUTSIDER = (_key(i) for i in range(10, 18))
GENESIS = Genesis(CHAIN, "ed25519", 0, (
    Organisation("alpha", (Member("admin", A_ADMIN.public_key, ("admin", "member")),
                           Member("admin2", A_ADMIN2.public_key, ("admin", "member")),
                           Member("client", A_CLIENT.public_key, ("member",)),
                           Member("v", VAL.public_key, ("validator",)))),
    Organisation("beta", (Member("admin", B_ADMIN.public_key, ("admin", "member")),
                          Member("client", B_CLIENT.public_key, ("member",)))),
    Organisation("gamma", (Member("admin", C_ADMIN.public_key, ("admin", "member")),)),
), ValidatorSet((Validator(VAL.address, VAL.public_key, 1),)), ChainParams())
RULES = ChainRules.from_genesis(GENESIS, SUITE)
FORGED = '''
@export
def register(digest: bytes, title: str, doc_type: str, uri: str):
    return {"digest": digest, "owner_org": "alpha"}
'''
TOKEN = '''
n = Variable(default=0)

@export
def bump():
    n.set(n.get() + 1)
    return n.get()
'''


class Chain(BlockRunner):
    """This file's genesis under the shared block runner."""

    def __init__(self) -> None:
        super().__init__(GENESIS, RULES, SUITE)




def ap(org: str, *roles: str) -> Approver:
    return Approver(org, "m", frozenset(roles or ("admin",)))


ORGS = ("alpha", "beta", "gamma")


# -- the policy language ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "orgs_needed"), [("ANY", 1), ("ALL", 3), ("MAJORITY", 2), ("2", 2), ("1/3", 1),
                                                   ("2/3", 2), ("3/3", 3)])
def test_threshold_rules_count_organisations(rule: str, orgs_needed: int) -> None:
    p = Policy(rule, (), ("admin",))
    for k in range(4):
        v = compute_verdict("r", p, [ap(o) for o in ORGS[:k]], ORGS)
        assert v.ok == (k >= orgs_needed), (rule, k, v)
        assert v.needed == orgs_needed
        if not v.ok:
            assert f"policy r is {rule}" in v.message and f"needs approval of {orgs_needed} of 3" in v.message
            assert f"found {k}" in v.message


def test_an_organisation_counts_once_and_only_with_the_role() -> None:
    p = Policy("MAJORITY", (), ("admin",))
    v = compute_verdict("gov.set_policy", p, [ap("alpha"), ap("alpha"), ap("beta", "member")], ORGS)
    assert not v.ok and v.found == ("alpha",)
    assert "found 1 (alpha)" in v.message and "needs approval of 2 of 3" in v.message


def test_self_forbidden_and_scoped_orgs() -> None:
    self_p = Policy("SELF", (), ("admin",))
    assert compute_verdict("c", self_p, [ap("beta")], ORGS, "beta").ok
    v = compute_verdict("c", self_p, [ap("alpha"), ap("gamma")], ORGS, "beta")
    assert not v.ok and "owner beta" in v.message
    assert "no owning organisation" in compute_verdict("c", self_p, [ap("alpha")], ORGS, None).message
    assert "FORBIDDEN" in compute_verdict("c", Policy("FORBIDDEN", (), ("admin",)), [ap(o) for o in ORGS],
                                          ORGS).message
    scoped = Policy("ALL", ("alpha", "beta"), ("admin",))
    assert compute_verdict("c", scoped, [ap("alpha"), ap("beta")], ORGS).ok
    assert not compute_verdict("c", scoped, [ap("alpha"), ap("gamma")], ORGS).ok


def test_rule_syntax() -> None:
    for good in ("ANY", "ALL", "MAJORITY", "SELF", "FORBIDDEN", "1", "12", "2/3", "1/1"):
        assert is_valid_rule(good), good
    for bad in ("any", "0", "3/2", "0/1", "1/0", "02", "-1", "1/2/3", "", "½", "1001", " 1"):
        assert not is_valid_rule(bad), bad
    with pytest.raises(PolicyError, match="unknown role"):
        compute_policy("ANY", [], ["root"])
    with pytest.raises(PolicyError, match="unknown organisation"):
        compute_policy("ANY", ["delta"], ["admin"], ORGS)


@settings(max_examples=300, deadline=None)
@given(n_orgs=st.integers(1, 9), a=st.integers(1, 9), b=st.integers(1, 9), approvals=st.lists(st.integers(0, 8)))
def test_fraction_rules_are_monotone_and_exact(n_orgs: int, a: int, b: int, approvals: list[int]) -> None:
    """a/b passes exactly when found/scope >= a/b (integer arithmetic), adding approvals never hurts, and
    duplicates never help."""
    if a > b:
        a, b = b, a
    orgs = [f"o{i}" for i in range(n_orgs)]
    approvers = [ap(orgs[i % n_orgs]) for i in approvals]
    p = Policy(f"{a}/{b}", (), ("admin",))
    v = compute_verdict("r", p, approvers, orgs)
    k = len({x.org for x in approvers})
    assert v.ok == (k * b >= a * n_orgs and k >= 1)
    assert compute_verdict("r", p, approvers + approvers, orgs) == v
    if v.ok:
        assert compute_verdict("r", p, approvers + [ap(o) for o in orgs], orgs).ok


# -- genesis state ---------------------------------------------------------------------------------------------

def test_genesis_seeds_policies_and_members() -> None:
    c = Chain()
    for resource, policy in DEFAULT_POLICIES.items():
        assert get_policy(c.get_state, resource) == policy
    assert decode_raw(c.get_state(MEMBER_NAMESPACE, B_ADMIN.public_key) or b"") == ["beta", "admin",
                                                                                     ["admin", "member"]]


# -- contracts lifecycle under policy --------------------------------------------------------------------------

def test_one_admin_cannot_upgrade_a_system_contract() -> None:
    c = Chain()
    err = failed(c.one(B_ADMIN, "contracts", "upgrade", ["evidence", FORGED]))
    assert "evidence is a system contract" in err and "contract.upgrade.system" in err and "MAJORITY" in err
    assert "found 1 organisation (beta)" in err
    assert get_code(c.get_state, "evidence")[2] == 1  # type: ignore[index]


def test_user_contract_upgrades_by_its_own_organisation_only_and_keeps_its_deployer() -> None:
    c = Chain()
    addr = ok(c.one(A_ADMIN, "contracts", "deploy", ["tok", TOKEN]))
    assert addr == compute_contract_address(SUITE, A_ADMIN.public_key, "tok")
    err = failed(c.one(B_ADMIN, "contracts", "upgrade", [addr, TOKEN + "\n"]))
    assert "policy contract.upgrade is SELF" in err and "owner alpha" in err and "found 0 (none)" in err
    r = c.one(A_ADMIN2, "contracts", "upgrade", [addr, TOKEN + "\n"])  # another admin of the same organisation
    ok(r)
    _source, deployer, version = get_code(c.get_state, addr)  # type: ignore[misc]
    assert (deployer, version) == (A_ADMIN.address.hex(), 2)
    assert r.events[0].name == "Upgraded" and r.events[0].data["approvers"] == ["alpha"]


def test_clients_cannot_deploy() -> None:
    tx = build_tx(A_CLIENT, CHAIN, "contracts", "deploy", ["t", TOKEN], 10)
    with pytest.raises(TxRejected, match="admin"):
        check_tx_static(RULES, tx, 200)


# -- online proposals ------------------------------------------------------------------------------------------

def test_majority_proposal_upgrades_evidence_and_a_double_vote_counts_once() -> None:
    c = Chain()
    res = ok(c.one(B_ADMIN, "gov", "propose", [["contract.upgrade", "evidence", FORGED]]))
    assert res["status"] == "pending" and res["yes"] == ["beta"] and res["resource"] == "contract.upgrade.system"
    pid = res["id"]
    assert "organisation beta has already voted" in failed(c.one(B_ADMIN, "gov", "vote", [pid, "yes"]))
    assert "would not count" in failed(c.one(A_CLIENT, "gov", "vote", [pid, "yes"]))
    r = c.one(A_ADMIN, "gov", "vote", [pid, "yes"])
    assert ok(r)["status"] == "executed"
    assert [e.name for e in r.events] == ["Voted", "Upgraded", "Executed"]
    assert r.events[1].data["approvers"] == ["alpha", "beta"]
    source, deployer, version = get_code(c.get_state, "evidence")  # type: ignore[misc]
    assert (source, deployer, version) == (FORGED, "", 2)
    assert "proposal 1 is executed" in failed(c.one(C_ADMIN, "gov", "vote", [pid, "yes"]))


def test_proposal_rejected_when_the_threshold_is_out_of_reach() -> None:
    c = Chain()
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["gov.set_policy", "kv.put", "FORBIDDEN", [], ["admin"]]]))["id"]
    assert ok(c.one(B_ADMIN, "gov", "vote", [pid, "no"]))["status"] == "pending"
    assert ok(c.one(C_ADMIN, "gov", "vote", [pid, "no"]))["status"] == "rejected"
    assert get_policy(c.get_state, "kv.put") == DEFAULT_POLICIES["kv.put"]


def test_set_policy_by_proposal_then_the_new_rule_applies() -> None:
    c = Chain()
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["gov.set_policy", "kv.put", "FORBIDDEN", [], ["admin"]]]))["id"]
    ok(c.one(C_ADMIN, "gov", "vote", [pid, "yes"]))
    assert get_policy(c.get_state, "kv.put") == Policy("FORBIDDEN", (), ("admin",))
    assert "policy kv.put is FORBIDDEN" in failed(c.one(A_ADMIN, "kv", "put", [b"k", b"v"]))
    bad = failed(c.one(A_ADMIN, "gov", "propose", [["gov.set_policy", "gov.set_policy", "FORBIDDEN", [],
                                                    ["admin"]]]))
    assert "may not be FORBIDDEN" in bad
    assert "unknown resource" in failed(c.one(A_ADMIN, "gov", "propose", [["gov.set_policy", "kv.puts", "ANY", [],
                                                                           ["admin"]]]))


def test_revoke_is_for_the_proposer_only() -> None:
    c = Chain()
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["contract.upgrade", "evidence", FORGED]]))["id"]
    assert "only the proposer" in failed(c.one(B_ADMIN, "gov", "revoke", [pid]))
    assert "only the proposer" in failed(c.one(A_ADMIN2, "gov", "revoke", [pid]))  # same org, other key
    assert ok(c.one(A_ADMIN, "gov", "revoke", [pid]))["status"] == "revoked"
    assert "is revoked" in failed(c.one(B_ADMIN, "gov", "vote", [pid, "yes"]))


def test_a_vote_after_expiry_is_refused() -> None:
    c = Chain()
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["contract.upgrade", "evidence", FORGED], 2]))["id"]
    created = c.height
    c.one(A_ADMIN, "kv", "put", [b"a", b"1"])
    c.one(A_ADMIN, "kv", "put", [b"b", b"1"])  # height created + 2: the last one it could be voted at
    p = get_proposal(c.get_state, pid)
    assert p is not None and p.status == "expired" and p.decided == created + 2
    assert "is expired" in failed(c.one(B_ADMIN, "gov", "vote", [pid, "yes"]))
    assert c.get_state(GOV_NAMESPACE, b"pending") is None
    assert get_code(c.get_state, "evidence")[2] == 1  # type: ignore[index]


def test_a_failing_action_marks_the_proposal_failed_and_changes_nothing() -> None:
    c = Chain()
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["contract.upgrade", "evidence", "import os\n"]]))["id"]
    r = ok(c.one(B_ADMIN, "gov", "vote", [pid, "yes"]))
    assert r["status"] == "failed" and "contract rejected" in r["result"]
    assert get_code(c.get_state, "evidence")[2] == 1  # type: ignore[index]
    stored = decode_raw(c.get_state(GOV_NAMESPACE, compute_proposal_key(pid)) or b"")
    assert stored["status"] == "failed"


def test_a_vote_signed_for_another_chain_is_refused() -> None:
    tx = build_tx(B_ADMIN, "other-chain", "gov", "vote", [1, "yes"], 10)
    with pytest.raises(TxRejected, match="for chain 'other-chain'"):
        check_tx_static(RULES, tx, 200)


def test_freeze_and_unfreeze_by_proposal() -> None:
    c = Chain()
    addr = ok(c.one(B_ADMIN, "contracts", "deploy", ["tok", TOKEN]))
    assert ok(c.one(B_CLIENT, addr, "bump", [])) == 1
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["contract.freeze", addr]]))["id"]
    ok(c.one(C_ADMIN, "gov", "vote", [pid, "yes"]))
    assert "is frozen" in failed(c.one(B_CLIENT, addr, "bump", []))
    pid = ok(c.one(A_ADMIN, "gov", "propose", [["contract.unfreeze", addr]]))["id"]
    ok(c.one(B_ADMIN, "gov", "vote", [pid, "yes"]))
    assert ok(c.one(B_CLIENT, addr, "bump", [])) == 2


# -- offline multi-signature -----------------------------------------------------------------------------------

def _endorse(k: KeyPair, action: list[Any], deadline: int, chain: str = CHAIN) -> list[bytes]:
    return compute_endorsement(SUITE, k.private_key, k.public_key, chain, action, deadline)


def test_endorsements_meet_the_policy_once() -> None:
    c = Chain()
    action = ["contract.upgrade", "evidence", FORGED]
    one = [_endorse(B_ADMIN, action, 100)]
    err = failed(c.one(B_CLIENT, "gov", "execute", [action, 100, one]))
    assert "policy contract.upgrade.system is MAJORITY" in err and "found 1 (beta)" in err
    # two admins of one organisation still count once
    err = failed(c.one(B_CLIENT, "gov", "execute", [action, 100, [_endorse(A_ADMIN, action, 100),
                                                                   _endorse(A_ADMIN2, action, 100)]]))
    assert "found 1 (alpha)" in err
    both = [_endorse(B_ADMIN, action, 100), _endorse(C_ADMIN, action, 100)]
    r = c.one(B_CLIENT, "gov", "execute", [action, 100, both])
    ok(r)
    assert r.events[0].data["approvers"] == ["beta", "gamma"] and r.events[0].data["via"] == "endorsements"
    assert get_code(c.get_state, "evidence")[2] == 2  # type: ignore[index]
    assert "already used" in failed(c.one(B_CLIENT, "gov", "execute", [action, 100, both]))


def test_bad_endorsements_are_refused_naming_why() -> None:
    c = Chain()
    action = ["gov.set_policy", "contract.deploy", "MAJORITY", [], ["admin"]]
    good = _endorse(C_ADMIN, action, 100)
    other_chain = _endorse(B_ADMIN, action, 100, chain="other-chain")
    assert "does not verify" in failed(c.one(A_ADMIN, "gov", "execute", [action, 100, [good, other_chain]]))
    other_deadline = _endorse(B_ADMIN, action, 101)
    assert "does not verify" in failed(c.one(A_ADMIN, "gov", "execute", [action, 100, [good, other_deadline]]))
    assert "not a member" in failed(c.one(A_ADMIN, "gov", "execute", [action, 100, [
        good, _endorse(OUTSIDER, action, 100)]]))
    wrong_role = failed(c.one(A_ADMIN, "gov", "execute", [action, 100, [good, _endorse(B_CLIENT, action, 100)]]))
    assert "beta/client" in wrong_role and "does not count" in wrong_role
    c.height = 100
    late = failed(c.one(A_ADMIN, "gov", "execute", [action, 100, [good]]))
    assert "good until height 100" in late
    assert get_policy(c.get_state, "contract.deploy") == DEFAULT_POLICIES["contract.deploy"]


def test_the_submitter_counts_as_an_approver() -> None:
    c = Chain()
    action = ["gov.set_policy", "contract.deploy", "MAJORITY", [], ["admin"]]
    ok(c.one(A_ADMIN, "gov", "execute", [action, 100, [_endorse(C_ADMIN, action, 100)]]))
    assert get_policy(c.get_state, "contract.deploy").rule == "MAJORITY"
    err = failed(c.one(B_ADMIN, "contracts", "deploy", ["t2", TOKEN]))
    assert "policy contract.deploy is MAJORITY" in err


def test_governed_execution_is_deterministic() -> None:
    def run() -> list[Any]:
        c = Chain()
        out = [c.one(A_ADMIN, "gov", "propose", [["contract.upgrade", "evidence", FORGED]]),
               c.one(B_ADMIN, "gov", "vote", [1, "yes"])]
        return [r.encode() for r in out] + [sorted(c.values.items())]
    assert run() == run()


def test_a_proposal_met_by_its_proposer_executes_at_once() -> None:
    c = Chain()
    addr = ok(c.one(B_ADMIN, "contracts", "deploy", ["tok", TOKEN]))
    res = ok(c.one(B_ADMIN, "gov", "propose", [["contract.upgrade", addr, TOKEN + "\n"]]))
    assert res["status"] == "executed" and res["resource"] == "contract.upgrade"  # SELF: beta owns it
    assert c.get_state(GOV_NAMESPACE, b"pending") is None
    assert get_code(c.get_state, addr)[2] == 2  # type: ignore[index]
