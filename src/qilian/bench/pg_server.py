"""A throwaway PostgreSQL server in a temporary directory, for the indexer's tests and ``qilian bench explorer``.

Why: the PostgreSQL backend is tested and measured against the real server, never a stand-in; the server comes
from the distribution's package (Debian: ``postgresql``, binaries in ``/usr/lib/postgresql/<v>/bin``). It listens
on a free loopback port with trust authentication, owns nothing outside its directory, and is stopped (fast
shutdown) and deleted on exit. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` system
user (created by the package) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

START_TIMEOUT_S: Final = 60
"""Longest wait for the server to accept connections."""
STOP_TIMEOUT_S: Final = 30
"""Longest wait for a fast shutdown."""
RUN_AS_WHEN_ROOT: Final = "postgres"
"""The system user the server runs as when we are root."""


@dataclass(frozen=True, slots=True)
class PgServer:
    """A running throwaway server."""

    root: Path
    """Its directory (data, socket, log)."""
    port: int
    """Loopback TCP port."""
    user: str
    """Superuser name (trust authentication)."""

    def get_url(self, dbname: str = "postgres") -> str:
        """A libpq URL for one of its databases."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"


def get_pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server binaries, or None (the package is not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def get_unavailable_reason() -> str | None:
    """Why no throwaway server can start here (None: it can)."""
    if get_pg_bindir() is None:
        return "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS_WHEN_ROOT)
        except KeyError:
            return f"running as root and there is no {RUN_AS_WHEN_ROOT!r} user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'qilian[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_pg_server() -> Iterator[PgServer]:
    """Start a server (initdb + pg_ctl) in a fresh temporary directory; stop and delete it afterwards."""
    reason = get_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    bindir = get_pg_bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="qilian-pg-"))
    prefix: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        pw = pwd.getpwnam(RUN_AS_WHEN_ROOT)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix, user = ["runuser", "-u", RUN_AS_WHEN_ROOT, "--"], RUN_AS_WHEN_ROOT
    data, log = root / "data", root / "server.log"
    port = _free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                    "--locale=C", "--no-sync"], check=True, capture_output=True, timeout=START_TIMEOUT_S)
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off "
            f"-c max_connections=200 -c shared_buffers=128MB")
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                    "-t", str(START_TIMEOUT_S), "start"], check=True, capture_output=True,
                   timeout=START_TIMEOUT_S + 10)
    try:
        yield PgServer(root, port, user)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "-t", str(STOP_TIMEOUT_S), "stop"], capture_output=True, timeout=STOP_TIMEOUT_S + 10)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: PgServer, name: str) -> str:
    """Create an empty database on the server; its URL."""
    import psycopg

    with psycopg.connect(server.get_url(), autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return server.get_url(name)
