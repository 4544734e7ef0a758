"""The fault classes of issue 12, closed by construction: every case in hostile_cases.py gives exactly its expected
error code (or deploy rule), the error text is composed by the runtime (``[code] line N: …``, never interpreter
text, reprs or addresses), a failing transaction leaves state untouched and the block's inputs unmodified, and the
outcomes — error strings and fuel — are the same under any PYTHONHASHSEED and, where available, other CPythons."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qilian.contracts import (
    ContractRejected,
    MemoryState,
    Runtime,
    compile_contract,
    compute_deploy_fuel,
    sandbox_run,
)
from qilian.contracts.runtime import Context, ErrorCode
from tests.interpreters import get_python

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "unit"))
from hostile_cases import CASES, Case

FUEL = 5_000_000
ERROR_TEXT = re.compile(r"^\[([a-z_]+)\] (line [0-9]+: )?[ -~\u00a0-\uffff]*$")


def _run(case: Case) -> tuple[object, ...]:
    out = sandbox_run(case.source, args=case.args, fuel=FUEL)
    return out.ok, out.value, out.error, out.code, out.fuel_used


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case_has_its_precise_outcome(case: Case) -> None:
    if case.rule is not None:
        with pytest.raises(ContractRejected) as ei:
            compile_contract(case.source)
        assert ei.value.rule == case.rule
        return
    ok, value, error, code, fuel = _run(case)
    if case.code is None:
        assert ok, error
        assert value == case.value
        return
    assert not ok and code == case.code, (error, code)
    assert error is not None and ERROR_TEXT.match(error), error
    assert code in {c.value for c in ErrorCode}
    for leak in ("0x", "<", "object at", "Traceback", "/", "\\", "ormsgpack", "qilian"):
        assert leak not in error, error
    assert len(error) <= 300
    assert 0 < fuel <= FUEL


def test_assertion_messages_are_bounded_plain_text() -> None:
    by_name = {c.name: c for c in CASES}
    huge = sandbox_run(by_name["assert-huge-message"].source)
    assert huge.error == "[assertion] line 3: " + "m" * 200
    obj = sandbox_run(by_name["assert-ctx-object"].source)
    assert obj.error == "[assertion] line 3: assertion failed"
    key = sandbox_run(by_name["keyerror-function-repr"].source)
    assert key.error == "[type] line 3: dict keys are str, int, bytes, bool or None, not function"


def test_arguments_and_events_are_copies() -> None:
    """A contract that mutates its arguments, or an event's data after emit(), changes nothing the node holds."""
    src = ("@export\ndef attack(x):\n    x.append(1)\n    x[0].append(2)\n    emit('E', x)\n    x.append(3)\n"
           "    return x\n")
    args = [[["a"]]]
    before = json.dumps(args)
    out = sandbox_run(src, args=tuple(args))
    assert out.ok and json.dumps(args) == before
    assert out.events[0][2] == [["a", 2], 1] and out.value == [["a", 2], 1, 3]


def test_failed_call_leaves_state_and_block_inputs_unchanged() -> None:
    from test_contracts_runtime import ADMIN, SUITE, DictState, _run_block  # type: ignore[import-not-found]

    from qilian.execution.contracts import compute_contract_address

    src = ("h = Hash(default=[])\n@export\ndef init():\n    h['a'] = [1]\n@export\ndef attack(x):\n"
           "    x.append(9)\n    h['a'] = x\n    v = h['b']\n    v.append(1)\n    emit('E', x)\n"
           "    assert False, 'no'\n")
    state = DictState()
    addr = compute_contract_address(SUITE, ADMIN.public_key, "hx")
    (dep,) = _run_block(state, [(ADMIN, "contracts", "deploy", ["hx", src, []])], 1)
    assert dep.status == 0 or dep.error == "", dep
    snapshot = dict(state.values)
    args: list[object] = [[1, 2]]
    (r,) = _run_block(state, [(ADMIN, addr, "attack", args)], 2)
    assert r.error == "[assertion] line 12: no" and r.fuel_used > 0
    assert state.values == snapshot
    assert args == [[1, 2]]


def test_fuel_tracks_straight_line_code_and_compilation() -> None:
    one = "@export\ndef attack():\n    x = 0\n    for i in range(1000):\n        x = i\n    return x\n"
    many = one.replace("        x = i\n", "        x = i\n" * 40)
    f1, f40 = sandbox_run(one).fuel_used, sandbox_run(many).fuel_used
    assert f40 - compute_deploy_fuel(many) > 8 * (f1 - compute_deploy_fuel(one))
    assert compute_deploy_fuel(many) > compute_deploy_fuel(one) > 1000
    # A warm compile cache does not make the first use of a contract in a runtime cheaper.
    compiled = compile_contract(one)
    ctx = Context("", "", 0, 0, "", "a", "")
    firsts = []
    for _ in range(2):
        rt = Runtime(MemoryState(), lambda a: compiled, lambda b: b)
        firsts.append(rt.run_call("a", "attack", [], ctx, FUEL).fuel_used)
        again = rt.run_call("a", "attack", [], ctx, FUEL).fuel_used
        assert firsts[-1] - again == compiled.load_fuel
    assert firsts[0] == firsts[1]


_CHILD = r"""
import json, sys
sys.path.insert(0, {here!r})
from hostile_cases import CASES
from qilian.contracts import ContractRejected, sandbox_run
out = {{}}
for c in CASES:
    try:
        r = sandbox_run(c.source, args=c.args, fuel=5_000_000)
        out[c.name] = [r.ok, r.error, r.fuel_used, repr(r.value)[:200], [repr(e) for e in r.events][:3]]
    except ContractRejected as exc:
        out[c.name] = ["rejected", str(exc)]
print(json.dumps(out, sort_keys=True))
"""


def _outcomes(python: str, seed: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    p = subprocess.run([python, "-c", _CHILD.format(here=str(Path(__file__).parent))], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return dict(json.loads(p.stdout))


def test_outcomes_identical_under_hash_seeds() -> None:
    results = [_outcomes(sys.executable, seed) for seed in ("0", "1", "random")]
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_outcomes_identical_under_other_cpythons(version: str) -> None:
    python = get_python(version)
    if python is None:
        pytest.skip(f"no CPython {version} venv with the project installed (.ci/run makes .venv-py{version[2:]})")
    assert _outcomes(python, "0") == _outcomes(sys.executable, "0")
