"""Copyright end to end on a real four-organisation chain through the CLI: a work registered, its rights
transferred twice and licensed; the registration certificate names the holder proven by the replayed transfer
chain, checks offline and fails when tampered with; the same content registered by another organisation is a
later claim naming the first; a dispute blocks transfers until cleared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .apputil import OrgChain
from .apputil import out as flat

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[OrgChain]:
    n = OrgChain(tmp_path)
    n.node.start()
    try:
        yield n
    finally:
        n.node.stop()


def test_copyright_register_transfer_chain_certificate(net: OrgChain, tmp_path: Path) -> None:
    song = tmp_path / "song.flac"
    song.write_bytes(b"fLaC" + bytes(range(256)) * 40)
    farm, proc, dist = (net.key(f"{o}-client") for o in ("farm", "processor", "distributor"))
    p = net.cli("copyright", "register", str(song), "--title", "Song of Qilian", "--author", "Li Bai", "--author",
                "Du Fu", "--licence", "cc-by", "--created", "2025-04-01", "--key", farm)
    assert "registered QC-00000001" in flat(p)
    p = net.cli("copyright", "register", str(song), "--title", "x", "--author", "y", "--licence", "gpl",
                "--key", farm, check=False)
    assert p.returncode == 1 and "licence terms 'gpl' is not one of" in flat(p)

    p = net.cli("copyright", "transfer", "QC-00000001", "--to", "distributor", "--key", proc, check=False)
    assert p.returncode == 1 and "held by farm; only a key of the holder" in flat(p)
    net.cli("copyright", "transfer", "QC-00000001", "--to", "processor", "--note", "contract 7", "--key", farm)
    net.cli("copyright", "license", "1", "--to", "retailer", "--exclusive", "--territory", "CN", "--key", proc)
    p = net.cli("copyright", "license", "1", "--to", "farm", "--territory", "worldwide", "--key", proc, check=False)
    assert p.returncode == 1 and "conflicts with the exclusive grant to retailer" in flat(p)
    net.cli("copyright", "transfer", "1", "--to", "distributor", "--key", proc)

    # the same content from another organisation: recorded as a later claim, never silently first
    p = net.cli("copyright", "register", str(song), "--title", "My song", "--author", "Someone", "--key",
                net.key("retailer-client"))
    assert "QC-00000002 as a LATER CLAIM" in flat(p) and "QC-00000001" in flat(p)

    # a dispute (an admin, by default policy) blocks transfers until it is cleared
    net.cli("copyright", "dispute", "1", "--reason", "plagiarism claim 17", "--key", net.key("retailer-admin"))
    p = net.cli("copyright", "transfer", "1", "--to", "farm", "--key", dist, check=False)
    assert p.returncode == 1 and "is disputed (plagiarism claim 17)" in flat(p)
    net.cli("copyright", "dispute", "1", "--clear", "withdrawn", "--key", net.key("retailer-admin"))

    show = json.loads(net.cli("copyright", "show", "QC-00000001").stdout)
    assert show["holder"] == "distributor" and show["registrant"] == "farm"

    cert = tmp_path / "cert.json"
    net.cli("copyright", "certificate", "1", "--out", str(cert))
    p = net.cli("copyright", "check", str(cert), "--genesis", str(net.home / "genesis.json"), node=False)
    out = flat(p)
    assert "VALID" in out and "registered by farm" in out and "holder distributor" in out
    assert "transfer farm → processor" in out and "transfer processor → distributor" in out
    later = tmp_path / "later.json"
    net.cli("copyright", "certificate", "QC-00000002", "--out", str(later))
    assert "LATER CLAIM after QC-00000001" in flat(net.cli("copyright", "check", str(later), node=False))

    # a certificate whose history is cut short (the last transfer left out) no longer checks
    doc = json.loads(cert.read_text())
    doc["work"]["events"] = doc["work"]["events"][:-1]
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(doc))
    p = net.cli("copyright", "check", str(cut), node=False, check=False)
    assert p.returncode == 2 and "INVALID" in p.stdout and "history entries" in flat(p)

    r = httpx.get(f"{net.node.url}/copyright/works/QC-x")
    assert r.status_code == 400 and "QC-00000042" in r.json()["message"]
    assert httpx.get(f"{net.node.url}/copyright/works/99").status_code == 404
