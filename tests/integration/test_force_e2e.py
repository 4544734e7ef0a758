"""G3: ``validator add --force`` — the stall the docs predict, and the resume.

Four validators of power 1, one of them down (3 of 4 power still commit). Proposing a fifth, unreachable node is
refused by the CLI ("does not answer"). With ``--force`` the CLI warns that the live validators hold 3 of the new
set's 5 power — not more than 2/3 — and the change is voted through: block decided + 1 still commits (the old set
signs it), then the chain stalls at decided + 2, as docs/governance.md ("Forcing a change") predicts. When the
forced node starts (an observer from genesis: it syncs through the stall's last block) and signs, the chain
resumes; every node agrees on every block, and no acknowledged transaction is lost."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qilian.bench.join import get_signers, wait_until
from qilian.node.config import load_genesis
from qilian.sdk.keys import load_key
from qilian.types.core import ValidatorSet
from qilian.types.genesis_json import genesis_to_json

from .netutil import Load, audit, make_net

pytestmark = pytest.mark.timeout(300)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "qilian.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def _out(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stdout + p.stderr).split())


def test_g3_forced_validator_stalls_the_chain_until_it_catches_up(tmp_path: Path) -> None:
    net = make_net(tmp_path, n=5)
    genesis = load_genesis(net.root / "genesis.json")
    node4_key = net.nodes[4].home / "keys" / "node4.pem"
    node4 = load_key(node4_key, None)
    genesis = dataclasses.replace(genesis, validators=ValidatorSet(tuple(
        v for v in genesis.validators.validators if v.public_key != node4.public_key)))
    text = genesis_to_json(genesis)
    for path in [net.root / "genesis.json", *(n.home / "genesis.json" for n in net.nodes)]:
        path.write_text(text)
    admin1, admin2 = str(net.root / "keys" / "org1-admin.pem"), str(net.root / "keys" / "org2-admin.pem")
    up = net.nodes[:3]  # node3 (a genesis validator) stays down; node4 is the candidate
    url = up[0].url
    load = Load(net, threads=1)
    try:
        for n in up:
            n.start()
        load.start()
        load.wait_acked(5, 60)

        p = _cli(net.root, "validator", "add", str(node4_key), "--candidate", net.nodes[4].url, "--out", "v.json",
                 "--node", url)
        assert p.returncode != 0 and "does not answer" in _out(p), _out(p)

        p = _cli(net.root, "validator", "add", str(node4_key), "--force", "--out", "v.json", "--propose", "--key",
                 admin1, "--node", url)
        assert p.returncode == 0, _out(p)
        assert "hold 3 of the new set's 5 voting power" in _out(p) and "stalls" in _out(p), _out(p)
        p = _cli(net.root, "gov", "vote", "1", "yes", "--key", admin2, "--node", url)
        assert "proposal 1: executed" in _out(p), _out(p)
        decided = int(httpx.get(url + "/gov/proposals/1").json()["proposal"]["decided"])

        # the predicted stall: decided + 1 commits (old set), decided + 2 cannot (3 of 5 < 2/3)
        net.wait_height(up, decided + 1, 30)
        time.sleep(8)
        heights = [net.height(n) for n in up]
        assert heights == [decided + 1] * 3, heights
        acked = len(load.acked)
        time.sleep(3)
        assert len(load.acked) == acked and net.height(up[0]) == decided + 1

        # the forced node starts from genesis, syncs to the stalled tip and signs: the chain resumes
        t0 = time.monotonic()
        net.nodes[4].start()
        net.wait_height([*up, net.nodes[4]], decided + 4, 90)
        resumed_s = time.monotonic() - t0
        addr = node4.address.hex()
        assert addr in get_signers(url, decided + 2)  # 4 of 5 power: it had to sign
        wait_until("transactions to commit again", lambda: len(load.acked) > acked + 3, 60)
        print(f"G3: stalled at height {decided + 1}; resumed {resumed_s:.1f} s after the forced node started")
    finally:
        load.stop()
    audit(net, load.acked, [*up, net.nodes[4]])
    net.stop_all()
