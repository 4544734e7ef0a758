"""The consensus write-ahead log on disk: the file behind the shell's WAL port (:class:`qilian.shell.ports.WalFile`).

Records and framing are :mod:`qilian.shell.wal` (pure, shared with the simulator's in-memory disk); this module
only does the file IO. The file is opened unbuffered: :meth:`Wal.append` hands each record to the OS in one
``write`` call, so a process crash (SIGKILL) never loses an appended record — only a power loss can lose what was
not yet synced. The shell syncs the log before it persists the signer guard's state and before any of its own
proposals or votes leave (docs/spec/consensus.md, "Order of durability").

On open the log is read up to the last intact record and cut there — a torn tail is expected after a crash, never a
reason not to start. The log is truncated whenever a new height starts (the committed block is durable by then)."""

from __future__ import annotations

import bisect
import logging
import os
import time
from pathlib import Path
from typing import BinaryIO, Final

from qilian.shell.wal import MAX_RECORD_BYTES, WalHeight, WalRecord, decode_frames, encode_frame

log = logging.getLogger("qilian.wal")

__all__ = ["FSYNC_BUCKETS_S", "MAX_RECORD_BYTES", "SyncTimes", "Wal", "read_records"]

FSYNC_BUCKETS_S: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of the fsync latency histogram: from a fast NVMe flush to a stalled disk."""


class SyncTimes:
    """Count and latency distribution of fsyncs, kept by the WAL itself and read at scrape time (``/metrics``).

    Why here and not in the metrics module: every vote and proposal waits for this fsync (durability before a
    message leaves), so a slow disk shows up as slow consensus; the WAL is the one place that sees each call, and
    keeping plain counters keeps the consensus shell free of the metrics library."""

    def __init__(self) -> None:
        self.count = 0
        """fsyncs made."""
        self.sum_s = 0.0
        """Total seconds spent in them."""
        self.max_s = 0.0
        """The slowest one."""
        self.buckets = [0] * len(FSYNC_BUCKETS_S)
        """Non-cumulative counts per bucket of FSYNC_BUCKETS_S (slower than the last bound: count minus the sum)."""

    def on_sync(self, seconds: float) -> None:
        """Record one fsync's duration."""
        self.count += 1
        self.sum_s += seconds
        self.max_s = max(self.max_s, seconds)
        i = bisect.bisect_left(FSYNC_BUCKETS_S, seconds)
        if i < len(self.buckets):
            self.buckets[i] += 1

    def get_cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, fsyncs at most that long) per bucket, then (+inf, count): Prometheus' histogram form."""
        out, n = [], 0
        for bound, k in zip(FSYNC_BUCKETS_S, self.buckets, strict=True):
            n += k
            out.append((bound, n))
        out.append((float("inf"), self.count))
        return out


def _fsync(fd: int, times: SyncTimes) -> None:
    t0 = time.perf_counter()
    os.fsync(fd)
    times.on_sync(time.perf_counter() - t0)


def read_records(path: Path) -> tuple[list[WalRecord], int]:
    """All intact records and the byte offset where the intact prefix ends."""
    if not path.exists():
        return [], 0
    return decode_frames(path.read_bytes())


class Wal:
    """Append-only log of one height's consensus inputs, in a file."""

    def __init__(self, path: Path):
        self.path = path
        self.sync_times = SyncTimes()
        """Every fsync of this log: count and latency (``qilian_wal_fsync_seconds``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.records, good = read_records(path)
        size = path.stat().st_size if path.exists() else 0
        if good < size:
            log.warning("WAL %s: cutting a torn tail of %d bytes after %d intact records", path, size - good,
                        len(self.records))
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                _fsync(f.fileno(), self.sync_times)
        self._f: BinaryIO = open(path, "ab", buffering=0)
        self._dirty = False
        self.syncs = 0
        """Syncs of appended records (tests); ``sync_times`` counts every fsync, the torn-tail cut's too."""

    def append(self, record: WalRecord) -> None:
        """Write a record to the OS at once (no user-space buffer a crash could lose); :meth:`sync` makes it
        durable against power loss."""
        data = memoryview(encode_frame(record))
        while data:
            n = self._f.write(data)
            if not n:
                raise OSError("WAL write made no progress")
            data = data[n:]
        self._dirty = True

    @property
    def is_dirty(self) -> bool:
        """Whether records were appended since the last sync."""
        return self._dirty

    def sync(self) -> None:
        """Make every appended record durable."""
        if self._dirty:
            _fsync(self._f.fileno(), self.sync_times)
            self._dirty = False
            self.syncs += 1

    def reset(self, height: int) -> None:
        """Start a new height: drop the old records (their block is committed) and write the height marker."""
        self._f.close()
        self._f = open(self.path, "wb", buffering=0)
        self.records = []
        self.append(WalHeight(height))
        self.sync()

    def close(self) -> None:
        self._f.close()
