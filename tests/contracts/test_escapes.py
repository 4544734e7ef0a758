"""The hostile-contract corpus: every contract is refused at deploy (naming the line and rule) or fails safely
when run — never returning an interpreter object, never exhausting the machine.

Run-time cases execute in one child process with its address space limited (RLIMIT_AS), so a missing limit fails
this test instead of taking the machine down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qilian.contracts import ContractRejected, compile_contract, sandbox_run

CORPUS = Path(__file__).parent / "escapes"
FILES = sorted(CORPUS.glob("*.py"))
MEMORY_LIMIT = 2 * 1024**3
"""Address-space limit of the child running the run-time cases."""
PER_CASE_FUEL = 1_000_000

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from qilian.contracts import sandbox_run
out = {{}}
for path in sys.argv[1:]:
    src = open(path, encoding="utf-8").read()
    t0 = time.process_time()
    r = sandbox_run(src, fuel={fuel})
    out[path] = {{"ok": r.ok, "error": r.error, "value": repr(r.value)[:200], "fuel": r.fuel_used,
                  "cpu_s": round(time.process_time() - t0, 3)}}
print(json.dumps(out))
"""


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 60


def _refused_at_deploy(path: Path) -> ContractRejected | None:
    try:
        compile_contract(path.read_text(encoding="utf-8"))
    except ContractRejected as exc:
        return exc
    return None


@pytest.fixture(scope="module")
def runtime_results() -> dict[str, dict[str, object]]:
    runnable = [str(p) for p in FILES if _refused_at_deploy(p) is None]
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(limit=MEMORY_LIMIT, fuel=PER_CASE_FUEL),
                           *runnable], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_escape_is_refused_or_fails_safely(path: Path, runtime_results: dict[str, dict[str, object]]) -> None:
    exc = _refused_at_deploy(path)
    if exc is not None:
        assert exc.rule and str(exc).startswith(f"line {exc.line}:")
        return
    r = runtime_results[str(path)]
    assert r["ok"] is False, f"{path.name} ran to completion and returned {r['value']}"
    assert r["error"], path.name
    assert float(r["cpu_s"]) < 30, f"{path.name} took {r['cpu_s']} s of CPU"  # fuel, not the clock, stopped it


def test_a_benign_contract_in_the_same_form_runs() -> None:
    """The harness can tell success from failure: the same form, harmless, succeeds."""
    r = sandbox_run("@export\ndef attack():\n    return sum([i * i for i in range(10)])\n")
    assert r.ok and r.value == 285
