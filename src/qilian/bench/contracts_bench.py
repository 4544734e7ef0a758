"""``qilian bench contracts``: metered contract calls per second — a token transfer and an evidence registration —
and, when it can run here, the same transfer under xian-contracting (the Python contract engine of the Xian chain)
with its metering on.

Both engines are measured the same way: a contract deployed into an in-memory state, then N calls in a loop, each
with fresh metering; the figure is calls per second of wall time on one core. Ours goes through the real runtime
(validated, instrumented code; guarded built-ins; storage encode/decode; events); nothing is cached between calls
but the compiled code, as on a node."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qilian.contracts import MemoryState, Runtime, compile_contract
from qilian.contracts.runtime import Context
from qilian.contracts.system import EVIDENCE_SOURCE

TOKEN_SOURCE = '''
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
'''
"""The benchmark's token: the same logic as the xian transfer below."""

XIAN_TOKEN = '''
balances = Hash(default_value=0)

@construct
def seed():
    balances["alice"] = 10 ** 12

@export
def transfer(to: str, amount: int):
    assert amount > 0, "amount must be positive"
    b = balances[ctx.caller]
    assert b >= amount, "insufficient balance"
    balances[ctx.caller] = b - amount
    balances[to] += amount
'''

XIAN_SCRIPT = r"""
import json, sys, time
from contracting.client import ContractingClient
n = int(sys.argv[1])
c = ContractingClient(signer="alice", metering=True)
c.flush()
# Metering charges stamps to the signer's balance in the `currency` contract: fund it.
c.raw_driver.set("currency.balances:alice", 10 ** 15)
c.raw_driver.commit()
c.submit(sys.argv[2], name="con_token")
tok = c.get_contract("con_token")
for i in range(200):
    tok.transfer(to="bob", amount=1, stamps=10_000)
t0 = time.perf_counter()
for i in range(n):
    tok.transfer(to="bob" if i % 2 else "carol", amount=1, stamps=10_000)
dt = time.perf_counter() - t0
print(json.dumps({"calls_per_s": n / dt, "us_per_call": dt / n * 1e6}))
"""


@dataclass(frozen=True)
class ContractBenchRow:
    """One measured workload."""

    engine: str
    workload: str
    calls: int
    calls_per_s: float
    us_per_call: float
    fuel_per_call: int


def _measure(rt: Runtime, address: str, calls: list[tuple[str, list[Any], Context]]) -> tuple[float, int]:
    t0 = time.perf_counter()
    fuel = 0
    for method, args, ctx in calls:
        out = rt.run_call(address, method, args, ctx, 1_000_000)
        if not out.ok:
            raise RuntimeError(f"benchmark call failed: {out.error}")
        fuel = out.fuel_used
    return time.perf_counter() - t0, fuel


def run_contracts_bench(n: int = 20_000) -> list[ContractBenchRow]:
    """Our engine: token transfers and evidence registrations, metering on."""
    rows = []
    token = compile_contract(TOKEN_SOURCE)
    evidence = compile_contract(EVIDENCE_SOURCE)
    codes = {"tok": token, "evidence": evidence}
    rt = Runtime(MemoryState(), codes.get, lambda b: hashlib.sha256(b).digest())
    alice = "a1" * 20
    rt.run_call("tok", "init", [10**12], Context(alice, "org1", 1, 0, "", "tok", alice), 100_000)
    transfers = [("transfer", ["b0" * 20 if i % 2 else "c0" * 20, 1],
                  Context(alice, "org1", 2, 0, "", "tok", alice)) for i in range(n)]
    _measure(rt, "tok", transfers[:500])  # warm-up
    dt, fuel = _measure(rt, "tok", transfers)
    rows.append(ContractBenchRow("qilian", "token transfer", n, n / dt, dt / n * 1e6, fuel))
    regs = [("register", [hashlib.sha256(i.to_bytes(8, "big")).digest(), f"document {i}", "contract", ""],
             Context(alice, "org1", 3, 0, f"{i:064x}", "evidence", alice)) for i in range(n)]
    dt, fuel = _measure(rt, "evidence", regs)
    rows.append(ContractBenchRow("qilian", "evidence register", n, n / dt, dt / n * 1e6, fuel))
    return rows


def run_xian_bench(python: Path, n: int = 5_000) -> ContractBenchRow | str:
    """xian-contracting's metered transfer in another interpreter; a reason string if it cannot run."""
    if not python.exists():
        return f"no interpreter at {python}"
    try:
        p = subprocess.run([str(python), "-c", XIAN_SCRIPT, str(n), XIAN_TOKEN], capture_output=True, text=True,
                           timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run: {exc}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return f"did not run: {last[:200]}"
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    return ContractBenchRow("xian-contracting", "token transfer", n, doc["calls_per_s"], doc["us_per_call"], 0)
