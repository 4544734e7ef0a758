"""Names for the node's worker threads as the operating system sees them.

Why: Python 3.11 keeps a thread's name to itself, so ``top -H``, ``py-spy`` and ``/proc`` show every worker of a
node as ``qilian``; a slow node's CPU could then not be told apart into execution, signature checks and the rest.
Each pool of the node names its threads here when they start (``ThreadPoolExecutor(initializer=…)``), and
``qilian bench soak`` reports CPU seconds per name (``/proc/<pid>/task/<tid>/comm``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

OS_THREAD_NAME_BYTES: Final = 15
"""Longest name Linux keeps for a thread (16 bytes with the terminating zero); longer names are cut."""
_PR_SET_NAME: Final = 15


def set_os_thread_name(name: str) -> None:
    """Name the calling thread for the operating system (Linux ``prctl``); does nothing where that is not there.

    Diagnostics only: a failure here is ignored and changes nothing else."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:OS_THREAD_NAME_BYTES]), 0, 0, 0)
    except (OSError, AttributeError):
        pass
