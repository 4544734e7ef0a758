"""Chain parameters as governed state (execution/params.py): fuel prices and block limits changed by
``chain.set_params`` (MAJORITY of admins), scheduled for a stated height, within hard bounds; execution and
``check_block`` read the values in force at the height of the block."""

from __future__ import annotations

from typing import Any

import pytest

from qilian.contracts import DEFAULT_PRICES
from qilian.execution.block import (
    BlockInvalid,
    ParentInfo,
    check_block,
    compute_empty_root,
    compute_signed_tx_hashes,
    make_header,
)
from qilian.execution.contracts import MAX_BLOCK_FUEL, compute_contract_address
from qilian.execution.members import PARAM_NAMESPACE, get_member
from qilian.execution.modules.gov import compute_endorsement
from qilian.execution.params import (
    MAX_BLOCK_BYTES_BOUND,
    PENDING_KEY,
    get_chain_limits,
    get_chain_params,
    get_param_specs,
)
from qilian.types.core import MAX_BLOCK_TXS_BOUND, Block, ChainParams, compute_tx_hash
from tests.unit.blockrunner import failed, ok
from tests.unit.test_membership import ADMINS, CHAIN, CLIENTS, GENESIS, RULES, SUITE, Chain, tx_of

STORE = """
store = Hash(default=0)

@export
def put(k: str, v: int):
    store[k] = v
"""


def _execute(c: Chain, changes: dict[str, Any], height: int = 0, approvers: int = 3) -> Any:
    """``chain.set_params`` by endorsements of ``approvers`` organisations (the submitter counts)."""
    action = ["chain.set_params", changes, height]
    ends = [compute_endorsement(SUITE, k.private_key, k.public_key, CHAIN, action, 10_000)
            for k in ADMINS[1:approvers]]
    return c.one(ADMINS[0], "gov", "execute", [action, 10_000, ends])


def test_a_change_applies_from_its_stated_height_on_every_reader() -> None:
    c = Chain()
    r = ok(_execute(c, {"block.max_txs": 7, "fuel.write": 400}, 0))
    decided = c.height
    assert r == {"effective_height": decided + 2, "changes": {"block.max_txs": 7, "fuel.write": 400}}
    state = c.get_state
    # the state after `decided` already knows the schedule; the value applies from decided + 2 only
    assert get_chain_params(GENESIS.params, state, decided + 1).max_block_txs == GENESIS.params.max_block_txs
    assert get_chain_params(GENESIS.params, state, decided + 2).max_block_txs == 7
    assert get_chain_limits(GENESIS.params, state, decided + 2).prices.write == 400
    assert get_chain_limits(GENESIS.params, state, decided + 1).prices == DEFAULT_PRICES
    c.run()  # decided + 1: still pending
    assert c.get_state(PARAM_NAMESPACE, b"block.max_txs") is None
    c.run()  # decided + 2: promoted at the beginning of the block, the schedule emptied
    assert c.get_state(PARAM_NAMESPACE, b"block.max_txs") is not None
    assert c.get_state(PARAM_NAMESPACE, PENDING_KEY) is None
    assert get_chain_params(GENESIS.params, c.get_state, c.height + 1).max_block_txs == 7


def test_an_explicit_height_and_too_early_heights() -> None:
    c = Chain()
    r = ok(_execute(c, {"block.max_fuel": 20_000_000}, 50))
    assert r["effective_height"] == 50
    assert get_chain_limits(GENESIS.params, c.get_state, 49).max_block_fuel == MAX_BLOCK_FUEL
    assert get_chain_limits(GENESIS.params, c.get_state, 50).max_block_fuel == 20_000_000
    err = failed(_execute(c, {"block.max_txs": 9}, c.height + 2))  # executes at c.height + 1: one block ahead
    assert "effective height" in err and "two blocks after" in err


@pytest.mark.parametrize("changes,words", [
    ({"block.max_txs": MAX_BLOCK_TXS_BOUND + 1}, "block.max_txs"),
    ({"block.max_txs": 0}, "block.max_txs"),
    ({"block.max_bytes": MAX_BLOCK_BYTES_BOUND + 1}, "hard bounds"),
    ({"block.max_bytes": 1000}, "block.max_bytes"),
    ({"block.max_fuel": 10**12}, "block.max_fuel"),
    ({"fuel.write": DEFAULT_PRICES.write - 1}, "fuel.write"),
    ({"fuel.read": DEFAULT_PRICES.read * 1000}, "fuel.read"),
    ({"fuel.read": "50"}, "integer"),
    ({"block.interval": 5}, "unknown parameter"),
    ({}, "non-empty map"),
])
def test_values_beyond_the_hard_bounds_are_refused(changes: dict[str, Any], words: str) -> None:
    c = Chain()
    assert words in failed(_execute(c, changes))
    assert c.get_state(PARAM_NAMESPACE, PENDING_KEY) is None


def test_the_default_policy_is_a_majority_of_admins() -> None:
    c = Chain()
    err = failed(_execute(c, {"block.max_txs": 7}, 0, approvers=2))
    assert "policy chain.set_params is MAJORITY of admin" in err and "needs approval of 3 of 4" in err
    assert get_param_specs(GENESIS.params)["block.max_txs"].high == MAX_BLOCK_TXS_BOUND


def test_execution_charges_the_prices_in_force_at_the_height() -> None:
    c = Chain()
    ok(c.one(ADMINS[0], "contracts", "deploy", ["store", STORE]))
    address = compute_contract_address(SUITE, ADMINS[0].public_key, "store")
    before = c.one(CLIENTS[0], address, "put", ["a", 1])
    ok(_execute(c, {"fuel.write": DEFAULT_PRICES.write + 1000}, 0))
    same = c.one(CLIENTS[0], address, "put", ["a", 2])  # decided + 1: the old price
    after = c.one(CLIENTS[0], address, "put", ["a", 3])  # decided + 2: the new one
    assert same.fuel_used == before.fuel_used
    assert after.fuel_used == before.fuel_used + 1000


def test_check_block_takes_the_limit_of_the_blocks_height() -> None:
    c = Chain()
    from qilian.execution.members import get_validator_sets

    current, nxt = get_validator_sets(RULES, c.get_state)
    txs = (tx_of(CLIENTS[0]), tx_of(CLIENTS[1]))
    hashes = [compute_tx_hash(SUITE, t.body) for t in txs]

    def parent(params: ChainParams | None) -> ParentInfo:
        return ParentInfo(0, b"", 0, b"\x00" * 32, compute_empty_root(SUITE), current, nxt, current,
                          lambda k: get_member(RULES, c.get_state, k), params)

    header = make_header(RULES, parent(None), 5, compute_signed_tx_hashes(SUITE, txs), None,
                         current.validators[0].address)
    with pytest.raises(BlockInvalid, match="more than 1 transactions"):
        check_block(RULES, parent(ChainParams(max_block_txs=1)), Block(header, txs, None), hashes, lambda h: False)
    check_block(RULES, parent(ChainParams(max_block_txs=2)), Block(header, txs, None), hashes, lambda h: False)
