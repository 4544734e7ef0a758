"""The Tendermint round state machine, driven by hand: 4 cores with a hand-routed network, and single cores fed
crafted messages from the other validators."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from qilian.consensus import (
    Broadcast,
    Core,
    Decide,
    EvidenceFound,
    Input,
    Output,
    PrecommitReceived,
    PrevoteReceived,
    Proposal,
    ProposalReceived,
    ProposalValueReady,
    RequestValue,
    ScheduleTimeout,
    Step,
    TimeoutConfig,
    TimeoutElapsed,
    TimeoutKind,
    ValidateValue,
    ValidatorSet,
    ValidityAnswer,
    Vote,
    VoteType,
    compute_value_id,
)

ADDRS = [bytes([i]) * 20 for i in range(1, 5)]


def value_of(addr: bytes, height: int, round: int) -> bytes:
    return b"block-%d-%d-" % (height, round) + addr[:1]


class Net:
    """Hand-routed network of cores; timers are recorded and fired by the test."""

    def __init__(self, powers: list[int]) -> None:
        self.vs = ValidatorSet(dict(zip(ADDRS, powers, strict=True)))
        self.cores = {a: Core(a, self.vs) for a in ADDRS}
        self.queue: deque[tuple[bytes, Input]] = deque()
        self.timers: dict[bytes, list[ScheduleTimeout]] = {a: [] for a in ADDRS}
        self.decisions: dict[bytes, list[Decide]] = {a: [] for a in ADDRS}
        self.sent: list[tuple[bytes, Proposal | Vote]] = []
        self.isolated: set[bytes] = set()

    def start(self, height: int = 1) -> None:
        for a, c in self.cores.items():
            if a not in self.isolated:
                self.handle(a, c.start_height(height))
        self.run()

    def handle(self, a: bytes, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Broadcast):
                self.sent.append((a, o.message))
                m = o.message
                inp: Input
                if isinstance(m, Proposal):
                    inp = ProposalReceived(m)
                elif m.type == VoteType.PREVOTE:
                    inp = PrevoteReceived(m)
                else:
                    inp = PrecommitReceived(m)
                self.queue.extend((b, inp) for b in ADDRS if b != a)
            elif isinstance(o, ScheduleTimeout):
                self.timers[a].append(o)
            elif isinstance(o, RequestValue):
                self.queue.append((a, ProposalValueReady(o.height, o.round, value_of(a, o.height, o.round))))
            elif isinstance(o, ValidateValue):
                self.queue.append((a, ValidityAnswer(o.value_id, o.value.startswith(b"block-"))))
            elif isinstance(o, Decide):
                self.decisions[a].append(o)
            else:
                assert isinstance(o, EvidenceFound)

    def run(self, drop: Callable[[bytes, Input], bool] = lambda b, i: False) -> None:
        while self.queue:
            b, inp = self.queue.popleft()
            if b in self.isolated or drop(b, inp):
                continue
            self.handle(b, self.cores[b].process(inp))

    def fire(self, kind: TimeoutKind, height: int, round: int) -> int:
        n = 0
        for a, ts in self.timers.items():
            if a in self.isolated:
                continue
            for t in [t for t in ts if (t.kind, t.height, t.round) == (kind, height, round)]:
                ts.remove(t)
                self.queue.append((a, TimeoutElapsed(kind, height, round)))
                n += 1
        self.run()
        return n

    def live(self) -> list[bytes]:
        return [a for a in ADDRS if a not in self.isolated]


def _assert_decided(net: Net, height: int, round: int) -> Decide:
    ds = [net.decisions[a][-1] for a in net.live()]
    assert all(d.height == height and d.round == round for d in ds), ds
    assert len({d.value for d in ds}) == 1
    d = ds[0]
    assert net.vs.is_quorum(sum(net.vs.get_power(v.validator) for v in d.precommits))
    assert all(v.type == VoteType.PRECOMMIT and v.value_id == compute_value_id(d.value) for v in d.precommits)
    return d


def test_happy_path_decides_in_round_zero_equal_powers() -> None:
    net = Net([1, 1, 1, 1])
    net.start(1)
    d = _assert_decided(net, 1, 0)
    assert d.value == value_of(net.vs.get_proposer(1, 0), 1, 0)
    for h in range(2, 6):
        net.start(h)
        d = _assert_decided(net, h, 0)
        assert d.value == value_of(net.vs.get_proposer(h, 0), h, 0)
    assert len({net.vs.get_proposer(h, 0) for h in range(1, 5)}) == 4


def test_happy_path_weighted_powers() -> None:
    net = Net([1, 2, 3, 7])
    for h in range(1, 8):
        net.start(h)
        _assert_decided(net, h, 0)
    # the heavy validator (7 of 13 power) holds neither a quorum nor the proposer slot every time
    assert not net.vs.is_quorum(7) and net.vs.is_one_third(7)


def test_weighted_decision_needs_more_than_two_thirds_of_power() -> None:
    """With powers 1,1,1,7 the heavy validator silent leaves 3/10 of the power: nothing may be decided."""
    net = Net([1, 1, 1, 7])
    net.isolated.add(ADDRS[3])
    net.start(1)
    for r in range(3):
        net.fire(TimeoutKind.PROPOSE, 1, r)
        net.fire(TimeoutKind.PREVOTE, 1, r)
        net.fire(TimeoutKind.PRECOMMIT, 1, r)
    assert not any(net.decisions.values())


def test_silent_proposer_timeout_nil_prevotes_then_round_one_decides() -> None:
    net = Net([1, 1, 1, 1])
    p0 = net.vs.get_proposer(1, 0)
    p1 = net.vs.get_proposer(1, 1)
    assert p0 != p1
    net.isolated.add(p0)
    net.start(1)
    assert not any(net.decisions.values())
    assert all(net.cores[a].step == Step.PROPOSE for a in net.live())
    assert net.fire(TimeoutKind.PROPOSE, 1, 0) == 3
    prevotes = [m for _, m in net.sent if isinstance(m, Vote) and m.type == VoteType.PREVOTE]
    assert len(prevotes) == 3 and all(v.value_id is None for v in prevotes)
    # 2f+1 nil prevotes -> L44 precommit nil, 2f+1 precommits -> L47 schedules timeoutPrecommit
    assert all(net.cores[a].step == Step.PRECOMMIT for a in net.live())
    assert net.fire(TimeoutKind.PRECOMMIT, 1, 0) == 3
    d = _assert_decided(net, 1, 1)
    assert d.value == value_of(p1, 1, 1)
    assert all(net.cores[a].rule_counts.get("L57") == 1 for a in net.live())


def test_locked_value_is_reproposed_and_decided_in_round_one() -> None:
    """All four lock v0 in round 0 but every precommit is lost; round 1's proposer re-proposes its validValue
    with validRound 0 (L15-L16) and everyone prevotes it through L28."""
    net = Net([2, 1, 1, 1])
    p0, p1 = net.vs.get_proposer(1, 0), net.vs.get_proposer(1, 1)
    assert p0 != p1
    for a, c in net.cores.items():
        net.handle(a, c.start_height(1))
    net.run(drop=lambda b, i: isinstance(i, PrecommitReceived))
    assert all(c.locked_round == 0 and c.valid_round == 0 for c in net.cores.values())
    assert not any(net.decisions.values())
    for a in ADDRS:  # the precommit timers fire (they would have been scheduled had the precommits arrived late)
        net.queue.append((a, TimeoutElapsed(TimeoutKind.PRECOMMIT, 1, 0)))
    net.run()
    d = _assert_decided(net, 1, 1)
    assert d.value == value_of(p0, 1, 0)
    reproposal = [m for a, m in net.sent if isinstance(m, Proposal) and m.round == 1]
    assert reproposal == [Proposal(1, 1, d.value, compute_value_id(d.value), 0, p1)]
    assert all(c.rule_counts.get("L28") == 1 for a, c in net.cores.items() if a != p1)


def test_invalid_value_is_prevoted_nil() -> None:
    net = Net([1, 1, 1, 1])
    p0 = net.vs.get_proposer(1, 0)
    c = net.cores[p0]
    out = c.start_height(1)
    assert RequestValue(1, 0) in out
    net.handle(p0, c.process(ProposalValueReady(1, 0, b"garbage")))
    for a in ADDRS:
        if a != p0:
            net.handle(a, net.cores[a].start_height(1))
    net.run()
    prevotes = [m for a, m in net.sent if isinstance(m, Vote) and a != p0]
    assert prevotes and all(v.value_id is None for v in prevotes)
    assert not any(net.decisions.values())


# ------------------------------------------------------------------------------------------------- single core

class One:
    """One core under test; the other three validators are played by the test."""

    def __init__(self, powers: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        self.vs = ValidatorSet(dict(zip(ADDRS, powers, strict=True)))
        # a validator that proposes in none of rounds 0..2 of height 1
        me = next(a for a in ADDRS if a not in {self.vs.get_proposer(1, r) for r in range(3)})
        self.me = me
        self.others = [a for a in ADDRS if a != me]
        self.core = Core(me, self.vs)
        self.out: list[Output] = self.core.start_height(1)

    def feed(self, inp: Input) -> list[Output]:
        out = self.core.process(inp)
        for o in out:
            if isinstance(o, ValidateValue):
                out += self.core.process(ValidityAnswer(o.value_id, True))
        self.out += out
        return out

    def propose(self, round: int, value: bytes, valid_round: int = -1) -> list[Output]:
        p = Proposal(1, round, value, compute_value_id(value), valid_round, self.vs.get_proposer(1, round))
        return self.feed(ProposalReceived(p))

    def vote(self, t: VoteType, round: int, value: bytes | None, who: list[bytes]) -> list[Output]:
        out: list[Output] = []
        vid = None if value is None else compute_value_id(value)
        for a in who:
            v = Vote(t, 1, round, vid, a)
            out += self.feed(PrevoteReceived(v) if t == VoteType.PREVOTE else PrecommitReceived(v))
        return out


def _my_votes(out: list[Output]) -> list[Vote]:
    return [o.message for o in out if isinstance(o, Broadcast) and isinstance(o.message, Vote)]


def test_lock_then_prevote_nil_for_other_value_then_l28_unlock() -> None:
    t = One()
    v0, v1 = b"value-zero", b"value-one"
    others = t.others
    # round 0: prevote v0, see a polka -> L36 lock on v0 and precommit it
    assert _my_votes(t.propose(0, v0)) == [Vote(VoteType.PREVOTE, 1, 0, compute_value_id(v0), t.me)]
    out = t.vote(VoteType.PREVOTE, 0, v0, others[:2])
    assert _my_votes(out) == [Vote(VoteType.PRECOMMIT, 1, 0, compute_value_id(v0), t.me)]
    assert (t.core.locked_value, t.core.locked_round) == (v0, 0)
    assert (t.core.valid_value, t.core.valid_round) == (v0, 0)
    # two nil precommits: 2f+1 precommits of any kind -> L47 timer; it fires -> L65 round 1
    out = t.vote(VoteType.PRECOMMIT, 0, None, others[:2])
    assert next(o for o in out if isinstance(o, ScheduleTimeout)).kind == TimeoutKind.PRECOMMIT
    t.feed(TimeoutElapsed(TimeoutKind.PRECOMMIT, 1, 0))
    assert t.core.round == 1 and t.core.step == Step.PROPOSE
    # round 1: a fresh proposal of another value (validRound -1) is prevoted nil: we are locked on v0 (L22)
    assert _my_votes(t.propose(1, v1)) == [Vote(VoteType.PREVOTE, 1, 1, None, t.me)]
    # f+1 messages of round 2 -> L55 skip, without having seen the round-1 polka
    t.vote(VoteType.PREVOTE, 2, None, others[:1])
    assert t.core.round == 1
    t.vote(VoteType.PRECOMMIT, 2, None, others[1:2])
    assert t.core.round == 2 and t.core.rule_counts["L55"] == 1
    # round 2: v1 re-proposed with validRound 1; no polka for it seen yet -> no vote
    assert _my_votes(t.propose(2, v1, valid_round=1)) == []
    # the round-1 polka for v1 arrives: validRound 1 ≥ lockedRound 0 -> L28 prevote v1 (unlock)
    out = t.vote(VoteType.PREVOTE, 1, v1, others)
    assert _my_votes(out) == [Vote(VoteType.PREVOTE, 1, 2, compute_value_id(v1), t.me)]
    assert t.core.rule_counts["L28-unlock"] == 1


def test_l28_keeps_lock_when_valid_round_below_locked_round() -> None:
    t = One()
    v0, v1 = b"value-zero", b"value-one"
    others = t.others
    # round 0: a polka for v1 that we do not take part in (we time out and prevote nil)
    t.propose(0, v1)  # prevote v1 ourselves
    t.vote(VoteType.PREVOTE, 0, v1, others[:1])
    # skip to round 1 with f+1 round-1 messages; lock v0 there
    t.vote(VoteType.PREVOTE, 1, v0, others[1:3])
    assert t.core.round == 1
    vid0 = compute_value_id(v0)
    assert _my_votes(t.propose(1, v0)) == [Vote(VoteType.PREVOTE, 1, 1, vid0, t.me),
                                           Vote(VoteType.PRECOMMIT, 1, 1, vid0, t.me)]
    assert (t.core.locked_value, t.core.locked_round) == (v0, 1)
    # move on to round 2 where v1 is proposed with validRound 0 < lockedRound 1; a round-0 polka for v1 exists
    t.vote(VoteType.PRECOMMIT, 1, None, others[1:3])
    t.feed(TimeoutElapsed(TimeoutKind.PRECOMMIT, 1, 1))
    assert t.core.round == 2
    t.vote(VoteType.PREVOTE, 0, v1, others[1:2])
    assert t.core.keeper.is_polka_for(0, compute_value_id(v1))
    out = t.propose(2, v1, valid_round=0)
    assert _my_votes(out) == [Vote(VoteType.PREVOTE, 1, 2, None, t.me)]
    assert "L28-unlock" not in t.core.rule_counts


def test_l55_skips_to_highest_round_with_one_third_power() -> None:
    t = One()
    t.vote(VoteType.PREVOTE, 5, None, t.others[:1])
    assert t.core.round == 0
    t.vote(VoteType.PREVOTE, 3, None, t.others[1:2])
    assert t.core.round == 3  # two validators are at rounds ≥ 3; only one at ≥ 5
    t.vote(VoteType.PREVOTE, 7, None, t.others[1:2])
    assert t.core.round == 5
    # far-future rounds are not stored (bound) but still move us through L55
    t.vote(VoteType.PREVOTE, 1000, None, t.others[:2])
    assert t.core.round == 1000 and t.core.keeper.get_power_any(1000, VoteType.PREVOTE) == 0


def test_l49_decides_a_past_rounds_value() -> None:
    t = One()
    v0 = b"value-zero"
    t.propose(0, v0)
    t.vote(VoteType.PREVOTE, 1, None, t.others[:2])
    assert t.core.round == 1
    out = t.vote(VoteType.PRECOMMIT, 0, v0, t.others)
    d = [o for o in out if isinstance(o, Decide)]
    assert len(d) == 1 and (d[0].height, d[0].round, d[0].value) == (1, 0, v0)
    assert t.core.step == Step.DECIDED and t.core.rule_counts["L49-past-round"] == 1
    assert len(d[0].precommits) == 3
    # nothing happens after the decision at this height
    assert t.vote(VoteType.PRECOMMIT, 1, None, t.others) == []


def test_l49_waits_for_the_proposal() -> None:
    t = One()
    v0 = b"value-zero"
    assert not any(isinstance(o, Decide) for o in t.vote(VoteType.PRECOMMIT, 0, v0, t.others))
    assert any(isinstance(o, Decide) for o in t.propose(0, v0))


def test_proposal_from_wrong_proposer_is_ignored() -> None:
    t = One()
    v0 = b"value-zero"
    p = Proposal(1, 0, v0, compute_value_id(v0), -1, t.me)
    assert t.feed(ProposalReceived(p)) == []
    bad_id = Proposal(1, 0, v0, b"x" * 32, -1, t.vs.get_proposer(1, 0))
    assert t.feed(ProposalReceived(bad_id)) == []


def test_timeouts_scheduled_grow_linearly_and_are_capped() -> None:
    cfg = TimeoutConfig(propose_base_ms=1000, propose_delta_ms=400, cap_ms=5000)
    vs = ValidatorSet.equal(ADDRS)
    c = Core(ADDRS[0], vs, timeouts=cfg)
    durations = []
    for r in range(15):
        out = c.start_height(1) if r == 0 else c.process(
            PrevoteReceived(Vote(VoteType.PREVOTE, 1, r, None, ADDRS[1]))
        ) + c.process(PrevoteReceived(Vote(VoteType.PREVOTE, 1, r, None, ADDRS[2])))
        durations += [o.duration_ms for o in out if isinstance(o, ScheduleTimeout) and o.kind == TimeoutKind.PROPOSE]
    assert durations == [min(1000 + 400 * r, 5000) for r in range(15)]
    for kind in TimeoutKind:
        ds = [cfg.compute_duration_ms(kind, r) for r in range(0, 10_000, 7)]
        assert max(ds) <= cfg.cap_ms and ds == sorted(ds)


def test_future_height_buffer_is_bounded_and_replayed() -> None:
    vs = ValidatorSet.equal(ADDRS)
    c = Core(ADDRS[0], vs, max_buffered=3)
    c.start_height(1)
    for a in ADDRS[1:]:
        c.process(PrevoteReceived(Vote(VoteType.PREVOTE, 2, 0, None, a)))
    c.process(PrevoteReceived(Vote(VoteType.PREVOTE, 2, 0, b"v", ADDRS[0])))  # over the bound
    c.process(PrevoteReceived(Vote(VoteType.PREVOTE, 9, 0, None, ADDRS[1])))  # not the next height
    assert len(c.buffer) == 3 and c.dropped == 2
    c.start_height(2)
    assert c.buffer == [] and c.keeper.get_power_for(0, VoteType.PREVOTE, None) == 3


def test_equivocation_reaches_the_shell_as_evidence() -> None:
    t = One()
    t.vote(VoteType.PREVOTE, 0, b"a", t.others[:1])
    out = t.vote(VoteType.PREVOTE, 0, b"b", t.others[:1])
    ev = [o.evidence for o in out if isinstance(o, EvidenceFound)]
    assert len(ev) == 1 and ev[0].first.value_id == compute_value_id(b"a")


# ------------------------------------------------------------------------------------- seeded shuffle (smoke)

def _shuffled_run(seed: int, powers: list[int], drop_rate: float, heights: int) -> Net:
    """Deliver in random order, drop some messages, fire a random pending timer when nothing is in flight; every
    node starts the next height when it decides. Every signature passes the signer guard."""
    import random

    from qilian.consensus import SignerState, check_sign

    rng = random.Random(seed)
    net = Net(powers)
    guards = {a: SignerState() for a in ADDRS}
    orig_handle = net.handle

    def handle(a: bytes, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Broadcast):
                guards[a] = check_sign(guards[a], o.message)  # raises on a double sign
        orig_handle(a, outputs)
        for o in outputs:
            if isinstance(o, Decide) and o.height < heights:
                orig_handle(a, net.cores[a].start_height(o.height + 1))

    net.handle = handle  # type: ignore[method-assign]
    for a, c in net.cores.items():
        net.handle(a, c.start_height(1))
    for _ in range(20_000):
        if net.queue:
            i = rng.randrange(len(net.queue))
            net.queue.rotate(-i)
            b, inp = net.queue.popleft()
            net.queue.rotate(i)
            if rng.random() < drop_rate and not isinstance(inp, ProposalValueReady | ValidityAnswer):
                continue
            net.handle(b, net.cores[b].process(inp))
            c = net.cores[b]
            assert c.locked_round <= c.valid_round <= c.round
            continue
        pending = [(a, t) for a, ts in net.timers.items() for t in ts
                   if (t.height, t.round) == (net.cores[a].height, net.cores[a].round)]
        if not pending or all(len(net.decisions[a]) >= heights for a in ADDRS):
            break
        a, t = pending[rng.randrange(len(pending))]
        net.timers[a].remove(t)
        net.queue.append((a, TimeoutElapsed(t.kind, t.height, t.round)))
    return net


def test_seeded_shuffle_agreement_and_no_double_sign() -> None:
    rounds_seen = 0
    for seed in range(40):
        powers = [1, 1, 1, 1] if seed % 2 else [3, 1, 2, 1]
        net = _shuffled_run(seed, powers, drop_rate=0.1 if seed % 4 < 2 else 0.0, heights=3)
        by_height: dict[int, set[bytes]] = {}
        for ds in net.decisions.values():
            for d in ds:
                by_height.setdefault(d.height, set()).add(d.value)
                rounds_seen = max(rounds_seen, d.round)
        assert all(len(vs) == 1 for vs in by_height.values()), (seed, by_height)
        if seed % 4 >= 2:  # no drops: every node decides every height
            assert all(len(net.decisions[a]) == 3 for a in ADDRS), seed
    assert rounds_seen >= 1
