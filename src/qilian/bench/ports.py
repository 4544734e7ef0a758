"""Free loopback ports for networks the benchmarks start."""

from __future__ import annotations

import random
import socket
from collections.abc import Container


def get_free_port_block(n: int, avoid: Container[int] = ()) -> int:
    """A base port such that base … base+n-1 are all free on 127.0.0.1 (and not in ``avoid``)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randint(20000, 60000 - n)
        if any(p in avoid for p in range(base, base + n)):
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no block of {n} free ports on 127.0.0.1")
