"""Evidence on chain under the simulator: a Byzantine validator that double-votes or equivocates is caught, its
signed votes become evidence items, the items are gossiped and committed, and every correct node ends up with the
same committed evidence in its state — never against a correct validator (the checker's ``evidence`` invariant)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qilian.execution.evidence import EVIDENCE_NAMESPACE, make_evidence
from qilian.p2p.messages import EvidenceMsg, PeerViolation
from qilian.sim import SimConfig, World
from qilian.sim.world import CHAIN_ID
from qilian.types.codec import decode_raw
from qilian.types.core import PRECOMMIT, Vote, compute_vote_sign_bytes


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


def test_gossiped_evidence_is_verified_before_it_is_kept_or_relayed() -> None:
    """The real shell of a correct node: a forged item (bad signature, same value twice) cuts the peer off; a valid
    one is kept once."""
    w = World(SimConfig(seed=3, nodes=4, heights=3, faults=frozenset(), chaos_ticks=0))
    r = w.run()
    assert r.ok
    node = next(n for n in w.nodes if n.is_correct and n.shell is not None)
    other = next(n for n in w.nodes if n.idx != node.idx)
    assert node.shell is not None
    consensus = node.shell.consensus

    def signed(block_id: bytes, height: int = 1) -> Vote:
        sig = w.suite.sign(other.private_key, compute_vote_sign_bytes(CHAIN_ID, PRECOMMIT, height, 0, block_id))
        return Vote(PRECOMMIT, height, 0, block_id, other.address, sig)

    good = make_evidence(signed(b""), signed(b"\x01" * 32))
    consensus.on_evidence(EvidenceMsg((good, good)), other.address)
    assert list(consensus.evidence.values()).count(good) == 1
    forged = replace(good, vote_b=replace(good.vote_b, signature=bytes(64)))
    with pytest.raises(PeerViolation, match="does not verify"):
        consensus.on_evidence(EvidenceMsg((forged,)), other.address)
    with pytest.raises(PeerViolation, match="same value twice"):
        consensus.on_evidence(EvidenceMsg((replace(good, vote_a=good.vote_b),)), other.address)
