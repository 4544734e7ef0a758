"""SM2 interoperability: Qilian ⇄ the ``openssl`` command line, and Qilian → the pure-Python ``gmssl`` oracle.

SM2 signatures are randomised, so no fixed vector can pin them; instead independent implementations must accept
each other's signatures under the GB/T 32918 default ID. The CLI incantations (OpenSSL 3.0):

    sign:    openssl dgst -sm3 -sign key.pem [-passin pass:PW] -sigopt distid:1234567812345678 -out sig.der msg
    verify:  openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -digest sm3 \\
                 -pkeyopt distid:1234567812345678 -in msg -sigfile sig.der
    (or)     openssl dgst -sm3 -verify pub.pem -sigopt distid:1234567812345678 -signature sig.der msg

Without ``distid`` OpenSSL 3.0 hashes an empty ID into Z_A, and verification fails; a test checks that too, so
that a Qilian build silently signing without the ID could not pass.

``gmssl`` is used only as a verifier: its signer draws nonces from ``random``, and its constructor mangles keys
(``public_key.lstrip("04")`` strips any leading '0'/'4' hex digits of X too), so the key is assigned after.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qilian.crypto import CryptoError, get_suite
from qilian.crypto.sm2 import DEFAULT_ID, signature_from_der, signature_to_der

SM2 = get_suite("sm2")
OPENSSL = shutil.which("openssl")
DISTID = "distid:" + DEFAULT_ID.decode()

needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command line is not installed")


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run the openssl CLI; with ``check`` fail the test showing its stderr."""
    assert OPENSSL is not None
    result = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=30)
    if check and result.returncode != 0:
        pytest.fail(f"openssl {' '.join(map(str, args))} failed: {result.stderr.decode(errors='replace')}")
    return result


def openssl_verifies(pub: Path, msg: Path, sig: Path, *, distid: bool = True) -> tuple[bool, bool]:
    """(pkeyutl verdict, dgst verdict) of the openssl CLI on a DER signature."""
    id_pkeyutl = ("-pkeyopt", DISTID) if distid else ()
    id_dgst = ("-sigopt", DISTID) if distid else ()
    pkeyutl = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", "sm3", *id_pkeyutl,
                      "-in", msg, "-sigfile", sig, check=False)
    dgst = openssl("dgst", "-sm3", "-verify", pub, *id_dgst, "-signature", sig, msg, check=False)
    return pkeyutl.returncode == 0, dgst.returncode == 0 and b"Verified OK" in dgst.stdout


@pytest.fixture(scope="module")
def openssl_has_sm2() -> None:
    if OPENSSL is None:
        pytest.skip("the openssl command line is not installed")
    if b"SM2" not in openssl("list", "-public-key-algorithms").stdout.upper():
        pytest.skip("this openssl has no SM2")


# -- Qilian signs, openssl verifies ------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("message", [b"", b"abc", b"\x00\xff" * 500], ids=["empty", "abc", "1000-bytes"])
def test_openssl_verifies_qilian_signatures(tmp_path: Path, openssl_has_sm2: None, message: bytes) -> None:
    private_key = SM2.private_key_from_seed(b"\x31" * 32)
    public_key = SM2.get_public_key(private_key)
    (tmp_path / "pub.pem").write_bytes(SM2.public_key_to_pem(public_key))
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig.der").write_bytes(signature_to_der(SM2.sign(private_key, message)))
    assert openssl_verifies(tmp_path / "pub.pem", tmp_path / "msg", tmp_path / "sig.der") == (True, True)
    # Without the ID OpenSSL uses an empty one, so the same signature must fail: proof the ID is really in Z_A.
    assert openssl_verifies(tmp_path / "pub.pem", tmp_path / "msg", tmp_path / "sig.der", distid=False) == (
        False,
        False,
    )
    (tmp_path / "msg").write_bytes(message + b"x")
    assert openssl_verifies(tmp_path / "pub.pem", tmp_path / "msg", tmp_path / "sig.der") == (False, False)


@needs_openssl
def test_openssl_reads_qilian_public_key_pem(tmp_path: Path, openssl_has_sm2: None) -> None:
    public_key = SM2.get_public_key(SM2.private_key_from_seed(b"\x32" * 32))
    (tmp_path / "pub.pem").write_bytes(SM2.public_key_to_pem(public_key))
    der = openssl("pkey", "-pubin", "-in", tmp_path / "pub.pem", "-outform", "DER").stdout
    assert der[-65:] == public_key
    text = openssl("pkey", "-pubin", "-in", tmp_path / "pub.pem", "-noout", "-text").stdout.decode()
    assert "SM2" in text


@needs_openssl
@pytest.mark.parametrize("password", [None, b"s3cret pass"])
def test_openssl_reads_qilian_private_key_pem(tmp_path: Path, openssl_has_sm2: None, password: bytes | None) -> None:
    private_key = SM2.private_key_from_seed(b"\x33" * 32)
    (tmp_path / "key.pem").write_bytes(SM2.private_key_to_pem(private_key, password))
    passin = ("-passin", "pass:" + password.decode()) if password else ()
    text = openssl("pkey", "-in", tmp_path / "key.pem", *passin, "-noout", "-text").stdout.decode()
    assert "SM2" in text
    flat = "".join(text.split()).replace(":", "")
    assert private_key.hex() in flat and SM2.get_public_key(private_key).hex() in flat
    if password:
        assert openssl("pkey", "-in", tmp_path / "key.pem", "-passin", "pass:wrong", check=False).returncode != 0


# -- openssl signs, Qilian verifies ------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("password", [None, b"s3cret pass"])
def test_qilian_verifies_openssl_signatures_made_with_qilian_keys(
    tmp_path: Path, openssl_has_sm2: None, password: bytes | None
) -> None:
    private_key = SM2.private_key_from_seed(b"\x34" * 32)
    public_key = SM2.get_public_key(private_key)
    (tmp_path / "key.pem").write_bytes(SM2.private_key_to_pem(private_key, password))
    message = b"signed by the openssl command line"
    (tmp_path / "msg").write_bytes(message)
    passin = ("-passin", "pass:" + password.decode()) if password else ()
    openssl("dgst", "-sm3", "-sign", tmp_path / "key.pem", *passin, "-sigopt", DISTID, "-out", tmp_path / "sig.der",
            tmp_path / "msg")
    raw = signature_from_der((tmp_path / "sig.der").read_bytes())
    assert SM2.verify(public_key, message, raw)
    assert not SM2.verify(public_key, message + b".", raw)
    # pkeyutl signs the same way.
    openssl("pkeyutl", "-sign", "-inkey", tmp_path / "key.pem", *passin, "-rawin", "-digest", "sm3",
            "-pkeyopt", DISTID, "-in", tmp_path / "msg", "-out", tmp_path / "sig2.der")
    assert SM2.verify(public_key, message, signature_from_der((tmp_path / "sig2.der").read_bytes()))
    # And without the ID, OpenSSL's signature is one nobody else accepts — nor do we.
    openssl("dgst", "-sm3", "-sign", tmp_path / "key.pem", *passin, "-out", tmp_path / "sig0.der", tmp_path / "msg")
    assert not SM2.verify(public_key, message, signature_from_der((tmp_path / "sig0.der").read_bytes()))


@needs_openssl
@pytest.mark.parametrize("encrypted", [False, True])
def test_qilian_reads_openssl_generated_keys(tmp_path: Path, openssl_has_sm2: None, encrypted: bool) -> None:
    cipher = ("-aes-256-cbc", "-pass", "pass:pw") if encrypted else ()
    openssl("genpkey", "-algorithm", "SM2", *cipher, "-out", tmp_path / "key.pem")
    passin = ("-passin", "pass:pw") if encrypted else ()
    openssl("pkey", "-in", tmp_path / "key.pem", *passin, "-pubout", "-outform", "DER", "-out", tmp_path / "pub.der")
    private_key = SM2.private_key_from_pem((tmp_path / "key.pem").read_bytes(), b"pw" if encrypted else None)
    assert SM2.get_public_key(private_key) == (tmp_path / "pub.der").read_bytes()[-65:]
    if encrypted:
        with pytest.raises(CryptoError):
            SM2.private_key_from_pem((tmp_path / "key.pem").read_bytes(), b"pW")


@needs_openssl
def test_foreign_openssl_keys_are_refused(tmp_path: Path) -> None:
    """A P-256 key is an EC key too; only the curve OID tells it apart, and it must not pass for SM2."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "p256.pem")
    openssl("genpkey", "-algorithm", "ED25519", "-out", tmp_path / "ed.pem")
    for name in ("p256.pem", "ed.pem"):
        with pytest.raises(CryptoError):
            SM2.private_key_from_pem((tmp_path / name).read_bytes())
    with pytest.raises(CryptoError):
        get_suite("ed25519").private_key_from_pem((tmp_path / "p256.pem").read_bytes())
    ed = get_suite("ed25519")
    assert len(ed.private_key_from_pem((tmp_path / "ed.pem").read_bytes())) == 32


# -- gmssl as an independent oracle ------------------------------------------------------------------------


def gmssl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """gmssl's SM2 verification (its default ID 1234567812345678), working around its key-parsing quirk."""
    sm2 = pytest.importorskip("gmssl.sm2")
    verifier = sm2.CryptSM2(private_key="", public_key="")
    verifier.public_key = public_key[1:].hex()  # X‖Y hex; set directly, bypassing the lstrip("04") bug
    return bool(verifier.verify_with_sm3(signature.hex(), message))


@settings(max_examples=12, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=100))
def test_gmssl_accepts_qilian_signatures(seed: bytes, message: bytes) -> None:
    private_key = SM2.private_key_from_seed(seed)
    public_key = SM2.get_public_key(private_key)
    signature = SM2.sign(private_key, message)
    assert gmssl_verify(public_key, message, signature)
    assert not gmssl_verify(public_key, message + b"\x01", signature)


def test_gmssl_accepts_keys_whose_x_starts_with_04() -> None:
    """The case gmssl's constructor would corrupt: our workaround must still hand it the right key."""
    for i in range(2000):
        private_key = SM2.private_key_from_seed(i.to_bytes(32, "big"))
        public_key = SM2.get_public_key(private_key)
        if public_key[1:].hex().startswith("04"):
            break
    else:
        pytest.skip("no key with X starting 04 among the first seeds")
    assert gmssl_verify(public_key, b"m", SM2.sign(private_key, b"m"))
