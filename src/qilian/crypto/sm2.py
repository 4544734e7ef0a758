"""The national (商用密码) suite: SM2 signatures (GB/T 32918.2), SM3 (GB/T 32905), SM4-GCM (GB/T 32907, RFC 8998).

SM2 goes through the system's OpenSSL 3 libcrypto via ctypes: it is the fastest SM2 verifier reachable from Python
on this machine (~270 µs, close to ``openssl speed``'s native rate), it releases the GIL for the node's verify
pool, and it is what the ``openssl`` command line uses, so interoperability can be checked with the CLI.
The pure-Python ``gmssl`` is 40× slower and draws its nonces from ``random``; ``cryptography`` has no SM2 at all.

Every signature binds the GB/T 32918 default distinguishing ID ``1234567812345678`` into Z_A. OpenSSL's own
default is an empty ID, which no other SM2 implementation uses, so the ID is always set explicitly.

Wire formats (what the rest of the chain sees): public key 65 bytes ``04‖X‖Y``; signature 64 bytes ``r‖s``
(fixed width, so there is exactly one encoding; OpenSSL's DER is converted here); private key 32 bytes, the
big-endian scalar d in [1, n−2] (SM2 signing needs (1+d) invertible, hence n−2 and not n−1).

Memory: every OpenSSL object allocated here is freed before returning, except parsed keys, which are owned by
``_PKey`` wrappers that free them when the last Python reference drops. A cache eviction therefore cannot pull a
key from under a thread that is still verifying with it.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qilian.crypto.suite import CryptoError, Suite

_K = TypeVar("_K")
_V = TypeVar("_V")

# -- curve and encodings ---------------------------------------------------------------------------------

SM2_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
"""Field prime of the SM2 recommended curve (GB/T 32918.5)."""
SM2_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
"""Order of the base point (the curve's cofactor is 1, so every curve point other than ∞ has this order)."""
DEFAULT_ID: Final = b"1234567812345678"
"""GB/T 32918 / GM/T 0009 default user ID; hashed into Z_A with ENTL = 128 bits."""

PUBLIC_KEY_CACHE_SIZE: Final = 4096
"""Parsed public keys kept; parsing (point decode + on-curve check) costs ~15 µs that verify need not repeat."""
PRIVATE_KEY_CACHE_SIZE: Final = 64
"""Parsed private keys kept; parsing multiplies d·G (~40 µs)."""

# SubjectPublicKeyInfo { AlgorithmIdentifier { id-ecPublicKey, sm2 (1.2.156.10197.1.301) }, BIT STRING 04‖X‖Y }:
# everything but the 65-byte point is constant, so the DER is a prefix plus the raw key.
_ALGORITHM_ID: Final = bytes.fromhex("3013" "06072a8648ce3d0201" "06082a811ccf5501822d")
_SPKI_PREFIX: Final = bytes.fromhex("3059") + _ALGORITHM_ID + bytes.fromhex("034200")
# PKCS#8 { version 0, AlgorithmIdentifier, OCTET STRING ECPrivateKey { version 1, OCTET STRING d (32 bytes) } }.
# The public key is left out; OpenSSL recomputes it when decoding.
_PKCS8_PREFIX: Final = (
    bytes.fromhex("3041" "020100") + _ALGORITHM_ID + bytes.fromhex("0427" "3025" "020101" "0420")
)
# The same with the optional [1] publicKey of ECPrivateKey, which is what goes into key files: OpenSSL writes a key
# back the way it read it, and some SM2 tools insist on finding the public key there.
_PKCS8_FULL_PREFIX: Final = (
    bytes.fromhex("308187" "020100") + _ALGORITHM_ID + bytes.fromhex("046d" "306b" "020101" "0420")
)
_PKCS8_FULL_INFIX: Final = bytes.fromhex("a144" "034200")

_PEM_RE: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)

# Signature known-answer test: made with `openssl dgst -sm3 -sign -sigopt distid:1234567812345678` and checked
# with gmssl. Verified once at start-up, so a libcrypto that ignores the ID (or lacks SM2) is caught at once.
_KAT_PUBLIC_KEY: Final = bytes.fromhex(
    "04" "5a8312406a921a24620aca07da1ff8f1ca38fef99b1492d44cfe6c1b84c6c4aa"
    "39f84bd8678b30ce0911c122841fa95f9011721e2d9cffb733ea30234a37fb02"
)
_KAT_MESSAGE: Final = b"hello"
_KAT_SIGNATURE: Final = bytes.fromhex(
    "ca071d8309ab428134a0d4b5c4b0234c95f647c6a00c3fcd517054a7e69a1e34"
    "ad6827c2689de1d18f6b070c2683a26ff265a3ca17aa94b842964a1f3c667302"
)


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


def _der_integer(value: int) -> bytes:
    """DER INTEGER of a non-negative value below 2**256 (minimal, with a 00 pad when the top bit is set)."""
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return bytes((0x02, len(body))) + body


def signature_to_der(signature: bytes) -> bytes:
    """The DER ``SEQUENCE { INTEGER r, INTEGER s }`` that OpenSSL and the GM/T 0009 tools exchange."""
    if len(signature) != 64:
        raise CryptoError(f"a raw SM2 signature is 64 bytes, got {len(signature)}")
    body = _der_integer(int.from_bytes(signature[:32], "big")) + _der_integer(int.from_bytes(signature[32:], "big"))
    return bytes((0x30, len(body))) + body


def signature_from_der(der: bytes) -> bytes:
    """Raw ``r‖s`` from a strict DER signature; CryptoError for anything that is not minimal DER of two
    positive integers below 2**256 (a lenient parser would give one signature several encodings)."""
    der = bytes(der)

    def integer(pos: int) -> tuple[int, int]:
        if pos + 2 > len(der) or der[pos] != 0x02:
            raise CryptoError("bad DER signature: INTEGER expected")
        length = der[pos + 1]
        body = der[pos + 2 : pos + 2 + length]
        if length == 0 or length > 33 or len(body) != length:
            raise CryptoError("bad DER signature: INTEGER length")
        if body[0] & 0x80 or (length > 1 and body[0] == 0 and not body[1] & 0x80):
            raise CryptoError("bad DER signature: negative or non-minimal INTEGER")
        value = int.from_bytes(body, "big")
        if value >= 1 << 256:
            raise CryptoError("bad DER signature: INTEGER too large")
        return value, pos + 2 + length

    if len(der) < 2 or der[0] != 0x30 or der[1] != len(der) - 2 or der[1] >= 0x80:
        raise CryptoError("bad DER signature: SEQUENCE expected")
    r, pos = integer(2)
    s, pos = integer(pos)
    if pos != len(der):
        raise CryptoError("bad DER signature: trailing bytes")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pem_decode(pem: bytes) -> tuple[bytes, bytes]:
    """(label, DER) of the first PEM block; CryptoError if there is none or its base64 is broken."""
    match = _PEM_RE.search(bytes(pem))
    if match is None:
        raise CryptoError("no PEM block found")
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except ValueError:
        raise CryptoError("PEM body is not base64 (legacy encrypted PEM is not supported)") from None
    return match.group(1), der


def _pem_encode(label: bytes, der: bytes) -> bytes:
    """A PEM block with 64-character lines, as OpenSSL writes them."""
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, b"\n".join(lines), label)


# -- libcrypto -------------------------------------------------------------------------------------------

_vp = ctypes.c_void_p
_PROTOTYPES: Final[dict[str, tuple[Any, list[Any]]]] = {
    # name: (restype, argtypes). Every pointer is c_void_p so that 64-bit pointers are never truncated to int.
    "OpenSSL_version_num": (ctypes.c_ulong, []),
    "ERR_clear_error": (None, []),
    "EVP_sm3": (_vp, []),
    "EVP_aes_256_cbc": (_vp, []),
    "EVP_PKEY_free": (None, [_vp]),
    "EVP_PKEY_is_a": (ctypes.c_int, [_vp, ctypes.c_char_p]),
    "EVP_PKEY_get_bn_param": (ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.POINTER(_vp)]),
    "BN_bn2binpad": (ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    "BN_clear_free": (None, [_vp]),
    "d2i_PUBKEY": (_vp, [_vp, ctypes.POINTER(_vp), ctypes.c_long]),
    "i2d_PUBKEY": (ctypes.c_int, [_vp, ctypes.POINTER(_vp)]),
    "d2i_PKCS8_PRIV_KEY_INFO": (_vp, [_vp, ctypes.POINTER(_vp), ctypes.c_long]),
    "PKCS8_PRIV_KEY_INFO_free": (None, [_vp]),
    "EVP_PKCS82PKEY": (_vp, [_vp]),
    "d2i_X509_SIG": (_vp, [_vp, ctypes.POINTER(_vp), ctypes.c_long]),
    "X509_SIG_free": (None, [_vp]),
    "PKCS8_decrypt": (_vp, [_vp, ctypes.c_char_p, ctypes.c_int]),
    "EVP_MD_CTX_new": (_vp, []),
    "EVP_MD_CTX_free": (None, [_vp]),
    "EVP_MD_CTX_set_pkey_ctx": (None, [_vp, _vp]),
    "EVP_PKEY_CTX_new": (_vp, [_vp, _vp]),
    "EVP_PKEY_CTX_free": (None, [_vp]),
    "EVP_PKEY_CTX_set1_id": (ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    "EVP_DigestSignInit": (ctypes.c_int, [_vp, _vp, _vp, _vp, _vp]),
    "EVP_DigestSign": (
        ctypes.c_int,
        [_vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t],
    ),
    "EVP_DigestVerifyInit": (ctypes.c_int, [_vp, _vp, _vp, _vp, _vp]),
    "EVP_DigestVerify": (ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]),
    "BIO_s_mem": (_vp, []),
    "BIO_new": (_vp, [_vp]),
    "BIO_free": (ctypes.c_int, [_vp]),
    "BIO_ctrl": (ctypes.c_long, [_vp, ctypes.c_int, ctypes.c_long, _vp]),
    "PEM_write_bio_PKCS8PrivateKey": (ctypes.c_int, [_vp, _vp, _vp, ctypes.c_char_p, ctypes.c_int, _vp, _vp]),
}
_BIO_CTRL_INFO: Final = 3  # BIO_get_mem_data is a macro over BIO_ctrl(bio, BIO_CTRL_INFO, 0, &ptr)


@functools.cache
def _libcrypto() -> ctypes.CDLL:
    """The system libcrypto (OpenSSL ≥ 3.0, where ``EVP_PKEY_CTX_set1_id`` is a function), loaded once.

    Loaded lazily so that a machine without it can still run an Ed25519 chain.
    """
    candidates = [ctypes.util.find_library("crypto"), "libcrypto.so.3"]
    problems = []
    for candidate in candidates:
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
            version = lib.OpenSSL_version_num
            version.restype, version.argtypes = ctypes.c_ulong, []
            if version() < 0x30000000:
                problems.append(f"{candidate} is OpenSSL {version():#x}, older than 3.0")
                continue
            for name, (restype, argtypes) in _PROTOTYPES.items():
                function = getattr(lib, name)
                function.restype, function.argtypes = restype, argtypes
        except (OSError, AttributeError) as exc:
            problems.append(f"{candidate}: {exc}")
            continue
        return lib
    raise CryptoError(f"SM2 needs the OpenSSL 3 libcrypto ({'; '.join(problems) or 'not found'})")


class _PKey:
    """Owner of one EVP_PKEY, freed when the last Python reference to it goes away."""

    __slots__ = ("_free", "ptr")

    def __init__(self, ptr: int, free: Callable[[int], None]) -> None:
        """Take ownership of ``ptr``; ``free`` is kept here so it still exists at interpreter shutdown."""
        self.ptr = ptr
        self._free = free

    def __del__(self) -> None:
        """Release the OpenSSL key."""
        self._free(self.ptr)


# -- the suite -------------------------------------------------------------------------------------------


class Sm2Suite(Suite):
    """SM2 (ID 1234567812345678) + SM3 + SM4-GCM. Thread-safe: no OpenSSL context outlives one call."""

    name: ClassVar[str] = "sm2"
    hash_name: ClassVar[str] = "sm3"
    public_key_size: ClassVar[int] = 65
    signature_size: ClassVar[int] = 64
    symmetric_key_size: ClassVar[int] = 16

    def __init__(self) -> None:
        """Load libcrypto, check SM2 with the ID works on it, and start empty caches."""
        self._lib = _libcrypto()
        self._sm3_md: int = self._lib.EVP_sm3()
        self._sm3 = hashlib.new("sm3")  # copied per hash: cheaper than looking the name up each time
        self._public_keys: dict[bytes, _PKey] = {}
        self._private_keys: dict[bytes, tuple[_PKey, bytes]] = {}
        if not self._sm3_md or not self.verify(_KAT_PUBLIC_KEY, _KAT_MESSAGE, _KAT_SIGNATURE):
            raise CryptoError("this libcrypto's SM2 fails the known-answer test (no SM2, or the ID is ignored)")

    # -- hashing -----------------------------------------------------------------------------------------

    def hash(self, data: bytes) -> bytes:
        """SM3 of ``data`` (hashlib's, i.e. OpenSSL's)."""
        h = self._sm3.copy()
        h.update(data)
        return h.digest()

    # -- OpenSSL plumbing --------------------------------------------------------------------------------

    def _own(self, ptr: int | None) -> _PKey | None:
        """Wrap a fresh EVP_PKEY (None when OpenSSL returned NULL, after clearing its error queue)."""
        if not ptr:
            self._lib.ERR_clear_error()
            return None
        return _PKey(ptr, self._lib.EVP_PKEY_free)

    def _d2i(self, function: Any, der: bytes) -> int | None:
        """Call an OpenSSL ``d2i_*`` decoder on ``der`` and return the object pointer (None on failure)."""
        buffer = ctypes.create_string_buffer(der, len(der))
        cursor = _vp(ctypes.addressof(buffer))
        result: int | None = function(None, ctypes.byref(cursor), len(der))
        if not result:
            self._lib.ERR_clear_error()
        return result

    def _is_sm2(self, pkey: _PKey) -> bool:
        """Whether OpenSSL typed the key as SM2 (an EC key on the SM2 curve), not P-256, Ed25519, RSA …"""
        return self._lib.EVP_PKEY_is_a(pkey.ptr, b"SM2") == 1

    def _public_pkey(self, public_key: bytes) -> _PKey | None:
        """The cached EVP_PKEY of a raw public key; None if it is not a point of the curve."""
        pkey = self._public_keys.get(public_key)
        if pkey is None:
            if len(public_key) != 65 or public_key[0] != 0x04:
                return None
            pkey = self._own(self._d2i(self._lib.d2i_PUBKEY, _SPKI_PREFIX + public_key))
            if pkey is None or not self._is_sm2(pkey):
                return None  # OpenSSL checks the coordinates are < p and the point is on the curve
            _remember(self._public_keys, public_key, pkey, PUBLIC_KEY_CACHE_SIZE)
        return pkey

    def _pkey_from_pkcs8_info(self, info: int | None) -> _PKey | None:
        """EVP_PKEY of a PKCS8_PRIV_KEY_INFO, which is freed here."""
        if not info:
            self._lib.ERR_clear_error()
            return None
        try:
            return self._own(self._lib.EVP_PKCS82PKEY(info))
        finally:
            self._lib.PKCS8_PRIV_KEY_INFO_free(info)

    def _private_pkey(self, private_key: bytes) -> tuple[_PKey, bytes]:
        """The cached (EVP_PKEY, raw public key) of a raw private key; CryptoError if d is out of range."""
        private_key = bytes(private_key)
        entry = self._private_keys.get(private_key)
        if entry is None:
            if len(private_key) != 32 or not 1 <= int.from_bytes(private_key, "big") <= SM2_N - 2:
                raise CryptoError("an SM2 private key is a 32-byte scalar in [1, n-2]")
            info = self._d2i(self._lib.d2i_PKCS8_PRIV_KEY_INFO, _PKCS8_PREFIX + private_key)
            pkey = self._pkey_from_pkcs8_info(info)
            if pkey is None or not self._is_sm2(pkey):
                raise CryptoError("OpenSSL did not accept the SM2 private key")
            entry = (pkey, self._encoded_public_key(pkey))
            _remember(self._private_keys, private_key, entry, PRIVATE_KEY_CACHE_SIZE)
        return entry

    def _encoded_public_key(self, pkey: _PKey) -> bytes:
        """04‖X‖Y of a key, read back from its SubjectPublicKeyInfo DER."""
        size = self._lib.i2d_PUBKEY(pkey.ptr, None)
        buffer = ctypes.create_string_buffer(max(size, 0))
        cursor = _vp(ctypes.addressof(buffer))
        if size != len(_SPKI_PREFIX) + 65 or self._lib.i2d_PUBKEY(pkey.ptr, ctypes.byref(cursor)) != size:
            self._lib.ERR_clear_error()
            raise CryptoError("OpenSSL could not encode the SM2 public key")
        der = buffer.raw
        if not der.startswith(_SPKI_PREFIX):
            raise CryptoError("unexpected SM2 public key encoding")
        return der[len(_SPKI_PREFIX) :]

    def _digest_sign_or_verify(self, pkey: _PKey, message: bytes, der_signature: bytes | None) -> bytes | bool:
        """One SM3-with-SM2 operation under ID 1234567812345678: sign when ``der_signature`` is None (returns DER),
        otherwise verify it (returns bool). Contexts live for this call only, so threads never share one."""
        lib = self._lib
        md_ctx = lib.EVP_MD_CTX_new()
        pkey_ctx = lib.EVP_PKEY_CTX_new(pkey.ptr, None)
        try:
            if not md_ctx or not pkey_ctx:
                raise MemoryError("OpenSSL could not allocate a signature context")
            if lib.EVP_PKEY_CTX_set1_id(pkey_ctx, DEFAULT_ID, len(DEFAULT_ID)) != 1:
                raise CryptoError("OpenSSL refused the SM2 distinguishing ID")
            # The MD_CTX borrows pkey_ctx (flag KEEP_PKEY_CTX): we still free it ourselves, after md_ctx.
            lib.EVP_MD_CTX_set_pkey_ctx(md_ctx, pkey_ctx)
            if der_signature is None:
                if lib.EVP_DigestSignInit(md_ctx, None, self._sm3_md, None, pkey.ptr) != 1:
                    raise CryptoError("EVP_DigestSignInit failed")
                buffer = ctypes.create_string_buffer(80)  # DER of two 256-bit integers is at most 72 bytes
                size = ctypes.c_size_t(len(buffer))
                if lib.EVP_DigestSign(md_ctx, buffer, ctypes.byref(size), message, len(message)) != 1:
                    raise CryptoError("EVP_DigestSign failed")
                return buffer.raw[: size.value]
            if lib.EVP_DigestVerifyInit(md_ctx, None, self._sm3_md, None, pkey.ptr) != 1:
                raise CryptoError("EVP_DigestVerifyInit failed")
            return bool(
                lib.EVP_DigestVerify(md_ctx, der_signature, len(der_signature), message, len(message)) == 1
            )
        finally:
            lib.ERR_clear_error()
            lib.EVP_MD_CTX_free(md_ctx)  # both free functions accept NULL
            lib.EVP_PKEY_CTX_free(pkey_ctx)

    # -- signatures --------------------------------------------------------------------------------------

    def private_key_from_seed(self, seed: bytes) -> bytes:
        """d = (seed as a big-endian integer mod (n−2)) + 1, always in [1, n−2].

        Reducing 256 uniform bits mod n−2 is slightly biased: n is about 2**256 − 2**224, so the lowest ~2**224
        scalars have two preimages instead of one (statistical distance ≈ 2**-32). No d is more than twice as likely
        as another, so the key keeps at least 255 bits of min-entropy; a wider input would remove the bias but
        would no longer map a seed below n−2 to seed + 1, which makes keys easy to reason about in tests.
        """
        if len(seed) != 32:
            raise CryptoError(f"an SM2 seed is 32 bytes, got {len(seed)}")
        d = int.from_bytes(seed, "big") % (SM2_N - 2) + 1
        return d.to_bytes(32, "big")

    def get_public_key(self, private_key: bytes) -> bytes:
        """The 65-byte uncompressed public point d·G."""
        return self._private_pkey(private_key)[1]

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        """A 64-byte r‖s SM2 signature of SM3(Z_A‖message); randomised (OpenSSL draws k from its DRBG)."""
        pkey, _ = self._private_pkey(private_key)
        der = self._digest_sign_or_verify(pkey, bytes(message), None)
        assert isinstance(der, bytes)
        return signature_from_der(der)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Check a raw r‖s signature; False, never an exception, for anything malformed.

        r and s must lie in [1, n−1] (checked here: the DER conversion would otherwise accept encodings that
        OpenSSL then rejects only deep inside, and r, s ≥ n would make the raw form ambiguous).
        """
        try:
            if len(signature) != 64:
                return False
            signature = bytes(signature)
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            if not (0 < r < SM2_N and 0 < s < SM2_N):
                return False
            pkey = self._public_pkey(bytes(public_key))
            if pkey is None:
                return False
            return bool(self._digest_sign_or_verify(pkey, bytes(message), signature_to_der(signature)))
        except Exception:  # a malformed argument or an OpenSSL failure: either way, not a valid signature
            return False

    def is_valid_public_key(self, public_key: bytes) -> bool:
        """True iff ``public_key`` is 04‖X‖Y with X, Y < p on the SM2 curve (cofactor 1: no subgroup check)."""
        try:
            return self._public_pkey(bytes(public_key)) is not None
        except Exception:
            return False

    # -- keys on disk ------------------------------------------------------------------------------------

    def private_key_to_pem(self, private_key: bytes, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM written by OpenSSL; with a (non-empty) password PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC).

        ``openssl pkey -in key.pem [-passin pass:…]`` reads the result; the algorithm is id-ecPublicKey with the
        SM2 curve OID, as ``openssl genpkey -algorithm SM2`` writes it.
        """
        _, public_key = self._private_pkey(private_key)  # validates the scalar
        der = _PKCS8_FULL_PREFIX + bytes(private_key) + _PKCS8_FULL_INFIX + public_key
        pkey = self._pkey_from_pkcs8_info(self._d2i(self._lib.d2i_PKCS8_PRIV_KEY_INFO, der))
        if pkey is None:
            raise CryptoError("OpenSSL did not accept the SM2 private key")
        lib = self._lib
        bio = lib.BIO_new(lib.BIO_s_mem())
        if not bio:
            raise MemoryError("OpenSSL could not allocate a BIO")
        try:
            if password:
                password = bytes(password)
                ok = lib.PEM_write_bio_PKCS8PrivateKey(
                    bio, pkey.ptr, lib.EVP_aes_256_cbc(), password, len(password), None, None
                )
            else:
                ok = lib.PEM_write_bio_PKCS8PrivateKey(bio, pkey.ptr, None, None, 0, None, None)
            if ok != 1:
                lib.ERR_clear_error()
                raise CryptoError("OpenSSL could not write the SM2 private key")
            data = ctypes.c_void_p()
            size = lib.BIO_ctrl(bio, _BIO_CTRL_INFO, 0, ctypes.byref(data))
            return ctypes.string_at(data.value, size) if size > 0 and data.value else b""
        finally:
            lib.BIO_free(bio)

    def private_key_from_pem(self, pem: bytes, password: bytes | None = None) -> bytes:
        """The raw d of a PKCS#8 SM2 key, plain or encrypted. CryptoError on a wrong/missing password or a key
        of another type. A password given for an unencrypted PEM is ignored, as in the Ed25519 suite."""
        label, der = _pem_decode(pem)
        lib = self._lib
        if label == b"ENCRYPTED PRIVATE KEY":
            if not password:
                raise CryptoError("the key is encrypted: a password is needed")
            password = bytes(password)
            envelope = self._d2i(lib.d2i_X509_SIG, der)
            if not envelope:
                raise CryptoError("not an encrypted PKCS#8 structure")
            try:
                info = lib.PKCS8_decrypt(envelope, password, len(password))
            finally:
                lib.X509_SIG_free(envelope)
            if not info:
                lib.ERR_clear_error()
                raise CryptoError("wrong password, or a corrupted key file")
        elif label == b"PRIVATE KEY":
            info = self._d2i(lib.d2i_PKCS8_PRIV_KEY_INFO, der)
        else:
            raise CryptoError(f"expected a PKCS#8 private key, found a PEM {label.decode(errors='replace')!r}")
        pkey = self._pkey_from_pkcs8_info(info)
        if pkey is None:
            raise CryptoError("not a readable PKCS#8 private key")
        if not self._is_sm2(pkey):
            raise CryptoError("not an SM2 key")
        return self._private_scalar(pkey)

    def _private_scalar(self, pkey: _PKey) -> bytes:
        """The 32-byte big-endian d of a private EVP_PKEY, checked to be in [1, n−2]."""
        lib = self._lib
        bn = _vp()
        if lib.EVP_PKEY_get_bn_param(pkey.ptr, b"priv", ctypes.byref(bn)) != 1 or not bn.value:
            lib.ERR_clear_error()
            raise CryptoError("the SM2 key has no private part")
        try:
            buffer = ctypes.create_string_buffer(32)
            if lib.BN_bn2binpad(bn, buffer, 32) != 32:
                lib.ERR_clear_error()
                raise CryptoError("the SM2 private scalar does not fit 32 bytes")
            private_key = buffer.raw
        finally:
            lib.BN_clear_free(bn)
        if not 1 <= int.from_bytes(private_key, "big") <= SM2_N - 2:
            raise CryptoError("the SM2 private scalar is outside [1, n-2]")
        return private_key

    def public_key_to_pem(self, public_key: bytes) -> bytes:
        """SubjectPublicKeyInfo PEM (id-ecPublicKey, SM2 curve), as ``openssl pkey -pubout`` writes it."""
        public_key = bytes(public_key)
        if not self.is_valid_public_key(public_key):
            raise CryptoError("not an SM2 public key")
        return _pem_encode(b"PUBLIC KEY", _SPKI_PREFIX + public_key)

    # -- symmetric encryption ----------------------------------------------------------------------------

    @staticmethod
    def _check_sizes(key: bytes, nonce: bytes) -> None:
        """SM4 has 128-bit keys only; GCM is used with 96-bit nonces only (RFC 8998)."""
        if len(key) != 16:
            raise CryptoError(f"an SM4 key is 16 bytes, got {len(key)}")
        if len(nonce) != 12:
            raise CryptoError(f"the GCM nonce is 12 bytes, got {len(nonce)}")

    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """SM4-GCM: ciphertext‖16-byte tag. The caller must never reuse a nonce under one key."""
        self._check_sizes(key, nonce)
        encryptor = Cipher(algorithms.SM4(bytes(key)), modes.GCM(bytes(nonce))).encryptor()
        encryptor.authenticate_additional_data(bytes(associated_data))
        ciphertext = encryptor.update(bytes(plaintext)) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
        """SM4-GCM decryption; CryptoError when the tag does not verify."""
        self._check_sizes(key, nonce)
        if len(ciphertext) < 16:
            raise CryptoError("ciphertext shorter than the GCM tag")
        ciphertext = bytes(ciphertext)
        decryptor = Cipher(algorithms.SM4(bytes(key)), modes.GCM(bytes(nonce), ciphertext[-16:])).decryptor()
        decryptor.authenticate_additional_data(bytes(associated_data))
        plaintext = decryptor.update(ciphertext[:-16])
        try:
            return plaintext + decryptor.finalize()
        except InvalidTag:
            raise CryptoError("ciphertext or associated data altered, or wrong key") from None
