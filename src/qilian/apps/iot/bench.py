"""``qilian bench iot``: a load generator of simulated devices and one gateway against a running chain.

It registers ``devices`` device keys (Ed25519) for the home's organisation, has each device sign its share of
``readings`` readings, then acts as the gateway: verifies every signature against the registered keys, builds
the Merkle tree of each batch and anchors it (one transaction per batch), waiting for each commit. It reports
readings per minute through the gateway (verify + tree + anchor, the part that bounds a deployment) and the load
on the chain (transactions, bytes of transactions and of state per reading)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qilian.apps.iot.sdk import get_reading_id, is_valid_reading_signature, make_batch, sign_reading
from qilian.crypto import get_suite
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import encode_trusted


@dataclass(frozen=True)
class IotBenchResult:
    """Measured figures of one run."""

    devices: int
    """Simulated devices."""
    readings: int
    """Readings anchored."""
    batches: int
    """Anchoring transactions."""
    sign_per_s: float
    """Device-side signatures per second (one core; for reference)."""
    gateway_readings_per_min: float
    """Readings per minute through the gateway: signature checks, Merkle tree, anchoring and commit."""
    verify_s: float
    """Seconds spent verifying signatures."""
    tree_s: float
    """Seconds spent building Merkle trees."""
    anchor_s: float
    """Seconds from submitting anchors to their commit."""
    tx_bytes_per_reading: float
    """Bytes of anchoring transactions on chain per reading."""
    state_bytes_per_reading: float
    """Bytes of batch records in state per reading."""
    txs_per_reading: float
    """Transactions per reading."""


def run_iot_bench(node: str, admin: KeyPair, gateway: KeyPair, devices: int, readings: int, batch: int,
                  say: Callable[[str], None]) -> IotBenchResult:
    """Run the benchmark against the chain at ``node``; see the module docstring."""
    import secrets

    with Client(node) as c:
        status = c.get_status()
        chain_id, suite = status["chain_id"], get_suite(status["suite"])
        tag = secrets.token_hex(3)
        keys = {f"bench-{tag}-{i:05d}": get_suite("ed25519").private_key_from_seed(secrets.token_bytes(32))
                for i in range(devices)}
        say(f"registering {devices:,} devices …")
        height = int(c.get_status()["height"])
        txs = [build_tx(admin, chain_id, "iot", "add_device", [d, "ed25519", get_suite("ed25519").get_public_key(k)],
                        height + 500) for d, k in keys.items()]
        for i in range(0, len(txs), 1000):
            c._json(c.http.post("/txs/batch", content=encode_trusted([tx.encode() for tx in txs[i:i + 1000]]),
                                headers={"content-type": "application/octet-stream"}))
        c.submit(txs[-1], wait="commit", timeout=120)
        say(f"signing {readings:,} readings on the simulated devices …")
        ids = list(keys)
        pubs = {d: get_suite("ed25519").get_public_key(k) for d, k in keys.items()}
        now = int(time.time() * 1000)
        t0 = time.perf_counter()
        signed: list[tuple[dict[str, Any], bytes]] = []
        for i in range(readings):
            d = ids[i % devices]
            r: dict[str, Any] = {"device": d, "seq": i // devices, "t": now - 60_000 + (i * 50_000) // readings,
                 "values": {"temp": f"{20 + i % 9}.{i % 10}", "rh": i % 100}}
            signed.append((r, sign_reading("ed25519", keys[d], r)))
        sign_s = time.perf_counter() - t0
        verify_s = tree_s = anchor_s = 0.0
        tx_bytes = 0
        n_batches = 0
        start = time.perf_counter()
        for b in range(0, readings, batch):
            part = signed[b:b + batch]
            t1 = time.perf_counter()
            for r, sig in part:
                if not is_valid_reading_signature("ed25519", pubs[r["device"]], r, sig):
                    raise RuntimeError(f"reading {get_reading_id(r)} does not verify")
            t2 = time.perf_counter()
            built = make_batch(suite.hash, part)
            t3 = time.perf_counter()
            tx = build_tx(gateway, chain_id, "iot", "anchor", built.to_anchor_args("bench"),
                          int(c.get_status()["height"]) + 500)
            res = c.submit(tx, wait="commit", timeout=120)
            if (res.get("receipt") or {}).get("status") != "ok":
                raise RuntimeError(f"anchor failed: {res}")
            t4 = time.perf_counter()
            verify_s, tree_s, anchor_s = verify_s + t2 - t1, tree_s + t3 - t2, anchor_s + t4 - t3
            tx_bytes += len(tx.encode())
            n_batches += 1
            say(f"batch {n_batches}: {len(part):,} readings anchored at height {res['height']}")
        total = time.perf_counter() - start
    # a batch record: org, gateway, root, count, device ids, window, meta, height, time, tx hash
    state_bytes = n_batches * 200 + sum(len(d) + 1 for d in ids) * n_batches
    return IotBenchResult(devices, readings, n_batches, readings / sign_s, readings / total * 60, verify_s, tree_s,
                          anchor_s, tx_bytes / readings, state_bytes / readings, n_batches / readings)
