"""A real state machine over a dict for the scenario apps' tests: genesis-seeded state, real transactions signed by
real keys, real blocks through :func:`execute_block`, admitted first by the mempool's static checks — no mocks.

``AppChain()`` is the walkthroughs' four organisations; ``ADMIN``/``CLIENT``/``RULES`` are its (deterministic)
keys and rules, the same for every instance."""

from __future__ import annotations

import itertools
from typing import Any

from qilian.crypto import get_suite
from qilian.execution.rules import ChainRules, check_tx_static
from qilian.sdk.keys import KeyPair
from qilian.types.codec import decode_raw
from qilian.types.core import (
    STATUS_FAILED,
    STATUS_OK,
    ChainParams,
    Genesis,
    Member,
    Organisation,
    Transaction,
    Validator,
    ValidatorSet,
)

from .blockrunner import BlockRunner

CHAIN_ID = "apps-chain"
CHAIN = CHAIN_ID
ORGS = ("farm", "processor", "distributor", "retailer")
"""The walkthroughs' organisations (farm → processor → distributor → retailer)."""
TIME_BASE_MS = 1_000_000
"""Block time at height 0; height h has time TIME_BASE_MS + 1000·h."""


def make_key(suite_name: str, seed: int) -> KeyPair:
    suite = get_suite(suite_name)
    sk = suite.private_key_from_seed(seed.to_bytes(2, "big") * 16)
    return KeyPair(suite, sk, suite.get_public_key(sk))


class AppChain(BlockRunner):
    """Organisations each with an ``admin`` (admin+member) and a ``client`` (member) key; one validator. Calls
    name their key as a KeyPair or as ``"<org>-admin"`` / ``"<org>-client"``."""

    def __init__(self, orgs: tuple[str, ...] = ORGS, suite: str = "ed25519", chain_id: str = CHAIN_ID):
        suite_obj = get_suite(suite)
        self.keys: dict[str, KeyPair] = {}
        seed = itertools.count(100)
        members = []
        for org in orgs:
            admin, client = make_key(suite, next(seed)), make_key(suite, next(seed))
            self.keys[f"{org}-admin"], self.keys[f"{org}-client"] = admin, client
            members.append(Organisation(org, (Member("admin", admin.public_key, ("admin", "member")),
                                              Member("client", client.public_key, ("member",)))))
        val = make_key(suite, 9)
        genesis = Genesis(chain_id, suite, 0, tuple(members),
                          ValidatorSet((Validator(val.address, val.public_key, 1),)), ChainParams())
        super().__init__(genesis, ChainRules.from_genesis(genesis, suite_obj), suite_obj)
        self.chain_id = chain_id

    def get_key(self, key: Any) -> KeyPair:
        return self.keys[key] if isinstance(key, str) else super().get_key(key)

    def get_time_ms(self) -> int:
        return TIME_BASE_MS + 1000 * self.height

    def process_admission(self, tx: Transaction) -> None:
        check_tx_static(self.rules, tx, len(tx.encode()))

    def addr(self, name: str) -> str:
        return self.keys[name].address.hex()

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self.get_state(namespace, key)

    def record(self, namespace: str, key: bytes) -> Any:
        """A stored value decoded (None when absent)."""
        raw = self.values.get((namespace, key))
        return None if raw is None else decode_raw(raw)

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


_FOUR = AppChain()
SUITE = _FOUR.suite
RULES = _FOUR.rules
ADMIN = {org: _FOUR.keys[f"{org}-admin"] for org in ORGS}
CLIENT = {org: _FOUR.keys[f"{org}-client"] for org in ORGS}
