"""Verifiable Credentials (W3C VC Data Model 2.0) issued off-chain, secured with Data Integrity proofs.

Two cryptosuites, both over JCS (RFC 8785) so a credential is plain JSON — no JSON-LD processing, no remote
context loading:

* ``eddsa-jcs-2022`` (W3C Data Integrity EdDSA Cryptosuites v1.0): SHA-256 of the canonical proof options, then
  SHA-256 of the canonical document, concatenated and signed with Ed25519; checked against the spec's published
  test vectors (tests/vectors/eddsa-jcs-2022/).
* ``sm2-jcs-2025`` (ours, docs/apps/identity.md): the same construction with SM3 in place of SHA-256 and an SM2
  signature (GB/T 32918, default ID ``1234567812345678``) over the 64-byte hash data; raw r‖s, base58btc.

Revocation is a Bitstring Status List whose bits live in chain state (module ``did``): the credential's
``credentialStatus`` names ``did:qilian:…/status/<list>`` and an index; a verifier proves the one 256-byte chunk
holding that bit against genesis. Selective disclosure is out of scope.

Pure code: no IO, no clock (the verifier passes ``now`` in)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from qilian.apps.identity.module import (
    DID_PREFIX,
    KEY_TYPES,
    STATUS_LIST_BITS,
    DidRecord,
    is_did,
    is_fragment,
)
from qilian.crypto import get_suite

VC_CONTEXT: Final = "https://www.w3.org/ns/credentials/v2"
"""The VC Data Model 2.0 base context (first in every credential's @context)."""
DID_CONTEXT: Final = "https://www.w3.org/ns/did/v1"
MULTIKEY_CONTEXT: Final = "https://w3id.org/security/multikey/v1"
SUITES: Final = {"eddsa-jcs-2022": "Ed25519", "sm2-jcs-2025": "SM2"}
"""Cryptosuite → key type it signs with."""
MULTICODEC: Final = {"Ed25519": b"\xed\x01", "SM2": b"\x86\x24"}
"""Multicodec prefixes of public keys: ed25519-pub (0xed) and sm2-pub (0x1206, a compressed point)."""
MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Integers beyond this are not exact in I-JSON and are refused by the canonicaliser."""


class CredentialInvalid(Exception):
    """A credential that does not verify; the message names the check that failed."""


# -- JCS (RFC 8785) -------------------------------------------------------------------------------------------


def compute_jcs(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value: object members sorted by their UTF-16 code units, no
    whitespace, ECMAScript string escaping and number formatting."""
    return _jcs(value).encode("utf-8")


def _jcs(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside the I-JSON range (use a string)")
        return str(value)
    if type(value) is float:
        return _jcs_number(value)
    if type(value) is str:
        return _jcs_string(value)
    if type(value) in (list, tuple):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if type(value) is dict:
        for k in value:
            if type(k) is not str:
                raise ValueError("JSON object keys are strings")
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(_jcs_string(k) + ":" + _jcs(v) for k, v in items) + "}"
    raise ValueError(f"{type(value).__name__} is not a JSON value")


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _jcs_string(s: str) -> str:
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif c < 0x20:
            out.append(f"\\u{c:04x}")
        elif 0xD800 <= c <= 0xDFFF:
            raise ValueError("lone surrogate in a string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _jcs_number(x: float) -> str:
    """ECMAScript Number.prototype.toString (the shortest round-trip digits Python's repr also picks)."""
    if not math.isfinite(x):
        raise ValueError("NaN and infinities are not JSON")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mant, _, e = repr(abs(x)).partition("e")
    ip, _, fp = mant.partition(".")
    ds = ip + ("" if fp == "0" else fp)
    point = len(ip) + (int(e) if e else 0)
    while len(ds) > 1 and ds[0] == "0":
        ds, point = ds[1:], point - 1
    ds = ds.rstrip("0") or "0"
    k, n = len(ds), point
    if k <= n <= 21:
        return sign + ds + "0" * (n - k)
    if 0 < n <= 21:
        return sign + ds[:n] + "." + ds[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + ds
    e_str = f"{n - 1:+d}"
    return sign + (ds[0] + ("." + ds[1:] if k > 1 else "")) + "e" + e_str


# -- multibase, multikey --------------------------------------------------------------------------------------

_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def compute_base58(data: bytes) -> str:
    """Bitcoin base58 (multibase ``z`` without the prefix)."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def get_base58(text: str) -> bytes:
    """Decode base58; ValueError for a character outside the alphabet."""
    n = 0
    for ch in text:
        i = _B58.find(ch)
        if i < 0:
            raise ValueError(f"{ch!r} is not a base58 character")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


_SM2_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_SM2_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93


def compute_compressed_sm2(public_key: bytes) -> bytes:
    """The 33-byte compressed form of an uncompressed (0x04 ‖ x ‖ y) SM2 point."""
    if len(public_key) != 65 or public_key[0] != 4:
        raise ValueError("an SM2 public key is 65 bytes, 0x04 || x || y")
    return bytes([2 + (public_key[64] & 1)]) + public_key[1:33]


def get_uncompressed_sm2(compressed: bytes) -> bytes:
    """Recover y from a compressed SM2 point (p ≡ 3 mod 4, so the root is a single exponentiation)."""
    if len(compressed) != 33 or compressed[0] not in (2, 3):
        raise ValueError("a compressed SM2 point is 33 bytes starting 02 or 03")
    x = int.from_bytes(compressed[1:], "big")
    rhs = (pow(x, 3, _SM2_P) - 3 * x + _SM2_B) % _SM2_P
    y = pow(rhs, (_SM2_P + 1) // 4, _SM2_P)
    if y * y % _SM2_P != rhs:
        raise ValueError("not a point of the SM2 curve")
    if (y & 1) != (compressed[0] & 1):
        y = _SM2_P - y
    return b"\x04" + compressed[1:] + y.to_bytes(32, "big")


def compute_multikey(key_type: str, public_key: bytes) -> str:
    """``publicKeyMultibase`` of a key: ``z`` + base58btc(multicodec ‖ key), SM2 compressed."""
    raw = compute_compressed_sm2(public_key) if key_type == "SM2" else public_key
    return "z" + compute_base58(MULTICODEC[key_type] + raw)


def get_multikey(text: str) -> tuple[str, bytes]:
    """(key type, raw public key as the chain stores it) of a ``publicKeyMultibase``."""
    if not text.startswith("z"):
        raise ValueError("publicKeyMultibase must be base58btc (prefix z)")
    data = get_base58(text[1:])
    for key_type, prefix in MULTICODEC.items():
        if data.startswith(prefix):
            raw = data[len(prefix):]
            return key_type, (get_uncompressed_sm2(raw) if key_type == "SM2" else raw)
    raise ValueError("unknown multicodec key prefix")


# -- DID documents --------------------------------------------------------------------------------------------


def compute_did_document(record: DidRecord) -> dict[str, Any]:
    """The W3C DID document (DID Core 1.0, JSON) a did:qilian record resolves to."""
    did = record.did
    doc: dict[str, Any] = {"@context": [DID_CONTEXT, MULTIKEY_CONTEXT], "id": did}
    if record.controllers:
        doc["controller"] = list(record.controllers)
    doc["verificationMethod"] = [{"id": f"{did}#{f}", "type": "Multikey", "controller": did,
                                  "publicKeyMultibase": compute_multikey(t, pk)} for f, t, pk in record.keys]
    for rel in ("authentication", "assertionMethod", "capabilityInvocation"):
        doc[rel] = [f"{did}#{f}" for f in record.relationships.get(rel, ())]
    if record.services:
        doc["service"] = [{"id": f"{did}#{f}", "type": t, "serviceEndpoint": e} for f, t, e in record.services]
    return doc


def compute_resolution(record: DidRecord | None, did: str, state_height: int) -> dict[str, Any]:
    """A DID resolution result (DID Resolution: document, document metadata, resolution metadata)."""
    if record is None:
        return {"didDocument": None, "didDocumentMetadata": {},
                "didResolutionMetadata": {"error": "notFound", "contentType": "application/did+json"},
                "did": did, "stateHeight": state_height}
    meta: dict[str, Any] = {"created": record.created, "updated": record.updated, "versionId": str(record.seq)}
    if record.deactivated:
        meta["deactivated"] = True
    return {"didDocument": compute_did_document(record), "didDocumentMetadata": meta,
            "didResolutionMetadata": {"contentType": "application/did+json"}, "did": did,
            "stateHeight": state_height}


# -- Data Integrity proofs ------------------------------------------------------------------------------------


def _hash(cryptosuite: str, data: bytes) -> bytes:
    if cryptosuite == "eddsa-jcs-2022":
        return hashlib.sha256(data).digest()
    return get_suite("sm2").hash(data)


def compute_hash_data(document: dict[str, Any], proof_options: dict[str, Any]) -> bytes:
    """hash(JCS(proof options)) ‖ hash(JCS(document without proof)) — what the key signs (both suites)."""
    suite = proof_options.get("cryptosuite")
    if suite not in SUITES:
        raise CredentialInvalid(f"unsupported cryptosuite {suite!r}; supported: {', '.join(SUITES)}")
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    options = {k: v for k, v in proof_options.items() if k != "proofValue"}
    if "@context" in unsecured:
        options["@context"] = unsecured["@context"]
    try:
        return _hash(suite, compute_jcs(options)) + _hash(suite, compute_jcs(unsecured))
    except ValueError as exc:
        raise CredentialInvalid(f"not canonicalisable JSON: {exc}") from None


def compute_secured(document: dict[str, Any], cryptosuite: str, verification_method: str, private_key: bytes,
                    created: str, proof_purpose: str = "assertionMethod") -> dict[str, Any]:
    """``document`` with a DataIntegrityProof added (the key type must match the cryptosuite)."""
    options: dict[str, Any] = {"type": "DataIntegrityProof", "cryptosuite": cryptosuite, "created": created,
                               "verificationMethod": verification_method, "proofPurpose": proof_purpose}
    hash_data = compute_hash_data(document, options)
    suite = get_suite(KEY_TYPES[SUITES[cryptosuite]])
    signature = suite.sign(private_key, hash_data)
    if "@context" in document:
        options["@context"] = document["@context"]
    options["proofValue"] = "z" + compute_base58(signature)
    return {**{k: v for k, v in document.items() if k != "proof"}, "proof": options}


def is_valid_proof(document: dict[str, Any], key_type: str, public_key: bytes) -> bool:
    """Whether the document's single proof verifies under this key."""
    proof = document.get("proof")
    if not isinstance(proof, dict) or proof.get("type") != "DataIntegrityProof":
        return False
    suite_name = proof.get("cryptosuite")
    if SUITES.get(str(suite_name)) != key_type:
        return False
    value = proof.get("proofValue")
    if not isinstance(value, str) or not value.startswith("z"):
        return False
    try:
        signature = get_base58(value[1:])
        hash_data = compute_hash_data(document, proof)
    except (ValueError, CredentialInvalid):
        return False
    if "@context" in proof and proof["@context"] != document.get("@context"):
        return False
    return get_suite(KEY_TYPES[key_type]).verify(public_key, hash_data, signature)


# -- Bitstring Status List -----------------------------------------------------------------------------------


def compute_encoded_list(bits: bytes) -> str:
    """``encodedList``: multibase base64url (prefix u, no padding) of the GZIP of the bitstring (mtime 0, so the
    same bits always give the same text)."""
    if len(bits) * 8 < STATUS_LIST_BITS:
        raise ValueError(f"a status list holds at least {STATUS_LIST_BITS} entries")
    return "u" + base64.urlsafe_b64encode(gzip.compress(bits, mtime=0)).decode().rstrip("=")


def get_decoded_list(encoded: str) -> bytes:
    """The bitstring of an ``encodedList``."""
    if not encoded.startswith("u"):
        raise ValueError("encodedList must be multibase base64url (prefix u)")
    body = encoded[1:]
    return gzip.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def get_list_bit(bits: bytes, index: int) -> int:
    """Entry ``index`` (bit 0 = most significant bit of the first byte)."""
    return (bits[index // 8] >> (7 - index % 8)) & 1


def compute_status_entry(did: str, list_name: str, index: int, purpose: str = "revocation") -> dict[str, Any]:
    """A ``credentialStatus`` entry pointing at the issuer DID's on-chain list."""
    url = f"{did}/status/{list_name}"
    return {"id": f"{url}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": purpose,
            "statusListIndex": str(index), "statusListCredential": url}


def get_status_entry(entry: Any) -> tuple[str, str, int]:
    """(issuer DID, list name, index) of a BitstringStatusListEntry naming a did:qilian list."""
    if not isinstance(entry, dict) or entry.get("type") != "BitstringStatusListEntry":
        raise CredentialInvalid("credentialStatus is not a BitstringStatusListEntry")
    url, index = entry.get("statusListCredential"), entry.get("statusListIndex")
    if not isinstance(url, str) or "/status/" not in url or not isinstance(index, str) or not index.isdigit():
        raise CredentialInvalid("credentialStatus needs statusListCredential did:qilian:…/status/<list> and a "
                                "decimal statusListIndex")
    did, _, name = url.partition("/status/")
    if not is_did(did) or not is_fragment(name) or int(index) >= STATUS_LIST_BITS:
        raise CredentialInvalid(f"credentialStatus names no did:qilian status list entry ({url[:80]}#{index})")
    return did, name, int(index)


# -- verification ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedCredential:
    """What verification established."""

    issuer: str
    """The issuer DID (its key signed)."""
    verification_method: str
    """The DID URL of the signing key."""
    cryptosuite: str
    """The proof's cryptosuite."""
    status: dict[str, int]
    """Status purpose → bit (0 = not revoked / not suspended)."""


def get_issuer(vc: dict[str, Any]) -> str:
    """The issuer's id (``issuer`` is a URL or an object with ``id``)."""
    issuer = vc.get("issuer")
    if isinstance(issuer, dict):
        issuer = issuer.get("id")
    if not isinstance(issuer, str):
        raise CredentialInvalid("the credential has no issuer")
    return issuer


def verify_credential(vc: Any, resolve: Callable[[str], DidRecord | None],
                      status_bit: Callable[[str, str, int], int], now: str | None = None) -> VerifiedCredential:
    """Verify a credential: shape, issuer DID resolved (by ``resolve``, e.g. from a state proof) and active, the
    signing key in its assertionMethod, the proof, the validity period against ``now`` (an XML Schema dateTime
    in UTC, compared as text), and every status entry (``status_bit``, e.g. a proven chunk). Raises
    CredentialInvalid naming the first failed check."""
    if not isinstance(vc, dict):
        raise CredentialInvalid("a credential is a JSON object")
    ctx = vc.get("@context")
    if not isinstance(ctx, list) or not ctx or ctx[0] != VC_CONTEXT:
        raise CredentialInvalid(f"@context must start with {VC_CONTEXT}")
    types = vc.get("type")
    if not isinstance(types, list) or "VerifiableCredential" not in types:
        raise CredentialInvalid("type must include VerifiableCredential")
    if "credentialSubject" not in vc:
        raise CredentialInvalid("the credential has no credentialSubject")
    issuer = get_issuer(vc)
    proof = vc.get("proof")
    if not isinstance(proof, dict):
        raise CredentialInvalid("the credential has no (single) proof")
    vm = proof.get("verificationMethod")
    if not isinstance(vm, str) or "#" not in vm:
        raise CredentialInvalid("proof.verificationMethod must be a DID URL did:qilian:…#key")
    did, fragment = vm.split("#", 1)
    if did != issuer:
        raise CredentialInvalid(f"the proof's key belongs to {did}, not to the issuer {issuer}")
    if proof.get("proofPurpose") != "assertionMethod":
        raise CredentialInvalid("proofPurpose must be assertionMethod")
    if not is_did(did):
        raise CredentialInvalid(f"the issuer {did[:80]} is not a did:qilian DID")
    record = resolve(did)
    if record is None:
        raise CredentialInvalid(f"unknown DID {did}: it is not in the chain state")
    if record.deactivated:
        raise CredentialInvalid(f"the issuer {did} is deactivated")
    key = record.get_key(fragment)
    if key is None or fragment not in record.relationships.get("assertionMethod", ()):
        raise CredentialInvalid(f"{vm} is not an assertionMethod key of {did} (rotated away, or never was)")
    if not is_valid_proof(vc, key[0], key[1]):
        raise CredentialInvalid(f"the proof does not verify with {vm} ({proof.get('cryptosuite')}): the credential "
                                f"was altered or signed by another key")
    if now is not None:
        if isinstance(vc.get("validFrom"), str) and now < vc["validFrom"]:
            raise CredentialInvalid(f"not valid before {vc['validFrom']}")
        if isinstance(vc.get("validUntil"), str) and now > vc["validUntil"]:
            raise CredentialInvalid(f"expired at {vc['validUntil']}")
    statuses: dict[str, int] = {}
    entries = vc.get("credentialStatus", [])
    for entry in entries if isinstance(entries, list) else [entries]:
        sdid, name, index = get_status_entry(entry)
        if sdid != did:
            raise CredentialInvalid(f"the status list belongs to {sdid}, not to the issuer")
        purpose = str(entry.get("statusPurpose", "revocation"))
        bit = status_bit(sdid, name, index)
        statuses[purpose] = bit
        if bit:
            raise CredentialInvalid(f"the credential is {'revoked' if purpose == 'revocation' else purpose + 'ed'} "
                                    f"(status list {name}, index {index}, set on chain by its issuer)")
    return VerifiedCredential(did, vm, str(proof["cryptosuite"]), statuses)


__all__ = [
    "DID_PREFIX",
    "SUITES",
    "VC_CONTEXT",
    "CredentialInvalid",
    "VerifiedCredential",
    "compute_base58",
    "compute_did_document",
    "compute_encoded_list",
    "compute_hash_data",
    "compute_jcs",
    "compute_multikey",
    "compute_resolution",
    "compute_secured",
    "compute_status_entry",
    "get_base58",
    "get_decoded_list",
    "get_list_bit",
    "get_multikey",
    "get_status_entry",
    "is_valid_proof",
    "verify_credential",
]
