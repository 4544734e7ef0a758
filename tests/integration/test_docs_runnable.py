"""Every command block of README.md and docs/ marked ``<!-- runnable -->`` runs, in order, against a real local
network started the README's way (``qilian up --detach``), so the docs cannot drift from what the commands do.
Blocks marked ``<!-- runnable: after stop -->`` run after ``qilian down``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"<!-- runnable(?P<after>: after stop)? -->\n```bash\n(?P<body>.*?)```", re.S)


def get_runnable_blocks() -> list[tuple[str, bool, str]]:
    """(file, after_stop, script) for every marked block of README.md and docs/*.md."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        for m in MARK.finditer(path.read_text()):
            out.append((str(path.relative_to(ROOT)), bool(m.group("after")), m.group("body")))
    return out


def test_there_are_runnable_blocks() -> None:
    blocks = get_runnable_blocks()
    assert len(blocks) >= 3 and any(after for _, after, _ in blocks)


def test_runnable_docs_blocks(tmp_path: Path) -> None:
    qilian_bin = Path(sys.executable).parent / "qilian"
    if not qilian_bin.exists():
        pytest.skip("the qilian console script is not installed in this environment")
    home = tmp_path / "net"
    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "QILIAN_HOME": str(home), "QILIAN_NODE": f"http://127.0.0.1:{port}",
           "PATH": f"{qilian_bin.parent}:{os.environ.get('PATH', '')}", "COLUMNS": "200"}
    env.pop("QILIAN_DEBUG", None)

    def sh(script: str, what: str) -> None:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                             text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, f"{what} failed ({out.returncode}):\n{script}\n--- stdout\n{out.stdout[-3000:]}" \
                                    f"\n--- stderr\n{out.stderr[-3000:]}"

    sh(f"qilian up --detach --validators 2 --suite ed25519 --port {port} --p2p-port {free_port()}", "qilian up")
    stopped = False
    try:
        for name, after, body in get_runnable_blocks():
            if not after:
                sh(body, f"a runnable block of {name}")
        sh("qilian down", "qilian down")
        stopped = True
        for name, after, body in get_runnable_blocks():
            if after:
                sh(body, f"a runnable (after stop) block of {name}")
    finally:
        if not stopped:
            subprocess.run([str(qilian_bin), "down", "--home", str(home)], env=env, capture_output=True, timeout=60)
