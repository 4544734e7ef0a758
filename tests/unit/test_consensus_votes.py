"""Vote keeping, thresholds by power, equivocation evidence, proposer rotation and timeouts."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from qilian.consensus import Threshold, ThresholdKind, TimeoutConfig, TimeoutKind, ValidatorSet, Vote, VoteKeeper
from qilian.consensus import VoteType as T

A, B, C, D = (bytes([i]) * 20 for i in range(1, 5))
V, W = b"v" * 32, b"w" * 32


def _kinds(res: object) -> set[ThresholdKind]:
    return {t.kind for t in res.thresholds}  # type: ignore[attr-defined]


def test_thresholds_fire_once_equal_powers() -> None:
    k = VoteKeeper(1, ValidatorSet.equal([A, B, C, D]))
    assert _kinds(k.process_vote(Vote(T.PREVOTE, 1, 0, V, A), 0)) == set()
    assert _kinds(k.process_vote(Vote(T.PREVOTE, 1, 0, V, B), 0)) == {ThresholdKind.SKIP_ROUND}
    r = k.process_vote(Vote(T.PREVOTE, 1, 0, V, C), 0)
    assert set(r.thresholds) == {Threshold(ThresholdKind.POLKA_VALUE, 0, V), Threshold(ThresholdKind.POLKA_ANY, 0)}
    r = k.process_vote(Vote(T.PREVOTE, 1, 0, V, D), 0)
    assert r.counted and r.thresholds == ()
    assert k.is_polka_for(0, V) and not k.is_polka_for(0, None)


def test_thresholds_by_power_mixed_values() -> None:
    vs = ValidatorSet({A: 5, B: 1, C: 1, D: 1})  # total 8: quorum needs > 16/3, i.e. 6
    k = VoteKeeper(1, vs)
    assert _kinds(k.process_vote(Vote(T.PRECOMMIT, 1, 2, V, A), 0)) == {ThresholdKind.SKIP_ROUND}
    assert not k.is_commit_for(2, V)
    assert _kinds(k.process_vote(Vote(T.PRECOMMIT, 1, 2, None, B), 0)) == {ThresholdKind.COMMIT_ANY}
    assert not k.is_commit_for(2, V)
    assert _kinds(k.process_vote(Vote(T.PRECOMMIT, 1, 2, V, C), 0)) == {ThresholdKind.COMMIT_VALUE}
    assert k.is_commit_for(2, V) and k.get_power_for(2, T.PRECOMMIT, V) == 6
    assert [v.validator for v in k.get_votes_for(2, T.PRECOMMIT, V)] == [A, C]


def test_nil_polka() -> None:
    k = VoteKeeper(1, ValidatorSet.equal([A, B, C, D]))
    for x in (A, B):
        k.process_vote(Vote(T.PREVOTE, 1, 0, None, x), 0)
    r = k.process_vote(Vote(T.PREVOTE, 1, 0, None, C), 0)
    assert _kinds(r) == {ThresholdKind.POLKA_NIL, ThresholdKind.POLKA_ANY}


def test_equivocation_is_evidence_and_counts_once_per_value() -> None:
    k = VoteKeeper(1, ValidatorSet.equal([A, B, C, D]))
    first = Vote(T.PREVOTE, 1, 0, V, A)
    assert k.process_vote(first, 0).counted
    again = k.process_vote(first, 0)
    assert not again.counted and again.evidence is None
    second = Vote(T.PREVOTE, 1, 0, W, A)
    r = k.process_vote(second, 0)
    assert r.evidence is not None
    assert (r.evidence.first, r.evidence.second) == (first, second)
    assert k.process_vote(second, 0).evidence is None  # a copy of the conflicting vote: nothing new
    nil = k.process_vote(Vote(T.PREVOTE, 1, 0, None, A), 0)
    assert nil.evidence is not None and len(k.evidence) == 2
    # the equivocator counts for each value it voted for (a polka others saw stays visible), once in "any"
    assert k.get_power_for(0, T.PREVOTE, W) == 1 and k.get_power_for(0, T.PREVOTE, None) == 1
    assert k.get_power_any(0, T.PREVOTE) == 1
    fourth = k.process_vote(Vote(T.PREVOTE, 1, 0, b"u" * 32, A), 0)  # beyond MAX_VALUES_PER_VALIDATOR
    assert not fourth.counted and fourth.evidence is not None and k.get_power_for(0, T.PREVOTE, b"u" * 32) == 0
    # another round or another type is no conflict
    assert k.process_vote(Vote(T.PRECOMMIT, 1, 0, W, A), 0).evidence is None
    assert k.process_vote(Vote(T.PREVOTE, 1, 1, W, A), 0).evidence is None


def test_votes_of_strangers_and_other_heights_are_ignored() -> None:
    k = VoteKeeper(1, ValidatorSet.equal([A, B, C, D]))
    assert not k.process_vote(Vote(T.PREVOTE, 1, 0, V, b"x" * 20), 0).counted
    assert not k.process_vote(Vote(T.PREVOTE, 2, 0, V, A), 0).counted
    assert k.get_power_any(0, T.PREVOTE) == 0


def test_future_round_window_is_bounded() -> None:
    k = VoteKeeper(1, ValidatorSet.equal([A, B, C, D]), max_future_rounds=3)
    assert k.process_vote(Vote(T.PREVOTE, 1, 3, V, A), 0).counted
    for r in range(4, 1000):
        assert not k.process_vote(Vote(T.PREVOTE, 1, r, V, B), 0).counted
    assert len(k._tallies) == 1 and len(k._round_senders) == 1
    assert k.highest_round == {A: 3, B: 999}
    assert k.get_skip_round(0) == 3  # A and B both reached round 3; only B is beyond
    assert k.get_skip_round(3) is None


@pytest.mark.parametrize("powers", [(1, 1, 1, 1), (1, 2, 3, 4), (10, 1, 1, 1), (3, 3, 6, 9), (7, 5, 2, 1, 1, 3, 9)])
def test_proposer_rotation_matches_weights(powers: tuple[int, ...]) -> None:
    addrs = [bytes([i + 1]) * 20 for i in range(len(powers))]
    vs = ValidatorSet(dict(zip(addrs, powers, strict=True)))
    period = len(vs.sequence)
    assert period == sum(powers) // _gcd(powers)
    for start in (0, 5, 1234):
        seq = [vs.get_proposer(h, 0) for h in range(start, start + 10 * period)]
        counts = Counter(seq)
        g = _gcd(powers)
        assert {a: counts[a] for a in addrs} == {a: 10 * p // g for a, p in zip(addrs, powers, strict=True)}
    # smooth: no validator proposes more than its share +1 in any window of the period's length
    seq = [vs.get_proposer(1, r) for r in range(3 * period)]
    for i in range(period, 2 * period):
        window = Counter(seq[i:i + period])
        assert all(window[a] == p // _gcd(powers) for a, p in zip(addrs, powers, strict=True))
    # (height, round) → same proposer on every node: a pure function
    assert vs.get_proposer(7, 3) == ValidatorSet(dict(reversed(list(vs.powers.items())))).get_proposer(7, 3)


def test_proposer_is_interleaved_not_blocked() -> None:
    vs = ValidatorSet({A: 3, B: 1})
    assert [vs.get_proposer(0, r) for r in range(4)] == [A, A, B, A]


def _gcd(xs: tuple[int, ...]) -> int:
    g = 0
    for x in xs:
        g = math.gcd(g, x)
    return g


def test_timeouts_grow_linearly_and_are_capped() -> None:
    cfg = TimeoutConfig(propose_base_ms=3000, propose_delta_ms=500, prevote_base_ms=1000, prevote_delta_ms=250,
                        precommit_base_ms=1000, precommit_delta_ms=100, cap_ms=20_000)
    assert [cfg.compute_duration_ms(TimeoutKind.PROPOSE, r) for r in range(4)] == [3000, 3500, 4000, 4500]
    assert cfg.compute_duration_ms(TimeoutKind.PREVOTE, 10) == 3500
    assert cfg.compute_duration_ms(TimeoutKind.PRECOMMIT, 10) == 2000
    assert cfg.compute_duration_ms(TimeoutKind.PROPOSE, 10**9) == 20_000
    for kind in TimeoutKind:
        ds = [cfg.compute_duration_ms(kind, r) for r in range(200)]
        steps = {b - a for a, b in itertools.pairwise(ds) if b < cfg.cap_ms}
        assert len(steps) == 1  # constant increments until the cap: linear, never doubling
