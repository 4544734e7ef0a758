"""The contract language and runtime: what a contract author relies on (storage, ctx, events, cross-contract
calls, rollback, fuel) and what every node relies on (the same fuel and state under any PYTHONHASHSEED)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from qilian.contracts import ContractRejected, MemoryState, Runtime, compile_contract, sandbox_run
from qilian.contracts.runtime import Context
from qilian.contracts.system import EVIDENCE_SOURCE
from qilian.crypto import get_suite
from qilian.execution.block import execute_block, query_contract
from qilian.execution.contracts import compute_contract_address, compute_genesis_writes
from qilian.execution.rules import ChainRules, TxRejected, check_tx_static
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.core import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_OUT_OF_FUEL,
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Validator,
    ValidatorSet,
    compute_tx_hash,
)

TOKEN = '''
balances = Hash(default=0)

@export
def init(amount: int):
    balances[ctx.sender] = amount

@export
def transfer(to: str, amount: int):
    assert amount > 0, "amount must be positive"
    b = balances[ctx.sender]
    assert b >= amount, "insufficient balance"
    balances[ctx.sender] = b - amount
    balances[to] += amount
    emit("Transfer", {"from": ctx.sender, "to": to, "amount": amount})
    return balances[to]

@export
def balance_of(who: str):
    return balances[who]

@export
def burn_then_fail(amount: int):
    balances[ctx.sender] -= amount
    assert False, "changed my mind"

@export
def spin():
    while True:
        pass

@export
def relay(target: str, to: str, amount: int):
    return call(target, "transfer", to, amount)
'''


def _rt(contracts: dict[str, str]) -> tuple[Runtime, MemoryState]:
    state = MemoryState()
    compiled = {a: compile_contract(s) for a, s in contracts.items()}
    return Runtime(state, compiled.get, lambda b: hashlib.sha256(b).digest()), state


def _ctx(this: str, sender: str = "alice") -> Context:
    return Context(sender, "org1", 5, 1000, "ab" * 32, this, sender)


def test_storage_events_and_return_values() -> None:
    rt, _ = _rt({"tok": TOKEN})
    assert rt.run_call("tok", "init", [100], _ctx("tok"), 100_000).ok
    out = rt.run_call("tok", "transfer", ["bob", 30], _ctx("tok"), 100_000)
    assert out.ok and out.value == 30
    assert out.events == (("tok", "Transfer", {"from": "alice", "to": "bob", "amount": 30}),)
    assert rt.run_call("tok", "balance_of", ["alice"], _ctx("tok"), 100_000).value == 70
    assert out.fuel_used > 0


def test_assertion_message_and_out_of_fuel_are_reported() -> None:
    rt, _ = _rt({"tok": TOKEN})
    out = rt.run_call("tok", "transfer", ["bob", 5], _ctx("tok", "nobody"), 100_000)
    assert not out.ok and out.error == "[assertion] line 12: insufficient balance" and out.code == "assertion"
    spun = rt.run_call("tok", "spin", [], _ctx("tok"), 5_000)
    assert not spun.ok and spun.out_of_fuel and spun.fuel_used == 5_000


WHO = """
seen = Variable()

@export
def who():
    seen.set([ctx.sender, ctx.caller, ctx.this])
    return seen.get()

@export
def fail():
    seen.set("written before failing")
    assert False, "callee refuses"
"""
CALLER = """
@export
def ask(target: str):
    return call(target, "who")

@export
def ask_fail(target: str):
    return call(target, "fail")
"""


def test_cross_contract_call_context_fuel_and_failure() -> None:
    rt, _ = _rt({"who": WHO, "caller": CALLER})
    out = rt.run_call("caller", "ask", ["who"], _ctx("caller"), 100_000)
    assert out.ok and out.value == ["alice", "caller", "who"]  # signer, calling contract, callee
    direct = rt.run_call("who", "who", [], _ctx("who"), 100_000)
    assert out.fuel_used > direct.fuel_used  # the caller pays for the callee's work
    bad = rt.run_call("caller", "ask_fail", ["who"], _ctx("caller"), 100_000)
    assert not bad.ok and "callee refuses" in (bad.error or "")


def test_exports_only_and_arguments_checked() -> None:
    rt, _ = _rt({"tok": TOKEN})
    assert "no exported function" in (rt.run_call("tok", "balances", [], _ctx("tok"), 100_000).error or "")
    assert not rt.run_call("tok", "transfer", ["bob"], _ctx("tok"), 100_000).ok


@pytest.mark.parametrize(("source", "rule", "line"), [
    ("@export\ndef f():\n    return 1.5\n", "float", 3),
    ("@export\ndef f():\n    x = 1\n    return x.__class__\n", "underscore", 4),
    ("import os\n@export\ndef f():\n    return 1\n", "import", 1),
    ("@export\ndef f():\n    return eval('1')\n", "forbidden-name", 3),
    ("@export\ndef f():\n    return '{}'.format(1)\n", "attribute", 3),
    ("@export\ndef f():\n    return {1, 2}\n", "set", 3),
    ("class C:\n    pass\n@export\ndef f():\n    return 1\n", "class", 1),
    ("def f():\n    return 1\n", "no-exports", 1),
])
def test_rejections_name_the_line_and_rule(source: str, rule: str, line: int) -> None:
    with pytest.raises(ContractRejected) as ei:
        compile_contract(source)
    assert ei.value.rule == rule and ei.value.line == line
    assert str(ei.value).startswith(f"line {line}: [{rule}]")


def test_fixed_point_and_digest_are_deterministic() -> None:
    src = ("from std import Fixed, digest\n@export\ndef attack():\n"
           "    a = Fixed('10.25', 4)\n    return [a.mul(Fixed('3', 4)).to_str(), a.div(3).to_str(), "
           "digest(b'abc').hex()]\n")
    out = sandbox_run(src)
    assert out.value == ["30.7500", "3.4166", hashlib.sha256(b"abc").hexdigest()]


# -- on chain: blocks, fuel in receipts, rollback, and determinism across processes --------------------------------

SUITE = get_suite("ed25519")


def _key(seed: int) -> KeyPair:
    sk = SUITE.private_key_from_seed(bytes([seed]) * 32)
    return KeyPair(SUITE, sk, SUITE.get_public_key(sk))


ADMIN, CLIENT, VAL = _key(1), _key(2), _key(3)
GENESIS = Genesis("c-chain", "ed25519", 0, (Organisation("org1", (
    Member("admin", ADMIN.public_key, ("admin", "member")), Member("client", CLIENT.public_key, ("member",)),
    Member("v", VAL.public_key, ("validator",)))),),
    ValidatorSet((Validator(VAL.address, VAL.public_key, 1),)), ChainParams())
RULES = ChainRules.from_genesis(GENESIS, SUITE)


class DictState:
    def __init__(self) -> None:
        self.values: dict[tuple[str, bytes], bytes] = {k: v for k, v in compute_genesis_writes(GENESIS).items() if v}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))

    def apply(self, writes: dict[tuple[str, bytes], bytes | None]) -> None:
        for k, v in writes.items():
            if v is None:
                self.values.pop(k, None)
            else:
                self.values[k] = v


def _run_block(state: DictState, calls: list[tuple[KeyPair, str, str, list[object]]], height: int) -> list[object]:
    txs = [build_tx(k, "c-chain", to, m, a, height + 10, nonce=i) for i, (k, to, m, a) in enumerate(calls)]
    hashes = [compute_tx_hash(SUITE, tx.body) for tx in txs]
    res = execute_block(RULES, state, txs, hashes, height, 1_000 * height)
    state.apply(res.writes)
    return list(res.receipts)


def test_deploy_call_rollback_and_fuel_on_chain() -> None:
    state = DictState()
    addr = compute_contract_address(SUITE, ADMIN.public_key, "tok")
    (dep,) = _run_block(state, [(ADMIN, "contracts", "deploy", ["tok", TOKEN, [1000]])], 1)
    assert dep.status == STATUS_OK and dep.result == addr
    r_ok, r_fail, r_fuel = _run_block(state, [
        (ADMIN, addr, "transfer", ["bob", 10]),
        (ADMIN, addr, "burn_then_fail", [500]),
        (ADMIN, addr, "spin", []),
    ], 2)
    assert r_ok.status == STATUS_OK and r_ok.fuel_used > 0 and r_ok.events[0].name == "Transfer"
    assert r_fail.status == STATUS_FAILED and "changed my mind" in r_fail.error
    assert r_fuel.status == STATUS_OUT_OF_FUEL and r_fuel.fuel_used > 0
    # The failed call's write was rolled back: the admin still has 990.
    q = query_contract(RULES, state, addr, "balance_of", [ADMIN.address.hex()], 3, 3000)
    assert q.ok and q.value == 990
    # A query cannot write.
    w = query_contract(RULES, state, addr, "transfer", ["x", 1], 3, 3000, sender=ADMIN.address.hex())
    assert not w.ok and "read-only" in (w.error or "")


def test_only_admins_deploy() -> None:
    tx = build_tx(CLIENT, "c-chain", "contracts", "deploy", ["t", TOKEN], 10)
    with pytest.raises(TxRejected) as ei:
        check_tx_static(RULES, tx, len(tx.encode()))
    assert ei.value.code == "forbidden"


def test_evidence_contract_is_installed_and_append_only() -> None:
    state = DictState()
    d = SUITE.hash(b"the document")
    (first,) = _run_block(state, [(CLIENT, "evidence", "register", [d, "doc", "contract", ""])], 1)
    assert first.status == STATUS_OK and first.result["owner_org"] == "org1" and first.result["height"] == 1
    (again,) = _run_block(state, [(ADMIN, "evidence", "register", [d, "other", "x", ""])], 2)
    assert again.status == STATUS_FAILED and first.result["tx_hash"] in again.error
    assert compile_contract(EVIDENCE_SOURCE).exports == ("register", "get", "total")


_DETERMINISM = r"""
import json, sys
sys.path.insert(0, {here!r})
from test_contracts_runtime import DictState, _run_block, ADMIN, CLIENT, TOKEN, SUITE
from qilian.execution.contracts import compute_contract_address
from qilian.state import StateTree, MemoryNodeStore, ZERO_HASH
state = DictState()
addr = compute_contract_address(SUITE, ADMIN.public_key, "tok")
out = [r.fuel_used for r in _run_block(state, [(ADMIN, "contracts", "deploy", ["tok", TOKEN, [10**6]])], 1)]
names = ["zed", "alpha", "mu", "beta", "omega", "kappa"]
calls = [(ADMIN, addr, "transfer", [n, i + 1]) for i, n in enumerate(names)]
calls.append((CLIENT, "evidence", "register", [SUITE.hash(b"d"), "t", "x", ""]))
out += [r.fuel_used for r in _run_block(state, calls, 2)]
root, _ = StateTree(SUITE.hash, MemoryNodeStore()).apply_writes(ZERO_HASH, state.values)
print(json.dumps({{"fuel": out, "root": root.hex()}}))
"""


def test_same_fuel_and_state_root_under_different_hash_seeds() -> None:
    here = os.path.dirname(__file__)
    results = []
    for seed in ("0", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        p = subprocess.run([sys.executable, "-c", _DETERMINISM.format(here=here)], capture_output=True, text=True,
                           env=env, timeout=60)
        assert p.returncode == 0, p.stderr[-2000:]
        results.append(json.loads(p.stdout))
    assert results[0] == results[1] == results[2]
    assert all(f > 0 for f in results[0]["fuel"])


def test_block_fuel_budget_bounds_a_block_of_spinners() -> None:
    """Execution is deferred, so a block of fuel-burning calls must not take unbounded time: the block's budget
    runs out and the remaining calls fail at once, the same way on every node."""
    from qilian.execution.contracts import MAX_BLOCK_FUEL

    state = DictState()
    addr = compute_contract_address(SUITE, ADMIN.public_key, "tok")
    _run_block(state, [(ADMIN, "contracts", "deploy", ["tok", TOKEN, [1000]])], 1)
    n = MAX_BLOCK_FUEL // 5_000_000 + 3
    receipts = _run_block(state, [(CLIENT, addr, "spin", [])] * 1 + [(ADMIN, addr, "spin", [])] * (n - 1), 2)
    spent = sum(r.fuel_used for r in receipts)
    assert spent <= MAX_BLOCK_FUEL
    assert all(r.status == STATUS_OUT_OF_FUEL for r in receipts)
    assert "budget" in receipts[-1].error and receipts[-1].fuel_used == 0
