"""Real node processes on loopback for integration and fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from qilian.node.config import init_home, load_genesis
from qilian.sdk.keys import KeyPair, load_key
from qilian.types.core import ChainParams, Genesis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProc:
    """A node process started from a home directory."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    python: str | None = None
    """The interpreter to run the node with (default: this test's)."""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.home / "node.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [self.python or sys.executable, "-m", "qilian.cli.main", "node", "start", "--home", str(self.home),
             "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/status", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node did not come up:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Chain:
    home: Path
    node: NodeProc
    genesis: Genesis
    client_key: KeyPair
    admin_key: KeyPair


def make_chain(tmp_path: Path, suite: str = "ed25519", interval_ms: int = 200) -> Chain:
    home = tmp_path / "home"
    port = free_port()
    init_home(home, chain_id="test-chain", suite_name=suite, organisations=("org1", "org2"), api_port=port,
              params=ChainParams(block_interval_ms=interval_ms))
    return Chain(home, NodeProc(home, port), load_genesis(home / "genesis.json"),
                 load_key(home / "keys" / "org1-client.pem"), load_key(home / "keys" / "org2-admin.pem"))


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = make_chain(tmp_path)
    c.node.start()
    try:
        yield c
    finally:
        c.node.stop()
