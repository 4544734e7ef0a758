"""A real four-organisation chain (one validator node process) driven through the real ``qilian`` CLI, for the
scenario apps' end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qilian.node.config import init_home
from qilian.types.core import ChainParams

from .conftest import NodeProc, free_port

ORGS = ("farm", "processor", "distributor", "retailer")


class AppNet:
    """A chain home with a running node; ``cli`` runs ``python -m qilian.cli`` against it."""

    def __init__(self, tmp_path: Path, chain_id: str = "apps-chain"):
        self.home = tmp_path / "home"
        port = free_port()
        init_home(self.home, chain_id=chain_id, suite_name="ed25519", organisations=ORGS, api_port=port,
                  params=ChainParams(block_interval_ms=200))
        self.node = NodeProc(self.home, port)
        self.cwd = tmp_path

    def key(self, name: str) -> str:
        return str(self.home / "keys" / f"{name}.pem")

    def cli(self, *args: str, check: bool = True, node: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
               "QILIAN_OUTPUT": "json"}
        cmd = [sys.executable, "-m", "qilian.cli", *args]
        if node:
            cmd += ["--node", self.node.url]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=self.cwd)
        if check:
            assert p.returncode == 0, p.stdout + p.stderr
        return p


def flat(p: subprocess.CompletedProcess[str]) -> str:
    """A command's output on one line (rich wraps long lines)."""
    return " ".join((p.stdout + p.stderr).split())
