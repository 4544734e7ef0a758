"""A four-organisation chain over a dict state, for the scenario apps' unit tests: real blocks through
execute_block, real signatures, the real policy table from genesis."""

from __future__ import annotations

from typing import Any

from qilian.crypto import get_suite
from qilian.execution.block import execute_block
from qilian.execution.contracts import compute_genesis_writes
from qilian.execution.rules import ChainRules, check_tx_static
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import decode_raw
from qilian.types.core import (
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Receipt,
    Validator,
    ValidatorSet,
    compute_tx_hash,
)

SUITE = get_suite("ed25519")
CHAIN = "apps-chain"
ORGS = ("farm", "processor", "distributor", "retailer")


def make_key(seed: int) -> KeyPair:
    sk = SUITE.private_key_from_seed(bytes([seed]) * 32)
    return KeyPair(SUITE, sk, SUITE.get_public_key(sk))


ADMIN = {org: make_key(10 + i) for i, org in enumerate(ORGS)}
CLIENT = {org: make_key(20 + i) for i, org in enumerate(ORGS)}
VAL = make_key(5)
GENESIS = Genesis(CHAIN, "ed25519", 0, tuple(
    Organisation(org, (Member("admin", ADMIN[org].public_key, ("admin", "member")),
                       Member("client", CLIENT[org].public_key, ("member",)))
                 + ((Member("v", VAL.public_key, ("validator",)),) if org == "farm" else ()))
    for org in ORGS), ValidatorSet((Validator(VAL.address, VAL.public_key, 1),)), ChainParams())
RULES = ChainRules.from_genesis(GENESIS, SUITE)


class DictState:
    """State in a dict, seeded from genesis (membership and the policy table)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, bytes], bytes] = {k: v for k, v in compute_genesis_writes(GENESIS).items() if v}
        self.height = 0

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))

    def apply(self, writes: dict[tuple[str, bytes], bytes | None]) -> None:
        for k, v in writes.items():
            if v is None:
                self.values.pop(k, None)
            else:
                self.values[k] = v

    def run(self, calls: list[tuple[KeyPair, str, str, list[Any]]], time_ms: int | None = None) -> list[Receipt]:
        """Execute one block of calls (each admitted by the static rules first, as the mempool would)."""
        self.height += 1
        txs = [build_tx(k, CHAIN, to, m, a, self.height + 10, nonce=i) for i, (k, to, m, a) in enumerate(calls)]
        for tx in txs:
            check_tx_static(RULES, tx, len(tx.encode()))
        hashes = [compute_tx_hash(SUITE, tx.body) for tx in txs]
        res = execute_block(RULES, self, txs, hashes, self.height,
                            1_000_000 + 1_000 * self.height if time_ms is None else time_ms)
        self.apply(res.writes)
        return list(res.receipts)

    def one(self, key: KeyPair, to: str, method: str, args: list[Any], time_ms: int | None = None) -> Receipt:
        (r,) = self.run([(key, to, method, args)], time_ms)
        return r

    def record(self, namespace: str, key: bytes) -> Any:
        raw = self.values.get((namespace, key))
        return None if raw is None else decode_raw(raw)
