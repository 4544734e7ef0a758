"""``qilian indexer``: feed an index from a node's block store, in its own process.

Why a separate process: an explorer serving many users keeps its index in PostgreSQL and may run the indexer on
another schedule than the node (or rebuild an index from scratch) without touching the node. It opens the node's
store read-only — on RocksDB, which lets one process open a database, as a secondary instance that takes no lock
and catches up with the node before each pass — so it runs beside a running node (following new heights) or over a
stopped one; it writes through the same code as the embedded indexer, so a killed run resumes after the last whole
height.
"""

from __future__ import annotations

import time
from typing import Annotated, Final

import typer

from qilian.cli.main import DEFAULT_HOME, HomeOpt, _fail, console, err

POLL_S: Final = 1.0
"""How often a following indexer looks for new heights when caught up."""
MAX_POLL_S: Final = 60.0
"""Longest poll interval accepted."""


def indexer(
    home: HomeOpt = DEFAULT_HOME,
    postgres: Annotated[str | None, typer.Option(
        "--postgres", help="PostgreSQL URL to index into (postgresql://user@host:port/db; password via PGPASSWORD). "
                           "Default: node.toml's indexer section (SQLite beside the node unless configured).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Index up to the store's tip, then exit.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between looks for new heights when caught up.",
                                        min=0.05, max=MAX_POLL_S)] = POLL_S,
) -> None:
    """Index a node's committed blocks (running or stopped node); follows new heights unless --once."""
    from qilian.crypto import get_suite
    from qilian.indexer.service import Indexer, open_index
    from qilian.node.config import load_config, load_genesis
    from qilian.storage.store import ChainStore, StoreCorrupt, get_store_engine

    try:
        cfg = load_config(home)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if get_store_engine(cfg.data_path) is None:
        _fail(f"{cfg.data_path} holds no chain data yet: start the node once")
    suite = get_suite(load_genesis(cfg.genesis_path).suite)
    backend, url = ("postgres", postgres) if postgres else (cfg.indexer_backend, cfg.indexer_url)
    if backend == "off":
        _fail(f"{home}/node.toml says [indexer] backend = \"off\": set it to \"sqlite\" or \"postgres\", or pass "
              f"--postgres URL")
    store = ChainStore(cfg.data_path, readonly=True)
    try:
        index = open_index(home, backend, url)
    except Exception as exc:
        store.close()
        _fail(f"cannot open the {backend} index: {exc}")
    t0, total, last_report, last = time.monotonic(), 0, 0.0, -1
    try:
        ix = Indexer(store, suite, index)
        while True:
            try:
                store.catch_up()  # a secondary's view stays put until it catches up with the running node
                r = ix.process_pass()
            except StoreCorrupt as exc:
                _fail(f"the node's store: {exc}")
            total, last = total + r.indexed, r.last_height
            now = time.monotonic()
            if r.indexed and now - last_report >= 1.0:
                err.print(f"[dim]indexed to {r.last_height} of {r.tip} ({total} heights this run)[/dim]")
                last_report = now
            if r.last_height >= r.tip:
                if once:
                    break
                time.sleep(poll)
            elif r.indexed == 0:
                time.sleep(poll)  # the store has not got the next height yet
    except KeyboardInterrupt:
        pass
    finally:
        index.close()
        store.close()
    console.print(f"indexed {total} heights in {time.monotonic() - t0:.1f}s; last indexed height {last}")


def bench_explorer(
    txs: Annotated[int, typer.Option(help="Transactions in the index (built once; an index holding them is "
                                          "attached).", min=1, max=10_000_000)] = 200_000,
    backend: Annotated[str, typer.Option(help="sqlite or postgres.")] = "sqlite",
    postgres: Annotated[str | None, typer.Option(
        "--postgres", help="PostgreSQL URL (default with --backend postgres: a throwaway local server).")] = None,
    index: Annotated[str | None, typer.Option(
        "--index", help="SQLite index file to build or attach (default: a temporary file).")] = None,
    requests: Annotated[int, typer.Option(help="Requests per route.", min=10, max=1_000_000)] = 2_000,
    concurrency: Annotated[int, typer.Option(help="Client threads (requests in flight).", min=1, max=64)] = 4,
    txs_per_block: Annotated[int, typer.Option(help="Transactions per synthetic block.", min=1,
                                               max=100_000)] = 500,
    per_height: Annotated[bool, typer.Option("--per-height", help="Build with one index write per height (as "
                                             "when following the tip) instead of the catch-up batches.")] = False,
) -> None:
    """Explorer API latency (p50/p95/p99 per route) over an index of many transactions (docs/benchmarks.md)."""
    import contextlib
    import tempfile
    from pathlib import Path

    from rich.table import Table

    from qilian.bench.explorer_bench import ExplorerBenchConfig, run_explorer_bench
    from qilian.indexer.service import open_index

    if backend not in ("sqlite", "postgres"):
        _fail("--backend is sqlite or postgres")
    cfg = ExplorerBenchConfig(txs=txs, txs_per_block=txs_per_block, requests=requests, concurrency=concurrency,
                              batch=not per_height)
    with contextlib.ExitStack() as stack:
        if backend == "postgres" and not postgres:
            from qilian.bench.pg_server import create_database, run_pg_server

            server = stack.enter_context(run_pg_server())
            postgres = create_database(server, "bench")
            err.print(f"[dim]throwaway PostgreSQL at {postgres}[/dim]")
        if backend == "sqlite" and not index:
            index = str(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qilian-bench-"))) / "ix.sqlite")
        ix = open_index(Path("."), backend, postgres or "" if backend == "postgres" else index or "")
        stack.callback(ix.close)
        build, rows = run_explorer_bench(ix, cfg, lambda m: err.print(f"[dim]{m}[/dim]"))
    what = "attached" if build.attached and not build.seconds else f"built in {build.seconds:.1f}s " \
           f"({build.rate:,.0f} tx/s)"
    table = Table("route", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s",
                  title=f"qilian bench explorer: {backend}, {build.txs:,} txs in {build.heights:,} blocks "
                        f"({what}), {concurrency} in flight")
    for r in rows:
        table.add_row(r.route, f"{r.requests:,}", str(r.errors), f"{r.p50_ms:.2f}", f"{r.p95_ms:.2f}",
                      f"{r.p99_ms:.2f}", f"{r.rps:,.0f}")
    console.print(table)
