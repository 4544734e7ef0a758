"""The rule of the house: the pure core (types, crypto, state, execution, mempool) does no IO.

Time and randomness come in as arguments; that is what lets the simulator and verify-ledger run the very same
rules the node runs. This test parses every module of the core and fails on a forbidden import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "qilian"
PURE = ("types", "crypto", "state", "execution", "contracts", "consensus", "mempool", "sim")
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "secrets", "datetime",
             "logging", "signal", "selectors", "multiprocessing"}
FORBIDDEN_QILIAN = ("qilian.storage", "qilian.p2p.transport", "qilian.p2p.tls", "qilian.node", "qilian.api",
                    "qilian.cli", "qilian.sdk")
"""qilian.p2p.messages (the wire types, pure) is allowed: the shell and the simulator judge real messages."""
SHELL = "shell"
"""The node shell: pure like the core (its IO is behind ports) except that it may log."""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _pure_files() -> list[Path]:
    return [p for pkg in PURE if (SRC / pkg).is_dir() for p in sorted((SRC / pkg).rglob("*.py"))]


def test_there_is_a_pure_core_to_check() -> None:
    assert len(_pure_files()) >= 8


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = [
        f"line {line}: import {name}"
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN or name.startswith(FORBIDDEN_QILIAN)
    ]
    assert not bad, f"{path.relative_to(SRC)} imports IO: {bad}"


@pytest.mark.parametrize("path", sorted((SRC / SHELL).rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_shell_module_does_io_only_through_ports(path: Path) -> None:
    bad = [
        f"line {line}: import {name}"
        for line, name in _imports(path)
        if (name.split(".")[0] in FORBIDDEN and name != "logging") or name.startswith(FORBIDDEN_QILIAN)
    ]
    assert not bad, f"{path.relative_to(SRC)} imports IO: {bad}"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom time import time\nfrom qilian.node.node import Node\nimport hashlib\n")
    names = [n for _, n in _imports(f)]
    assert [n for n in names if n.split(".")[0] in FORBIDDEN or n.startswith(FORBIDDEN_QILIAN)] == [
        "os", "time", "qilian.node.node"]
