"""A genesis-seeded dict state that executes blocks with the production ``execute_block``: the one harness the
governance, membership, regulator and scenario-app unit tests share (each builds it over its own genesis)."""

from __future__ import annotations

import itertools
from typing import Any

from qilian.crypto.suite import Suite
from qilian.execution.block import execute_block
from qilian.execution.chain import ChainRules
from qilian.execution.contracts import compute_genesis_writes
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.core import STATUS_FAILED, STATUS_OK, Genesis, Receipt, Transaction, compute_tx_hash


class BlockRunner:
    """State after genesis and a height counter: each ``run`` executes one block at the next height."""

    def __init__(self, genesis: Genesis, rules: ChainRules, suite: Suite) -> None:
        self.genesis, self.rules, self.suite = genesis, rules, suite
        self.values = {k: v for k, v in compute_genesis_writes(genesis).items() if v is not None}
        self.height = 0
        self.nonce = itertools.count(1)

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))

    def get_key(self, key: Any) -> KeyPair:
        """The signing key of a call (a subclass may name keys)."""
        assert isinstance(key, KeyPair), key
        return key

    def get_time_ms(self) -> int:
        """Block time of the current height."""
        return 1000 * self.height

    def process_admission(self, tx: Transaction) -> None:
        """What the mempool checks before a transaction may enter a block (nothing here; a subclass may)."""

    def run(self, *calls: tuple[Any, str, str, list[Any]], time_ms: int | None = None) -> list[Receipt]:
        self.height += 1
        txs = [build_tx(self.get_key(k), self.genesis.chain_id, to, m, a, self.height + 10, nonce=next(self.nonce))
               for k, to, m, a in calls]
        for tx in txs:
            self.process_admission(tx)
        hashes = [compute_tx_hash(self.suite, t.body) for t in txs]
        res = execute_block(self.rules, self, txs, hashes, self.height,
                            self.get_time_ms() if time_ms is None else time_ms)
        for k, v in res.writes.items():
            if v is None:
                self.values.pop(k, None)
            else:
                self.values[k] = v
        return list(res.receipts)

    def one(self, key: Any, to: str, method: str, args: list[Any], time_ms: int | None = None) -> Receipt:
        return self.run((key, to, method, args), time_ms=time_ms)[0]


def ok(r: Receipt) -> Any:
    assert r.status == STATUS_OK, r.error
    return r.result


def failed(r: Receipt, *words: str) -> str:
    """The error of a failed receipt, which must contain each of ``words``."""
    assert r.status == STATUS_FAILED, r
    for w in words:
        assert w in r.error, r.error
    return r.error
