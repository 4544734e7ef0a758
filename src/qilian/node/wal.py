"""The consensus write-ahead log on disk: the file behind the shell's WAL port (:class:`qilian.shell.ports.WalFile`).

Records and framing are :mod:`qilian.shell.wal` (pure, shared with the simulator's in-memory disk); this module
only does the file IO. The file is opened unbuffered: :meth:`Wal.append` hands each record to the OS in one
``write`` call, so a process crash (SIGKILL) never loses an appended record — only a power loss can lose what was
not yet synced. The shell syncs the log before it persists the signer guard's state and before any of its own
proposals or votes leave (docs/spec/consensus.md, "Order of durability").

On open the log is read up to the last intact record and cut there — a torn tail is expected after a crash, never a
reason not to start. The log is truncated whenever a new height starts (the committed block is durable by then)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO

from qilian.shell.wal import MAX_RECORD_BYTES, WalHeight, WalRecord, decode_frames, encode_frame

log = logging.getLogger("qilian.wal")

__all__ = ["MAX_RECORD_BYTES", "Wal", "read_records"]


def read_records(path: Path) -> tuple[list[WalRecord], int]:
    """All intact records and the byte offset where the intact prefix ends."""
    if not path.exists():
        return [], 0
    return decode_frames(path.read_bytes())


class Wal:
    """Append-only log of one height's consensus inputs, in a file."""

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
            os.fsync(self._f.fileno())
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
