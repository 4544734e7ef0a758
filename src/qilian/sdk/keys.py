"""Key files: PKCS#8 PEM on disk, optionally password-protected, for either suite.

A PEM names its algorithm (Ed25519's OID, or an EC key on the SM2 curve), so a key file alone says which suite
it belongs to; the loader tries each suite's parser and reports which one took it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from qilian.crypto import SUITES, CryptoError, Suite, get_suite


@dataclass(frozen=True)
class KeyPair:
    """A private key with its suite and derived public data."""

    suite: Suite
    """The suite the key belongs to."""
    private_key: bytes
    """Raw private key."""
    public_key: bytes
    """Raw public key."""

    @property
    def address(self) -> bytes:
        """The key's 20-byte address."""
        return self.suite.compute_address(self.public_key)


def generate_key(suite_name: str) -> KeyPair:
    """A new key from the operating system's CSPRNG."""
    suite = get_suite(suite_name)
    sk = suite.private_key_from_seed(secrets.token_bytes(32))
    return KeyPair(suite, sk, suite.get_public_key(sk))


def save_key(key: KeyPair, path: Path, password: bytes | None = None) -> None:
    """Write a key as PKCS#8 PEM, readable only by its owner (mode 0600), refusing to overwrite."""
    pem = key.suite.private_key_to_pem(key.private_key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_key(path: Path, password: bytes | None = None, suite_name: str | None = None) -> KeyPair:
    """Read a PEM key file; the suite is detected from the PEM unless given. Raises CryptoError."""
    pem = path.read_bytes()
    names = (suite_name,) if suite_name else SUITES
    errors = []
    for name in names:
        suite = get_suite(name)
        try:
            sk = suite.private_key_from_pem(pem, password)
        except CryptoError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return KeyPair(suite, sk, suite.get_public_key(sk))
    raise CryptoError(f"{path}: not a usable key ({'; '.join(errors)})")


def get_password_from_env(var: str = "QILIAN_KEY_PASSWORD") -> bytes | None:
    """The key password from an environment variable, if set (so a node can start unattended)."""
    v = os.environ.get(var)
    return v.encode() if v else None
