"""The scenario apps' walkthrough harness: a chain of several organisations (one validator node) driven through the
real ``qilian`` CLI, and :func:`run_cli`, which the 4-validator walkthroughs use against each organisation's node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from qilian.node.config import init_home, load_genesis
from qilian.sdk.keys import load_key
from qilian.types.core import ChainParams, Genesis

from .conftest import NodeProc, free_port

ORGS = ("farm", "processor", "distributor", "retailer")
"""The walkthroughs' four organisations (farm → processor → distributor → retailer)."""


def run_cli(home: Path, node: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m qilian.cli ARGS`` as a user runs it: the chain home in QILIAN_HOME (keys, trusted genesis),
    ``--node`` appended when a node is given, JSON output (it is piped)."""
    env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "QILIAN_OUTPUT": "json", "QILIAN_HOME": str(home)}
    cmd = [sys.executable, "-m", "qilian.cli", *args, *(["--node", node] if node else [])]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=home.parent)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


class OrgChain:
    """One validator node, several organisations (each with ``<org>-admin`` and ``<org>-client`` keys)."""

    def __init__(self, tmp_path: Path, orgs: tuple[str, ...] = ORGS, suite: str = "ed25519"):
        self.home = tmp_path / "home"
        port = free_port()
        init_home(self.home, chain_id="apps-chain", suite_name=suite, organisations=orgs, api_port=port,
                  params=ChainParams(block_interval_ms=200))
        self.node = NodeProc(self.home, port)
        self.genesis: Genesis = load_genesis(self.home / "genesis.json")

    def key(self, name: str) -> str:
        return str(self.home / "keys" / f"{name}.pem")

    def addr(self, name: str) -> str:
        return load_key(Path(self.key(name))).address.hex()

    def cli(self, *args: str, check: bool = True, node: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command against this chain's node (``node=False``: an offline command)."""
        return run_cli(self.home, self.node.url if node else None, *args, check=check)

    def refused(self, *args: str) -> str:
        """A command the CLI refuses (exit 1); its output on one line."""
        p = self.cli(*args, check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        return out(p)

    def get(self, path: str) -> Any:
        return httpx.get(self.node.url + path, timeout=30).json()


def out(p: subprocess.CompletedProcess[str]) -> str:
    """A command's output on one line (rich wraps long lines)."""
    return " ".join((p.stdout + p.stderr).split())
