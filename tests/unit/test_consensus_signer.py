"""The signer guard: never two conflicting signatures at or below the last signed (height, round, step)."""

from __future__ import annotations

import pytest

from qilian.consensus import Proposal, SignerState, SignRefused, Vote, VoteType, check_sign, compute_value_id

ME = b"\x01" * 20
V, W = compute_value_id(b"v"), compute_value_id(b"w")


def _pv(h: int, r: int, vid: bytes | None) -> Vote:
    return Vote(VoteType.PREVOTE, h, r, vid, ME)


def _pc(h: int, r: int, vid: bytes | None) -> Vote:
    return Vote(VoteType.PRECOMMIT, h, r, vid, ME)


def test_progress_is_allowed_and_recorded() -> None:
    s = SignerState()
    p = Proposal(1, 0, b"v", V, -1, ME)
    for m in (p, _pv(1, 0, V), _pc(1, 0, V), _pv(1, 1, None), _pv(2, 0, W)):
        s = check_sign(s, m)
        assert s.message == m
    assert (s.height, s.round, s.step) == (2, 0, 1)


def test_identical_resign_is_allowed_without_state_change() -> None:
    s = check_sign(SignerState(), _pv(1, 0, V))
    assert check_sign(s, _pv(1, 0, V)) is s


@pytest.mark.parametrize("conflict", [
    _pv(1, 0, W),          # same (h, r, step), other value: double sign
    _pv(1, 0, None),       # same (h, r, step), nil instead of a value
    Proposal(1, 0, b"w", W, -1, ME),  # lower step
    _pv(0, 5, V),          # lower height
])
def test_conflicting_or_lower_messages_are_refused(conflict: Proposal | Vote) -> None:
    s = check_sign(SignerState(), _pv(1, 0, V))
    with pytest.raises(SignRefused):
        check_sign(s, conflict)


def test_lower_round_refused_after_moving_on() -> None:
    s = check_sign(SignerState(), _pc(3, 2, None))
    for m in (_pv(3, 1, V), _pc(3, 1, V), _pv(3, 2, V), _pc(3, 2, V)):
        with pytest.raises(SignRefused):
            check_sign(s, m)
    assert check_sign(s, _pv(3, 3, V)).round == 3


def test_refusal_leaves_state_untouched_across_restart() -> None:
    """The state is a plain value: what was persisted is what a restarted node reloads, and it still refuses."""
    persisted = check_sign(SignerState(), _pc(5, 0, V))
    reloaded = SignerState(persisted.height, persisted.round, persisted.step, persisted.message)
    with pytest.raises(SignRefused):
        check_sign(reloaded, _pc(5, 0, W))
    assert check_sign(reloaded, _pc(5, 0, V)) == reloaded
