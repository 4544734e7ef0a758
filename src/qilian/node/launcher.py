"""Start and stop a local network's node processes (``qilian up`` / ``qilian down``).

Each node runs as its own process (``python -m qilian.cli.main node start --home rootI``) writing ``node.log`` in its
home; their PIDs go to ``root/pids`` so ``qilian down`` can stop a detached network from another shell."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from qilian.node.config import load_config, load_network

LOG_TAIL_LINES = 15
"""How many last lines of a failed node's log ``qilian up`` shows."""
STOP_GRACE_S = 15.0
"""How long ``down`` waits for a node to stop on SIGTERM before SIGKILL (a commit in flight finishes first)."""


@dataclass(frozen=True)
class Launched:
    """A started node."""

    name: str
    pid: int
    api: str
    home: Path


def get_node_homes(root: Path) -> list[Path]:
    """Homes of the nodes of a network directory (or the directory itself for a one-node home)."""
    if (root / "network.toml").exists():
        return [root / n["home"] for n in load_network(root)["nodes"]]
    return [root]


def start_network(root: Path, detach: bool) -> list[tuple[Launched, subprocess.Popen[bytes]]]:
    """Start every node of ``root``; record their PIDs."""
    out = []
    for home in get_node_homes(root):
        cfg = load_config(home)
        proc = start_node(home, detach)
        out.append((Launched(cfg.name, proc.pid, f"http://{cfg.api_host}:{cfg.api_port}", home), proc))
    (root / "pids").write_text(json.dumps([{"name": launched.name, "pid": launched.pid, "api": launched.api}
                                           for launched, _ in out]))
    return out


def start_node(home: Path, detach: bool) -> subprocess.Popen[bytes]:
    """Start one node process of ``home`` (its log appended to ``home/node.log``); also how a run restarts a
    node it killed."""
    log = open(home / "node.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "qilian.cli.main", "node", "start", "--home", str(home)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=detach, cwd=home,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def get_status(api: str) -> dict[str, object] | None:
    """A node's /status, or None if it does not answer."""
    try:
        r = httpx.get(api + "/status", timeout=1.0)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def wait_for_blocks(apis: list[str], procs: list[subprocess.Popen[bytes]], timeout_s: float) -> bool:
    """True once every node answers and all have committed a first block (or a running chain moved on)."""
    deadline = time.monotonic() + timeout_s
    first: dict[str, int] = {}
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        heights = []
        for a in apis:
            st = get_status(a)
            heights.append(None if st is None else int(st["height"]))  # type: ignore[call-overload]
        if all(h is not None for h in heights):
            for a, h in zip(apis, heights, strict=True):
                first.setdefault(a, h)  # type: ignore[arg-type]
            if all(h is not None and h >= 1 and h > first[a] - 1 for a, h in zip(apis, heights, strict=True)):
                return True
        time.sleep(0.1)
    return False


def get_process_cmdline(pid: int) -> list[str] | None:
    """The command line of a live process (Linux /proc), or None if there is none or it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_node_process(pid: int, home: Path) -> bool:
    """Whether ``pid`` is a ``qilian node start`` of ``home`` — checked before any signal is sent, so a recycled
    PID (a stale ``pids`` file) never kills an unrelated process."""
    argv = get_process_cmdline(pid)
    if not argv:
        return False
    try:
        i = argv.index("--home")
    except ValueError:
        return False
    if "node" not in argv or "start" not in argv or i + 1 >= len(argv):
        return False
    return Path(argv[i + 1]).resolve() == home.resolve()


def read_pids(root: Path) -> list[dict[str, object]]:
    """The recorded nodes of ``root`` (empty when there is no readable ``pids`` file)."""
    try:
        entries = json.loads((root / "pids").read_text())
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("pid"), int)]


def get_running_nodes(root: Path) -> list[str]:
    """Names of the recorded nodes of ``root`` that are still running (as nodes of that home)."""
    homes = {get_node_home_by_name(root, str(e.get("name"))): e for e in read_pids(root)}
    return [str(e["name"]) for h, e in homes.items() if h is not None and is_node_process(int(e["pid"]), h)]  # type: ignore[call-overload]


def get_node_home_by_name(root: Path, name: str) -> Path | None:
    """The home of the node called ``name`` in the network of ``root``."""
    for home in get_node_homes(root):
        with contextlib.suppress(OSError, ValueError, KeyError):
            if load_config(home).name == name:
                return home
    return None


def get_log_tail(home: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a node's log, for an error message."""
    try:
        data = (home / "node.log").read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def stop_network(root: Path) -> list[str]:
    """SIGTERM every recorded node that is still a node of this network, SIGKILL after STOP_GRACE_S; returns the
    names stopped. An entry whose PID now belongs to another process is skipped (and dropped with the file)."""
    path = root / "pids"
    if not path.exists():
        return []
    entries = []
    for e in read_pids(root):
        home = get_node_home_by_name(root, str(e.get("name")))
        if home is not None and is_node_process(int(e["pid"]), home):  # type: ignore[call-overload]
            entries.append(e)
    stopped = []
    for e in entries:
        with contextlib.suppress(ProcessLookupError):
            os.kill(e["pid"], signal.SIGTERM)  # type: ignore[arg-type]
            stopped.append(str(e["name"]))
    deadline = time.monotonic() + STOP_GRACE_S
    for e in entries:
        pid = int(e["pid"])  # type: ignore[call-overload]
        while time.monotonic() < deadline and _is_running(pid):
            time.sleep(0.1)
        if _is_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return stopped


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True
