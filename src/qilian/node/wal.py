"""The consensus write-ahead log: every input the consensus core consumed at the current height, in order.

Replaying the log into a fresh core gives the same round state (the core is deterministic), so a restarted node
resumes where it was: same locks, same votes — it re-sends its own messages rather than making new ones.

The file is opened unbuffered: :meth:`Wal.append` hands each record to the OS in one ``write`` call, so a process
crash (SIGKILL) never loses an appended record — only a power loss can lose what was not yet synced. The node
syncs the log before it persists the signer guard's state and before any of its own proposals or votes leave
(docs/spec/consensus.md, "Order of durability"): a signature the guard has recorded always has its causes on disk.

Framing: ``u32 length ‖ u32 crc32(payload) ‖ payload``. A crash can tear the last record; on open the log is read up
to the last intact record and cut there — a torn tail is expected after SIGKILL, never a reason not to start. The
log is truncated whenever a new height starts (the committed block is durable in the store by then)."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from qilian.types.codec import CodecError, decode_raw, encode_trusted

log = logging.getLogger("qilian.wal")

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""A length prefix above this is treated as a torn (garbage) tail."""
_HEAD = struct.Struct(">II")


def read_records(path: Path) -> tuple[list[Any], int]:
    """All intact records and the byte offset where the intact prefix ends."""
    records: list[Any] = []
    if not path.exists():
        return records, 0
    data = path.read_bytes()
    off = 0
    while off + _HEAD.size <= len(data):
        n, crc = _HEAD.unpack_from(data, off)
        if n > MAX_RECORD_BYTES or off + _HEAD.size + n > len(data):
            break
        payload = data[off + _HEAD.size: off + _HEAD.size + n]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(decode_raw(payload, max_bytes=MAX_RECORD_BYTES))
        except CodecError:
            break
        off += _HEAD.size + n
    return records, off


class Wal:
    """Append-only log of one height's consensus inputs."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.records, good = read_records(path)
        size = path.stat().st_size if path.exists() else 0
        if good < size:
            log.warning("WAL %s: cutting a torn tail of %d bytes after %d intact records", path, size - good,
                        len(self.records))
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        self._f: BinaryIO = open(path, "ab", buffering=0)
        self._dirty = False
        self.syncs = 0
        """fsync calls made (observability and tests)."""

    def append(self, record: Any) -> None:
        """Write a record to the OS at once (no user-space buffer a crash could lose); :meth:`sync` makes it
        durable against power loss."""
        payload = encode_trusted(record)
        data = memoryview(_HEAD.pack(len(payload), zlib.crc32(payload)) + payload)
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
            os.fsync(self._f.fileno())
            self._dirty = False
            self.syncs += 1

    def reset(self, height: int) -> None:
        """Start a new height: drop the old records (their block is committed) and write the height marker."""
        self._f.close()
        self._f = open(self.path, "wb", buffering=0)
        self.records = []
        self.append(["height", height])
        self.sync()

    def close(self) -> None:
        self._f.close()
