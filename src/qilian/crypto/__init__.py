"""Cryptography of a Qilian chain: two suites, chosen once in genesis, plus Merkle trees.

``get_suite("sm2")`` — SM2 / SM3 / SM4-GCM (the national standards); ``get_suite("ed25519")`` — Ed25519 /
SHA-256 / AES-256-GCM. Suites are process-wide singletons so that their key caches are shared by every caller.
"""

from __future__ import annotations

from typing import Final

from qilian.crypto.suite import CryptoError, Suite

__all__ = ["SUITES", "CryptoError", "Suite", "get_suite"]

SUITES: Final = ("sm2", "ed25519")
"""Suite names a genesis may name."""

_instances: dict[str, Suite] = {}


def get_suite(name: str) -> Suite:
    """The shared instance of the suite called ``name``; ValueError for an unknown name.

    Modules are imported on first use, so an Ed25519 chain never needs the OpenSSL 3 libcrypto that SM2 loads.
    Two threads racing on the first call may each build an instance; one wins and the other is dropped, which is
    harmless (instances hold nothing but caches).
    """
    suite = _instances.get(name)
    if suite is None:
        if name == "sm2":
            from qilian.crypto.sm2 import Sm2Suite

            suite = Sm2Suite()
        elif name == "ed25519":
            from qilian.crypto.ed25519 import Ed25519Suite

            suite = Ed25519Suite()
        else:
            raise ValueError(f"unknown crypto suite {name!r}; valid suites: {', '.join(SUITES)}")
        suite = _instances.setdefault(name, suite)
    return suite
