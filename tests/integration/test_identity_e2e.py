"""Digital identity on a real chain of two organisations (a university and a company; one validator node),
through the real CLI: DIDs with SM2 and Ed25519 keys, resolution proven against genesis, key rotation, a degree
credential verified offline from a proof bundle, revocation on chain, and the refusals users meet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.sdk.keys import generate_key, save_key

from .apputil import OrgChain, out

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[OrgChain]:
    c = OrgChain(tmp_path, ("uni", "corp"))
    c.node.start()
    try:
        yield c
    finally:
        c.node.stop()


def tick(c: OrgChain) -> None:
    """One more block, so the state of the last one is committed in a header (proofs are one block behind)."""
    c.cli("tx", "send", "kv", "put", "tick", "tock", "--key", c.key("corp-client"))


def test_identity_walkthrough(chain: OrgChain, tmp_path: Path) -> None:
    c = chain
    for name, suite in (("uni-did", "sm2"), ("uni-did-2", "ed25519"), ("stranger", "ed25519")):
        save_key(generate_key(suite), tmp_path / f"{name}.pem")
    uni_key, new_key, stranger = (str(tmp_path / f"{n}.pem") for n in ("uni-did", "uni-did-2", "stranger"))

    did = c.cli("did", "create", "--did-key", uni_key, "--key", c.key("uni-client")).stdout.strip()
    assert did.startswith("did:qilian:")
    tick(c)
    res = json.loads(c.cli("did", "resolve", did).stdout)
    assert res["proven"] is True and res["didDocument"]["id"] == did
    vm = res["didDocument"]["verificationMethod"][0]
    assert vm["type"] == "Multikey" and vm["publicKeyMultibase"].startswith("z")
    assert res["didDocument"]["assertionMethod"] == [f"{did}#key-1"]

    unknown = "did:qilian:" + "0" * 40
    assert f"unknown DID {unknown}" in c.refused("did", "resolve", unknown)
    assert httpx.get(f"{c.node.url}/apps/identity/dids/{unknown}").status_code == 404
    assert httpx.get(f"{c.node.url}/apps/identity/dids/did:web:x").status_code == 400

    # the university issues a degree credential with a revocation entry; the company verifies it offline
    body = tmp_path / "degree.json"
    body.write_text(json.dumps({"type": ["DegreeCredential"], "validFrom": "2025-06-30T00:00:00Z",
                                "credentialSubject": {"id": "did:qilian:" + "12" * 20, "name": "Li Hua",
                                                      "degree": "BSc Computer Science"}}))
    cred = tmp_path / "cred.json"
    c.cli("vc", "issue", str(body), "--issuer", did, "--did-key", uni_key, "--status-index", "94567",
          "--out", str(cred))
    assert json.loads(cred.read_text())["proof"]["cryptosuite"] == "sm2-jcs-2025"
    bundle = tmp_path / "bundle.json"
    p = c.cli("vc", "verify", str(cred), "--save-bundle", str(bundle))
    assert "VALID: issued by " + did in out(p)
    p = c.cli("vc", "verify", str(cred), "--bundle", str(bundle), "--node", "http://127.0.0.1:9")  # no node
    assert "VALID" in out(p)
    altered = tmp_path / "altered.json"
    doc = json.loads(cred.read_text())
    doc["credentialSubject"]["degree"] = "PhD"
    altered.write_text(json.dumps(doc))
    p = c.cli("vc", "verify", str(altered), "--bundle", str(bundle), check=False)
    assert p.returncode == 2 and "does not verify" in out(p)

    # rotation signed by the wrong key is refused; by the old key it works, and old credentials stop verifying
    assert "not a capabilityInvocation key" in c.refused("did", "update", did, "--did-key", stranger, "--add-key",
                                                         stranger)
    p = c.cli("did", "update", did, "--did-key", uni_key, "--add-key", new_key, "--remove-key", "key-1",
              "--key", c.key("uni-client"))
    assert "keys: key-2" in out(p)
    tick(c)
    doc = json.loads(c.cli("did", "resolve", did).stdout)["didDocument"]
    assert [m["id"] for m in doc["verificationMethod"]] == [f"{did}#key-2"]
    p = c.cli("vc", "verify", str(cred), check=False)
    assert p.returncode == 2 and "is not an assertionMethod key" in out(p)

    # a new credential under the new key; the university revokes it; verification fails naming the revocation
    cred2 = tmp_path / "cred2.json"
    c.cli("vc", "issue", str(body), "--issuer", did, "--did-key", new_key, "--status-index", "7", "--out",
          str(cred2))
    assert json.loads(cred2.read_text())["proof"]["cryptosuite"] == "eddsa-jcs-2022"
    assert "VALID" in out(c.cli("vc", "verify", str(cred2)))
    c.cli("vc", "revoke", str(cred2), "--did-key", new_key, "--key", c.key("uni-client"))
    tick(c)
    status = json.loads(c.cli("vc", "status", str(cred2)).stdout)
    assert status[0]["revoked"] is True and status[0]["index"] == 7
    p = c.cli("vc", "verify", str(cred2), check=False)
    assert p.returncode == 2 and "revoked (status list revocation, index 7" in out(p)
    lst = httpx.get(f"{c.node.url}/apps/identity/status/{did}/revocation").json()
    assert lst["credentialSubject"]["encodedList"].startswith("u")

    # deactivation
    assert "not a capabilityInvocation key" in c.refused("did", "deactivate", did, "--did-key", uni_key)
    c.cli("did", "deactivate", did, "--did-key", new_key, "--key", c.key("uni-client"))
    tick(c)
    res = json.loads(c.cli("did", "resolve", did).stdout)
    assert res["didDocumentMetadata"]["deactivated"] is True
