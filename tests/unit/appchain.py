"""A real state machine over a dict for the scenario apps' tests: genesis-seeded state, real transactions signed by
real keys, real blocks through :func:`execute_block` — no mocks."""

from __future__ import annotations

import itertools
from typing import Any

from qilian.crypto import get_suite
from qilian.execution.block import execute_block
from qilian.execution.contracts import compute_genesis_writes
from qilian.execution.rules import ChainRules
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.core import (
    STATUS_FAILED,
    STATUS_OK,
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Receipt,
    Validator,
    ValidatorSet,
    compute_tx_hash,
)

CHAIN_ID = "apps-chain"


def make_key(suite_name: str, seed: int) -> KeyPair:
    suite = get_suite(suite_name)
    sk = suite.private_key_from_seed(seed.to_bytes(2, "big") * 16)
    return KeyPair(suite, sk, suite.get_public_key(sk))


class AppChain:
    """Organisations each with an ``admin`` (admin+member) and a ``client`` (member) key; one validator."""

    def __init__(self, orgs: tuple[str, ...], suite: str = "ed25519", chain_id: str = CHAIN_ID):
        self.suite = get_suite(suite)
        self.chain_id = chain_id
        self.keys: dict[str, KeyPair] = {}
        seed = itertools.count(100)
        members = []
        for org in orgs:
            admin, client = make_key(suite, next(seed)), make_key(suite, next(seed))
            self.keys[f"{org}-admin"], self.keys[f"{org}-client"] = admin, client
            members.append(Organisation(org, (Member("admin", admin.public_key, ("admin", "member")),
                                              Member("client", client.public_key, ("member",)))))
        val = make_key(suite, 9)
        self.genesis = Genesis(chain_id, suite, 0, tuple(members),
                               ValidatorSet((Validator(val.address, val.public_key, 1),)), ChainParams())
        self.rules = ChainRules.from_genesis(self.genesis, self.suite)
        self.values = {k: v for k, v in compute_genesis_writes(self.genesis).items() if v is not None}
        self.height = 0
        self.nonce = itertools.count(1)

    def addr(self, name: str) -> str:
        return self.keys[name].address.hex()

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))

    def run(self, *calls: tuple[str | KeyPair, str, str, list[Any]]) -> list[Receipt]:
        """One block of calls ``(key name or key, module, method, args)``."""
        self.height += 1
        txs = [build_tx(self.keys[k] if isinstance(k, str) else k, self.chain_id, to, m, a, self.height + 10,
                        nonce=next(self.nonce)) for k, to, m, a in calls]
        hashes = [compute_tx_hash(self.suite, t.body) for t in txs]
        res = execute_block(self.rules, self, txs, hashes, self.height, 1000 * self.height)
        for k, v in res.writes.items():
            if v is None:
                self.values.pop(k, None)
            else:
                self.values[k] = v
        return list(res.receipts)

    def one(self, key: str | KeyPair, to: str, method: str, args: list[Any]) -> Receipt:
        return self.run((key, to, method, args))[0]

    def ok(self, key: str | KeyPair, to: str, method: str, args: list[Any]) -> Any:
        r = self.one(key, to, method, args)
        assert r.status == STATUS_OK, r.error
        return r.result

    def fails(self, key: str | KeyPair, to: str, method: str, args: list[Any]) -> str:
        before = dict(self.values)
        r = self.one(key, to, method, args)
        assert r.status == STATUS_FAILED, r
        assert self.values == before, "a failed call wrote state"
        return r.error
