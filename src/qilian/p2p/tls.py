"""TLS 1.3 material for the peer-to-peer links.

Each node has a TLS key and a self-signed certificate (Ed25519) written by ``qilian init``. The network's trust
store is the bundle of every node's certificate (``tls/network.pem``): TLS refuses any peer whose certificate is not
in it, both ways (mutual authentication). The TLS key only protects the channel; *who* a peer is comes from its node
key, which signs both certificates' hashes in the first message (see :class:`qilian.p2p.messages.Hello`). A stolen
TLS key alone therefore cannot impersonate a validator."""

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


def make_context(server: bool, crt: Path, key: Path, bundle: Path) -> ssl.SSLContext:
    """A TLS 1.3-only context presenting this node's certificate and requiring one from the bundle."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(crt), str(key))
    ctx.load_verify_locations(str(bundle))
    ctx.check_hostname = False  # peers are named by certificate and node key, not by DNS name
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
