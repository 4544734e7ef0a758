"""The crypto suite interface: one hash, one signature scheme, one AEAD, fixed per chain in genesis.

A chain never mixes suites: every hash, address, signature and Merkle root on it uses the suite named in its
genesis. Keys are passed around as raw bytes (the wire form) so the core never touches library key objects;
the suite caches whatever parsed form its library needs.

Key generation takes its 32 bytes of entropy as an argument: the pure core has no source of randomness of its
own (the CLI and SDK draw it from the operating system).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar


class CryptoError(Exception):
    """A key, signature, ciphertext or PEM that does not parse or does not check out."""


class Suite(ABC):
    """A chain's cryptography. Subclasses are stateless apart from caches and safe to share between threads."""

    name: ClassVar[str]
    """Suite name as written in genesis: ``sm2`` or ``ed25519``."""
    hash_name: ClassVar[str]
    """Name of the hash function (``sm3`` or ``sha256``)."""
    public_key_size: ClassVar[int]
    """Length of a raw public key in bytes (SM2: 65, uncompressed point 04‖X‖Y; Ed25519: 32)."""
    signature_size: ClassVar[int]
    """Length of a raw signature in bytes (SM2: 64, r‖s big-endian; Ed25519: 64)."""

    # -- hashing -----------------------------------------------------------------------------------------

    @abstractmethod
    def hash(self, data: bytes) -> bytes:
        """The suite's 32-byte digest of ``data`` (SM3 or SHA-256)."""

    def compute_address(self, public_key: bytes) -> bytes:
        """A key's 20-byte address: the first 20 bytes of the suite hash of its raw public key."""
        return self.hash(public_key)[:20]

    # -- signatures --------------------------------------------------------------------------------------

    @abstractmethod
    def private_key_from_seed(self, seed: bytes) -> bytes:
        """Derive a raw private key (32 bytes) from 32 bytes of caller-supplied entropy."""

    @abstractmethod
    def get_public_key(self, private_key: bytes) -> bytes:
        """The raw public key of a raw private key."""

    @abstractmethod
    def sign(self, private_key: bytes, message: bytes) -> bytes:
        """Sign ``message`` (the scheme hashes it internally; SM2 uses the default ID 1234567812345678)."""

    @abstractmethod
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is valid for ``message`` under ``public_key``; never raises on bad input."""

    @abstractmethod
    def is_valid_public_key(self, public_key: bytes) -> bool:
        """True iff ``public_key`` has the suite's length and is a valid point of its curve."""

    # -- keys on disk ------------------------------------------------------------------------------------

    @abstractmethod
    def private_key_to_pem(self, private_key: bytes, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM of a raw private key; encrypted (PBES2, AES-256-CBC) when a password is given."""

    @abstractmethod
    def private_key_from_pem(self, pem: bytes, password: bytes | None = None) -> bytes:
        """Raw private key from PKCS#8 PEM; raises CryptoError on a wrong password or a foreign key type."""

    @abstractmethod
    def public_key_to_pem(self, public_key: bytes) -> bytes:
        """SubjectPublicKeyInfo PEM of a raw public key (what ``openssl pkey -pubin`` reads)."""

    # -- symmetric encryption ----------------------------------------------------------------------------

    @abstractmethod
    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """AEAD-encrypt (SM4-GCM with a 16-byte key, or AES-256-GCM with a 32-byte key); 12-byte nonce."""

    @abstractmethod
    def decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
        """AEAD-decrypt; raises CryptoError when the tag does not verify."""

    symmetric_key_size: ClassVar[int]
    """Key length for encrypt/decrypt in bytes."""
