"""Every command, given an ordinary mistake, prints one error line naming the problem — never a traceback — and
process safety of `up`/`down`/`node start` (one process per home; a stale PID is never signalled)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from tests.integration.conftest import NodeProc, free_port


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("QILIAN_DEBUG", "QILIAN_KEY_PASSWORD")}
    return subprocess.run([sys.executable, "-m", "qilian.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={**base, "COLUMNS": "200", **(env or {})}, stdin=subprocess.DEVNULL,
                          cwd=cwd)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-errors")
    one = root / "one"
    assert run("init", "--home", str(one), "--suite", "ed25519", "--port", str(free_port())).returncode == 0
    two = root / "two"
    assert run("init", "--home", str(two), "--suite", "ed25519", "--orgs", "alpha,beta").returncode == 0
    enc = root / "enc"
    r = run("init", "--home", str(enc), "--suite", "ed25519", "--password-env", "PW", env={"PW": "s3cret"})
    assert r.returncode == 0, r.stderr
    (root / "latin1.py").write_bytes("# caf\xe9\n".encode("latin-1"))
    (root / "adir.py").mkdir()
    (root / "notgenesis.json").write_text('{"hello": 1}')
    (root / "good.py").write_text("@export\ndef f():\n    return 1\n")
    old = root / "old"  # a node home whose data directory holds the store-v1 LMDB layout
    assert run("init", "--home", str(old), "--suite", "ed25519", "--port", str(free_port())).returncode == 0
    (old / "data").mkdir(exist_ok=True)
    env = lmdb.open(str(old / "data"), max_dbs=16)
    meta = env.open_db(b"meta")  # before the write transaction: open_db inside one waits for itself
    with env.begin(write=True) as txn:
        txn.put(b"genesis", b"v1", db=meta)
    env.close()
    return {"root": root, "one": one, "two": two, "enc": enc, "old": old}


DEAD = "http://127.0.0.1:9"  # discard port: nothing listens


def cases(h: dict[str, Path]) -> list[tuple[list[str], dict[str, str], str]]:
    """(argv, env, a phrase the one-line error must contain)."""
    r, one = h["root"], str(h["one"])
    return [
        (["tx", "send", "kv", "put", "a", "b", "--home", one, "--node", DEAD], {}, "cannot reach the node"),
        (["tx", "send", "kv", "put", "a", "b", "--home", one, "--node", "localhost:18545"], {}, "with the scheme"),
        (["block", "get", "--node", DEAD], {}, "cannot reach the node"),
        (["state", "get", "kv", "x", "--node", DEAD, "--home", one], {}, "cannot reach the node"),
        (["tx", "get", "ab", "--node", DEAD, "--home", one], {}, "cannot reach the node"),
        (["contract", "query", "evidence", "get", "--node", DEAD], {}, "cannot reach the node"),
        (["contract", "deploy", str(r / "missing.py"), "--home", one, "--node", DEAD], {}, "no such file"),
        (["contract", "deploy", str(r / "latin1.py"), "--home", one, "--node", DEAD], {}, "not UTF-8"),
        (["contract", "deploy", str(r / "adir.py"), "--home", one, "--node", DEAD], {}, "is a directory"),
        (["contract", "call", "evidence", "get", "int:x", "--home", one, "--node", DEAD], {}, "int:"),
        (["contract", "call", "evidence", "get", "json:{bad", "--home", one, "--node", DEAD], {}, "not JSON"),
        (["contract", "query", "evidence", "get", "0xZZ", "--node", DEAD], {}, "hex digits"),
        (["contract", "upgrade", "evidence", str(r / "missing.py"), "--home", one, "--node", DEAD], {},
         "no such file"),
        (["evidence", "check", str(r / "missing.json")], {}, "missing.json"),
        (["evidence", "put", str(r / "missing.pdf"), "--home", one, "--node", DEAD], {}, "cannot reach the node"),
        (["tx", "get", "ab", "--node", DEAD, "--genesis", str(r / "notgenesis.json")], {}, "cannot reach"),
        (["verify-ledger", "--home", str(r / "nothing")], {}, "neither a node home"),
        (["init", "--home", "/proc/nope/x"], {}, ""),
        (["init", "--home", str(r / "p"), "--port", "70000"], {}, "65535"),
        (["keys", "show", str(r / "good.py")], {}, "key"),
        (["keys", "show", str(r / "missing.pem")], {}, "no key file"),
        (["tx", "send", "kv", "put", "a", "b", "--home", str(h["two"]), "--node", DEAD], {}, "several client keys"),
        (["tx", "send", "kv", "put", "a", "b", "--home", str(h["enc"]), "--node", DEAD], {}, "QILIAN_KEY_PASSWORD"),
        (["contract", "deploy", str(r / "good.py"), "--home", str(h["enc"]), "--node", DEAD], {},
         "QILIAN_KEY_PASSWORD"),
        (["tx", "send", "kv", "put", "a", "b", "--home", str(h["enc"]), "--node", DEAD],
         {"QILIAN_KEY_PASSWORD": "wrong"}, "wrong password"),
        (["node", "start", "--home", str(h["enc"])], {}, "QILIAN_KEY_PASSWORD is not set"),
        (["node", "start", "--home", str(h["enc"])], {"QILIAN_KEY_PASSWORD": "wrong"}, "wrong QILIAN_KEY_PASSWORD"),
        (["down", "--home", str(r / "nothing")], {}, "no running network"),
        (["verify-ledger", "--home", str(h["old"])], {}, "resync from peers"),
        (["indexer", "--home", str(h["old"]), "--once"], {}, "resync from peers"),
        (["node", "start", "--home", str(h["old"])], {}, "resync from peers"),
    ]


def test_no_command_shows_a_traceback(homes: dict[str, Path]) -> None:
    failures = []
    for argv, env, phrase in cases(homes):
        out = run(*argv, env=env)
        text = out.stdout + out.stderr
        if out.returncode == 0 or "Traceback" in text or phrase not in text:
            failures.append(f"qilian {' '.join(argv)} → {out.returncode}\n{text[-800:]}")
    assert not failures, "\n\n".join(failures)


def test_encrypted_key_works_with_the_env_password(homes: dict[str, Path]) -> None:
    """The same encrypted key signs once QILIAN_KEY_PASSWORD is set (the failure is then only the dead node)."""
    out = run("tx", "send", "kv", "put", "a", "b", "--home", str(homes["enc"]), "--node", DEAD,
              env={"QILIAN_KEY_PASSWORD": "s3cret"})
    assert out.returncode == 1 and "cannot reach the node" in out.stderr, out.stderr


def test_debug_env_shows_the_traceback(homes: dict[str, Path]) -> None:
    out = run("block", "get", "--node", DEAD, env={"QILIAN_DEBUG": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb"])
def test_one_process_per_home(tmp_path: Path, engine: str) -> None:
    home = tmp_path / "h"
    port = free_port()
    assert run("init", "--home", str(home), "--suite", "ed25519", "--port", str(port)).returncode == 0
    with (home / "node.toml").open("a") as f:
        f.write(f'\n[store]\nengine = "{engine}"\n')
    node = NodeProc(home, port)
    node.start()
    try:
        second = run("node", "start", "--home", str(home), "--port", str(free_port()))
        assert second.returncode == 1, second.stderr
        assert "already served by another node process" in second.stderr
        assert f"pid {node.proc.pid}" in second.stderr  # type: ignore[union-attr]
        assert "Traceback" not in second.stderr
        # RocksDB admits one writer process: an offline tool is told the node holds it. LMDB readers share the
        # file with the running node (each read transaction is one committed block). The indexer reads beside
        # the node on both (on RocksDB as a secondary instance).
        offline = run("verify-ledger", "--home", str(home))
        if engine == "rocksdb":
            assert offline.returncode == 1 and "is the node running?" in offline.stderr, offline.stderr
        else:
            assert offline.returncode == 0 and "verified" in offline.stdout, offline.stderr
        assert "Traceback" not in offline.stderr
        beside = run("indexer", "--home", str(home), "--once")
        assert beside.returncode == 0, beside.stderr
        assert node.is_alive()
    finally:
        node.stop()


def test_down_never_signals_a_process_that_is_not_the_node(tmp_path: Path) -> None:
    """A stale pids file whose PID now belongs to another process: `down` leaves that process alone."""
    home = tmp_path / "h"
    assert run("init", "--home", str(home), "--suite", "ed25519", "--port", str(free_port())).returncode == 0
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (home / "pids").write_text(f'[{{"name": "node0", "pid": {sleeper.pid}, "api": "http://127.0.0.1:1"}}]')
        out = run("down", "--home", str(home))
        assert out.returncode == 1 and "Traceback" not in out.stderr
        with pytest.raises(subprocess.TimeoutExpired):
            sleeper.wait(0.5)  # still running: `down` sent it nothing
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait(5)
