"""A one-node chain of several organisations for the scenario apps' walkthroughs, driven through the real CLI."""

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


class OrgChain:
    """One validator node, several organisations (each with ``<org>-admin`` and ``<org>-client`` keys)."""

    def __init__(self, tmp_path: Path, orgs: tuple[str, ...], suite: str = "ed25519"):
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

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "qilian.cli", *args, "--node", self.node.url, "--home", str(self.home)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=self.home)
        if check:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    def refused(self, *args: str) -> str:
        p = self.cli(*args, check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        return " ".join((p.stdout + p.stderr).split())

    def get(self, path: str) -> Any:
        return httpx.get(self.node.url + path, timeout=30).json()


def out(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stdout + p.stderr).split())
