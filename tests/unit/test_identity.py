"""Digital identity: did:qilian operations on real blocks (create, rotate, controllers, deactivate, status bits) and
Verifiable Credentials — the W3C eddsa-jcs-2022 test vectors, our sm2-jcs-2025 vector, RFC 8785 canonical form,
Bitstring Status List encoding, and verification that fails for every way a credential can be wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from qilian.apps.identity.module import (
    DID_NAMESPACE,
    STATUS_CHUNK_BYTES,
    compute_did,
    compute_op_signature,
    compute_status_key,
    get_did,
    get_status_bit,
)
from qilian.apps.identity.vc import (
    CredentialInvalid,
    compute_did_document,
    compute_encoded_list,
    compute_hash_data,
    compute_jcs,
    compute_multikey,
    compute_secured,
    compute_status_entry,
    get_base58,
    get_decoded_list,
    get_list_bit,
    get_multikey,
    is_valid_proof,
    verify_credential,
)
from qilian.crypto import get_suite
from qilian.sdk.keys import KeyPair

from .appchain import AppChain, make_key

VECTORS = Path(__file__).parent.parent / "vectors"


def doc(*keys: tuple[str, KeyPair], controllers: list[str] | None = None, invoke: list[str] | None = None
        ) -> dict[str, Any]:
    frags = [f for f, _ in keys]
    return {"keys": [[f, "SM2" if k.suite.name == "sm2" else "Ed25519", k.public_key] for f, k in keys],
            "controllers": controllers or [], "authentication": frags, "assertionMethod": frags,
            "capabilityInvocation": frags if invoke is None else invoke}


def create(c: AppChain, key: KeyPair, **kw: Any) -> str:
    d = doc(("key-1", key), **kw)
    did = compute_did("SM2" if key.suite.name == "sm2" else "Ed25519", key.public_key)
    sig = compute_op_signature(key.suite, key.private_key, c.chain_id, did, "create", d, 0)
    assert c.ok("org1-client", "did", "create", [d, sig]) == {"did": did, "seq": 1}
    return did


def op(c: AppChain, signer_key: KeyPair, signer: str, did: str, name: str, payload: Any, *args: Any) -> list[Any]:
    rec = get_did(c.get_state, did)
    seq = rec.seq if rec else 0
    sig = compute_op_signature(signer_key.suite, signer_key.private_key, c.chain_id, did, name, payload, seq)
    return [did, *args, signer, sig]


def test_did_lifecycle_with_both_key_suites_rotation_and_controllers() -> None:
    c = AppChain(("org1", "org2"))
    old, new, other = make_key("sm2", 1), make_key("ed25519", 2), make_key("ed25519", 3)
    did = create(c, old)
    assert did.startswith("did:qilian:") and len(did) == 11 + 40
    assert "exists already" in c.fails("org1-client", "did", "create", [doc(("key-1", old)), b"x" * 64])
    # rotation: the new document drops key-1, signed by the old key
    d2 = doc(("key-2", new))
    c.ok("org2-client", "did", "update", op(c, old, f"{did}#key-1", did, "update", d2, d2))
    rec = get_did(c.get_state, did)
    assert rec is not None and [k[0] for k in rec.keys] == ["key-2"] and rec.seq == 2
    # the rotated-away key no longer may change it; a stranger's key neither; a replayed signature neither
    d3 = doc(("key-3", other))
    err = c.fails("org1-client", "did", "update", op(c, old, f"{did}#key-1", did, "update", d3, d3))
    assert f"is not a capabilityInvocation key of {did}" in err
    stranger = create(c, other)
    err = c.fails("org1-client", "did", "update", op(c, other, f"{stranger}#key-1", did, "update", d3, d3))
    assert "is neither a key of" in err
    forged = op(c, other, f"{did}#key-2", did, "update", d3, d3)
    assert "does not verify" in c.fails("org1-client", "did", "update", forged)
    # a controller's key may change it
    d4 = doc(("key-2", new), controllers=[stranger])
    c.ok("org1-client", "did", "update", op(c, new, f"{did}#key-2", did, "update", d4, d4))
    d5 = doc(("key-9", other), controllers=[stranger])
    c.ok("org1-client", "did", "update", op(c, other, f"{stranger}#key-1", did, "update", d5, d5))
    # deactivation: then nothing more
    c.ok("org1-client", "did", "deactivate", op(c, other, f"{did}#key-9", did, "deactivate", None))
    rec = get_did(c.get_state, did)
    assert rec is not None and rec.deactivated and rec.keys == ()
    assert "is deactivated" in c.fails("org1-client", "did", "update", op(c, other, f"{did}#key-9", did, "update",
                                                                          d5, d5))
    unknown = "did:qilian:" + "0" * 40
    assert f"unknown DID {unknown}" in c.fails("org1-client", "did", "deactivate",
                                               op(c, other, f"{unknown}#key-1", unknown, "deactivate", None))
    assert "not a did:qilian DID" in c.fails("org1-client", "did", "deactivate", ["did:web:x", "s", b""])


def test_status_bits_live_in_state_chunks() -> None:
    c = AppChain(("org1",))
    k = make_key("ed25519", 5)
    did = create(c, k)
    for index in (0, 7, 94567, 131071):
        c.ok("org1-client", "did", "set_status", op(c, k, f"{did}#key-1", did, "set_status",
                                                    ["revocation", index, 1], "revocation", index, 1))
    chunk = c.get_state(DID_NAMESPACE, compute_status_key(did, "revocation", 94567 // (STATUS_CHUNK_BYTES * 8)))
    assert get_status_bit(chunk, 94567) == 1 and get_status_bit(chunk, 94566) == 0
    first = c.get_state(DID_NAMESPACE, compute_status_key(did, "revocation", 0))
    assert first is not None and first[0] == 0b10000001
    assert "0..131071" in c.fails("org1-client", "did", "set_status", op(c, k, f"{did}#key-1", did, "set_status",
                                                                         ["revocation", 131072, 1], "revocation",
                                                                         131072, 1))
    c.ok("org1-client", "did", "set_status", op(c, k, f"{did}#key-1", did, "set_status", ["revocation", 0, 0],
                                                "revocation", 0, 0))
    assert get_status_bit(c.get_state(DID_NAMESPACE, compute_status_key(did, "revocation", 0)), 0) == 0


# -- credentials ----------------------------------------------------------------------------------------------


def test_eddsa_jcs_2022_w3c_test_vectors() -> None:
    v = VECTORS / "eddsa-jcs-2022"
    keypair = json.loads((v / "keyPair.json").read_text())
    key_type, pk = get_multikey(keypair["publicKeyMultibase"])
    assert key_type == "Ed25519"
    seed = get_base58(keypair["privateKeyMultibase"][1:])[2:]  # multicodec ed25519-priv 0x1300
    ed = get_suite("ed25519")
    assert ed.get_public_key(seed) == pk
    unsigned = json.loads((v / "unsigned.json").read_text())
    options = json.loads((v / "proofConfigJCS.json").read_text())
    assert compute_jcs(unsigned).decode() == (v / "canonDocJCS.txt").read_text().strip()
    assert compute_jcs(options).decode() == (v / "proofCanonJCS.txt").read_text().strip()
    hash_data = compute_hash_data(unsigned, options)
    assert hash_data[:32].hex() == (v / "proofHashJCS.txt").read_text().strip()
    assert hash_data[32:].hex() == (v / "docHashJCS.txt").read_text().strip()
    assert hash_data.hex() == (v / "combinedHashJCS.txt").read_text().strip()
    sig = ed.sign(seed, hash_data)  # Ed25519 is deterministic: the published signature exactly
    assert sig.hex() == (v / "sigHexJCS.txt").read_text().strip()
    signed = json.loads((v / "signedJCS.json").read_text())
    assert signed["proof"]["proofValue"] == (v / "sigBTC58JCS.txt").read_text().strip()
    secured = compute_secured(unsigned, "eddsa-jcs-2022", options["verificationMethod"], seed, options["created"])
    assert secured == signed
    assert is_valid_proof(signed, "Ed25519", pk)
    tampered = copy.deepcopy(signed)
    tampered["credentialSubject"]["alumniOf"] = "Another School"
    assert not is_valid_proof(tampered, "Ed25519", pk)


def test_sm2_jcs_2025_vector() -> None:
    vec = json.loads((VECTORS / "sm2-jcs-2025" / "vector.json").read_text())
    sm2 = get_suite("sm2")
    pk = bytes.fromhex(vec["publicKeyHex"])
    assert sm2.get_public_key(bytes.fromhex(vec["privateKeyHex"])) == pk
    assert compute_multikey("SM2", pk) == vec["publicKeyMultibase"] and get_multikey(vec["publicKeyMultibase"]) == (
        "SM2", pk)
    assert compute_jcs(vec["unsigned"]).decode() == vec["canonicalDocument"]
    assert compute_jcs(vec["proofOptions"]).decode() == vec["canonicalProofOptions"]
    hd = compute_hash_data(vec["unsigned"], vec["proofOptions"])
    assert (hd[:32].hex(), hd[32:].hex()) == (vec["proofHashHex"], vec["documentHashHex"])
    assert is_valid_proof(vec["signed"], "SM2", pk)
    assert not is_valid_proof(vec["signed"], "Ed25519", pk)  # the suite names the key type


def test_rfc8785_ordering_and_escaping() -> None:
    # RFC 8785 section 3.2.3's sorting example and string escapes
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
             "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O "
             "With Diaeresis"}
    keys = [k for k in json.loads(compute_jcs(value))]
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert compute_jcs({"s": "\u000f\n\"\\/\u007f"}) == b'{"s":"\\u000f\\n\\"\\\\/\x7f"}'
    assert compute_jcs([1e21, 1e-7, 0.000001, 333333333.33333329, -0.0, 4.5, 2**53 - 1]) == \
        b"[1e+21,1e-7,0.000001,333333333.3333333,0,4.5,9007199254740991]"
    with pytest.raises(ValueError):
        compute_jcs(2**53)


def test_bitstring_status_list_encoding() -> None:
    bits = bytearray(131072 // 8)
    bits[94567 // 8] |= 0x80 >> (94567 % 8)
    encoded = compute_encoded_list(bytes(bits))
    assert encoded.startswith("u") and "=" not in encoded
    assert get_decoded_list(encoded) == bytes(bits) and get_list_bit(bits, 94567) == 1
    assert compute_encoded_list(bytes(bits)) == encoded  # deterministic (gzip mtime 0)
    with pytest.raises(ValueError):
        compute_encoded_list(bytes(1024))


def test_verify_credential_accepts_then_names_each_failure() -> None:
    c = AppChain(("org1", "corp"))
    issuer_key = make_key("sm2", 40)
    did = create(c, issuer_key)
    vc = {"@context": ["https://www.w3.org/ns/credentials/v2"], "type": ["VerifiableCredential", "DegreeCredential"],
          "issuer": did, "validFrom": "2025-06-01T00:00:00Z",
          "credentialSubject": {"id": "did:qilian:" + "12" * 20, "degree": "BSc Computer Science"},
          "credentialStatus": compute_status_entry(did, "revocation", 42)}
    signed = compute_secured(vc, "sm2-jcs-2025", f"{did}#key-1", issuer_key.private_key, "2025-06-01T00:00:00Z")

    def resolve(d: str) -> Any:
        return get_did(c.get_state, d)

    def bit(d: str, name: str, i: int) -> int:
        return get_status_bit(c.get_state(DID_NAMESPACE, compute_status_key(d, name, i // 2048)), i)

    v = verify_credential(signed, resolve, bit, now="2025-07-01T00:00:00Z")
    assert v.issuer == did and v.status == {"revocation": 0} and v.cryptosuite == "sm2-jcs-2025"
    assert compute_did_document(get_did(c.get_state, did))["assertionMethod"] == [f"{did}#key-1"]  # type: ignore[arg-type]

    def fails(cred: Any, now: str | None = None) -> str:
        with pytest.raises(CredentialInvalid) as e:
            verify_credential(cred, resolve, bit, now)
        return str(e.value)

    altered = copy.deepcopy(signed)
    altered["credentialSubject"]["degree"] = "PhD"
    assert "does not verify" in fails(altered)
    assert "not valid before" in fails(signed, now="2025-01-01T00:00:00Z")
    other = copy.deepcopy(signed)
    other["issuer"] = other["proof"]["verificationMethod"] = "did:qilian:" + "99" * 20
    assert "the proof's key belongs to" in fails({**signed, "issuer": "did:qilian:" + "99" * 20})
    assert "unknown DID" in fails({**other, "proof": {**other["proof"], "verificationMethod": other["issuer"] + "#k"}})
    # revocation: the issuer's key sets the bit on chain; verification now fails naming it
    c.ok("corp-client", "did", "set_status", op(c, issuer_key, f"{did}#key-1", did, "set_status",
                                                ["revocation", 42, 1], "revocation", 42, 1))
    assert "revoked (status list revocation, index 42" in fails(signed)
