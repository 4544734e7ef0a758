"""``qilian bench iot``: a load generator of simulated devices and one gateway against a running chain.

It registers ``devices`` device keys (Ed25519) for the home's organisation and has each device sign its share of
``readings`` readings into JSONL lines, as devices would send them. That is device-side work, done before the
gateway clock starts (in parallel processes, to save wall time), and reported apart. Then the clock starts and the
gateway runs the same fast path as ``qilian iot anchor`` (qilian.apps.iot.gateway): fetch its organisation and the
devices' registrations, parse and check every line (registered, its organisation's, not retired, not from the
future, signature by the registered key) in worker processes, build each batch's Merkle tree, and anchor each batch
in one transaction, several in flight, until the last one commits. It reports readings per minute through the
gateway, the per-core rate and the machine's own Ed25519 ceiling measured in the same run, and the load on the
chain (transactions, bytes of transactions and of state per reading)."""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from qilian.apps.iot.gateway import (
    AnchorReceipt,
    CheckedBatch,
    Gateway,
    GatewayRules,
    get_gateway_org,
    get_registry,
    process_anchor_batches,
)
from qilian.apps.iot.module import BATCH_COUNT_KEY, compute_batch_key
from qilian.apps.iot.sdk import DOMAIN_READING, sign_reading
from qilian.crypto import get_suite
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import encode_trusted

CEILING_VERIFIES: Final = 3000
"""Signature checks timed in-process to measure the machine's one-core Ed25519 ceiling in the same run (~0.2 s)."""
DEVICE_TASK_READINGS: Final = 20_000
"""Readings one device-simulation task signs."""


@dataclass(frozen=True)
class IotBenchResult:
    """Measured figures of one run."""

    devices: int
    """Simulated devices."""
    readings: int
    """Readings anchored."""
    batches: int
    """Anchoring transactions."""
    workers: int
    """Gateway checking processes."""
    sign_per_s: float
    """Device-side signatures per second, all device processes together (before the gateway clock)."""
    sign_processes: int
    """Processes the simulated devices signed in."""
    gateway_s: float
    """Wall seconds of the gateway: registry lookup, checks, trees, anchors, until the last anchor committed."""
    gateway_readings_per_min: float
    """Readings per minute through the gateway."""
    check_cpu_s: float
    """CPU seconds of the checking processes, summed (parse, checks, signature, leaf and subtree hashes)."""
    main_cpu_s: float
    """CPU seconds of the gateway's main process (chunking, duplicate check, root, anchoring threads)."""
    core_readings_per_min: float
    """Readings per minute one busy checking process manages (readings ÷ check_cpu_s): the per-core rate."""
    verify_per_s_core: float
    """Bare Ed25519 verifications per second on one core, measured in the same run (the ceiling)."""
    cores: int
    """Cores the machine lets this process use."""
    anchor_latency_s: float
    """Mean seconds from building an anchoring transaction to its commit."""
    tail_s: float
    """Seconds from the last batch checked to the last anchor committed."""
    tx_bytes_per_reading: float
    """Bytes of anchoring transactions on chain per reading."""
    state_bytes_per_reading: float
    """Bytes of batch records (keys and values) added to state per reading."""
    txs_per_reading: float
    """Transactions per reading."""


def make_device_lines(task: tuple[list[tuple[str, bytes]], int, int, int, int]) -> list[bytes]:
    """Readings ``start``..``stop`` of the run, each signed by its device into a JSONL line (a worker task).

    Reading i comes from device i mod n with sequence number i div n, its time spread over the minute before
    ``now_ms``; values vary so that no two leaves are alike."""
    keys, start, stop, readings, now_ms = task
    n = len(keys)
    out = []
    for i in range(start, stop):
        device, key = keys[i % n]
        r: dict[str, Any] = {"device": device, "seq": i // n, "t": now_ms - 60_000 + (i * 50_000) // readings,
                             "values": {"temp": f"{20 + i % 9}.{i % 10}", "rh": i % 100}}
        line = {"reading": r, "sig": sign_reading("ed25519", key, r).hex()}
        out.append(json.dumps(line, separators=(",", ":")).encode())
    return out


def get_verify_rate() -> float:
    """Ed25519 verifications per second on one core, of messages the size of a signed reading."""
    suite = get_suite("ed25519")
    key = suite.private_key_from_seed(secrets.token_bytes(32))
    public_key = suite.get_public_key(key)
    message = DOMAIN_READING + bytes(90)
    signature = suite.sign(key, message)
    started = time.perf_counter()
    for _ in range(CEILING_VERIFIES):
        suite.verify(public_key, message, signature)
    return CEILING_VERIFIES / (time.perf_counter() - started)


def compute_state_bytes(receipt: AnchorReceipt, org: str, gateway: bytes, meta: str) -> int:
    """Bytes one anchor adds to state: its batch record (as the module writes it) with its key, and the batch
    counter it overwrites (counted once per batch, an upper bound)."""
    b = receipt.batch
    record = {"org": org, "gateway": gateway, "root": b.root, "count": b.count, "devices": b.devices,
              "from_ms": b.from_ms, "to_ms": b.to_ms, "meta": meta, "height": receipt.height,
              "time_ms": 2**40, "tx_hash": bytes.fromhex(receipt.tx_hash)}
    return len(encode_trusted(record)) + len(compute_batch_key(receipt.number)) + len(BATCH_COUNT_KEY) + 8


def run_iot_bench(node: str, admin: KeyPair, gateway: KeyPair, devices: int, readings: int, batch: int,
                  workers: int, say: Callable[[str], None]) -> IotBenchResult:
    """Run the benchmark against the chain at ``node``; see the module docstring."""
    ed = get_suite("ed25519")
    with Client(node) as c:
        status = c.get_status()
        chain_id, suite_name = status["chain_id"], status["suite"]
        tag = secrets.token_hex(3)
        keys = [(f"bench-{tag}-{i:05d}", ed.private_key_from_seed(secrets.token_bytes(32))) for i in range(devices)]
        say(f"registering {devices:,} devices …")
        height = int(c.get_status()["height"])
        txs = [build_tx(admin, chain_id, "iot", "add_device", [d, "ed25519", ed.get_public_key(k)], height + 500)
               for d, k in keys]
        for i in range(0, len(txs), 1000):
            c._json(c.http.post("/txs/batch", content=encode_trusted([tx.encode() for tx in txs[i:i + 1000]]),
                                headers={"content-type": "application/octet-stream"}))
        c.submit(txs[-1], wait="commit", timeout=120)
    processes = max(1, workers)
    say(f"signing {readings:,} readings on the simulated devices ({processes} process(es), before the gateway "
        f"clock starts) …")
    now_ms = int(time.time() * 1000)
    tasks = [(keys, s, min(s + DEVICE_TASK_READINGS, readings), readings, now_ms)
             for s in range(0, readings, DEVICE_TASK_READINGS)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        lines = [line for part in pool.imap(make_device_lines, tasks) for line in part]
    sign_s = time.perf_counter() - t0
    verify_rate = get_verify_rate()
    say(f"one core verifies {verify_rate:,.0f} Ed25519 signatures/s; starting {workers} gateway worker(s) …")
    receipts: list[AnchorReceipt] = []

    def on_anchored(receipt: AnchorReceipt) -> None:
        receipts.append(receipt)
        say(f"batch {receipt.batch.index + 1}: {receipt.batch.count:,} readings anchored as batch {receipt.number} "
            f"at height {receipt.height} ({receipt.latency_s:.2f} s to commit)")

    with Gateway(workers) as gw:
        say("gateway clock starts")
        start, main_cpu = time.perf_counter(), time.process_time()
        with Client(node) as c:
            org = get_gateway_org(c, gateway.public_key)
            if org is None:
                raise RuntimeError("the gateway key is not a member of the chain")
            rules = GatewayRules(org, suite_name, get_registry(c, [d for d, _ in keys]), int(time.time() * 1000))
        last_checked = [start]

        def checked() -> Iterator[CheckedBatch]:
            for b in gw.check_batches(rules, lines, batch):
                last_checked[0] = time.perf_counter()
                yield b

        process_anchor_batches(node, gateway, checked(), "bench", on_anchored)
        total, main_cpu = time.perf_counter() - start, time.process_time() - main_cpu
    check_cpu_s = sum(r.batch.check_s for r in receipts)
    state_bytes = sum(compute_state_bytes(r, org, gateway.public_key, "bench") for r in receipts)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return IotBenchResult(
        devices, readings, len(receipts), workers, readings / sign_s, processes, total, readings / total * 60,
        check_cpu_s, main_cpu, readings / check_cpu_s * 60, verify_rate, cores,
        sum(r.latency_s for r in receipts) / len(receipts), start + total - last_checked[0],
        sum(r.tx_bytes for r in receipts) / readings, state_bytes / readings, len(receipts) / readings)
