"""Blocks are executed and stored one at a time, in height order: the consensus reactor's decisions and block
sync's batches take turns through one :class:`Applier` (the node's former apply lock, as a queue of callbacks)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from qilian.shell.ports import Ledger
from qilian.types.core import Block, Commit, Receipt

Release = Callable[[], None]
Job = Callable[[Release], None]
Done = Callable[[bool, BaseException | None], None]


class Applier:
    """Serialises access to the ledger's one writer."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self._queue: deque[Job] = deque()
        self._busy = False

    @property
    def is_busy(self) -> bool:
        """A job holds the writer."""
        return self._busy

    def run_exclusive(self, job: Job) -> None:
        """Run ``job(release)`` once no other job holds the writer; the job calls ``release`` when done."""
        self._queue.append(job)
        if not self._busy:
            self._next()

    def _next(self) -> None:
        if self._busy or not self._queue:
            return
        self._busy = True
        job = self._queue.popleft()
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._busy = False
            self._next()

        job(release)

    def apply(self, block: Block, commit: Commit, hashes: list[bytes], done: Done) -> None:
        """Execute and store one decided block when the writer is free; ``done(stored, error)``."""
        def job(release: Release) -> None:
            def finished(stored: bool, error: BaseException | None) -> None:
                try:
                    done(stored, error)
                finally:
                    release()

            self.apply_locked(block, commit, hashes, finished)

        self.run_exclusive(job)

    def apply_locked(self, block: Block, commit: Commit, hashes: list[bytes], done: Done) -> None:
        """Execute and store one block (the caller holds the writer); ``done(False, None)`` if the tip has moved
        past it meanwhile (block sync got there first)."""
        ledger = self.ledger
        if block.header.height != ledger.get_parent_info().height + 1:
            done(False, None)
            return

        def stored(receipts: list[Receipt] | None, error: BaseException | None) -> None:
            if error is not None or receipts is None:
                done(False, error or RuntimeError("execution returned no receipts"))
                return
            ledger.on_block_stored(block, commit, hashes, receipts)
            done(True, None)

        ledger.execute_and_store(block, commit, hashes, stored)
