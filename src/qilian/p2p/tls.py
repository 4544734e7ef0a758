"""TLS 1.3 material for the peer-to-peer links.

Each node has a TLS key and a self-signed certificate (Ed25519) written by ``qilian init`` (or at first start).
TLS encrypts the link and proves the accepting side holds the key of the certificate it shows; it decides nothing
about *who* may connect. That is chain state's call: a peer's node key signs the accepting side's certificate hash
and both sides' nonces in its HelloProof (see :mod:`qilian.p2p.transport`), and only node keys registered in chain
state are admitted. So there is no trust bundle to distribute when an organisation joins or leaves, and a stolen
TLS key alone cannot impersonate a validator."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

CERT_VALID_YEARS = 30
"""Lifetime of a node certificate: rotating TLS keys is a config change, not an expiry surprise."""


def create_tls_identity(directory: Path, name: str) -> Path:
    """Write ``node.key`` (PKCS#8, mode 0600) and ``node.crt`` under ``directory``; returns the certificate path."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"qilian {name}")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * CERT_VALID_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None)
    )
    key_path = directory / "node.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    crt = directory / "node.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt


def get_cert_hash(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER bytes: what the Hello signature binds."""
    return hashlib.sha256(der).digest()


def get_own_cert_der(crt_path: Path) -> bytes:
    """DER of this node's certificate."""
    return x509.load_pem_x509_certificate(crt_path.read_bytes()).public_bytes(serialization.Encoding.DER)


def make_context(server: bool, crt: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.3-only context presenting this node's certificate. No certificate authority is consulted: the
    accepting side's certificate is bound to its node key by the HelloProof, and the dialing side is authenticated
    by its node key's HelloProof over that certificate and a fresh nonce (transport.py)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(crt), str(key))
    ctx.check_hostname = False  # peers are named by node key, not by DNS name
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
