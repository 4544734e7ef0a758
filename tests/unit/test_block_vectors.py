"""Execution outputs — receipts (status, fuel, error text), receipts roots and state writes — are byte-identical on
every supported CPython and under any hash seed, for a corpus built to differ (tests/vectors/block_corpus.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.interpreters import SUPPORTED, get_python

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
EXPECTED = json.loads((VECTORS / "blocks.json").read_text())
CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); from block_corpus import compute_corpus; "
         "print(json.dumps(compute_corpus()))")


def _in_child(python: str, seed: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    p = subprocess.run([python, "-c", CHILD, str(VECTORS)], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return list(json.loads(p.stdout))


def _diff(got: list[dict[str, Any]]) -> str:
    lines = []
    for a, b in zip(got, EXPECTED, strict=False):
        if a != b:
            lines.append(f"block {b['height']}: root {a['receipts_root'][:16]} vs {b['receipts_root'][:16]}")
            lines += [f"   {x} != {y}" for x, y in zip(a["receipts"], b["receipts"], strict=False) if x != y]
    return "\n".join(lines) + "\n(a consensus change? regenerate with python tests/vectors/make_block_vectors.py)"


def test_this_interpreter_reproduces_the_vectors() -> None:
    sys.path.insert(0, str(VECTORS))
    from block_corpus import compute_corpus  # type: ignore[import-not-found]

    got = compute_corpus()
    assert got == EXPECTED, _diff(got)


@pytest.mark.parametrize("seed", ["0", "1", "4242"])
def test_hash_seeds_do_not_change_the_vectors(seed: str) -> None:
    got = _in_child(sys.executable, seed)
    assert got == EXPECTED, _diff(got)


@pytest.mark.parametrize("version", [v for v in SUPPORTED if v != "3.11"])
def test_other_cpythons_reproduce_the_vectors(version: str) -> None:
    python = get_python(version)
    if python is None:
        pytest.skip(f"no CPython {version} venv with the project installed (.ci/run makes .venv-py{version[2:]})")
    got = _in_child(python, "0")
    assert got == EXPECTED, _diff(got)
