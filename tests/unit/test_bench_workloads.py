"""The network benchmark's workloads are valid calls: the trace workload's ship/receive pairs move each item to
the other organisation and back, executed in blocks by the real module without a failed receipt; several
workloads of one run are compared as ratios of evidence's mean TPS."""

from __future__ import annotations

import pytest

from qilian.apps.trace.epcis import MAX_EPCS
from qilian.bench.network import (
    NetBenchResult,
    Workload,
    build_call,
    compute_ratios,
    compute_trace_item,
    format_comparison,
    get_workloads,
)

from .appchain import CLIENT, AppChain
from .blockrunner import ok

ORGS = ("farm", "processor")


def test_trace_pairs_alternate_direction_and_execute() -> None:
    w = Workload("trace", "t", ORGS, pool=4)
    calls = [build_call(w, i) for i in range(16)]
    # pair p ships item p % 4; pairs 0..3 go farm → processor, pairs 4..7 come back
    assert [(s, m) for s, _, m, _ in calls[:4]] == [(0, "ship"), (1, "receive"), (0, "ship"), (1, "receive")]
    assert [(s, m) for s, _, m, _ in calls[8:10]] == [(1, "ship"), (0, "receive")]
    assert calls[0][3][0]["destinationList"][0]["destination"] == "processor"
    assert calls[8][3][0]["destinationList"][0]["destination"] == "farm"
    assert calls[8][3][0]["epcList"] == [compute_trace_item(w, 0)]
    c = AppChain()
    ok(c.one(CLIENT["farm"], "trace", "commission", [{
        "type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": "2025-05-01T08:00:00Z",
        "epcList": [compute_trace_item(w, k) for k in range(min(w.pool, MAX_EPCS))]}]))
    keys = [CLIENT[o] for o in ORGS]
    for block in (calls[:8], calls[8:]):  # a ship and its receive in one block, in order
        for r in c.run(*((keys[s], to, m, a) for s, to, m, a in block)):
            ok(r)


def test_workload_list_and_ratios() -> None:
    assert get_workloads("evidence, trace,evidence") == ("evidence", "trace", "evidence")
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        get_workloads("evidence,nope")

    def res(w: str, tps: float) -> NetBenchResult:
        return NetBenchResult(config={"workload": w}, machine={}, tps=tps)

    run = [res("evidence", 1000), res("trace", 900), res("evidence", 800), res("trace", 700)]
    assert compute_ratios(run) == {"evidence": 1.0, "trace": 0.889}
    assert "| `trace` | 800 | 88.9% |" in format_comparison(run)


def test_execute_bench_times_successful_calls() -> None:
    """``qilian bench execute`` times real evidence registrations: every call of its block succeeds (a benchmark
    of failing calls would time the error path)."""
    from qilian.bench.store_bench import compute_evidence_setup, run_execute_bench
    from qilian.execution.block import execute_block

    setup = compute_evidence_setup(20, "t")
    res = execute_block(setup.rules, setup.state, setup.txs, setup.tx_hashes, 1, 1_000)
    assert [r.status for r in res.receipts] == [0] * 20, [r.error for r in res.receipts]
    per_tx = run_execute_bench(20, 2)
    assert len(per_tx) == 2 and all(x > 0 for x in per_tx)


def test_store_bench_template_is_an_executed_evidence_block() -> None:
    """``qilian bench store`` commits copies of one real executed block: its receipts all succeeded and it holds
    the state record the synthetic blocks vary."""
    from qilian.bench.store_bench import compute_template

    t = compute_template(10)
    assert len(t.block.txs) == t.block.header.tx_count == 10
    assert [r.status for r in t.receipts] == [0] * 10
    assert t.record_value and t.genesis_writes


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb"])
def test_reads_bench_reads_back_what_it_wrote_after_reopening(engine: str) -> None:
    """``qilian bench reads`` times gets on a reopened store: every remembered key is found again (it raises
    otherwise), absent keys are timed once per round, and the store it filled takes disk space."""
    from qilian.bench.engine_reads import run_engine_reads

    row = run_engine_reads(engine, 30_000, rounds=2, absent_gets=1_000)
    assert row.engine == engine and row.keys == 30_000
    assert len(row.absent_us) == 2 and all(x > 0 for x in row.absent_us) and row.present_us > 0
    assert row.disk_bytes > 30_000 * 32
