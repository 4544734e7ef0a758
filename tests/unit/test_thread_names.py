"""The node's worker threads carry their pool's name to the operating system, and the soak's CPU column reads it."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from qilian.bench.soak import get_thread_cpu_seconds
from qilian.node.threads import set_os_thread_name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names and /proc are Linux's")
def test_a_pool_thread_is_named_for_the_os_and_its_cpu_is_counted_under_that_name() -> None:
    def burn() -> str:
        x = 0
        for i in range(300_000):
            x += i * i
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()

    with ThreadPoolExecutor(1, initializer=set_os_thread_name, initargs=("qilian-verify",)) as pool:
        assert pool.submit(burn).result() == "qilian-verify"
        groups = get_thread_cpu_seconds(os.getpid())
    assert "main" in groups and "verify" in groups
    assert groups["verify"] >= 0.0


def test_an_overlong_name_is_cut_not_refused() -> None:
    with ThreadPoolExecutor(1, initializer=set_os_thread_name, initargs=("qilian-" + "x" * 40,)) as pool:
        pool.submit(lambda: None).result()  # the initializer did not raise (a raising one breaks the pool)
