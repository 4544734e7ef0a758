"""Client side of copyright: the registration certificate and its offline check.

A certificate (``qilian-copyright-certificate`` v1) carries the genesis, the work record's state proof and every
transaction of the work's history (registration, transfers, grants, disputes) with its proofs, plus the
membership proof of each signer. :func:`check_certificate` replays the history: the registrant is the
organisation that signed the registration; each transfer must be signed by a key of the organisation holding the
rights at that point; the holder the certificate names is the last transfer's recipient — and must equal the
proven record's. A later claim says so, with the earlier registrations' numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from qilian.apps.certs import check_bundle, get_genesis, is_malformed
from qilian.apps.copyright.module import (
    COPYRIGHT_MODULE,
    COPYRIGHT_NAMESPACE,
    compute_entry_hash,
    compute_work_key,
    parse_number,
)
from qilian.execution.env import CallFailed
from qilian.sdk.verify import ProofInvalid, VerifiedTx
from qilian.types.core import Genesis

CERT_TYPE: Final = "qilian-copyright-certificate"
CERT_VERSION: Final = 2
"""2: each signer's membership proven at its transaction's height, and every proof carries the validator path it
needs; version 1 (membership at the tip) is still checked."""


@dataclass(frozen=True)
class CheckedWork:
    """What a copyright certificate proves; every field comes from verified bytes."""

    number: int
    """Registration number."""
    work: dict[str, Any]
    """The work as registered (the signed registration's argument)."""
    registrant: str
    """Organisation that registered it (proven signer)."""
    holder: str
    """Organisation holding the rights now (replayed transfers, equal to the proven record)."""
    status: str
    """``first`` or ``later_claim``."""
    prior: tuple[int, ...]
    """Earlier registrations of the same content (later claims)."""
    transfers: tuple[tuple[str, str, int], ...]
    """(from, to, height) of each transfer, in order."""
    grants: tuple[dict[str, Any], ...]
    """Licence grants."""
    disputed: bool
    """Whether a dispute stands."""
    dispute: str
    """Its reason."""
    height: int
    """Height of the registration."""
    time_ms: int
    """Time of the registration block."""
    chain_id: str
    """The chain."""
    genesis_hash: bytes
    """Genesis the certificate was checked against."""


def _entry_getter(number: int, hash_fn: Any) -> Any:
    def get_entry(v: VerifiedTx) -> bytes:
        body = v.tx.body
        if body.to != COPYRIGHT_MODULE:
            raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… is not a copyright transaction")
        if body.method != "register":
            try:
                if parse_number(body.args[0]) != number:
                    raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… is about another registration")
            except (CallFailed, IndexError):
                raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… is malformed") from None
        return compute_entry_hash(hash_fn, body.method, list(body.args))
    return get_entry


def check_certificate(cert: dict[str, Any], pinned: Genesis | None = None) -> CheckedWork:
    """Verify a copyright certificate offline; raises ProofInvalid naming what does not hold."""
    try:
        if cert.get("type") != CERT_TYPE or cert.get("version") not in (1, CERT_VERSION):
            raise ProofInvalid("not a Qilian copyright certificate of a known version")
        genesis, suite, ghash = get_genesis(cert, pinned)
        number = cert["number"]
        if type(number) is not int:
            raise ProofInvalid("the registration number is not an integer")
        record, steps = check_bundle(genesis, suite, cert["work"], COPYRIGHT_NAMESPACE, compute_work_key(number),
                                     cert["txs"], cert["members"], _entry_getter(number, suite.hash))
        if not steps or steps[0].tx.tx.body.method != "register":
            raise ProofInvalid("the history does not start with the registration")
        first = steps[0]
        holder = first.org
        transfers = []
        for s in steps[1:]:
            body = s.tx.tx.body
            if body.method == "register":
                raise ProofInvalid("a registration appears twice in the history")
            if body.method in ("transfer", "license") and s.org != holder:
                raise ProofInvalid(f"a {body.method} at height {s.tx.height} was signed by {s.org}, who did not hold "
                                   f"the rights ({holder} did)")
            if body.method == "transfer":
                transfers.append((holder, str(body.args[1]), s.tx.height))
                holder = str(body.args[1])
        if record.get("registrant") != first.org or record.get("holder") != holder:
            raise ProofInvalid(f"the proven record names registrant {record.get('registrant')!r} and holder "
                               f"{record.get('holder')!r}; the signed history gives {first.org!r} and {holder!r}")
        return CheckedWork(number, dict(first.tx.tx.body.args[0]), first.org, holder, str(record["status"]),
                           tuple(record["prior"]), tuple(transfers), tuple(record["grants"]),
                           bool(record["disputed"]), str(record["dispute"]), first.tx.height,
                           first.tx.header.time_ms, genesis.chain_id, ghash)
    except ProofInvalid:
        raise
    except Exception as exc:
        if is_malformed(exc):
            raise ProofInvalid(f"malformed certificate: {type(exc).__name__}: {exc}") from None
        raise


__all__ = ["CERT_TYPE", "CERT_VERSION", "CheckedWork", "check_certificate"]
