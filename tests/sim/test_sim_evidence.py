"""Evidence on chain under the simulator: a Byzantine validator that double-votes or equivocates is caught, its
signed votes become evidence items, the items are gossiped and committed, and every correct node ends up with the
same committed evidence in its state — never against a correct validator (the checker's ``evidence`` invariant)."""

from __future__ import annotations

import pytest

from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.sim import SimConfig, World
from qilian.types.codec import decode_raw


@pytest.mark.parametrize(("behaviour", "seed"), [("double-vote", 1), ("equivocate", 2), ("double-vote", 5)])
def test_equivocation_is_committed_as_evidence_on_every_correct_node(behaviour: str, seed: int) -> None:
    w = World(SimConfig(seed=seed, nodes=4, byzantine=1, behaviours=(behaviour,), heights=8))
    r = w.run()
    assert r.ok, [f"{v.kind}: {v.detail}" for v in r.violations[:5]]
    committed = w.checker.evidence_committed
    assert committed, f"no evidence committed (probes {r.probes})"
    byzantine = {n.address for n in w.nodes if not n.is_correct}
    correct = [n for n in w.nodes if n.is_correct]
    top = min(n.disk.ledger.tip.height for n in correct)
    shown = {eh: h for eh, h in committed.items() if h <= top}
    assert shown
    for n in correct:
        for eh, h in shown.items():
            raw = n.disk.ledger.values.get((EVIDENCE_NAMESPACE, eh))
            assert raw is not None, f"node {n.idx} lacks evidence {eh.hex()[:8]} committed at height {h}"
            at, validator, *_ = decode_raw(raw)
            assert at == h and validator in byzantine
