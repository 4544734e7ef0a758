"""Index backend choice: the ``[indexer]`` section of node.toml, ``open_index``, the shared schema's dialects, and the
synthetic blocks of ``qilian bench explorer`` written through the index's write path (idempotent, resumable)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qilian.bench.explorer_bench import (
    ExplorerBenchConfig,
    compute_synthetic_rows,
    get_account,
    process_build,
)
from qilian.indexer.service import get_index_path, open_index
from qilian.indexer.sql import POSTGRES, SQLITE, compute_schema
from qilian.indexer.sqlite import SqliteIndex
from qilian.node.config import NodeConfig, load_config, save_config


def test_indexer_config_round_trip_and_validation(tmp_path: Path) -> None:
    save_config(NodeConfig(home=tmp_path))
    assert "[indexer]" not in (tmp_path / "node.toml").read_text()  # the default stays implicit
    assert load_config(tmp_path).indexer_backend == "sqlite"
    cfg = dataclasses.replace(load_config(tmp_path), indexer_backend="postgres", indexer_url="postgresql://x@h/db")
    save_config(cfg)
    back = load_config(tmp_path)
    assert (back.indexer_backend, back.indexer_url) == ("postgres", "postgresql://x@h/db")
    save_config(dataclasses.replace(back, indexer_backend="off", indexer_url=""))
    assert load_config(tmp_path).indexer_backend == "off"
    for bad in ('[indexer]\nbackend = "mysql"\n', '[indexer]\nbackend = "postgres"\n'):
        (tmp_path / "node.toml").write_text(bad)
        with pytest.raises(ValueError, match=r"\[indexer\]"):
            load_config(tmp_path)


def test_open_index_chooses_the_backend(tmp_path: Path) -> None:
    ix = open_index(tmp_path)
    assert isinstance(ix, SqliteIndex) and ix.path == get_index_path(tmp_path)
    ix.close()
    with pytest.raises(ValueError, match="needs a URL"):
        open_index(tmp_path, "postgres", "")
    with pytest.raises(ValueError, match="unknown index backend"):
        open_index(tmp_path, "mysql", "")


def test_dialects_share_one_schema() -> None:
    s, p = compute_schema(SQLITE), compute_schema(POSTGRES)
    assert len(s) == len(p) == 15
    assert "BIGINT" in p[1] and "BIGINT" not in s[1] and 'COLLATE "C"' in p[0]


def test_synthetic_build_is_deterministic_idempotent_and_resumes(tmp_path: Path) -> None:
    cfg = ExplorerBenchConfig(txs=1_000, txs_per_block=100, accounts=50, contracts=10)
    assert compute_synthetic_rows(cfg, 3) == compute_synthetic_rows(cfg, 3)
    a = SqliteIndex(tmp_path / "a.sqlite")
    first = process_build(a, dataclasses.replace(cfg, txs=400), lambda _: None)
    assert (first.heights, first.txs, first.attached) == (4, 400, False)
    rest = process_build(a, cfg, lambda _: None)  # resumes after height 4
    assert (rest.heights, rest.txs, rest.attached) == (10, 1_000, True)
    assert process_build(a, cfg, lambda _: None).seconds == 0.0  # attached: nothing to write
    b = SqliteIndex(tmp_path / "b.sqlite")
    process_build(b, cfg, lambda _: None)
    b.process_height(compute_synthetic_rows(cfg, 5), advance=False)  # re-indexing a height changes nothing
    assert list(a.iter_dump()) == list(b.iter_dump())
    assert len(a.get_contracts(None, 100)[0]) == 10
    hot = a.get_txs_of(get_account(0), None, 20)[0]  # the hottest sender
    assert len(hot) == 20 and [t.height for t in hot] == sorted((t.height for t in hot), reverse=True)
    a.close()
    b.close()


def test_batched_writes_give_the_per_height_index(tmp_path: Path) -> None:
    """The catch-up batches (several heights per transaction) write exactly what one write per height does, and
    re-writing a batch changes nothing; ``last_height`` is the batch's last height."""
    cfg = ExplorerBenchConfig(txs=2_000, txs_per_block=100, accounts=50, contracts=10)
    per_height, batched = SqliteIndex(tmp_path / "p.sqlite"), SqliteIndex(tmp_path / "b.sqlite")
    process_build(per_height, dataclasses.replace(cfg, batch=False), lambda _: None)
    process_build(batched, cfg, lambda _: None)
    assert batched.get_last_height() == per_height.get_last_height() == 20
    batched.process_heights([compute_synthetic_rows(cfg, h) for h in (7, 8, 9)], advance=False)
    assert list(batched.iter_dump()) == list(per_height.iter_dump())
    with pytest.raises(AssertionError, match="consecutive"):
        batched.process_heights([compute_synthetic_rows(cfg, h) for h in (3, 5)], advance=True)
    per_height.close()
    batched.close()
