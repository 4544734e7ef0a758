"""The international suite: Ed25519 signatures (RFC 8032), SHA-256, AES-256-GCM.

Signatures go through PyNaCl (libsodium) because it is the fastest Ed25519 verifier available to Python here
(~44 µs a verify against ~90 µs for ``cryptography``) and it releases the GIL, so the node's two-thread verify pool
scales. It is also the *only* verifier the chain uses: Ed25519 libraries disagree on edge cases (small-order keys,
non-canonical encodings), and consensus needs every node to give the same answer for the same bytes. libsodium
rejects non-canonical ``S``, non-canonical and small-order public keys.

PEM encoding and AES-GCM come from ``cryptography``, which PyNaCl does not cover.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, Final, TypeVar

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.signing import SigningKey, VerifyKey

from qilian.crypto.suite import CryptoError, Suite

_K = TypeVar("_K")
_V = TypeVar("_V")

VERIFY_KEY_CACHE_SIZE: Final = 4096
"""Parsed public keys kept (a busy chain has far fewer active senders than this per few blocks)."""
SIGNING_KEY_CACHE_SIZE: Final = 64
"""Parsed private keys kept: building a SigningKey recomputes the public key (~18 µs, as much as a signature)."""

_ENCRYPTED_PEM_LABEL: Final = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def _remember(cache: dict[_K, _V], key: _K, value: _V, limit: int) -> None:
    """Insert into a bounded cache, evicting the oldest entries.

    No lock: each dict operation is atomic under the GIL, and a race between two threads evicting at once only
    makes one of them give up early (the cache may overshoot by an entry until the next insert).
    """
    cache[key] = value
    while len(cache) > limit:
        try:
            del cache[next(iter(cache))]
        except (KeyError, RuntimeError, StopIteration):
            break


def _is_encrypted_pem(pem: bytes) -> bool:
    """Whether a PEM holds an encrypted PKCS#8 key, so a password is only handed over when one is needed.

    ``cryptography`` refuses a password for an unencrypted key; we ignore it instead, so that one configured
    password (e.g. from the environment) does not stop a node from loading a plain key file.
    """
    return _ENCRYPTED_PEM_LABEL in pem


class Ed25519Suite(Suite):
    """Ed25519 + SHA-256 + AES-256-GCM. A raw private key is the 32-byte RFC 8032 seed."""

    name: ClassVar[str] = "ed25519"
    hash_name: ClassVar[str] = "sha256"
    public_key_size: ClassVar[int] = 32
    signature_size: ClassVar[int] = 64
    symmetric_key_size: ClassVar[int] = 32

    def __init__(self) -> None:
        """Empty caches; one instance is shared by the whole process (see ``qilian.crypto.get_suite``)."""
        self._verify_keys: dict[bytes, VerifyKey] = {}
        self._signing_keys: dict[bytes, SigningKey] = {}

    # -- hashing -----------------------------------------------------------------------------------------

    def hash(self, data: bytes) -> bytes:
        """SHA-256 of ``data``."""
        return hashlib.sha256(data).digest()

    # -- signatures --------------------------------------------------------------------------------------

    def private_key_from_seed(self, seed: bytes) -> bytes:
        """The seed itself: every 32-byte string is a valid Ed25519 private key (RFC 8032 §5.1.5)."""
        if len(seed) != 32:
            raise CryptoError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        return bytes(seed)

    def _signing_key(self, private_key: bytes) -> SigningKey:
        """The cached libsodium key pair of a raw private key."""
        private_key = bytes(private_key)
        key = self._signing_keys.get(private_key)
        if key is None:
            if len(private_key) != 32:
                raise CryptoError(f"an Ed25519 private key is 32 bytes, got {len(private_key)}")
            key = SigningKey(private_key)
            _remember(self._signing_keys, private_key, key, SIGNING_KEY_CACHE_SIZE)
        return key

    def get_public_key(self, private_key: bytes) -> bytes:
        """The 32-byte public key of a seed."""
        return bytes(self._signing_key(private_key).verify_key)

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        """The deterministic 64-byte Ed25519 signature (R‖S) of ``message``."""
        return self._signing_key(private_key).sign(bytes(message)).signature

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Check a signature with libsodium; False, never an exception, for anything malformed.

        VerifyKey objects are cached per key because this is the node's hot path, though the saving is small:
        libsodium decompresses the point on every call anyway, so the cache only spares the Python object.
        """
        try:
            if len(signature) != 64:
                return False
            public_key = bytes(public_key)  # no copy for bytes; makes a bytearray hashable
            key = self._verify_keys.get(public_key)
            if key is None:
                if len(public_key) != 32:
                    return False
                key = VerifyKey(public_key)
                _remember(self._verify_keys, public_key, key, VERIFY_KEY_CACHE_SIZE)
            key.verify(bytes(message), bytes(signature))
        except Exception:  # BadSignatureError, or a malformed argument: both mean "not valid"
            return False
        return True

    def is_valid_public_key(self, public_key: bytes) -> bool:
        """True iff ``public_key`` is a canonical encoding of a point in the prime-order subgroup.

        Stricter than what ``verify`` tolerates (libsodium's verify does not check the subgroup), which is what
        a registry of keys wants: no honest key generator produces a point outside it.
        """
        try:
            return len(public_key) == 32 and bool(crypto_core_ed25519_is_valid_point(bytes(public_key)))
        except Exception:
            return False

    # -- keys on disk ------------------------------------------------------------------------------------

    def private_key_to_pem(self, private_key: bytes, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM; with a (non-empty) password PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), which OpenSSL reads."""
        if len(private_key) != 32:
            raise CryptoError(f"an Ed25519 private key is 32 bytes, got {len(private_key)}")
        key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(bytes(password)) if password else serialization.NoEncryption()
        )
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def private_key_from_pem(self, pem: bytes, password: bytes | None = None) -> bytes:
        """The 32-byte seed in a PKCS#8 PEM. CryptoError on a wrong/missing password or a non-Ed25519 key.

        A password given for an unencrypted PEM is ignored (see ``_is_encrypted_pem``).
        """
        encrypted = _is_encrypted_pem(pem)
        if encrypted and not password:
            raise CryptoError("the key is encrypted: a password is needed")
        try:
            key = serialization.load_pem_private_key(bytes(pem), bytes(password) if encrypted and password else None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CryptoError(f"not a readable Ed25519 PKCS#8 key (or wrong password): {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CryptoError(f"not an Ed25519 key but {type(key).__name__}")
        return key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def public_key_to_pem(self, public_key: bytes) -> bytes:
        """SubjectPublicKeyInfo PEM (RFC 8410)."""
        if len(public_key) != 32:
            raise CryptoError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
        key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    # -- symmetric encryption ----------------------------------------------------------------------------

    @staticmethod
    def _aead(key: bytes, nonce: bytes) -> AESGCM:
        """An AES-256-GCM instance, refusing other key sizes so that a 16-byte SM4 key cannot slip in as AES-128."""
        if len(key) != 32:
            raise CryptoError(f"an AES-256-GCM key is 32 bytes, got {len(key)}")
        if len(nonce) != 12:
            raise CryptoError(f"the GCM nonce is 12 bytes, got {len(nonce)}")
        return AESGCM(bytes(key))

    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """AES-256-GCM: ciphertext‖16-byte tag. The caller must never reuse a nonce under one key."""
        return self._aead(key, nonce).encrypt(bytes(nonce), bytes(plaintext), bytes(associated_data))

    def decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
        """AES-256-GCM decryption; CryptoError when the tag does not verify."""
        aead = self._aead(key, nonce)
        try:
            return aead.decrypt(bytes(nonce), bytes(ciphertext), bytes(associated_data))
        except InvalidTag:
            raise CryptoError("ciphertext or associated data altered, or wrong key") from None
