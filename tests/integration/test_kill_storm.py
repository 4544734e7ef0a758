"""SIGKILL a validator at random moments under load, many times (QILIAN_KILLS, default 25; the issue's acceptance
run used 200): every stored commit still passes check_commit (verify-ledger re-checks them all), the signer guard
never refuses the node's own next message, and nothing acknowledged is lost."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from qilian.sdk.client import Client

from .conftest import make_chain
from .test_node_lifecycle import _send_load

KILLS = int(os.environ.get("QILIAN_KILLS", "25"))
SEED = int(os.environ.get("QILIAN_KILL_SEED", "20261201"))


def test_kill_storm(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    chain = make_chain(tmp_path, interval_ms=50)
    acked: list[str] = []
    try:
        for round_ in range(KILLS):
            chain.node.start(timeout=60)
            height = Client(chain.node.url).get_status()["height"]
            stop = threading.Event()
            threads = [threading.Thread(target=_send_load, args=(chain.node.url, chain, stop, acked, height,
                                                                  f"k{round_}t{t}")) for t in range(2)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.02, 0.6))  # the kill point: anywhere in the commit/sign/WAL cycle
            chain.node.kill()
            stop.set()
            for t in threads:
                t.join(15)
        chain.node.start(timeout=60)
        c = Client(chain.node.url)
        lost = [h for h in acked if c.get_tx(h).get("hash") != h]
        assert not lost, f"{len(lost)} acknowledged transactions lost (seed {SEED})"
    finally:
        chain.node.stop()
    log = chain.node.log_path.read_text(errors="replace")
    assert "refusing to sign" not in log, f"the signer guard refused a correct node's message (seed {SEED})"
    out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(chain.home)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"seed {SEED}: {out.stdout}{out.stderr}"
    assert len(acked) > KILLS, f"only {len(acked)} transactions acknowledged over {KILLS} rounds"
