"""``qilian bench votes``: do full-fuel blocks delay the validators' votes?

Execution is deferred and runs on a worker thread beside consensus (docs/spec/consensus.md), so a block that spends
the whole block fuel budget (MAX_BLOCK_FUEL) should not hold back the votes of the next height. This benchmark
measures it on a real local network, in one run, as a ratio:

1. start N validators (or attach to a running network) and deploy a contract whose one method loops until its
   fuel runs out;
2. **light phase** — for ``seconds``, a few key-value puts per block;
3. **heavy phase** — for ``seconds``, the mempool kept full of spinning calls, so every block spends its whole
   fuel budget (MAX_BLOCK_FUEL ÷ DEFAULT_FUEL calls per block);
4. for each phase, every node's ``qilian_vote_quorum_seconds`` histogram (time from a round's first prevote or
   precommit to votes of a quorum of the power, recorded by the consensus reactor) and its execute-phase time are
   read from ``/metrics`` before and after, and the differences summed over the nodes.

Percentiles come from histogram buckets, so each is reported as the bucket's upper bound (``≤ x``). The budget
they are compared with is the chain's block interval: a vote that takes longer than one block interval to reach a
quorum would slow the chain down.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SPINNER_SOURCE = '''
@export
def spin():
    n = 0
    while True:
        n = n + 1
'''
"""The contract whose only method spends all the fuel it is given."""
SPINNER_NAME = "bench-spinner"
SAMPLE_RE = re.compile(r'^(qilian_vote_quorum_seconds_bucket|qilian_block_phase_seconds_(?:sum|count))'
                       r'\{([^}]*)\}\s+([0-9.e+-]+)$')
"""Histogram sample lines of the exposition this benchmark reads."""


@dataclass(frozen=True)
class VotesBenchConfig:
    """One run's settings."""

    validators: int = 4
    seconds: float = 30.0
    block_interval_ms: int = 500
    home: Path | None = None


@dataclass
class PhaseResult:
    """What one phase measured, summed over the nodes."""

    name: str
    blocks: int = 0
    execute_mean_s: float = 0.0
    quorum: dict[str, dict[str, float]] = field(default_factory=dict)
    """vote type → {"count", "p50", "p99", "max_bucket"} in seconds (bucket upper bounds)."""


@dataclass
class VotesBenchResult:
    """The run: both phases and the budget."""

    block_interval_ms: int
    validators: int
    phases: list[PhaseResult] = field(default_factory=list)


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    """(sample name, labels) → value for the samples this benchmark reads."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = SAMPLE_RE.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def get_snapshot(apis: list[str]) -> list[dict[tuple[str, str], float]]:
    """Every node's samples now."""
    return [parse_metrics(httpx.get(a + "/metrics", timeout=10).text) for a in apis]


def compute_phase(name: str, before: list[dict[tuple[str, str], float]],
                  after: list[dict[tuple[str, str], float]], blocks: int) -> PhaseResult:
    """Differences of the histograms between two snapshots, summed over the nodes."""
    res = PhaseResult(name, blocks=blocks)
    ex_sum = ex_count = 0.0
    buckets: dict[str, dict[float, float]] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in a.items():
            delta = value - b.get(key, 0.0)
            sample, labels = key
            if sample.startswith("qilian_block_phase_seconds") and 'phase="execute"' in labels:
                if sample.endswith("_sum"):
                    ex_sum += delta
                else:
                    ex_count += delta
            elif sample == "qilian_vote_quorum_seconds_bucket":
                type_match = re.search(r'type="([a-z]+)"', labels)
                le = re.search(r'le="([^"]+)"', labels)
                if type_match and le:
                    bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
                    per = buckets.setdefault(type_match.group(1), {})
                    per[bound] = per.get(bound, 0.0) + delta
    res.execute_mean_s = ex_sum / ex_count if ex_count else 0.0
    for vtype, cumulative in sorted(buckets.items()):
        bounds = sorted(cumulative)
        total = cumulative[bounds[-1]] if bounds else 0.0
        if total <= 0:
            continue

        def quantile(q: float, bounds: list[float] = bounds, cumulative: dict[float, float] = cumulative,
                     total: float = total) -> float:
            for bound in bounds:
                if cumulative[bound] >= q * total:
                    return bound
            return float("inf")

        res.quorum[vtype] = {"count": total, "p50": quantile(0.5), "p99": quantile(0.99), "max_bucket": quantile(1.0)}
    return res


def _wait_height(api: str, height: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    h = 0
    while time.monotonic() < deadline:
        h = int(httpx.get(api + "/status", timeout=5).json()["height"])
        if h >= height:
            return h
        time.sleep(0.05)
    return h


def _deploy_spinner(api: str, key_path: Path) -> str:
    """Deploy the spinning contract (or find it deployed); returns its address."""
    from qilian.sdk.client import Client
    from qilian.sdk.keys import load_key

    key = load_key(key_path)
    with Client(api) as c:
        res = c.call(key, "contracts", "deploy", [SPINNER_NAME, SPINNER_SOURCE])
    receipt = res.get("receipt") or {}
    if receipt.get("status") == "ok":
        return str(receipt["result"])
    if "already deployed" in str(receipt.get("error")):
        return str(receipt["error"]).split(" at ")[1].split(";")[0]
    raise RuntimeError(f"could not deploy the spinning contract: {receipt.get('error')}")


def _feed(apis: list[str], make: Callable[[int], bytes], per_tick: int, tick_s: float, until: float,
          stop: threading.Event) -> int:
    """Submit ``per_tick`` transactions every ``tick_s`` to the nodes in turn until ``until``; returns how many
    were admitted."""
    admitted = 0
    refusals: dict[str, int] = {}
    i = 0
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < until and not stop.is_set():
            t0 = time.monotonic()
            for _ in range(per_tick):
                r = http.post(apis[i % len(apis)] + "/txs", content=make(i),
                              headers={"content-type": "application/octet-stream"})
                if r.status_code == 202:
                    admitted += 1
                else:
                    refusals[r.text[:120]] = refusals.get(r.text[:120], 0) + 1
                i += 1
            time.sleep(max(0.0, tick_s - (time.monotonic() - t0)))
    if refusals and not admitted:
        raise RuntimeError(f"every submission was refused: {refusals}")
    return admitted


def run_votes_bench(cfg: VotesBenchConfig, say: Callable[[str], None]) -> VotesBenchResult:
    """Run the light and the heavy phase; see the module docstring."""
    from qilian.contracts import DEFAULT_FUEL
    from qilian.execution.contracts import MAX_BLOCK_FUEL
    from qilian.node.config import init_network, load_network
    from qilian.node.launcher import start_network, stop_network, wait_for_blocks
    from qilian.sdk.client import build_tx
    from qilian.sdk.keys import load_key
    from qilian.types.core import ChainParams

    owned = cfg.home is None
    root = Path(tempfile.mkdtemp(prefix="qilian-bench-votes-")) if cfg.home is None else cfg.home
    if owned:
        from qilian.bench.ports import get_free_port_block

        api_base = get_free_port_block(cfg.validators)
        p2p_base = get_free_port_block(cfg.validators, avoid=range(api_base, api_base + cfg.validators))
        init_network(root, cfg.validators, chain_id="bench-votes", suite_name="ed25519", organisations=("org1",),
                     api_port=api_base, p2p_port=p2p_base, params=ChainParams(block_interval_ms=cfg.block_interval_ms))
        say(f"starting {cfg.validators} validators in {root} …")
        launched = start_network(root, detach=False)
        procs = [p for _, p in launched]
        apis = [lch.api for lch, _ in launched]
        if not wait_for_blocks(apis, procs, 60):
            stop_network(root)
            raise RuntimeError(f"the network did not start; see {root}/node*/node.log")
    else:
        apis = [n["api"] for n in load_network(root)["nodes"]]
    status = httpx.get(apis[0] + "/status", timeout=5).json()
    params = httpx.get(apis[0] + "/genesis", timeout=5).json().get("params") or {}
    interval_ms = int(params.get("block_interval_ms") or cfg.block_interval_ms)
    result = VotesBenchResult(block_interval_ms=interval_ms, validators=len(apis))
    try:
        chain_id = status["chain_id"]
        admin = sorted((root / "keys").glob("*-admin.pem"))[0]
        client = load_key(sorted((root / "keys").glob("*-client.pem"))[0])
        say("deploying the spinning contract …")
        spinner = _deploy_spinner(apis[0], admin)
        per_block = max(1, MAX_BLOCK_FUEL // DEFAULT_FUEL)
        stop = threading.Event()
        for name in ("light", "heavy"):
            h0 = int(httpx.get(apis[0] + "/status", timeout=5).json()["height"])
            expires = h0 + 900

            def make(i: int, name: str = name, expires: int = expires) -> bytes:
                if name == "light":
                    return build_tx(client, chain_id, "kv", "put", [f"votes-bench-{i}", "x"], expires).encode()
                return build_tx(client, chain_id, spinner, "spin", [], expires).encode()

            before = get_snapshot(apis)
            say(f"{name} phase: {cfg.seconds:.0f} s …")
            until = time.monotonic() + cfg.seconds
            tick = interval_ms / 1000
            _feed(apis, make, 2 if name == "light" else per_block, tick, until, stop)
            h1 = int(httpx.get(apis[0] + "/status", timeout=5).json()["height"])
            _wait_height(apis[0], h1 + 2, 60)
            after = get_snapshot(apis)
            h2 = int(httpx.get(apis[0] + "/status", timeout=5).json()["height"])
            result.phases.append(compute_phase(name, before, after, h2 - h0))
    finally:
        if owned:
            stop_network(root)
    return result


def format_rows(r: VotesBenchResult) -> list[tuple[str, ...]]:
    """Table rows: per phase and vote type."""
    rows: list[tuple[str, ...]] = []
    for p in r.phases:
        for vtype, q in p.quorum.items():
            rows.append((p.name, str(p.blocks), f"{p.execute_mean_s * 1000:,.0f}", vtype, f"{q['count']:,.0f}",
                         f"≤ {q['p50'] * 1000:,.0f}", f"≤ {q['p99'] * 1000:,.0f}"))
    return rows


def summarise(r: VotesBenchResult) -> dict[str, Any]:
    """The figures docs/benchmarks.md quotes: heavy/light ratios and the budget check."""
    light = {p.name: p for p in r.phases}.get("light")
    heavy = {p.name: p for p in r.phases}.get("heavy")
    out: dict[str, Any] = {"block_interval_ms": r.block_interval_ms}
    if light and heavy:
        out["execute_ms_light"] = round(light.execute_mean_s * 1000)
        out["execute_ms_heavy"] = round(heavy.execute_mean_s * 1000)
        for vtype in ("prevote", "precommit"):
            if vtype in heavy.quorum:
                p99 = heavy.quorum[vtype]["p99"]
                out[f"{vtype}_p99_heavy_ms"] = p99 * 1000
                out[f"{vtype}_within_budget"] = p99 * 1000 <= r.block_interval_ms
    return out
