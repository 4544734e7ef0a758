"""``qilian bench micro``: µs per operation of the primitives (codec, hashes, signatures, Merkle, state).

Each figure is the best of several timed repetitions of a loop, on one core, in this process — a floor for what
the node can do per transaction, and the baseline every later optimisation is measured against.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from qilian.crypto import get_suite, merkle
from qilian.types.core import Transaction, TxBody, compute_tx_hash, sign_tx


def _time(fn: Callable[[], Any], number: int, repeat: int = 3) -> float:
    """Best µs per call over ``repeat`` runs of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def _sample_tx(suite_name: str) -> tuple[Any, bytes, Transaction]:
    suite = get_suite(suite_name)
    sk = suite.private_key_from_seed(hashlib.sha256(b"bench-" + suite_name.encode()).digest())
    body = TxBody("bench-chain", suite.get_public_key(sk), 123456789, 1000, "kv", "put",
                  [b"evidence/" + b"k" * 24, b"v" * 96])
    return suite, sk, sign_tx(suite, sk, body)


def _sample_trace_ship_tx(suite: Any, sk: bytes) -> Transaction:
    """The trace workload's ship (``qilian bench network --workload trace``): its argument is an EPCIS event, a map
    holding lists and a map — the nested value whose canonical check issue 16 made cheaper."""
    event = {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping",
             "eventTime": "2025-05-01T08:00:00+08:00", "epcList": ["urn:bench:t1:0"],
             "destinationList": [{"type": "owning_party", "destination": "org2"}]}
    body = TxBody("bench-chain", suite.get_public_key(sk), 123456789, 1000, "trace", "ship", [event])
    return sign_tx(suite, sk, body)


def _bench_suite(suite_name: str, n: int, quick: bool, add: Callable[[str, str, float], None]) -> None:
    """Codec, hash, signature and Merkle figures of one suite."""
    suite, sk, tx = _sample_tx(suite_name)
    raw = tx.encode()
    add(f"encode tx ({len(raw)} B)", suite_name, _time(tx.encode, n * 5))
    add("decode tx (canonical check)", suite_name, _time(lambda: Transaction.decode(raw), n * 5))
    ship = _sample_trace_ship_tx(suite, sk).encode()
    add(f"decode trace ship tx ({len(ship)} B, nested map)", suite_name, _time(lambda: Transaction.decode(ship), n * 5))
    add("tx hash", suite_name, _time(lambda: compute_tx_hash(suite, tx.body), n * 5))
    data32 = b"\x01" * 32
    add("hash 32 B", suite_name, _time(lambda: suite.hash(data32), n * 10))
    msg = b"\x02" * 44
    add("sign", suite_name, _time(lambda: suite.sign(sk, msg), max(n // 4, 50)))
    pk = suite.get_public_key(sk)
    sig = suite.sign(sk, msg)
    add("verify", suite_name, _time(lambda: suite.verify(pk, msg, sig), max(n // 4, 50)))
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1000)]
    add("Merkle root, 1000 leaves", suite_name, _time(lambda: merkle.compute_root(suite.hash, leaves),
                                                      5 if quick else 20))
    root = merkle.compute_root(suite.hash, leaves)
    proof = merkle.compute_proof(suite.hash, leaves, 517)
    add("Merkle proof verify (1000)", suite_name,
        _time(lambda: merkle.is_valid_proof(suite.hash, root, leaves[517], proof), n))


def run_micro(quick: bool = False, state_sizes: tuple[int, ...] = (10_000, 100_000),
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every micro-benchmark; returns rows ``{op, suite, us}``."""
    n = 200 if quick else 2000
    rows: list[dict[str, Any]] = []

    def add(op: str, suite: str, us: float) -> None:
        rows.append({"op": op, "suite": suite, "us": us})

    for suite_name in ("ed25519", "sm2"):
        if progress:
            progress(f"{suite_name}: codec, hash, sign, verify, Merkle")
        _bench_suite(suite_name, n, quick, add)

    from qilian.bench.state_bench import run_state_bench

    for r in run_state_bench(state_sizes, batch=1000, rounds=2 if quick else 5, progress=progress):
        add(f"state commit per key ({r['size']:,} keys, 1000/block)", r["suite"], r["us_per_key"])
        add(f"state proof get ({r['size']:,} keys)", r["suite"], r["proof_get_us"])
        add(f"state proof verify ({r['size']:,} keys)", r["suite"], r["proof_verify_us"])
    return rows
