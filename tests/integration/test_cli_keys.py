"""`qilian keys` and `qilian init` from the command line, including password-protected keys read by openssl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qilian.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("suite", ["sm2", "ed25519"])
def test_keys_new_show_with_password(tmp_path: Path, suite: str) -> None:
    key = tmp_path / "k.pem"
    env = {"PW": "correct horse"}
    out = run("keys", "new", "--out", str(key), "--suite", suite, "--password-env", "PW", env=env)
    assert out.returncode == 0, out.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    shown = run("keys", "show", str(key), "--password-env", "PW", env=env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["suite"] == suite and doc["public_key"] in out.stdout
    wrong = run("keys", "show", str(key), "--password-env", "PW", env={"PW": "wrong"})
    assert wrong.returncode == 1 and "error" in wrong.stderr
    again = run("keys", "new", "--out", str(key), "--suite", suite)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    # The encrypted PKCS#8 file is standard: openssl reads it with the same password.
    o = subprocess.run(["openssl", "pkey", "-in", str(key), "-passin", "pass:correct horse", "-noout"],
                       capture_output=True, text=True)
    assert o.returncode == 0, o.stderr


def test_init_refuses_bad_input_and_existing_chain(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run("init", "--home", str(home), "--suite", "rsa").returncode == 1
    ok = run("init", "--home", str(home), "--suite", "ed25519", "--orgs", "port,bank")
    assert ok.returncode == 0, ok.stderr
    genesis = json.loads((home / "genesis.json").read_text())
    assert [o["name"] for o in genesis["organisations"]] == ["port", "bank"]
    assert len(genesis["validators"]) == 1
    dup = run("init", "--home", str(home))
    assert dup.returncode == 1 and "already holds a chain" in dup.stderr
