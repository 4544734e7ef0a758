"""``qilian bench reads``: point reads of a store engine that has been closed and opened again, as a node's is.

Why: execution and admission read the store one key at a time — a new digest's record (absent), a sender's
regulator entry (mostly absent), the state tree's nodes (present) — and in the 30-minute RocksDB soak those reads
came to dominate a validator's time (docs/benchmarks.md, "Soak"). This measures exactly that operation on the
production engine classes and their options: it fills one table with random 32-byte keys in batches, closes the
engine, opens it again (every node start does; a store created by ``qilian init`` is reopened by the node), and
times ``get`` of absent keys and of present ones, for each engine, in one run. Keys and values come from a seeded
generator, so every engine gets the same data.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from qilian.storage.engine import KVEngine, LmdbEngine, RocksEngine, get_disk_bytes

TABLE: Final = b"n"
FILL_BATCH: Final = 10_000
"""Keys written per batch (a 5,000-transaction block writes a few times this many entries)."""
PRESENT_SAMPLE: Final = 20_000
"""Present keys remembered during the fill and read back."""


@dataclass(frozen=True, slots=True)
class ReadsRow:
    engine: str
    keys: int
    disk_bytes: int
    fill_s: float
    absent_us: tuple[float, ...]
    """µs per absent-key get, one figure per round."""
    present_us: float
    """µs per present-key get (keys spread over the whole fill, so their data blocks are mostly not cached)."""


def _open(engine: str, path: Path, durable: bool) -> KVEngine:
    if engine == "lmdb":
        return LmdbEngine(path, durable=durable)
    if engine == "rocksdb":
        return RocksEngine(path, durable=durable)
    raise ValueError(f"unknown engine {engine!r}: lmdb or rocksdb")


def run_engine_reads(engine: str, keys: int, value_bytes: int = 150, rounds: int = 3, absent_gets: int = 50_000,
                     seed: int = 1, progress: Callable[[str], None] = lambda _m: None) -> ReadsRow:
    """Fill, reopen, read; the store is deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"qilian-reads-{engine}-"))
    try:
        rng = random.Random(seed)
        step = max(1, keys // PRESENT_SAMPLE)
        present: list[bytes] = []
        store = _open(engine, root / "db", durable=False)
        t0 = time.perf_counter()
        written = 0
        while written < keys:
            n = min(FILL_BATCH, keys - written)
            ops = [(TABLE, rng.randbytes(32), rng.randbytes(value_bytes)) for _ in range(n)]
            present.extend(op[1] for op in ops[::step])
            store.write(ops)
            written += n
            if written % (FILL_BATCH * 100) == 0:
                progress(f"{engine}: {written:,} of {keys:,} keys written")
        store.flush()
        fill_s = time.perf_counter() - t0
        store.close()
        store = _open(engine, root / "db", durable=True)  # as a node opens the store it finds
        try:
            probe = random.Random(seed + 1)
            absent_us: list[float] = []
            for _ in range(rounds):
                misses = [probe.randbytes(32) for _ in range(absent_gets)]
                t0 = time.perf_counter()
                for k in misses:
                    store.get(TABLE, k)
                absent_us.append((time.perf_counter() - t0) / absent_gets * 1e6)
            probe.shuffle(present)
            t0 = time.perf_counter()
            found = sum(store.get(TABLE, k) is not None for k in present)
            present_us = (time.perf_counter() - t0) / max(1, len(present)) * 1e6
            if found != len(present):
                raise RuntimeError(f"{engine}: {len(present) - found} written keys not found after reopening")
        finally:
            store.close()
        return ReadsRow(engine, keys, get_disk_bytes(root), fill_s, tuple(absent_us), present_us)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_reads_bench(engines: Sequence[str], keys: int, progress: Callable[[str], None] = lambda _m: None,
                    ) -> list[ReadsRow]:
    return [run_engine_reads(e, keys, progress=progress) for e in engines]
