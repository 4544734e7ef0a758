"""Both crypto suites against published test vectors, malformed input, key files and random round trips.

Standard vectors pin the primitives (SM3: GB/T 32905 appendix A; Ed25519: RFC 8032 §7.1; SM4-GCM: RFC 8998
appendix A.1). SM2 signatures are randomised, so they are pinned by interoperability instead (see
test_sm2_openssl_interop.py) and by a known-answer signature made with the ``openssl`` CLI.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qilian.crypto import SUITES, CryptoError, Suite, get_suite
from qilian.crypto import ed25519 as ed25519_module
from qilian.crypto import sm2 as sm2_module
from qilian.crypto.ed25519 import Ed25519Suite
from qilian.crypto.sm2 import SM2_N, Sm2Suite, signature_from_der, signature_to_der

SM2 = get_suite("sm2")
ED = get_suite("ed25519")
BOTH = pytest.mark.parametrize("suite", [SM2, ED], ids=["sm2", "ed25519"])
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- registry ----------------------------------------------------------------------------------------------


def test_get_suite_returns_shared_instances() -> None:
    assert SUITES == ("sm2", "ed25519")
    assert isinstance(SM2, Sm2Suite) and isinstance(ED, Ed25519Suite)
    assert get_suite("sm2") is SM2 and get_suite("ed25519") is ED
    for name in SUITES:
        suite = get_suite(name)
        assert isinstance(suite, Suite) and suite.name == name


def test_get_suite_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"sm2.*ed25519"):
        get_suite("secp256k1")


def test_suite_constants() -> None:
    assert (SM2.hash_name, SM2.public_key_size, SM2.signature_size, SM2.symmetric_key_size) == ("sm3", 65, 64, 16)
    assert (ED.hash_name, ED.public_key_size, ED.signature_size, ED.symmetric_key_size) == ("sha256", 32, 64, 32)


# -- hashes ------------------------------------------------------------------------------------------------


def test_sm3_gbt32905_vectors() -> None:
    assert SM2.hash(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert SM2.hash(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sha256_vector_and_addresses() -> None:
    assert ED.hash(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    for suite in (SM2, ED):
        public_key = suite.get_public_key(suite.private_key_from_seed(b"\x05" * 32))
        assert suite.compute_address(public_key) == suite.hash(public_key)[:20]


def test_sm3_hash_is_not_shared_state() -> None:
    """The SM3 suite copies a prototype hash object: consecutive and interleaved calls must not mix."""
    assert SM2.hash(b"a") != SM2.hash(b"a" + b"")[:0] + SM2.hash(b"b")
    assert SM2.hash(b"abc") == SM2.hash(b"abc") == hashlib.new("sm3", b"abc").digest()


# -- Ed25519: RFC 8032 §7.1 --------------------------------------------------------------------------------

RFC8032 = [
    (  # TEST 1
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (  # TEST 2
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (  # TEST 3
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (  # TEST SHA(abc): the message is SHA-512("abc")
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032, ids=["1", "2", "3", "sha-abc"])
def test_ed25519_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    private_key = ED.private_key_from_seed(bytes.fromhex(secret))
    assert private_key == bytes.fromhex(secret)
    assert ED.get_public_key(private_key).hex() == public
    assert ED.sign(private_key, bytes.fromhex(message)).hex() == signature
    assert ED.verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))
    assert not ED.verify(bytes.fromhex(public), bytes.fromhex(message) + b"\x00", bytes.fromhex(signature))


def test_ed25519_rejects_non_canonical_s_and_small_order_keys() -> None:
    """Malleability: S + L is the same signature to a lax verifier; libsodium refuses it, as must the chain."""
    _, public, _, signature = RFC8032[0]
    sig = bytes.fromhex(signature)
    ell = 2**252 + 27742317777372353535851937790883648493
    s_plus_l = (int.from_bytes(sig[32:], "little") + ell).to_bytes(32, "little")
    assert not ED.verify(bytes.fromhex(public), b"", sig[:32] + s_plus_l)
    identity = (1).to_bytes(32, "little")  # the neutral element: small order
    assert not ED.is_valid_public_key(identity)
    assert not ED.verify(identity, b"", bytes(64))
    assert ED.is_valid_public_key(bytes.fromhex(public))


# -- SM2 specifics -----------------------------------------------------------------------------------------


def test_sm2_known_answer_signature_from_openssl() -> None:
    """A signature made with ``openssl dgst -sm3 -sign k.pem -sigopt distid:1234567812345678`` verifies."""
    assert SM2.verify(sm2_module._KAT_PUBLIC_KEY, sm2_module._KAT_MESSAGE, sm2_module._KAT_SIGNATURE)
    assert not SM2.verify(sm2_module._KAT_PUBLIC_KEY, b"hellO", sm2_module._KAT_SIGNATURE)


def test_sm2_seed_maps_into_valid_scalar_range() -> None:
    assert int.from_bytes(SM2.private_key_from_seed(bytes(32)), "big") == 1
    assert int.from_bytes(SM2.private_key_from_seed(b"\xff" * 32), "big") <= SM2_N - 2
    assert int.from_bytes(SM2.private_key_from_seed((SM2_N - 2).to_bytes(32, "big")), "big") == 1
    assert int.from_bytes(SM2.private_key_from_seed((SM2_N - 3).to_bytes(32, "big")), "big") == SM2_N - 2
    assert SM2.private_key_from_seed(b"\x42" * 32) == SM2.private_key_from_seed(b"\x42" * 32)


@pytest.mark.parametrize("d", [1, 2, SM2_N - 2])
def test_sm2_extreme_private_keys_sign(d: int) -> None:
    private_key = d.to_bytes(32, "big")
    public_key = SM2.get_public_key(private_key)
    assert len(public_key) == 65 and public_key[0] == 4
    assert SM2.verify(public_key, b"m", SM2.sign(private_key, b"m"))


def test_sm2_generator_is_the_public_key_of_one() -> None:
    gx = "32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7"
    gy = "bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0"
    assert SM2.get_public_key((1).to_bytes(32, "big")).hex() == "04" + gx + gy


@pytest.mark.parametrize("d", [0, SM2_N - 1, SM2_N, 2**256 - 1])
def test_sm2_out_of_range_private_keys_are_refused(d: int) -> None:
    with pytest.raises(CryptoError):
        SM2.sign(d.to_bytes(32, "big"), b"m")
    with pytest.raises(CryptoError):
        SM2.get_public_key(d.to_bytes(32, "big"))


def test_sm2_signatures_are_randomised_but_all_valid() -> None:
    private_key = SM2.private_key_from_seed(b"\x01" * 32)
    public_key = SM2.get_public_key(private_key)
    signatures = {SM2.sign(private_key, b"same message") for _ in range(4)}
    assert len(signatures) == 4
    assert all(SM2.verify(public_key, b"same message", s) for s in signatures)


def test_sm2_r_and_s_must_be_in_range() -> None:
    private_key = SM2.private_key_from_seed(b"\x02" * 32)
    public_key = SM2.get_public_key(private_key)
    sig = SM2.sign(private_key, b"m")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    for bad_r, bad_s in [(0, s), (r, 0), (SM2_N, s), (r, SM2_N), (r + SM2_N, s), (r, s + SM2_N), (2**256 - 1, s)]:
        if bad_r >= 2**256 or bad_s >= 2**256:
            continue
        assert not SM2.verify(public_key, b"m", bad_r.to_bytes(32, "big") + bad_s.to_bytes(32, "big"))
    # (r, n − s) is not a valid SM2 signature (unlike ECDSA, SM2 is not malleable this way).
    assert not SM2.verify(public_key, b"m", sig[:32] + (SM2_N - s).to_bytes(32, "big"))


def test_sm2_garbage_public_keys() -> None:
    private_key = SM2.private_key_from_seed(b"\x03" * 32)
    public_key = SM2.get_public_key(private_key)
    sig = SM2.sign(private_key, b"m")
    p = sm2_module.SM2_P
    x, y = public_key[1:33], public_key[33:]
    not_on_curve = b"\x04" + x + (int.from_bytes(y, "big") ^ 1).to_bytes(32, "big")
    x_too_big = b"\x04" + (int.from_bytes(x, "big") + p).to_bytes(33, "big")[-32:] + y
    negated = b"\x04" + x + (p - int.from_bytes(y, "big")).to_bytes(32, "big")
    compressed = bytes([2 + (y[-1] & 1)]) + x
    hybrid = b"\x06" + x + y
    for bad in [b"", b"\x04", bytes(65), b"\x04" + bytes(64), not_on_curve, x_too_big, compressed, hybrid,
                public_key[:-1], public_key + b"\x00", b"\x00" * 64, b"\xff" * 65]:
        assert not SM2.is_valid_public_key(bad), bad.hex()
        assert not SM2.verify(bad, b"m", sig)
    assert SM2.is_valid_public_key(negated)  # a valid point, just the wrong key
    assert not SM2.verify(negated, b"m", sig)
    with pytest.raises(CryptoError):
        SM2.public_key_to_pem(not_on_curve)


def test_sm2_der_conversion() -> None:
    raw = (1).to_bytes(32, "big") + (SM2_N - 1).to_bytes(32, "big")
    der = signature_to_der(raw)
    assert der.hex().startswith("3026020101022100")  # minimal INTEGERs, 00 pad before a high bit
    assert signature_from_der(der) == raw
    for bad in [
        b"",
        der[:-1],
        der + b"\x00",
        bytes.fromhex("30070202000102010100"),  # non-minimal INTEGER (leading 00 without need)
        bytes.fromhex("3006020180020101"),  # negative INTEGER
        bytes.fromhex("3006020001020101"),  # zero-length INTEGER
        bytes.fromhex("3106020101020101"),  # SET, not SEQUENCE
        bytes.fromhex("300602010102010101"),  # trailing byte inside
    ]:
        with pytest.raises(CryptoError):
            signature_from_der(bad)
    with pytest.raises(CryptoError):
        signature_to_der(b"\x00" * 63)


# -- both suites: negative cases ---------------------------------------------------------------------------


@BOTH
def test_sign_verify_and_forgeries(suite: Suite) -> None:
    private_key = suite.private_key_from_seed(b"\x11" * 32)
    public_key = suite.get_public_key(private_key)
    other_key = suite.get_public_key(suite.private_key_from_seed(b"\x12" * 32))
    message = b"transfer 100 to bob"
    sig = suite.sign(private_key, message)
    assert len(sig) == suite.signature_size and len(public_key) == suite.public_key_size
    assert suite.verify(public_key, message, sig)
    assert suite.is_valid_public_key(public_key)
    assert not suite.verify(other_key, message, sig)
    assert not suite.verify(public_key, b"transfer 900 to bob", sig)
    assert not suite.verify(public_key, message + b"\x00", sig)
    assert not suite.verify(public_key, b"", sig)
    for bit in (0, 7, 255, 256, 300, 511):
        assert not suite.verify(public_key, message, _flip(sig, bit))
    for bit in (0, 9, 8 * len(message) - 1):
        assert not suite.verify(public_key, _flip(message, bit), sig)
    assert not suite.verify(public_key, message, bytes(64))
    assert not suite.verify(public_key, message, b"\xff" * 64)


@BOTH
def test_wrong_lengths_and_types_give_false_not_exceptions(suite: Suite) -> None:
    private_key = suite.private_key_from_seed(b"\x13" * 32)
    public_key = suite.get_public_key(private_key)
    sig = suite.sign(private_key, b"m")
    assert not suite.verify(public_key, b"m", sig[:-1])
    assert not suite.verify(public_key, b"m", sig + b"\x00")
    assert not suite.verify(public_key, b"m", b"")
    assert not suite.verify(public_key[:-1], b"m", sig)
    assert not suite.verify(public_key + b"\x00", b"m", sig)
    assert not suite.verify(b"", b"m", sig)
    assert not suite.verify(public_key, "m", sig)  # type: ignore[arg-type]
    assert not suite.verify(None, b"m", sig)  # type: ignore[arg-type]
    assert not suite.verify(public_key, b"m", None)  # type: ignore[arg-type]
    assert suite.verify(bytearray(public_key), memoryview(b"m"), bytearray(sig))  # type: ignore[arg-type]
    assert not suite.is_valid_public_key(b"")
    assert not suite.is_valid_public_key(None)  # type: ignore[arg-type]


@BOTH
def test_bad_private_keys_and_seeds_raise_crypto_error(suite: Suite) -> None:
    for bad in (b"", b"\x01" * 31, b"\x01" * 33):
        with pytest.raises(CryptoError):
            suite.private_key_from_seed(bad)
        with pytest.raises(CryptoError):
            suite.sign(bad, b"m")
        with pytest.raises(CryptoError):
            suite.private_key_to_pem(bad)


# -- both suites: key files --------------------------------------------------------------------------------


@BOTH
def test_pem_round_trips(suite: Suite) -> None:
    private_key = suite.private_key_from_seed(b"\x21" * 32)
    pem = suite.private_key_to_pem(private_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert suite.private_key_from_pem(pem) == private_key
    encrypted = suite.private_key_to_pem(private_key, b"correct horse")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert private_key.hex().encode() not in encrypted
    assert suite.private_key_from_pem(encrypted, b"correct horse") == private_key
    assert suite.private_key_to_pem(private_key, b"correct horse") != encrypted  # fresh salt and IV
    # A password offered for a plain key file is ignored (one configured password can serve every key).
    assert suite.private_key_from_pem(pem, b"unused") == private_key
    public_pem = suite.public_key_to_pem(suite.get_public_key(private_key))
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n") and public_pem.endswith(b"-----END PUBLIC KEY-----\n")


@BOTH
def test_pem_wrong_or_missing_password(suite: Suite) -> None:
    encrypted = suite.private_key_to_pem(suite.private_key_from_seed(b"\x22" * 32), b"right")
    for wrong in (b"wrong", b"Right", b"righ", b"right!"):
        with pytest.raises(CryptoError):
            suite.private_key_from_pem(encrypted, wrong)
    # Not a bug of ours but of PBKDF2-HMAC: HMAC zero-pads short keys, so trailing NULs do not change the key.
    assert suite.private_key_from_pem(encrypted, b"right\x00") == suite.private_key_from_seed(b"\x22" * 32)
    for missing in (None, b""):
        with pytest.raises(CryptoError):
            suite.private_key_from_pem(encrypted, missing)


@BOTH
def test_pem_garbage_and_foreign_keys(suite: Suite) -> None:
    other = ED if suite is SM2 else SM2
    foreign = other.private_key_to_pem(other.private_key_from_seed(b"\x23" * 32))
    foreign_encrypted = other.private_key_to_pem(other.private_key_from_seed(b"\x23" * 32), b"pw")
    public_pem = suite.public_key_to_pem(suite.get_public_key(suite.private_key_from_seed(b"\x24" * 32)))
    broken = b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n"
    for bad in [b"", b"not a pem", public_pem, foreign, broken]:
        with pytest.raises(CryptoError):
            suite.private_key_from_pem(bad)
    with pytest.raises(CryptoError):
        suite.private_key_from_pem(foreign_encrypted, b"pw")


def test_sm2_pem_binary_password_with_nul_bytes() -> None:
    private_key = SM2.private_key_from_seed(b"\x25" * 32)
    encrypted = SM2.private_key_to_pem(private_key, b"a\x00b")
    assert SM2.private_key_from_pem(encrypted, b"a\x00b") == private_key
    with pytest.raises(CryptoError):
        SM2.private_key_from_pem(encrypted, b"a")


# -- both suites: AEAD -------------------------------------------------------------------------------------


def test_sm4_gcm_rfc8998_vector() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    nonce = bytes.fromhex("00001234567800000000abcd")
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    plaintext = bytes.fromhex(
        "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
        "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa"
    )
    expected = bytes.fromhex(
        "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        "83de3541e4c2b58177e065a9bf7b62ec"  # tag
    )
    assert SM2.encrypt(key, nonce, plaintext, aad) == expected
    assert SM2.decrypt(key, nonce, expected, aad) == plaintext


def test_aes_256_gcm_nist_vector() -> None:
    """NIST GCM spec (McGrew–Viega) test case 14: AES-256, zero key, one zero block."""
    out = ED.encrypt(bytes(32), bytes(12), bytes(16))
    assert out.hex() == "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"


@BOTH
def test_aead_round_trip_and_tampering(suite: Suite) -> None:
    key = bytes(range(suite.symmetric_key_size))
    nonce = b"\x09" * 12
    for plaintext in (b"", b"x", b"secret payload " * 100):
        sealed = suite.encrypt(key, nonce, plaintext, b"header")
        assert len(sealed) == len(plaintext) + 16
        assert suite.decrypt(key, nonce, sealed, b"header") == plaintext
        for bit in (0, 8 * len(sealed) - 1):
            with pytest.raises(CryptoError):
                suite.decrypt(key, nonce, _flip(sealed, bit), b"header")
        with pytest.raises(CryptoError):
            suite.decrypt(key, nonce, sealed, b"Header")
        with pytest.raises(CryptoError):
            suite.decrypt(_flip(key, 0), nonce, sealed, b"header")
        with pytest.raises(CryptoError):
            suite.decrypt(key, _flip(nonce, 3), sealed, b"header")
    with pytest.raises(CryptoError):
        suite.decrypt(key, nonce, b"short")
    with pytest.raises(CryptoError):
        suite.encrypt(key + b"\x00", nonce, b"x")
    with pytest.raises(CryptoError):
        suite.encrypt(key, nonce[:8], b"x")


# -- properties --------------------------------------------------------------------------------------------


@BOTH
@FAST
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300), data=st.data())
def test_property_round_trip_and_single_bit_flips(
    suite: Suite, seed: bytes, message: bytes, data: st.DataObject
) -> None:
    private_key = suite.private_key_from_seed(seed)
    public_key = suite.get_public_key(private_key)
    sig = suite.sign(private_key, message)
    assert suite.verify(public_key, message, sig)
    sig_bit = data.draw(st.integers(0, 8 * len(sig) - 1), label="signature bit")
    assert not suite.verify(public_key, message, _flip(sig, sig_bit))
    if message:
        message_bit = data.draw(st.integers(0, 8 * len(message) - 1), label="message bit")
        assert not suite.verify(public_key, _flip(message, message_bit), sig)
    key_bit = data.draw(st.integers(8 if suite is SM2 else 0, 8 * len(public_key) - 1), label="key bit")
    assert not suite.verify(_flip(public_key, key_bit), message, sig)


@BOTH
@settings(max_examples=25, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       plaintext=st.binary(max_size=200), aad=st.binary(max_size=40))
def test_property_aead_round_trip(suite: Suite, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> None:
    key = key[: suite.symmetric_key_size]
    assert suite.decrypt(key, nonce, suite.encrypt(key, nonce, plaintext, aad), aad) == plaintext


@BOTH
@settings(max_examples=60, deadline=None)
@given(public_key=st.binary(max_size=70), signature=st.binary(max_size=70), message=st.binary(max_size=20))
def test_property_random_bytes_never_raise(suite: Suite, public_key: bytes, signature: bytes, message: bytes) -> None:
    assert suite.verify(public_key, message, signature) in (False, True)
    assert suite.is_valid_public_key(public_key) in (False, True)


# -- caches and threads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite_class", "module", "cache_attribute", "limit_name"),
    [
        (Sm2Suite, sm2_module, "_public_keys", "PUBLIC_KEY_CACHE_SIZE"),
        (Ed25519Suite, ed25519_module, "_verify_keys", "VERIFY_KEY_CACHE_SIZE"),
    ],
)
def test_key_cache_is_bounded_and_thread_safe(
    suite_class: type[Suite], module: object, cache_attribute: str, limit_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads verifying under many keys with a tiny cache: constant eviction, never a wrong answer."""
    monkeypatch.setattr(module, limit_name, 3)
    suite = suite_class()
    keys = [suite.private_key_from_seed(bytes([i + 1]) * 32) for i in range(8)]
    signed = [(suite.get_public_key(k), b"msg %d" % i, suite.sign(k, b"msg %d" % i)) for i, k in enumerate(keys)]
    failures: list[str] = []

    def worker(offset: int) -> None:
        for round_ in range(40):
            public_key, message, sig = signed[(round_ + offset) % len(signed)]
            if not suite.verify(public_key, message, sig):
                failures.append(f"valid signature rejected ({offset}, {round_})")
            if suite.verify(public_key, message + b"!", sig):
                failures.append(f"invalid signature accepted ({offset}, {round_})")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(getattr(suite, cache_attribute)) <= 4
